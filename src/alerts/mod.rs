//! Threshold alerts: a CRM task for the owning rep (and an optional signed webhook) when a
//! record's score crosses a configured threshold or its tier rises.
//!
//! One pass runs per level, after scoring and push. It first looks up the pending alerts of
//! an interrupted pass in the CRM. Then it detects each scored record's crossings
//! ([`detect`]) and chooses the recipient: the owner, or `fallback_owner` when the owner is
//! inactive, not a user or missing. The per-user daily cap holds back what is over it. The
//! new alerts are stored as pending with the records' new state, their tasks are created, and
//! each alert is marked sent or failed. With `[webhook]`, the commit that marks an alert sent
//! also queues it in the store's webhook outbox. The pass ends by posting the outbox and taking
//! out what the receiver accepted. An alert whose post failed, or was cut off by a crash, goes
//! out on a later pass.

pub mod detect;
pub mod message;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use leadscore_connector::{Connector, NewTask, RecordError, TaskLookup, TaskPriority};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::config::Config;
use crate::level::Level;
use crate::pipeline::PipelineError;
use crate::store::{
    AlertCommit, AlertEntry, AlertState, AlertStatus, HeldCrossing, ScoreRow, Store,
};
use crate::webhook::{self, Webhook};

pub use message::{is_own_task, TASK_SUBJECT_PREFIX};

/// The outcome of one alert pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AlertReport {
    /// Alerts delivered as CRM tasks, resent pending alerts included.
    pub sent: usize,
    /// Of those, alerts sent to the fallback user because the owner was inactive or missing.
    pub to_fallback: usize,
    /// Crossings held back by the per-user daily cap; each is sent on a later day if the
    /// record is still at or above the threshold.
    pub held_back: usize,
    /// Records whose state a quiet first pass recorded without alerting.
    pub quiet_first_run: usize,
    /// Pending alerts of an interrupted pass whose task was found in the CRM.
    pub reconciled: usize,
    /// One line per alert sent to the fallback user: the record, the owner and why.
    pub fallbacks: Vec<String>,
    /// One line per crossing held back: the record and the user whose cap was reached.
    pub held: Vec<String>,
    /// Alerts that could not be delivered, with the reason.
    pub failed: Vec<String>,
    /// The webhook's outcome, when `[webhook]` is set and alerts were queued for it.
    pub webhook: Option<String>,
}

/// The user who receives an alert, with the reason when that is the fallback user.
struct Recipient {
    user: String,
    fallback_reason: Option<String>,
}

