//! The last territory priority list of each rep, kept in the store so that the next list can
//! show what changed.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store_db::{table, Commit};
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
        let mut out = Vec::new();
        self.db.for_each(LISTS_TREE, |key, value| {
            out.push(decode(LISTS_TREE, key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Replaces every stored list with `lists` in one durable transaction.
    pub fn replace_territory_lists(&self, lists: &[StoredList]) -> Result<(), StoreError> {
        self.db.write(Commit::Durable, |transaction| {
            let mut tree = transaction.open_table(table(LISTS_TREE))?;
            tree.retain(|_, _| false)?;
            for list in lists {
                tree.insert(list.rep_key.as_bytes(), encode(list).as_slice())?;
            }
            Ok(())
        })
    }
}
