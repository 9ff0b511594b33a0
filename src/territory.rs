//! Per-rep territory priority lists, written as CSV and HTML.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::store::Store;

/// What one run of the lists wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListsReport {
    /// Reps with a list.
    pub reps: usize,
    /// The folder holding the lists and their index.
    pub folder: PathBuf,
}

/// Writes every rep's priority list from the account level's scores. `store` is the account
/// level's store.
pub fn write_lists(
    _store: &Store,
    _config: &Config,
    _now: DateTime<Utc>,
) -> Result<ListsReport, PipelineError> {
    // TODO: replaced by the territory lists.
    Err(PipelineError::Config(
        "territory lists are not built yet".to_string(),
    ))
}
