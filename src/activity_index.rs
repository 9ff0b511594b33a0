//! A compact copy of what the history reads from each stored task and event, kept beside the
//! records so that loading the history does not decode millions of JSON records.
//!
//! Each entry of the table `activity_facts/<object>` holds, under the record's id, the
//! activity's time in milliseconds and its `WhoId` and `WhatId`, or a mark that the history
//! skips the record (leadscore's own alert task, or no date). Every write of a task or event
//! record writes its entry in the same transaction, so the two tables never disagree after a
//! crash. A store written before this table existed has no `activity_facts:<object>` mark in
//! `meta`, so the first load builds the table from the records in chunks and then sets it.
//!
//! A load also rebuilds a table whose entry count differs from its records' count.
//!
//! NOTE: a leadscore build older than this table writes records without their entries. The
//! count check catches the records it adds or removes, not those it only changes, so delete
//! the `activity_facts:*` keys of `meta` after running such a build on a store.

use std::ops::Bound;

use leadscore_connector::Record;
use redb::{ReadableTable, WriteTransaction};

use super::store_db::{as_slice_bound, table, Commit, OwnedEntry, Table};
use super::{decode_with, records_tree, Store, StoreError};
use crate::features::{fields, nonempty};

/// The objects whose records are indexed, with whether they are meetings (events).
pub(crate) const INDEXED: [(&str, bool); 2] = [(fields::TASK, false), (fields::EVENT, true)];

/// The first byte of every entry; an entry with another one is rejected.
const VERSION: u8 = 1;

/// Records copied per write transaction while the table is built for an existing store.
pub(super) const BUILD_CHUNK: usize = 20_000;

/// The task and event fields [`ActivityFacts::of`] reads. Building the table decodes no others.
pub(crate) const ACTIVITY_FIELDS: &[&str] = &[
    "Subject",
    "ActivityDate",
    "StartDateTime",
    "CreatedDate",
    "WhoId",
    "WhatId",
];

/// The values the history reads from one task or event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActivityFacts<'a> {
    /// When it happened, in milliseconds since 1970 UTC.
    pub millis: i64,
    /// The contact or lead it was with, if any.
    pub who: Option<&'a str>,
    /// The account, deal or other record it was logged on, if any.
    pub what: Option<&'a str>,
}

impl<'a> ActivityFacts<'a> {
    /// Reads the facts of a task (`meeting` false, dated by `ActivityDate`) or an event
    /// (dated by `StartDateTime`), either falling back to `CreatedDate`. Returns `None` for
    /// a record the history leaves out: one of leadscore's own alert tasks, which report a
    /// score rise and would raise it again, or one with no date at all.
    pub(crate) fn of(record: &'a Record, meeting: bool) -> Option<ActivityFacts<'a>> {
        let time_field = if meeting {
            "StartDateTime"
        } else {
            "ActivityDate"
        };
        let field = |name: &str| {
            debug_assert!(ACTIVITY_FIELDS.contains(&name), "{name} is not decoded");
            record.get(name)
        };
        if nonempty(field("Subject")).is_some_and(crate::alerts::is_own_task) {
            return None;
        }
        let at = field(time_field)
            .as_datetime()
            .or_else(|| field("CreatedDate").as_datetime())?;
        Some(ActivityFacts {
            millis: at.timestamp_millis(),
            who: nonempty(field("WhoId")),
            what: nonempty(field("WhatId")),
        })
    }

    /// Encodes the entry of a record whose facts are `facts` (`None`: skipped).
    pub(crate) fn encode(facts: Option<&ActivityFacts<'_>>) -> Vec<u8> {
        let Some(facts) = facts else {
            return vec![VERSION, 0];
        };
        let who = facts.who.unwrap_or("").as_bytes();
        let what = facts.what.unwrap_or("").as_bytes();
        let mut bytes = Vec::with_capacity(18 + who.len() + what.len());
        bytes.extend_from_slice(&[VERSION, 1]);
        bytes.extend_from_slice(&facts.millis.to_le_bytes());
        for text in [who, what] {
            // An id longer than 4 GiB cannot come from a CRM page.
            let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(&text[..length as usize]);
        }
        bytes
    }

    /// Decodes an entry written by [`ActivityFacts::encode`]. `Ok(None)` is a skipped record.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Option<ActivityFacts<'a>>, String> {
        let mut reader = Reader { bytes };
        let version = reader.take(1)?[0];
        if version != VERSION {
            return Err(format!(
                "entry version {version}, this build reads version {VERSION}"
            ));
        }
        match reader.take(1)?[0] {
            0 => return reader.end().map(|()| None),
            1 => {}
            other => return Err(format!("entry kind {other} is neither 0 nor 1")),
        }
        let millis = i64::from_le_bytes(reader.take(8)?.try_into().map_err(|_| "short time")?);
        let who = reader.text()?;
        let what = reader.text()?;
        reader.end()?;
        Ok(Some(ActivityFacts { millis, who, what }))
    }
}

