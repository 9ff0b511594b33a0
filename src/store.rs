//! The embedded store (redb): pulled records, incremental cursors, trained models with their
//! registry entries and promotion history, scores and the last values written to the CRM. No
//! other module touches redb.
//!
//! The store is a folder that contains one redb file, [`DB_FILE`], and the format marker
//! [`FORMAT_FILE`]. Values are JSON so a store can be inspected and migrated, apart from the
//! records, which the history load decodes by the million and so are binary (`record_codec`
//! child module), and the activity tables (`activity_index` child module), a binary copy
//! rebuilt from the records when missing. The format version is kept under `meta/format` and
//! in the marker; a store written by another format is refused rather than misread. A store of
//! the previous format, whose records are JSON, is stamped with the current one on open and
//! its records are rewritten later. A folder that still contains a sled store of format
//! `leadscore-store-1` is migrated to redb on open (see the `sled_migration` child module).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use leadscore_connector::{Cursor, Record};

use crate::level::Level;
use redb::ReadableTable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use store_db::{generate_id, table, Commit, Db};

const FORMAT: &str = "leadscore-store-3";
/// The format before records were stored in binary form. It differs only in that, so such a
/// store is stamped with [`FORMAT`] on open and its JSON records are read as they are.
const JSON_RECORDS_FORMAT: &str = "leadscore-store-2";
/// The redb database file inside the store folder.
pub const DB_FILE: &str = "leadscore.redb";
/// The file whose presence marks a folder as a redb store, so that a store whose database
/// file went missing is reported as damaged instead of being created again empty.
const FORMAT_FILE: &str = "leadscore.format";
/// Attempts, 50 ms apart, to take a store lock that another process holds.
const LOCK_RETRIES: u32 = 40;

/// Maximum bytes of pages that redb caches in memory; redb 5 defaults to 1 GiB. Train and
/// score read each record table from start to end once per level, so a cache larger than
/// this adds resident memory but saves few reads.
const PAGE_CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} already contains other files ({example}, ...) and is not a leadscore store; point [store] path at a new or empty directory")]
    NotAStore { path: PathBuf, example: String },
    #[error("the store at {path} is in use by another leadscore process; wait for it to finish")]
    Locked { path: PathBuf },
    #[error("cannot open the store at {path}: {source}; check that [store] path names a directory this user can read and write")]
    Open { path: PathBuf, source: redb::Error },
    #[error("the store path {path} is a file, not a directory; point [store] path at a directory")]
    NotADirectory { path: PathBuf },
    #[error("the store at {path} is damaged and cannot be read ({detail}). {}", recovery_steps(.path))]
    Damaged { path: PathBuf, detail: String },
    #[error("the store at {path} has format {found:?}, this build reads {FORMAT:?}; point [store] path at a new directory")]
    Format { path: PathBuf, found: String },
    #[error("the store at {path} contains data from {bound}, not {requested}; point [store] path at a new directory for this org")]
    OtherSource {
        path: PathBuf,
        bound: String,
        requested: String,
    },
    #[error("migrating the sled store at {path} to redb failed: {detail}. The sled files were not changed; fix the cause and run the command again, which restarts the migration")]
    Migration { path: PathBuf, detail: String },
    #[error("store operation failed: {0}{hint}", hint = damage_hint(.0))]
    Db(#[from] redb::Error),
    #[error("corrupt entry in store tree {tree:?} key {key:?}: {message}")]
    Corrupt {
        tree: String,
        key: String,
        message: String,
    },
}

/// Converts each of redb's narrower error types through `redb::Error`, so `?` works on them.
macro_rules! from_redb_errors {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> StoreError {
                StoreError::Db(error.into())
            }
        })*
    };
}
from_redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The scores of one record, as computed by the last `score` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    pub object: String,
    pub id: String,
    pub name: String,
    pub owner_id: Option<String>,
    pub probability: f64,
    pub score: f64,
    pub tier: String,
    pub reasons: Vec<String>,
    /// The change that would raise the score most, when it would add enough points.
    #[serde(default)]
    pub hint: Option<crate::hints::Hint>,
    /// For leads with a hand-off threshold: whether the score reaches it.
    #[serde(default)]
    pub sales_ready: Option<bool>,
    pub model_version: String,
    pub scored_at: DateTime<Utc>,
    /// Fingerprint of everything the reasons were computed from, so that the next run can
    /// reuse them when it matches (see `score_reuse`). Rows stored before it existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons_key: Option<String>,
    /// Key of every input the row was computed from apart from the time (see
    /// `score_validity`): a later run whose key for the record is equal keeps the row until
    /// `valid_until`. Rows stored before it existed have none and are scored again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_key: Option<String>,
    /// The time the row was computed as of (`[scoring] as_of`, or the time of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// The earliest time at which the passing of time alone may change the row; `None` when
    /// it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// The values last written to one CRM record successfully.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenValues {
    pub score: f64,
    pub tier: String,
    pub reasons: String,
    #[serde(default)]
    pub sales_ready: Option<bool>,
    pub model_version: String,
    pub written_at: DateTime<Utc>,
}

/// A trained model with its feature encoding and validation report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredModel {
    pub version: String,
    /// The level the model scores; models stored before levels existed are account models.
    #[serde(default)]
    pub level: Level,
    pub trained_at: DateTime<Utc>,
    /// The feature encoding, as JSON owned by the features module.
    pub features: serde_json::Value,
    /// The validation report, as JSON owned by the pipeline.
    pub report: serde_json::Value,
    /// Model bytes from [`crate::model::Model::to_bytes`].
    pub model: Vec<u8>,
}

/// Registry metadata of one training run, stored beside its model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub version: String,
    #[serde(default)]
    pub level: Level,
    pub trained_at: DateTime<Utc>,
    /// Earliest and latest close dates of the training examples.
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    /// Hash of the configuration that shaped training.
    pub config_hash: String,
    /// Names of the model's input columns, in row order.
    pub feature_names: Vec<String>,
    /// Ids of the held-out deals the AUCs below were measured on.
    pub holdout_ids: Vec<String>,
    /// ROC AUC on the holdout rows, or `None` when the holdout contains only one outcome.
    pub holdout_auc: Option<f64>,
    /// Version of the model that was live when this one was published.
    pub live_version_at_publish: Option<String>,
    /// That live model's ROC AUC on the same holdout rows.
    pub live_holdout_auc: Option<f64>,
    /// Outcome of the promotion decision at publish time, in words.
    pub decision: String,
}

impl ModelEntry {
    /// Derives an entry from a model stored without registry metadata. The AUC is read from
    /// the report under `metrics.auc` or `holdout_auc`.
    pub fn from_model(model: &StoredModel) -> ModelEntry {
        let auc = model
            .report
            .pointer("/metrics/auc")
            .or_else(|| model.report.get("holdout_auc"))
            .and_then(serde_json::Value::as_f64);
        ModelEntry {
            version: model.version.clone(),
            level: model.level,
            trained_at: model.trained_at,
            window_from: None,
            window_to: None,
            config_hash: String::new(),
            feature_names: Vec::new(),
            holdout_ids: Vec::new(),
            holdout_auc: auc,
            live_version_at_publish: None,
            live_holdout_auc: None,
            decision: "stored without registry metadata".to_string(),
        }
    }
}

