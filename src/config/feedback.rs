//! `[feedback]`: rep flags on wrong scores and how training uses them.

use super::toml_walk::{Issues, Section};

/// The settings read from these tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackConfig {}

/// Reads the tables.
pub(super) fn read_feedback(_top: &mut Section<'_, '_>, _issues: &mut Issues<'_>) -> FeedbackConfig {
    FeedbackConfig {}
}
