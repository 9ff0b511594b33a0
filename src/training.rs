//! Training on closed deals: one example per deal with the account's features as of the deal's
//! creation, validated on the latest closed deals (time-based holdout), then refitted on all.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::features::{fields, Deal, FeatureSpace, History};
use crate::model::{metrics, Dataset, GradientBoostedModel, Model, TrainParams};
use crate::pipeline::PipelineError;
use crate::store::{Store, StoredModel};

/// What training measured, stored with the model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub version: String,
    pub examples: usize,
    pub won: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// Close date of the first held-out deal: the holdout covers this date and later.
    pub holdout_from: Option<DateTime<Utc>>,
    pub holdout_auc: Option<f64>,
    pub holdout_log_loss: f64,
    pub holdout_brier: f64,
    /// Log loss of always predicting the training win rate, the bar the model must clear.
    pub baseline_log_loss: f64,
    pub features: usize,
    /// Ids of the held-out deals, for comparing against another scorer on the same rows.
    #[serde(skip)]
    pub holdout_ids: Vec<String>,
    /// Outcomes of `holdout_ids` (1 won, 0 lost), in the same order.
    #[serde(skip)]
    pub holdout_labels: Vec<f64>,
    /// Model probabilities for `holdout_ids`, in the same order.
    #[serde(skip)]
    pub holdout_predictions: Vec<f64>,
}

/// Loads the pulled records into a [`History`].
pub fn load_history(store: &Store, config: &Config) -> Result<History, PipelineError> {
    Ok(History::build(
        store.records(fields::ACCOUNT)?,
        store.records(fields::CONTACT)?,
        store.records(fields::OPPORTUNITY)?,
        store.records(fields::TASK)?,
        store.records(fields::EVENT)?,
        &config.features.role_field,
    ))
}

fn params(config: &Config) -> TrainParams {
    TrainParams {
        trees: config.model.trees,
        max_depth: config.model.max_depth,
        learning_rate: config.model.learning_rate,
        ..TrainParams::default()
    }
}

fn model_error(err: crate::model::ModelError) -> PipelineError {
    PipelineError::Model(err.to_string())
}

/// Returns a version name that depends only on the model's content, so retraining on the same
/// data gives the same version and does not rewrite every score.
fn content_version(model: &[u8], features: &[u8]) -> String {
    // FNV-1a, 64 bit: stable across builds and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in model.iter().chain(features) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("gbm-{hash:016x}")
}

/// Trains on the closed deals in the store and makes the result the current model.
pub fn train(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<TrainReport, PipelineError> {
    let history = load_history(store, config)?;
    let mut deals: Vec<&Deal> = history
        .deals
        .iter()
        .filter(|d| d.closed && d.close_date.is_some())
        .collect();
    deals.sort_by(|a, b| {
        a.close_date
            .cmp(&b.close_date)
            .then_with(|| a.id.cmp(&b.id))
    });
    if deals.len() < config.model.min_examples {
        return Err(PipelineError::Model(format!(
            "training needs at least {} closed deals and the store has {}; run `leadscore pull` first, or lower [model] min_examples",
            config.model.min_examples,
            deals.len()
        )));
    }

    let holdout_rows = ((deals.len() as f64) * config.model.holdout_fraction).round() as usize;
    let split = deals.len() - holdout_rows.max(1);
    let training_accounts: Vec<&str> = deals[..split]
        .iter()
        .map(|d| d.account_id.as_str())
        .collect();
    let space = FeatureSpace::fit(&config.features, &history, &training_accounts);
    let rows: Vec<Vec<f64>> = deals
        .iter()
        .map(|d| space.row(&history, &d.account_id, d.created))
        .collect();
    let labels: Vec<f64> = deals
        .iter()
        .map(|d| if d.won { 1.0 } else { 0.0 })
        .collect();
    let dataset = |range: std::ops::Range<usize>| Dataset {
        feature_names: space.names(),
        rows: rows[range.clone()].to_vec(),
        labels: labels[range].to_vec(),
    };

    let params = params(config);
    let validation_model =
        GradientBoostedModel::fit(&dataset(0..split), &params).map_err(model_error)?;
    let holdout = dataset(split..deals.len());
    let predictions = validation_model
        .predict(&holdout.rows)
        .map_err(model_error)?;
    let train_rate = labels[..split].iter().sum::<f64>() / split as f64;
    let baseline = vec![train_rate; holdout.labels.len()];

    let final_model =
        GradientBoostedModel::fit(&dataset(0..deals.len()), &params).map_err(model_error)?;
    let model_bytes = final_model.to_bytes().map_err(model_error)?;
    let features_json =
        serde_json::to_value(&space).map_err(|e| PipelineError::Model(e.to_string()))?;
    let version = content_version(&model_bytes, features_json.to_string().as_bytes());

    let report = TrainReport {
        version: version.clone(),
        examples: deals.len(),
        won: labels.iter().filter(|l| **l > 0.5).count(),
        train_rows: split,
        holdout_rows: deals.len() - split,
        holdout_from: deals[split].close_date,
        holdout_auc: metrics::roc_auc(&holdout.labels, &predictions),
        holdout_log_loss: metrics::log_loss(&holdout.labels, &predictions),
        holdout_brier: metrics::brier(&holdout.labels, &predictions),
        baseline_log_loss: metrics::log_loss(&holdout.labels, &baseline),
        features: space.columns.len(),
        holdout_ids: deals[split..].iter().map(|d| d.id.clone()).collect(),
        holdout_labels: holdout.labels.clone(),
        holdout_predictions: predictions,
    };
    store.save_model(&StoredModel {
        version,
        trained_at: now,
        features: features_json,
        report: serde_json::to_value(&report).map_err(|e| PipelineError::Model(e.to_string()))?,
        model: model_bytes,
    })?;
    tracing::info!(version = %report.version, examples = report.examples, auc = ?report.holdout_auc, "trained");
    Ok(report)
}
