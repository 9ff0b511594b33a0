//! Alert state kept in the store: each record's last seen score and which rules have fired,
//! every alert with its delivery status, and the alerts each user received per UTC day.
//!
//! An alert is written as pending, together with its record's new state and the recipient's
//! daily count, in one flushed transaction before its task is created, and marked sent with the
//! task id afterwards. A pending alert found by a later pass belongs to a pass that stopped in
//! between, so that pass looks the task up in the CRM before it creates it again.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use leadscore_connector::NewTask;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::store_db::{table, Commit};
use super::{decode, encode, Store, StoreError};
use crate::level::Level;

/// Per-level tree of [`AlertState`] by record id.
const STATE_TREE: &str = "alert_state";
/// Tree of [`AlertEntry`] by alert key, for all levels.
const ALERTS_TREE: &str = "alerts";
/// Tree of alert counts by `YYYY-MM-DD/user id`.
const DAILY_TREE: &str = "alert_daily";
/// Tree of the alerts whose task was created but whose webhook post has not succeeded, by
/// `<level>/<alert key>`, with empty values.
const OUTBOX_TREE: &str = "alert_webhook_outbox";

/// Returns the key of an alert in [`OUTBOX_TREE`].
fn outbox_key(level: Level, key: &str) -> String {
    format!("{}/{key}", level.name())
}

/// The alert state of one scored record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub object: String,
    /// The score and tier of the last pass.
    pub score: f64,
    pub tier: String,
    /// Rules that fired (`threshold`, `tier A`) and that the record has not yet left by
    /// falling below the rule's threshold minus the band.
    pub latched: Vec<String>,
    /// Alerts created for this record so far; part of each new alert's key.
    pub alerts_created: u32,
    /// A crossing held back by the recipient's daily cap, still waiting to be sent.
    #[serde(default)]
    pub held: Option<HeldCrossing>,
    pub updated_at: DateTime<Utc>,
    /// The rules in force at the last pass. A rule missing here is new for this record (the
    /// admin changed the threshold or the tiers), so it is latched quietly when the last
    /// score was already above it, instead of alerting on a crossing that did not happen.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A crossing that the daily cap held back: the score and tier before it and when it happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldCrossing {
    pub from_score: f64,
    pub from_tier: String,
    pub since: DateTime<Utc>,
}

/// Delivery status of one alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AlertStatus {
    /// Recorded before its task was created; the task may or may not exist.
    Pending,
    /// The CRM confirmed the task.
    Sent { task_id: String },
    /// The CRM rejected the task; the record can alert again on a later pass.
    Failed { code: String, message: String },
}

/// One alert: the crossing, the task that delivers it and its status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// A word of letters and digits that is unique per alert and is written into the task's
    /// body, so that the task can be found again.
    pub key: String,
    pub level: Level,
    /// The rules that fired with their thresholds, as `name=threshold` (`threshold=80`,
    /// `tier A=70`).
    pub rules: Vec<String>,
    /// The score and tier before the crossing; `None` for a record first seen at or above.
    pub from_score: Option<f64>,
    pub to_score: f64,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub reasons: Vec<String>,
    /// The record's owner as scored, which may differ from the task's assignee.
    pub owner_id: Option<String>,
    /// The reason the task went to the fallback user instead of the owner, if it did.
    pub fallback_reason: Option<String>,
    pub task: NewTask,
    #[serde(flatten)]
    pub status: AlertStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Changes the alert pass lands in one transaction.
#[derive(Debug, Default)]
pub struct AlertCommit {
    /// Record states to write, by record id.
    pub states: Vec<(String, AlertState)>,
    /// Alerts to insert or replace.
    pub alerts: Vec<AlertEntry>,
    /// Changes of the daily counts: (UTC day, user id, change).
    pub counts: Vec<(NaiveDate, String, i64)>,
    /// Whether an alert that becomes sent in this commit joins the webhook outbox, where it
    /// waits until a post of it succeeds ([`Store::webhook_outbox`]).
    pub queue_webhook: bool,
}

fn daily_key(day: NaiveDate, user: &str) -> String {
    format!("{}/{user}", day.format("%Y-%m-%d"))
}

impl Store {
    /// Returns the alert state of every record of this level, by record id.
    pub fn alert_states(&self) -> Result<BTreeMap<String, AlertState>, StoreError> {
        let name = self.level_key(STATE_TREE);
        let mut states = BTreeMap::new();
        self.db.for_each(&name, |key, bytes| {
            let state: AlertState = decode(&name, key, bytes)?;
            states.insert(String::from_utf8_lossy(key).into_owned(), state);
            Ok(())
        })?;
        Ok(states)
    }

    /// Returns true when this level has alert state, so its first pass has happened.
    pub fn has_alert_state(&self) -> Result<bool, StoreError> {
        Ok(self.db.len(&self.level_key(STATE_TREE))? > 0)
    }

