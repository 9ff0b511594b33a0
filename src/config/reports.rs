//! `[territory]` and `[outcomes]`: per-rep priority lists and the predicted-versus-actual report.

use super::toml_walk::{Issues, Section};

/// The settings read from these tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportsConfig {}

/// Reads the tables.
pub(super) fn read_reports(_top: &mut Section<'_, '_>, _issues: &mut Issues<'_>) -> ReportsConfig {
    ReportsConfig {}
}
