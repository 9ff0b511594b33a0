//! Records that changed since a step last looked at them, so the rep-flag scan and the push
//! read those instead of every record of the level.
//!
//! While an object is tracked (the pull tracks the objects of the configured levels), every
//! page the pull stores marks its records in two tables, `pending/flags` and `pending/push`,
//! in the page's own transaction. The score writer marks in `pending/push` every row whose
//! written values differ from the live run's row. A mark maps `<object>\0<id>` to the
//! store-wide id of the transaction that made it, so a reader that starts at id `n` clears
//! only marks older than `n` and keeps those made while it ran.
//!
//! A reader may rely on the marks only after it has read every record once while the object
//! was tracked. It stores the tracking epoch it saw with its last whole scan. A missing or
//! different epoch (tracking stopped and started again, a new store, an older version's
//! store) sends it back to a whole scan. Marks for a reader are made only once it has begun
//! a whole scan under the current epoch, so a first full cycle marks nothing.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use redb::ReadableTable;

use super::store_db::{generate_id, prefix_range, table, Commit, Table};
use super::{Store, StoreError};

/// The reader a mark waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingKind {
    /// The rep-flag scan at the end of each pull.
    Flags,
    /// The push of the object's level.
    Push,
}

impl PendingKind {
    fn table(self) -> &'static str {
        match self {
            PendingKind::Flags => "pending/flags",
            PendingKind::Push => "pending/push",
        }
    }

    fn scanned_key(self, object: &str) -> String {
        match self {
            PendingKind::Flags => format!("pending:flags-scanned:{object}"),
            PendingKind::Push => format!("pending:push-scanned:{object}"),
        }
    }

    fn requested_key(self, object: &str) -> String {
        match self {
            PendingKind::Flags => format!("pending:flags-requested:{object}"),
            PendingKind::Push => format!("pending:push-requested:{object}"),
        }
    }
}

/// Returns the `meta` key of an object's tracking epoch, present while its changes are marked.
fn tracking_key(object: &str) -> String {
    format!("pending:tracking:{object}")
}

/// Returns the key of a mark: the object, a zero byte, the record id.
fn mark_key(object: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(object.len() + 1 + id.len());
    key.extend_from_slice(object.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Returns the prefix every mark of `object` starts with.
fn object_prefix(object: &str) -> Vec<u8> {
    mark_key(object, "")
}

/// Returns the transaction id stored in a mark. A value of another length counts as the oldest.
fn mark_id(value: &[u8]) -> u64 {
    <[u8; 8]>::try_from(value).map_or(0, u64::from_be_bytes)
}

/// Inserts a mark with the transaction id `id` for each of `ids` into `marks`.
fn insert_marks<'i>(
    marks: &mut Table<'_>,
    object: &str,
    ids: impl IntoIterator<Item = &'i str>,
    id: u64,
) -> Result<(), StoreError> {
    let value = id.to_be_bytes();
    for record in ids {
        marks.insert(mark_key(object, record).as_slice(), &value[..])?;
    }
    Ok(())
}

/// Returns the readers of `object` that requested marks: those that began a whole scan under the
/// current tracking epoch. Before that a reader reads every record anyway, so marking for it
/// would only cost the pull and the score step (a first full cycle marks every record).
fn requesting(
    transaction: &redb::WriteTransaction,
    object: &str,
    kinds: &[PendingKind],
) -> Result<Vec<PendingKind>, StoreError> {
    let meta = transaction.open_table(table("meta"))?;
    let Some(epoch) = meta.get(tracking_key(object).as_bytes())? else {
        return Ok(Vec::new());
    };
    let epoch = epoch.value().to_vec();
    let mut requesting = Vec::new();
    for &kind in kinds {
        let requested = meta.get(kind.requested_key(object).as_bytes())?;
        if requested.is_some_and(|requested| requested.value() == epoch.as_slice()) {
            requesting.push(kind);
        }
    }
    Ok(requesting)
}

/// Marks `ids` of `object` inside `transaction` for each reader of `kinds` that requested marks.
fn mark<'i>(
    transaction: &redb::WriteTransaction,
    object: &str,
    ids: impl IntoIterator<Item = &'i str> + Clone,
    kinds: &[PendingKind],
) -> Result<(), StoreError> {
    if ids.clone().into_iter().next().is_none() {
        return Ok(());
    }
    let requesting = requesting(transaction, object, kinds)?;
    if requesting.is_empty() {
        return Ok(());
    }
    let id = generate_id(transaction)?;
    for kind in requesting {
        let mut marks = transaction.open_table(table(kind.table()))?;
        insert_marks(&mut marks, object, ids.clone(), id)?;
    }
    Ok(())
}

