//! The model registry: every training run is kept with its metadata, a live pointer names the
//! model that scores accounts, and a promotion history records when and why each model went
//! live.
//!
//! Training publishes a candidate, which replaces the live model only when its holdout ROC AUC
//! is no worse than the live model's on the same rows by more than a margin. Admins promote or
//! roll back to any stored version by hand. Before any model goes live over another, both
//! score the open accounts (shadow scoring) and the tier changes are reported. A change of the
//! live model reaches the CRM at the next `score` and `push`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::features::History;
use crate::pipeline::PipelineError;
use crate::scoring;
use crate::store::{ModelEntry, Promotion, PromotionCause, Store, StoreError, StoredModel};
use crate::training::load_history;

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
    /// Names of the model's input columns, in row order.
    pub feature_names: Vec<String>,
    /// The configuration that scores open accounts, used to shadow-score them with the
    /// candidate and the live model before a promotion; `None` skips shadow scoring.
    pub config: Option<Config>,
}

/// Tier changes a candidate would cause, from scoring the open accounts with it and with the
/// live model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowReport {
    pub live_version: String,
    pub candidate_version: String,
    /// The scored object, `Account`, `Contact` or `Lead`; the counts below are of its records.
    #[serde(default)]
    pub object: String,
    /// Open accounts scored by both models.
    pub accounts: usize,
    /// Accounts whose tier would change.
    pub tier_changes: usize,
    /// Accounts that would newly enter the top tier: the alerts that would fire.
    pub new_top_tier: usize,
    /// Accounts that would leave the top tier.
    pub left_top_tier: usize,
    /// Count of each tier change, keyed "from -> to".
    pub moves: BTreeMap<String, usize>,
}

/// Outcome of publishing a candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PublishOutcome {
    /// The candidate is now the live model.
    Promoted {
        version: String,
        previous: Option<String>,
        /// Tier changes against the replaced model; `None` for the first model, or when the
        /// candidate carried no configuration or shadow scoring failed (logged).
        shadow: Option<ShadowReport>,
    },
    /// The candidate is stored, and the live model stays.
    KeptAsCandidate {
        version: String,
        live_version: String,
        reason: String,
    },
    /// The candidate has the live model's version (same data and settings): nothing changed.
    AlreadyLive { version: String },
}

/// A change of the live model made by hand.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveChange {
    pub version: String,
    /// The model that was live before.
    pub previous: Option<String>,
    pub cause: PromotionCause,
    /// False when the version was already live, so nothing changed.
    pub changed: bool,
    /// Tier changes against the replaced model, when one was live.
    pub shadow: Option<ShadowReport>,
}

/// A stored model as `models list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListedModel {
    pub version: String,
    pub trained_at: DateTime<Utc>,
    pub holdout_auc: Option<f64>,
    pub status: ModelStatus,
}

/// Whether a model scores accounts now, did so before, or never did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Live,
    /// Was live once and was replaced.
    Retired,
    /// Never went live.
    Candidate,
}

impl ModelStatus {
    fn label(self) -> &'static str {
        match self {
            ModelStatus::Live => "live",
            ModelStatus::Retired => "retired",
            ModelStatus::Candidate => "candidate",
        }
    }
}

/// Registry entry, training report and promotion history of one version, for `models show`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelDetails {
    pub status: ModelStatus,
    #[serde(flatten)]
    pub entry: ModelEntry,
    /// The training report (metrics and checks) stored with the model.
    pub report: serde_json::Value,
    /// Promotions that made this version live or replaced it, oldest first.
    pub promotions: Vec<Promotion>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model version {version:?} is not in the store{}; run `leadscore models list` to see the stored versions", known_versions(.known))]
    UnknownVersion { version: String, known: Vec<String> },
    #[error("no model is live yet; run `leadscore train` first")]
    NoLiveModel,
    #[error("there is no earlier live model to roll back to from {live}; name the version: `leadscore models rollback VERSION`")]
    NoPrevious { live: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shadow scoring failed, so the live model was not changed: {0}")]
    Shadow(PipelineError),
}

