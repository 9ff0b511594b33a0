//! The report's tables, computed from the closed outcomes: win rate per tier and month against
//! the predicted rate, calibration per month, ROC AUC per quarter, and the business impact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Utc};
use leadscore_connector::Record;
use serde::Serialize;

use super::gather::{ClosedOutcome, LoggedActivity};
use crate::model::metrics;
use crate::store::ScoreHistory;

/// Fewer closed deals than this in a tier and month give counts but no rate in the page.
pub const MIN_DEALS_FOR_RATE: usize = 5;
/// Fewer closed deals than this give no calibration error.
pub const MIN_DEALS_FOR_CALIBRATION: usize = 20;
/// Fewer closed deals than this give no ROC AUC, even with both outcomes present.
pub const MIN_DEALS_FOR_AUC: usize = 10;

/// Closed deals and win rates of one tier in one month, by the tier in effect before the close.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TierMonth {
    /// The UTC month of the close, `YYYY-MM`.
    pub month: String,
    pub tier: String,
    pub deals: usize,
    pub won: usize,
    /// Share of the deals won.
    pub win_rate: f64,
    /// Mean win probability of the deals before their close.
    pub predicted_rate: f64,
    /// False when `deals` is below [`MIN_DEALS_FOR_RATE`], so the rate is mostly noise.
    pub enough_data: bool,
}

/// Calibration of one month's closed deals, or of all of them (`month` = `all`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CalibrationMonth {
    pub month: String,
    pub deals: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
    /// Expected calibration error over ten equal-width probability bins; `None` with too few
    /// deals.
    pub calibration_error: Option<f64>,
}

/// ROC AUC of the scores on one quarter's closed deals, or of all of them (`quarter` = `all`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QuarterAuc {
    /// `YYYY-Qn`, in UTC.
    pub quarter: String,
    pub deals: usize,
    pub won: usize,
    pub lost: usize,
    /// `None` when a class is absent.
    pub auc: Option<f64>,
    /// False when the deals are fewer than the minimum or one class is absent.
    pub enough_data: bool,
}

/// Outcomes of the deals in one tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TierImpact {
    pub tier: String,
    pub deals: usize,
    pub won: usize,
    /// Share of the deals won; `None` without deals.
    pub conversion_rate: Option<f64>,
    /// Mean days from creation to close of the won deals; `None` without one.
    pub mean_cycle_days_won: Option<f64>,
    /// Mean days from creation to close of all deals with a creation time.
    pub mean_cycle_days_closed: Option<f64>,
}

/// One rep's logged activities on A and B records, before and after go-live.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RepActivity {
    pub rep: String,
    pub rep_name: Option<String>,
    pub before_total: usize,
    pub before_on_a_b: usize,
    /// `None` without activities in the window.
    pub before_share: Option<f64>,
    pub after_total: usize,
    pub after_on_a_b: usize,
    pub after_share: Option<f64>,
}

/// One rep's closed-won revenue among the report's deals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RepRevenue {
    pub rep: String,
    pub rep_name: Option<String>,
    pub won_deals: usize,
    /// Sum of the won deals' amounts, in the base currency; deals without an amount add 0.
    pub revenue: f64,
    /// The part of `revenue` from deals whose record was tier A or B before the close.
    pub revenue_a_b: f64,
}

/// The activity windows compared: equal lengths before and after go-live.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActivityWindows {
    pub go_live: DateTime<Utc>,
    pub before_from: DateTime<Utc>,
    pub after_to: DateTime<Utc>,
}

fn month_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