/// Sends the alerts of one level after it was scored. `store` is the level's store
/// (`Store::at_level`). Per-record failures are reported in the result; only store failures
/// are errors.
pub async fn run_alerts<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<AlertReport, PipelineError> {
    let settings = &config.alerts;
    let level = store.level();
    let mut report = AlertReport::default();
    if !settings.enabled || !settings.levels.contains(&level) {
        return Ok(report);
    }
    let rules = detect::rules(config);

    // Sent alerts wait in the store's outbox until the webhook accepts them.
    let queue_webhook = settings.webhook.is_some();
    let mut states = store.alert_states()?;
    let pending = store.pending_alerts()?;
    let mut to_send: Vec<AlertEntry> = Vec::new();
    if !pending.is_empty() {
        match reconcile(connector, store, pending, queue_webhook, now, &mut report).await? {
            Some(unsent) => to_send = unsent,
            None => return Ok(report),
        }
    }

    let scores = store.scores()?;
    let rule_names: Vec<String> = rules.iter().map(|rule| rule.name.clone()).collect();
    if states.is_empty() && settings.quiet_first_run {
        let mut commit = AlertCommit::default();
        for row in &scores {
            let state = AlertState {
                object: row.object.clone(),
                score: row.score,
                tier: row.tier.clone(),
                latched: detect::at_or_above(&rules, row.score),
                alerts_created: 0,
                held: None,
                updated_at: now,
                rules: rule_names.clone(),
            };
            commit.states.push((row.id.clone(), state));
        }
        store.commit_alerts(&commit)?;
        report.quiet_first_run = scores.len();
        info!(
            level = %level,
            records = scores.len(),
            "first alert pass for this level: recorded every record's score and sent no alerts"
        );
        return Ok(report);
    }

    let users = active_users(store)?;
    let today = now.date_naive();
    let mut counts = store.alert_counts(today)?;
    let mut commit = AlertCommit::default();
    for row in &scores {
        let previous = states.get(&row.id).cloned();
        let mut state = previous.clone().unwrap_or_else(|| AlertState {
            object: row.object.clone(),
            score: row.score,
            tier: row.tier.clone(),
            latched: Vec::new(),
            alerts_created: 0,
            held: None,
            updated_at: now,
            rules: rule_names.clone(),
        });
        if let Some(previous) = &previous {
            // A rule this record has not seen before (the admin changed the threshold or the
            // tiers) starts latched when the last pass's score was already above it: only a
            // rise from below is a crossing.
            for name in detect::at_or_above(&rules, previous.score) {
                if !state.rules.contains(&name) && !state.latched.contains(&name) {
                    state.latched.push(name);
                }
            }
        }
        state.rules = rule_names.clone();
        let fired = detect::evaluate(&rules, settings.band, row.score, &mut state.latched);
        if fired.is_empty() {
            state.held = None;
        } else {
            let from = match (&state.held, &previous) {
                (Some(held), _) => Some((held.from_score, held.from_tier.clone())),
                (None, Some(previous)) => Some((previous.score, previous.tier.clone())),
                (None, None) => None,
            };
            match choose_recipient(row, &users, settings.fallback_owner.as_deref()) {
                Err(reason) => {
                    warn!(level = %level, object = %row.object, id = %row.id, %reason, "alert not sent");
                    report.failed.push(format!(
                        "{} {} ({}): {reason}",
                        row.object, row.id, row.name
                    ));
                }
                Ok(recipient) => {
                    let count = counts.entry(recipient.user.clone()).or_default();
                    if *count >= settings.per_rep_daily_cap {
                        if state.held.is_none() {
                            state.held = from.as_ref().map(|(score, tier)| HeldCrossing {
                                from_score: *score,
                                from_tier: tier.clone(),
                                since: now,
                            });
                        }
                        report.held_back += 1;
                        report.held.push(format!(
                            "{} {} ({}): user {} already received {} alerts on {today}",
                            row.object, row.id, row.name, recipient.user, count
                        ));
                    } else {
                        *count += 1;
                        state.alerts_created += 1;
                        state.latched.extend(fired.iter().cloned());
                        state.held = None;
                        let alert =
                            new_alert(level, row, &rules, &fired, from, &recipient, &state, now);
                        commit.counts.push((today, recipient.user.clone(), 1));
                        to_send.push(alert.clone());
                        commit.alerts.push(alert);
                    }
                }
            }
        }
        state.score = row.score;
        state.tier = row.tier.clone();
        state.updated_at = now;
        commit.states.push((row.id.clone(), state.clone()));
        states.insert(row.id.clone(), state);
    }
    store.commit_alerts(&commit)?;
    if !report.held.is_empty() {
        info!(level = %level, held = report.held_back, "alerts held back by the per-user daily cap");
    }

    deliver(
        connector,
        store,
        &mut states,
        to_send,
        queue_webhook,
        now,
        &mut report,
    )
    .await?;
    if let Some(webhook_config) = &settings.webhook {
        let queued = store.webhook_outbox()?;
        if !queued.is_empty() {
            report.webhook = Some(post_webhook(store, webhook_config, level, &queued, now).await?);
        }
    }
    if report.sent > 0 || !report.failed.is_empty() {
        info!(
            level = %level,
            sent = report.sent,
            to_fallback = report.to_fallback,
            held_back = report.held_back,
            failed = report.failed.len(),
            "alert pass finished"
        );
    }
    Ok(report)
}

