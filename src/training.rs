//! Training on closed deals: one example per deal with the account's features as of the deal's
//! creation, checks for sufficiency, leakage and unusable columns, then a time-ordered split
//! into train, validation and holdout. The trees, a logistic regression and their blend compete
//! on validation. The winner is calibrated there, judged on the holdout, and handed to the
//! registry as it was judged, so the stored metrics describe the model that goes live.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::enrichment::EnrichmentObject;
use crate::config::AttributeFeature;
use crate::config::{AttributeKind, Config, FeatureConfig, LabelRule, ModelConfig, TierConfig};
use crate::enrichment::EnrichmentReport;
use crate::features::{fields, Deal, FeatureSpace, History, Pulled};
use crate::level::Level;
use crate::levels::{self, match_lead_accounts, Example, LeadMatchReport};
use crate::model::calibration;
use crate::model::checks::{
    self, DroppedFeature, FeatureGroup, LeakageFlag, SegmentShortfall, SufficiencyCheck,
};
use crate::model::metrics::{self, CalibrationBin, LiftRow};
use crate::model::{
    blend, Contributions, Dataset, GradientBoostedModel, LogisticModel, ModelKind, TrainParams,
    TrainedModel,
};
use crate::pipeline::PipelineError;
use crate::projection::{ProjectedRecord, Projection, Projector};
use crate::registry::{self, Candidate, PublishOutcome};
use crate::scoring::score_of;
use crate::store::{Store, StoredModel};
use leadscore_connector::Value;

/// L2 penalty of the logistic regression, on the summed log loss of standardised inputs.
const LOGISTIC_L2: f64 = 1.0;

/// Examples for training or offline evaluation, one per closed deal (or CSV row).
#[derive(Clone, Debug, Default)]
pub struct ExampleSet {
    /// Rows, labels (1 won, 0 lost) and feature names.
    pub dataset: Dataset,
    /// One id per row.
    pub ids: Vec<String>,
    /// Time order key per row: unix seconds of the close date, or the row index.
    pub order: Vec<i64>,
}

/// Result of [`evaluate_examples`].
#[derive(Debug)]
pub struct Evaluation {
    pub report: ModelReport,
    pub holdout_ids: Vec<String>,
    pub holdout_labels: Vec<f64>,
    /// Calibrated probabilities of the chosen model on the holdout rows.
    pub holdout_predictions: Vec<f64>,
    /// The chosen model, fitted on the train slice and calibrated on the validation slice.
    pub model: TrainedModel,
    /// Train-slice rows fitted with a sample weight other than 1.
    pub weighted_train_rows: usize,
}

/// The training window; times are `None` when the examples carry no dates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub holdout_from: Option<DateTime<Utc>>,
}

/// Example counts per class and per slice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub examples: usize,
    pub won: usize,
    pub lost: usize,
    pub train: usize,
    pub validation: usize,
    pub holdout: usize,
}

/// Outcomes of the checks run before training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub sufficiency: SufficiencyCheck,
    pub leakage: Vec<LeakageFlag>,
    pub dropped: Vec<DroppedFeature>,
    /// Checks that could not run, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Holdout metrics of one model. A metric is `None` when the holdout lacks a class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
    pub brier: f64,
    pub ece: f64,
}

/// The baseline model's name and holdout metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub metrics: Metrics,
}

/// One contender of the model choice, judged on the validation slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub name: String,
    pub validation_auc: Option<f64>,
    pub validation_log_loss: f64,
}

/// Holdout rows and win rate of one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierRow {
    pub tier: String,
    pub count: usize,
    /// `None` when no holdout row falls in the tier.
    pub win_rate: Option<f64>,
}

/// Importance of one configured feature over the holdout rows: the sum of its columns' mean
/// absolute contributions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    pub feature: String,
    pub mean_abs_contribution: f64,
}

/// The candidate against the live model on the same holdout rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveComparison {
    pub live_version: Option<String>,
    pub live_auc: Option<f64>,
    pub candidate_auc: Option<f64>,
    /// The configured promotion margin.
    pub margin: f64,
}

/// Everything training measured, stored as the model's report JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub version: String,
    pub trained_at: DateTime<Utc>,
    /// `gbm`, `logistic` or `blend`.
    pub chosen: String,
    /// `isotonic`, `platt` or `none`.
    pub calibration_method: String,
    pub window: Window,
    pub counts: Counts,
    pub checks: Checks,
    /// The calibrated chosen model on the holdout.
    pub metrics: Metrics,
    pub baseline: Baseline,
    pub candidates: Vec<CandidateScore>,
    pub calibration: Vec<CalibrationBin>,
    pub lift: Vec<LiftRow>,
    pub tiers: Vec<TierRow>,
    pub top_features: Vec<FeatureImportance>,
    /// Trees the gradient-boosted candidate kept after early stopping on the validation
    /// slice. `None` in reports written before early stopping existed.
    #[serde(default)]
    pub trees_used: Option<usize>,
    pub live_comparison: Option<LiveComparison>,
    /// The level the model scores.
    #[serde(default)]
    pub level: Level,
    /// The enrichment tables joined for training: file, content version and join counts.
    #[serde(default)]
    pub enrichment: Vec<serde_json::Value>,
    /// The counts of leads tied to accounts (lead level only).
    #[serde(default)]
    pub lead_match: Option<serde_json::Value>,
    /// The reps' flags on this level's scores and how this model relates to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<crate::feedback::FeedbackSummary>,
}

/// Training summary printed by `train`: the main [`ModelReport`] figures and the publish outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub level: Level,
    /// Problems worth an admin's attention that did not stop training.
    pub warnings: Vec<String>,
    pub version: String,
    pub examples: usize,
    pub won: usize,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub holdout_rows: usize,
    /// Close date of the first held-out deal: the holdout covers this date and later.
    pub holdout_from: Option<DateTime<Utc>>,
    pub chosen: String,
    pub calibration_method: String,
    pub holdout_auc: Option<f64>,
    pub holdout_log_loss: f64,
    pub holdout_brier: f64,
    pub holdout_ece: f64,
    /// Log loss of always predicting the training win rate, the bar the model must clear.
    pub baseline_log_loss: f64,
    pub features: usize,
    pub publish: PublishOutcome,
    /// Ids of the held-out deals, for comparing against another scorer on the same rows.
    #[serde(skip)]
    pub holdout_ids: Vec<String>,
    /// Outcomes of `holdout_ids` (1 won, 0 lost), in the same order.
    #[serde(skip)]
    pub holdout_labels: Vec<f64>,
    /// Calibrated probabilities for `holdout_ids`, in the same order.
    #[serde(skip)]
    pub holdout_predictions: Vec<f64>,
}

/// The pulled records as training and scoring read them: indexed, with enrichment tables
/// joined and leads tied to accounts, plus what those joins reported.
pub struct Loaded {
    pub history: History,
    /// The configured features plus those the enrichment tables add.
    pub features: FeatureConfig,
    pub enrichment: Vec<EnrichmentReport>,
    /// Present when the lead level is configured.
    pub lead_match: Option<LeadMatchReport>,
}

