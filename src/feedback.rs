//! Rep feedback: flags reps set on wrongly scored records, stored with the score they were about.
//!
//! Reps flag a score through two CRM fields on the scored record: a picklist (`Too high`,
//! `Too low`, `Right`) and a short comment. Each pull reads both fields on the objects of the
//! configured levels. Every change of value or comment becomes a new [`Flag`], which keeps the
//! score, tier, reasons and model version the store held for the record at that moment.
//! Training reads the latest flag of each record: with `[feedback] use = "weights"` the
//! examples whose flag agrees with their outcome get a larger sample weight, and the model
//! card gets a [`FeedbackSummary`] either way. Flags never change labels or CRM outcomes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use leadscore_connector::{Connector, ConnectorError, FieldKind, PullSpec, Record, Value};
use serde::{Deserialize, Serialize};

use crate::config::feedback::FeedbackUse;
use crate::config::{Config, Level};
use crate::features::{FeatureSpace, History, Target};
use crate::levels::{self, Example};
use crate::model::TrainedModel;
use crate::pipeline::{PipelineError, Schemas};
use crate::scoring::score_of;
use crate::store::{PendingKind, Store, StoreError};

/// The picklist values reps choose from, in the order the CRM lists them.
pub const FLAG_VALUES: [&str; 3] = ["Too high", "Too low", "Right"];

/// A "Right" flag agrees with a new score at most this many points from the flagged one.
pub const RIGHT_TOLERANCE_POINTS: f64 = 5.0;

/// Flags with values outside [`FLAG_VALUES`] listed in a report; the rest are only counted.
const UNKNOWN_LISTED: usize = 20;

/// A rep's verdict on a score.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagValue {
    TooHigh,
    TooLow,
    Right,
    /// The flag field is empty: a rep cleared the flag, or wrote only a comment.
    Empty,
    /// A value outside the picklist, kept as the CRM returned it.
    Unknown(String),
}

impl FlagValue {
    /// Parses a flag field's value. Case, spaces, `_` and `-` are ignored, so `too_high` and
    /// `TOO HIGH` read as `Too high`.
    pub fn parse(value: &Value) -> FlagValue {
        let text = match value {
            Value::Null => return FlagValue::Empty,
            Value::Text(text) => text.clone(),
            other => other.to_string(),
        };
        let normal: String = text
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        match normal.as_str() {
            "" if text.trim().is_empty() => FlagValue::Empty,
            "toohigh" => FlagValue::TooHigh,
            "toolow" => FlagValue::TooLow,
            "right" => FlagValue::Right,
            _ => FlagValue::Unknown(text),
        }
    }

    /// Returns the picklist value, or `None` for an empty or unknown value.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            FlagValue::TooHigh => Some(FLAG_VALUES[0]),
            FlagValue::TooLow => Some(FLAG_VALUES[1]),
            FlagValue::Right => Some(FLAG_VALUES[2]),
            FlagValue::Empty | FlagValue::Unknown(_) => None,
        }
    }

    /// Returns true when a new score agrees with this flag on a record flagged at `flagged`
    /// points: lower for "Too high", higher for "Too low", and within
    /// [`RIGHT_TOLERANCE_POINTS`] for "Right".
    pub fn agrees_with(&self, flagged: f64, new: f64) -> bool {
        match self {
            FlagValue::TooHigh => new < flagged,
            FlagValue::TooLow => new > flagged,
            FlagValue::Right => (new - flagged).abs() <= RIGHT_TOLERANCE_POINTS,
            FlagValue::Empty | FlagValue::Unknown(_) => false,
        }
    }

    /// Returns true when the flag agrees with a known outcome: "Too low" on a won example,
    /// "Too high" on a lost one.
    pub fn agrees_with_outcome(&self, label: f64) -> bool {
        match self {
            FlagValue::TooLow => label >= 0.5,
            FlagValue::TooHigh => label < 0.5,
            _ => false,
        }
    }
}

