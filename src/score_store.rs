//! The scores of each level, written run by run through a staging tree so a run is stored
//! in chunks yet replaces the previous run atomically.
//!
//! A run's rows go into a new tree named `<scores tree>:run-<id>` in batches of at most
//! [`SCORE_CHUNK_ROWS`]. [`ScoreWriter::commit`] flushes them, then points the `meta` key
//! `<scores tree>:live` at the new tree in one insert, flushes again and drops the tree that
//! was live before. A reader resolves the pointer first, so it sees either the whole previous
//! run or the whole new one. A store written before staging existed has no pointer, and its
//! scores stay in the bare `scores` (or `scores/<level>`) tree until the first run commits.
//! A process killed before the pointer moved leaves a staging tree that no pointer names, and
//! one killed after it leaves the old tree; both are dropped when the store is next opened or
//! the level's scores are next written.
//!
//! This file is a child module of `store`, so sled stays inside the store module.

use super::{encode, ScoreRow, Store, StoreError};
use crate::level::Level;

/// Rows per sled batch while a run is staged. Storing 759,904 contact scores in one batch,
/// with their score history, cost over 11 KiB of resident memory per row.
pub const SCORE_CHUNK_ROWS: usize = 4096;

/// Separates a level's scores tree name from the run id of one of its staging trees.
const RUN_SEPARATOR: &str = ":run-";

/// Returns the name of the tree that contained a level's scores before staging existed, which
/// is also the prefix of its staging trees.
fn base_name(level: Level) -> String {
    format!("scores{}", level.store_suffix())
}

/// Returns the `meta` key that names a level's live scores tree.
fn pointer_key(level: Level) -> String {
    format!("{}:live", base_name(level))
}

/// Writes one scoring run of one level; nothing it writes is visible until [`commit`].
///
/// Dropping the writer without committing drops its staging tree, so an aborted run leaves
/// the previous scores as they were. One writer per level may be open at a time: starting a
/// writer drops staging trees that an earlier writer left behind.
///
/// [`commit`]: ScoreWriter::commit
pub struct ScoreWriter<'s> {
    store: &'s Store,
    tree: sled::Tree,
    name: String,
    /// The pointer's value when the writer started, so a commit notices another commit.
    live_before: Option<sled::IVec>,
    rows: usize,
    committed: bool,
}

impl ScoreWriter<'_> {
    /// Stages `rows`, in sled batches of at most [`SCORE_CHUNK_ROWS`]. A later row with the
    /// id of an earlier one replaces it, as in one batch.
    pub fn push(&mut self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        for chunk in rows.chunks(SCORE_CHUNK_ROWS) {
            let mut batch = sled::Batch::default();
            for row in chunk {
                batch.insert(row.id.as_bytes(), encode(row));
            }
            self.tree.apply_batch(batch)?;
            self.rows += chunk.len();
        }
        Ok(())
    }

    /// Returns the number of rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Makes the staged rows the level's scores and drops the previous run's tree.
    ///
    /// The staged rows are flushed before the pointer moves, and the pointer is flushed
    /// before the old tree is dropped, so a crash at any point leaves one whole run readable.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.tree.flush()?;
        let meta = self.store.db.open_tree("meta")?;
        let level = self.store.level;
        let swapped = meta.compare_and_swap(
            pointer_key(level),
            self.live_before.clone(),
            Some(self.name.as_bytes()),
        )?;
        if swapped.is_err() {
            return Err(StoreError::Corrupt {
                tree: "meta".to_string(),
                key: pointer_key(level),
                message: format!(
                    "the {level} scores were replaced by another writer while this run was \
                     staged; run `leadscore score` again"
                ),
            });
        }
        self.store.db.flush()?;
        self.committed = true;
        let previous = match &self.live_before {
            Some(name) => String::from_utf8_lossy(name).into_owned(),
            None => base_name(level),
        };
        self.store.db.drop_tree(previous.as_bytes())?;
        self.store.db.flush()?;
        Ok(())
    }
}

impl Drop for ScoreWriter<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // A leftover tree is also dropped by the next open, so a failure here loses nothing.
        if let Err(error) = self.store.db.drop_tree(self.name.as_bytes()) {
            tracing::warn!(tree = %self.name, %error, "could not drop an uncommitted score run");
        }
    }
}