/// Loads the pulled records, joins the enrichment tables and builds the [`History`].
///
/// Accounts, contacts and leads stream from the store one record at a time. Each is converted
/// to the base currency, joined to the enrichment tables and projected to the fields training
/// and scoring read (see [`Projection`]) before the next is decoded. The whole records of an
/// object are therefore never in memory together.
pub fn load(store: &Store, config: &Config) -> Result<Loaded, PipelineError> {
    // Records still stored as JSON by the previous store format decode several times slower.
    store.convert_json_records(crate::daemon::shutdown_requested)?;
    // Features whose fields the last pull dropped as missing from the org are left out.
    let config = &crate::sync::effective_config(store, config)?;
    let mut tables = Vec::new();
    for table in &config.enrichment {
        tables
            .push(crate::enrichment::load(table).map_err(|e| PipelineError::Model(e.to_string()))?);
    }
    let added: Vec<(&str, &[AttributeFeature])> = tables
        .iter()
        .map(|t| (t.config().object.crm_object(), t.features()))
        .collect();
    let projection = Projection::new(config, &added);
    let mut converter = crate::currency::Converter::new(store, config)?;
    let mut appliers: Vec<_> = tables.iter().map(|t| t.applier()).collect();
    let with_leads = config.scoring.levels.contains(&Level::Lead);
    // A mapped field that no stored record has was never pulled (a changed configuration, or
    // a misspelt field), so training without it would quietly drop the feature.
    let mut unpulled = Vec::new();
    let amount_fields = config.currency.all_amount_fields();
    let join_fields: Vec<Vec<String>> = config
        .enrichment
        .iter()
        .map(|table| table.record_fields())
        .collect();
    let mut objects: [Vec<ProjectedRecord>; 3] = Default::default();
    for (slot, (section, object, attributes, used)) in [
        (
            "account",
            fields::ACCOUNT,
            &config.features.attributes,
            true,
        ),
        (
            "contact",
            fields::CONTACT,
            &config.features.contact_attributes,
            config.scoring.levels.contains(&Level::Contact),
        ),
        (
            "lead",
            fields::LEAD,
            &config.features.lead_attributes,
            with_leads,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        if object == fields::LEAD && !with_leads {
            continue;
        }
        let started = std::time::Instant::now();
        let layout = projection.layout(object);
        let mut projector = Projector::new(layout);
        let mut seen = vec![false; attributes.len()];
        let records = &mut objects[slot];
        // Only the fields the projection keeps and the conversion and joins read are decoded,
        // so the written scores and reasons are skipped.
        let mut keep: BTreeSet<&str> = layout.names().iter().map(String::as_str).collect();
        keep.insert(crate::sync::CURRENCY_FIELD);
        keep.extend(amount_fields.iter().map(String::as_str));
        keep.extend(attributes.iter().map(|a| a.field.as_str()));
        for (table, fields) in config.enrichment.iter().zip(&join_fields) {
            if table.object.crm_object().eq_ignore_ascii_case(object) {
                keep.extend(fields.iter().map(String::as_str));
            }
        }
        let keep: Vec<&str> = keep.into_iter().collect();
        store.for_each_record_with(object, &keep, |mut record| {
            for (seen, attribute) in seen.iter_mut().zip(attributes.iter()) {
                *seen = *seen || record.fields.contains_key(&attribute.field);
            }
            converter.convert(&mut record);
            for applier in &mut appliers {
                applier.apply(&mut record);
            }
            records.push(projector.project(record));
        })?;
        projector.finish(records);
        tracing::debug!(
            object,
            records = records.len(),
            seconds = started.elapsed().as_secs_f64(),
            "loaded records"
        );
        if !used || records.is_empty() {
            continue;
        }
        for (seen, attribute) in seen.iter().zip(attributes.iter()) {
            if !seen {
                unpulled.push(format!(
                    "[[features.{section}]] {} reads {object} field {:?}, which no pulled record has",
                    attribute.name, attribute.field
                ));
            }
        }
    }
    if !unpulled.is_empty() {
        return Err(PipelineError::Config(format!(
            "{}; run `leadscore check` to verify the field names, then `leadscore pull`, which fetches every record again for a field added to the configuration",
            unpulled.join("; ")
        )));
    }
    let [accounts, contacts, leads] = objects;
    let mut features = config.features.clone();
    let mut enrichment = Vec::new();
    for (table, applier) in tables.iter().zip(appliers) {
        let mut report = applier.finish();
        let matched = report.matched_exact.count
            + report.matched_leading_zeros.count
            + report.matched_fuzzy.count;
        if report.records > 0 && matched * 2 < report.records {
            let warning = format!(
                "[[enrichment]] {} matched {matched} of {} {} records; the rest get no value for its features, so check the key field (a field added to the configuration is pulled for every record at the next pull)",
                table.config().name,
                report.records,
                table.config().object.crm_object()
            );
            tracing::warn!(table = %table.config().name, matched, records = report.records, "enrichment matched fewer than half of the records");
            report.warnings.push(warning);
        }
        match table.config().object {
            EnrichmentObject::Account => features.attributes.extend(table.features().to_vec()),
            EnrichmentObject::Contact => features
                .contact_attributes
                .extend(table.features().to_vec()),
        }
        enrichment.push(report);
    }
    let (lead_account, lead_match) = if leads.is_empty() && !with_leads {
        (HashMap::new(), None)
    } else {
        let (matched, report) = match_lead_accounts(&leads, &accounts, config);
        (matched, Some(report))
    };
    // NOTE: the projected records and the activities of the whole org stay in memory for the
    // run, about 600 MiB at 1M contacts, which leaves the train step about 100 MiB under
    // 1 GiB. Further room needs the records' ids in shared storage (about 56 bytes each
    // today), or features kept on disk and updated per changed record.
    let started = std::time::Instant::now();
    let mut history = History::build(
        Pulled {
            accounts,
            contacts,
            leads,
            ..Pulled::default()
        },
        &config.features.role_field,
        lead_account,
    );
    // Deals and their contacts stream in as well; activities need the deals to find the
    // account of an activity logged on a deal.
    // The currency fields are decoded too, so the conversion still reports a deal currency
    // without a rate.
    let mut deal_fields: Vec<&str> = crate::features::OPPORTUNITY_FIELDS.to_vec();
    deal_fields.push(crate::sync::CURRENCY_FIELD);
    deal_fields.extend(amount_fields.iter().map(String::as_str));
    store.for_each_record_with(fields::OPPORTUNITY, &deal_fields, |mut record| {
        converter.convert(&mut record);
        history.add_opportunity(&record);
    })?;
    converter.finish()?;
    store.for_each_record_with(
        fields::CONTACT_ROLE,
        crate::features::CONTACT_ROLE_FIELDS,
        |record| history.add_contact_role(&record),
    )?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "built the history of accounts, contacts, leads, deals and roles"
    );
    let started = std::time::Instant::now();
    add_activities(store, &mut history)?;
    history.finish_loading();
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "loaded activities"
    );
    Ok(Loaded {
        history,
        features,
        enrichment,
        lead_match,
    })
}

