//! The score history: per level and record, one entry each time a scoring run gave the record
//! a new score or tier, and always for its first score. Reading "the score in effect at time
//! t" takes the last entry at or before t.
//!
//! The `score_history` tree is keyed by `level NUL id NUL time`, with the time as 8 big-endian
//! bytes of milliseconds since 1970, so one record's entries are contiguous and in time order.
//! A record deleted in the CRM keeps its entries in the tree, but [`Store::score_history`]
//! leaves them out. A merged-away record's entries serve its survivor at times before the
//! survivor's own first entry.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use redb::ReadableTable;

use super::store_db::{as_slice_bound, prefix_range, table, Commit};
use super::{ScoreRow, Store, StoreError, Tombstone};
use crate::level::Level;

const HISTORY_TREE: &str = "score_history";

/// One change of a record's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistoryEntry {
    pub at: DateTime<Utc>,
    /// The 0-100 score.
    pub score: f64,
    /// The calibrated win probability the score was made from.
    pub probability: f64,
    pub tier: String,
    pub model_version: String,
}

/// The score history of every record of one level, as read by [`Store::score_history`].
#[derive(Clone, Debug, Default)]
pub struct ScoreHistory {
    /// Entries by record id, oldest first.
    pub entries: BTreeMap<String, Vec<ScoreHistoryEntry>>,
    /// The merged-away ids whose entries stand in for each survivor, by survivor id.
    pub merged: BTreeMap<String, Vec<String>>,
}

impl ScoreHistory {
    /// Returns the entry in effect at `at`: the record's last entry at or before `at`, else
    /// the latest such entry among the records merged into it.
    pub fn at(&self, id: &str, at: DateTime<Utc>) -> Option<&ScoreHistoryEntry> {
        if let Some(entry) = last_at_or_before(self.entries.get(id), at) {
            return Some(entry);
        }
        self.merged
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|merged| last_at_or_before(self.entries.get(merged), at))
            .max_by_key(|entry| entry.at)
    }

    /// Returns the entry in effect just before `at`, so a score written at the very time of a
    /// close does not count for it.
    pub fn before(&self, id: &str, at: DateTime<Utc>) -> Option<&ScoreHistoryEntry> {
        self.at(id, at - chrono::Duration::milliseconds(1))
    }

    /// Returns the time the record, or a record merged into it, was first scored.
    pub fn first_scored(&self, id: &str) -> Option<DateTime<Utc>> {
        std::iter::once(id)
            .chain(
                self.merged
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .filter_map(|id| self.entries.get(id)?.first().map(|entry| entry.at))
            .min()
    }

    /// Returns the first score time of any record: the time the scores went live.
    pub fn go_live(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter_map(|list| list.first().map(|entry| entry.at))
            .min()
    }

    /// Returns the number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }

    /// Returns true when no record has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn last_at_or_before(
    list: Option<&Vec<ScoreHistoryEntry>>,
    at: DateTime<Utc>,
) -> Option<&ScoreHistoryEntry> {
    let list = list?;
    let end = list.partition_point(|entry| entry.at <= at);
    end.checked_sub(1).map(|index| &list[index])
}