fn quarter_of(at: DateTime<Utc>) -> String {
    format!("{:04}-Q{}", at.year(), (at.month() - 1) / 3 + 1)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Returns the position of a tier label in `labels`, unknown labels last, for sorting.
fn tier_rank(labels: &[String], tier: &str) -> usize {
    labels
        .iter()
        .position(|label| label == tier)
        .unwrap_or(labels.len())
}

/// Counts the closed deals and wins per month and tier, months in order, tiers as `labels`.
pub fn tier_months(outcomes: &[ClosedOutcome], labels: &[String]) -> Vec<TierMonth> {
    let mut groups: BTreeMap<(String, usize, String), Vec<&ClosedOutcome>> = BTreeMap::new();
    for outcome in outcomes {
        let key = (
            month_of(outcome.closed),
            tier_rank(labels, &outcome.tier),
            outcome.tier.clone(),
        );
        groups.entry(key).or_default().push(outcome);
    }
    groups
        .into_iter()
        .map(|((month, _, tier), group)| {
            let won = group.iter().filter(|o| o.won).count();
            let probabilities: Vec<f64> = group.iter().map(|o| o.probability).collect();
            TierMonth {
                month,
                tier,
                deals: group.len(),
                won,
                win_rate: won as f64 / group.len() as f64,
                predicted_rate: mean(&probabilities).unwrap_or(0.0),
                enough_data: group.len() >= MIN_DEALS_FOR_RATE,
            }
        })
        .collect()
}

fn calibration_of(period: String, group: &[&ClosedOutcome]) -> CalibrationMonth {
    let labels: Vec<f64> = group.iter().map(|o| f64::from(u8::from(o.won))).collect();
    let probabilities: Vec<f64> = group.iter().map(|o| o.probability).collect();
    CalibrationMonth {
        month: period,
        deals: group.len(),
        mean_predicted: mean(&probabilities).unwrap_or(0.0),
        observed_rate: mean(&labels).unwrap_or(0.0),
        calibration_error: (group.len() >= MIN_DEALS_FOR_CALIBRATION)
            .then(|| metrics::expected_calibration_error(&labels, &probabilities)),
    }
}

/// Returns the calibration of each month's closed deals, then of all of them (`all`).
pub fn calibration(outcomes: &[ClosedOutcome]) -> Vec<CalibrationMonth> {
    let mut months: BTreeMap<String, Vec<&ClosedOutcome>> = BTreeMap::new();
    for outcome in outcomes {
        months
            .entry(month_of(outcome.closed))
            .or_default()
            .push(outcome);
    }
    let mut out: Vec<CalibrationMonth> = months
        .into_iter()
        .map(|(month, group)| calibration_of(month, &group))
        .collect();
    if !outcomes.is_empty() {
        let all: Vec<&ClosedOutcome> = outcomes.iter().collect();
        out.push(calibration_of("all".to_string(), &all));
    }
    out
}

fn auc_of(period: String, group: &[&ClosedOutcome]) -> QuarterAuc {
    let labels: Vec<f64> = group.iter().map(|o| f64::from(u8::from(o.won))).collect();
    let probabilities: Vec<f64> = group.iter().map(|o| o.probability).collect();
    let won = group.iter().filter(|o| o.won).count();
    let auc = metrics::roc_auc(&labels, &probabilities);
    QuarterAuc {
        quarter: period,
        deals: group.len(),
        won,
        lost: group.len() - won,
        auc,
        enough_data: auc.is_some() && group.len() >= MIN_DEALS_FOR_AUC,
    }
}

/// Returns the ROC AUC of each quarter's closed deals, then of all of them (`all`).
pub fn auc_by_quarter(outcomes: &[ClosedOutcome]) -> Vec<QuarterAuc> {
    let mut quarters: BTreeMap<String, Vec<&ClosedOutcome>> = BTreeMap::new();
    for outcome in outcomes {
        quarters
            .entry(quarter_of(outcome.closed))
            .or_default()
            .push(outcome);
    }
    let mut out: Vec<QuarterAuc> = quarters
        .into_iter()
        .map(|(quarter, group)| auc_of(quarter, &group))
        .collect();
    if !outcomes.is_empty() {
        let all: Vec<&ClosedOutcome> = outcomes.iter().collect();
        out.push(auc_of("all".to_string(), &all));
    }
    out
}

fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds() as f64 / 86_400.0
}

/// Returns the conversion rate and mean sales-cycle length per tier, tiers as `labels`.
pub fn tier_impact(outcomes: &[ClosedOutcome], labels: &[String]) -> Vec<TierImpact> {
    let mut tiers: Vec<String> = labels.to_vec();
    for outcome in outcomes {
        if !tiers.contains(&outcome.tier) {
            tiers.push(outcome.tier.clone());
        }
    }
    tiers
        .into_iter()
        .map(|tier| {
            let group: Vec<&ClosedOutcome> = outcomes.iter().filter(|o| o.tier == tier).collect();
            let won = group.iter().filter(|o| o.won).count();
            let cycle = |only_won: bool| -> Vec<f64> {
                group
                    .iter()
                    .filter(|o| o.won || !only_won)
                    .filter_map(|o| Some(days_between(o.created?, o.closed)))
                    .collect()
            };
            TierImpact {
                tier,
                deals: group.len(),
                won,
                conversion_rate: (!group.is_empty()).then(|| won as f64 / group.len() as f64),
                mean_cycle_days_won: mean(&cycle(true)),
                mean_cycle_days_closed: mean(&cycle(false)),
            }
        })
        .collect()
}