/// Adds the stored tasks and then events to `history`.
///
/// They are the largest objects, so the history reads the compact copy the store keeps of
/// each (see [`crate::store::ActivityFacts`]) instead of decoding the JSON records.
fn add_activities(store: &Store, history: &mut History) -> Result<(), PipelineError> {
    for (object, meeting) in [(fields::TASK, false), (fields::EVENT, true)] {
        store.for_each_activity(object, |facts| history.add_activity_facts(facts, meeting))?;
    }
    Ok(())
}

/// Loads the pulled records into a [`History`]; see [`load`].
pub fn load_history(store: &Store, config: &Config) -> Result<History, PipelineError> {
    Ok(load(store, config)?.history)
}

fn params(settings: &ModelConfig) -> TrainParams {
    TrainParams {
        trees: settings.trees,
        max_depth: settings.max_depth,
        learning_rate: settings.learning_rate,
        ..TrainParams::default()
    }
}

fn model_error(err: crate::model::ModelError) -> PipelineError {
    PipelineError::Model(err.to_string())
}

/// Returns a version name that depends only on the model's content, so retraining on the same
/// data gives the same version and does not rewrite every score.
fn content_version(level: Level, kind: ModelKind, model: &[u8], features: &[u8]) -> String {
    // FNV-1a, 64 bit: stable across builds and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in model.iter().chain(features) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match level {
        // Account versions keep the names they had before levels existed.
        Level::Account => format!("{}-{hash:016x}", kind.name()),
        other => format!("{other}-{}-{hash:016x}", kind.name()),
    }
}

/// Returns the label of a deal under `rule` (1 won, 0 lost), or `None` when the deal is no
/// training example: it has no close date, or under `Stages` its stage is in neither list.
pub fn label_of(deal: &Deal, rule: &LabelRule) -> Option<f64> {
    deal.close_date?;
    match rule {
        LabelRule::IsWon => deal.closed.then_some(if deal.won { 1.0 } else { 0.0 }),
        LabelRule::Stages { won, lost } => {
            let stage = deal.stage.as_ref()?;
            if won.contains(stage) {
                Some(1.0)
            } else if lost.contains(stage) {
                Some(0.0)
            } else {
                None
            }
        }
    }
}

/// Slices of one evaluation, as row indices in time order.
struct Split {
    train: Vec<usize>,
    validation: Vec<usize>,
}

fn subset(dataset: &Dataset, indices: &[usize], columns: &[usize]) -> Dataset {
    Dataset {
        feature_names: columns
            .iter()
            .map(|&c| dataset.feature_names[c].clone())
            .collect(),
        rows: indices
            .iter()
            .map(|&i| columns.iter().map(|&c| dataset.rows[i][c]).collect())
            .collect(),
        labels: indices.iter().map(|&i| dataset.labels[i]).collect(),
    }
}

/// Returns row indices sorted by time order, ties broken by id.
fn time_order(examples: &ExampleSet) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.ids.len()).collect();
    order.sort_by(|&a, &b| {
        examples.order[a]
            .cmp(&examples.order[b])
            .then_with(|| examples.ids[a].cmp(&examples.ids[b]))
    });
    order
}

fn check_lengths(examples: &ExampleSet, what: &str) -> Result<(), PipelineError> {
    let rows = examples.dataset.rows.len();
    if examples.ids.len() != rows || examples.order.len() != rows {
        return Err(PipelineError::Model(format!(
            "{what} has {rows} rows but {} ids and {} order keys: pass one of each per row",
            examples.ids.len(),
            examples.order.len()
        )));
    }
    Ok(())
}

fn check_dataset(examples: &ExampleSet, what: &str) -> Result<(), PipelineError> {
    examples
        .dataset
        .validate()
        .map_err(|e| PipelineError::Model(format!("{what} is invalid: {e}")))?;
    Ok(())
}

/// Computes the holdout metrics of one set of probabilities.
pub fn metrics_of(labels: &[f64], probabilities: &[f64]) -> Metrics {
    Metrics {
        auc: metrics::roc_auc(labels, probabilities),
        pr_auc: metrics::pr_auc(labels, probabilities),
        log_loss: metrics::log_loss(labels, probabilities),
        brier: metrics::brier(labels, probabilities),
        ece: metrics::expected_calibration_error(labels, probabilities),
    }
}

/// Counts holdout rows and their win rate per tier of the calibrated 0-100 score.
pub fn tier_table(labels: &[f64], probabilities: &[f64], tiers: &TierConfig) -> Vec<TierRow> {
    tiers
        .labels
        .iter()
        .map(|tier| {
            let rows: Vec<f64> = labels
                .iter()
                .zip(probabilities)
                .filter(|(_, p)| tiers.tier_for(score_of(**p)) == tier)
                .map(|(y, _)| *y)
                .collect();
            TierRow {
                tier: tier.clone(),
                count: rows.len(),
                win_rate: (!rows.is_empty()).then(|| rows.iter().sum::<f64>() / rows.len() as f64),
            }
        })
        .collect()
}

/// Returns the tier thresholds of a default configuration (A from 70, B from 45, C from 25).
fn default_tiers() -> TierConfig {
    TierConfig {
        a: 70.0,
        b: 45.0,
        c: 25.0,
        labels: ["A", "B", "C", "D"].map(String::from),
    }
}

/// Runs the checks, fits and compares the models, calibrates the chosen one and measures it
/// on the holdout: the latest `holdout_fraction` of `examples` by time order, or `holdout`
/// when given (it must have the same feature names). Fails when the sufficiency floors are
/// not met, when the data is invalid, or when no usable feature is left. The leakage check
/// groups columns by source feature from their names: `feature=level` is a one-hot column.
/// There are no accounts being scored here, so the post-outcome check is skipped and the
/// report's checks say so.
pub fn evaluate_examples(
    examples: &ExampleSet,
    settings: &ModelConfig,
    holdout: Option<&ExampleSet>,
) -> Result<Evaluation, PipelineError> {
    let groups = checks::groups_from_names(&examples.dataset.feature_names);
    evaluate_grouped(
        examples,
        settings,
        holdout,
        &groups,
        None,
        checks::ExampleNoun::DEALS,
    )
}

/// Does the work of [`evaluate_examples`] with the columns grouped by source feature as
/// `groups` gives them, for the leakage checks. `scoring_rows` are the accounts being scored,
/// in the examples' columns, for the post-outcome check, which is skipped when they are
/// `None` or empty.
pub fn evaluate_grouped(
    examples: &ExampleSet,
    settings: &ModelConfig,
    holdout: Option<&ExampleSet>,
    groups: &[FeatureGroup],
    scoring_rows: Option<&[Vec<f64>]>,
    noun: checks::ExampleNoun,
) -> Result<Evaluation, PipelineError> {
    evaluate_weighted(
        examples,
        settings,
        holdout,
        groups,
        scoring_rows,
        noun,
        None,
    )
}

