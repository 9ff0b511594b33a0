//! Scoring levels: the CRM object a model predicts for, and the outcome it learns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The object a model scores. Each level has its own model, registry history, scores and
/// write-back fields.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Hospitals and health systems; the label is the outcome of the account's deals.
    #[default]
    Account,
    /// People at accounts; the label is the outcome of the deals they had a role on.
    Contact,
    /// Inbound leads not yet converted; the label is conversion.
    Lead,
}

impl Level {
    /// Every level, in the order they are trained and scored.
    pub const ALL: [Level; 3] = [Level::Account, Level::Contact, Level::Lead];
    /// The names accepted in the config, for messages.
    pub const NAMES: &'static str = "account, contact, lead";

    pub fn name(self) -> &'static str {
        match self {
            Level::Account => "account",
            Level::Contact => "contact",
            Level::Lead => "lead",
        }
    }

    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.name() == text)
    }

    /// The Salesforce object scored at this level.
    pub fn object(self) -> &'static str {
        match self {
            Level::Account => "Account",
            Level::Contact => "Contact",
            Level::Lead => "Lead",
        }
    }

    /// Suffix of the store keys of this level. The account level keeps the keys of stores
    /// written before levels existed, so those stores open unchanged.
    pub fn store_suffix(self) -> &'static str {
        match self {
            Level::Account => "",
            Level::Contact => "/contact",
            Level::Lead => "/lead",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
