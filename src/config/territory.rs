//! `[territory]`: per-rep priority lists, where they are written and how territories are found.

use super::toml_walk::{Issues, Section};

/// The settings read from `[territory]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TerritoryConfig {}

/// Reads `[territory]`.
pub(super) fn read_territory(
    _top: &mut Section<'_, '_>,
    _issues: &mut Issues<'_>,
) -> TerritoryConfig {
    TerritoryConfig {}
}