/// Does the work of [`evaluate_grouped`] with one sample weight per example, which the
/// gradient-boosted fit receives for its train-slice rows. The logistic regression, the model
/// choice and calibration ignore the weights.
// NOTE: the logistic baseline and the blend's logistic half are fitted unweighted.
pub fn evaluate_weighted(
    examples: &ExampleSet,
    settings: &ModelConfig,
    holdout: Option<&ExampleSet>,
    groups: &[FeatureGroup],
    scoring_rows: Option<&[Vec<f64>]>,
    noun: checks::ExampleNoun,
    weights: Option<&[f64]>,
) -> Result<Evaluation, PipelineError> {
    evaluate_owned(
        examples.clone(),
        settings,
        holdout,
        groups,
        scoring_rows,
        noun,
        weights,
    )
}

/// Does the work of [`evaluate_weighted`] on examples it owns. Their rows move into the train
/// and validation slices instead of being copied, so each row is in memory once.
fn evaluate_owned(
    mut examples: ExampleSet,
    settings: &ModelConfig,
    holdout: Option<&ExampleSet>,
    groups: &[FeatureGroup],
    scoring_rows: Option<&[Vec<f64>]>,
    noun: checks::ExampleNoun,
    weights: Option<&[f64]>,
) -> Result<Evaluation, PipelineError> {
    check_lengths(&examples, "the example set")?;
    if let Some(weights) = weights {
        if weights.len() != examples.dataset.rows.len() {
            return Err(PipelineError::Model(format!(
                "{} sample weights were given for {} examples; pass one weight per example",
                weights.len(),
                examples.dataset.rows.len()
            )));
        }
    }
    // The floors come first: they name the shortfall, where a one-class error would not.
    let sufficiency = checks::sufficiency(
        &examples.dataset.labels,
        settings.min_examples,
        settings.min_minority,
        noun,
    );
    if !sufficiency.passed {
        return Err(PipelineError::Model(format!(
            "training rejected: {}",
            sufficiency.message
        )));
    }
    check_dataset(&examples, "the example set")?;
    if let Some(given) = holdout {
        check_lengths(given, "the holdout set")?;
        if given.dataset.feature_names != examples.dataset.feature_names {
            return Err(PipelineError::Model(
                "the holdout set's feature names differ from the examples'; build both with the same columns in the same order".to_string(),
            ));
        }
        // A holdout with one class is allowed: AUC is then reported as missing.
        if let Err(err) = given.dataset.validate() {
            if !matches!(err, crate::model::ModelError::OneClass { .. }) {
                return Err(PipelineError::Model(format!(
                    "the holdout set is invalid: {err}"
                )));
            }
        }
    }

    // Time-ordered slices: train, then validation, then the holdout.
    let ordered = time_order(&examples);
    let n = ordered.len();
    let fraction_rows = |fraction: f64| ((n as f64) * fraction).round().max(1.0) as usize;
    let (split, holdout_set, holdout_rows): (Split, &ExampleSet, Vec<usize>) = match holdout {
        Some(given) => {
            let validation = fraction_rows(settings.validation_fraction).min(n - 1);
            let split = Split {
                train: ordered[..n - validation].to_vec(),
                validation: ordered[n - validation..].to_vec(),
            };
            (split, given, time_order(given))
        }
        None => {
            let holdout_count = fraction_rows(settings.holdout_fraction);
            let validation = fraction_rows(settings.validation_fraction);
            if holdout_count + validation >= n {
                return Err(PipelineError::Model(format!(
                    "{n} examples are too few to split into train, validation ({validation}) and holdout ({holdout_count}) slices; collect more or lower the fractions"
                )));
            }
            let holdout_start = n - holdout_count;
            let validation_start = holdout_start - validation;
            let split = Split {
                train: ordered[..validation_start].to_vec(),
                validation: ordered[validation_start..holdout_start].to_vec(),
            };
            (split, &examples, ordered[holdout_start..].to_vec())
        }
    };

    // Column checks: unusable columns on train plus validation, leakage on the holdout.
    let all_columns: Vec<usize> = (0..examples.dataset.feature_names.len()).collect();
    let fit_rows: Vec<usize> = split
        .train
        .iter()
        .chain(&split.validation)
        .copied()
        .collect();
    // The checks borrow the train and validation rows. Only the holdout's rows are copied.
    let fit_all: Vec<&[f64]> = fit_rows
        .iter()
        .map(|&i| examples.dataset.rows[i].as_slice())
        .collect();
    let dropped = checks::unusable_columns(&fit_all, &examples.dataset.feature_names);
    let holdout_all = subset(&holdout_set.dataset, &holdout_rows, &all_columns);
    // The train rows come first in `fit_all`.
    let train_all = &fit_all[..split.train.len()];
    let train_labels: Vec<f64> = split
        .train
        .iter()
        .map(|&i| examples.dataset.labels[i])
        .collect();
    let width = all_columns.len();
    if groups.iter().flat_map(|g| &g.columns).any(|&c| c >= width) {
        return Err(PipelineError::Model(format!(
            "a feature group names a column beyond the {width} columns of the example set; build the groups from the same feature names"
        )));
    }
    // A misspelt keep_features entry would silently leave the feature it meant excluded.
    for kept_name in &settings.keep_features {
        let known = groups.iter().any(|g| &g.feature == kept_name)
            || examples.dataset.feature_names.contains(kept_name);
        if !known {
            let mut names: Vec<&str> = groups.iter().map(|g| g.feature.as_str()).collect();
            names.dedup();
            return Err(PipelineError::Model(format!(
                "[model] keep_features names {kept_name:?}, which is not a feature of this model; fix the name or remove it. Features are: {}",
                names.join(", ")
            )));
        }
    }
    let mut leakage = checks::leakage(
        train_all,
        &train_labels,
        &holdout_all,
        groups,
        settings.leakage_auc,
        &settings.keep_features,
    );
    for flag in &leakage {
        tracing::warn!(feature = %flag.feature, auc = flag.auc, excluded = flag.excluded, "feature predicts the holdout alone; possible leakage");
    }
    let mut notes = post_outcome_check(
        &mut leakage,
        &fit_all,
        &examples.dataset.feature_names,
        scoring_rows,
        groups,
        &holdout_all,
        settings,
    )?;
    let holdout_won = holdout_all.labels.iter().filter(|y| **y >= 0.5).count();
    if holdout_won == 0 || holdout_won == holdout_all.labels.len() {
        let class = if holdout_won == 0 { "lost" } else { "won" };
        notes.push(format!(
            "every holdout example is {class}, so ROC AUC and PR AUC are not defined; use a longer holdout or more data"
        ));
    }
    let removed: HashSet<&str> = dropped
        .iter()
        .map(|d| d.feature.as_str())
        .chain(
            leakage
                .iter()
                .flat_map(|l| &l.excluded_columns)
                .map(String::as_str),
        )
        .collect();
    let kept: Vec<usize> = all_columns
        .iter()
        .copied()
        .filter(|&c| !removed.contains(examples.dataset.feature_names[c].as_str()))
        .collect();
    if kept.is_empty() {
        return Err(PipelineError::Model(
            "no usable feature is left after dropping constant, empty and leaking columns; map more fields in [features]".to_string(),
        ));
    }

    // The checks are done: their row references and the holdout's copy go before the
    // slices are made.
    drop((fit_all, train_labels, holdout_all));
    let test = subset(&holdout_set.dataset, &holdout_rows, &kept);
    let holdout_ids: Vec<String> = holdout_rows
        .iter()
        .map(|&i| holdout_set.ids[i].clone())
        .collect();
    // The train and validation rows move out of the examples; the holdout's were copied above.
    let mut rows = std::mem::take(&mut examples.dataset.rows);
    let mut take = |indices: &[usize]| Dataset {
        feature_names: kept
            .iter()
            .map(|&c| examples.dataset.feature_names[c].clone())
            .collect(),
        rows: indices
            .iter()
            .map(|&i| {
                let row = std::mem::take(&mut rows[i]);
                if kept.len() == row.len() {
                    row
                } else {
                    kept.iter().map(|&c| row[c]).collect()
                }
            })
            .collect(),
        labels: indices
            .iter()
            .map(|&i| examples.dataset.labels[i])
            .collect(),
    };
    let train = take(&split.train);
    let validation = take(&split.validation);
    drop(rows);
    for (slice, data) in [("train", &train), ("validation", &validation)] {
        data.validate()
            .map_err(|e| PipelineError::Model(format!("the {slice} slice cannot be used: {e}")))?;
    }

    // Compare the trees, the logistic regression and their blend on validation log loss. The
    // trees stop early on the same validation slice, which then also picks the model and
    // fits the calibrator.
    let train_weights: Option<Vec<f64>> =
        weights.map(|all| split.train.iter().map(|&i| all[i]).collect());
    let weighted_train_rows = train_weights
        .as_ref()
        .map_or(0, |w| w.iter().filter(|&&w| w != 1.0).count());
    let logistic = LogisticModel::fit(&train, LOGISTIC_L2).map_err(model_error)?;
    // The trees take the train rows last, freeing each once forust-ml's copy has it.
    let train_rows = train.rows.len();
    let train_names = train.feature_names.clone();
    let gbm = GradientBoostedModel::fit_early_stopping_owned(
        train,
        &validation,
        &params(settings),
        settings.early_stopping_rounds,
        train_weights.as_deref(),
    )
    .map_err(model_error)?;
    let trees_used = gbm.tree_count();
    let validation_gbm_log_odds = gbm
        .predict_log_odds(&validation.rows)
        .map_err(model_error)?;
    let validation_logistic_log_odds = logistic
        .predict_log_odds(&validation.rows)
        .map_err(model_error)?;
    let to_probabilities = |log_odds: &[f64]| -> Vec<f64> {
        log_odds.iter().map(|&z| crate::model::sigmoid(z)).collect()
    };
    let validation_gbm = to_probabilities(&validation_gbm_log_odds);
    let validation_logistic = to_probabilities(&validation_logistic_log_odds);
    let validation_blend = to_probabilities(&blend(
        &validation_gbm_log_odds,
        &validation_logistic_log_odds,
    ));
    let contenders = [
        (ModelKind::Gbm, &validation_gbm),
        (ModelKind::Logistic, &validation_logistic),
        (ModelKind::Blend, &validation_blend),
    ];
    let candidates: Vec<CandidateScore> = contenders
        .iter()
        .map(|(kind, predictions)| CandidateScore {
            name: kind.name().to_string(),
            validation_auc: metrics::roc_auc(&validation.labels, predictions),
            validation_log_loss: metrics::log_loss(&validation.labels, predictions),
        })
        .collect();
    let mut best = 0;
    for (index, candidate) in candidates.iter().enumerate() {
        if candidate.validation_log_loss < candidates[best].validation_log_loss {
            best = index;
        }
    }
    let (kind, validation_predictions) = contenders[best];
    let calibrator = calibration::fit_best(validation_predictions, &validation.labels);

    // The baseline is the logistic regression fitted above on the same rows, uncalibrated.
    // The fit is deterministic, so a second fit would give the same model.
    let baseline_predictions = logistic.predict(&test.rows).map_err(model_error)?;
    // Holdout metrics of the calibrated chosen model, fitted on the train slice only.
    let evaluated =
        TrainedModel::new(kind, Some(gbm), Some(logistic), calibrator).map_err(model_error)?;
    let holdout_predictions = evaluated.predict(&test.rows).map_err(model_error)?;
    let feature_of_column = source_features(&examples.dataset.feature_names, groups);
    let kept_features: Vec<String> = kept.iter().map(|&c| feature_of_column[c].clone()).collect();
    let top_features = importance(&evaluated, &test, &kept_features)?;

    // The model that goes live is the one measured above: fitted on the train slice and
    // calibrated on the validation slice. A refit on more rows would leave the holdout metrics,
    // the registry's comparison and the calibrator all describing a different model.
    let model = evaluated;
    let bytes = model.to_bytes().map_err(model_error)?;
    let version = content_version(
        Level::Account,
        kind,
        &bytes,
        train_names.join("\n").as_bytes(),
    );

    let won = examples
        .dataset
        .labels
        .iter()
        .filter(|y| **y >= 0.5)
        .count();
    let report = ModelReport {
        version,
        trained_at: Utc::now(),
        chosen: kind.name().to_string(),
        calibration_method: model.calibrator.method().to_string(),
        window: Window::default(),
        counts: Counts {
            examples: n,
            won,
            lost: n - won,
            train: train_rows,
            validation: validation.rows.len(),
            holdout: test.rows.len(),
        },
        checks: Checks {
            sufficiency,
            leakage,
            dropped,
            notes,
        },
        metrics: metrics_of(&test.labels, &holdout_predictions),
        baseline: Baseline {
            name: "logistic regression".to_string(),
            metrics: metrics_of(&test.labels, &baseline_predictions),
        },
        candidates,
        calibration: metrics::calibration_table(&test.labels, &holdout_predictions),
        lift: metrics::lift_table(&test.labels, &holdout_predictions),
        tiers: tier_table(&test.labels, &holdout_predictions, &default_tiers()),
        top_features,
        trees_used: Some(trees_used),
        live_comparison: None,
        level: Level::Account,
        enrichment: Vec::new(),
        lead_match: None,
        feedback: None,
    };
    Ok(Evaluation {
        report,
        holdout_ids,
        holdout_labels: test.labels,
        holdout_predictions,
        model,
        weighted_train_rows,
    })
}