/// Cause of a model becoming the live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionCause {
    /// Training published it and it passed the promotion gate.
    Trained,
    /// An admin promoted it by hand.
    Promoted,
    /// An admin rolled back to it.
    Rollback,
}

impl PromotionCause {
    /// Returns true for the causes an admin triggers by hand.
    pub fn is_manual(self) -> bool {
        matches!(self, PromotionCause::Promoted | PromotionCause::Rollback)
    }
}

/// One change of the live model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// The version that became live.
    pub version: String,
    /// The version it replaced, if a model was live.
    pub previous: Option<String>,
    pub at: DateTime<Utc>,
    pub cause: PromotionCause,
    pub note: String,
}

/// The store, seen at one scoring level. Records, cursors, models and write history are
/// shared by all levels, while the live model, the promotion history and the scores are per
/// level.
#[derive(Clone)]
pub struct Store {
    db: Db,
    path: PathBuf,
    level: Level,
}

fn records_tree(object: &str) -> String {
    format!("records/{object}")
}

fn decode<T: DeserializeOwned>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| corrupt(tree, key, err))
}

/// Decodes the record stored under `key` in `tree`, in either of its forms.
fn decode_record(tree: &str, key: &[u8], bytes: &[u8]) -> Result<Record, StoreError> {
    record_codec::decode(bytes).map_err(|message| corrupt(tree, key, message))
}

/// Decodes the record stored under `key` in `tree` with only the fields named in `keep`.
fn decode_with(tree: &str, key: &[u8], bytes: &[u8], keep: &[&str]) -> Result<Record, StoreError> {
    record_codec::decode_with(bytes, keep).map_err(|message| corrupt(tree, key, message))
}

/// Builds the error for the stored value under `key` in `tree` that failed to decode.
fn corrupt(tree: &str, key: &[u8], message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: tree.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        message: message.to_string(),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain data types to JSON cannot fail: they hold no maps with
    // non-string keys and no types with failing Serialize impls.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Rejects an existing directory that contains files but no store, so the store never mixes
/// its files into an unrelated folder (a typo in `[store] path`, a home directory).
fn reject_foreign_directory(path: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != DAEMON_LOCK_FILE)
        .collect();
    // A folder with the store's own files (or an old sled store's) is a store, possibly a
    // damaged one, which the open reports as damaged rather than as a foreign folder.
    if names.is_empty() || names.iter().any(|n| is_store_file(n)) {
        return Ok(());
    }
    Err(StoreError::NotAStore {
        path: path.to_path_buf(),
        example: names.into_iter().min().unwrap_or_default(),
    })
}

/// The file in the store folder that a running `leadscore run` keeps locked.
pub const DAEMON_LOCK_FILE: &str = "daemon.lock";

/// Returns true when the folder `path` contains `daemon.lock` and nothing else.
fn holds_only_daemon_lock(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let names: Vec<std::ffi::OsString> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.len() == 1 && names[0] == DAEMON_LOCK_FILE
}

/// Returns true for the names of the files that mark a folder as a store: the redb file, the
/// format marker, and the files an unmigrated sled store keeps at the top of its folder.
fn is_store_file(name: &str) -> bool {
    name == DB_FILE || name == FORMAT_FILE || sled_migration::is_sled_file(name)
}

/// Returns true when `path` contains the redb file or its format marker.
fn holds_redb_store(path: &Path) -> bool {
    path.join(DB_FILE).exists() || path.join(FORMAT_FILE).exists()
}

/// Maps an error from opening the database file to the error the user acts on.
fn open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    use redb::{DatabaseError, StorageError};
    use std::io::ErrorKind;
    let path = path.to_path_buf();
    match source {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Locked { path }
        }
        DatabaseError::Storage(StorageError::Io(error))
            if matches!(
                error.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::InvalidData
            ) =>
        {
            StoreError::Damaged {
                path,
                detail: error.to_string(),
            }
        }
        DatabaseError::Storage(StorageError::Corrupted(detail)) => {
            StoreError::Damaged { path, detail }
        }
        DatabaseError::RepairAborted => StoreError::Damaged {
            path,
            detail: "redb's repair of the file did not finish".to_string(),
        },
        other => StoreError::Open {
            path,
            source: other.into(),
        },
    }
}

/// Returns the steps that rebuild a store which cannot be read, naming its folder.
fn recovery_steps(path: &Path) -> String {
    format!(
        "To recover, move the folder aside (mv {p} {p}.damaged) and run `leadscore pull`, which \
         pulls every record again and rebuilds the records and cursors; `leadscore train` and \
         `leadscore score` then rebuild the models and scores. The rebuilt store has no history \
         of written values and no write journal, so the first `leadscore push` may write values \
         the CRM already contains",
        p = path.display()
    )
}

/// Returns the recovery hint for a redb error met after the store was opened.
fn damage_hint(err: &redb::Error) -> &'static str {
    match err {
        redb::Error::Corrupted(_) => {
            "; the store is damaged: move its folder aside and run `leadscore pull` to rebuild \
             it (the history of written values and the write journal are lost, so the first \
             push may write values the CRM already contains)"
        }
        _ => "",
    }
}

