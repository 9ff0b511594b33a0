//! `[outcomes]`: the predicted-versus-actual report, its limits and what a breach triggers.

use super::toml_walk::{Issues, Section};

/// The settings read from these tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportsConfig {}

/// Reads the tables.
pub(super) fn read_reports(_top: &mut Section<'_, '_>, _issues: &mut Issues<'_>) -> ReportsConfig {
    ReportsConfig {}
}