fn known_versions(known: &[String]) -> String {
    const SHOWN: usize = 5;
    if known.is_empty() {
        return " (the store holds no models)".to_string();
    }
    let mut text = format!(" (stored: {}", known[..known.len().min(SHOWN)].join(", "));
    if known.len() > SHOWN {
        let _ = write!(text, " and {} more", known.len() - SHOWN);
    }
    text.push(')');
    text
}

/// Stores the candidate and decides whether it goes live.
///
/// The first model goes live. Later, the candidate replaces the live model only if
/// `holdout_auc >= live_holdout_auc - margin`. A missing AUC on either side never promotes.
/// Neither does a version an admin replaced by hand (promote or rollback), so a retrain cannot
/// undo a rollback. A kept candidate's reason is logged and returned.
pub fn publish(
    store: &Store,
    candidate: &Candidate,
    margin: f64,
    history: Option<&History>,
) -> Result<PublishOutcome, StoreError> {
    let version = candidate.stored.version.clone();
    let Some(live) = store.live_version()? else {
        let note = "first model".to_string();
        store.save_registered_model(
            &candidate.stored,
            &entry_for(candidate, None, &note),
            Some(&Promotion {
                version: version.clone(),
                previous: None,
                at: candidate.stored.trained_at,
                cause: PromotionCause::Trained,
                note,
            }),
        )?;
        tracing::info!(%version, "first model is live");
        return Ok(PublishOutcome::Promoted {
            version,
            previous: None,
            shadow: None,
        });
    };
    if live == version {
        tracing::info!(%version, "retrained model has the live version; nothing changes");
        return Ok(PublishOutcome::AlreadyLive { version });
    }

    let promotions = store.promotions()?;
    let demoted = replaced_by_hand(&promotions);
    let verdict = match demoted.get(&version) {
        Some(event) => Err(format!(
            "{version} was replaced by hand ({} to {} at {}); only `leadscore models promote {version}` makes it live again",
            cause_label(event.cause),
            event.version,
            event.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        None => gate(candidate, &live, margin),
    };
    match verdict {
        Err(reason) => {
            tracing::warn!(%version, live = %live, %reason, "candidate kept; the live model stays");
            store.save_registered_model(
                &candidate.stored,
                &entry_for(
                    candidate,
                    Some(&live),
                    &format!("kept as candidate: {reason}"),
                ),
                None,
            )?;
            Ok(PublishOutcome::KeptAsCandidate {
                version,
                live_version: live,
                reason,
            })
        }
        Ok(note) => {
            let shadow = publish_shadow(store, candidate, &live, history)?;
            store.save_registered_model(
                &candidate.stored,
                &entry_for(candidate, Some(&live), &format!("promoted: {note}")),
                Some(&Promotion {
                    version: version.clone(),
                    previous: Some(live.clone()),
                    at: candidate.stored.trained_at,
                    cause: PromotionCause::Trained,
                    note,
                }),
            )?;
            tracing::info!(%version, previous = %live, "candidate promoted to live");
            Ok(PublishOutcome::Promoted {
                version,
                previous: Some(live),
                shadow,
            })
        }
    }
}

/// Applies the AUC gate: `Ok` with a note when the candidate may replace `live`, `Err` with
/// the reason otherwise.
fn gate(candidate: &Candidate, live: &str, margin: f64) -> Result<String, String> {
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(format!(
            "the promotion margin {margin} is invalid; set [model] promotion_margin to a number of 0 or more"
        ));
    }
    let rows = candidate.holdout_ids.len();
    match (candidate.holdout_auc, candidate.live_holdout_auc) {
        (Some(auc), Some(live_auc)) if auc >= live_auc - margin => Ok(format!(
            "holdout AUC {auc:.4} against {live_auc:.4} for live model {live} on the same {rows} rows (margin {margin})"
        )),
        (Some(auc), Some(live_auc)) => Err(format!(
            "holdout AUC {auc:.4} is more than the margin {margin} below live model {live}'s {live_auc:.4} on the same {rows} rows"
        )),
        (None, _) => Err(format!(
            "the candidate has no holdout AUC (its {rows} holdout rows hold only won or only lost deals), so it cannot be compared with live model {live}; `leadscore models promote` makes it live by hand"
        )),
        (Some(_), None) => Err(format!(
            "live model {live} has no AUC on the candidate's {rows} holdout rows, so the two cannot be compared; `leadscore models promote` makes the candidate live by hand"
        )),
    }
}

fn entry_for(candidate: &Candidate, live: Option<&str>, decision: &str) -> ModelEntry {
    ModelEntry {
        level: candidate.stored.level,
        version: candidate.stored.version.clone(),
        trained_at: candidate.stored.trained_at,
        window_from: candidate.window.0,
        window_to: candidate.window.1,
        config_hash: candidate.config_hash.clone(),
        feature_names: candidate.feature_names.clone(),
        holdout_ids: candidate.holdout_ids.clone(),
        holdout_auc: candidate.holdout_auc,
        live_version_at_publish: live.map(str::to_string),
        live_holdout_auc: candidate.live_holdout_auc,
        decision: decision.to_string(),
    }
}

/// Shadow-scores a published candidate against the live model. A failure other than a store
/// error is logged and leaves the report out, because the AUC gate already passed.
fn publish_shadow(
    store: &Store,
    candidate: &Candidate,
    live: &str,
    history: Option<&History>,
) -> Result<Option<ShadowReport>, StoreError> {
    let Some(config) = &candidate.config else {
        return Ok(None);
    };
    let Some(live_model) = store.model(live)? else {
        tracing::warn!(
            live,
            "the live model is missing from the store; no shadow scores"
        );
        return Ok(None);
    };
    match shadow(
        store,
        config,
        &candidate.stored,
        &live_model,
        candidate.stored.trained_at,
        history,
    ) {
        Ok(report) => Ok(Some(report)),
        Err(PipelineError::Store(err)) => Err(err),
        Err(err) => {
            tracing::warn!(version = %candidate.stored.version, error = %err, "shadow scoring failed");
            Ok(None)
        }
    }
}

/// Scores the open records of the candidate's level with both models, without storing the
/// scores, and counts the tier changes the candidate would cause. Only the probabilities are
/// computed (see [`scoring::tiers`]). `history` is the loaded history when the caller has
/// one, as training has; without it the history is loaded from the store.
pub fn shadow(
    store: &Store,
    config: &Config,
    candidate: &StoredModel,
    live: &StoredModel,
    now: DateTime<Utc>,
    history: Option<&History>,
) -> Result<ShadowReport, PipelineError> {
    let loaded;
    let history = match history {
        Some(history) => history,
        None => {
            loaded = load_history(store, config)?;
            &loaded
        }
    };
    let live_tiers = scoring::tiers(live, history, config, now)?;
    let candidate_tiers = scoring::tiers(candidate, history, config, now)?;
    let object = candidate.level.object();
    Ok(count_tier_changes(
        object,
        &live.version,
        &candidate.version,
        &live_tiers,
        &candidate_tiers,
        &config.tiers.labels[0],
    ))
}

/// Counts tier changes between two scorings of `object`'s records, given as lists of
/// `(record id, tier)`. Records scored by only one model are left out.
fn count_tier_changes(
    object: &str,
    live_version: &str,
    candidate_version: &str,
    live: &[(&str, &str)],
    candidate: &[(&str, &str)],
    top_tier: &str,
) -> ShadowReport {
    let live_tiers: HashMap<&str, &str> = live.iter().copied().collect();
    let mut report = ShadowReport {
        object: object.to_string(),
        live_version: live_version.to_string(),
        candidate_version: candidate_version.to_string(),
        accounts: 0,
        tier_changes: 0,
        new_top_tier: 0,
        left_top_tier: 0,
        moves: BTreeMap::new(),
    };
    for &(id, after) in candidate {
        let Some(&before) = live_tiers.get(id) else {
            continue;
        };
        report.accounts += 1;
        if before == after {
            continue;
        }
        report.tier_changes += 1;
        *report
            .moves
            .entry(format!("{before} -> {after}"))
            .or_default() += 1;
        if after == top_tier {
            report.new_top_tier += 1;
        }
        if before == top_tier {
            report.left_top_tier += 1;
        }
    }
    report
}

/// Returns, per version, the promotion that replaced it when that promotion's cause matches
/// `replaced_by`, for versions that have not been live since.
fn replaced_versions(
    history: &[Promotion],
    replaced_by: impl Fn(PromotionCause) -> bool,
) -> HashMap<String, &Promotion> {
    let mut decided: HashMap<String, Option<&Promotion>> = HashMap::new();
    for event in history.iter().rev() {
        decided.entry(event.version.clone()).or_insert(None);
        if let Some(previous) = &event.previous {
            let replaced = replaced_by(event.cause).then_some(event);
            decided.entry(previous.clone()).or_insert(replaced);
        }
    }
    decided
        .into_iter()
        .filter_map(|(version, event)| event.map(|event| (version, event)))
        .collect()
}

/// Versions an admin replaced by promoting another model or rolling back.
fn replaced_by_hand(history: &[Promotion]) -> HashMap<String, &Promotion> {
    replaced_versions(history, PromotionCause::is_manual)
}

/// Makes a stored version live by hand, after shadow-scoring it against the live model.
pub fn promote(
    store: &Store,
    config: &Config,
    version: &str,
    now: DateTime<Utc>,
) -> Result<LiveChange, RegistryError> {
    change_live(store, config, version, PromotionCause::Promoted, now)
}

/// Makes an earlier version live again: `target`, or else the model that was live before the
/// current one, skipping versions an admin rolled back from.
pub fn rollback(
    store: &Store,
    config: &Config,
    target: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LiveChange, RegistryError> {
    let version = match target {
        Some(version) => version.to_string(),
        None => previous_live(store)?,
    };
    change_live(store, config, &version, PromotionCause::Rollback, now)
}

fn previous_live(store: &Store) -> Result<String, RegistryError> {
    let live = store.live_version()?.ok_or(RegistryError::NoLiveModel)?;
    let history = store.promotions()?;
    // A model an admin rolled back from is no rollback target, but one replaced by a hand
    // promotion is, so a promote followed by a rollback returns to where it started.
    let rolled_back = replaced_versions(&history, |cause| cause == PromotionCause::Rollback);
    for event in history.iter().rev() {
        let Some(previous) = &event.previous else {
            continue;
        };
        if *previous != live
            && !rolled_back.contains_key(previous)
            && store.model(previous)?.is_some()
        {
            return Ok(previous.clone());
        }
    }
    Err(RegistryError::NoPrevious { live })
}

fn change_live(
    store: &Store,
    config: &Config,
    version: &str,
    cause: PromotionCause,
    now: DateTime<Utc>,
) -> Result<LiveChange, RegistryError> {
    let Some(model) = store.model(version)? else {
        return Err(unknown_version(store, version)?);
    };
    let previous = store.live_version()?;
    if previous.as_deref() == Some(version) {
        return Ok(LiveChange {
            version: version.to_string(),
            previous,
            cause,
            changed: false,
            shadow: None,
        });
    }
    let live_model = match &previous {
        Some(live) => store.model(live)?,
        None => None,
    };
    let shadow = match &live_model {
        Some(live_model) => Some(
            shadow(store, config, &model, live_model, now, None).map_err(RegistryError::Shadow)?,
        ),
        None => None,
    };
    let note = match &shadow {
        Some(report) => format!(
            "{} of {} open {}s change tier, {} newly enter the top tier",
            report.tier_changes,
            report.accounts,
            report.object.to_lowercase(),
            report.new_top_tier
        ),
        None => "no live model to compare with".to_string(),
    };
    store.set_live_model(&Promotion {
        version: version.to_string(),
        previous: previous.clone(),
        at: now,
        cause,
        note,
    })?;
    tracing::info!(version, previous = ?previous, cause = cause_label(cause), "live model changed");
    Ok(LiveChange {
        version: version.to_string(),
        previous,
        cause,
        changed: true,
        shadow,
    })
}

fn unknown_version(store: &Store, version: &str) -> Result<RegistryError, StoreError> {
    let known = store
        .model_entries()?
        .into_iter()
        .rev()
        .map(|entry| entry.version)
        .collect();
    Ok(RegistryError::UnknownVersion {
        version: version.to_string(),
        known,
    })
}

/// Lists every stored model, oldest training run first.
pub fn list(store: &Store) -> Result<Vec<ListedModel>, StoreError> {
    let live = store.live_version()?;
    let history = store.promotions()?;
    Ok(store
        .model_entries()?
        .into_iter()
        .map(|entry| ListedModel {
            status: status_of(&entry.version, live.as_deref(), &history),
            version: entry.version,
            trained_at: entry.trained_at,
            holdout_auc: entry.holdout_auc,
        })
        .collect())
}

/// Returns the metadata, report and promotion history of one version.
pub fn show(store: &Store, version: &str) -> Result<ModelDetails, RegistryError> {
    let Some(model) = store.model(version)? else {
        return Err(unknown_version(store, version)?);
    };
    let entry = store
        .model_entry(version)?
        .unwrap_or_else(|| ModelEntry::from_model(&model));
    let live = store.live_version()?;
    let history = store.promotions()?;
    let status = status_of(version, live.as_deref(), &history);
    let promotions = history
        .into_iter()
        .filter(|event| event.version == version || event.previous.as_deref() == Some(version))
        .collect();
    Ok(ModelDetails {
        status,
        entry,
        report: model.report,
        promotions,
    })
}

fn status_of(version: &str, live: Option<&str>, history: &[Promotion]) -> ModelStatus {
    if live == Some(version) {
        ModelStatus::Live
    } else if history.iter().any(|event| event.version == version) {
        ModelStatus::Retired
    } else {
        ModelStatus::Candidate
    }
}

fn cause_label(cause: PromotionCause) -> &'static str {
    match cause {
        PromotionCause::Trained => "trained",
        PromotionCause::Promoted => "promoted by hand",
        PromotionCause::Rollback => "rollback",
    }
}

fn auc_text(auc: Option<f64>) -> String {
    auc.map_or("n/a".to_string(), |auc| format!("{auc:.4}"))
}

/// Renders `models list` as a table.
pub fn render_list(models: &[ListedModel]) -> String {
    if models.is_empty() {
        return "No models in the store; run `leadscore train` first.\n".to_string();
    }
    let width = models
        .iter()
        .map(|model| model.version.len())
        .max()
        .unwrap_or(0)
        .max("VERSION".len());
    let mut text = format!(
        "{:<width$}  {:<20}  {:>6}  {}\n",
        "VERSION", "TRAINED AT", "AUC", "STATUS"
    );
    for model in models {
        let _ = writeln!(
            text,
            "{:<width$}  {:<20}  {:>6}  {}",
            model.version,
            model
                .trained_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            auc_text(model.holdout_auc),
            model.status.label()
        );
    }
    text
}

/// Renders `models show` as plain text.
pub fn render_details(details: &ModelDetails) -> String {
    let entry = &details.entry;
    let date = |at: Option<DateTime<Utc>>| {
        at.map_or("unknown".to_string(), |at| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    let mut text = String::new();
    let _ = writeln!(text, "Model {} ({})", entry.version, details.status.label());
    let _ = writeln!(text, "Trained at:      {}", date(Some(entry.trained_at)));
    let _ = writeln!(
        text,
        "Training window: {} to {}",
        date(entry.window_from),
        date(entry.window_to)
    );
    let _ = writeln!(
        text,
        "Holdout AUC:     {} on {} rows",
        auc_text(entry.holdout_auc),
        entry.holdout_ids.len()
    );
    if let Some(live) = &entry.live_version_at_publish {
        let _ = writeln!(
            text,
            "Live at publish: {live}, AUC {} on the same rows",
            auc_text(entry.live_holdout_auc)
        );
    }
    let _ = writeln!(text, "Decision:        {}", entry.decision);
    let _ = writeln!(text, "Config hash:     {}", entry.config_hash);
    let _ = writeln!(
        text,
        "Features ({}):   {}",
        entry.feature_names.len(),
        entry.feature_names.join(", ")
    );

    if let Some(metrics) = details.report.get("metrics") {
        let _ = writeln!(text, "Holdout metrics: {metrics}");
    }

    if !details.promotions.is_empty() {
        text.push_str("Promotion history:\n");
    }
    for event in &details.promotions {
        let at = event.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let cause = cause_label(event.cause);
        let _ = if event.version == entry.version {
            writeln!(text, "  {at} went live ({cause}): {}", event.note)
        } else {
            writeln!(text, "  {at} replaced by {} ({cause})", event.version)
        };
    }
    text.push_str("Use --json for the full training report.\n");
    text
}

/// Renders the outcome of publishing a trained model, as `train` prints it.
pub fn render_publish(outcome: &PublishOutcome) -> String {
    match outcome {
        PublishOutcome::Promoted {
            version,
            previous: None,
            ..
        } => format!("Model {version} is live (first model).\n"),
        PublishOutcome::Promoted {
            version,
            previous: Some(previous),
            shadow,
        } => {
            let mut text = format!("Model {version} is live, replacing {previous}.");
            if let Some(shadow) = shadow {
                let _ = write!(
                    text,
                    " {} of {} open {}s change tier; {} newly enter the top tier.",
                    shadow.tier_changes,
                    shadow.accounts,
                    shadow.object.to_lowercase(),
                    shadow.new_top_tier
                );
            }
            text.push('\n');
            text
        }
        PublishOutcome::KeptAsCandidate {
            version,
            live_version,
            reason,
        } => format!(
            "Model {version} is kept as a candidate and {live_version} stays live: {reason}.\n"
        ),
        PublishOutcome::AlreadyLive { version } => {
            format!("Model {version} was already live; nothing changed.\n")
        }
    }
}

/// Renders the outcome of `models promote` or `models rollback`.
pub fn render_change(change: &LiveChange) -> String {
    if !change.changed {
        return format!(
            "Model {} is already live; nothing changed.\n",
            change.version
        );
    }
    let mut text = match &change.previous {
        Some(previous) => format!(
            "Model {} is live ({}), replacing {previous}.\n",
            change.version,
            cause_label(change.cause)
        ),
        None => format!(
            "Model {} is live ({}).\n",
            change.version,
            cause_label(change.cause)
        ),
    };
    if let Some(shadow) = &change.shadow {
        let _ = writeln!(
            text,
            "Shadow scoring: {} of {} open {}s change tier; {} newly enter the top tier (alerts that would fire), {} leave it.",
            shadow.tier_changes,
            shadow.accounts,
            shadow.object.to_lowercase(),
            shadow.new_top_tier,
            shadow.left_top_tier
        );
        for (change, count) in &shadow.moves {
            let _ = writeln!(text, "  {change}: {count}");
        }
    }
    text.push_str(
        "The CRM gets the new scores at the next `leadscore score` and `leadscore push`.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_changes_counted() {
        let live = [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")];
        let candidate = [("a", "B"), ("b", "A"), ("c", "A"), ("d", "D"), ("new", "A")];
        let report = count_tier_changes("Contact", "v1", "v2", &live, &candidate, "A");
        assert_eq!(report.object, "Contact");
        assert_eq!(report.accounts, 4);
        assert_eq!(report.tier_changes, 3);
        assert_eq!(report.new_top_tier, 2);
        assert_eq!(report.left_top_tier, 1);
        assert_eq!(report.moves.get("C -> A"), Some(&1));
    }

    fn promotion(version: &str, previous: Option<&str>, cause: PromotionCause) -> Promotion {
        Promotion {
            version: version.into(),
            previous: previous.map(str::to_string),
            at: Utc::now(),
            cause,
            note: String::new(),
        }
    }

    #[test]
    fn hand_replacement_sticks_until_live_again() {
        let mut history = vec![
            promotion("v1", None, PromotionCause::Trained),
            promotion("v2", Some("v1"), PromotionCause::Trained),
            promotion("v1", Some("v2"), PromotionCause::Rollback),
        ];
        let demoted = replaced_by_hand(&history);
        assert!(demoted.contains_key("v2"));
        assert!(!demoted.contains_key("v1"));

        history.push(promotion("v2", Some("v1"), PromotionCause::Promoted));
        let demoted = replaced_by_hand(&history);
        assert!(!demoted.contains_key("v2"), "v2 went live again by hand");
        assert!(demoted.contains_key("v1"));
    }
}
