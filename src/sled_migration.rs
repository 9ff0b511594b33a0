//! The migration of a store of format `leadscore-store-1`, kept by sled 0.34, to redb.
//!
//! [`migrate`] copies every sled tree into a redb table of the same name in
//! `leadscore.redb.migrating` inside the store folder, stamps the new format in the last,
//! durable commit, and renames the file to `leadscore.redb`. Only then are sled's files moved
//! into the folder [`SLED_BACKUP_DIR`] inside the store, by [`finish`]. A process killed
//! before the rename leaves the sled files as they were and a partial `.migrating` file that
//! the next open deletes before it starts again. One killed after the rename leaves a
//! complete redb store, and the next open moves the remaining sled files aside.
//!
//! This file is a child module of `store`, the only code that still reads sled.

use std::path::Path;

use super::store_db::{raise_next_id, table, Commit, Db};
use super::{catch_panic, folder_error, open_redb, write_format_marker, StoreError};
use super::{DB_FILE, FORMAT, FORMAT_FILE, PAGE_CACHE_BYTES};

/// The format of the sled stores this migration reads.
const SLED_FORMAT: &str = "leadscore-store-1";
/// The folder inside the store that the sled files are moved into once migrated.
pub(super) const SLED_BACKUP_DIR: &str = "sled-store-1-backup";
/// The redb file while the migration fills it.
const MIGRATING_FILE: &str = "leadscore.redb.migrating";
/// Entries copied per redb write transaction, so memory stays bounded on large trees.
const COPY_CHUNK_ENTRIES: usize = 10_000;

/// Returns true for the names sled 0.34 keeps at the top of its folder, and for the files
/// a migration leaves there.
pub(super) fn is_sled_file(name: &str) -> bool {
    matches!(
        name,
        "conf" | "db" | "blobs" | SLED_BACKUP_DIR | MIGRATING_FILE
    ) || name.starts_with("snap.")
}

/// Returns true when `path` contains sled's `conf` or `db` file.
pub(super) fn holds_sled_store(path: &Path) -> bool {
    path.join("conf").exists() || path.join("db").exists()
}

/// Maps an error of sled during the migration to the error the user acts on.
fn sled_error(path: &Path, error: sled::Error) -> StoreError {
    match &error {
        sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock") => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("sled could not read it for the migration to redb: {error}"),
        },
        _ => StoreError::Migration {
            path: path.to_path_buf(),
            detail: error.to_string(),
        },
    }
}

/// Opens the sled store in `path`, catching sled's panics on damaged files. The copy reads
/// each tree once, so sled's page cache is kept at the size the redb store uses.
fn open_sled(path: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(PAGE_CACHE_BYTES as u64);
    match catch_panic(|| config.open()) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(sled_error(path, error)),
        Err(message) => Err(StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("sled panicked while opening it for the migration: {message}"),
        }),
    }
}

/// Copies the sled store in `path` into a new redb file and renames that file into place.
/// The module documentation lists what a kill at each step leaves.
pub(super) fn migrate(path: &Path) -> Result<(), StoreError> {
    let sled_db = open_sled(path)?;
    let meta = sled_db.open_tree("meta").map_err(|e| sled_error(path, e))?;
    match meta.get("format").map_err(|e| sled_error(path, e))? {
        Some(found) if found.as_ref() == SLED_FORMAT.as_bytes() => {}
        Some(found) => {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&found).into_owned(),
            })
        }
        None => {
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                detail: "its sled files exist but contain no format stamp, so their contents \
                         were lost"
                    .to_string(),
            })
        }
    }
    tracing::info!(path = %path.display(), "migrating the store from sled to redb");

    let started = std::time::Instant::now();
    let migrating = path.join(MIGRATING_FILE);
    if migrating.exists() {
        std::fs::remove_file(&migrating).map_err(|e| folder_error(path, e))?;
    }
    let db = Db::new(open_redb(path, &migrating, true)?);

    let mut entries = 0u64;
    for name in sled_db.tree_names() {
        // sled's default tree contains nothing of leadscore's.
        if name.as_ref() == b"__sled__default" {
            continue;
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let tree = sled_db.open_tree(&name).map_err(|e| sled_error(path, e))?;
        entries += copy_tree(path, &db, &name, &tree)?;
    }
    // sled's next id is past every id it generated before, so the redb counter continues
    // above the keys of the copied promotions, events, journal entries and flags.
    let next_id = sled_db.generate_id().map_err(|e| sled_error(path, e))?;
    db.write(Commit::Durable, |transaction| {
        raise_next_id(transaction, next_id)?;
        let mut meta = transaction.open_table(table("meta"))?;
        meta.insert(&b"format"[..], FORMAT.as_bytes())?;
        Ok(())
    })?;

    drop(db);
    drop(sled_db);
    std::fs::rename(&migrating, path.join(DB_FILE)).map_err(|e| folder_error(path, e))?;
    sync_folder(path).map_err(|e| folder_error(path, e))?;
    tracing::info!(
        path = %path.display(),
        entries,
        seconds = started.elapsed().as_secs_f64(),
        "copied the sled store into redb"
    );
    Ok(())
}