/// The scores of each level, a child of the store.
impl Store {
    /// Starts writing a new run of this level's scores. Rows pushed to the writer replace
    /// the stored scores when [`ScoreWriter::commit`] returns.
    pub fn score_writer(&self) -> Result<ScoreWriter<'_>, StoreError> {
        self.drop_stale_score_trees(self.level)?;
        let meta = self.db.open_tree("meta")?;
        let live_before = meta.get(pointer_key(self.level))?;
        let name = format!(
            "{}{RUN_SEPARATOR}{:016x}",
            base_name(self.level),
            self.db.generate_id()?
        );
        let tree = self.db.open_tree(&name)?;
        Ok(ScoreWriter {
            store: self,
            tree,
            name,
            live_before,
            rows: 0,
            committed: false,
        })
    }

    /// Replaces all stored scores of this level with `rows`, staged in chunks and switched
    /// in at once.
    pub fn replace_scores(&self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        let mut writer = self.score_writer()?;
        writer.push(rows)?;
        writer.commit()
    }

    /// Returns the name of the tree that contains this level's live scores.
    pub(super) fn scores_tree_name(&self, level: Level) -> Result<String, StoreError> {
        let meta = self.db.open_tree("meta")?;
        Ok(match meta.get(pointer_key(level))? {
            Some(name) => String::from_utf8_lossy(&name).into_owned(),
            None => base_name(level),
        })
    }

    /// Returns the names of this level's score trees that no pointer names: staging trees of
    /// runs that never committed, and the tree a committed run replaced but did not drop.
    /// [`Store::open`] drops them, so this is empty right after an open.
    pub fn stale_score_trees(&self) -> Result<Vec<String>, StoreError> {
        let live = self.scores_tree_name(self.level)?;
        let base = base_name(self.level);
        let staged_prefix = format!("{base}{RUN_SEPARATOR}");
        let mut stale = Vec::new();
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let ours = name == base || name.starts_with(&staged_prefix);
            if ours && name != live {
                stale.push(name);
            }
        }
        Ok(stale)
    }

    /// Drops the stale score trees of `level`; see [`Store::stale_score_trees`].
    pub(super) fn drop_stale_score_trees(&self, level: Level) -> Result<(), StoreError> {
        let view = self.at_level(level);
        let stale = view.stale_score_trees()?;
        for name in &stale {
            // The bare tree of a store without a pointer is created empty by any reader, so
            // only trees that are really left over are worth a log line.
            if name.contains(RUN_SEPARATOR) {
                tracing::info!(%level, tree = %name, "dropping scores of an interrupted run");
            }
            self.db.drop_tree(name.as_bytes())?;
        }
        if !stale.is_empty() {
            self.db.flush()?;
        }
        Ok(())
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
            let tree = store.db.open_tree(name).expect("tree");
            for row in rows("old", 3) {
                tree.insert(row.id.as_bytes(), encode(&row))
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
        let names: Vec<String> = store
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
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
        writer.tree.flush().expect("flush");
        // Marked committed, the writer's drop leaves its staging tree as a kill would.
        writer.committed = true;
        drop(writer);
        // A process killed after the pointer moved but before the old tree was dropped.
        let meta = store.db.open_tree("meta").expect("meta");
        let live = meta
            .get(pointer_key(Level::Account))
            .expect("get")
            .expect("pointer");
        let next = store
            .db
            .open_tree("scores:run-ffffffffffffffff")
            .expect("tree");
        for row in rows("switched", 5) {
            next.insert(row.id.as_bytes(), encode(&row))
                .expect("insert");
        }
        meta.insert(pointer_key(Level::Account), "scores:run-ffffffffffffffff")
            .expect("pointer");
        store.db.flush().expect("flush");
        let stale = store.stale_score_trees().expect("stale");
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert!(stale.contains(&String::from_utf8_lossy(&live).into_owned()));
        drop((store, next, meta));

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
        let meta = store.db.open_tree("meta").expect("meta");
        meta.insert(pointer_key(Level::Account), "scores:run-0000000000000000")
            .expect("pointer");
        let err = slow.commit().expect_err("the pointer moved");
        assert!(err.to_string().contains("another writer"), "{err}");
    }
}