/// One change of a record's flag or comment, with the score the rep was looking at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// `Account`, `Contact` or `Lead`.
    pub object: String,
    pub id: String,
    pub level: Level,
    pub value: FlagValue,
    pub comment: Option<String>,
    /// The record's change stamp in the CRM when the flag was read.
    pub modified_at: DateTime<Utc>,
    /// The score, tier, reasons and model version the store held for the record when the flag
    /// was read. They are `None` (reasons empty) when the record had no score yet.
    pub score: Option<f64>,
    pub tier: Option<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub model_version: Option<String>,
    /// When the pull that read the flag ran.
    pub recorded_at: DateTime<Utc>,
}

/// The two CRM fields of the configured connector, named as the configuration names fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackFields {
    pub flag: String,
    pub comment: String,
}

impl FeedbackFields {
    pub fn of(config: &Config) -> FeedbackFields {
        FeedbackFields {
            flag: config.feedback.field_for(&config.connector),
            comment: config.feedback.comment_field_for(&config.connector),
        }
    }
}

/// A flag value outside the picklist, as found on a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnknownFlag {
    pub object: String,
    pub id: String,
    pub value: String,
}

/// The flags a pull read from the feedback fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlagPullReport {
    /// New flags stored: records whose flag value or comment changed.
    pub recorded: usize,
    /// New flags per picklist value (`Too high`, ...), plus `empty` and `unknown`.
    pub by_value: BTreeMap<String, usize>,
    /// New flags whose value is outside the picklist (at most 20 are listed).
    pub unknown: Vec<UnknownFlag>,
    /// Problems with the feedback fields: fields the org lacks, with what to create (those
    /// objects are pulled without them), or picklist values reps cannot choose.
    pub field_problems: Vec<String>,
}

/// Returns the problems with the feedback fields on each scored object: missing fields with
/// what to create, a flag field of the wrong kind, or picklist values reps cannot choose.
/// None of these stops a pull, which reads the objects without the missing fields.
pub(crate) async fn field_problems<C: Connector>(
    schemas: &mut Schemas<'_, C>,
    config: &Config,
) -> Result<Vec<String>, ConnectorError> {
    let fields = FeedbackFields::of(config);
    let mut problems = Vec::new();
    for object in scored_objects(config) {
        match schemas.resolve(object, &fields.flag).await? {
            Err(_) => problems.push(missing_message(object, &fields.flag, true)),
            Ok(field) => {
                if !matches!(field.kind, FieldKind::Picklist | FieldKind::Text) {
                    problems.push(format!(
                        "[feedback] field: {object}.{} is a {:?} field; rep flags need a picklist with the values {}",
                        fields.flag,
                        field.kind,
                        FLAG_VALUES.join(", ")
                    ));
                } else if field.kind == FieldKind::Picklist && !field.picklist_values.is_empty() {
                    let absent: Vec<&str> = FLAG_VALUES
                        .iter()
                        .copied()
                        .filter(|value| {
                            !field.picklist_values.iter().any(|v| {
                                FlagValue::parse(&Value::Text(v.clone())).label() == Some(*value)
                            })
                        })
                        .collect();
                    if !absent.is_empty() {
                        problems.push(format!(
                            "[feedback] field: the picklist {object}.{} lacks the values {}; add them so reps can choose them",
                            fields.flag,
                            absent.join(", ")
                        ));
                    }
                }
            }
        }
        if schemas.resolve(object, &fields.comment).await?.is_err() {
            problems.push(missing_message(object, &fields.comment, false));
        }
    }
    Ok(problems)
}

fn missing_message(object: &str, field: &str, is_flag: bool) -> String {
    let key = if is_flag { "field" } else { "comment_field" };
    let what = if is_flag {
        format!("a picklist with the values {}", FLAG_VALUES.join(", "))
    } else {
        "a text field of up to 255 characters".to_string()
    };
    format!(
        "[feedback] {key}: {object} has no field {field:?}; create {what} (`leadscore check --fix` creates it). Until then rep flags on {object} are not read"
    )
}