/// Copies one sled tree into the redb table of the same name. Returns the entries copied.
fn copy_tree(path: &Path, db: &Db, name: &str, tree: &sled::Tree) -> Result<u64, StoreError> {
    let mut copied = 0u64;
    let mut chunk: Vec<(sled::IVec, sled::IVec)> = Vec::with_capacity(COPY_CHUNK_ENTRIES);
    let mut entries = tree.iter();
    loop {
        let next = entries
            .next()
            .transpose()
            .map_err(|e| sled_error(path, e))?;
        let done = next.is_none();
        if let Some(entry) = next {
            chunk.push(entry);
        }
        if chunk.len() == COPY_CHUNK_ENTRIES || (done && !chunk.is_empty()) {
            // Deferred: the final commit of the migration is durable and covers these.
            db.write(Commit::Deferred, |transaction| {
                let mut table = transaction.open_table(table(name))?;
                for (key, value) in &chunk {
                    table.insert(key.as_ref(), value.as_ref())?;
                }
                Ok(())
            })?;
            copied += chunk.len() as u64;
            chunk.clear();
        }
        if done {
            break;
        }
    }
    // An empty tree still gets its table, so the table names match the tree names.
    if copied == 0 {
        db.write(Commit::Deferred, |transaction| {
            transaction.open_table(table(name))?;
            Ok(())
        })?;
    }
    Ok(copied)
}

/// Finishes a migration whose redb file is in place: writes the format marker if it is
/// missing, moves sled's files into [`SLED_BACKUP_DIR`] and deletes a leftover
/// `.migrating` file. Does nothing in a store without sled files.
pub(super) fn finish(path: &Path) -> Result<(), StoreError> {
    let io_error = |e| folder_error(path, e);
    if !path.join(FORMAT_FILE).exists() {
        write_format_marker(path).map_err(io_error)?;
    }
    let migrating = path.join(MIGRATING_FILE);
    if migrating.exists() {
        std::fs::remove_file(&migrating).map_err(io_error)?;
    }

    let mut sled_files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let name = entry.map_err(io_error)?.file_name();
        let name = name.to_string_lossy();
        if is_sled_file(&name) && name != SLED_BACKUP_DIR && name != MIGRATING_FILE {
            sled_files.push(name.into_owned());
        }
    }
    if sled_files.is_empty() {
        return Ok(());
    }

    let backup = path.join(SLED_BACKUP_DIR);
    if !backup.exists() {
        crate::private_files::create_private_dir(&backup).map_err(io_error)?;
    }
    for name in &sled_files {
        std::fs::rename(path.join(name), backup.join(name)).map_err(io_error)?;
    }
    sync_folder(path).map_err(io_error)?;
    tracing::info!(
        backup = %backup.display(),
        "the store now uses redb; the sled files of the previous format were moved to the \
         backup folder, which can be deleted once the store is known to work"
    );
    Ok(())
}

