//! `[territory]`: per-rep priority lists, where they are written and how territories are found.

use std::path::{Path, PathBuf};

use super::toml_walk::{Issues, Section};

/// Folder the lists are written to when `[territory] folder` is not set.
pub const DEFAULT_FOLDER: &str = "lists";
/// Accounts per rep list when `[territory] top` is not set.
pub const DEFAULT_TOP: usize = 25;
/// Largest accepted `top`: a priority list is meant to be read in one sitting.
pub const MAX_TOP: i64 = 1000;

/// The settings read from `[territory]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TerritoryConfig {
    /// Folder of the CSV and HTML lists and their index, resolved against the config file's
    /// directory.
    pub folder: PathBuf,
    /// Accounts on each rep's list.
    pub top: usize,
    /// An account field (as named in this file) whose values form a rep's territory: the
    /// values of the accounts the rep owns. `None` makes a rep's territory the accounts they own.
    pub field: Option<String>,
    /// Whether each rep's list is also sent to the webhook as JSON.
    pub webhook: bool,
}

impl Default for TerritoryConfig {
    fn default() -> Self {
        TerritoryConfig {
            folder: PathBuf::from(DEFAULT_FOLDER),
            top: DEFAULT_TOP,
            field: None,
            webhook: false,
        }
    }
}

/// Reads `[territory]`. A relative folder is resolved against `base`, the config file's
/// directory.
pub(super) fn read_territory(
    top: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    base: &Path,
) -> TerritoryConfig {
    let mut section = top.table(issues, "territory");
    let defaults = TerritoryConfig::default();

    let folder = section
        .path(issues, "folder", r#"folder = "lists""#)
        .map_or(defaults.folder, |value| PathBuf::from(value.into_inner()));

    let count = section
        .integer(issues, "top", 1..MAX_TOP + 1, "top = 25")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(defaults.top);

    let field_example = r#"field = "BillingState""#;
    let field = section
        .string(issues, "field", field_example)
        .and_then(|value| {
            let name = value.get_ref().trim().to_string();
            let valid = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if valid {
                Some(name)
            } else {
                issues.push(
                    value.span(),
                    &section.key_path("field"),
                    format!(
                        "{name:?} is not a field name; use the account field's API name, \
                         as in the field mappings of this file"
                    ),
                    Some(field_example),
                );
                None
            }
        });

    let webhook = section
        .boolean(issues, "webhook", "webhook = true")
        .unwrap_or(defaults.webhook);
    section.finish(issues);

    TerritoryConfig {
        folder: base.join(folder),
        top: count,
        field,
        webhook,
    }
}