/// Runs [`checks::post_outcome`] on the train plus validation rows against `scoring_rows`,
/// logs each feature it flags, and returns a note when the check cannot run.
fn post_outcome_check(
    leakage: &mut Vec<LeakageFlag>,
    fit_all: &[&[f64]],
    feature_names: &[String],
    scoring_rows: Option<&[Vec<f64>]>,
    groups: &[FeatureGroup],
    holdout_all: &Dataset,
    settings: &ModelConfig,
) -> Result<Vec<String>, PipelineError> {
    let scoring_rows = match scoring_rows {
        None => {
            return Ok(vec![
                "post-outcome check skipped: there are no accounts being scored to compare feature presence with, as in offline evaluation".to_string(),
            ])
        }
        Some([]) => {
            return Ok(vec![
                "post-outcome check skipped: no account is being scored to compare feature presence with".to_string(),
            ])
        }
        Some(rows) => rows,
    };
    let width = feature_names.len();
    if let Some(row) = scoring_rows.iter().find(|row| row.len() != width) {
        return Err(PipelineError::Model(format!(
            "a scoring row has {} values but the examples have {width} columns; build both from the same feature space",
            row.len()
        )));
    }
    checks::post_outcome(
        leakage,
        fit_all,
        scoring_rows,
        groups,
        checks::SkewThresholds {
            min_train_share: settings.post_outcome_train_share,
            max_scoring_share: settings.post_outcome_scoring_share,
        },
        holdout_all,
        &settings.keep_features,
    );
    for flag in leakage.iter() {
        if let (Some(train_share), Some(scoring_share)) = (flag.train_share, flag.scoring_share) {
            tracing::warn!(
                feature = %flag.feature,
                train_share,
                scoring_share,
                excluded = flag.excluded,
                "feature is present for most closed deals but almost no account being scored; it is likely filled in after the outcome"
            );
        }
    }
    Ok(Vec::new())
}