/// Marks `ids` of `object` inside `transaction` for both readers. The pull calls it with
/// every page it stores.
pub(super) fn mark_pulled<'i>(
    transaction: &redb::WriteTransaction,
    object: &str,
    ids: impl IntoIterator<Item = &'i str> + Clone,
) -> Result<(), StoreError> {
    mark(
        transaction,
        object,
        ids,
        &[PendingKind::Flags, PendingKind::Push],
    )
}

/// Marks `ids` of `object` inside `transaction` for the push.
pub(super) fn mark_for_push<'i>(
    transaction: &redb::WriteTransaction,
    object: &str,
    ids: impl IntoIterator<Item = &'i str> + Clone,
) -> Result<(), StoreError> {
    mark(transaction, object, ids, &[PendingKind::Push])
}

/// Change tracking, a child of the store.
impl Store {
    /// Starts marking the changes of `object` when `on` and it is not tracked yet, or stops
    /// and drops its marks when not `on`. A restart gets a new epoch, so readers scan every
    /// record once more before they rely on the marks again.
    pub fn track_changes(&self, object: &str, on: bool) -> Result<(), StoreError> {
        let key = tracking_key(object);
        let tracked = self.db.get("meta", key.as_bytes())?.is_some();
        if tracked == on {
            return Ok(());
        }
        self.db.write(Commit::Durable, |transaction| {
            if on {
                let epoch = generate_id(transaction)?;
                transaction
                    .open_table(table("meta"))?
                    .insert(key.as_bytes(), &epoch.to_be_bytes()[..])?;
                return Ok(());
            }
            transaction
                .open_table(table("meta"))?
                .remove(key.as_bytes())?;
            let (start, end) = prefix_range(&object_prefix(object));
            for kind in [PendingKind::Flags, PendingKind::Push] {
                let mut marks = transaction.open_table(table(kind.table()))?;
                let bounds = (
                    super::store_db::as_slice_bound(&start),
                    super::store_db::as_slice_bound(&end),
                );
                marks.retain_in(bounds, |_, _| false)?;
            }
            Ok(())
        })
    }