/// Returns the objects of the configured levels, in level order, each once.
fn scored_objects(config: &Config) -> Vec<&'static str> {
    let mut objects: Vec<&'static str> = Vec::new();
    for level in &config.scoring.levels {
        if !objects.contains(&level.object()) {
            objects.push(level.object());
        }
    }
    objects
}

/// Adds the feedback fields the org has to the pull specs of the scored objects and returns
/// the problems found (see [`field_problems`]), each logged as a warning.
pub(crate) async fn add_pull_fields<C: Connector>(
    connector: &C,
    config: &Config,
    specs: &mut [PullSpec],
) -> Result<Vec<String>, PipelineError> {
    let fields = FeedbackFields::of(config);
    let mut schemas = Schemas::new(connector);
    for object in scored_objects(config) {
        let Some(spec) = specs.iter_mut().find(|s| s.object == object) else {
            continue;
        };
        for field in [&fields.flag, &fields.comment] {
            let present = schemas.resolve(object, field).await?.is_ok();
            if present && !spec.fields.contains(field) {
                spec.fields.push(field.clone());
            }
        }
    }
    let problems = field_problems(&mut schemas, config).await?;
    for problem in &problems {
        tracing::warn!(%problem, "a rep feedback field is missing or unusable");
    }
    Ok(problems)
}

/// Reads the comment field: trimmed text, `None` when empty.
fn comment_of(record: &Record, field: &str) -> Option<String> {
    match record.get(field) {
        Value::Null => None,
        Value::Text(text) if text.trim().is_empty() => None,
        Value::Text(text) => Some(text.trim().to_string()),
        other => Some(other.to_string()),
    }
}

