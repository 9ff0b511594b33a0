//! The write journal and the per-record write failures, kept in the store.
//!
//! A push records each batch in the `journal` table (committed durably) before the batch is
//! sent.
//! After the outcomes return, the confirmed writes, the updated CRM copies, the failures and
//! the removal of the journal entry land in one transaction. An entry still present when the
//! next push starts belongs to a push that stopped in between, so that push reads the records
//! back before it plans anything.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::collections::BTreeMap;

use super::store_db::{generate_id, table, Commit};
use super::{
    decode, decode_record, encode, patch_records, records_tree, ConfirmedWrite, Store, StoreError,
    WrittenValues,
};
use crate::level::Level;
use chrono::{DateTime, Utc};
use leadscore_connector::{Record, Value};
use serde::{Deserialize, Serialize};

const JOURNAL_TREE: &str = "journal";
const FAILURES_TREE: &str = "write_failures";

/// One record of a journalled batch: the fields sent and the values a success records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalWrite {
    pub id: String,
    pub fields: BTreeMap<String, Value>,
    pub values: WrittenValues,
}

/// A batch of writes to one object, recorded before it is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub object: String,
    pub level: Level,
    pub started_at: DateTime<Utc>,
    pub writes: Vec<JournalWrite>,
}

/// A write the CRM rejected for a reason that retrying does not fix. The record is not sent
/// again until its change stamp or the values to write differ from the ones stored here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteFailure {
    pub object: String,
    pub id: String,
    /// The CRM's error code, for example `FIELD_CUSTOM_VALIDATION_EXCEPTION`.
    pub code: String,
    pub message: String,
    /// The fields the CRM named, if any.
    pub fields: Vec<String>,
    /// The change an admin can make so that the write succeeds.
    pub hint: String,
    /// The stored record's change stamp when the write failed; `None` when it was not stored.
    pub modstamp: Option<DateTime<Utc>>,
    /// The values the rejected write carried.
    pub values: WrittenValues,
    pub failed_at: DateTime<Utc>,
}

impl Store {
    /// Records a batch before it is sent and commits it durably. Returns the entry's key,
    /// which [`Store::settle_batch`] takes.
    pub fn begin_batch(&self, entry: &JournalEntry) -> Result<u64, StoreError> {
        let bytes = encode(entry);
        self.db.write(Commit::Durable, |transaction| {
            let key = generate_id(transaction)?;
            let mut tree = transaction.open_table(table(JOURNAL_TREE))?;
            tree.insert(&key.to_be_bytes()[..], bytes.as_slice())?;
            Ok(key)
        })
    }