/// Returns the configured feature of each column: the name of the group that contains it, or
/// the column's own name when no group does.
fn source_features(names: &[String], groups: &[FeatureGroup]) -> Vec<String> {
    let mut features = names.to_vec();
    for group in groups {
        for &column in &group.columns {
            if let Some(feature) = features.get_mut(column) {
                feature.clone_from(&group.feature);
            }
        }
    }
    features
}

/// Ranks the configured features by their importance over `data`'s rows, largest first.
fn importance(
    model: &TrainedModel,
    data: &Dataset,
    feature_of_column: &[String],
) -> Result<Vec<FeatureImportance>, PipelineError> {
    let contributions = model.contributions(&data.rows).map_err(model_error)?;
    Ok(grouped_importance(&contributions, feature_of_column))
}

/// Sums, per configured feature, the mean absolute contribution of each of its columns (the
/// one-hot columns of a category, for example), and sorts the features largest first.
/// `feature_of_column[i]` names the feature of column `i`.
fn grouped_importance(
    contributions: &[Contributions],
    feature_of_column: &[String],
) -> Vec<FeatureImportance> {
    let rows = contributions.len().max(1) as f64;
    let mut ranked: Vec<FeatureImportance> = Vec::new();
    for (column, feature) in feature_of_column.iter().enumerate() {
        let mean_abs = contributions
            .iter()
            .filter_map(|c| c.values.get(column))
            .map(|v| v.abs())
            .sum::<f64>()
            / rows;
        match ranked.iter_mut().find(|f| f.feature == *feature) {
            Some(existing) => existing.mean_abs_contribution += mean_abs,
            None => ranked.push(FeatureImportance {
                feature: feature.clone(),
                mean_abs_contribution: mean_abs,
            }),
        }
    }
    ranked.sort_by(|a, b| {
        b.mean_abs_contribution
            .total_cmp(&a.mean_abs_contribution)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    ranked
}

/// Trains on the closed deals in the store and hands the result to the registry, which
/// decides whether it goes live.
pub fn train(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<TrainReport, PipelineError> {
    train_sharing(store, config, now, &mut None)
}

/// Trains like [`train`] with the records in `loaded`, loading them first when it is `None`.
/// What [`load`] returns does not depend on the level, so the levels of one run can share it
/// and read the store once.
pub fn train_sharing(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    loaded: &mut Option<Loaded>,
) -> Result<TrainReport, PipelineError> {
    let level = store.level();
    let shown = crate::progress::Progress::counter(&format!("train {level}"));
    shown.stage("loading records");
    let mut started = std::time::Instant::now();
    let mut phase = |name: &str| {
        crate::memory::end_phase("train", level, name, started);
        started = std::time::Instant::now();
    };
    let loaded = match loaded {
        Some(loaded) => &*loaded,
        None => &*loaded.insert(load(store, config)?),
    };
    phase("load history");
    let history = &loaded.history;
    shown.stage("building examples");
    let examples_list = levels::examples(level, history, config, now);
    if examples_list.is_empty() {
        let message = match level {
            Level::Lead => "the store has no converted or aged-out leads to train on; run `leadscore pull` first, or check [lead] label and lost_after_days",
            Level::Contact if history.deals.iter().any(|d| label_of(d, &config.model.label).is_some()) => "no contact has a role (OpportunityContactRole) on a closed deal, so there is nothing to learn contact outcomes from; record contact roles on deals, or remove \"contact\" from [scoring] levels",
            _ => "the store has no closed deals to train on; run `leadscore pull` first, or check the [model] label rule",
        };
        return Err(PipelineError::Model(format!("{level} level: {message}")));
    }

    // Categories are learned from the examples before the holdout, so the holdout stays unseen.
    let holdout_count = ((examples_list.len() as f64) * config.model.holdout_fraction)
        .round()
        .max(1.0) as usize;
    let before_holdout = examples_list.len().saturating_sub(holdout_count);
    let training_targets: Vec<_> = examples_list[..before_holdout]
        .iter()
        .map(Example::target)
        .collect();
    let segments = segment_check(history, &examples_list, config)?;
    let mut space = FeatureSpace::fit(&loaded.features, level, history, &training_targets);
    let examples = ExampleSet {
        dataset: Dataset {
            feature_names: space.names(),
            rows: parallel_map(&examples_list, |e| space.row(history, e.target(), e.at))?,
            labels: examples_list.iter().map(|e| e.label).collect(),
        },
        ids: examples_list.iter().map(|e| e.id.clone()).collect(),
        order: examples_list
            .iter()
            .map(|e| e.decided.timestamp())
            .collect(),
    };
    phase("example rows");
    let groups = feature_groups(&space);
    shown.stage("fitting and calibrating models");
    let scoring = scoring_rows(history, &space, config, now)?;
    phase("scoring rows");
    let noun = match level {
        Level::Account => checks::ExampleNoun::DEALS,
        Level::Contact => checks::ExampleNoun::CONTACT_ROLES,
        Level::Lead => checks::ExampleNoun::LEADS,
    };
    // With `[feedback] use = "weights"`, examples whose record's flag agrees with their
    // outcome weigh more in the fit.
    let weights = match config.feedback.use_flags {
        crate::config::feedback::FeedbackUse::Weights => {
            let flags = crate::feedback::latest_values(store, level)?;
            Some(crate::feedback::example_weights(
                level,
                &examples_list,
                &flags,
                config.feedback.weight,
            ))
        }
        crate::config::feedback::FeedbackUse::Review => None,
    };
    // The labels outlive the examples, which move into the evaluation.
    let labels = examples.dataset.labels.clone();
    let evaluation = evaluate_owned(
        examples,
        &config.model,
        None,
        &groups,
        Some(&scoring),
        noun,
        weights.as_deref(),
    )?;
    phase("fit and evaluate");

    // Keep only the columns the model uses, so scoring builds rows of the same width.
    let kept: HashSet<&str> = evaluation
        .model
        .feature_names()
        .iter()
        .map(String::as_str)
        .collect();
    space.columns.retain(|c| kept.contains(c.name.as_str()));
    let model_bytes = evaluation.model.to_bytes().map_err(model_error)?;
    let features_json =
        serde_json::to_value(&space).map_err(|e| PipelineError::Model(e.to_string()))?;
    let version = content_version(
        level,
        evaluation.model.kind,
        &model_bytes,
        features_json.to_string().as_bytes(),
    );

    shown.stage("comparing with the live model");
    let live = live_comparison(store, history, &examples_list, &evaluation, config)?;
    let mut report = evaluation.report.clone();
    report.version = version.clone();
    report.trained_at = now;
    report.window = Window {
        from: examples_list.first().map(|e| e.decided),
        to: examples_list.last().map(|e| e.decided),
        holdout_from: examples_list.get(before_holdout).map(|e| e.decided),
    };
    report.level = level;
    report.enrichment = loaded
        .enrichment
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    report.lead_match = loaded
        .lead_match
        .as_ref()
        .and_then(|r| serde_json::to_value(r).ok());
    report.tiers = tier_table(
        &evaluation.holdout_labels,
        &evaluation.holdout_predictions,
        &config.tiers,
    );
    report.live_comparison = live;
    report.checks.sufficiency.segments = segments;
    report.feedback = Some(crate::feedback::summarize(
        store,
        config,
        history,
        &space,
        &evaluation.model,
        now,
        evaluation.weighted_train_rows,
    )?);
    let report_json =
        serde_json::to_value(&report).map_err(|e| PipelineError::Model(e.to_string()))?;

    let candidate = Candidate {
        stored: StoredModel {
            version: version.clone(),
            level,
            trained_at: now,
            features: features_json,
            report: report_json,
            model: model_bytes,
        },
        holdout_auc: report.metrics.auc,
        live_holdout_auc: report.live_comparison.as_ref().and_then(|l| l.live_auc),
        holdout_ids: evaluation.holdout_ids.clone(),
        config_hash: config_hash(config),
        window: (report.window.from, report.window.to),
        feature_names: space.names(),
        config: Some(config.clone()),
    };
    let publish = registry::publish(
        store,
        &candidate,
        config.model.promotion_margin,
        Some(history),
    )?;
    // A retrained model with the live version is not stored again; its card still gets the
    // flags as they are now.
    if let PublishOutcome::AlreadyLive { .. } = &publish {
        let feedback = serde_json::to_value(&report.feedback)
            .map_err(|e| PipelineError::Model(e.to_string()))?;
        store.set_model_feedback(&version, feedback)?;
    }

    let train_rate = {
        let rows = report.counts.train + report.counts.validation;
        let won: f64 = labels[..rows.min(labels.len())].iter().sum();
        won / rows.max(1) as f64
    };
    let constant = vec![train_rate; evaluation.holdout_labels.len()];
    let mut warnings = report.checks.notes.clone();
    for table in &loaded.enrichment {
        warnings.extend(table.warnings.iter().cloned());
    }
    let summary = TrainReport {
        level,
        warnings,
        version,
        examples: report.counts.examples,
        won: report.counts.won,
        train_rows: report.counts.train,
        validation_rows: report.counts.validation,
        holdout_rows: report.counts.holdout,
        holdout_from: report.window.holdout_from,
        chosen: report.chosen.clone(),
        calibration_method: report.calibration_method.clone(),
        holdout_auc: report.metrics.auc,
        holdout_log_loss: report.metrics.log_loss,
        holdout_brier: report.metrics.brier,
        holdout_ece: report.metrics.ece,
        baseline_log_loss: metrics::log_loss(&evaluation.holdout_labels, &constant),
        features: space.columns.len(),
        publish,
        holdout_ids: evaluation.holdout_ids,
        holdout_labels: evaluation.holdout_labels,
        holdout_predictions: evaluation.holdout_predictions,
    };
    tracing::info!(
        version = %summary.version,
        chosen = %summary.chosen,
        examples = summary.examples,
        auc = ?summary.holdout_auc,
        "trained"
    );
    Ok(summary)
}

/// Most open records whose rows the post-outcome check compares with the examples.
const SCORING_SAMPLE: usize = 20_000;

/// Builds the rows of the records scoring would score, as of the same time, for the
/// post-outcome check. The check compares how often each feature is present, so above
/// [`SCORING_SAMPLE`] records it reads an evenly spaced sample of them, in id order so that
/// the same store gives the same sample. The share in 20,000 rows is within a percentage point
/// of the whole's, while rows for a million records would take more memory than the rest of
/// training.
fn scoring_rows(
    history: &History,
    space: &FeatureSpace,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<Vec<f64>>, PipelineError> {
    let at = config.scoring.as_of.unwrap_or(now);
    let mut open = levels::open_records(space.level, history, config, now);
    keep_evenly_spaced(&mut open, SCORING_SAMPLE);
    parallel_map(&open, |record| space.row(history, record.target(), at))
}

/// Keeps `count` items spread evenly over `items`, in their order; fewer items stay as they are.
fn keep_evenly_spaced<T>(items: &mut Vec<T>, count: usize) {
    let total = items.len();
    if total <= count {
        return;
    }
    let mut position = 0;
    items.retain(|_| {
        // An item stays when it starts a new 1/count share of the list.
        let keep = position * count / total != (position + 1) * count / total;
        position += 1;
        keep
    });
}

/// Maps `items` with `f` on every available core, each thread taking one contiguous share,
/// and returns the results in the order of `items`, as a sequential map would.
fn parallel_map<I: Sync, O: Send>(
    items: &[I],
    f: impl Fn(&I) -> O + Sync,
) -> Result<Vec<O>, PipelineError> {
    // An estimate: below this many rows per thread, starting a thread costs more than it saves.
    const MIN_SHARE: usize = 256;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len().div_ceil(MIN_SHARE))
        .max(1);
    if threads == 1 {
        return Ok(items.iter().map(f).collect());
    }
    let share = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<O>>()))
            .collect();
        let mut mapped = Vec::with_capacity(items.len());
        for handle in handles {
            let part = handle.join().map_err(|_| {
                PipelineError::Model(
                    "a feature-row thread panicked, which is a bug: its message is on stderr"
                        .to_string(),
                )
            })?;
            mapped.extend(part);
        }
        Ok(mapped)
    })
}

