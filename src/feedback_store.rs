//! Rep flags in the store: every flag in the order it was seen, and each record's latest flag.
//!
//! `feedback_flags` keeps the history (a key from the store's id counter, so iteration is
//! oldest first). `feedback_latest` keeps the latest flag of each record under `object/id`, which the
//! next pull compares with to find changed flags. Both are written in one transaction.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::store_db::{generate_id, table, Commit};
use super::{decode, encode, ScoreRow, Store, StoreError, StoredModel};
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
        self.db.write(Commit::Durable, |transaction| {
            let mut keys = Vec::with_capacity(flags.len());
            for _ in flags {
                keys.push(generate_id(transaction)?.to_be_bytes());
            }
            let mut history = transaction.open_table(table(FLAGS_TREE))?;
            let mut latest = transaction.open_table(table(LATEST_TREE))?;
            for (key, flag) in keys.iter().zip(flags) {
                let bytes = encode(flag);
                history.insert(&key[..], bytes.as_slice())?;
                latest.insert(
                    latest_key(&flag.object, &flag.id).as_bytes(),
                    bytes.as_slice(),
                )?;
            }
            Ok(())
        })
    }

    /// Returns every stored flag of every level, oldest first.
    pub fn flags(&self) -> Result<Vec<Flag>, StoreError> {
        let mut out = Vec::new();
        self.db.for_each(FLAGS_TREE, |key, value| {
            out.push(decode(FLAGS_TREE, key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns the latest flag of each flagged record, by `(object, id)`.
    pub fn latest_flags(&self) -> Result<BTreeMap<(String, String), Flag>, StoreError> {
        let mut out = BTreeMap::new();
        self.db.for_each(LATEST_TREE, |key, value| {
            let flag: Flag = decode(LATEST_TREE, key, value)?;
            out.insert((flag.object.clone(), flag.id.clone()), flag);
            Ok(())
        })?;
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
        // The read and the write share one write transaction, so a concurrent save of the
        // same version lands either before the read or after the write.
        self.db.write(Commit::Durable, |transaction| {
            let mut models = transaction.open_table(table("models"))?;
            let Some(bytes) = models
                .get(version.as_bytes())?
                .map(|value| value.value().to_vec())
            else {
                return Ok(false);
            };
            let mut model: StoredModel = decode("models", version.as_bytes(), &bytes)?;
            let serde_json::Value::Object(report) = &mut model.report else {
                return Ok(false);
            };
            report.insert("feedback".to_string(), feedback);
            models.insert(version.as_bytes(), encode(&model).as_slice())?;
            Ok(true)
        })
    }

    /// Returns what the score step reads of the stored row of each of `ids` at this view's
    /// level, `None` for ids without a score, read in one transaction. The rest of each row is
    /// skipped while decoding, so the step can compare keys without building whole rows.
    pub fn previous_rows(&self, ids: &[&str]) -> Result<Vec<Option<PreviousRow>>, StoreError> {
        self.live_scores_as(ids)
    }

    /// Returns the stored score of one record at this view's level.
    pub fn score_row(&self, id: &str) -> Result<Option<ScoreRow>, StoreError> {
        let name = self.scores_tree_name(self.level)?;
        match self.db.get(&name, id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(&name, id.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }
}

/// The fields of a stored [`ScoreRow`] that decide whether the score step keeps the row or
/// reuses its reasons, and those its report counts.
#[derive(Debug, serde::Deserialize)]
pub struct PreviousRow {
    #[serde(default)]
    pub model_version: String,
    #[serde(default)]
    pub reasons_key: Option<String>,
    pub reasons: Vec<String>,
    #[serde(default)]
    pub inputs_key: Option<String>,
    #[serde(default)]
    pub valid_from: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
    pub probability: f64,
    pub score: f64,
    pub tier: String,
    #[serde(default)]
    pub hint: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub sales_ready: Option<bool>,
}
