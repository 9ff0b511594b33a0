//! The scores of each level, written run by run through a staging tree so a run is stored
//! in chunks yet replaces the previous run atomically.
//!
//! A run's rows go into a new table named `<scores table>:run-<id>` in write transactions of
//! at most [`SCORE_CHUNK_ROWS`] rows. [`ScoreWriter::commit`] then points the `meta` key
//! `<scores table>:live` at the new table and deletes the table that was live before, in one
//! durable transaction. A reader resolves the pointer first, so it reads either the whole
//! previous run or the whole new one. A store written before staging existed has no pointer,
//! and its scores stay in the bare `scores` (or `scores/<level>`) table until the first run
//! commits. A process killed before the pointer moved leaves a staging table that no pointer
//! names; the level's next score writer drops it.
//!
//! A run that scores again only the records whose stored rows are no longer valid (see
//! `score_validity`) writes into the live table instead, chunk by chunk. Each row is whole and
//! was computed by the same model and settings, so a run stopped part way leaves rows that
//! are each as valid as before. Such a run is allowed only while the level's run stamp (model
//! version and settings, stored with each commit) equals the new run's.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use redb::ReadableTable;
use serde::Deserialize;

use super::store_db::{generate_id, table, Commit, Table};
use super::{encode, pending, ScoreRow, Store, StoreError};
use crate::level::Level;

/// Rows per write transaction while a run is staged. With sled, storing 759,904 contact scores
/// in one batch, with their score history, cost over 11 KiB of resident memory per row.
pub const SCORE_CHUNK_ROWS: usize = 4096;

/// Separates a level's scores table name from the run id of one of its staging tables.
const RUN_SEPARATOR: &str = ":run-";

/// Returns the name of the table that contained a level's scores before staging existed,
/// which is also the prefix of its staging tables.
fn base_name(level: Level) -> String {
    format!("scores{}", level.store_suffix())
}

/// Returns the `meta` key that names a level's live scores table.
fn pointer_key(level: Level) -> String {
    format!("{}:live", base_name(level))
}

/// Returns the `meta` key of the stamp of the run whose rows are live.
fn stamp_key(level: Level) -> String {
    format!("{}:stamp", base_name(level))
}

/// Writes one scoring run of one level; nothing it writes is visible until [`commit`].
///
/// Dropping the writer without committing drops its staging table, so an aborted run leaves
/// the previous scores as they were. One writer per level may be open at a time: starting a
/// writer drops staging tables that an earlier writer left behind.
///
/// [`commit`]: ScoreWriter::commit
pub struct ScoreWriter<'s> {
    store: &'s Store,
    name: String,
    /// The pointer's value when the writer started, so a commit notices another commit.
    live_before: Option<Vec<u8>>,
    rows: usize,
    committed: bool,
    /// Whether the writer updates the live table instead of staging a new one.
    in_place: bool,
    /// The stamp stored with the commit; `None` removes it, so the next run is whole.
    stamp: Option<String>,
}

