//! Rep flags in the store: every flag in the order it was seen, and each record's latest flag.
//!
//! `feedback_flags` keeps the history (a key from sled's id generator, so iteration is oldest
//! first). `feedback_latest` keeps the latest flag of each record under `object/id`, which the
//! next pull compares with to find changed flags. Both are written in one transaction.
//!
//! This file is a child module of `store`, so sled stays inside the store module.

use std::collections::BTreeMap;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{decode, encode, transaction_outcome, ScoreRow, Store, StoreError, StoredModel};
use crate::feedback::Flag;

const FLAGS_TREE: &str = "feedback_flags";
const LATEST_TREE: &str = "feedback_latest";

fn latest_key(object: &str, id: &str) -> String {
    format!("{object}/{id}")
}

impl Store {
    /// Appends `flags` to the history and makes each the latest flag of its record, in one
    /// transaction.
    pub fn record_flags(&self, flags: &[Flag]) -> Result<(), StoreError> {
        if flags.is_empty() {
            return Ok(());
        }
        let history = self.db.open_tree(FLAGS_TREE)?;
        let latest = self.db.open_tree(LATEST_TREE)?;
        let mut rows = Vec::with_capacity(flags.len());
        for flag in flags {
            rows.push((
                self.db.generate_id()?.to_be_bytes(),
                latest_key(&flag.object, &flag.id),
                encode(flag),
            ));
        }
        let result: Result<(), TransactionError<()>> = (&history, &latest).transaction(|(h, l)| {
            for (key, latest_key, bytes) in &rows {
                h.insert(&key[..], bytes.as_slice())?;
                l.insert(latest_key.as_bytes(), bytes.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        transaction_outcome(result)?;
        self.db.flush()?;
        Ok(())
    }

    /// Returns every stored flag of every level, oldest first.
    pub fn flags(&self) -> Result<Vec<Flag>, StoreError> {
        let tree = self.db.open_tree(FLAGS_TREE)?;
        let mut out = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            let (key, value) = entry?;
            out.push(decode(FLAGS_TREE, &key, &value)?);
        }
        Ok(out)
    }

    /// Returns the latest flag of each flagged record, by `(object, id)`.
    pub fn latest_flags(&self) -> Result<BTreeMap<(String, String), Flag>, StoreError> {
        let tree = self.db.open_tree(LATEST_TREE)?;
        let mut out = BTreeMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            let flag: Flag = decode(LATEST_TREE, &key, &value)?;
            out.insert((flag.object.clone(), flag.id.clone()), flag);
        }
        Ok(out)
    }

    /// Replaces the `feedback` part of a stored model's report with `feedback`. Retraining on
    /// unchanged data gives the same version, which the registry does not store again, so
    /// this keeps that model's card up to date with the flags. Returns `false` when no model
    /// has the version or its report is not a JSON object.
    pub fn set_model_feedback(
        &self,
        version: &str,
        feedback: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let models = self.db.open_tree("models")?;
        let Some(bytes) = models.get(version)? else {
            return Ok(false);
        };
        let mut model: StoredModel = decode("models", version.as_bytes(), &bytes)?;
        let serde_json::Value::Object(report) = &mut model.report else {
            return Ok(false);
        };
        report.insert("feedback".to_string(), feedback);
        // The compare-and-swap leaves a model changed since it was read (by a concurrent
        // save of the same version) alone.
        let swapped = models.compare_and_swap(version, Some(bytes), Some(encode(&model)))?;
        self.db.flush()?;
        Ok(swapped.is_ok())
    }

    /// Returns the stored score of one record at this view's level.
    pub fn score_row(&self, id: &str) -> Result<Option<ScoreRow>, StoreError> {
        let name = self.scores_tree_name(self.level)?;
        let tree = self.db.open_tree(&name)?;
        match tree.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(&name, id.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }
}