/// Reads an entry front to back, failing on a short one instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < count {
            return Err(format!(
                "entry ends {} bytes early",
                count - self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    /// Reads a length-prefixed id; an empty one is `None`.
    fn text(&mut self) -> Result<Option<&'a str>, String> {
        let length = u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short length")?);
        let bytes = self.take(length as usize)?;
        let text = std::str::from_utf8(bytes).map_err(|e| format!("an id is not UTF-8: {e}"))?;
        Ok((!text.is_empty()).then_some(text))
    }

    fn end(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes after the entry", self.bytes.len()))
        }
    }
}

/// Returns the name of the table of `object`'s entries.
fn facts_table(object: &str) -> String {
    format!("activity_facts/{object}")
}

/// Returns the `meta` key marking `object`'s table as complete.
fn built_key(object: &str) -> String {
    format!("activity_facts:{object}")
}

/// Marks every activity table complete, in a store that has no records yet.
pub(super) fn mark_built(transaction: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = transaction.open_table(table("meta"))?;
    for (object, _) in INDEXED {
        meta.insert(built_key(object).as_bytes(), &[1u8][..])?;
    }
    Ok(())
}

/// Returns whether `object`'s records are indexed, and if so whether they are meetings.
pub(crate) fn indexed(object: &str) -> Option<bool> {
    INDEXED
        .iter()
        .find(|(name, _)| *name == object)
        .map(|&(_, meeting)| meeting)
}

/// Writes or removes, in `transaction`, the entries of `records` of `object` (`None` for a
/// deleted record). Does nothing for an object that is not indexed.
pub(super) fn put_entries<'r>(
    transaction: &WriteTransaction,
    object: &str,
    records: impl Iterator<Item = (&'r str, Option<&'r Record>)>,
) -> Result<(), StoreError> {
    let Some(meeting) = indexed(object) else {
        return Ok(());
    };
    let mut entries = transaction.open_table(table(&facts_table(object)))?;
    for (id, record) in records {
        put_entry(&mut entries, id.as_bytes(), record, meeting)?;
    }
    Ok(())
}

/// Writes the entry of the record stored under `key`, or removes it for `None`.
fn put_entry(
    entries: &mut Table<'_>,
    key: &[u8],
    record: Option<&Record>,
    meeting: bool,
) -> Result<(), StoreError> {
    match record {
        Some(record) => {
            let bytes = ActivityFacts::encode(ActivityFacts::of(record, meeting).as_ref());
            entries.insert(key, bytes.as_slice())?;
        }
        None => {
            entries.remove(key)?;
        }
    }
    Ok(())
}