    /// Returns every alert of every level, oldest first.
    pub fn alerts(&self) -> Result<Vec<AlertEntry>, StoreError> {
        let mut alerts = Vec::new();
        self.db.for_each(ALERTS_TREE, |key, bytes| {
            alerts.push(decode::<AlertEntry>(ALERTS_TREE, key, bytes)?);
            Ok(())
        })?;
        alerts.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.key.cmp(&b.key)));
        Ok(alerts)
    }

    /// Returns the pending alerts of this level, oldest first.
    pub fn pending_alerts(&self) -> Result<Vec<AlertEntry>, StoreError> {
        let level = self.level();
        Ok(self
            .alerts()?
            .into_iter()
            .filter(|alert| alert.level == level && alert.status == AlertStatus::Pending)
            .collect())
    }

    /// Returns how many alerts each user received on `day` (UTC), by user id.
    pub fn alert_counts(&self, day: NaiveDate) -> Result<BTreeMap<String, u32>, StoreError> {
        let prefix = daily_key(day, "");
        let mut counts = BTreeMap::new();
        self.db
            .for_each_prefix(DAILY_TREE, prefix.as_bytes(), |key, bytes| {
                let count: u32 = decode(DAILY_TREE, key, bytes)?;
                let key = String::from_utf8_lossy(key);
                counts.insert(key[prefix.len()..].to_string(), count);
                Ok(())
            })?;
        Ok(counts)
    }

    /// Writes states, alerts and count changes in one durable transaction.
    pub fn commit_alerts(&self, commit: &AlertCommit) -> Result<(), StoreError> {
        let state_name = self.level_key(STATE_TREE);
        self.db.write(Commit::Durable, |transaction| {
            let mut daily = transaction.open_table(table(DAILY_TREE))?;
            let mut count_rows: BTreeMap<String, i64> = BTreeMap::new();
            for (day, user, change) in &commit.counts {
                let key = daily_key(*day, user);
                let current = match count_rows.get(&key) {
                    Some(count) => *count,
                    None => match daily.get(key.as_bytes())? {
                        Some(bytes) => {
                            i64::from(decode::<u32>(DAILY_TREE, key.as_bytes(), bytes.value())?)
                        }
                        None => 0,
                    },
                };
                count_rows.insert(key, current + change);
            }
            for (key, count) in count_rows {
                daily.insert(key.as_bytes(), encode(&(count.max(0) as u32)).as_slice())?;
            }
            let mut states = transaction.open_table(table(&state_name))?;
            for (id, state) in &commit.states {
                states.insert(id.as_bytes(), encode(state).as_slice())?;
            }
            let mut alerts = transaction.open_table(table(ALERTS_TREE))?;
            let mut outbox = transaction.open_table(table(OUTBOX_TREE))?;
            for alert in &commit.alerts {
                let sent = matches!(alert.status, AlertStatus::Sent { .. });
                if commit.queue_webhook && sent {
                    // Only the commit that marks an alert sent queues it, so a later write of
                    // the same alert never posts it twice.
                    let was_sent = match alerts.get(alert.key.as_bytes())? {
                        Some(bytes) => matches!(
                            decode::<AlertEntry>(ALERTS_TREE, alert.key.as_bytes(), bytes.value())?
                                .status,
                            AlertStatus::Sent { .. }
                        ),
                        None => false,
                    };
                    if !was_sent {
                        outbox.insert(outbox_key(alert.level, &alert.key).as_bytes(), &[][..])?;
                    }
                }
                alerts.insert(alert.key.as_bytes(), encode(alert).as_slice())?;
            }
            Ok(())
        })
    }

    /// Returns this level's alerts that wait for a successful webhook post, in key order.
    /// An outbox key whose alert is gone is skipped.
    pub fn webhook_outbox(&self) -> Result<Vec<AlertEntry>, StoreError> {
        let prefix = outbox_key(self.level(), "");
        let mut keys = Vec::new();
        self.db
            .for_each_prefix(OUTBOX_TREE, prefix.as_bytes(), |key, _| {
                keys.push(key[prefix.len()..].to_vec());
                Ok(())
            })?;
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut queued = Vec::with_capacity(keys.len());
        for (key, bytes) in keys.iter().zip(self.db.get_many(ALERTS_TREE, &keys)?) {
            if let Some(bytes) = bytes {
                queued.push(decode::<AlertEntry>(ALERTS_TREE, key, &bytes)?);
            }
        }
        Ok(queued)
    }

    /// Takes this level's alerts with keys `keys` out of the webhook outbox, in one durable
    /// transaction, once a post of them succeeded.
    pub fn clear_webhook_outbox(&self, keys: &[&str]) -> Result<(), StoreError> {
        let level = self.level();
        self.db.write(Commit::Durable, |transaction| {
            let mut outbox = transaction.open_table(table(OUTBOX_TREE))?;
            for key in keys {
                outbox.remove(outbox_key(level, key).as_bytes())?;
            }
            Ok(())
        })
    }
}