/// Syncs a folder, so that a rename inside it survives a power loss.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::Flag;
    use crate::level::Level;
    use crate::store::{
        encode, JournalEntry, ModelEntry, Promotion, PromotionCause, ScoreRow, Store, StoredModel,
        WrittenValues,
    };
    use chrono::{DateTime, TimeZone, Utc};
    use leadscore_connector::{Cursor, Record, Value};
    use std::collections::BTreeMap;

    fn time(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, second)
            .single()
            .expect("valid time")
    }

    fn record(id: &str, second: u32) -> Record {
        Record {
            object: "Account".into(),
            id: id.into(),
            modstamp: time(second),
            deleted: false,
            fields: BTreeMap::from([("Name".to_string(), Value::Text(format!("n{id}")))]),
        }
    }

    fn score(id: &str) -> ScoreRow {
        ScoreRow {
            object: "Account".into(),
            id: id.into(),
            name: format!("n{id}"),
            owner_id: None,
            probability: 0.7,
            score: 70.0,
            tier: "A".into(),
            reasons: vec!["reason".into()],
            hint: None,
            sales_ready: None,
            model_version: "v1".into(),
            scored_at: time(9),
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        }
    }

    fn flag(id: &str, second: u32) -> Flag {
        Flag {
            object: "Account".into(),
            id: id.into(),
            level: Level::Account,
            value: crate::feedback::FlagValue::TooHigh,
            comment: None,
            modified_at: time(second),
            score: Some(70.0),
            tier: Some("A".into()),
            reasons: Vec::new(),
            model_version: Some("v1".into()),
            recorded_at: time(second),
        }
    }

    fn written(score: f64) -> WrittenValues {
        WrittenValues {
            score,
            tier: "A".into(),
            reasons: "r".into(),
            sales_ready: None,
            model_version: "v1".into(),
            written_at: time(5),
        }
    }

    /// Writes a store the way the sled code of format `leadscore-store-1` laid it out:
    /// the same tree names, keys and JSON values.
    fn write_sled_store(path: &Path) {
        let db = sled::open(path).expect("sled opens");
        let tree = |name: &str| db.open_tree(name).expect("tree");
        tree("meta").insert("format", SLED_FORMAT).expect("format");
        tree("meta")
            .insert("source", "https://org.example")
            .expect("source");
        let records = tree("records/Account");
        for (id, second) in [("001a", 1), ("001b", 2), ("001c", 3)] {
            records
                .insert(id, encode(&record(id, second)))
                .expect("record");
        }
        let cursor = Cursor {
            modstamp: time(3),
            id: "001c".into(),
        };
        tree("cursors")
            .insert("Account", encode(&cursor))
            .expect("cursor");
        let model = StoredModel {
            version: "v1".into(),
            level: Level::Account,
            trained_at: time(4),
            features: serde_json::json!({"columns": ["a"]}),
            report: serde_json::json!({"metrics": {"auc": 0.8}}),
            model: vec![7, 8, 9],
        };
        tree("models").insert("v1", encode(&model)).expect("model");
        tree("registry")
            .insert("v1", encode(&ModelEntry::from_model(&model)))
            .expect("entry");
        let promotion = Promotion {
            version: "v1".into(),
            previous: None,
            at: time(4),
            cause: PromotionCause::Trained,
            note: "stored as the live model".into(),
        };
        tree("promotions")
            .insert(
                db.generate_id().expect("id").to_be_bytes(),
                encode(&promotion),
            )
            .expect("promotion");
        tree("meta").insert("current_model", "v1").expect("live");
        let run = "scores:run-0000000000000005";
        for id in ["001a", "001b"] {
            tree(run).insert(id, encode(&score(id))).expect("score");
        }
        tree("meta").insert("scores:live", run).expect("pointer");
        for (id, second) in [("001a", 6), ("001b", 7)] {
            let flag = flag(id, second);
            tree("feedback_flags")
                .insert(db.generate_id().expect("id").to_be_bytes(), encode(&flag))
                .expect("flag");
            tree("feedback_latest")
                .insert(format!("Account/{id}"), encode(&flag))
                .expect("latest");
        }
        tree("written")
            .insert("001a", encode(&written(70.0)))
            .expect("written");
        let entry = JournalEntry {
            object: "Account".into(),
            level: Level::Account,
            started_at: time(8),
            writes: Vec::new(),
        };
        tree("journal")
            .insert(db.generate_id().expect("id").to_be_bytes(), encode(&entry))
            .expect("journal");
        db.flush().expect("flush");
    }

    #[test]
    fn sled_store_migrated_on_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        write_sled_store(&path);

        let store = Store::open(&path).expect("the sled store migrates");
        let ids: Vec<String> = store
            .records("Account")
            .expect("records")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["001a", "001b", "001c"]);
        let cursor = store.cursor("Account").expect("cursor").expect("a cursor");
        assert_eq!(cursor.id, "001c");
        let model = store.current_model().expect("model").expect("a live model");
        assert_eq!(model.version, "v1");
        assert_eq!(model.model, vec![7, 8, 9]);
        assert_eq!(store.promotions().expect("promotions").len(), 1);
        let scores: Vec<String> = store
            .scores()
            .expect("scores")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(scores, ["001a", "001b"]);
        assert_eq!(store.flags().expect("flags").len(), 2);
        assert_eq!(store.latest_flags().expect("latest").len(), 2);
        assert_eq!(store.written().expect("written")["001a"].score, 70.0);
        assert_eq!(store.journal().expect("journal").len(), 1);
        store
            .bind_source("https://org.example")
            .expect("the source binding was copied");

        // New ids continue above the copied ones, so new flags sort after the old ones.
        store.record_flags(&[flag("001c", 10)]).expect("new flag");
        let order: Vec<String> = store
            .flags()
            .expect("flags")
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(order, ["001a", "001b", "001c"]);

        assert!(path.join(DB_FILE).exists());
        assert!(!path.join("conf").exists(), "sled's conf was moved aside");
        assert!(!path.join("db").exists(), "sled's db was moved aside");
        assert!(path.join(SLED_BACKUP_DIR).join("db").exists());
        assert!(!path.join(MIGRATING_FILE).exists());
        drop(store);

        let reopened = Store::open(&path).expect("the migrated store reopens");
        assert_eq!(reopened.record_count("Account").expect("count"), 3);
    }

    #[test]
    fn interrupted_migration_redone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        write_sled_store(&path);
        // A process killed part way through the copy leaves a partial file.
        std::fs::write(path.join(MIGRATING_FILE), b"partial").expect("partial file");

        let store = Store::open(&path).expect("the migration starts again");
        assert_eq!(store.record_count("Account").expect("count"), 3);
        assert!(!path.join(MIGRATING_FILE).exists());
    }

    #[test]
    fn renamed_migration_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        write_sled_store(&path);
        drop(Store::open(&path).expect("migrates"));
        // A process killed after the rename but before the sled files were moved aside.
        let backup = path.join(SLED_BACKUP_DIR);
        for name in ["conf", "db"] {
            std::fs::rename(backup.join(name), path.join(name)).expect("move back");
        }
        std::fs::remove_file(path.join(FORMAT_FILE)).expect("remove marker");

        let store = Store::open(&path).expect("opens the redb store");
        assert_eq!(store.record_count("Account").expect("count"), 3);
        assert!(!path.join("db").exists());
        assert!(path.join(FORMAT_FILE).exists());
    }

    #[test]
    fn sled_store_of_other_format_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        {
            let db = sled::open(&path).expect("sled opens");
            db.open_tree("meta")
                .expect("meta")
                .insert("format", "leadscore-store-0")
                .expect("format");
            db.flush().expect("flush");
        }
        let err = Store::open(&path).err().expect("refused");
        assert!(err.to_string().contains("leadscore-store-0"), "{err}");
        assert!(path.join("db").exists(), "the sled files stay");
        assert!(!path.join(DB_FILE).exists());
    }
}