fn record_prefix(level: Level, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(level.name().len() + id.len() + 2);
    key.extend_from_slice(level.name().as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

fn level_prefix(level: Level) -> Vec<u8> {
    let mut key = level.name().as_bytes().to_vec();
    key.push(0);
    key
}

/// Returns the key of one entry. Flipping the sign bit makes the big-endian bytes of a signed
/// time sort in time order, times before 1970 included.
fn entry_key(level: Level, id: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut key = record_prefix(level, id);
    let sortable = (at.timestamp_millis() as u64) ^ (1 << 63);
    key.extend_from_slice(&sortable.to_be_bytes());
    key
}

/// Returns the record id of a key made by [`entry_key`].
fn id_of_key(key: &[u8]) -> Option<String> {
    let rest = &key[key.iter().position(|&b| b == 0)? + 1..];
    let id = rest.get(..rest.len().checked_sub(9)?)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// The score history, a child of the store.
impl Store {
    /// Appends an entry for each row whose score or tier differs from its record's last entry,
    /// or that has no entry yet. The entry's time is the row's `scored_at`. Entries are
    /// written in batches of at most [`super::SCORE_CHUNK_ROWS`] rows, so a process stopped
    /// part way keeps the batches written before. Returns the number of entries appended.
    pub fn append_score_history(&self, rows: &[ScoreRow]) -> Result<usize, StoreError> {
        let mut appended = 0;
        for chunk in rows.chunks(super::SCORE_CHUNK_ROWS) {
            appended += self.db.write(Commit::Durable, |transaction| {
                self.append_history_chunk(transaction, chunk)
            })?;
        }
        Ok(appended)
    }

    fn append_history_chunk(
        &self,
        transaction: &redb::WriteTransaction,
        rows: &[ScoreRow],
    ) -> Result<usize, StoreError> {
        let mut tree = transaction.open_table(table(HISTORY_TREE))?;
        let mut appended = 0;
        for row in rows {
            let prefix = record_prefix(self.level, &row.id);
            let (start, end) = prefix_range(&prefix);
            let last = tree
                .range((as_slice_bound(&start), as_slice_bound(&end)))?
                .next_back()
                .transpose()?
                .map(|(key, bytes)| {
                    super::decode::<ScoreHistoryEntry>(HISTORY_TREE, key.value(), bytes.value())
                })
                .transpose()?;
            let changed = match &last {
                None => true,
                Some(last) => last.score != row.score || last.tier != row.tier,
            };
            if !changed {
                continue;
            }
            let entry = ScoreHistoryEntry {
                at: row.scored_at,
                score: row.score,
                probability: row.probability,
                tier: row.tier.clone(),
                model_version: row.model_version.clone(),
            };
            let key = entry_key(self.level, &row.id, row.scored_at);
            tree.insert(key.as_slice(), super::encode(&entry).as_slice())?;
            appended += 1;
        }
        Ok(appended)
    }

    /// Returns the entries of one record of this view's level, oldest first, as stored: merges
    /// and deletions are not applied.
    pub fn record_score_history(&self, id: &str) -> Result<Vec<ScoreHistoryEntry>, StoreError> {
        let mut out = Vec::new();
        self.db.for_each_prefix(
            HISTORY_TREE,
            &record_prefix(self.level, id),
            |key, bytes| {
                out.push(super::decode(HISTORY_TREE, key, bytes)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Returns the score history of this view's level. Records the CRM deleted without a
    /// merge are left out; a merged-away record is listed under its survivor in
    /// [`ScoreHistory::merged`].
    pub fn score_history(&self) -> Result<ScoreHistory, StoreError> {
        let object = self.level.object();
        let mut deleted = HashSet::new();
        let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut tombstones = Vec::new();
        self.db.for_each_prefix(
            "tombstones",
            format!("{object}/").as_bytes(),
            |key, bytes| {
                tombstones.push(super::decode::<Tombstone>("tombstones", key, bytes)?);
                Ok(())
            },
        )?;
        for tombstone in tombstones {
            match self.survivor(object, &tombstone.id)? {
                Some(survivor) => merged.entry(survivor).or_default().push(tombstone.id),
                None => {
                    deleted.insert(tombstone.id);
                }
            }
        }

        let mut entries: BTreeMap<String, Vec<ScoreHistoryEntry>> = BTreeMap::new();
        self.db
            .for_each_prefix(HISTORY_TREE, &level_prefix(self.level), |key, bytes| {
                let Some(id) = id_of_key(key) else {
                    return Err(StoreError::Corrupt {
                        tree: HISTORY_TREE.to_string(),
                        key: String::from_utf8_lossy(key).into_owned(),
                        message: "the key has no record id and time".to_string(),
                    });
                };
                if deleted.contains(&id) {
                    return Ok(());
                }
                let entry: ScoreHistoryEntry = super::decode(HISTORY_TREE, key, bytes)?;
                entries.entry(id).or_default().push(entry);
                Ok(())
            })?;
        Ok(ScoreHistory { entries, merged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 9, 0, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn keys_sort_by_time() {
        let early = Utc
            .with_ymd_and_hms(1969, 12, 31, 0, 0, 0)
            .single()
            .expect("valid time");
        let a = entry_key(Level::Account, "001", early);
        let b = entry_key(Level::Account, "001", time(1));
        assert!(a < b);
        assert_eq!(id_of_key(&b).as_deref(), Some("001"));
    }

    #[test]
    fn entry_in_effect() {
        let entry = |day: u32, score: f64| ScoreHistoryEntry {
            at: time(day),
            score,
            probability: score / 100.0,
            tier: "A".to_string(),
            model_version: "v1".to_string(),
        };
        let history = ScoreHistory {
            entries: BTreeMap::from([
                ("s".to_string(), vec![entry(10, 50.0)]),
                ("m".to_string(), vec![entry(2, 20.0), entry(5, 30.0)]),
            ]),
            merged: BTreeMap::from([("s".to_string(), vec!["m".to_string()])]),
        };
        assert_eq!(history.at("s", time(1)), None);
        assert_eq!(history.at("s", time(6)).map(|e| e.score), Some(30.0));
        assert_eq!(history.at("s", time(10)).map(|e| e.score), Some(50.0));
        assert_eq!(history.before("s", time(10)).map(|e| e.score), Some(30.0));
        assert_eq!(history.first_scored("s"), Some(time(2)));
        assert_eq!(history.go_live(), Some(time(2)));
    }
}
