//! `leadscore report outcomes`: predicted against actual for deals closed since they were scored.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::store::Store;

/// What one outcomes report found and wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutcomesReport {
    /// The HTML, CSV and JSON files written.
    pub files: Vec<PathBuf>,
    /// Limits the observed figures fell past, in words.
    pub breaches: Vec<String>,
    /// Whether the configuration asks for a retrain on a breach and there was one.
    pub retrain_requested: bool,
}

/// Writes the predicted-versus-actual report of one level into `[outcomes] folder`. `store` is
/// the level's store.
pub fn write_report(
    _store: &Store,
    _config: &Config,
    _now: DateTime<Utc>,
) -> Result<OutcomesReport, PipelineError> {
    // TODO: replaced by the outcomes report.
    Err(PipelineError::Config(
        "the outcomes report is not built yet".to_string(),
    ))
}