thread_local! {
    /// Set while [`catch_panic`] runs on this thread.
    static CATCHING_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` and returns the message of a panic instead of unwinding further. The panic hook
/// prints nothing for a panic caught here, so a damaged store gives one clear error.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING_PANIC.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    CATCHING_PANIC.with(|flag| flag.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING_PANIC.with(|flag| flag.set(false));
    result.map_err(|payload| {
        if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_string()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a panic without a message".to_string()
        }
    })
}

/// Returns an [`StoreError::Open`] for an IO error on the store folder.
fn folder_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        source: redb::Error::Io(source),
    }
}

/// Opens the redb file `file` of the store folder `folder` with the store's cache size.
/// Without `create`, a missing or empty file is an error rather than a new database.
fn open_redb(folder: &Path, file: &Path, create: bool) -> Result<redb::Database, StoreError> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(PAGE_CACHE_BYTES);
    if !create && std::fs::metadata(file).is_ok_and(|m| m.len() == 0) {
        // redb would initialise an empty file as a new database, which would hide the loss.
        return Err(StoreError::Damaged {
            path: folder.to_path_buf(),
            detail: format!("{} is empty", file.display()),
        });
    }
    let opened = catch_panic(|| {
        if create {
            builder.create(file)
        } else {
            builder.open(file)
        }
    });
    match opened {
        Ok(Ok(database)) => Ok(database),
        Ok(Err(source)) => Err(open_error(folder, source)),
        Err(message) => Err(StoreError::Damaged {
            path: folder.to_path_buf(),
            detail: format!("opening it failed with: {message}"),
        }),
    }
}

/// Writes the format marker into the store folder `folder` and syncs it to disk.
fn write_format_marker(folder: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(folder.join(FORMAT_FILE))?;
    file.write_all(FORMAT.as_bytes())?;
    file.sync_all()
}

impl Store {
    /// Checks, without opening or creating anything, that `path` can be a store: it is
    /// missing, an empty folder or a folder with a store's files, and not a file or a folder
    /// of other files. [`Store::open`] applies the same rules.
    pub fn check_folder(path: &Path) -> Result<(), StoreError> {
        if path.exists() && !path.is_dir() {
            return Err(StoreError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        reject_foreign_directory(path)
    }

    /// Opens or creates the store at `path`. A folder that contains a sled store of the
    /// previous format is migrated to redb first.
    ///
    /// A store that redb cannot read gives [`StoreError::Damaged`] with the recovery steps,
    /// never a panic: redb 5 can panic on a file altered outside redb, so its panics are
    /// caught here.
    // NOTE: the open after a crash runs redb's full repair, which walks every page of the
    // file (quick repair is off to keep commits cheap). tests/store_crash.rs times it only on
    // small stores, so on a 1M-record store it may take far longer than a normal open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::check_folder(path)?;
        if !holds_redb_store(path) {
            if sled_migration::holds_sled_store(path) {
                sled_migration::migrate(path)?;
            } else {
                Store::create(path)?;
            }
        }
        if !path.join(DB_FILE).exists() {
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                detail: format!("its format marker {FORMAT_FILE} exists but {DB_FILE} is missing"),
            });
        }
        let db = Store::open_db_waiting(path)?;
        // A migration killed after the rename can leave the sled files behind, or no marker.
        // This process holds redb's lock now, so no other process finishes it at the same time.
        sled_migration::finish(path)?;
        // redb creates its file with the process umask, but the store contains customer
        // data. So the files are made owner-only on every open, and a looser folder is
        // tightened with a warning.
        if let Err(error) = crate::private_files::restrict_tree(path) {
            warn!(
                path = %path.display(),
                %error,
                "could not make the store owner-only; run chmod -R go-rwx on it"
            );
        }
        // Tables of an interrupted score run are left for the next score writer to drop:
        // readers follow the live-run pointer.
        match catch_panic(|| Store::with_db(db, path, true)) {
            Ok(result) => result,
            Err(message) => Err(StoreError::Damaged {
                path: path.to_path_buf(),
                detail: format!("reading it failed with: {message}"),
            }),
        }
    }

    /// Creates a new store at `path` as a whole: the redb file and the format marker are
    /// created and stamped in a sibling folder, which is then renamed to `path`. A process
    /// killed part way leaves only that sibling behind, never a store without its stamp.
    fn create(path: &Path) -> Result<(), StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".to_string());
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io_error = |source| folder_error(path, source);
        std::fs::create_dir_all(&parent).map_err(io_error)?;
        let staging = parent.join(format!(".{name}.creating-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io_error)?;
        }
        crate::private_files::create_private_dir(&staging).map_err(io_error)?;
        let db = Store::open_db(&staging, true)?;
        drop(Store::with_db(db, &staging, false)?);
        write_format_marker(&staging).map_err(io_error)?;
        // An existing empty folder is replaced by the rename.
        match std::fs::rename(&staging, path) {
            Ok(()) => Ok(()),
            // Another process created the store first; its store is used.
            Err(_) if holds_redb_store(path) => {
                let _ = std::fs::remove_dir_all(&staging);
                Ok(())
            }
            // A folder left with only a daemon's lock file (its store was removed) cannot be
            // replaced, so the stamped files move into it. The redb file goes first, because
            // a redb file without its marker still opens as a store, and the open adds the
            // marker.
            Err(_) if holds_only_daemon_lock(path) => {
                let moved =
                    std::fs::rename(staging.join(DB_FILE), path.join(DB_FILE)).and_then(|()| {
                        std::fs::rename(staging.join(FORMAT_FILE), path.join(FORMAT_FILE))
                    });
                let _ = std::fs::remove_dir_all(&staging);
                moved.map_err(io_error)
            }
            Err(source) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(io_error(source))
            }
        }
    }

    /// Returns true when `path` is a store folder or would become one on [`Store::open`]:
    /// it contains the redb file, its format marker or an unmigrated sled store.
    pub fn exists(path: &Path) -> bool {
        holds_redb_store(path) || sled_migration::holds_sled_store(path)
    }

    /// Opens the redb file, retrying for [`LOCK_RETRIES`] times 50 ms while another process
    /// holds its lock. redb releases the lock when the last handle is dropped, so a lock
    /// this process held before is free by the time the open runs.
    fn open_db_waiting(path: &Path) -> Result<Db, StoreError> {
        let mut attempt = 0;
        loop {
            match Store::open_db(path, false) {
                Err(StoreError::Locked { .. }) if attempt < LOCK_RETRIES => attempt += 1,
                other => return other,
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Opens (or, with `create`, creates) the redb file in the folder `path`.
    fn open_db(path: &Path, create: bool) -> Result<Db, StoreError> {
        open_redb(path, &path.join(DB_FILE), create).map(Db::new)
    }

    /// Checks the format version of a freshly opened database, stamping a new one.
    /// `existed` is true when the database file was there before the open. Such a store
    /// without a format stamp lost its contents, because the stamp is the first key written.
    fn with_db(db: Db, path: &Path, existed: bool) -> Result<Store, StoreError> {
        match db.get("meta", b"format")? {
            Some(found) if found == JSON_RECORDS_FORMAT.as_bytes() => {
                db.write(Commit::Durable, |transaction| {
                    let mut meta = transaction.open_table(table("meta"))?;
                    meta.insert(&b"format"[..], FORMAT.as_bytes())?;
                    Ok(())
                })?;
                write_format_marker(path).map_err(|source| folder_error(path, source))?;
                tracing::info!(
                    path = %path.display(),
                    from = JSON_RECORDS_FORMAT,
                    to = FORMAT,
                    "store format upgraded; records pulled from now on are stored in binary form"
                );
            }
            Some(found) if found != FORMAT.as_bytes() => {
                return Err(StoreError::Format {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {}
            None if existed => {
                return Err(StoreError::Damaged {
                    path: path.to_path_buf(),
                    detail: "its database file exists but contains no format stamp, so its \
                             contents were lost"
                        .to_string(),
                });
            }
            None => {
                db.write(Commit::Durable, |transaction| {
                    let mut meta = transaction.open_table(table("meta"))?;
                    meta.insert(&b"format"[..], FORMAT.as_bytes())?;
                    // A new store has no records, so none is in JSON form and its activity
                    // tables are complete.
                    meta.insert(record_codec::CONVERTED_KEY.as_bytes(), &[1u8][..])?;
                    drop(meta);
                    activity_index::mark_built(transaction)
                })?;
            }
        }
        Ok(Store {
            level: Level::Account,
            db,
            path: path.to_path_buf(),
        })
    }

    /// Returns a view of the same store at another scoring level.
    pub fn at_level(&self, level: Level) -> Store {
        Store {
            level,
            ..self.clone()
        }
    }

    /// Returns the scoring level this view reads and writes models and scores for.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Returns the name of a per-level key or tree: the account level keeps the bare name.
    fn level_key(&self, name: &str) -> String {
        format!("{name}{}", self.level.store_suffix())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cursor(&self, object: &str) -> Result<Option<Cursor>, StoreError> {
        match self.db.get("cursors", object.as_bytes())? {
            Some(bytes) => Ok(Some(decode("cursors", object.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Returns the fields the last complete pull of an object selected, if one finished since
    /// the store began recording them.
    pub fn pulled_fields(&self, object: &str) -> Result<Option<Vec<String>>, StoreError> {
        match self.db.get("pulled_fields", object.as_bytes())? {
            Some(bytes) => Ok(Some(decode("pulled_fields", object.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records the fields a complete pull of an object selected.
    pub fn set_pulled_fields(&self, object: &str, fields: &[String]) -> Result<(), StoreError> {
        let bytes = encode(&fields);
        self.db.write(Commit::Durable, |transaction| {
            let mut tree = transaction.open_table(table("pulled_fields"))?;
            tree.insert(object.as_bytes(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Forgets an object's cursor and recorded fields, so the next pull fetches every record
    /// again. The records stay until the pull replaces them.
    pub fn reset_cursor(&self, object: &str) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            transaction
                .open_table(table("cursors"))?
                .remove(object.as_bytes())?;
            transaction
                .open_table(table("pulled_fields"))?
                .remove(object.as_bytes())?;
            Ok(())
        })
    }

    /// Stores one page of records, deletions included, without moving the object's cursor:
    /// for a pull whose records come in no order.
    pub fn save_records(&self, object: &str, records: &[Record]) -> Result<(), StoreError> {
        let name = records_tree(object);
        let encoded = encode_records(records);
        self.db.write(Commit::Durable, |transaction| {
            let mut tree = transaction.open_table(table(&name))?;
            put_records(&mut tree, &encoded)?;
            drop(tree);
            activity_index::put_entries(transaction, object, live_records(records))?;
            pending::mark_pulled(transaction, object, records.iter().map(|r| r.id.as_str()))
        })
    }

    /// Stores one page of pulled records and moves the object's cursor, atomically: either
    /// both land or neither does. Deleted records are removed from the store.
    pub fn save_page(
        &self,
        object: &str,
        records: &[Record],
        cursor: &Cursor,
    ) -> Result<(), StoreError> {
        let name = records_tree(object);
        let encoded = encode_records(records);
        let cursor_bytes = encode(cursor);
        self.db.write(Commit::Durable, |transaction| {
            let mut tree = transaction.open_table(table(&name))?;
            put_records(&mut tree, &encoded)?;
            drop(tree);
            activity_index::put_entries(transaction, object, live_records(records))?;
            let mut cursors = transaction.open_table(table("cursors"))?;
            cursors.insert(object.as_bytes(), cursor_bytes.as_slice())?;
            drop(cursors);
            pending::mark_pulled(transaction, object, records.iter().map(|r| r.id.as_str()))
        })
    }

    /// Returns every stored record of an object, in id order.
    pub fn records(&self, object: &str) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        self.for_each_record(object, |record| out.push(record))?;
        Ok(out)
    }

    /// Decodes the stored records of an object one at a time, in id order, and hands each to
    /// `visit`, so that a caller that keeps only part of each record never has them all in memory.
    pub fn for_each_record(
        &self,
        object: &str,
        mut visit: impl FnMut(Record),
    ) -> Result<(), StoreError> {
        let name = records_tree(object);
        self.db.for_each(&name, |key, value| {
            visit(decode_record(&name, key, value)?);
            Ok(())
        })
    }

    /// Passes every stored record of `object` to `visit` like [`Store::for_each_record`], with
    /// only the fields named in `keep`. The values of the others are skipped undecoded.
    pub fn for_each_record_with(
        &self,
        object: &str,
        keep: &[&str],
        mut visit: impl FnMut(Record),
    ) -> Result<(), StoreError> {
        let name = records_tree(object);
        self.db.for_each(&name, |key, value| {
            visit(decode_with(&name, key, value, keep)?);
            Ok(())
        })
    }

    /// Returns the change stamp of each stored record in `ids` (`None` for one not stored),
    /// reading the table once and decoding only the stamp of each record.
    pub fn stored_modstamps(
        &self,
        object: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let name = records_tree(object);
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let mut stamps = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(self.db.get_many(&name, &keys)?) {
            let stamp = match bytes {
                Some(bytes) => Some(
                    record_codec::modstamp(&bytes)
                        .map_err(|message| corrupt(&name, id.as_bytes(), message))?,
                ),
                None => None,
            };
            stamps.push(stamp);
        }
        Ok(stamps)
    }

    /// Returns the change stamp of one stored record, if it is stored.
    pub fn stored_modstamp(
        &self,
        object: &str,
        id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.stored_modstamps(object, &[id])?.remove(0))
    }

    pub fn record_count(&self, object: &str) -> Result<usize, StoreError> {
        Ok(usize::try_from(self.db.len(&records_tree(object))?).unwrap_or(usize::MAX))
    }

    /// Stores a trained model and makes it the live one, recording the promotion as caused by
    /// training. A registry entry is derived from the model unless one is already stored.
    pub fn save_model(&self, model: &StoredModel) -> Result<(), StoreError> {
        let entry = match self.model_entry(&model.version)? {
            Some(entry) => entry,
            None => ModelEntry::from_model(model),
        };
        let previous = self.live_version()?;
        if previous.as_deref() == Some(model.version.as_str()) {
            return self.save_registered_model(model, &entry, None);
        }
        let promotion = Promotion {
            version: model.version.clone(),
            previous,
            at: model.trained_at,
            cause: PromotionCause::Trained,
            note: "stored as the live model".to_string(),
        };
        self.save_registered_model(model, &entry, Some(&promotion))
    }

    /// Stores a model with its registry entry in one transaction. With a `promotion`, the model
    /// also becomes the live one and the promotion is appended to the history.
    // NOTE: nothing prunes old models, so the store grows by one model per distinct training
    // run (retraining on unchanged data reuses the version and adds nothing).
    pub fn save_registered_model(
        &self,
        model: &StoredModel,
        entry: &ModelEntry,
        promotion: Option<&Promotion>,
    ) -> Result<(), StoreError> {
        let model_bytes = encode(model);
        let entry_bytes = encode(entry);
        let version = model.version.as_bytes();
        let history_name = self.level_key("promotions");
        let live_key = self.level_key("current_model");
        self.db.write(Commit::Durable, |transaction| {
            if let Some(promotion) = promotion {
                let key = generate_id(transaction)?.to_be_bytes();
                let mut history = transaction.open_table(table(&history_name))?;
                history.insert(&key[..], encode(promotion).as_slice())?;
                let mut meta = transaction.open_table(table("meta"))?;
                meta.insert(live_key.as_bytes(), version)?;
            }
            let mut models = transaction.open_table(table("models"))?;
            models.insert(version, model_bytes.as_slice())?;
            let mut entries = transaction.open_table(table("registry"))?;
            entries.insert(version, entry_bytes.as_slice())?;
            Ok(())
        })
    }

    /// Makes a stored model the live one and appends the promotion to the history, in one
    /// transaction. Returns `false`, changing nothing, when no model of this level has that version.
    pub fn set_live_model(&self, promotion: &Promotion) -> Result<bool, StoreError> {
        match self.model(&promotion.version)? {
            Some(model) if model.level == self.level => {}
            _ => return Ok(false),
        }
        let bytes = encode(promotion);
        let version = promotion.version.as_bytes();
        let history_name = self.level_key("promotions");
        let live_key = self.level_key("current_model");
        self.db.write(Commit::Durable, |transaction| {
            let key = generate_id(transaction)?.to_be_bytes();
            let mut history = transaction.open_table(table(&history_name))?;
            history.insert(&key[..], bytes.as_slice())?;
            let mut meta = transaction.open_table(table("meta"))?;
            meta.insert(live_key.as_bytes(), version)?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Returns the version of the live model, if one was trained.
    pub fn live_version(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get("meta", self.level_key("current_model").as_bytes())?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Returns the stored model with this version, live or not.
    pub fn model(&self, version: &str) -> Result<Option<StoredModel>, StoreError> {
        match self.db.get("models", version.as_bytes())? {
            Some(bytes) => Ok(Some(decode("models", version.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Returns the registry entry of one version. A model stored before the registry existed
    /// gets an entry derived from the model itself.
    pub fn model_entry(&self, version: &str) -> Result<Option<ModelEntry>, StoreError> {
        if let Some(bytes) = self.db.get("registry", version.as_bytes())? {
            return Ok(Some(decode("registry", version.as_bytes(), &bytes)?));
        }
        Ok(self
            .model(version)?
            .map(|model| ModelEntry::from_model(&model)))
    }

    /// Returns the registry entry of every stored model, oldest training run first.
    pub fn model_entries(&self) -> Result<Vec<ModelEntry>, StoreError> {
        let mut versions = Vec::new();
        self.db.for_each("models", |key, _| {
            versions.push(String::from_utf8_lossy(key).into_owned());
            Ok(())
        })?;
        let mut out = Vec::with_capacity(versions.len());
        for version in versions {
            if let Some(entry) = self.model_entry(&version)? {
                if entry.level == self.level {
                    out.push(entry);
                }
            }
        }
        out.sort_by(|a, b| {
            a.trained_at
                .cmp(&b.trained_at)
                .then_with(|| a.version.cmp(&b.version))
        });
        Ok(out)
    }

    /// Returns the promotion history, oldest first.
    pub fn promotions(&self) -> Result<Vec<Promotion>, StoreError> {
        let name = self.level_key("promotions");
        let mut out = Vec::new();
        self.db.for_each(&name, |key, value| {
            out.push(decode(&name, key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns the live model, if one was trained.
    pub fn current_model(&self) -> Result<Option<StoredModel>, StoreError> {
        let Some(version) = self
            .db
            .get("meta", self.level_key("current_model").as_bytes())?
        else {
            return Ok(None);
        };
        match self.db.get("models", &version)? {
            Some(bytes) => Ok(Some(decode("models", &version, &bytes)?)),
            None => Err(StoreError::Corrupt {
                tree: "models".to_string(),
                key: String::from_utf8_lossy(&version).into_owned(),
                message: "the current model version has no stored model".to_string(),
            }),
        }
    }

    /// Returns the stored scores of this level, in id order.
    pub fn scores(&self) -> Result<Vec<ScoreRow>, StoreError> {
        let mut out = Vec::new();
        self.for_each_score(|row| out.push(row))?;
        Ok(out)
    }

    /// Decodes the stored scores of this level one at a time and passes each to `visit`,
    /// so a caller that keeps a few fields per row never has every full row in memory.
    pub fn for_each_score(&self, mut visit: impl FnMut(ScoreRow)) -> Result<(), StoreError> {
        let name = self.scores_tree_name(self.level)?;
        self.db.for_each(&name, |key, value| {
            visit(decode(&name, key, value)?);
            Ok(())
        })
    }

    /// Returns the values last written successfully, by record id.
    pub fn written(&self) -> Result<BTreeMap<String, WrittenValues>, StoreError> {
        let mut out = BTreeMap::new();
        self.db.for_each("written", |key, value| {
            let id = String::from_utf8_lossy(key).into_owned();
            out.insert(id, decode("written", key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Records writes the CRM confirmed: the values go to the write history, and the stored
    /// copy of each record takes the written fields, so that the next plan compares against
    /// what the CRM now contains even before the next pull. Both land in one transaction.
    pub fn record_writes(&self, object: &str, writes: &[ConfirmedWrite]) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            patch_records(
                transaction,
                object,
                writes.iter().map(|w| (&w.id, &w.fields)),
            )?;
            let mut written = transaction.open_table(table("written"))?;
            for write in writes {
                written.insert(write.id.as_bytes(), encode(&write.values).as_slice())?;
            }
            Ok(())
        })
    }

    /// Appends events in order.
    pub fn append_events(&self, events: &[ScoreEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.db.write(Commit::Durable, |transaction| {
            let mut keys = Vec::with_capacity(events.len());
            for _ in events {
                keys.push(generate_id(transaction)?.to_be_bytes());
            }
            let mut tree = transaction.open_table(table("events"))?;
            for (key, event) in keys.iter().zip(events) {
                tree.insert(&key[..], encode(event).as_slice())?;
            }
            Ok(())
        })
    }

    /// Returns every event, oldest first.
    pub fn events(&self) -> Result<Vec<ScoreEvent>, StoreError> {
        let mut out = Vec::new();
        self.db.for_each("events", |key, value| {
            out.push(decode("events", key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Ties the store to the CRM it was first filled from. A store contains one org's records and
    /// cursors; mixing two orgs would silently merge their records.
    pub fn bind_source(&self, source: &str) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            let mut meta = transaction.open_table(table("meta"))?;
            let bound = meta.get(&b"source"[..])?.map(|b| b.value().to_vec());
            match bound {
                Some(bound) if bound != source.as_bytes() => Err(StoreError::OtherSource {
                    path: self.path.clone(),
                    bound: String::from_utf8_lossy(&bound).into_owned(),
                    requested: source.to_string(),
                }),
                Some(_) => Ok(()),
                None => {
                    meta.insert(&b"source"[..], source.as_bytes())?;
                    Ok(())
                }
            }
        })
    }

    /// Returns up to `limit` of this level's live score rows in id order, starting after the
    /// id `after` (from the first row when `None`). A caller pages through the scores with it
    /// and may write to the store between pages. Each call follows the live-run pointer, so a
    /// score run committed between two calls is read from the second call on.
    pub fn score_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScoreRow>, StoreError> {
        let name = self.scores_tree_name(self.level)?;
        let entries = self
            .db
            .entries_after(&name, after.map(str::as_bytes), limit)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            out.push(decode(&name, &key, &value)?);
        }
        Ok(out)
    }
}

/// Encodes a page of records as (id, value) pairs, with `None` for a deleted record.
fn encode_records(records: &[Record]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    records
        .iter()
        .map(|r| {
            let value = (!r.deleted).then(|| record_codec::encode(r));
            (r.id.clone().into_bytes(), value)
        })
        .collect()
}

/// Pairs the id of each record of a page with the record, or `None` for a deleted one.
fn live_records(records: &[Record]) -> impl Iterator<Item = (&str, Option<&Record>)> {
    records
        .iter()
        .map(|r| (r.id.as_str(), (!r.deleted).then_some(r)))
}

/// Inserts the encoded records and removes the deleted ones.
fn put_records(
    tree: &mut store_db::Table<'_>,
    encoded: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<(), StoreError> {
    for (key, value) in encoded {
        match value {
            Some(bytes) => tree.insert(key.as_slice(), bytes.as_slice())?,
            None => tree.remove(key.as_slice())?,
        };
    }
    Ok(())
}

/// Copies written fields onto the stored records of `object` they were written to, and
/// updates their activity entries. A record that is not stored is skipped.
fn patch_records<'w>(
    transaction: &redb::WriteTransaction,
    object: &str,
    writes: impl Iterator<Item = (&'w String, &'w BTreeMap<String, leadscore_connector::Value>)>,
) -> Result<(), StoreError> {
    let name = records_tree(object);
    let mut records = transaction.open_table(table(&name))?;
    let indexed = activity_index::indexed(object).is_some();
    let mut patched = Vec::new();
    for (id, fields) in writes {
        let Some(bytes) = records.get(id.as_bytes())?.map(|b| b.value().to_vec()) else {
            continue;
        };
        let mut record = decode_record(&name, id.as_bytes(), &bytes)?;
        for (field, value) in fields {
            record.fields.insert(field.clone(), value.clone());
        }
        records.insert(id.as_bytes(), record_codec::encode(&record).as_slice())?;
        if indexed {
            patched.push(record);
        }
    }
    drop(records);
    activity_index::put_entries(
        transaction,
        object,
        patched.iter().map(|r| (r.id.as_str(), Some(r))),
    )
}

/// Something that happened to a scored record, kept for the alerting work to act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreEvent {
    pub level: Level,
    pub object: String,
    pub id: String,
    /// The kind of event, for example `sales_ready` when a lead first reached the hand-off score.
    pub kind: String,
    pub score: f64,
    /// The record's score before this run, if it had one.
    pub previous_score: Option<f64>,
    pub at: DateTime<Utc>,
}

/// A write the CRM confirmed.
#[derive(Clone, Debug)]
pub struct ConfirmedWrite {
    pub id: String,
    pub values: WrittenValues,
    /// The fields as written, copied onto the stored record.
    pub fields: BTreeMap<String, leadscore_connector::Value>,
}

/// A record the CRM reported as deleted, or as merged into a survivor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub object: String,
    pub id: String,
    /// The change stamp the deletion was pulled with.
    pub deleted_at: DateTime<Utc>,
    /// The record a merge absorbed this one into, as the CRM reported it (not resolved
    /// through later merges; see [`Store::survivor`]).
    pub survivor: Option<String>,
}

/// Reference fields of the neutral objects and the objects each may point at, for remapping
/// merged ids to their survivors.
const REFERENCE_FIELDS: [(&str, &[&str]); 7] = [
    ("AccountId", &["Account"]),
    ("ParentId", &["Account"]),
    ("ContactId", &["Contact"]),
    ("ConvertedAccountId", &["Account"]),
    ("ConvertedContactId", &["Contact"]),
    ("WhoId", &["Contact", "Lead"]),
    // WhatId may also name an opportunity, which merges never touch.
    ("WhatId", &["Account"]),
];

/// Maximum number of merges followed in one chain. A longer chain can only be a cycle in
/// corrupt data.
const MAX_MERGE_CHAIN: usize = 64;

fn tombstone_key(object: &str, id: &str) -> String {
    format!("{object}/{id}")
}

/// Deletes and merges: tombstones of deleted records, the merged-id to survivor map and the
/// remapping of stored references to survivors.
impl Store {
    /// Records the deleted records of a pulled page as tombstones and removes every level's
    /// score of them, so no write goes to a dead id. A live record clears its tombstone (an
    /// undelete). Idempotent, so a page pulled again after an interruption changes nothing.
    /// Returns the number of merged records among them.
    pub fn record_deletions(&self, object: &str, records: &[Record]) -> Result<usize, StoreError> {
        let mut score_tables = Vec::new();
        for level in Level::ALL {
            score_tables.push(self.scores_tree_name(level)?);
        }
        self.db.write(Commit::Durable, |transaction| {
            let mut tombstones = transaction.open_table(table("tombstones"))?;
            let mut merged = 0;
            let mut dead = Vec::new();
            for record in records {
                let key = tombstone_key(object, &record.id);
                if !record.deleted {
                    tombstones.remove(key.as_bytes())?;
                    continue;
                }
                let survivor = match record.get("MasterRecordId") {
                    leadscore_connector::Value::Text(id) if !id.is_empty() && *id != record.id => {
                        Some(id.clone())
                    }
                    _ => None,
                };
                merged += usize::from(survivor.is_some());
                let tombstone = Tombstone {
                    object: object.to_string(),
                    id: record.id.clone(),
                    deleted_at: record.modstamp,
                    survivor,
                };
                tombstones.insert(key.as_bytes(), encode(&tombstone).as_slice())?;
                dead.push(record.id.clone());
            }
            if merged > 0 {
                let mut meta = transaction.open_table(table("meta"))?;
                meta.insert(&b"merge_remap_pending"[..], &[1u8][..])?;
            }
            for name in &score_tables {
                let mut scores = transaction.open_table(table(name))?;
                for id in &dead {
                    scores.remove(id.as_bytes())?;
                }
            }
            Ok(merged)
        })
    }

    /// Stores a JSON value under a key of the `meta` table.
    pub(crate) fn put_meta_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value);
        self.db.write(Commit::Durable, |transaction| {
            let mut meta = transaction.open_table(table("meta"))?;
            meta.insert(key.as_bytes(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Reads a JSON value stored with [`Store::put_meta_json`].
    pub(crate) fn meta_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get("meta", key.as_bytes())? {
            Some(bytes) => Ok(Some(decode("meta", key.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Returns the tombstone of a deleted or merged record, if the CRM reported one.
    pub fn tombstone(&self, object: &str, id: &str) -> Result<Option<Tombstone>, StoreError> {
        let key = tombstone_key(object, id);
        match self.db.get("tombstones", key.as_bytes())? {
            Some(bytes) => Ok(Some(decode("tombstones", key.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Returns the id that a merged-away record of `object` lives on as, following chains of
    /// merges (A into B, then B into C gives C), or `None` when `id` was not merged away.
    /// A record deleted without a merge also gives `None`; see [`Store::tombstone`].
    pub fn survivor(&self, object: &str, id: &str) -> Result<Option<String>, StoreError> {
        let mut current = id.to_string();
        let mut found = None;
        for _ in 0..MAX_MERGE_CHAIN {
            match self.tombstone(object, &current)?.and_then(|t| t.survivor) {
                Some(next) if next != id => {
                    found = Some(next.clone());
                    current = next;
                }
                _ => return Ok(found),
            }
        }
        Err(StoreError::Corrupt {
            tree: "tombstones".to_string(),
            key: tombstone_key(object, id),
            message: format!("merge chain longer than {MAX_MERGE_CHAIN} records"),
        })
    }

    /// Rewrites stored references (AccountId, ContactId, WhoId, WhatId, ...) that point at
    /// merged-away records so they point at the survivors, when a pulled merge left that
    /// work pending. Salesforce re-parents children itself, but HubSpot moves only the
    /// associations, and a child pulled before the merge keeps the old id until it changes.
    /// Returns the number of records rewritten.
    pub fn remap_merged_references(&self) -> Result<usize, StoreError> {
        if self.db.get("meta", b"merge_remap_pending")?.is_none() {
            return Ok(0);
        }
        let mut merged_away = Vec::new();
        self.db.for_each("tombstones", |key, bytes| {
            let tombstone: Tombstone = decode("tombstones", key, bytes)?;
            if tombstone.survivor.is_some() {
                merged_away.push(tombstone);
            }
            Ok(())
        })?;
        let mut survivors: std::collections::HashMap<(String, String), String> =
            std::collections::HashMap::new();
        for tombstone in merged_away {
            if let Some(survivor) = self.survivor(&tombstone.object, &tombstone.id)? {
                survivors.insert((tombstone.object, tombstone.id), survivor);
            }
        }
        let mut rewrites: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
        for name in self.db.table_names()? {
            if !name.starts_with("records/") {
                continue;
            }
            self.db.for_each(&name, |key, bytes| {
                let mut record = decode_record(&name, key, bytes)?;
                let mut changed = false;
                for (field, targets) in REFERENCE_FIELDS {
                    let Some(leadscore_connector::Value::Text(id)) = record.fields.get(field)
                    else {
                        continue;
                    };
                    let survivor = targets
                        .iter()
                        .find_map(|object| survivors.get(&(object.to_string(), id.clone())));
                    if let Some(survivor) = survivor {
                        record.fields.insert(
                            field.to_string(),
                            leadscore_connector::Value::Text(survivor.clone()),
                        );
                        changed = true;
                    }
                }
                if changed {
                    rewrites.push((name.clone(), key.to_vec(), record_codec::encode(&record)));
                }
                Ok(())
            })?;
        }
        let rewritten = rewrites.len();
        self.db.write(Commit::Durable, |transaction| {
            for (name, key, bytes) in &rewrites {
                let mut tree = transaction.open_table(table(name))?;
                tree.insert(key.as_slice(), bytes.as_slice())?;
                drop(tree);
                let object = name.strip_prefix("records/").unwrap_or(name);
                if activity_index::indexed(object).is_some() {
                    let record = decode_record(name, key, bytes)?;
                    activity_index::put_entries(
                        transaction,
                        object,
                        std::iter::once((record.id.as_str(), Some(&record))),
                    )?;
                }
            }
            let mut meta = transaction.open_table(table("meta"))?;
            meta.remove(&b"merge_remap_pending"[..])?;
            Ok(())
        })?;
        Ok(rewritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_connector::Value;

    fn record(id: &str, second: u32, deleted: bool) -> Record {
        let modstamp = DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:{second:02}Z"))
            .expect("valid time")
            .with_timezone(&Utc);
        Record {
            object: "Account".into(),
            id: id.into(),
            modstamp,
            deleted,
            fields: BTreeMap::from([("Name".to_string(), Value::Text(format!("n{id}")))]),
        }
    }

    #[test]
    fn open_creates_store_beside_daemon_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = dir.path().join(DAEMON_LOCK_FILE);
        std::fs::write(&lock, b"").expect("lock file");
        assert!(!Store::exists(dir.path()));
        let store = Store::open(dir.path()).expect("a folder with only daemon.lock opens");
        store
            .save_records("Account", &[record("a", 1, false)])
            .expect("save");
        drop(store);
        assert!(lock.exists(), "daemon.lock was removed");
        assert!(Store::exists(dir.path()));
        let reopened = Store::open(dir.path()).expect("reopen");
        assert_eq!(reopened.records("Account").expect("records").len(), 1);
        let name = dir.path().file_name().expect("name").to_string_lossy();
        let staging = dir
            .path()
            .with_file_name(format!(".{name}.creating-{}", std::process::id()));
        assert!(
            !staging.exists(),
            "staging folder left: {}",
            staging.display()
        );
    }

    #[test]
    fn streaming_reports_damaged_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let records = [
            record("a", 1, false),
            record("b", 2, false),
            record("c", 3, false),
        ];
        store.save_records("Account", &records).expect("save");
        store
            .db
            .write(Commit::Durable, |transaction| {
                let mut tree = transaction.open_table(table(&records_tree("Account")))?;
                tree.insert(&b"b"[..], &b"{\"id\": \"b\", trunc"[..])?;
                Ok(())
            })
            .expect("damage record b");

        let mut visited = Vec::new();
        let error = store
            .for_each_record("Account", |record| visited.push(record.id))
            .expect_err("a damaged record fails the stream");

        let StoreError::Corrupt { tree, key, .. } = &error else {
            panic!("expected a corrupt entry error, got {error}");
        };
        assert_eq!(tree, "records/Account");
        assert_eq!(key, "b");
        assert_eq!(visited, ["a"]);
    }

    #[test]
    fn page_and_cursor_survive_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cursor = Cursor {
            modstamp: record("b", 2, false).modstamp,
            id: "b".into(),
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .save_page(
                    "Account",
                    &[record("a", 1, false), record("b", 2, false)],
                    &cursor,
                )
                .expect("save");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.cursor("Account").expect("read"), Some(cursor));
        let records = store.records("Account").expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].get("Name"), &Value::Text("na".into()));
    }

    #[test]
    fn deleted_record_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let first = Cursor {
            modstamp: record("a", 1, false).modstamp,
            id: "a".into(),
        };
        store
            .save_page("Account", &[record("a", 1, false)], &first)
            .expect("save");
        let second = Cursor {
            modstamp: record("a", 5, true).modstamp,
            id: "a".into(),
        };
        store
            .save_page("Account", &[record("a", 5, true)], &second)
            .expect("save");
        assert_eq!(store.record_count("Account").expect("count"), 0);
    }

    #[test]
    fn store_bound_to_first_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.bind_source("https://a.example").expect("first bind");
        store.bind_source("https://a.example").expect("same source");
        let err = store
            .bind_source("https://b.example")
            .expect_err("other org refused");
        assert!(err.to_string().contains("https://a.example"), "{err}");
    }

    fn model(version: &str) -> StoredModel {
        StoredModel {
            level: Level::Account,
            version: version.into(),
            trained_at: record("a", 1, false).modstamp,
            features: serde_json::json!({}),
            report: serde_json::json!({"metrics": {"auc": 0.75}}),
            model: vec![1, 2, 3],
        }
    }

    #[test]
    fn registry_survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.save_model(&model("v1")).expect("save v1");
            store.save_model(&model("v2")).expect("save v2");
            let back = Promotion {
                version: "v1".into(),
                previous: Some("v2".into()),
                at: Utc::now(),
                cause: PromotionCause::Rollback,
                note: String::new(),
            };
            assert!(store.set_live_model(&back).expect("rollback"));
            let missing = Promotion {
                version: "v9".into(),
                ..back
            };
            assert!(!store.set_live_model(&missing).expect("unknown version"));
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.live_version().expect("live").as_deref(), Some("v1"));
        assert_eq!(
            store.current_model().expect("read").expect("live").version,
            "v1"
        );
        let causes: Vec<(String, PromotionCause)> = store
            .promotions()
            .expect("history")
            .into_iter()
            .map(|p| (p.version, p.cause))
            .collect();
        assert_eq!(
            causes,
            vec![
                ("v1".to_string(), PromotionCause::Trained),
                ("v2".to_string(), PromotionCause::Trained),
                ("v1".to_string(), PromotionCause::Rollback),
            ]
        );
        let entries = store.model_entries().expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].holdout_auc, Some(0.75));
    }

    #[test]
    fn second_open_reports_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _first = Store::open(dir.path()).expect("open");
        let err = Store::open(dir.path()).err().expect("locked");
        assert!(
            err.to_string()
                .contains("in use by another leadscore process"),
            "{err}"
        );
    }

    #[test]
    fn lock_released_at_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Store::open(dir.path()).expect("create");
        let clone = first.at_level(Level::Contact);
        drop(first);
        let err = Store::open(dir.path())
            .err()
            .expect("a clone keeps the lock");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        drop(clone);
        let started = std::time::Instant::now();
        let reopened = Store::open(dir.path());
        assert!(reopened.is_ok(), "{:?}", reopened.err());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "the reopen waited {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn unrelated_directory_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        let entries = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(entries, 1, "nothing was written into the directory");
    }

    #[test]
    fn foreign_format_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Store::open(dir.path()).expect("create"));
        {
            let database = redb::Database::open(dir.path().join(DB_FILE)).expect("open");
            let transaction = database.begin_write().expect("write");
            transaction
                .open_table(table("meta"))
                .expect("table")
                .insert(&b"format"[..], &b"something-else"[..])
                .expect("insert");
            transaction.commit().expect("commit");
        }
        let err = Store::open(dir.path()).err().expect("must be refused");
        assert!(err.to_string().contains("something-else"), "{err}");
    }

    #[test]
    fn json_records_store_upgrades_and_reads_both_forms() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Store::open(dir.path()).expect("create"));
        // A store of the previous format, whose records are JSON.
        let old = [record("a", 1, false), record("b", 2, false)];
        {
            let database = redb::Database::open(dir.path().join(DB_FILE)).expect("open");
            let transaction = database.begin_write().expect("write");
            let mut meta = transaction.open_table(table("meta")).expect("meta");
            meta.insert(&b"format"[..], JSON_RECORDS_FORMAT.as_bytes())
                .expect("stamp");
            meta.remove(record_codec::CONVERTED_KEY.as_bytes())
                .expect("unmark");
            drop(meta);
            let mut records = transaction
                .open_table(table(&records_tree("Account")))
                .expect("records");
            for record in &old {
                let json = serde_json::to_vec(record).expect("json");
                records
                    .insert(record.id.as_bytes(), json.as_slice())
                    .expect("insert");
            }
            drop(records);
            transaction.commit().expect("commit");
        }

        let store = Store::open(dir.path()).expect("a JSON-records store opens");
        assert_eq!(
            store.db.get("meta", b"format").expect("read").as_deref(),
            Some(FORMAT.as_bytes())
        );
        assert_eq!(store.records("Account").expect("read"), old.to_vec());
        // A record pulled again is written in binary form beside the JSON one.
        let mut changed = record("b", 3, false);
        changed
            .fields
            .insert("Beds".to_string(), Value::Number(120.0));
        store
            .save_records("Account", &[changed.clone(), record("c", 4, false)])
            .expect("save");
        let stored = store.db.get(&records_tree("Account"), b"b").expect("read");
        assert_eq!(
            stored.and_then(|b| b.first().copied()),
            Some(record_codec::BINARY_TAG)
        );
        assert_eq!(
            store.records("Account").expect("read"),
            vec![old[0].clone(), changed.clone(), record("c", 4, false)]
        );
        assert_eq!(
            store
                .stored_modstamps("Account", &["a", "b", "z"])
                .expect("stamps"),
            vec![Some(old[0].modstamp), Some(changed.modstamp), None]
        );
        let mut names = Vec::new();
        store
            .for_each_record_with("Account", &["Beds"], |record| {
                names.push((record.id, record.fields.into_keys().collect::<Vec<_>>()))
            })
            .expect("partial read");
        assert_eq!(
            names,
            vec![
                ("a".to_string(), vec![]),
                ("b".to_string(), vec!["Beds".to_string()]),
                ("c".to_string(), vec![]),
            ]
        );
        // A conversion stopped before its first chunk rewrites nothing and stays unfinished.
        assert_eq!(store.convert_json_records(|| true).expect("stopped"), 0);
        assert!(store
            .db
            .get("meta", record_codec::CONVERTED_KEY.as_bytes())
            .expect("read")
            .is_none());
        let before = store.records("Account").expect("read");
        // Only "a" is still JSON.
        assert_eq!(store.convert_json_records(|| false).expect("convert"), 1);
        assert_eq!(store.records("Account").expect("read"), before);
        store
            .db
            .for_each(&records_tree("Account"), |key, bytes| {
                assert_eq!(bytes.first(), Some(&record_codec::BINARY_TAG), "{key:?}");
                Ok(())
            })
            .expect("scan");
        assert_eq!(store.convert_json_records(|| false).expect("again"), 0);
        drop(store);
        // The upgrade happens once; the next open finds the new stamp.
        Store::open(dir.path()).expect("reopens");
    }
}

// The redb database and its table helpers, a child module so that only the store touches redb.
#[path = "store_db.rs"]
mod store_db;

#[path = "activity_index.rs"]
mod activity_index;
pub(crate) use activity_index::ActivityFacts;

#[path = "record_fields.rs"]
mod record_fields;

#[path = "record_codec.rs"]
mod record_codec;

// The migration of a sled store of the previous format, a child module like the journal.
#[path = "sled_migration.rs"]
mod sled_migration;

// The write journal lives in its own file but inside this module, so that only the store
// touches redb.
#[path = "journal.rs"]
mod journal;
pub use journal::{JournalEntry, JournalWrite, WriteFailure};

// The per-day API budget ledger lives in its own file but inside this module, like the journal.
#[path = "budget.rs"]
mod budget;
pub use budget::{BudgetClock, CheckpointMarker, StoreBudgetLedger};

// The last territory priority list of each rep, a child module like the journal.
#[path = "list_store.rs"]
mod list_store;
pub use list_store::{ListedAccount, StoredList};

// The score history lives in its own file but inside this module, like the journal.
#[path = "score_history.rs"]
mod score_history;
pub use score_history::{ScoreHistory, ScoreHistoryEntry};

// The per-level score runs and their staging trees, a child module like the journal.
#[path = "score_store.rs"]
mod score_store;
pub use score_store::{ScoreWriter, SCORE_CHUNK_ROWS};

// The marks of records changed since the flag scan or the push last read them, a child module
// like the journal.
#[path = "pending.rs"]
mod pending;
pub use pending::PendingKind;

// Rep flags on scores live in their own file but inside this module, like the journal.
#[path = "feedback_store.rs"]
mod feedback_store;
pub use feedback_store::PreviousRow;

// The daemon's job run history lives in its own file but inside this module, like the journal.
#[path = "runlog.rs"]
mod runlog;
pub use runlog::{JobRun, RunOutcome, MAX_JOB_RUNS};

// Alert state, alerts and per-user daily counts live in their own file but inside this module.
#[path = "alert_store.rs"]
mod alert_store;
pub use alert_store::{AlertCommit, AlertEntry, AlertState, AlertStatus, HeldCrossing};
