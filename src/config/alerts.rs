//! `[alerts]` and `[webhook]`: threshold alerts to owning reps as CRM tasks, and the signed webhook.

use super::toml_walk::{Issues, Section};

/// The settings read from these tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertsConfig {}

/// Reads the tables.
pub(super) fn read_alerts(_top: &mut Section<'_, '_>, _issues: &mut Issues<'_>) -> AlertsConfig {
    AlertsConfig {}
}