impl ScoreWriter<'_> {
    /// Stages `rows` (in place: writes them over the live rows), in write transactions of at
    /// most [`SCORE_CHUNK_ROWS`] rows. A later row with the id of an earlier one replaces it.
    /// The transactions are not synced to disk: [`ScoreWriter::commit`] makes them durable
    /// together with the pointer. A row whose written values differ from the live run's row
    /// of the same record, or that the live run lacks, is marked for the next push in the
    /// same transaction.
    pub fn push(&mut self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        let live = match &self.live_before {
            Some(name) => String::from_utf8_lossy(name).into_owned(),
            None => base_name(self.store.level),
        };
        for chunk in rows.chunks(SCORE_CHUNK_ROWS) {
            self.store.db.write(Commit::Deferred, |transaction| {
                let mut tree;
                let changed = if self.in_place {
                    tree = transaction.open_table(table(&self.name))?;
                    changed_rows(&tree, chunk)?
                } else {
                    let changed = changed_rows(&transaction.open_table(table(&live))?, chunk)?;
                    tree = transaction.open_table(table(&self.name))?;
                    changed
                };
                for row in chunk {
                    tree.insert(row.id.as_bytes(), encode(row).as_slice())?;
                }
                drop(tree);
                let mut by_object: std::collections::BTreeMap<&str, Vec<&str>> =
                    std::collections::BTreeMap::new();
                for row in changed {
                    by_object
                        .entry(row.object.as_str())
                        .or_default()
                        .push(row.id.as_str());
                }
                for (object, ids) in by_object {
                    pending::mark_for_push(transaction, object, ids.iter().copied())?;
                }
                Ok(())
            })?;
            self.rows += chunk.len();
        }
        Ok(())
    }

    /// Returns the number of rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Sets the stamp the commit stores for the next run to compare with.
    pub fn set_stamp(&mut self, stamp: String) {
        self.stamp = Some(stamp);
    }

    /// Deletes the rows of the table being written whose ids `keep` rejects, and returns how
    /// many it deleted. An in-place run calls it for the records no longer scored.
    pub fn remove_unless(&mut self, keep: impl Fn(&str) -> bool) -> Result<usize, StoreError> {
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        self.store.db.for_each(&self.name, |key, _| {
            if !keep(&String::from_utf8_lossy(key)) {
                doomed.push(key.to_vec());
            }
            Ok(())
        })?;
        for chunk in doomed.chunks(SCORE_CHUNK_ROWS) {
            self.store.db.write(Commit::Deferred, |transaction| {
                let mut tree = transaction.open_table(table(&self.name))?;
                for key in chunk {
                    tree.remove(key.as_slice())?;
                }
                Ok(())
            })?;
        }
        Ok(doomed.len())
    }

    /// Makes the staged rows the level's scores and drops the previous run's table.
    ///
    /// The pointer moves and the old table is deleted in one durable transaction, which also
    /// makes the staged rows durable, so a crash at any point leaves one whole run readable.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let level = self.store.level;
        let pointer = pointer_key(level);
        let previous = match &self.live_before {
            Some(name) => String::from_utf8_lossy(name).into_owned(),
            None => base_name(level),
        };
        let stamp = stamp_key(level);
        self.store.db.write(Commit::Durable, |transaction| {
            let mut meta = transaction.open_table(table("meta"))?;
            match &self.stamp {
                Some(value) => {
                    meta.insert(stamp.as_bytes(), value.as_bytes())?;
                }
                None => {
                    meta.remove(stamp.as_bytes())?;
                }
            }
            if self.in_place {
                // The rows are in the live table already; this durable commit keeps them.
                return Ok(());
            }
            let live = meta
                .get(pointer.as_bytes())?
                .map(|value| value.value().to_vec());
            if live != self.live_before {
                return Err(StoreError::Corrupt {
                    tree: "meta".to_string(),
                    key: pointer.clone(),
                    message: format!(
                        "the {level} scores were replaced by another writer while this run \
                         was staged; run `leadscore score` again"
                    ),
                });
            }
            meta.insert(pointer.as_bytes(), self.name.as_bytes())?;
            drop(meta);
            transaction.delete_table(table(&previous))?;
            Ok(())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ScoreWriter<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.in_place {
            // Each row written is whole and was computed under the live stamp, so the next
            // run checks every row again and scores what is left.
            return;
        }
        // A leftover table is also dropped by the next score writer, so a failure here, or a
        // crash before the next durable commit, loses nothing.
        let deleted = self.store.db.write(Commit::Deferred, |transaction| {
            transaction.delete_table(table(&self.name))?;
            Ok(())
        });
        if let Err(error) = deleted {
            tracing::warn!(table = %self.name, %error, "could not drop an uncommitted score run");
        }
    }
}

/// Returns the rows of `chunk` whose written values differ from their row in `previous`, or
/// that `previous` lacks.
fn changed_rows<'r>(
    previous: &Table<'_>,
    chunk: &'r [ScoreRow],
) -> Result<Vec<&'r ScoreRow>, StoreError> {
    let mut changed = Vec::new();
    for row in chunk {
        let same = match previous.get(row.id.as_bytes())? {
            Some(bytes) => serde_json::from_slice::<WrittenPart>(bytes.value())
                .is_ok_and(|part| part.matches(row)),
            None => false,
        };
        if !same {
            changed.push(row);
        }
    }
    Ok(changed)
}

