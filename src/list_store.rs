//! The last territory priority list of each rep, kept in the store so that the next list can
//! show what changed.
//!
//! This file is a child module of `store`, so sled stays inside the store module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Store, StoreError};

const LISTS_TREE: &str = "territory_lists";

/// One account as it stood on a written list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedAccount {
    pub id: String,
    pub name: String,
    pub score: f64,
    pub tier: String,
}

/// The list last written for one rep, keyed by [`StoredList::rep_key`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredList {
    /// The owner's user id, or the key of the unassigned list.
    pub rep_key: String,
    pub rep_name: String,
    /// The file name of the list without its extension, so that its files can be removed once
    /// the rep has no list.
    pub file_stem: String,
    pub written_at: DateTime<Utc>,
    /// The listed accounts, best first.
    pub accounts: Vec<ListedAccount>,
}

impl Store {
    /// Returns the last list of every rep, ordered by rep key.
    pub fn territory_lists(&self) -> Result<Vec<StoredList>, StoreError> {
        let tree = self.db.open_tree(LISTS_TREE)?;
        let mut out = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            let (key, value) = entry?;
            out.push(decode(LISTS_TREE, &key, &value)?);
        }
        Ok(out)
    }

    /// Replaces every stored list with `lists` in one atomic batch, flushed before this returns.
    pub fn replace_territory_lists(&self, lists: &[StoredList]) -> Result<(), StoreError> {
        let tree = self.db.open_tree(LISTS_TREE)?;
        let mut batch = sled::Batch::default();
        for key in tree.iter().keys() {
            batch.remove(key?);
        }
        for list in lists {
            batch.insert(list.rep_key.as_bytes(), encode(list));
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
    }
}