/// Compares the feedback fields of the scored objects' records with each record's latest flag
/// and stores a new flag for each change. A record seen for the first time gets a flag only
/// when a value or comment is set. Objects whose feedback fields were not pulled are skipped.
///
/// Once this has read every record of an object while the pull marks its changes, later
/// calls read only the records marked since (see `Store::track_changes`). The marks are
/// cleared only after the flags are stored, so a pull cut off in between loses none.
pub fn record_flags(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<FlagPullReport, StoreError> {
    let fields = FeedbackFields::of(config);
    let latest = store.latest_flags()?;
    let mut report = FlagPullReport::default();
    let mut new_flags = Vec::new();
    // Each object read, with the tracking epoch its reading covers and the start of the
    // reading, before which its marks are dealt with.
    let mut read: Vec<(&str, Option<String>, u64)> = Vec::new();
    for &level in &config.scoring.levels {
        let object = level.object();
        let epoch = store.tracking_epoch(object)?.map(|epoch| epoch.to_string());
        let pulled = store.pulled_fields(object)?.unwrap_or_default();
        let has_flag = pulled.contains(&fields.flag);
        let has_comment = pulled.contains(&fields.comment);
        if !has_flag && !has_comment {
            read.push((object, None, store.pending_start()?));
            continue;
        }
        let incremental =
            epoch.is_some() && store.pending_scanned(PendingKind::Flags, object)? == epoch;
        let start = if incremental {
            store.pending_start()?
        } else {
            store.begin_whole_scan(PendingKind::Flags, object)?
        };
        read.push((object, epoch, start));
        let scores = store.at_level(level);
        // The records are streamed and only those whose flag or comment changed are kept,
        // so a pull over a million contacts does not hold them all.
        let previous_flags: HashMap<&str, &Flag> = latest
            .iter()
            .filter(|((flag_object, _), _)| flag_object == object)
            .map(|((_, id), flag)| (id.as_str(), flag))
            .collect();
        let mut changed = Vec::new();
        let mut consider = |record: Record| {
            let value = if has_flag {
                FlagValue::parse(record.get(&fields.flag))
            } else {
                FlagValue::Empty
            };
            let comment = if has_comment {
                comment_of(&record, &fields.comment)
            } else {
                None
            };
            let is_new = match previous_flags.get(record.id.as_str()) {
                Some(previous) => previous.value != value || previous.comment != comment,
                None => value != FlagValue::Empty || comment.is_some(),
            };
            if is_new {
                changed.push((record, value, comment));
            }
        };
        if incremental {
            let mut after: Option<String> = None;
            loop {
                let ids = store.pending_ids(PendingKind::Flags, object, after.as_deref(), 2_000)?;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                for record in store.stored_records(object, &ids)?.into_iter().flatten() {
                    consider(record);
                }
                match ids.last() {
                    Some(last) if ids.len() == 2_000 => after = Some((*last).to_string()),
                    _ => break,
                }
            }
        } else {
            store.for_each_record(object, consider)?;
        }
        for (record, value, comment) in changed {
            let row = scores.score_row(&record.id)?;
            let flag = Flag {
                object: object.to_string(),
                id: record.id.clone(),
                level,
                value,
                comment,
                modified_at: record.modstamp,
                score: row.as_ref().map(|r| r.score),
                tier: row.as_ref().map(|r| r.tier.clone()),
                reasons: row.as_ref().map(|r| r.reasons.clone()).unwrap_or_default(),
                model_version: row.map(|r| r.model_version),
                recorded_at: now,
            };
            let key = match &flag.value {
                FlagValue::Unknown(raw) => {
                    tracing::warn!(
                        object,
                        id = %flag.id,
                        value = %raw,
                        allowed = %FLAG_VALUES.join(", "),
                        "a rep flag has a value outside the picklist; it is stored as unknown"
                    );
                    if report.unknown.len() < UNKNOWN_LISTED {
                        report.unknown.push(UnknownFlag {
                            object: object.to_string(),
                            id: flag.id.clone(),
                            value: raw.clone(),
                        });
                    }
                    "unknown".to_string()
                }
                FlagValue::Empty => "empty".to_string(),
                known => known.label().unwrap_or_default().to_string(),
            };
            *report.by_value.entry(key).or_default() += 1;
            new_flags.push(flag);
        }
    }
    store.record_flags(&new_flags)?;
    for (object, epoch, start) in read {
        store.clear_pending(PendingKind::Flags, object, start, &[])?;
        if let Some(epoch) = epoch {
            store.set_pending_scanned(PendingKind::Flags, object, &epoch)?;
        }
    }
    report.recorded = new_flags.len();
    if report.recorded > 0 {
        tracing::info!(flags = report.recorded, "stored rep flags");
    }
    Ok(report)
}

/// Returns the latest flag of each record of `level`'s object, by record id.
pub fn latest_values(store: &Store, level: Level) -> Result<HashMap<String, Flag>, StoreError> {
    Ok(store
        .latest_flags()?
        .into_values()
        .filter(|flag| flag.object == level.object())
        .map(|flag| (flag.id.clone(), flag))
        .collect())
}

/// Returns one sample weight per example: `weight` when the latest flag of the example's
/// record agrees with the example's outcome ("Too low" and won, "Too high" and lost), else 1.
pub fn example_weights(
    level: Level,
    examples: &[Example],
    flags: &HashMap<String, Flag>,
    weight: f64,
) -> Vec<f64> {
    examples
        .iter()
        .map(|example| {
            let agrees = example
                .record_id(level)
                .and_then(|id| flags.get(id))
                .is_some_and(|flag| flag.value.agrees_with_outcome(example.label));
            if agrees {
                weight
            } else {
                1.0
            }
        })
        .collect()
}

/// Flags and agreement of one picklist value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueAgreement {
    /// Records whose latest flag has this value.
    pub records: u64,
    /// Those with a flagged score and a score from the new model.
    pub evaluated: u64,
    /// Those the new model agrees with.
    pub agreed: u64,
}

/// A feature and how many flagged records list it among their top reasons.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureCount {
    pub feature: String,
    pub records: u64,
}

