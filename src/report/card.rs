//! The model card's view of a stored model report, read section by section so a partial or
//! older report still renders with "not available" where a part is missing.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One top-level part of the report, as found in the stored JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum Section<T> {
    /// The key is absent.
    Missing,
    /// The key is present with the value `null`.
    Null,
    /// The value does not have the expected shape, as the message describes.
    Invalid(String),
    Present(T),
}

impl<T> Section<T> {
    pub fn get(&self) -> Option<&T> {
        match self {
            Section::Present(value) => Some(value),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
    pub holdout_from: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub examples: Option<u64>,
    pub won: Option<u64>,
    pub lost: Option<u64>,
    pub train: Option<u64>,
    pub validation: Option<u64>,
    pub holdout: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Sufficiency {
    pub passed: Option<bool>,
    pub floor_examples: Option<u64>,
    pub floor_minority: Option<u64>,
    pub message: Option<String>,
    /// Segments short of closed deals. The report omits the key when there are none.
    pub segments: Option<Vec<SegmentShortfall>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SegmentShortfall {
    pub segment: String,
    pub examples: Option<u64>,
    pub won: Option<u64>,
    pub lost: Option<u64>,
    pub floor: Option<u64>,
    /// Closed deals still needed to reach the floor.
    pub missing: Option<u64>,
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LeakageFlag {
    pub feature: String,
    pub auc: Option<f64>,
    /// Reason the feature was flagged. Reports written before the post-outcome check lack it.
    pub reason: Option<String>,
    /// Shares of closed deals and of accounts being scored where the feature is present, when
    /// the post-outcome check flagged it.
    pub train_share: Option<f64>,
    pub scoring_share: Option<f64>,
    pub excluded: Option<bool>,
    /// Model columns left out because of the flag. The report omits the key when there are
    /// none.
    pub excluded_columns: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DroppedFeature {
    pub feature: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Checks {
    pub sufficiency: Option<Sufficiency>,
    pub leakage: Option<Vec<LeakageFlag>>,
    pub dropped: Option<Vec<DroppedFeature>>,
    /// Checks that could not run, and why.
    pub notes: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier: Option<f64>,
    pub ece: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub name: Option<String>,
    pub metrics: Option<Metrics>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CandidateScore {
    pub name: String,
    pub validation_auc: Option<f64>,
    pub validation_log_loss: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CalibrationBin {
    pub bin: Option<u32>,
    pub count: Option<u64>,
    pub mean_predicted: Option<f64>,
    pub observed: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LiftDecile {
    /// 1 is the highest-scored tenth of the holdout.
    pub decile: u32,
    pub count: Option<u64>,
    pub win_rate: Option<f64>,
    pub lift: Option<f64>,
    pub cumulative_gain: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TierOutcome {
    pub tier: String,
    pub count: Option<u64>,
    pub win_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FeatureWeight {
    pub feature: String,
    pub mean_abs_contribution: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LiveComparison {
    pub live_version: Option<String>,
    pub live_auc: Option<f64>,
    pub candidate_auc: Option<f64>,
    pub margin: Option<f64>,
}

/// Everything the model card shows, parsed from a stored report.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    /// The stored model's version, which names the model even when the report omits it.
    pub version: String,
    /// `account`, `contact` or `lead`; reports written before levels existed are accounts.
    pub level: String,
    /// The enrichment tables joined for training, as stored.
    pub enrichment: Vec<Value>,
    /// How leads were tied to accounts (lead models only).
    pub lead_match: Option<Value>,
    pub trained_at: Option<String>,
    pub chosen: Option<String>,
    pub calibration_method: Option<String>,
    /// Trees the gradient-boosted candidate kept after early stopping.
    pub trees_used: Option<u64>,
    pub window: Section<Window>,
    pub counts: Section<Counts>,
    pub checks: Section<Checks>,
    pub metrics: Section<Metrics>,
    pub baseline: Section<Baseline>,
    pub candidates: Section<Vec<CandidateScore>>,
    pub calibration: Section<Vec<CalibrationBin>>,
    pub lift: Section<Vec<LiftDecile>>,
    pub tiers: Section<Vec<TierOutcome>>,
    pub top_features: Section<Vec<FeatureWeight>>,
    pub live_comparison: Section<LiveComparison>,
    /// The reps' flags on the level's scores. Reports written before feedback existed lack it.
    pub feedback: Section<crate::feedback::FeedbackSummary>,
}

fn section<T: DeserializeOwned>(report: &Map<String, Value>, key: &str) -> Section<T> {
    match report.get(key) {
        None => Section::Missing,
        Some(Value::Null) => Section::Null,
        Some(value) => match serde_json::from_value(value.clone()) {
            Ok(parsed) => Section::Present(parsed),
            Err(err) => Section::Invalid(err.to_string()),
        },
    }
}

fn text(report: &Map<String, Value>, key: &str) -> Option<String> {
    match report.get(key) {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    }
}

/// Fills the current report keys from the report of the first trainer (flat keys such as
/// `holdout_auc` and `train_rows`), so models trained before the full report still show their
/// holdout metrics and counts. Keys already present are left alone.
fn fill_from_flat_report(report: &mut Map<String, Value>) {
    let number = |report: &Map<String, Value>, key: &str| report.get(key).and_then(Value::as_f64);
    if !report.contains_key("metrics") && report.contains_key("holdout_log_loss") {
        let metrics = serde_json::json!({
            "auc": number(report, "holdout_auc"),
            "log_loss": number(report, "holdout_log_loss"),
            "brier": number(report, "holdout_brier"),
        });
        report.insert("metrics".to_string(), metrics);
    }
    if !report.contains_key("counts") && report.contains_key("examples") {
        let examples = report.get("examples").and_then(Value::as_u64);
        let won = report.get("won").and_then(Value::as_u64);
        let lost = examples
            .zip(won)
            .and_then(|(all, won)| all.checked_sub(won));
        let counts = serde_json::json!({
            "examples": examples,
            "won": won,
            "lost": lost,
            "train": report.get("train_rows").and_then(Value::as_u64),
            "holdout": report.get("holdout_rows").and_then(Value::as_u64),
        });
        report.insert("counts".to_string(), counts);
    }
    if !report.contains_key("window") && report.contains_key("holdout_from") {
        let window = serde_json::json!({ "holdout_from": report.get("holdout_from") });
        report.insert("window".to_string(), window);
    }
}

impl ModelCard {
    /// Reads the card from a stored report. `version` is the stored model's version.
    pub fn from_report(version: &str, report: &Value) -> ModelCard {
        let mut report = match report {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        fill_from_flat_report(&mut report);
        ModelCard {
            version: version.to_string(),
            level: text(&report, "level").unwrap_or_else(|| "account".to_string()),
            enrichment: report
                .get("enrichment")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            lead_match: report.get("lead_match").filter(|v| !v.is_null()).cloned(),
            trained_at: text(&report, "trained_at"),
            chosen: text(&report, "chosen"),
            calibration_method: text(&report, "calibration_method"),
            trees_used: report.get("trees_used").and_then(Value::as_u64),
            window: section(&report, "window"),
            counts: section(&report, "counts"),
            checks: section(&report, "checks"),
            metrics: section(&report, "metrics"),
            baseline: section(&report, "baseline"),
            candidates: section(&report, "candidates"),
            calibration: section(&report, "calibration"),
            lift: section(&report, "lift"),
            tiers: section(&report, "tiers"),
            top_features: section(&report, "top_features"),
            live_comparison: section(&report, "live_comparison"),
            feedback: section(&report, "feedback"),
        }
    }
}