/// Looks the tasks of pending alerts up in the CRM. Found ones are marked sent; the rest are
/// returned to be created. `None` when the lookup failed: then nothing may be resent, so the
/// pass stops and the alerts stay pending.
async fn reconcile<C: Connector>(
    connector: &C,
    store: &Store,
    pending: Vec<AlertEntry>,
    queue_webhook: bool,
    now: DateTime<Utc>,
    report: &mut AlertReport,
) -> Result<Option<Vec<AlertEntry>>, PipelineError> {
    let lookups: Vec<TaskLookup> = pending
        .iter()
        .map(|alert| TaskLookup {
            object: alert.task.object.clone(),
            record_id: alert.task.record_id.clone(),
            marker: alert.key.clone(),
            // A day of margin for a CRM clock behind the local one.
            created_after: alert.created_at - Duration::days(1),
        })
        .collect();
    let found = match connector.find_tasks(&lookups).await {
        Ok(found) if found.len() == pending.len() => found,
        Ok(found) => {
            report.failed.push(format!(
                "looking up {} pending alerts returned {} results; they stay pending until a later pass",
                pending.len(),
                found.len()
            ));
            return Ok(None);
        }
        Err(error) => {
            warn!(pending = pending.len(), %error, "pending alerts could not be looked up; they stay pending");
            report.failed.push(format!(
                "looking up {} pending alerts failed: {error}; they stay pending until a later pass",
                pending.len()
            ));
            return Ok(None);
        }
    };
    let mut commit = AlertCommit {
        queue_webhook,
        ..AlertCommit::default()
    };
    let mut unsent = Vec::new();
    for (mut alert, task_id) in pending.into_iter().zip(found) {
        match task_id {
            Some(task_id) => {
                info!(key = %alert.key, %task_id, "pending alert's task found in the CRM; marked sent");
                alert.status = AlertStatus::Sent { task_id };
                alert.updated_at = now;
                report.reconciled += 1;
                commit.alerts.push(alert);
            }
            None => unsent.push(alert),
        }
    }
    store.commit_alerts(&commit)?;
    Ok(Some(unsent))
}

/// Creates the tasks of `alerts` and records each one as sent or failed. A failed alert's
/// rules are unlatched and its daily count returned, so the record can alert again later.
/// With `queue_webhook` the alerts sent join the webhook outbox in the same commit.
async fn deliver<C: Connector>(
    connector: &C,
    store: &Store,
    states: &mut BTreeMap<String, AlertState>,
    alerts: Vec<AlertEntry>,
    queue_webhook: bool,
    now: DateTime<Utc>,
    report: &mut AlertReport,
) -> Result<(), PipelineError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let tasks: Vec<NewTask> = alerts.iter().map(|alert| alert.task.clone()).collect();
    let results = match connector.create_tasks(&tasks).await {
        Ok(results) if results.len() == alerts.len() => results,
        Ok(results) => {
            report.failed.push(format!(
                "creating {} alert tasks returned {} results; the alerts stay pending and the next pass looks them up",
                alerts.len(),
                results.len()
            ));
            return Ok(());
        }
        Err(error) => {
            warn!(alerts = alerts.len(), %error, "creating alert tasks failed; the alerts stay pending");
            report.failed.push(format!(
                "creating {} alert tasks failed: {error}; the alerts stay pending and the next pass looks them up before sending again",
                alerts.len()
            ));
            return Ok(());
        }
    };
    let mut commit = AlertCommit {
        queue_webhook,
        ..AlertCommit::default()
    };
    for (mut alert, result) in alerts.into_iter().zip(results) {
        alert.updated_at = now;
        match result {
            Ok(task_id) => {
                if let Some(reason) = &alert.fallback_reason {
                    report.to_fallback += 1;
                    report.fallbacks.push(format!(
                        "{} {}: {reason}; task assigned to {}",
                        alert.task.object, alert.task.record_id, alert.task.owner_id
                    ));
                }
                alert.status = AlertStatus::Sent { task_id };
                report.sent += 1;
            }
            Err(error) => {
                report.failed.push(failure_line(&alert, &error));
                warn!(key = %alert.key, object = %alert.task.object, id = %alert.task.record_id, code = %error.code, message = %error.message, "alert task rejected");
                alert.status = AlertStatus::Failed {
                    code: error.code.clone(),
                    message: error.message.clone(),
                };
                if let Some(state) = states.get_mut(&alert.task.record_id) {
                    let fired = fired_rule_names(&alert);
                    state.latched.retain(|name| !fired.contains(name));
                    commit
                        .states
                        .push((alert.task.record_id.clone(), state.clone()));
                }
                let day: NaiveDate = alert.created_at.date_naive();
                commit.counts.push((day, alert.task.owner_id.clone(), -1));
            }
        }
        commit.alerts.push(alert);
    }
    store.commit_alerts(&commit)?;
    Ok(())
}