/// The model card's feedback section: the flags of one level and how the new model relates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedbackSummary {
    /// `review` (flags reported only) or `weights` (flags weighted training examples).
    #[serde(rename = "use")]
    pub use_flags: String,
    /// Every stored flag of the level with a picklist or unknown value, history included.
    pub flags: u64,
    /// Those flags per picklist value, plus `unknown`.
    pub by_value: BTreeMap<String, u64>,
    /// Flags that cleared the value or carried only a comment.
    pub empty: u64,
    /// Records whose latest flag has a picklist value.
    pub records: u64,
    /// Records the new model agrees with, over those evaluated, per picklist value.
    pub agreement: BTreeMap<String, ValueAgreement>,
    pub evaluated: u64,
    pub agreed: u64,
    /// Per picklist value, the features that appear most in the flagged records' top reasons,
    /// most frequent first.
    pub features: BTreeMap<String, Vec<FeatureCount>>,
    /// Latest flags with a value outside the picklist (at most 20 listed).
    pub unknown: Vec<UnknownFlag>,
    /// The configured weight, and the training rows that carried it.
    pub weight: f64,
    pub weighted_rows: u64,
}

/// Features listed per picklist value in [`FeedbackSummary::features`].
const TOP_FEATURES: usize = 5;

/// Builds the model card's feedback section for the level of `store`. `model` and `space`
/// are the new model and its feature encoding; `weighted_rows` counts the training rows that
/// carried a flag weight.
pub fn summarize(
    store: &Store,
    config: &Config,
    history: &History,
    space: &FeatureSpace,
    model: &TrainedModel,
    now: DateTime<Utc>,
    weighted_rows: usize,
) -> Result<FeedbackSummary, PipelineError> {
    let level = store.level();
    let mut summary = FeedbackSummary {
        use_flags: match config.feedback.use_flags {
            FeedbackUse::Review => "review",
            FeedbackUse::Weights => "weights",
        }
        .to_string(),
        weight: config.feedback.weight,
        weighted_rows: weighted_rows as u64,
        ..FeedbackSummary::default()
    };
    for flag in store.flags()?.iter().filter(|f| f.object == level.object()) {
        match &flag.value {
            FlagValue::Empty => summary.empty += 1,
            FlagValue::Unknown(_) => {
                summary.flags += 1;
                *summary.by_value.entry("unknown".to_string()).or_default() += 1;
            }
            known => {
                summary.flags += 1;
                let label = known.label().unwrap_or_default().to_string();
                *summary.by_value.entry(label).or_default() += 1;
            }
        }
    }

    let latest: Vec<Flag> = latest_values(store, level)?.into_values().collect();
    let open: HashMap<&str, levels::OpenRecord> = levels::open_records(level, history, config, now)
        .into_iter()
        .map(|record| (record.id, record))
        .collect();
    let at = config.scoring.as_of.unwrap_or(now);
    let mut flagged_models: BTreeMap<String, Option<(FeatureSpace, TrainedModel)>> =
        BTreeMap::new();
    let mut feature_counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for flag in &latest {
        let Some(label) = flag.value.label() else {
            if let FlagValue::Unknown(raw) = &flag.value {
                if summary.unknown.len() < UNKNOWN_LISTED {
                    summary.unknown.push(UnknownFlag {
                        object: flag.object.clone(),
                        id: flag.id.clone(),
                        value: raw.clone(),
                    });
                }
            }
            continue;
        };
        summary.records += 1;
        summary
            .agreement
            .entry(label.to_string())
            .or_default()
            .records += 1;
        let Some(target) = target_of(level, &flag.id, &open, history) else {
            continue;
        };
        if let Some(flagged) = flag.score {
            let new_row = space.row(history, target, at);
            let probability = model
                .predict(&[new_row])
                .map_err(|e| PipelineError::Model(e.to_string()))?;
            if let Some(p) = probability.first() {
                let agreed = flag.value.agrees_with(flagged, score_of(*p));
                let row = summary.agreement.entry(label.to_string()).or_default();
                row.evaluated += 1;
                row.agreed += u64::from(agreed);
                summary.evaluated += 1;
                summary.agreed += u64::from(agreed);
            }
        }
        // The reasons the rep saw came from the flagged model version. The new model is used
        // instead when that version is no longer stored.
        let reasons_model = match &flag.model_version {
            Some(version) => {
                if !flagged_models.contains_key(version) {
                    let loaded = store.model(version)?.and_then(|stored| {
                        let space = serde_json::from_value::<FeatureSpace>(stored.features).ok()?;
                        let model = TrainedModel::from_bytes(&stored.model).ok()?;
                        Some((space, model))
                    });
                    flagged_models.insert(version.clone(), loaded);
                }
                flagged_models.get(version).and_then(Option::as_ref)
            }
            None => None,
        };
        let (reasons_space, reasons_model) = match reasons_model {
            Some((space, model)) => (space, model),
            None => (space, model),
        };
        let shown = if flag.reasons.is_empty() {
            config.scoring.reasons
        } else {
            flag.reasons.len()
        };
        let features = top_features(
            reasons_space,
            reasons_model,
            history,
            target,
            flag.modified_at.min(at),
            shown,
        )?;
        let counts = feature_counts.entry(label.to_string()).or_default();
        for feature in features {
            *counts.entry(feature).or_default() += 1;
        }
    }
    for (label, counts) in feature_counts {
        let mut ranked: Vec<FeatureCount> = counts
            .into_iter()
            .map(|(feature, records)| FeatureCount { feature, records })
            .collect();
        ranked.sort_by(|a, b| b.records.cmp(&a.records).then(a.feature.cmp(&b.feature)));
        ranked.truncate(TOP_FEATURES);
        summary.features.insert(label, ranked);
    }
    Ok(summary)
}