/// Groups the feature space's columns by the configured feature they come from. The one-hot
/// columns of a category form one group, and a `present` column is marked so the post-outcome
/// check reads its 0 as an empty field.
fn feature_groups(space: &FeatureSpace) -> Vec<FeatureGroup> {
    let sources: Vec<(String, bool)> = space
        .columns
        .iter()
        .map(|column| (column.feature.clone(), column.source.is_one_hot()))
        .collect();
    let mut groups = checks::group_columns(&sources);
    for group in &mut groups {
        group.marks_presence = !group.one_hot
            && group
                .columns
                .iter()
                .all(|&c| space.columns[c].source.attribute_kind() == Some(AttributeKind::Present));
    }
    groups
}

/// Counts closed deals per value of the `[model] segment` attribute and lists the segments
/// below `min_segment_examples` or lacking a class. Each is logged as a warning. Fails when
/// `strict_segments` is set and a segment falls short. Deals whose account has no value for
/// the attribute belong to no segment.
fn segment_check(
    history: &History,
    examples: &[Example],
    config: &Config,
) -> Result<Vec<SegmentShortfall>, PipelineError> {
    let Some(segment) = &config.model.segment else {
        return Ok(Vec::new());
    };
    let Some(attribute) = config
        .features
        .attributes
        .iter()
        .find(|a| a.name == *segment)
    else {
        return Err(PipelineError::Model(format!(
            "[model] segment = {segment:?} names no [[features.account]] entry; name a configured category feature"
        )));
    };
    let values: Vec<Option<String>> = examples
        .iter()
        .map(|example| {
            match example
                .account
                .and_then(|id| history.accounts.get(id))
                .map(|account| account.get(&attribute.field))
            {
                Some(Value::Text(text)) if !text.trim().is_empty() => Some(text.clone()),
                Some(Value::Null) | Some(Value::Text(_)) | None => None,
                Some(other) => Some(other.to_string()),
            }
        })
        .collect();
    let labels: Vec<f64> = examples.iter().map(|e| e.label).collect();
    let floor = config.model.min_segment_examples;
    let shortfalls = checks::segment_shortfalls(&values, &labels, floor);
    for shortfall in &shortfalls {
        tracing::warn!(
            segment_feature = %segment,
            segment = %shortfall.segment,
            closed = shortfall.examples,
            won = shortfall.won,
            lost = shortfall.lost,
            missing = shortfall.missing,
            "segment has too few closed deals to learn from"
        );
    }
    if config.model.strict_segments && !shortfalls.is_empty() {
        let messages: Vec<&str> = shortfalls.iter().map(|s| s.message.as_str()).collect();
        return Err(PipelineError::Model(format!(
            "training rejected because [model] strict_segments = true and {} {segment} segments fall short: {}; collect more closed deals, lower min_segment_examples, or set strict_segments = false to train with a warning",
            shortfalls.len(),
            messages.join("; ")
        )));
    }
    Ok(shortfalls)
}

