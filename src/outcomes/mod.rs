//! `leadscore report outcomes`: predicted against actual for the examples of one level that
//! closed after their record was first scored, each judged by the score in effect just before
//! its close. The report covers win rates per tier and month, calibration over time, ROC AUC
//! per quarter, feature drift, sampled score histories and the business impact. It is written
//! as one self-contained HTML page, one CSV file per table and one JSON file, and each limit
//! of `[outcomes]` that the figures fall past is listed as a breach.

mod drift;
mod figures;
mod gather;
mod render;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::features::fields;
use crate::level::Level;
use crate::pipeline::PipelineError;
use crate::store::{ScoreHistoryEntry, Store};

pub use drift::{population_stability_index, Drift, FeatureDrift, MIN_ROWS_FOR_PSI};
pub use figures::{
    ActivityWindows, CalibrationMonth, QuarterAuc, RepActivity, RepRevenue, TierImpact, TierMonth,
    MIN_DEALS_FOR_AUC, MIN_DEALS_FOR_CALIBRATION, MIN_DEALS_FOR_RATE,
};

/// Won and lost records whose score history the report samples, of each outcome.
const HISTORY_SAMPLE: usize = 5;

/// The score history of one sampled record up to the close of its example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreSample {
    pub record: String,
    pub name: Option<String>,
    pub won: bool,
    pub closed: DateTime<Utc>,
    pub entries: Vec<ScoreHistoryEntry>,
}

/// The figures of one outcomes report and the files it wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutcomesReport {
    pub level: Level,
    pub generated_at: DateTime<Utc>,
    /// The first time any record of the level was scored.
    pub go_live: Option<DateTime<Utc>>,
    pub live_model_version: Option<String>,
    /// Closed examples judged: their record was scored before the close.
    pub closed_outcomes: usize,
    /// Closed examples left out because their record had no score before the close.
    pub unscored_outcomes: usize,
    pub tier_months: Vec<TierMonth>,
    /// Per month, then `all`.
    pub calibration: Vec<CalibrationMonth>,
    /// Per quarter, then `all`.
    pub auc_by_quarter: Vec<QuarterAuc>,
    pub drift: Drift,
    pub score_samples: Vec<ScoreSample>,
    pub tier_impact: Vec<TierImpact>,
    /// The windows the activity shares compare; `None` before go-live.
    pub activity_windows: Option<ActivityWindows>,
    pub rep_activity: Vec<RepActivity>,
    pub rep_revenue: Vec<RepRevenue>,
    /// Figures left out for lack of data, in words.
    pub notes: Vec<String>,
    /// Limits the observed figures fell past, in words.
    pub breaches: Vec<String>,
    /// True when `[outcomes] retrain_on_breach` is set and there was a breach.
    pub retrain_requested: bool,
    /// The HTML, CSV and JSON files written.
    pub files: Vec<PathBuf>,
}

