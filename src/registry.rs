//! The model registry: every trained model is kept, and a candidate replaces the live model
//! only when it is not worse on the same holdout rows.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{Store, StoreError, StoredModel};

/// A freshly trained model waiting for the promotion decision.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub stored: StoredModel,
    /// The candidate's ROC AUC on its holdout rows.
    pub holdout_auc: Option<f64>,
    /// The live model's ROC AUC on the same holdout rows, when there is a live model.
    pub live_holdout_auc: Option<f64>,
    /// Ids of the held-out deals.
    pub holdout_ids: Vec<String>,
    /// Hash of the configuration that shaped training (features, model settings).
    pub config_hash: String,
    /// Earliest and latest close dates of the training examples.
    pub window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
}

/// What happened to a candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PublishOutcome {
    Promoted { version: String },
    KeptAsCandidate { version: String, reason: String },
}

/// Stores the candidate and decides whether it goes live.
// TODO: keep every version with its metadata, apply the promotion margin against the live
// model, and support promote and rollback; for now every candidate goes live.
pub fn publish(
    store: &Store,
    candidate: &Candidate,
    _margin: f64,
) -> Result<PublishOutcome, StoreError> {
    store.save_model(&candidate.stored)?;
    Ok(PublishOutcome::Promoted {
        version: candidate.stored.version.clone(),
    })
}