    /// Returns the unsettled journal entries with their keys, oldest first.
    pub fn journal(&self) -> Result<Vec<(u64, JournalEntry)>, StoreError> {
        let mut out = Vec::new();
        self.db.for_each(JOURNAL_TREE, |key, value| {
            let Ok(bytes) = <[u8; 8]>::try_from(key) else {
                return Err(StoreError::Corrupt {
                    tree: JOURNAL_TREE.to_string(),
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: "a journal key must be 8 bytes".to_string(),
                });
            };
            out.push((u64::from_be_bytes(bytes), decode(JOURNAL_TREE, key, value)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Settles a journalled batch of `object`. The confirmed writes go to the write history and
    /// onto the stored copies of their records, and each loses its stored failure. `failures`
    /// replace the stored failures of their records, and the journal entry is removed. All of
    /// it lands in one durable transaction.
    pub fn settle_batch(
        &self,
        key: u64,
        object: &str,
        confirmed: &[ConfirmedWrite],
        failures: &[WriteFailure],
    ) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            patch_records(
                transaction,
                object,
                confirmed.iter().map(|w| (&w.id, &w.fields)),
            )?;
            let mut written = transaction.open_table(table("written"))?;
            let mut failed = transaction.open_table(table(FAILURES_TREE))?;
            for write in confirmed {
                written.insert(write.id.as_bytes(), encode(&write.values).as_slice())?;
                failed.remove(write.id.as_bytes())?;
            }
            for failure in failures {
                failed.insert(failure.id.as_bytes(), encode(failure).as_slice())?;
            }
            let mut journal = transaction.open_table(table(JOURNAL_TREE))?;
            journal.remove(&key.to_be_bytes()[..])?;
            Ok(())
        })
    }

    /// Returns the stored copy of each record in `ids` (`None` for one not stored).
    pub fn stored_records(
        &self,
        object: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let name = records_tree(object);
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(self.db.get_many(&name, &keys)?) {
            out.push(match bytes {
                Some(bytes) => Some(decode_record(&name, id.as_bytes(), &bytes)?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Returns the values last written to each record in `ids` (`None` for one never written).
    pub fn written_values(&self, ids: &[&str]) -> Result<Vec<Option<WrittenValues>>, StoreError> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(self.db.get_many("written", &keys)?) {
            out.push(match bytes {
                Some(bytes) => Some(decode("written", id.as_bytes(), &bytes)?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Returns the stored permanent write failures, by record id.
    pub fn write_failures(&self) -> Result<BTreeMap<String, WriteFailure>, StoreError> {
        let mut out = BTreeMap::new();
        self.db.for_each(FAILURES_TREE, |key, value| {
            let id = String::from_utf8_lossy(key).into_owned();
            out.insert(id, decode(FAILURES_TREE, key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns the stored permanent write failure of each record in `ids` (`None` for one
    /// without a failure).
    pub fn write_failures_of(&self, ids: &[&str]) -> Result<Vec<Option<WriteFailure>>, StoreError> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(self.db.get_many(FAILURES_TREE, &keys)?) {
            out.push(match bytes {
                Some(bytes) => Some(decode(FAILURES_TREE, id.as_bytes(), &bytes)?),
                None => None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(score: f64) -> WrittenValues {
        WrittenValues {
            score,
            tier: "B".into(),
            reasons: "+ volume".into(),
            sales_ready: None,
            model_version: "gbm-1".into(),
            written_at: DateTime::UNIX_EPOCH,
        }
    }

    fn entry(ids: &[&str]) -> JournalEntry {
        JournalEntry {
            object: "Account".into(),
            level: Level::Account,
            started_at: DateTime::UNIX_EPOCH,
            writes: ids
                .iter()
                .map(|id| JournalWrite {
                    id: id.to_string(),
                    fields: BTreeMap::from([("S".to_string(), Value::Number(50.0))]),
                    values: values(50.0),
                })
                .collect(),
        }
    }

    #[test]
    fn entry_survives_reopen_until_settled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = {
            let store = Store::open(dir.path()).expect("open");
            store.begin_batch(&entry(&["a", "b"])).expect("begin")
        };
        let store = Store::open(dir.path()).expect("reopen");
        let pending = store.journal().expect("journal");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, key);
        assert_eq!(pending[0].1, entry(&["a", "b"]));

        let confirmed = [ConfirmedWrite {
            id: "a".into(),
            values: values(50.0),
            fields: BTreeMap::new(),
        }];
        let failure = WriteFailure {
            object: "Account".into(),
            id: "b".into(),
            code: "FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
            message: "locked".into(),
            fields: Vec::new(),
            hint: "ask the admin".into(),
            modstamp: None,
            values: values(50.0),
            failed_at: DateTime::UNIX_EPOCH,
        };
        store
            .settle_batch(key, "Account", &confirmed, &[failure])
            .expect("settle");
        assert!(store.journal().expect("journal").is_empty());
        assert!(store.written().expect("written").contains_key("a"));
        let failures = store.write_failures().expect("failures");
        assert_eq!(failures["b"].code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");

        // A later success of the failed record removes its stored failure.
        let key = store.begin_batch(&entry(&["b"])).expect("begin");
        let confirmed = [ConfirmedWrite {
            id: "b".into(),
            values: values(50.0),
            fields: BTreeMap::new(),
        }];
        store
            .settle_batch(key, "Account", &confirmed, &[])
            .expect("settle");
        assert!(store.write_failures().expect("failures").is_empty());
    }
}
