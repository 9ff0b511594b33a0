//! Scoring open accounts with the current model: a 0-100 score, a tier and the reasons.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadscore_connector::Value;
use serde::Serialize;

use crate::config::Config;
use crate::features::{fields, FeatureSpace, History};
use crate::model::TrainedModel;
use crate::pipeline::PipelineError;
use crate::store::{ScoreRow, Store, StoredModel};
use crate::training::load_history;

/// Maximum number of reasons that lower a score, listed after the reasons that raise it.
const NEGATIVE_REASONS: usize = 2;

#[derive(Debug, Serialize)]
pub struct ScoreReport {
    pub model_version: String,
    pub scored: usize,
    /// Accounts per tier label, in tier order A to D.
    pub tiers: BTreeMap<String, usize>,
    /// The highest-scoring accounts, best first.
    pub top: Vec<ScoreRow>,
}

/// Returns the accounts that get scored: those with contacts or deals, leaving out customers
/// (accounts with a won deal) unless `skip_customers` is off.
pub fn open_accounts<'h>(history: &'h History, config: &Config) -> Vec<&'h str> {
    history
        .accounts
        .keys()
        .map(String::as_str)
        .filter(|id| history.has_activity_data(id))
        .filter(|id| !(config.scoring.skip_customers && history.is_customer(id)))
        .collect()
}

/// Turns a calibrated probability into the 0-100 score written to the CRM.
pub fn score_of(probability: f64) -> f64 {
    (probability * 100.0).round().clamp(0.0, 100.0)
}

/// Scores every open account as of `config.scoring.as_of` (or `now`) and stores the scores.
pub fn score(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<ScoreReport, PipelineError> {
    let Some(stored) = store.current_model()? else {
        return Err(PipelineError::Model(
            "no trained model in the store; run `leadscore train` first".to_string(),
        ));
    };
    let history = load_history(store, config)?;
    let mut scores = score_accounts(&stored, &history, config, now)?;
    let scored = scores.len();
    store.replace_scores(&scores)?;

    let mut tiers: BTreeMap<String, usize> =
        config.tiers.labels.iter().map(|l| (l.clone(), 0)).collect();
    for row in &scores {
        *tiers.entry(row.tier.clone()).or_default() += 1;
    }
    scores.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then_with(|| a.id.cmp(&b.id))
    });
    scores.truncate(10);
    tracing::info!(scored, model = %stored.version, "scored");
    Ok(ScoreReport {
        model_version: stored.version,
        scored,
        tiers,
        top: scores,
    })
}

/// Scores every open account with `stored` as of `config.scoring.as_of` (or `now`) and
/// returns the rows without storing them, so two models can be compared on the same accounts.
pub fn score_accounts(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<ScoreRow>, PipelineError> {
    let space: FeatureSpace = serde_json::from_value(stored.features.clone()).map_err(|e| {
        PipelineError::Model(format!(
            "stored feature encoding of model {} is unreadable: {e}; retrain",
            stored.version
        ))
    })?;
    let model =
        TrainedModel::from_bytes(&stored.model).map_err(|e| PipelineError::Model(e.to_string()))?;
    let at = config.scoring.as_of.unwrap_or(now);

    let accounts = open_accounts(history, config);
    let rows: Vec<Vec<f64>> = accounts
        .iter()
        .map(|id| space.row(history, id, at))
        .collect();
    let probabilities = model
        .predict(&rows)
        .map_err(|e| PipelineError::Model(e.to_string()))?;
    let contributions = model
        .contributions(&rows)
        .map_err(|e| PipelineError::Model(e.to_string()))?;

    let mut scores = Vec::with_capacity(accounts.len());
    for (index, id) in accounts.iter().enumerate() {
        let account = &history.accounts[*id];
        let probability = probabilities[index];
        let score = score_of(probability);
        let reasons = space.reasons(
            history,
            id,
            &rows[index],
            &contributions[index].values,
            config.scoring.reasons,
            NEGATIVE_REASONS,
        );
        scores.push(ScoreRow {
            object: fields::ACCOUNT.to_string(),
            id: id.to_string(),
            name: account.get("Name").as_str().unwrap_or_default().to_string(),
            owner_id: match account.get("OwnerId") {
                Value::Text(owner) => Some(owner.clone()),
                _ => None,
            },
            probability,
            score,
            tier: config.tiers.tier_for(score).to_string(),
            reasons,
            model_version: stored.version.clone(),
            scored_at: now,
        });
    }
    Ok(scores)
}