/// Writes the predicted-versus-actual report of one level into `[outcomes] folder`. `store` is
/// the level's store. With several `[[connector]]` tables, each connector's report goes into
/// a subfolder named after it.
pub fn write_report(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<OutcomesReport, PipelineError> {
    let mut folder = config.reports.folder.clone();
    if config.connectors.len() > 1 {
        folder.push(&config.connector_name);
    }
    write_report_to(store, config, now, &folder)
}

/// Writes the report of the store's level into `folder`, created if missing; see
/// [`write_report`].
pub fn write_report_to(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    folder: &Path,
) -> Result<OutcomesReport, PipelineError> {
    let mut report = build_report(store, config, now)?;
    render::write_files(&mut report, config, folder)?;
    for breach in &report.breaches {
        tracing::warn!(level = %report.level, "outcomes report: {breach}");
    }
    tracing::info!(
        level = %report.level,
        folder = %folder.display(),
        closed = report.closed_outcomes,
        breaches = report.breaches.len(),
        retrain_requested = report.retrain_requested,
        "wrote the outcomes report"
    );
    Ok(report)
}

/// Computes every figure of the report without writing files.
pub fn build_report(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<OutcomesReport, PipelineError> {
    let level = store.level();
    let loaded = crate::training::load(store, config)?;
    let history = &loaded.history;
    let scores = store.score_history()?;
    let mut opportunity_records = store.records(fields::OPPORTUNITY)?;
    crate::currency::convert_amounts(store, config, &mut [&mut opportunity_records])?;
    let opportunities = gather::opportunities_by_id(opportunity_records);
    let names = gather::user_names(&store.records(fields::USER)?);
    let labels = config.tiers.labels.to_vec();

    let closed = gather::closed_outcomes(level, history, &scores, &opportunities, config, now);
    let outcomes = &closed.outcomes;
    let mut report = OutcomesReport {
        level,
        generated_at: now,
        go_live: scores.go_live(),
        live_model_version: store.live_version()?,
        closed_outcomes: outcomes.len(),
        unscored_outcomes: closed.unscored,
        tier_months: figures::tier_months(outcomes, &labels),
        calibration: figures::calibration(outcomes),
        auc_by_quarter: figures::auc_by_quarter(outcomes),
        tier_impact: figures::tier_impact(outcomes, &labels),
        rep_revenue: figures::revenue_per_rep(outcomes, &opportunities, &labels, &names),
        score_samples: score_samples(outcomes, &scores, history, level),
        ..OutcomesReport::default()
    };

    report.drift = match store.current_model()? {
        Some(model) => {
            let entry = store.model_entry(&model.version)?;
            drift::feature_drift(history, &model, entry.as_ref(), config, now)
        }
        None => Drift {
            note: Some(format!(
                "no live {level} model, so drift was not measured; run `leadscore train` first"
            )),
            ..Drift::default()
        },
    };

    if let Some(windows) = report
        .go_live
        .and_then(|go| figures::activity_windows(go, now))
    {
        let activities = gather::activities(
            level,
            &store.records(fields::TASK)?,
            &store.records(fields::EVENT)?,
            &opportunities,
            history,
        );
        report.rep_activity =
            figures::activity_shares(&activities, &scores, &labels, &windows, &names);
        report.activity_windows = Some(windows);
    }

    report.notes = data_notes(&report);
    report.breaches = breaches(&report, config);
    report.retrain_requested = config.reports.retrain_on_breach && !report.breaches.is_empty();
    Ok(report)
}

/// Returns the plural noun of the level's closed examples.
fn examples_noun(level: Level) -> &'static str {
    match level {
        Level::Account => "closed deals",
        Level::Contact => "contact roles on closed deals",
        Level::Lead => "decided leads",
    }
}

/// Picks the records of the latest won and lost examples, [`HISTORY_SAMPLE`] of each, with
/// their score history up to the close.
fn score_samples(
    outcomes: &[gather::ClosedOutcome],
    scores: &crate::store::ScoreHistory,
    history: &crate::features::History,
    level: Level,
) -> Vec<ScoreSample> {
    let mut samples = Vec::new();
    for won in [true, false] {
        let mut seen = HashSet::new();
        for outcome in outcomes.iter().rev().filter(|o| o.won == won) {
            if seen.len() == HISTORY_SAMPLE {
                break;
            }
            if !seen.insert(outcome.record.clone()) {
                continue;
            }
            let mut ids = vec![outcome.record.clone()];
            ids.extend(
                scores
                    .merged
                    .get(&outcome.record)
                    .cloned()
                    .unwrap_or_default(),
            );
            let mut entries: Vec<ScoreHistoryEntry> = ids
                .iter()
                .filter_map(|id| scores.entries.get(id))
                .flatten()
                .filter(|entry| entry.at < outcome.closed)
                .cloned()
                .collect();
            entries.sort_by_key(|entry| entry.at);
            let record = match level {
                Level::Account => history.accounts.get(&outcome.record),
                _ => history.person(level, &outcome.record),
            };
            samples.push(ScoreSample {
                record: outcome.record.clone(),
                name: record.and_then(|r| r.get("Name").as_str().map(str::to_string)),
                won,
                closed: outcome.closed,
                entries,
            });
        }
    }
    samples
}

/// Returns one sentence for each figure that has too little data behind it.
fn data_notes(report: &OutcomesReport) -> Vec<String> {
    let noun = examples_noun(report.level);
    let mut notes = Vec::new();
    if report.go_live.is_none() {
        notes.push(format!(
            "no {} record has a score history yet, so nothing can be compared; scores are recorded from the next `leadscore score` on",
            report.level
        ));
    } else if report.closed_outcomes == 0 {
        notes.push(format!(
            "no {noun} closed after their record was first scored, so there are no observed outcomes to compare yet"
        ));
    }
    let thin = report
        .tier_months
        .iter()
        .filter(|row| !row.enough_data)
        .count();
    if thin > 0 {
        notes.push(format!(
            "{thin} tier-month cells have fewer than {MIN_DEALS_FOR_RATE} {noun}; the page shows their counts but no rate"
        ));
    }
    if let Some(all) = report.calibration.iter().find(|c| c.month == "all") {
        if all.calibration_error.is_none() {
            notes.push(format!(
                "calibration error needs at least {MIN_DEALS_FOR_CALIBRATION} {noun}, and there are {}",
                all.deals
            ));
        }
    }
    if let Some(all) = report.auc_by_quarter.iter().find(|q| q.quarter == "all") {
        if !all.enough_data {
            notes.push(format!(
                "ROC AUC needs at least {MIN_DEALS_FOR_AUC} {noun} with both outcomes, and there are {} ({} won, {} lost)",
                all.deals, all.won, all.lost
            ));
        }
    }
    if let Some(note) = &report.drift.note {
        notes.push(note.clone());
    }
    if report.go_live.is_some() && report.activity_windows.is_none() {
        notes.push("the scores went live at the report time, so there is no activity after go-live to compare".to_string());
    }
    notes
}

/// Lists each `[outcomes]` limit the figures fall past. Figures with too little data behind
/// them never count as a breach.
fn breaches(report: &OutcomesReport, config: &Config) -> Vec<String> {
    let limits = &config.reports;
    let noun = examples_noun(report.level);
    let mut out = Vec::new();
    for quarter in &report.auc_by_quarter {
        let Some(auc) = quarter.auc.filter(|_| quarter.enough_data) else {
            continue;
        };
        if auc < limits.min_auc {
            let period = if quarter.quarter == "all" {
                "over the whole period".to_string()
            } else {
                format!("in {}", quarter.quarter)
            };
            out.push(format!(
                "ROC AUC {period} is {auc:.3} on {} {noun}, below the minimum of {} ([outcomes] min_auc)",
                quarter.deals, limits.min_auc
            ));
        }
    }
    let overall = report.calibration.iter().find(|c| c.month == "all");
    if let Some((error, deals)) = overall.and_then(|c| Some((c.calibration_error?, c.deals))) {
        if error > limits.max_calibration_error {
            out.push(format!(
                "expected calibration error is {error:.3} on {deals} {noun}, above the maximum of {} ([outcomes] max_calibration_error)",
                limits.max_calibration_error
            ));
        }
    }
    for feature in &report.drift.features {
        if feature.psi > limits.max_psi {
            out.push(format!(
                "feature {} drifted: its population stability index is {:.3}, above the maximum of {} ([outcomes] max_psi)",
                feature.feature, feature.psi, limits.max_psi
            ));
        }
    }
    out
}