fn failure_line(alert: &AlertEntry, error: &RecordError) -> String {
    format!(
        "{} {}: the CRM rejected the task for user {}: {error}; the record alerts again on a later pass while it stays at or above the threshold",
        alert.task.object, alert.task.record_id, alert.task.owner_id
    )
}

/// Returns the names of the rules an alert fired, as the latch list stores them.
fn fired_rule_names(alert: &AlertEntry) -> Vec<String> {
    alert
        .rules
        .iter()
        .filter_map(|rule| rule.split_once('=').map(|(name, _)| name.to_string()))
        .collect()
}

/// Returns each stored user's active flag by id.
fn active_users(store: &Store) -> Result<HashMap<String, bool>, PipelineError> {
    Ok(store
        .records(crate::features::fields::USER)?
        .into_iter()
        .filter(|user| !user.deleted)
        .map(|user| {
            let active = user.get("IsActive").as_bool().unwrap_or(true);
            (user.id, active)
        })
        .collect())
}

/// Chooses who receives a record's alert: its owner when that is an active user, otherwise
/// the fallback user. `Err` names the problem when there is no fallback.
fn choose_recipient(
    row: &ScoreRow,
    users: &HashMap<String, bool>,
    fallback: Option<&str>,
) -> Result<Recipient, String> {
    let problem = match row.owner_id.as_deref() {
        None | Some("") => "the record has no owner".to_string(),
        Some(owner) => match users.get(owner) {
            Some(true) => {
                return Ok(Recipient {
                    user: owner.to_string(),
                    fallback_reason: None,
                })
            }
            Some(false) => format!("owner {owner} is inactive"),
            None => format!("owner {owner} is not a known active user"),
        },
    };
    match fallback {
        Some(user) => Ok(Recipient {
            user: user.to_string(),
            fallback_reason: Some(problem),
        }),
        None => Err(format!(
            "{problem}; set [alerts] fallback_owner to the id of a user who receives such alerts"
        )),
    }
}

/// Builds a pending alert for a crossing.
#[allow(clippy::too_many_arguments)]
fn new_alert(
    level: Level,
    row: &ScoreRow,
    rules: &[detect::Rule],
    fired: &[String],
    from: Option<(f64, String)>,
    recipient: &Recipient,
    state: &AlertState,
    now: DateTime<Utc>,
) -> AlertEntry {
    let key = message::alert_key(level, &row.object, &row.id, state.alerts_created);
    let fired_rules: Vec<&detect::Rule> = rules
        .iter()
        .filter(|rule| fired.contains(&rule.name))
        .collect();
    let change = message::Change {
        name: &row.name,
        object: &row.object,
        id: &row.id,
        from_score: from.as_ref().map(|(score, _)| *score),
        to_score: row.score,
        from_tier: from.as_ref().map(|(_, tier)| tier.as_str()),
        to_tier: &row.tier,
        rules: fired_rules.iter().map(|rule| rule.label.clone()).collect(),
        reasons: &row.reasons,
        model_version: &row.model_version,
        fallback_reason: recipient.fallback_reason.as_deref(),
    };
    AlertEntry {
        key: key.clone(),
        level,
        rules: fired_rules
            .iter()
            .map(|rule| format!("{}={}", rule.name, rule.threshold))
            .collect(),
        from_score: change.from_score,
        to_score: row.score,
        from_tier: change.from_tier.map(str::to_string),
        to_tier: row.tier.clone(),
        reasons: row.reasons.clone(),
        owner_id: row.owner_id.clone(),
        fallback_reason: recipient.fallback_reason.clone(),
        task: NewTask {
            object: row.object.clone(),
            record_id: row.id.clone(),
            owner_id: recipient.user.clone(),
            subject: message::subject(&change),
            body: message::body(&change, &key),
            due: now.date_naive(),
            priority: TaskPriority::High,
        },
        status: AlertStatus::Pending,
        created_at: now,
        updated_at: now,
    }
}