    /// Returns the epoch of `object`'s tracking, or `None` when its changes are not marked.
    pub fn tracking_epoch(&self, object: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get("meta", tracking_key(object).as_bytes())?
            .map(|value| mark_id(&value)))
    }

    /// Returns what the reader `kind` stored after its last whole scan of `object`.
    pub fn pending_scanned(
        &self,
        kind: PendingKind,
        object: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get("meta", kind.scanned_key(object).as_bytes())?
            .map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    /// Records that the reader `kind` scanned every record of `object` under `stamp`, the
    /// tracking epoch and whatever else its reading depends on.
    pub fn set_pending_scanned(
        &self,
        kind: PendingKind,
        object: &str,
        stamp: &str,
    ) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            transaction
                .open_table(table("meta"))?
                .insert(kind.scanned_key(object).as_bytes(), stamp.as_bytes())?;
            Ok(())
        })
    }

    /// Returns a transaction id later than every mark made so far: a reader that starts here
    /// and later clears the marks older than it keeps those made while it ran.
    pub fn pending_start(&self) -> Result<u64, StoreError> {
        self.db.write(Commit::Deferred, generate_id)
    }

    /// Returns a start like [`Store::pending_start`] for a reader `kind` about to read every
    /// record of `object`, and from then on marks changes for it under the current epoch.
    pub fn begin_whole_scan(&self, kind: PendingKind, object: &str) -> Result<u64, StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            let mut meta = transaction.open_table(table("meta"))?;
            let epoch = meta
                .get(tracking_key(object).as_bytes())?
                .map(|epoch| epoch.value().to_vec());
            if let Some(epoch) = epoch {
                meta.insert(kind.requested_key(object).as_bytes(), epoch.as_slice())?;
            }
            drop(meta);
            generate_id(transaction)
        })
    }

    /// Returns up to `limit` ids of `object` marked for `kind`, in id order, after `after`.
    pub fn pending_ids(
        &self,
        kind: PendingKind,
        object: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // With no `after` the read starts just past the bare prefix, which no mark equals.
        let prefix = object_prefix(object);
        let start = after.map_or_else(|| prefix.clone(), |id| mark_key(object, id));
        let mut ids = Vec::new();
        for (key, _) in self
            .db
            .entries_after(kind.table(), Some(&start), limit + 1)?
        {
            if !key.starts_with(&prefix) || ids.len() == limit {
                break;
            }
            ids.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(ids)
    }

    /// Returns the number of marks of `object` for `kind`.
    pub fn pending_count(&self, kind: PendingKind, object: &str) -> Result<usize, StoreError> {
        let mut count = 0;
        self.db
            .for_each_prefix(kind.table(), &object_prefix(object), |_, _| {
                count += 1;
                Ok(())
            })?;
        Ok(count)
    }

    /// Drops the marks of `object` for `kind` made before `start` (see
    /// [`Store::pending_start`]), except those of `keep`, which get a new mark, so a record
    /// whose write failed is looked at again by the next reader.
    pub fn clear_pending(
        &self,
        kind: PendingKind,
        object: &str,
        start: u64,
        keep: &[&str],
    ) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            let id = if keep.is_empty() {
                None
            } else {
                Some(generate_id(transaction)?)
            };
            let mut marks = transaction.open_table(table(kind.table()))?;
            let (low, high) = prefix_range(&object_prefix(object));
            let bounds = (
                super::store_db::as_slice_bound(&low),
                super::store_db::as_slice_bound(&high),
            );
            marks.retain_in(bounds, |_, value| mark_id(value) >= start)?;
            if let Some(id) = id {
                insert_marks(&mut marks, object, keep.iter().copied(), id)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use leadscore_connector::{Cursor, Record};

    fn record(object: &str, id: &str) -> Record {
        Record {
            object: object.to_string(),
            id: id.to_string(),
            modstamp: Utc
                .with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
                .single()
                .expect("time"),
            deleted: false,
            fields: Default::default(),
        }
    }

    fn cursor() -> Cursor {
        Cursor {
            modstamp: Utc
                .with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
                .single()
                .expect("time"),
            id: "z".to_string(),
        }
    }

    fn all(store: &Store, kind: PendingKind, object: &str) -> Vec<String> {
        store
            .pending_ids(kind, object, None, 100)
            .expect("pending ids")
    }

    #[test]
    fn pages_mark_only_tracked_objects() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store
            .save_page("Contact", &[record("Contact", "003a")], &cursor())
            .expect("page");
        assert!(all(&store, PendingKind::Push, "Contact").is_empty());

        store.track_changes("Contact", true).expect("track");
        let epoch = store.tracking_epoch("Contact").expect("epoch");
        assert!(epoch.is_some());
        // A reader that has not begun a whole scan gets no marks.
        store
            .save_page("Contact", &[record("Contact", "003z")], &cursor())
            .expect("page");
        assert!(all(&store, PendingKind::Flags, "Contact").is_empty());

        for kind in [PendingKind::Flags, PendingKind::Push] {
            store.begin_whole_scan(kind, "Contact").expect("begin");
            store.begin_whole_scan(kind, "Account").expect("begin");
        }
        store
            .save_page(
                "Contact",
                &[record("Contact", "003b"), record("Contact", "003c")],
                &cursor(),
            )
            .expect("page");
        store
            .save_records("Account", &[record("Account", "001a")])
            .expect("records");
        for kind in [PendingKind::Flags, PendingKind::Push] {
            assert_eq!(all(&store, kind, "Contact"), ["003b", "003c"]);
            assert!(all(&store, kind, "Account").is_empty());
        }
        // Tracking again keeps the epoch; stopping drops the marks.
        store.track_changes("Contact", true).expect("track");
        assert_eq!(store.tracking_epoch("Contact").expect("epoch"), epoch);
        store.track_changes("Contact", false).expect("stop");
        assert_eq!(store.tracking_epoch("Contact").expect("epoch"), None);
        assert!(all(&store, PendingKind::Flags, "Contact").is_empty());
        store.track_changes("Contact", true).expect("track");
        assert_ne!(store.tracking_epoch("Contact").expect("epoch"), epoch);
        // The readers began their scans under the old epoch, so they get no marks.
        store
            .save_page("Contact", &[record("Contact", "003d")], &cursor())
            .expect("page");
        assert!(all(&store, PendingKind::Push, "Contact").is_empty());
    }

    #[test]
    fn clearing_keeps_later_marks_and_failures() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.track_changes("Lead", true).expect("track");
        for kind in [PendingKind::Flags, PendingKind::Push] {
            store.begin_whole_scan(kind, "Lead").expect("begin");
        }

        store
            .save_records(
                "Lead",
                &[
                    record("Lead", "00Qa"),
                    record("Lead", "00Qb"),
                    record("Lead", "00Qc"),
                ],
            )
            .expect("records");
        let start = store.pending_start().expect("start");
        // Marked while the reader ran: kept.
        store
            .save_records("Lead", &[record("Lead", "00Qd")])
            .expect("records");
        store
            .clear_pending(PendingKind::Push, "Lead", start, &["00Qb"])
            .expect("clear");
        assert_eq!(all(&store, PendingKind::Push, "Lead"), ["00Qb", "00Qd"]);

        // The other reader's marks are its own.
        assert_eq!(all(&store, PendingKind::Flags, "Lead").len(), 4);
        assert_eq!(
            store
                .pending_ids(PendingKind::Flags, "Lead", Some("00Qb"), 1)
                .expect("page"),
            ["00Qc"]
        );
        assert_eq!(
            store
                .pending_count(PendingKind::Flags, "Lead")
                .expect("count"),
            4
        );
    }
}