/// Scores the holdout deals with the live model, using its own stored feature encoding, and
/// compares its AUC with the candidate's. Returns `None` when there is no live model.
// NOTE: the live model may have been trained on some of these holdout deals, which favours
// it in the comparison.
fn live_comparison(
    store: &Store,
    history: &History,
    examples: &[Example],
    evaluation: &Evaluation,
    config: &Config,
) -> Result<Option<LiveComparison>, PipelineError> {
    let Some(live) = store.current_model()? else {
        return Ok(None);
    };
    let candidate_auc = evaluation.report.metrics.auc;
    let comparison = |live_auc: Option<f64>| LiveComparison {
        live_version: Some(live.version.clone()),
        live_auc,
        candidate_auc,
        margin: config.model.promotion_margin,
    };
    let loaded = serde_json::from_value::<FeatureSpace>(live.features.clone())
        .ok()
        .zip(TrainedModel::from_bytes(&live.model).ok());
    let Some((space, model)) = loaded else {
        tracing::warn!(version = %live.version, "the live model is unreadable, so it is not compared");
        return Ok(Some(comparison(None)));
    };
    let holdout: HashSet<&str> = evaluation.holdout_ids.iter().map(String::as_str).collect();
    let (rows, labels): (Vec<Vec<f64>>, Vec<f64>) = examples
        .iter()
        .filter(|e| holdout.contains(e.id.as_str()))
        .map(|e| (space.row(history, e.target(), e.at), e.label))
        .unzip();
    let live_auc = model
        .predict(&rows)
        .ok()
        .and_then(|p| metrics::roc_auc(&labels, &p));
    Ok(Some(comparison(live_auc)))
}

/// Hashes the settings that shape training (features and model), for the registry.
fn config_hash(config: &Config) -> String {
    let text = format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        config.features, config.model, config.lead, config.enrichment
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_sample_keeps_count() {
        let mut items: Vec<usize> = (0..1_000).collect();
        keep_evenly_spaced(&mut items, 10);
        assert_eq!(items, [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
        let mut few: Vec<usize> = (0..5).collect();
        keep_evenly_spaced(&mut few, 10);
        assert_eq!(few, [0, 1, 2, 3, 4]);
        let mut odd: Vec<usize> = (0..7).collect();
        keep_evenly_spaced(&mut odd, 3);
        assert_eq!(odd.len(), 3);
    }

    #[test]
    fn importance_sums_one_hot_columns() {
        let names: Vec<String> = ["beds", "region=north", "region=south", "visits"]
            .map(String::from)
            .to_vec();
        let groups = checks::groups_from_names(&names);
        let features = source_features(&names, &groups);
        assert_eq!(features, ["beds", "region", "region", "visits"]);

        let contributions = vec![
            Contributions {
                bias: 0.0,
                values: vec![0.2, 0.5, -0.1, 0.0],
            },
            Contributions {
                bias: 0.0,
                values: vec![-0.4, -0.3, 0.3, 0.1],
            },
        ];
        let ranked = grouped_importance(&contributions, &features);
        let names: Vec<&str> = ranked.iter().map(|f| f.feature.as_str()).collect();
        assert_eq!(names, ["region", "beds", "visits"]);
        // region: mean |north| 0.4 plus mean |south| 0.2.
        assert!((ranked[0].mean_abs_contribution - 0.6).abs() < 1e-12);
        assert!((ranked[1].mean_abs_contribution - 0.3).abs() < 1e-12);
        assert!((ranked[2].mean_abs_contribution - 0.05).abs() < 1e-12);
    }
}