/// The maximum number of alerts per webhook event. A longer outbox is posted in several events.
const WEBHOOK_ALERTS_PER_EVENT: usize = 500;

/// Posts the alerts of the webhook outbox (`queued`, sent as tasks in this pass or an earlier
/// one) and takes each event's alerts out of the outbox once the receiver accepted it. Returns
/// a line for the report.
///
/// Delivery is at least once: a crash between a post and the outbox update posts the same
/// alerts again on the next pass, so receivers deduplicate by each alert's `key`. A failed
/// post leaves its alerts and the later ones queued for the next pass.
async fn post_webhook(
    store: &Store,
    config: &crate::config::alerts::WebhookConfig,
    level: Level,
    queued: &[AlertEntry],
    now: DateTime<Utc>,
) -> Result<String, PipelineError> {
    let webhook = match Webhook::from_config(config) {
        Ok(webhook) => webhook,
        Err(error) => {
            warn!(%error, queued = queued.len(), "alert webhook not sent; the alerts stay queued");
            return Ok(format!(
                "not sent: {error}; {} alerts stay queued for the next pass",
                queued.len()
            ));
        }
    };
    let mut posted = 0;
    let mut events = 0;
    let mut last_status = 0;
    let mut attempts = 0;
    for chunk in queued.chunks(WEBHOOK_ALERTS_PER_EVENT) {
        let event = webhook_event(level, chunk, now);
        match webhook::send(&webhook, &event).await {
            Ok(delivery) => {
                let keys: Vec<&str> = chunk.iter().map(|alert| alert.key.as_str()).collect();
                store.clear_webhook_outbox(&keys)?;
                posted += chunk.len();
                events += 1;
                last_status = delivery.status;
                attempts += delivery.attempts;
            }
            Err(error) => {
                let left = queued.len() - posted;
                warn!(%error, posted, queued = left, "alert webhook failed; the alerts stay queued");
                return Ok(format!(
                    "failed: {error}; {left} alerts stay queued and are posted on the next pass ({posted} posted)"
                ));
            }
        }
    }
    Ok(format!(
        "delivered {posted} alerts in {events} events to {} (HTTP {last_status}, {attempts} attempts)",
        leadscore_connector::http::redact_url(webhook.url()),
    ))
}

/// Builds the webhook event of `alerts`.
fn webhook_event(level: Level, alerts: &[AlertEntry], now: DateTime<Utc>) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|alert| {
            json!({
                "key": alert.key,
                "object": alert.task.object,
                "record_id": alert.task.record_id,
                "owner_id": alert.owner_id,
                "assigned_to": alert.task.owner_id,
                "fallback_reason": alert.fallback_reason,
                "task_id": match &alert.status {
                    AlertStatus::Sent { task_id } => Some(task_id.clone()),
                    _ => None,
                },
                "from_score": alert.from_score,
                "to_score": alert.to_score,
                "from_tier": alert.from_tier,
                "to_tier": alert.to_tier,
                "subject": alert.task.subject,
                "reasons": alert.reasons,
            })
        })
        .collect();
    json!({
        "event": "score_alerts",
        "level": level.name(),
        "sent_at": now.to_rfc3339(),
        "alerts": alerts,
    })
}
