//! Threshold alerts: a CRM task for the owning rep (and an optional signed webhook) when a
//! record's score crosses a configured threshold or its tier rises.

use chrono::{DateTime, Utc};
use leadscore_connector::Connector;
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::store::Store;

/// What one alert pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AlertReport {
    /// Alerts delivered as CRM tasks.
    pub sent: usize,
    /// Of those, alerts sent to the fallback user because the owner was inactive or missing.
    pub to_fallback: usize,
    /// Crossings not alerted: the per-rep daily cap, or the quiet first run.
    pub held_back: usize,
    /// Alerts that could not be delivered, with the reason.
    pub failed: Vec<String>,
}

/// Sends the alerts of one level after it was scored. `store` is the level's store
/// (`Store::at_level`).
pub async fn run_alerts<C: Connector>(
    _connector: &C,
    _store: &Store,
    _config: &Config,
    _now: DateTime<Utc>,
) -> Result<AlertReport, PipelineError> {
    // TODO: replaced by the alert pass.
    Ok(AlertReport::default())
}