impl Store {
    /// Passes the facts of every stored task or event of `object` to `visit`, in id order,
    /// skipping the records the history leaves out. Builds the table first when the store
    /// has none yet (see the module notes).
    pub(crate) fn for_each_activity(
        &self,
        object: &str,
        mut visit: impl FnMut(ActivityFacts<'_>),
    ) -> Result<(), StoreError> {
        if indexed(object).is_none() {
            return Err(StoreError::Corrupt {
                tree: facts_table(object),
                key: String::new(),
                message: format!("{object} records are not indexed as activities"),
            });
        }
        self.build_activity_facts(object)?;
        let name = facts_table(object);
        self.db.for_each(&name, |key, bytes| {
            let facts = ActivityFacts::decode(bytes).map_err(|message| StoreError::Corrupt {
                tree: name.clone(),
                key: String::from_utf8_lossy(key).into_owned(),
                message: format!(
                    "{message}; delete the `{}` key of the meta table to rebuild the table",
                    built_key(object)
                ),
            })?;
            if let Some(facts) = facts {
                visit(facts);
            }
            Ok(())
        })
    }

    /// Returns whether `object`'s table is marked complete and has one entry per stored
    /// record. A count that differs means records were written without their entries, as an
    /// older leadscore build does, so the table is built again.
    fn activity_facts_complete(&self, object: &str) -> Result<bool, StoreError> {
        if self.db.get("meta", built_key(object).as_bytes())?.is_none() {
            return Ok(false);
        }
        let counts = self
            .db
            .lens(&[records_tree(object).as_str(), facts_table(object).as_str()])?;
        if counts[0] != counts[1] {
            tracing::warn!(
                object,
                records = counts[0],
                entries = counts[1],
                "the activity table does not match the stored records, as after an older leadscore build wrote to this store; building it again"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// Builds `object`'s table from its records unless it is complete. Each chunk is read
    /// and written in one write transaction, so a pull running meanwhile cannot have its newer
    /// entry overwritten by one made from the record it replaced. One build runs at a time in
    /// this process (redb locks the file against other processes), because a second build's
    /// first chunk empties the table.
    fn build_activity_facts(&self, object: &str) -> Result<(), StoreError> {
        if self.activity_facts_complete(object)? {
            return Ok(());
        }
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _building = BUILDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another thread may have built it while this one waited.
        if self.activity_facts_complete(object)? {
            return Ok(());
        }

        let mark = built_key(object);
        let meeting = indexed(object).unwrap_or(false);
        let records_name = records_tree(object);
        let name = facts_table(object);
        tracing::info!(
            object,
            "building the activity table from the stored records; later loads read it instead"
        );

        let mut after: Option<Vec<u8>> = None;
        let mut first = true;
        loop {
            let done = self.db.write(Commit::Deferred, |transaction| {
                if first {
                    // Entries of an interrupted build may name records deleted since, and the
                    // mark stays off until the last chunk.
                    transaction.delete_table(table(&name))?;
                    transaction
                        .open_table(table("meta"))?
                        .remove(mark.as_bytes())?;
                }

                let chunk = read_chunk(transaction, &records_name, after.as_deref())?;
                let mut entries = transaction.open_table(table(&name))?;
                for (key, bytes) in &chunk {
                    let record = decode_with(&records_name, key, bytes, ACTIVITY_FIELDS)?;
                    put_entry(&mut entries, key, Some(&record), meeting)?;
                }
                drop(entries);

                let done = chunk.len() < BUILD_CHUNK;
                if done {
                    let mut meta = transaction.open_table(table("meta"))?;
                    meta.insert(mark.as_bytes(), &[1u8][..])?;
                }
                if let Some((key, _)) = chunk.last() {
                    after = Some(key.clone());
                }
                Ok(done)
            })?;
            first = false;
            if done {
                break;
            }
        }
        self.db.flush()
    }
}

/// Copies up to [`BUILD_CHUNK`] records of `name` after the key `after` out of `transaction`.
pub(super) fn read_chunk(
    transaction: &WriteTransaction,
    name: &str,
    after: Option<&[u8]>,
) -> Result<Vec<OwnedEntry>, StoreError> {
    let records = transaction.open_table(table(name))?;
    let start = match after {
        Some(key) => Bound::Excluded(key.to_vec()),
        None => Bound::Unbounded,
    };
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice_bound(&start), Bound::Unbounded);
    let mut chunk = Vec::with_capacity(BUILD_CHUNK);
    for entry in records.range(bounds)?.take(BUILD_CHUNK) {
        let (key, value) = entry?;
        chunk.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use leadscore_connector::Value;
    use std::collections::BTreeMap;

    fn task(id: &str, fields: &[(&str, Value)]) -> Record {
        Record {
            object: "Task".into(),
            id: id.into(),
            modstamp: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            deleted: false,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn entries_round_trip() {
        let record = task(
            "00T1",
            &[
                (
                    "ActivityDate",
                    Value::Date(chrono::NaiveDate::from_ymd_opt(2025, 3, 4).unwrap()),
                ),
                ("WhoId", Value::Text("003A".into())),
                ("WhatId", Value::Text(String::new())),
            ],
        );
        let facts = ActivityFacts::of(&record, false).expect("dated task");
        assert_eq!(facts.who, Some("003A"));
        assert_eq!(facts.what, None);
        let bytes = ActivityFacts::encode(Some(&facts));
        assert_eq!(ActivityFacts::decode(&bytes), Ok(Some(facts)));
        assert_eq!(
            ActivityFacts::decode(&ActivityFacts::encode(None)),
            Ok(None)
        );
    }

    #[test]
    fn own_and_undated_tasks_are_skipped() {
        let own = task(
            "00T2",
            &[
                (
                    "Subject",
                    Value::Text(format!("{} score rose", crate::alerts::TASK_SUBJECT_PREFIX)),
                ),
                ("CreatedDate", Value::DateTime(chrono::Utc::now())),
            ],
        );
        assert_eq!(ActivityFacts::of(&own, false), None);
        let undated = task("00T3", &[("WhoId", Value::Text("003A".into()))]);
        assert_eq!(ActivityFacts::of(&undated, false), None);
    }

    #[test]
    fn damaged_entries_are_errors() {
        let facts = ActivityFacts {
            millis: 7,
            who: Some("003A"),
            what: Some("001B"),
        };
        let bytes = ActivityFacts::encode(Some(&facts));
        for cut in 0..bytes.len() {
            assert!(
                ActivityFacts::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ActivityFacts::decode(&longer).is_err());
        let mut other_version = bytes;
        other_version[0] = 9;
        assert!(ActivityFacts::decode(&other_version).is_err());
    }

    /// Returns what the store's table yields for `object` against what the records give.
    fn table_and_records(store: &Store, object: &str) -> (Vec<String>, Vec<String>) {
        let meeting = indexed(object).expect("indexed");
        let mut from_table = Vec::new();
        store
            .for_each_activity(object, |facts| from_table.push(format!("{facts:?}")))
            .expect("read the table");
        let mut from_records = Vec::new();
        store
            .for_each_record(object, |record| {
                if let Some(facts) = ActivityFacts::of(&record, meeting) {
                    from_records.push(format!("{facts:?}"));
                }
            })
            .expect("read the records");
        (from_table, from_records)
    }

    fn sample_tasks() -> Vec<Record> {
        let day = |d| Value::Date(chrono::NaiveDate::from_ymd_opt(2025, 5, d).unwrap());
        vec![
            task(
                "00Ta",
                &[
                    ("ActivityDate", day(1)),
                    ("WhoId", Value::Text("003a".into())),
                ],
            ),
            task(
                "00Tb",
                &[
                    ("ActivityDate", day(2)),
                    ("WhatId", Value::Text("001b".into())),
                ],
            ),
            task(
                "00Tc",
                &[
                    (
                        "Subject",
                        Value::Text(format!("{} rose", crate::alerts::TASK_SUBJECT_PREFIX)),
                    ),
                    ("ActivityDate", day(3)),
                ],
            ),
            task(
                "00Td",
                &[(
                    "CreatedDate",
                    Value::DateTime(chrono::Utc.with_ymd_and_hms(2025, 5, 4, 9, 30, 0).unwrap()),
                )],
            ),
            task("00Te", &[("WhoId", Value::Text("003e".into()))]),
        ]
    }

    #[test]
    fn writes_keep_the_table_equal_to_the_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        for (object, _) in INDEXED {
            let mark = store.db.get("meta", built_key(object).as_bytes());
            assert!(
                mark.expect("meta").is_some(),
                "a new store marks {object} built"
            );
        }
        let mut tasks = sample_tasks();
        store.save_records("Task", &tasks).expect("save");
        let (table, records) = table_and_records(&store, "Task");
        assert_eq!(table.len(), 3, "two tasks are skipped: {table:?}");
        assert_eq!(table, records);

        // A later page moves one task to another contact and deletes another.
        tasks[0]
            .fields
            .insert("WhoId".into(), Value::Text("003z".into()));
        tasks[1].deleted = true;
        let cursor = leadscore_connector::Cursor {
            modstamp: tasks[0].modstamp,
            id: "00Tb".into(),
        };
        store
            .save_page("Task", &tasks[..2], &cursor)
            .expect("save page");
        let (table, records) = table_and_records(&store, "Task");
        assert_eq!(table.len(), 2);
        assert!(table[0].contains("003z"), "{table:?}");
        assert_eq!(table, records);

        // A confirmed write patches the stored record and its entry.
        let fields = BTreeMap::from([("WhatId".to_string(), Value::Text("001w".into()))]);
        store
            .record_writes(
                "Task",
                &[super::super::ConfirmedWrite {
                    id: "00Td".into(),
                    values: super::super::WrittenValues {
                        score: 1.0,
                        tier: "D".into(),
                        reasons: String::new(),
                        sales_ready: None,
                        model_version: "v".into(),
                        written_at: chrono::Utc::now(),
                    },
                    fields,
                }],
            )
            .expect("record writes");
        let (table, records) = table_and_records(&store, "Task");
        assert!(table.iter().any(|t| t.contains("001w")), "{table:?}");
        assert_eq!(table, records);
    }

    #[test]
    fn table_built_once_for_older_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        // More records than one build chunk, so the build resumes after a key.
        let events: Vec<Record> = (0..BUILD_CHUNK + 7)
            .map(|i| {
                let mut event = task(&format!("00U{i:06}"), &[]);
                event.object = "Event".into();
                event.fields.insert(
                    "StartDateTime".into(),
                    Value::DateTime(
                        chrono::Utc
                            .timestamp_opt(1_700_000_000 + i as i64, 0)
                            .unwrap(),
                    ),
                );
                event
                    .fields
                    .insert("WhoId".into(), Value::Text(format!("003{}", i % 11)));
                event
            })
            .collect();
        store.save_records("Event", &events).expect("save");

        // What a store written before the table existed looks like: records, no entries and
        // no mark, plus a stale entry an interrupted build could have left.
        store
            .db
            .write(Commit::Durable, |transaction| {
                transaction.delete_table(table(&facts_table("Event")))?;
                transaction
                    .open_table(table("meta"))?
                    .remove(built_key("Event").as_bytes())?;
                transaction
                    .open_table(table(&facts_table("Event")))?
                    .insert(&b"00Ugone"[..], &ActivityFacts::encode(None)[..])?;
                Ok(())
            })
            .expect("drop the table");
        assert!(!is_marked(&store, "Event"));

        let (table, records) = table_and_records(&store, "Event");

        assert_eq!(table.len(), events.len());
        assert_eq!(table, records);
        let stale = store
            .db
            .get(&facts_table("Event"), b"00Ugone")
            .expect("get");
        assert!(stale.is_none(), "the stale entry stays");
        assert!(is_marked(&store, "Event"));
    }

    /// Returns whether `object`'s table carries its complete mark.
    fn is_marked(store: &Store, object: &str) -> bool {
        let mark = store.db.get("meta", built_key(object).as_bytes());
        mark.expect("read meta").is_some()
    }

    #[test]
    fn damaged_entry_names_record_and_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.save_records("Task", &sample_tasks()).expect("save");
        store.for_each_activity("Task", |_| {}).expect("builds");
        store
            .db
            .put(&facts_table("Task"), b"00Tb", &[VERSION, 1, 2])
            .expect("damage");
        let error = store
            .for_each_activity("Task", |_| {})
            .expect_err("a short entry fails");
        let text = error.to_string();
        assert!(
            text.contains("00Tb") && text.contains("activity_facts:Task"),
            "{text}"
        );
    }

    #[test]
    fn records_without_entries_trigger_rebuild() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.save_records("Task", &sample_tasks()).expect("save");
        store.for_each_activity("Task", |_| {}).expect("read");
        // An older build stores a task without its entry.
        let extra = task(
            "00Tz",
            &[
                ("CreatedDate", Value::DateTime(chrono::Utc::now())),
                ("WhoId", Value::Text("003q".into())),
            ],
        );
        store
            .db
            .put(
                &records_tree("Task"),
                b"00Tz",
                &serde_json::to_vec(&extra).expect("encode"),
            )
            .expect("write the record alone");

        let (table, records) = table_and_records(&store, "Task");

        assert!(table.iter().any(|t| t.contains("003q")), "{table:?}");
        assert_eq!(table, records);
    }
}
