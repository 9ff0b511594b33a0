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
}