/// Returns the feature target of a flagged record: the open record when it is scored, else
/// the account itself for the account level and the contact with its account for the contact
/// level.
// NOTE: a lead that is no longer open (converted or aged out) has no target here, so its
// flag is counted but neither evaluated nor used for the features section.
fn target_of<'a>(
    level: Level,
    id: &'a str,
    open: &'a HashMap<&str, levels::OpenRecord<'a>>,
    history: &'a History,
) -> Option<Target<'a>> {
    if let Some(record) = open.get(id) {
        return Some(record.target());
    }
    match level {
        Level::Account => history
            .accounts
            .contains_key(id)
            .then(|| Target::account(id)),
        Level::Contact => {
            let contact = history.contacts.get(id)?;
            Some(Target {
                account: contact.get("AccountId").as_str(),
                person: Some(id),
            })
        }
        Level::Lead => None,
    }
}

/// Returns the features with the largest contributions (by absolute value) to one record's
/// score as of `at`: the features its top `count` reasons name.
fn top_features(
    space: &FeatureSpace,
    model: &TrainedModel,
    history: &History,
    target: Target<'_>,
    at: DateTime<Utc>,
    count: usize,
) -> Result<Vec<String>, PipelineError> {
    let row = space.row(history, target, at);
    let contributions = model
        .contributions(&[row])
        .map_err(|e| PipelineError::Model(e.to_string()))?;
    let Some(values) = contributions.first().map(|c| &c.values) else {
        return Ok(Vec::new());
    };
    let mut by_feature: Vec<(String, f64)> = Vec::new();
    for (column, contribution) in space.columns.iter().zip(values) {
        match by_feature.iter_mut().find(|(f, _)| *f == column.feature) {
            Some((_, total)) => *total += contribution,
            None => by_feature.push((column.feature.clone(), *contribution)),
        }
    }
    by_feature.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    Ok(by_feature
        .into_iter()
        .filter(|(_, c)| c.abs() > 1e-6)
        .take(count)
        .map(|(feature, _)| feature)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(account: &str, label: f64) -> Example<'_> {
        let at = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        Example {
            id: format!("deal-{account}"),
            account: Some(account),
            person: None,
            at,
            decided: at,
            label,
        }
    }

    fn flag(id: &str, value: FlagValue) -> Flag {
        Flag {
            object: "Account".to_string(),
            id: id.to_string(),
            level: Level::Account,
            value,
            comment: None,
            modified_at: Utc::now(),
            score: Some(50.0),
            tier: Some("B".to_string()),
            reasons: Vec::new(),
            model_version: None,
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn parse_reads_picklist_spellings() {
        let text = |s: &str| FlagValue::parse(&Value::Text(s.to_string()));
        assert_eq!(text("Too high"), FlagValue::TooHigh);
        assert_eq!(text("too_low"), FlagValue::TooLow);
        assert_eq!(text(" RIGHT "), FlagValue::Right);
        assert_eq!(text(""), FlagValue::Empty);
        assert_eq!(FlagValue::parse(&Value::Null), FlagValue::Empty);
        assert_eq!(text("Way off"), FlagValue::Unknown("Way off".to_string()));
    }

    #[test]
    fn agreement_follows_flag_direction() {
        assert!(FlagValue::TooHigh.agrees_with(60.0, 50.0));
        assert!(!FlagValue::TooHigh.agrees_with(60.0, 60.0));
        assert!(FlagValue::TooLow.agrees_with(20.0, 35.0));
        assert!(!FlagValue::TooLow.agrees_with(20.0, 19.0));
        assert!(FlagValue::Right.agrees_with(40.0, 45.0));
        assert!(!FlagValue::Right.agrees_with(40.0, 45.5));
        assert!(!FlagValue::Unknown("x".to_string()).agrees_with(40.0, 40.0));
    }

    #[test]
    fn weights_only_agreeing_examples() {
        let examples = [
            example("A1", 0.0), // Too high and lost: agrees.
            example("A1", 1.0), // Too high and won: disagrees.
            example("A2", 1.0), // Too low and won: agrees.
            example("A3", 1.0), // Right: never weighted.
            example("A4", 0.0), // Not flagged.
            example("A5", 0.0), // Unknown value.
        ];
        let flags: HashMap<String, Flag> = [
            ("A1", FlagValue::TooHigh),
            ("A2", FlagValue::TooLow),
            ("A3", FlagValue::Right),
            ("A5", FlagValue::Unknown("Wrong".to_string())),
        ]
        .into_iter()
        .map(|(id, value)| (id.to_string(), flag(id, value)))
        .collect();
        let weights = example_weights(Level::Account, &examples, &flags, 3.0);
        assert_eq!(weights, [3.0, 1.0, 3.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn sample_weights_change_the_fit() {
        use crate::model::{Dataset, GradientBoostedModel, Model, TrainParams};

        // One feature; x = 1 is won half the time. Weighing its lost rows up must lower
        // the predicted win probability at x = 1.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..80 {
            rows.push(vec![f64::from(i % 2)]);
            labels.push(if i % 4 < 2 { 1.0 } else { 0.0 });
        }
        let data = Dataset {
            feature_names: vec!["x".to_string()],
            rows,
            labels,
        };
        let params = TrainParams {
            trees: 20,
            max_depth: 2,
            ..TrainParams::default()
        };
        let weights: Vec<f64> = data
            .rows
            .iter()
            .zip(&data.labels)
            .map(|(row, label)| {
                if row[0] == 1.0 && *label == 0.0 {
                    3.0
                } else {
                    1.0
                }
            })
            .collect();
        let plain =
            GradientBoostedModel::fit_early_stopping_weighted(&data, &data, &params, 0, None)
                .expect("unweighted fit");
        let weighted = GradientBoostedModel::fit_early_stopping_weighted(
            &data,
            &data,
            &params,
            0,
            Some(&weights),
        )
        .expect("weighted fit");
        let at_one = vec![vec![1.0]];
        let plain_p = plain.predict(&at_one).expect("predict")[0];
        let weighted_p = weighted.predict(&at_one).expect("predict")[0];
        assert!(
            weighted_p < plain_p - 0.05,
            "weighted {weighted_p} vs unweighted {plain_p}"
        );

        let short = GradientBoostedModel::fit_early_stopping_weighted(
            &data,
            &data,
            &params,
            0,
            Some(&weights[..10]),
        );
        assert!(short.is_err(), "a weight per row is required");
    }
}
