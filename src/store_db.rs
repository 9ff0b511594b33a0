//! The redb database behind the store and the few operations the store needs on it.
//!
//! Every table maps `&[u8]` keys to `&[u8]` values and keeps the name the tree had in the
//! sled store (`meta`, `records/Account`, ...). A table that was never written reads as
//! empty. Writes go through [`Db::write`], one redb write transaction each, which redb runs
//! one at a time per database.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::ops::Bound;
use std::sync::Arc;

use redb::{
    Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError, TableHandle, WriteTransaction,
};

use super::StoreError;

/// A table of the store as opened inside a write transaction.
pub(super) type Table<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// A key and its value, copied out of a read transaction.
pub(super) type OwnedEntry = (Vec<u8>, Vec<u8>);

/// The number of unwanted entries a scan of [`Db::visit_many`] passes before it seeks the next key.
const SCAN_SKIPS: usize = 8;

/// The `meta` key of the id counter that replaces sled's `generate_id`.
const NEXT_ID_KEY: &[u8] = b"next_id";

/// Returns the definition of the byte-keyed table `name`.
pub(super) fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// Returns the key range of every key that starts with `prefix`.
pub(super) fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    // The first key after the prefix range is the prefix with its last byte below 0xff
    // raised by one and the bytes after it cut off. A prefix of only 0xff bytes (or an
    // empty one) has no such key, so its range runs to the end.
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// The open database. Clones share one handle, and the file lock is released when the last
/// clone is dropped.
#[derive(Clone)]
pub(super) struct Db {
    database: Arc<redb::Database>,
}

/// The durability of a write transaction's commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Commit {
    /// On disk when the commit returns (an fsync per commit).
    Durable,
    /// Visible to later reads at once, but on disk only with the next durable commit. A crash
    /// before that loses it.
    Deferred,
}

impl Db {
    pub(super) fn new(database: redb::Database) -> Db {
        Db {
            database: Arc::new(database),
        }
    }

    /// Runs `read` on the table `name` in a read transaction, or returns `Ok(None)` when the
    /// table was never created.
    fn with_table<T>(
        &self,
        name: &str,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let transaction = self.database.begin_read()?;
        let table = match transaction.open_table(table(name)) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        read(&table).map(Some)
    }

    /// Returns the value stored under `key` in the table `name`.
    pub(super) fn get(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.with_table(name, |table| {
            Ok(table.get(key)?.map(|value| value.value().to_vec()))
        })?;
        Ok(value.flatten())
    }

