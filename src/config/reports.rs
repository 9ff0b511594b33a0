//! `[outcomes]`: the predicted-versus-actual report, its limits and what a breach triggers.

use std::path::{Path, PathBuf};

use super::toml_walk::{Issues, Section};

/// Default report folder, resolved against the config file's directory.
pub const DEFAULT_FOLDER: &str = "reports";
/// Default lowest acceptable ROC AUC of the scores on deals closed since they were scored.
pub const DEFAULT_MIN_AUC: f64 = 0.65;
/// Default highest acceptable expected calibration error over probability deciles.
pub const DEFAULT_MAX_CALIBRATION_ERROR: f64 = 0.10;
/// Default highest acceptable population stability index of one feature.
pub const DEFAULT_MAX_PSI: f64 = 0.25;

/// The `[outcomes]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportsConfig {
    /// Folder the report files are written into, resolved against the config file's directory.
    pub folder: PathBuf,
    /// A quarter or the whole period with an observed AUC below this is a breach.
    pub min_auc: f64,
    /// An expected calibration error over probability deciles above this is a breach.
    pub max_calibration_error: f64,
    /// A feature whose population stability index is above this is a breach.
    pub max_psi: f64,
    /// Whether a breach sets `retrain_requested` on the report.
    pub retrain_on_breach: bool,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            folder: PathBuf::from(DEFAULT_FOLDER),
            min_auc: DEFAULT_MIN_AUC,
            max_calibration_error: DEFAULT_MAX_CALIBRATION_ERROR,
            max_psi: DEFAULT_MAX_PSI,
            retrain_on_breach: false,
        }
    }
}

/// Reads `[outcomes]`; `base` is the config file's directory.
pub(super) fn read_reports(
    top: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    base: &Path,
) -> ReportsConfig {
    let mut section = top.table(issues, "outcomes");
    let defaults = ReportsConfig::default();
    let folder = section
        .path(issues, "folder", r#"folder = "reports""#)
        .map_or(defaults.folder, |value| PathBuf::from(value.into_inner()));
    let min_auc = section
        .float(issues, "min_auc", 0.0, 1.0, "min_auc = 0.65")
        .unwrap_or(defaults.min_auc);
    let max_calibration_error = section
        .float(
            issues,
            "max_calibration_error",
            0.0,
            1.0,
            "max_calibration_error = 0.10",
        )
        .unwrap_or(defaults.max_calibration_error);
    let max_psi = section
        .float(issues, "max_psi", 0.0, 100.0, "max_psi = 0.25")
        .unwrap_or(defaults.max_psi);
    let retrain_on_breach = section
        .boolean(issues, "retrain_on_breach", "retrain_on_breach = true")
        .unwrap_or(defaults.retrain_on_breach);
    section.finish(issues);
    ReportsConfig {
        folder: base.join(folder),
        min_auc,
        max_calibration_error,
        max_psi,
        retrain_on_breach,
    }
}