/// Returns the equal-length windows before and after go-live that end at `now`, or `None`
/// before go-live.
pub fn activity_windows(go_live: DateTime<Utc>, now: DateTime<Utc>) -> Option<ActivityWindows> {
    (now > go_live).then(|| ActivityWindows {
        go_live,
        before_from: go_live - (now - go_live),
        after_to: now,
    })
}

/// Returns each rep's share of logged activities on records of the first two tiers, in the
/// window before go-live and in the window after it. Before go-live a record counts by the
/// tier of its first score; after, by the tier in effect at the activity. An activity on a
/// record with no score counts in the total only.
pub fn activity_shares(
    activities: &[LoggedActivity],
    scores: &ScoreHistory,
    labels: &[String],
    windows: &ActivityWindows,
    names: &HashMap<String, String>,
) -> Vec<RepActivity> {
    let top: BTreeSet<&str> = labels.iter().take(2).map(String::as_str).collect();
    let mut reps: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for activity in activities {
        if activity.at < windows.before_from || activity.at > windows.after_to {
            continue;
        }
        let Some(owner) = &activity.owner else {
            continue;
        };
        let after = activity.at >= windows.go_live;
        let tier = activity.record.as_deref().and_then(|record| {
            if after {
                scores.at(record, activity.at).map(|e| e.tier.as_str())
            } else {
                let first = scores.first_scored(record)?;
                scores.at(record, first).map(|e| e.tier.as_str())
            }
        });
        let on_top = tier.is_some_and(|tier| top.contains(tier));
        let counts = reps.entry(owner.clone()).or_default();
        let offset = if after { 2 } else { 0 };
        counts[offset] += 1;
        counts[offset + 1] += usize::from(on_top);
    }
    let share = |part: usize, total: usize| (total > 0).then(|| part as f64 / total as f64);
    reps.into_iter()
        .map(
            |(rep, [before_total, before_on_a_b, after_total, after_on_a_b])| RepActivity {
                rep_name: names.get(&rep).cloned(),
                rep,
                before_total,
                before_on_a_b,
                before_share: share(before_on_a_b, before_total),
                after_total,
                after_on_a_b,
                after_share: share(after_on_a_b, after_total),
            },
        )
        .collect()
}

/// Returns each rep's closed-won revenue among the outcomes, counting each deal once (a deal
/// appears once per contact at the contact level). Amounts come from `Amount`, already in the
/// base currency.
pub fn revenue_per_rep(
    outcomes: &[ClosedOutcome],
    opportunities: &HashMap<String, Record>,
    labels: &[String],
    names: &HashMap<String, String>,
) -> Vec<RepRevenue> {
    let top: BTreeSet<&str> = labels.iter().take(2).map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut reps: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.won) {
        let Some(owner) = &outcome.owner else {
            continue;
        };
        let key = outcome.deal.clone().unwrap_or_else(|| outcome.id.clone());
        if !seen.insert(key) {
            continue;
        }
        let amount = outcome
            .deal
            .as_ref()
            .and_then(|deal| opportunities.get(deal))
            .and_then(|deal| deal.get("Amount").as_f64())
            .filter(|amount| amount.is_finite())
            .unwrap_or(0.0);
        let entry = reps.entry(owner.clone()).or_default();
        entry.0 += 1;
        entry.1 += amount;
        if top.contains(outcome.tier.as_str()) {
            entry.2 += amount;
        }
    }
    reps.into_iter()
        .map(|(rep, (won_deals, revenue, revenue_a_b))| RepRevenue {
            rep_name: names.get(&rep).cloned(),
            rep,
            won_deals,
            revenue,
            revenue_a_b,
        })
        .collect()
}