    /// Returns the values stored under each of `keys` in the table `name`, read in one
    /// transaction.
    pub(super) fn get_many(
        &self,
        name: &str,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let values = self.with_table(name, |table| {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(table.get(*key)?.map(|value| value.value().to_vec()));
            }
            Ok(values)
        })?;
        Ok(values.unwrap_or_else(|| vec![None; keys.len()]))
    }

    /// Passes the value stored under each of `keys` in the table `name` to `visit` (`None`
    /// for a key without one), in the order of `keys`, from one read transaction. Keys in
    /// ascending order are read by scanning the table from one to the next, which costs less
    /// than a tree walk per key when they lie close together. After [`SCAN_SKIPS`] entries
    /// that were not asked for, the scan jumps ahead to the next key instead.
    pub(super) fn visit_many(
        &self,
        name: &str,
        keys: &[&[u8]],
        mut visit: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let ascending = keys.windows(2).all(|pair| pair[0] < pair[1]);
        let visited = self.with_table(name, |table| {
            let Some(last) = keys.last().filter(|_| ascending) else {
                for key in keys {
                    let value = table.get(*key)?;
                    visit(key, value.as_ref().map(|v| v.value()))?;
                }
                return Ok(());
            };
            let mut next = 0;
            while next < keys.len() {
                let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
                    (Bound::Included(keys[next]), Bound::Included(*last));
                let mut skipped = 0;
                let mut entries = table.range(bounds)?;
                loop {
                    let Some(entry) = entries.next() else {
                        // The table has nothing more up to the last key.
                        for key in &keys[next..] {
                            visit(key, None)?;
                        }
                        next = keys.len();
                        break;
                    };
                    let (key, value) = entry?;
                    let key = key.value();
                    while next < keys.len() && keys[next] < key {
                        visit(keys[next], None)?;
                        next += 1;
                    }
                    if next == keys.len() {
                        break;
                    }
                    if keys[next] == key {
                        visit(key, Some(value.value()))?;
                        next += 1;
                        skipped = 0;
                    } else {
                        skipped += 1;
                        if skipped > SCAN_SKIPS {
                            break;
                        }
                    }
                }
            }
            Ok(())
        })?;
        if visited.is_none() {
            for key in keys {
                visit(key, None)?;
            }
        }
        Ok(())
    }

    /// Returns the number of entries in each of the tables `names` (0 for one never created),
    /// read in one transaction so the counts belong to one state of the store.
    pub(super) fn lens(&self, names: &[&str]) -> Result<Vec<u64>, StoreError> {
        let transaction = self.database.begin_read()?;
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let count = match transaction.open_table(table(name)) {
                Ok(table) => table.len()?,
                Err(TableError::TableDoesNotExist(_)) => 0,
                Err(error) => return Err(error.into()),
            };
            counts.push(count);
        }
        Ok(counts)
    }

    /// Returns the number of entries in the table `name`.
    pub(super) fn len(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .with_table(name, |table| Ok(table.len()?))?
            .unwrap_or(0))
    }

    /// Passes every entry of the table `name` to `visit`, in key order, from one read
    /// transaction, so the entries form one consistent state even while others write.
    pub(super) fn for_each(
        &self,
        name: &str,
        visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_in(name, (Bound::Unbounded, Bound::Unbounded), visit)
    }

    /// Passes every entry of the table `name` whose key starts with `prefix` to `visit`, in
    /// key order.
    pub(super) fn for_each_prefix(
        &self,
        name: &str,
        prefix: &[u8],
        visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_in(name, prefix_range(prefix), visit)
    }

    fn for_each_in(
        &self,
        name: &str,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let bounds = (as_slice_bound(&range.0), as_slice_bound(&range.1));
        self.with_table(name, |table| {
            for entry in table.range(bounds)? {
                let (key, value) = entry?;
                visit(key.value(), value.value())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Returns up to `limit` entries of the table `name` in key order, starting after the key
    /// `after` (from the first key when `None`).
    pub(super) fn entries_after(
        &self,
        name: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<OwnedEntry>, StoreError> {
        let start: Bound<&[u8]> = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (start, Bound::Unbounded);
        let entries = self.with_table(name, |table| {
            let mut out = Vec::with_capacity(limit.min(4_096));
            for entry in table.range(bounds)?.take(limit) {
                let (key, value) = entry?;
                out.push((key.value().to_vec(), value.value().to_vec()));
            }
            Ok(out)
        })?;
        Ok(entries.unwrap_or_default())
    }

    /// Returns up to `limit` entries of the table `name`, last key first.
    pub(super) fn last_entries(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<OwnedEntry>, StoreError> {
        let entries = self.with_table(name, |table| {
            let mut out = Vec::new();
            for entry in table.iter()?.rev().take(limit) {
                let (key, value) = entry?;
                out.push((key.value().to_vec(), value.value().to_vec()));
            }
            Ok(out)
        })?;
        Ok(entries.unwrap_or_default())
    }

    /// Returns the names of every table.
    pub(super) fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let transaction = self.database.begin_read()?;
        let names = transaction
            .list_tables()?
            .map(|handle| handle.name().to_string())
            .collect();
        Ok(names)
    }

    /// Runs `change` in one write transaction and commits it. An error from `change` aborts
    /// the transaction, so none of its writes land. The call waits while another thread of
    /// this process has a write transaction open.
    pub(super) fn write<T>(
        &self,
        commit: Commit,
        change: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut transaction = self.database.begin_write()?;
        if commit == Commit::Deferred {
            transaction.set_durability(Durability::None)?;
        }
        let value = change(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// Inserts one entry in a durable transaction, for tests that build a store by hand.
    #[cfg(test)]
    pub(super) fn put(&self, name: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(Commit::Durable, |transaction| {
            transaction.open_table(table(name))?.insert(key, value)?;
            Ok(())
        })
    }

    /// Makes every deferred commit durable with an empty durable commit.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.write(Commit::Durable, |_| Ok(()))
    }
}

/// Borrows a bound on an owned key as a bound on a key slice.
pub(super) fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Takes the next id of the store-wide counter in `transaction`, so ids are unique and grow
/// across restarts like the ids of sled's `generate_id` did. The `meta` table must not be
/// open in `transaction` already.
pub(super) fn generate_id(transaction: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = transaction.open_table(table("meta"))?;
    let next = match meta.get(NEXT_ID_KEY)? {
        Some(bytes) => match <[u8; 8]>::try_from(bytes.value()) {
            Ok(bytes) => u64::from_be_bytes(bytes),
            Err(_) => {
                return Err(StoreError::Corrupt {
                    tree: "meta".to_string(),
                    key: String::from_utf8_lossy(NEXT_ID_KEY).into_owned(),
                    message: "the id counter must be 8 bytes".to_string(),
                })
            }
        },
        None => 0,
    };
    meta.insert(NEXT_ID_KEY, &(next + 1).to_be_bytes()[..])?;
    Ok(next)
}

/// Sets the id counter so that the next id is `next`, unless it is already past it.
pub(super) fn raise_next_id(transaction: &WriteTransaction, next: u64) -> Result<(), StoreError> {
    let mut meta = transaction.open_table(table("meta"))?;
    let current = meta
        .get(NEXT_ID_KEY)?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.value()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    if next > current {
        meta.insert(NEXT_ID_KEY, &next.to_be_bytes()[..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_bounds() {
        assert_eq!(
            prefix_range(b"ab"),
            (
                Bound::Included(b"ab".to_vec()),
                Bound::Excluded(b"ac".to_vec())
            )
        );
        assert_eq!(
            prefix_range(b"a\xff"),
            (
                Bound::Included(b"a\xff".to_vec()),
                Bound::Excluded(b"b".to_vec())
            )
        );
        assert_eq!(
            prefix_range(b"\xff"),
            (Bound::Included(b"\xff".to_vec()), Bound::Unbounded)
        );
    }

    /// Reads `keys` with [`Db::visit_many`] as (key, value) pairs.
    fn visited(db: &Db, keys: &[&[u8]]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        db.visit_many("t", keys, |key, value| {
            out.push((key.to_vec(), value.map(<[u8]>::to_vec)));
            Ok(())
        })
        .expect("visit");
        out
    }

    #[test]
    fn visit_many_equals_single_gets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = redb::Database::create(dir.path().join("t.redb")).expect("create");
        let db = Db::new(database);
        let missing: Vec<&[u8]> = vec![b"k001", b"k002"];
        let none: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            missing.iter().map(|k| (k.to_vec(), None)).collect();
        assert_eq!(visited(&db, &missing), none, "a table never created");

        // Every third key of 300 is stored.
        db.write(Commit::Durable, |transaction| {
            let mut t = transaction.open_table(table("t"))?;
            for i in (0..300).step_by(3) {
                let key = format!("k{i:03}");
                t.insert(key.as_bytes(), format!("v{i}").as_bytes())?;
            }
            Ok(())
        })
        .expect("fill");
        let names = |numbers: &[usize]| -> Vec<String> {
            numbers.iter().map(|i| format!("k{i:03}")).collect()
        };
        let cases: Vec<Vec<String>> = vec![
            names(&(0..300).collect::<Vec<_>>()),
            names(&(0..300).step_by(3).collect::<Vec<_>>()),
            // Far apart, so the scan seeks ahead between them.
            names(&[0, 1, 150, 297, 299]),
            // Not ascending, and a repeated key.
            names(&[30, 3, 3, 299]),
            vec!["a".into(), "z".into()],
            Vec::new(),
        ];
        for case in cases {
            let keys: Vec<&[u8]> = case.iter().map(|k| k.as_bytes()).collect();
            let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys
                .iter()
                .map(|key| (key.to_vec(), db.get("t", key).expect("get")))
                .collect();
            assert_eq!(visited(&db, &keys), expected, "keys {case:?}");
        }
    }
}