/// The parts of a stored score row that decide what the push writes (see
/// `writeback::desired_values`): a row whose parts equal the previous run's needs no push
/// unless the CRM's copy changed. The other fields are skipped undecoded.
#[derive(Deserialize)]
struct WrittenPart {
    score: f64,
    tier: String,
    reasons: Vec<String>,
    #[serde(default)]
    hint: Option<HintText>,
    #[serde(default)]
    sales_ready: Option<bool>,
    model_version: String,
}

/// The text of a stored hint, the only part of it the push writes.
#[derive(Deserialize)]
struct HintText {
    text: String,
}

impl WrittenPart {
    fn matches(&self, row: &ScoreRow) -> bool {
        self.score.to_bits() == row.score.to_bits()
            && self.tier == row.tier
            && self.reasons == row.reasons
            && self.hint.as_ref().map(|h| h.text.as_str())
                == row.hint.as_ref().map(|h| h.text.as_str())
            && self.sales_ready == row.sales_ready
            && self.model_version == row.model_version
    }
}

/// The scores of each level, a child of the store.
impl Store {
    /// Starts writing a new run of this level's scores. Rows pushed to the writer replace
    /// the stored scores when [`ScoreWriter::commit`] returns.
    pub fn score_writer(&self) -> Result<ScoreWriter<'_>, StoreError> {
        self.drop_stale_score_trees(self.level)?;
        let live_before = self.db.get("meta", pointer_key(self.level).as_bytes())?;
        let base = base_name(self.level);
        let name = self.db.write(Commit::Deferred, |transaction| {
            let name = format!("{base}{RUN_SEPARATOR}{:016x}", generate_id(transaction)?);
            transaction.open_table(table(&name))?;
            Ok(name)
        })?;
        Ok(ScoreWriter {
            store: self,
            name,
            live_before,
            rows: 0,
            committed: false,
            in_place: false,
            stamp: None,
        })
    }

    /// Starts a run of this level that updates the live scores in place, when the live run's
    /// stamp equals `stamp`. Returns `None` otherwise or with no live run, so the caller
    /// stages a whole run with [`Store::score_writer`].
    pub fn score_writer_in_place(
        &self,
        stamp: &str,
    ) -> Result<Option<ScoreWriter<'_>>, StoreError> {
        let live = self.db.get("meta", stamp_key(self.level).as_bytes())?;
        if live.as_deref() != Some(stamp.as_bytes()) {
            return Ok(None);
        }
        self.drop_stale_score_trees(self.level)?;
        let live_before = self.db.get("meta", pointer_key(self.level).as_bytes())?;
        let name = self.scores_tree_name(self.level)?;
        Ok(Some(ScoreWriter {
            store: self,
            name,
            live_before,
            rows: 0,
            committed: false,
            in_place: true,
            stamp: Some(stamp.to_string()),
        }))
    }

    /// Replaces all stored scores of this level with `rows`, staged in chunks and switched
    /// in at once.
    pub fn replace_scores(&self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        let mut writer = self.score_writer()?;
        writer.push(rows)?;
        writer.commit()
    }

    /// Returns the live score row of each of `ids` at this level (`None` for an id without
    /// one), read in one transaction.
    pub fn score_rows(&self, ids: &[&str]) -> Result<Vec<Option<ScoreRow>>, StoreError> {
        self.live_scores_as(ids)
    }

    /// Decodes the live score row of each of `ids` at this level as `T` (`None` for an id
    /// without one), read in one transaction. A `T` with fewer fields skips the rest.
    pub(super) fn live_scores_as<T: serde::de::DeserializeOwned>(
        &self,
        ids: &[&str],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let name = self.scores_tree_name(self.level)?;
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let mut rows = Vec::with_capacity(keys.len());
        self.db.visit_many(&name, &keys, |key, bytes| {
            rows.push(
                bytes
                    .map(|bytes| super::decode(&name, key, bytes))
                    .transpose()?,
            );
            Ok(())
        })?;
        Ok(rows)
    }

    /// Returns the number of live score rows at this level.
    pub fn score_count(&self) -> Result<usize, StoreError> {
        let name = self.scores_tree_name(self.level)?;
        Ok(usize::try_from(self.db.len(&name)?).unwrap_or(usize::MAX))
    }

    /// Returns the name of the table that contains this level's live scores.
    pub(super) fn scores_tree_name(&self, level: Level) -> Result<String, StoreError> {
        Ok(match self.db.get("meta", pointer_key(level).as_bytes())? {
            Some(name) => String::from_utf8_lossy(&name).into_owned(),
            None => base_name(level),
        })
    }

    /// Returns the names of this level's score tables that no pointer names: staging tables
    /// of runs that never committed, and a table a committed run replaced but did not drop.
    /// The next score writer drops them.
    pub fn stale_score_trees(&self) -> Result<Vec<String>, StoreError> {
        let live = self.scores_tree_name(self.level)?;
        let base = base_name(self.level);
        let staged_prefix = format!("{base}{RUN_SEPARATOR}");
        let mut stale = Vec::new();
        for name in self.db.table_names()? {
            let ours = name == base || name.starts_with(&staged_prefix);
            if ours && name != live {
                stale.push(name);
            }
        }
        Ok(stale)
    }

    /// Drops the stale score tables of `level`; see [`Store::stale_score_trees`].
    pub(super) fn drop_stale_score_trees(&self, level: Level) -> Result<(), StoreError> {
        let view = self.at_level(level);
        let stale = view.stale_score_trees()?;
        if stale.is_empty() {
            return Ok(());
        }
        for name in &stale {
            tracing::info!(%level, table = %name, "dropping scores of an interrupted run");
        }
        self.db.write(Commit::Durable, |transaction| {
            for name in &stale {
                transaction.delete_table(table(name))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn rows(tag: &str, count: usize) -> Vec<ScoreRow> {
        (0..count)
            .map(|i| ScoreRow {
                object: "Account".into(),
                id: format!("001{i:06}"),
                name: format!("account {i}"),
                owner_id: None,
                probability: 0.5,
                score: 50.0,
                tier: "B".into(),
                reasons: vec![],
                hint: None,
                sales_ready: None,
                reasons_key: None,
                inputs_key: None,
                valid_from: None,
                valid_until: None,
                model_version: tag.into(),
                scored_at: Utc
                    .with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
                    .single()
                    .expect("time"),
            })
            .collect()
    }

    fn tags(store: &Store) -> Vec<String> {
        let mut tags: Vec<String> = store
            .scores()
            .expect("scores")
            .into_iter()
            .map(|row| row.model_version)
            .collect();
        tags.dedup();
        tags
    }

    #[test]
    fn store_without_pointer_reads_and_upgrades() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let contacts = store.at_level(Level::Contact);
        // A store written before staging existed: rows in the bare trees, no pointer.
        for (view, name) in [(&store, "scores"), (&contacts, "scores/contact")] {
            for row in rows("old", 3) {
                store
                    .db
                    .put(name, row.id.as_bytes(), &encode(&row))
                    .expect("insert");
            }
            assert_eq!(tags(view), ["old"]);
        }
        assert_eq!(
            store
                .score_row("001000002")
                .expect("row")
                .map(|r| r.name)
                .as_deref(),
            Some("account 2")
        );

        store.replace_scores(&rows("new", 2)).expect("replace");
        assert_eq!(tags(&store), ["new"]);
        assert_eq!(store.scores().expect("scores").len(), 2);
        let names = store.db.table_names().expect("names");
        assert!(!names.contains(&"scores".to_string()), "{names:?}");
        // The contact level still reads its own bare tree.
        assert_eq!(tags(&contacts), ["old"]);
        drop((store, contacts));

        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(tags(&store), ["new"]);
        assert_eq!(tags(&store.at_level(Level::Contact)), ["old"]);
    }

    #[test]
    fn run_spans_several_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.replace_scores(&rows("first", 10)).expect("first");
        let mut writer = store.score_writer().expect("writer");
        let run = rows("second", SCORE_CHUNK_ROWS * 2 + 5);
        writer.push(&run[..SCORE_CHUNK_ROWS + 1]).expect("push");
        writer.push(&run[SCORE_CHUNK_ROWS + 1..]).expect("push");
        assert_eq!(writer.rows(), run.len());
        // Until the commit, readers see the previous run only.
        assert_eq!(tags(&store), ["first"]);
        writer.commit().expect("commit");
        assert_eq!(store.scores().expect("scores"), run);
        assert!(store.stale_score_trees().expect("stale").is_empty());
    }

    #[test]
    fn changed_rows_marked_for_push() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let push = super::super::PendingKind::Push;
        store.track_changes("Account", true).expect("track");
        // Before the push began a whole scan, nothing is marked for it.
        store.replace_scores(&rows("v1", 6)).expect("first");
        assert_eq!(store.pending_count(push, "Account").expect("count"), 0);
        store.begin_whole_scan(push, "Account").expect("begin");

        let mut next = rows("v1", 7);
        // Only the written values count: a new time scored or probability marks nothing.
        next[0].scored_at += chrono::Duration::days(1);
        next[0].probability = 0.9;
        next[1].score = 51.0;
        next[2].tier = "A".into();
        next[3].reasons = vec!["+ 3 buying roles engaged in 365 days".into()];
        next[4].sales_ready = Some(true);
        next[5].model_version = "v2".into();
        store.replace_scores(&next).expect("second");
        let marked = store
            .pending_ids(push, "Account", None, 100)
            .expect("marks");
        let expected: Vec<String> = next[1..].iter().map(|row| row.id.clone()).collect();
        assert_eq!(marked, expected);
    }

    #[test]
    fn aborted_run_leaves_scores() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.replace_scores(&rows("kept", 4)).expect("first");
        let mut writer = store.score_writer().expect("writer");
        writer.push(&rows("aborted", 8)).expect("push");
        drop(writer);
        assert_eq!(tags(&store), ["kept"]);
        assert!(store.stale_score_trees().expect("stale").is_empty());
    }

    #[test]
    fn interrupted_runs_dropped_by_next_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store.replace_scores(&rows("kept", 4)).expect("first");
        // A process killed after staging rows: the writer never commits or cleans up.
        let mut writer = store.score_writer().expect("writer");
        writer.push(&rows("killed", 6)).expect("push");
        store.db.flush().expect("flush");
        // Marked committed, the writer's drop leaves its staging table as a kill would.
        writer.committed = true;
        drop(writer);
        // A process killed after the pointer moved but before the old table was dropped.
        let live = store
            .db
            .get("meta", pointer_key(Level::Account).as_bytes())
            .expect("get")
            .expect("pointer");
        for row in rows("switched", 5) {
            store
                .db
                .put(
                    "scores:run-ffffffffffffffff",
                    row.id.as_bytes(),
                    &encode(&row),
                )
                .expect("insert");
        }
        store
            .db
            .put(
                "meta",
                pointer_key(Level::Account).as_bytes(),
                b"scores:run-ffffffffffffffff",
            )
            .expect("pointer");
        let stale = store.stale_score_trees().expect("stale");
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert!(stale.contains(&String::from_utf8_lossy(&live).into_owned()));
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(tags(&store), ["switched"]);
        assert_eq!(store.scores().expect("scores").len(), 5);
        drop(store.score_writer().expect("writer"));
        assert!(store.stale_score_trees().expect("stale").is_empty());
    }

    #[test]
    fn concurrent_commit_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let mut slow = store.score_writer().expect("writer");
        slow.push(&rows("slow", 2)).expect("push");
        // A second writer would drop the first one's staging tree, so build it by hand.
        store
            .db
            .put(
                "meta",
                pointer_key(Level::Account).as_bytes(),
                b"scores:run-0000000000000000",
            )
            .expect("pointer");
        let err = slow.commit().expect_err("the pointer moved");
        assert!(err.to_string().contains("another writer"), "{err}");
    }
}
