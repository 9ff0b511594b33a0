//! `[daemon]` and `[schedule]`: the daemon's listen address, time zone and job schedules.

use super::toml_walk::{Issues, Section};

/// The settings read from these tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonConfig {}

/// Reads the tables.
pub(super) fn read_daemon(_top: &mut Section<'_, '_>, _issues: &mut Issues<'_>) -> DaemonConfig {
    DaemonConfig {}
}
