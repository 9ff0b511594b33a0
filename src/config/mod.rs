//! The one TOML file an admin edits: connector, store, feature mapping, model, tiers and
//! write-back fields. Secrets are named by environment variable and never read from the file.

pub mod alerts;
pub mod bulk;
pub mod daemon;
pub mod enrichment;
pub mod feedback;
pub mod reference;
pub mod reports;
pub mod sync;
pub mod territory;
mod toml_walk;
pub mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use toml::de::DeTable;
use toml::Spanned;

pub use crate::level::Level;
pub use toml_walk::ConfigIssue;
use toml_walk::{Issues, Section};

/// A configuration file that could not be used, with every problem found in it.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.issues.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        writeln!(
            f,
            "invalid configuration {} ({count} {noun}):",
            self.path.display()
        )?;
        for issue in &self.issues {
            write!(f, "  {}", self.path.display())?;
            if issue.line > 0 {
                write!(f, ":{}:{}", issue.line, issue.column)?;
            }
            if !issue.key.is_empty() {
                write!(f, ": {}", issue.key)?;
            }
            write!(f, ": {}", issue.message)?;
            if let Some(example) = &issue.example {
                write!(f, "\n      example: {example}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Encoding of one account attribute as model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeKind {
    /// A number used as it is; missing stays missing.
    Number,
    /// A text value, one-hot encoded over the values frequent in training.
    Category,
    /// A boolean.
    Flag,
    /// 1 when the field has any value, 0 when it is empty.
    Present,
}

impl AttributeKind {
    const NAMES: &'static str = "number, category, flag, present";

    fn parse(text: &str) -> Option<Self> {
        match text {
            "number" => Some(AttributeKind::Number),
            "category" => Some(AttributeKind::Category),
            "flag" => Some(AttributeKind::Flag),
            "present" => Some(AttributeKind::Present),
            _ => None,
        }
    }
}

/// One account field mapped to a feature.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttributeFeature {
    /// Feature name, unique, used in reports.
    pub name: String,
    /// CRM field, possibly dotted (`Parent.Name`).
    pub field: String,
    pub kind: AttributeKind,
    /// Plain words for reasons, for example `hip/knee volume`.
    pub label: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeatureConfig {
    /// Account attributes used as features.
    pub attributes: Vec<AttributeFeature>,
    /// Contact fields used as features of the contact level (`[[features.contact]]`).
    pub contact_attributes: Vec<AttributeFeature>,
    /// Lead fields used as features of the lead level (`[[features.lead]]`).
    pub lead_attributes: Vec<AttributeFeature>,
    /// Contact field holding the buying role (surgeon champion, finance, ...).
    pub role_field: String,
    /// Window in days for "engaged" aggregates (roles and contacts with an activity).
    pub engagement_window_days: i64,
    /// Windows in days for activity counts.
    pub activity_windows_days: Vec<i64>,
}

/// Salesforce connection settings; the two secrets are environment variable names.
#[derive(Clone, Debug, PartialEq)]
pub struct SalesforceSettings {
    pub login_url: String,
    pub api_version: String,
    pub client_id: String,
    pub client_secret_env: String,
    pub refresh_token_env: String,
    pub page_size: Option<u32>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// A PEM file of certificates to trust besides the system's roots (a sandbox's own CA,
    /// or a corporate proxy's).
    pub ca_file: Option<PathBuf>,
    /// How far before the stored cursor each incremental pull starts, so that a record
    /// committed late with an earlier change stamp is still seen.
    pub cursor_lookback: Duration,
    /// Refresh token file and API budget.
    pub transport: transport::TransportSettings,
    /// When pulls use Bulk API 2.0.
    pub bulk: bulk::BulkSettings,
}

/// HubSpot credentials: a private-app token, or an OAuth app's refresh token. Both name
/// environment variables.
#[derive(Clone, Debug, PartialEq)]
pub enum HubSpotAuthSettings {
    PrivateApp {
        token_env: String,
    },
    OAuth {
        token_url: String,
        client_id: String,
        client_secret_env: String,
        refresh_token_env: String,
    },
}

/// HubSpot connection settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HubSpotSettings {
    /// API root, `https://api.hubapi.com` for real portals.
    pub base_url: String,
    pub auth: HubSpotAuthSettings,
    /// Lifecycle stage at which a lead counts as converted.
    pub lead_converted_stage: String,
    pub timeout: Duration,
    pub max_retries: u32,
    /// A PEM file of certificates to trust besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How far before the stored cursor each incremental pull starts.
    pub cursor_lookback: Duration,
    /// Refresh token file and API budget.
    pub transport: transport::TransportSettings,
}

/// One configured CRM connection.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedConnector {
    /// Lower-case name, unique; with several connectors, each keeps its data in a
    /// subdirectory of the store named after it.
    pub name: String,
    pub settings: ConnectorSettings,
    /// Field names the rest of the file uses, mapped to this CRM's own names.
    pub fields: BTreeMap<String, String>,
}

/// The CRM leadscore talks to.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectorSettings {
    Salesforce(SalesforceSettings),
    HubSpot(HubSpotSettings),
}

impl ConnectorSettings {
    /// `salesforce` or `hubspot`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSettings::Salesforce(_) => "salesforce",
            ConnectorSettings::HubSpot(_) => "hubspot",
        }
    }

    /// Returns how far before the stored cursor each incremental pull starts.
    pub fn cursor_lookback(&self) -> Duration {
        match self {
            ConnectorSettings::Salesforce(s) => s.cursor_lookback,
            ConnectorSettings::HubSpot(h) => h.cursor_lookback,
        }
    }

    /// Returns the refresh token file and API budget settings.
    pub fn transport(&self) -> &transport::TransportSettings {
        match self {
            ConnectorSettings::Salesforce(s) => &s.transport,
            ConnectorSettings::HubSpot(h) => &h.transport,
        }
    }

    /// Returns the extra CA file, when one is configured.
    pub fn ca_file(&self) -> Option<&Path> {
        match self {
            ConnectorSettings::Salesforce(s) => s.ca_file.as_deref(),
            ConnectorSettings::HubSpot(h) => h.ca_file.as_deref(),
        }
    }

    /// Returns the URL that identifies the org or portal: the login URL, or the API root.
    pub fn url(&self) -> &str {
        match self {
            ConnectorSettings::Salesforce(s) => &s.login_url,
            ConnectorSettings::HubSpot(h) => &h.base_url,
        }
    }
}

/// Rule that decides which deals are examples and whether each was won.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelRule {
    /// Closed deals, won when the IsWon flag is true.
    IsWon,
    /// Deals whose StageName is in `won` (won) or `lost` (lost); deals in neither are skipped.
    Stages { won: Vec<String>, lost: Vec<String> },
}

/// The `[model]` section: labels, pre-training checks, splits and training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Maximum number of boosting rounds (trees).
    pub trees: usize,
    pub max_depth: usize,
    pub learning_rate: f64,
    /// Training stops adding trees once validation log loss has not improved for this many
    /// rounds. 0 disables early stopping, so training fits `trees` trees.
    pub early_stopping_rounds: usize,
    pub label: LabelRule,
    /// Share of the examples, latest by close date, held out for the final metrics.
    pub holdout_fraction: f64,
    /// Share of the examples just before the holdout, used to choose and calibrate the model.
    pub validation_fraction: f64,
    /// Minimum number of closed deals (won plus lost) needed to publish a model.
    pub min_examples: usize,
    /// Minimum number of deals of the rarer class (won or lost) needed to publish a model.
    pub min_minority: usize,
    /// A feature whose holdout AUC alone exceeds this is treated as leakage and excluded.
    pub leakage_auc: f64,
    /// A feature present for at least this share of the closed deals used for training, but
    /// for at most `post_outcome_scoring_share` of the accounts being scored, is treated as
    /// filled in only after the outcome and excluded.
    pub post_outcome_train_share: f64,
    /// The largest share of accounts being scored that may have a value for a feature still
    /// treated as filled in only after the outcome. Lower than `post_outcome_train_share`.
    pub post_outcome_scoring_share: f64,
    /// Features kept even when the leakage check flags them.
    pub keep_features: Vec<String>,
    /// A category feature whose values split the deals into segments, each checked for
    /// enough closed deals of both classes.
    // NOTE: only CRM training reads this. `evaluate` on a CSV file checks no segments.
    pub segment: Option<String>,
    /// Minimum number of closed deals per segment value.
    pub min_segment_examples: usize,
    /// When true, a segment below `min_segment_examples` or lacking a class rejects training.
    /// When false, it is a warning.
    pub strict_segments: bool,
    /// A candidate goes live only if its holdout AUC is at most this much below the live
    /// model's AUC on the same rows.
    pub promotion_margin: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            trees: 100,
            max_depth: 5,
            learning_rate: 0.1,
            early_stopping_rounds: 10,
            label: LabelRule::IsWon,
            holdout_fraction: 0.2,
            validation_fraction: 0.15,
            min_examples: 200,
            min_minority: 40,
            leakage_auc: 0.95,
            post_outcome_train_share: 0.5,
            post_outcome_scoring_share: 0.05,
            keep_features: Vec::new(),
            segment: None,
            min_segment_examples: 30,
            strict_segments: false,
            promotion_margin: 0.01,
        }
    }
}

/// Score thresholds (0-100, inclusive lower bounds) and the picklist values written per tier.
#[derive(Clone, Debug, PartialEq)]
pub struct TierConfig {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    /// Values written for tiers A, B, C and D, in that order.
    pub labels: [String; 4],
}

impl TierConfig {
    /// Returns the label of the tier a 0-100 score falls in.
    pub fn tier_for(&self, score: f64) -> &str {
        let index = if score >= self.a {
            0
        } else if score >= self.b {
            1
        } else if score >= self.c {
            2
        } else {
            3
        };
        &self.labels[index]
    }
}

impl Default for WritebackConfig {
    fn default() -> Self {
        WritebackConfig {
            score_field: "LS_Score__c".to_string(),
            tier_field: "LS_Tier__c".to_string(),
            reasons_field: "LS_Reasons__c".to_string(),
            model_version_field: "LS_Model_Version__c".to_string(),
            scored_at_field: "LS_Scored_At__c".to_string(),
            batch_size: 200,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WritebackConfig {
    pub score_field: String,
    pub tier_field: String,
    pub reasons_field: String,
    pub model_version_field: String,
    pub scored_at_field: String,
    /// Records per write request, at most 200 for Salesforce.
    pub batch_size: usize,
}

/// The rule that reads a lead's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadLabel {
    /// Converted leads are won.
    Converted,
    /// Only leads whose converted opportunity was won are won. A lead converted without an
    /// opportunity, or whose opportunity was lost, is lost. A lead whose opportunity is still
    /// open is not an example yet.
    ConvertedWon,
}

/// The `[lead]` section: the lead level's label, account matching and hand-off.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadConfig {
    pub label: LeadLabel,
    /// An unconverted lead this many days old counts as lost; a younger one is open.
    pub lost_after_days: i64,
    /// Training computes a lead's features as of this many days after its creation (or at
    /// conversion, if that came first), about where in a lead's life scoring happens.
    pub observe_days: i64,
    /// A lookup field on the lead naming its account, when the org has one.
    pub account_field: Option<String>,
    /// Fields matched against account names and states when there is no lookup.
    pub company_field: String,
    pub state_field: String,
    /// Account fields the company and state are matched against.
    pub account_name_field: String,
    pub account_state_field: String,
    /// Score (0-100) at which a lead is handed to sales; `None` turns the hand-off off.
    pub sales_ready_score: Option<f64>,
    /// Checkbox field set to true for leads at or above `sales_ready_score`.
    pub sales_ready_field: String,
    pub writeback: WritebackConfig,
}

/// The `[contact]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactConfig {
    pub writeback: WritebackConfig,
}

/// The `[hints]` section: which features a rep can change, and when a hint is worth writing.
#[derive(Clone, Debug, PartialEq)]
pub struct HintConfig {
    /// Names of features a rep can act on, for example `roles_engaged` or `meetings`.
    pub actionable: Vec<String>,
    /// A hint is written only when the change would add at least this many points.
    pub min_points: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScoringConfig {
    /// Levels trained and scored, in order; `account` when the file names none.
    pub levels: Vec<Level>,
    /// Maximum number of reasons that raise a score; up to two reasons that lower it follow.
    pub reasons: usize,
    /// Point in time the scores are computed for; `None` means now.
    pub as_of: Option<DateTime<Utc>>,
    /// Leave accounts with a won deal unscored: they are customers already.
    pub skip_customers: bool,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The connector this configuration works with; see [`Config::per_connector`].
    pub connector: ConnectorSettings,
    /// Its name.
    pub connector_name: String,
    /// Its field renaming: names used in this file to the CRM's names.
    pub field_map: BTreeMap<String, String>,
    /// Every configured connector, in file order.
    pub connectors: Vec<NamedConnector>,
    /// Directory of the store, resolved against the config file's directory.
    pub store_path: PathBuf,
    pub features: FeatureConfig,
    pub model: ModelConfig,
    pub tiers: TierConfig,
    pub writeback: WritebackConfig,
    pub scoring: ScoringConfig,
    pub lead: LeadConfig,
    pub contact: ContactConfig,
    pub hints: HintConfig,
    /// `[[enrichment]]` tables joined to accounts or contacts before features are built.
    pub enrichment: Vec<enrichment::EnrichmentConfig>,
    /// `[sync]`: what a pull does about mapped fields the org does not offer.
    pub sync: sync::SyncConfig,
    /// `[currency]`: the currency amounts are converted to before they become features.
    pub currency: sync::CurrencyConfig,
    /// `[daemon]` and `[schedule]`: how `leadscore run` serves and schedules its jobs.
    pub daemon: daemon::DaemonConfig,
    /// `[alerts]` and `[webhook]`: threshold alerts to the owning reps.
    pub alerts: alerts::AlertsConfig,
    /// `[outcomes]`: the predicted-versus-actual report.
    pub reports: reports::ReportsConfig,
    /// `[territory]`: per-rep priority lists.
    pub territory: territory::TerritoryConfig,
    /// `[feedback]`: rep flags on wrong scores.
    pub feedback: feedback::FeedbackConfig,
}

impl Config {
    /// Returns one configuration per connector. With one connector, that is this configuration.
    /// With several, each keeps its records, models and scores in its own subdirectory of the
    /// store, so two CRMs' records never mix.
    pub fn per_connector(&self) -> Vec<Config> {
        if self.connectors.len() <= 1 {
            return vec![self.clone()];
        }
        self.connectors
            .iter()
            .map(|entry| Config {
                connector: entry.settings.clone(),
                connector_name: entry.name.clone(),
                field_map: entry.fields.clone(),
                store_path: self.store_path.join(&entry.name),
                ..self.clone()
            })
            .collect()
    }

    /// Returns the write-back fields of a level, on that level's object.
    pub fn writeback_for(&self, level: Level) -> &WritebackConfig {
        match level {
            Level::Account => &self.writeback,
            Level::Contact => &self.contact.writeback,
            Level::Lead => &self.lead.writeback,
        }
    }

    /// Returns the configured attributes of a level's own object (none for accounts beyond
    /// `[[features.account]]`).
    pub fn own_attributes(&self, level: Level) -> &[AttributeFeature] {
        match level {
            Level::Account => &self.features.attributes,
            Level::Contact => &self.features.contact_attributes,
            Level::Lead => &self.features.lead_attributes,
        }
    }
}

/// The secrets of the configured connector.
pub enum ConnectorSecrets {
    /// Salesforce's consumer secret and refresh token.
    Salesforce(Secrets),
    /// A HubSpot private-app token.
    HubSpotToken(SecretString),
    /// A HubSpot OAuth app's client secret and refresh token.
    HubSpotOAuth(Secrets),
}

impl From<Secrets> for ConnectorSecrets {
    fn from(secrets: Secrets) -> Self {
        ConnectorSecrets::Salesforce(secrets)
    }
}

impl fmt::Debug for ConnectorSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectorSecrets([redacted])")
    }
}

/// A client secret and refresh token read from the environment, held in memory only.
pub struct Secrets {
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { client_secret: [redacted], refresh_token: [redacted] }")
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_limited(path).map_err(|message| ConfigError {
            path: path.to_path_buf(),
            issues: vec![ConfigIssue {
                line: 0,
                column: 0,
                key: String::new(),
                message,
                example: Some("leadscore init > leadscore.toml".to_string()),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Validates configuration text; `base` resolves a relative store path.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut issues = Issues::new(text);
        let (root, syntax_errors) = DeTable::parse_recoverable(text);
        for error in &syntax_errors {
            let span = error.span().unwrap_or(0..0);
            issues.push(span, "", format!("invalid TOML: {}", error.message()), None);
        }
        if !issues.list.is_empty() {
            // Keys read from a document that failed to parse would only add noise.
            return Err(ConfigError {
                path: path.to_path_buf(),
                issues: issues.list,
            });
        }
        let mut top = Section::new("", Some(root.get_ref()), root.span());
        let config = read_config(&mut top, &mut issues, base);
        top.finish(&mut issues);
        if config.is_none() && issues.list.is_empty() {
            // A reader that returns nothing should have reported why. This covers one that did
            // not, so that no error reaches the user with no problems listed.
            issues.push(
                0..0,
                "",
                "the configuration is incomplete, but no single key could be named; compare it \
                 with the output of `leadscore init`"
                    .to_string(),
                None,
            );
        }
        match config {
            Some(config) if issues.list.is_empty() => Ok(config),
            _ => {
                let mut list = issues.list;
                list.sort_by_key(|issue| (issue.line, issue.column));
                Err(ConfigError {
                    path: path.to_path_buf(),
                    issues: list,
                })
            }
        }
    }

    /// Reads the secrets from the environment variables the file names. A refresh token
    /// file (`refresh_token_file`) that exists is read instead of the refresh token's variable.
    pub fn secrets(&self) -> Result<ConnectorSecrets, String> {
        let crm = match self.connector {
            ConnectorSettings::Salesforce(_) => "Salesforce",
            ConnectorSettings::HubSpot(_) => "HubSpot",
        };
        let read = |name: &str, what: &str| -> Result<SecretString, String> {
            match std::env::var(name) {
                // Surrounding whitespace is a copy-and-paste artefact: no secret has it.
                Ok(value) if !value.trim().is_empty() => {
                    Ok(SecretString::from(value.trim().to_string()))
                }
                Ok(_) => Err(format!(
                    "environment variable {name} (the {crm} {what}) is empty; set it to the {what}"
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                    "environment variable {name} (the {crm} {what}) is not valid UTF-8; set it to the {what} as text"
                )),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "environment variable {name} (the {crm} {what}) is not set; export {name}=..."
                )),
            }
        };
        Ok(match &self.connector {
            ConnectorSettings::Salesforce(settings) => ConnectorSecrets::Salesforce(Secrets {
                client_secret: read(&settings.client_secret_env, "client secret")?,
                refresh_token: match crate::token_file::read(&settings.transport)? {
                    Some(token) => token,
                    None => read(&settings.refresh_token_env, "refresh token")?,
                },
            }),
            ConnectorSettings::HubSpot(settings) => match &settings.auth {
                HubSpotAuthSettings::PrivateApp { token_env } => {
                    ConnectorSecrets::HubSpotToken(read(token_env, "private app token")?)
                }
                HubSpotAuthSettings::OAuth {
                    client_secret_env,
                    refresh_token_env,
                    ..
                } => ConnectorSecrets::HubSpotOAuth(Secrets {
                    client_secret: read(client_secret_env, "client secret")?,
                    refresh_token: match crate::token_file::read(&settings.transport)? {
                        Some(token) => token,
                        None => read(refresh_token_env, "refresh token")?,
                    },
                }),
            },
        })
    }
}

/// Largest configuration file read, in bytes; a real one is a few kilobytes.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`] as UTF-8.
fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;

    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot read the file: {err}"))?;
    if !metadata.is_file() {
        return Err("is not a regular file; pass the path of a TOML file".to_string());
    }
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read the file: {err}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read the file: {err}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "is larger than {MAX_CONFIG_BYTES} bytes; is this the right file?"
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        format!(
            "is not UTF-8 text (invalid byte at offset {})",
            err.utf8_error().valid_up_to()
        )
    })
}

fn read_config(top: &mut Section<'_, '_>, issues: &mut Issues<'_>, base: &Path) -> Option<Config> {
    let mut connectors = read_connectors(top, issues);
    // A relative CA file is relative to this file's directory, like the store path.
    for entry in connectors.iter_mut().flatten() {
        let ca_file = match &mut entry.settings {
            ConnectorSettings::Salesforce(settings) => &mut settings.ca_file,
            ConnectorSettings::HubSpot(settings) => &mut settings.ca_file,
        };
        if let Some(path) = ca_file {
            *path = base.join(&*path);
        }
        // The refresh token file is relative to this file's directory too.
        let transport = match &mut entry.settings {
            ConnectorSettings::Salesforce(settings) => &mut settings.transport,
            ConnectorSettings::HubSpot(settings) => &mut settings.transport,
        };
        if let Some(path) = &mut transport.refresh_token_file {
            *path = base.join(&*path);
        }
    }

    let mut store = top.table(issues, "store");
    let store_path = store
        .required_path(issues, "path", r#"path = "leadscore-data""#)
        .map(|p| base.join(p.into_inner()));
    store.finish(issues);

    let mut features = top.table(issues, "features");
    let feature_config = read_features(&mut features, issues);
    features.finish(issues);

    let mut model = top.table(issues, "model");
    let model_config = read_model(&mut model, issues, feature_config.as_ref());
    model.finish(issues);

    let mut tiers = top.table(issues, "tiers");
    let tier_config = read_tiers(&mut tiers, issues);
    tiers.finish(issues);

    let mut writeback = top.table(issues, "writeback");
    let writeback_config = read_writeback(&mut writeback, issues, &WritebackConfig::default());
    writeback.finish(issues);

    let mut scoring = top.table(issues, "scoring");
    let scoring_config = read_scoring(&mut scoring, issues);
    scoring.finish(issues);

    let mut lead = top.table(issues, "lead");
    let lead_config = writeback_config
        .as_ref()
        .and_then(|defaults| read_lead(&mut lead, issues, defaults));
    lead.finish(issues);

    let mut contact = top.table(issues, "contact");
    let contact_config = writeback_config.as_ref().and_then(|defaults| {
        let mut table = contact.table(issues, "writeback");
        let writeback = read_writeback(&mut table, issues, defaults);
        table.finish(issues);
        writeback.map(|writeback| ContactConfig { writeback })
    });
    contact.finish(issues);

    let enrichment_config = enrichment::read_enrichment(top, issues, base);
    if let (Some(tables), Some(features)) = (&enrichment_config, &feature_config) {
        for table in tables {
            for name in table.feature_names() {
                let taken = features
                    .attributes
                    .iter()
                    .chain(&features.contact_attributes)
                    .chain(&features.lead_attributes)
                    .any(|a| a.name == name);
                if taken {
                    issues.push(
                        top.span(),
                        "enrichment",
                        format!("enrichment feature {name:?} has the name of a [[features.*]] entry; rename the enrichment table or the column (columns = [{{ column = \"...\", name = \"...\" }}])"),
                        None,
                    );
                }
            }
        }
    }

    let sync_config = sync::read_sync(top, issues);
    let daemon_config = daemon::read_daemon(top, issues);
    let alerts_config = alerts::read_alerts(top, issues);
    let reports_config = reports::read_reports(top, issues, base);
    let feedback_config = feedback::read_feedback(top, issues);
    let territory_config = territory::read_territory(top, issues, base);
    let currency_config = sync::read_currency(top, issues);

    let mut hints = top.table(issues, "hints");
    let hint_config = read_hints(&mut hints, issues, feature_config.as_ref());
    hints.finish(issues);

    Some(Config {
        connector: connectors.as_ref()?.first()?.settings.clone(),
        connector_name: connectors.as_ref()?.first()?.name.clone(),
        field_map: connectors.as_ref()?.first()?.fields.clone(),
        connectors: connectors?,
        store_path: store_path?,
        features: feature_config?,
        model: model_config?,
        tiers: tier_config?,
        writeback: writeback_config?,
        scoring: scoring_config?,
        lead: lead_config?,
        contact: contact_config?,
        hints: hint_config?,
        enrichment: enrichment_config?,
        sync: sync_config,
        currency: currency_config,
        daemon: daemon_config,
        alerts: alerts_config,
        reports: reports_config,
        feedback: feedback_config,
        territory: territory_config,
    })
}

/// Reads `[connector]`, or several `[[connector]]` tables, each with a unique `name`.
fn read_connectors(
    top: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
) -> Option<Vec<NamedConnector>> {
    let several = matches!(
        top.raw("connector").map(|v| v.get_ref()),
        Some(toml::de::DeValue::Array(_))
    );
    let sections = if several {
        top.table_array(issues, "connector")
    } else {
        vec![top.table(issues, "connector")]
    };
    let count = sections.len();
    if let Some(empty) = top
        .raw("connector")
        .filter(|v| matches!(v.get_ref(), toml::de::DeValue::Array(items) if items.is_empty()))
    {
        issues.push(
            empty.span(),
            "connector",
            "connector is an empty array, so no CRM is configured; add a [connector] table"
                .to_string(),
            Some("[connector]"),
        );
    }
    let mut out: Vec<NamedConnector> = Vec::new();
    let mut complete = true;
    for mut section in sections {
        let name_example = r#"name = "salesforce""#;
        let name = section.string(issues, "name", name_example);
        if count > 1 && name.is_none() {
            section.missing(issues, "name", name_example);
        }
        let fields: BTreeMap<String, String> = section
            .string_map(
                issues,
                "fields",
                r#"fields = { Hip_Knee_Discharges__c = "hip_knee_discharges" }"#,
            )
            .into_iter()
            .map(|(k, v)| (k, v.into_inner()))
            .collect();
        let settings = read_connector(&mut section, issues);
        let name = match (name, &settings) {
            (Some(name), _) => {
                let text = name.get_ref();
                let valid = text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
                if !valid {
                    issues.push(
                        name.span(),
                        &section.key_path("name"),
                        format!("{text:?} must be lower-case letters, digits, _ and -: it names a store subdirectory"),
                        Some(name_example),
                    );
                }
                if out.iter().any(|c| c.name == *text) {
                    issues.push(
                        name.span(),
                        &section.key_path("name"),
                        format!(
                            "connector name {text:?} is used twice; give each connector its own"
                        ),
                        Some(name_example),
                    );
                }
                Some(name.into_inner())
            }
            (None, Some(settings)) => Some(settings.kind().to_string()),
            (None, None) => None,
        };
        section.finish(issues);
        match (name, settings) {
            (Some(name), Some(settings)) => out.push(NamedConnector {
                name,
                settings,
                fields,
            }),
            _ => complete = false,
        }
    }
    (complete && !out.is_empty()).then_some(out)
}

fn read_connector(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<ConnectorSettings> {
    reject_secrets_in_file(s, issues);
    let example = r#"kind = "salesforce""#;
    let kind = s.required_string(issues, "kind", example)?;
    match kind.get_ref().as_str() {
        "salesforce" => read_salesforce(s, issues).map(ConnectorSettings::Salesforce),
        "hubspot" => read_hubspot(s, issues).map(ConnectorSettings::HubSpot),
        other => {
            // The other keys cannot be judged without a kind; reporting them as unknown would
            // only bury this problem.
            for key in CONNECTOR_KEYS
                .iter()
                .chain(&transport::TRANSPORT_KEYS)
                .chain(&bulk::BULK_KEYS)
            {
                s.raw(key);
            }
            let lower = other.trim().to_ascii_lowercase();
            let closest = if lower.starts_with('h') || lower.contains("hub") {
                "hubspot"
            } else {
                "salesforce"
            };
            issues.push(
                kind.span(),
                &s.key_path("kind"),
                format!("unsupported connector {other:?}; supported: salesforce, hubspot"),
                Some(&format!("kind = {closest:?}")),
            );
            None
        }
    }
}

/// Every key a `[connector]` table of either kind may hold.
const CONNECTOR_KEYS: [&str; 17] = [
    "cursor_lookback_secs",
    "login_url",
    "api_version",
    "client_id",
    "client_secret_env",
    "refresh_token_env",
    "page_size",
    "timeout_secs",
    "max_retries",
    "ca_file",
    "base_url",
    "token_env",
    "token_url",
    "lead_converted_stage",
    "name",
    "fields",
    "kind",
];

fn read_hubspot(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<HubSpotSettings> {
    let allow_http = transport::read_allow_insecure_http(s, issues);
    let base_url = read_url(
        s,
        issues,
        allow_http,
        "base_url",
        r#"base_url = "https://api.hubapi.com""#,
    )
    .unwrap_or_else(|| Some("https://api.hubapi.com".to_string()));
    let token_env = s.raw("token_env").is_some();
    let refresh_env = s.raw("refresh_token_env").is_some();
    let auth = match (token_env, refresh_env) {
        (true, true) => {
            // Both kinds of credentials: the OAuth keys are known, just not usable together.
            for key in ["client_id", "client_secret_env", "token_url"] {
                s.raw(key);
            }
            issues.push(
                s.raw("refresh_token_env").map_or_else(|| s.span(), |v| v.span()),
                &s.key_path("token_env"),
                "both token_env (private app) and refresh_token_env (OAuth app) are set; keep the one your HubSpot app uses".to_string(),
                Some(r#"token_env = "LEADSCORE_HUBSPOT_TOKEN""#),
            );
            None
        }
        (false, true) => {
            let token_url = read_url(
                s,
                issues,
                allow_http,
                "token_url",
                r#"token_url = "https://api.hubapi.com/oauth/v1/token""#,
            )
            .unwrap_or_else(|| {
                base_url
                    .as_ref()
                    .map(|base| format!("{base}/oauth/v1/token"))
            });
            let client_id =
                s.required_string(issues, "client_id", r#"client_id = "YOUR_APP_CLIENT_ID""#);
            let secret = read_env_name(
                s,
                issues,
                "client_secret_env",
                "LEADSCORE_HUBSPOT_CLIENT_SECRET",
            );
            let refresh = read_env_name(
                s,
                issues,
                "refresh_token_env",
                "LEADSCORE_HUBSPOT_REFRESH_TOKEN",
            );
            match (token_url, client_id, secret, refresh) {
                (
                    Some(token_url),
                    Some(client_id),
                    Some(client_secret_env),
                    Some(refresh_token_env),
                ) => Some(HubSpotAuthSettings::OAuth {
                    token_url,
                    client_id: client_id.into_inner(),
                    client_secret_env,
                    refresh_token_env,
                }),
                _ => None,
            }
        }
        _ => read_env_name(s, issues, "token_env", "LEADSCORE_HUBSPOT_TOKEN")
            .map(|token_env| HubSpotAuthSettings::PrivateApp { token_env }),
    };
    let lead_converted_stage = s
        .string(
            issues,
            "lead_converted_stage",
            r#"lead_converted_stage = "salesqualifiedlead""#,
        )
        .map(|v| v.into_inner())
        .unwrap_or_else(|| "salesqualifiedlead".to_string());
    let timeout = s
        .integer(issues, "timeout_secs", 1..3601, "timeout_secs = 60")
        .unwrap_or(60);
    let max_retries = s
        .integer(issues, "max_retries", 0..21, "max_retries = 4")
        .unwrap_or(4);
    // Read before the early returns below, so these keys are never reported as unknown.
    let ca_file = read_ca_file(s, issues);
    let cursor_lookback = read_lookback(s, issues);
    let transport = transport::read_transport(s, issues, refresh_env, true, allow_http);
    Some(HubSpotSettings {
        base_url: base_url?,
        auth: auth?,
        lead_converted_stage,
        timeout: Duration::from_secs(timeout as u64),
        max_retries: max_retries as u32,
        ca_file,
        cursor_lookback,
        transport,
    })
}

fn read_salesforce(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<SalesforceSettings> {
    let allow_http = transport::read_allow_insecure_http(s, issues);
    let login_url = read_login_url(s, issues, allow_http);
    let api_version = read_api_version(s, issues);
    let client_id = s.required_string(issues, "client_id", r#"client_id = "3MVG9...""#);

    let secret_env = read_env_name(s, issues, "client_secret_env", "LEADSCORE_SF_CLIENT_SECRET");
    let token_env = read_env_name(s, issues, "refresh_token_env", "LEADSCORE_SF_REFRESH_TOKEN");

    let page_size = s
        .integer(issues, "page_size", 200..2001, "page_size = 2000")
        .map(|n| n as u32);
    let timeout = s
        .integer(issues, "timeout_secs", 1..3601, "timeout_secs = 60")
        .unwrap_or(60);
    let max_retries = s
        .integer(issues, "max_retries", 0..21, "max_retries = 4")
        .unwrap_or(4);
    let ca_file = read_ca_file(s, issues);
    let cursor_lookback = read_lookback(s, issues);
    let transport = transport::read_transport(s, issues, true, false, allow_http);
    let bulk = bulk::read_bulk(s, issues);
    Some(SalesforceSettings {
        login_url: login_url?,
        api_version,
        client_id: client_id?.into_inner(),
        client_secret_env: secret_env?,
        refresh_token_env: token_env?,
        page_size,
        timeout: Duration::from_secs(timeout as u64),
        max_retries: max_retries as u32,
        ca_file,
        cursor_lookback,
        transport,
        bulk,
    })
}

/// `[connector]` keys that would hold a secret in the file; each is rejected.
pub(super) const SECRET_KEYS: [&str; 5] = [
    "client_secret",
    "refresh_token",
    "access_token",
    "password",
    "token",
];

/// Reports secrets written into the file; the value itself is never echoed.
fn reject_secrets_in_file(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) {
    for secret in SECRET_KEYS {
        if let Some(value) = s.raw_unlisted(secret) {
            issues.push(
                value.span(),
                &s.key_path(secret),
                "secrets are never read from the file; name an environment variable instead"
                    .to_string(),
                Some(&format!(
                    r#"{secret}_env = "LEADSCORE_{}""#,
                    secret.to_uppercase()
                )),
            );
        }
    }
}

fn read_login_url(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    allow_http: bool,
) -> Option<String> {
    let example = r#"login_url = "https://login.salesforce.com""#;
    match read_url(s, issues, allow_http, "login_url", example) {
        Some(url) => url,
        None => {
            s.missing(issues, "login_url", example);
            None
        }
    }
}

/// Reads an http or https URL without credentials in it, and with plain http only to a
/// loopback host unless `allow_http` is set. Returns `None` when the key is absent and
/// `Some(None)` when its value is invalid (the problem is reported).
fn read_url(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    allow_http: bool,
    key: &'static str,
    example: &str,
) -> Option<Option<String>> {
    let url = s.string(issues, key, example)?;
    let text = url.get_ref();
    let parsed = url::Url::parse(text).ok();
    if parsed
        .as_ref()
        .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
    {
        issues.push(
            url.span(),
            &s.key_path(key),
            "must not contain a user name or password; credentials come from the environment"
                .to_string(),
            Some(example),
        );
        return Some(None);
    }
    let valid = parsed
        .as_ref()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !valid {
        issues.push(
            url.span(),
            &s.key_path(key),
            format!("{text:?} is not an http or https URL"),
            Some(example),
        );
        return Some(None);
    }
    if let Some(Err(message)) = parsed
        .as_ref()
        .map(|u| leadscore_connector::http::check_plain_http(u, allow_http, "allow_insecure_http"))
    {
        issues.push(url.span(), &s.key_path(key), message, Some(example));
        return Some(None);
    }
    Some(Some(text.trim_end_matches('/').to_string()))
}

/// Reads `cursor_lookback_secs`, 300 by default.
fn read_lookback(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Duration {
    let seconds = s
        .integer(
            issues,
            "cursor_lookback_secs",
            0..86_401,
            "cursor_lookback_secs = 300",
        )
        .unwrap_or(300);
    Duration::from_secs(seconds as u64)
}

/// Reads `ca_file`, a path kept as written; the connector resolves it against the config
/// file's directory and reads it.
fn read_ca_file(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<PathBuf> {
    s.path(
        issues,
        "ca_file",
        r#"ca_file = "/etc/ssl/certs/corporate-proxy.pem""#,
    )
    .map(|v| PathBuf::from(v.into_inner()))
}

/// Reads the API version, accepting `59.0` or `v59.0`; the default is 59.0.
fn read_api_version(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> String {
    let example = r#"api_version = "59.0""#;
    let Some(version) = s.string(issues, "api_version", example) else {
        return "59.0".to_string();
    };
    let text = version.get_ref().trim_start_matches('v').to_string();
    let valid = text
        .split_once('.')
        .is_some_and(|(major, minor)| major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok());
    if !valid {
        issues.push(
            version.span(),
            &s.key_path("api_version"),
            format!("{:?} is not an API version like 59.0", version.get_ref()),
            Some(example),
        );
    }
    text
}

fn read_env_name(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    key: &'static str,
    default_name: &str,
) -> Option<String> {
    let example = format!("{key} = {default_name:?}");
    let name = s.required_string(issues, key, &example)?;
    let text = name.get_ref();
    let valid = text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        issues.push(
            name.span(),
            &s.key_path(key),
            // The value is not repeated: a secret pasted here by mistake must not be printed.
            "is not an environment variable name (letters, digits and _); put the secret in an environment variable and write that variable's name here".to_string(),
            Some(&example),
        );
        return None;
    }
    Some(name.into_inner())
}

fn read_features(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<FeatureConfig> {
    let role_field = s
        .string(issues, "role_field", r#"role_field = "Buying_Role__c""#)
        .map(|v| v.into_inner())
        .unwrap_or_else(|| "Buying_Role__c".to_string());
    let engagement_window_days = s
        .integer(
            issues,
            "engagement_window_days",
            1..3651,
            "engagement_window_days = 365",
        )
        .unwrap_or(365);
    let activity_windows_days = s
        .integer_array(
            issues,
            "activity_windows_days",
            1..3651,
            "activity_windows_days = [90, 365]",
        )
        .unwrap_or_else(|| vec![90, 365]);
    if let Some(repeated) = first_repeat(&activity_windows_days) {
        issues.push(
            s.span(),
            &s.key_path("activity_windows_days"),
            format!(
                "{repeated} is listed twice; each window gives its own features, so list it once"
            ),
            Some("activity_windows_days = [90, 365]"),
        );
    }

    let mut lists: [Vec<AttributeFeature>; 3] = Default::default();
    let mut complete = true;
    for (index, key) in ["account", "contact", "lead"].into_iter().enumerate() {
        for mut entry in s.table_array(issues, key) {
            match read_attribute(&mut entry, issues) {
                Some(attribute) => {
                    if lists.iter().flatten().any(|a| a.name == attribute.name) {
                        issues.push(
                            entry.span(),
                            &entry.key_path("name"),
                            format!(
                                "duplicate feature name {:?}; names must be unique across [[features.account]], [[features.contact]] and [[features.lead]]",
                                attribute.name
                            ),
                            None,
                        );
                    }
                    lists[index].push(attribute);
                }
                None => complete = false,
            }
            entry.finish(issues);
        }
    }
    if !complete {
        return None;
    }
    let [attributes, contact_attributes, lead_attributes] = lists;
    Some(FeatureConfig {
        attributes,
        contact_attributes,
        lead_attributes,
        role_field,
        engagement_window_days,
        activity_windows_days,
    })
}

fn read_attribute(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<AttributeFeature> {
    let name = s.required_string(issues, "name", r#"name = "hip_knee_volume""#);
    if let Some(name) = &name {
        let valid = name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            issues.push(
                name.span(),
                &s.key_path("name"),
                format!(
                    "{:?} must be lower-case letters, digits and _",
                    name.get_ref()
                ),
                Some(r#"name = "hip_knee_volume""#),
            );
        }
    }
    let field = s.required_string(issues, "field", r#"field = "Hip_Knee_Discharges__c""#);
    let kind_example = r#"kind = "number""#;
    let kind = s
        .required_string(issues, "kind", kind_example)
        .and_then(|k| {
            let parsed = AttributeKind::parse(k.get_ref());
            if parsed.is_none() {
                issues.push(
                    k.span(),
                    &s.key_path("kind"),
                    format!(
                        "unknown kind {:?}; expected one of: {}",
                        k.get_ref(),
                        AttributeKind::NAMES
                    ),
                    Some(kind_example),
                );
            }
            parsed
        });
    let label = s.string(issues, "label", r#"label = "hip/knee volume""#);
    let name = name?.into_inner();
    Some(AttributeFeature {
        label: label
            .map(|l| l.into_inner())
            .unwrap_or_else(|| name.replace('_', " ")),
        name,
        field: field?.into_inner(),
        kind: kind?,
    })
}

fn read_model(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    features: Option<&FeatureConfig>,
) -> Option<ModelConfig> {
    let defaults = ModelConfig::default();
    let label = read_label(s, issues);
    let segment = read_segment(s, issues, features);
    let (post_outcome_train_share, post_outcome_scoring_share) = read_post_outcome(s, issues);
    let keep_features: Vec<String> = s
        .string_array(issues, "keep_features", r#"keep_features = ["bed_count"]"#)
        .map(|values| values.into_iter().map(|v| v.into_inner()).collect())
        .unwrap_or_default();
    if let Some(repeated) = first_repeat(&keep_features) {
        issues.push(
            s.span(),
            &s.key_path("keep_features"),
            format!("{repeated:?} is listed twice; list each feature once"),
            Some(r#"keep_features = ["bed_count"]"#),
        );
    }
    let config = ModelConfig {
        trees: s
            .integer(issues, "trees", 1..5001, "trees = 100")
            .map_or(defaults.trees, |n| n as usize),
        max_depth: s
            .integer(issues, "max_depth", 1..17, "max_depth = 5")
            .map_or(defaults.max_depth, |n| n as usize),
        learning_rate: s
            .float(issues, "learning_rate", 0.001, 1.0, "learning_rate = 0.1")
            .unwrap_or(defaults.learning_rate),
        early_stopping_rounds: s
            .integer(
                issues,
                "early_stopping_rounds",
                0..1001,
                "early_stopping_rounds = 10",
            )
            .map_or(defaults.early_stopping_rounds, |n| n as usize),
        holdout_fraction: s
            .float(
                issues,
                "holdout_fraction",
                0.05,
                0.5,
                "holdout_fraction = 0.2",
            )
            .unwrap_or(defaults.holdout_fraction),
        validation_fraction: s
            .float(
                issues,
                "validation_fraction",
                0.05,
                0.4,
                "validation_fraction = 0.15",
            )
            .unwrap_or(defaults.validation_fraction),
        min_examples: s
            .integer(issues, "min_examples", 10..1_000_000, "min_examples = 200")
            .map_or(defaults.min_examples, |n| n as usize),
        min_minority: s
            .integer(issues, "min_minority", 1..1_000_000, "min_minority = 40")
            .map_or(defaults.min_minority, |n| n as usize),
        leakage_auc: s
            .float(issues, "leakage_auc", 0.5, 1.0, "leakage_auc = 0.95")
            .unwrap_or(defaults.leakage_auc),
        post_outcome_train_share,
        post_outcome_scoring_share,
        keep_features,
        segment,
        min_segment_examples: s
            .integer(
                issues,
                "min_segment_examples",
                1..1_000_000,
                "min_segment_examples = 30",
            )
            .map_or(defaults.min_segment_examples, |n| n as usize),
        strict_segments: s
            .boolean(issues, "strict_segments", "strict_segments = false")
            .unwrap_or(defaults.strict_segments),
        promotion_margin: s
            .float(
                issues,
                "promotion_margin",
                0.0,
                1.0,
                "promotion_margin = 0.01",
            )
            .unwrap_or(defaults.promotion_margin),
        // Last, so that an invalid label rule does not stop the other keys being read.
        label: label?,
    };
    // Training must keep most of the deals: with the holdout and validation slices taking more
    // than half, the fitted slice gets too small to learn from.
    let held_back = config.holdout_fraction + config.validation_fraction;
    if held_back > 0.5 + 1e-9 {
        issues.push(
            s.span(),
            &s.key_path("validation_fraction"),
            format!(
                "holdout_fraction + validation_fraction is {held_back}, which leaves less than half of the closed deals for training; keep the sum at 0.5 or below"
            ),
            Some("holdout_fraction = 0.2, validation_fraction = 0.15"),
        );
    }
    Some(config)
}

/// Reads the two shares of the post-outcome (train/serve skew) rule. The scoring share must
/// be below the training share, or the rule would flag features present equally often in both.
fn read_post_outcome(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> (f64, f64) {
    let defaults = ModelConfig::default();
    let train_example = "post_outcome_train_share = 0.5";
    let scoring_example = "post_outcome_scoring_share = 0.05";
    let train = s.float(issues, "post_outcome_train_share", 0.01, 1.0, train_example);
    let scoring = s.float(
        issues,
        "post_outcome_scoring_share",
        0.0,
        1.0,
        scoring_example,
    );
    let train = train.unwrap_or(defaults.post_outcome_train_share);
    let scoring = scoring.unwrap_or(defaults.post_outcome_scoring_share);
    if scoring >= train {
        // Point at whichever key the file sets, the scoring share first.
        let key = if s.raw("post_outcome_scoring_share").is_some() {
            "post_outcome_scoring_share"
        } else {
            "post_outcome_train_share"
        };
        let span = s.raw(key).map_or_else(|| s.span(), |value| value.span());
        issues.push(
            span,
            &s.key_path(key),
            format!(
                "post_outcome_scoring_share ({scoring}) must be below post_outcome_train_share ({train}); lower the scoring share or raise the training share"
            ),
            Some(scoring_example),
        );
    }
    (train, scoring)
}

/// Reads `segment`, which must name a category feature of `[[features.account]]`. The name is
/// not checked when the features section itself failed to parse.
fn read_segment(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    features: Option<&FeatureConfig>,
) -> Option<String> {
    let example = r#"segment = "hospital_type""#;
    let segment = s.string(issues, "segment", example)?;
    let Some(features) = features else {
        return Some(segment.into_inner());
    };
    let name = segment.get_ref();
    match features.attributes.iter().find(|a| a.name == *name) {
        Some(attribute) if attribute.kind == AttributeKind::Category => {}
        Some(attribute) => {
            issues.push(
                segment.span(),
                &s.key_path("segment"),
                format!(
                    "feature {name:?} is a {} feature; segment needs a category feature",
                    format!("{:?}", attribute.kind).to_lowercase()
                ),
                Some(example),
            );
            return None;
        }
        None => {
            let categories: Vec<&str> = features
                .attributes
                .iter()
                .filter(|a| a.kind == AttributeKind::Category)
                .map(|a| a.name.as_str())
                .collect();
            issues.push(
                segment.span(),
                &s.key_path("segment"),
                format!(
                    "unknown feature {name:?}; name a category feature of [[features.account]]: {}",
                    if categories.is_empty() {
                        "none is configured".to_string()
                    } else {
                        categories.join(", ")
                    }
                ),
                Some(example),
            );
            return None;
        }
    }
    Some(segment.into_inner())
}

/// Reads `label`, `won_stages` and `lost_stages`. Stage lists switch the rule to stages.
fn read_label(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<LabelRule> {
    let label_example = r#"label = "is_won""#;
    let label = s.string(issues, "label", label_example);
    let won_example = r#"won_stages = ["Closed Won"]"#;
    let lost_example = r#"lost_stages = ["Closed Lost"]"#;
    let won = s.string_array(issues, "won_stages", won_example);
    let lost = s.string_array(issues, "lost_stages", lost_example);
    let stages_given = won.is_some() || lost.is_some();

    let rule_name = match &label {
        Some(name) => name.get_ref().clone(),
        None if stages_given => "stages".to_string(),
        None => "is_won".to_string(),
    };
    match rule_name.as_str() {
        "is_won" => {
            if stages_given {
                issues.push(
                    s.span(),
                    &s.key_path("won_stages"),
                    "won_stages and lost_stages are read only when label = \"stages\"; remove them or set label = \"stages\"".to_string(),
                    Some(r#"label = "stages""#),
                );
                return None;
            }
            Some(LabelRule::IsWon)
        }
        "stages" => {
            let mut lists = Vec::new();
            for (key, values, example) in [
                ("won_stages", won, won_example),
                ("lost_stages", lost, lost_example),
            ] {
                let values: Vec<String> = values
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v.into_inner())
                    .collect();
                if values.is_empty() {
                    issues.push(
                        s.span(),
                        &s.key_path(key),
                        format!(
                            "label = \"stages\" needs a non-empty {key} list of StageName values"
                        ),
                        Some(example),
                    );
                }
                lists.push(values);
            }
            let lost = lists.pop().unwrap_or_default();
            let won = lists.pop().unwrap_or_default();
            if let Some(both) = won.iter().find(|stage| lost.contains(stage)) {
                issues.push(
                    s.span(),
                    &s.key_path("lost_stages"),
                    format!("stage {both:?} is in both won_stages and lost_stages; list it in one"),
                    Some(lost_example),
                );
                return None;
            }
            if won.is_empty() || lost.is_empty() {
                return None;
            }
            Some(LabelRule::Stages { won, lost })
        }
        other => {
            let span = label.as_ref().map_or_else(|| s.span(), |l| l.span());
            issues.push(
                span,
                &s.key_path("label"),
                format!("unknown label rule {other:?}; expected \"is_won\" or \"stages\""),
                Some(label_example),
            );
            None
        }
    }
}

fn read_tiers(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<TierConfig> {
    let a = s.float(issues, "a", 0.0, 100.0, "a = 70").unwrap_or(70.0);
    let b = s.float(issues, "b", 0.0, 100.0, "b = 45").unwrap_or(45.0);
    let c = s.float(issues, "c", 0.0, 100.0, "c = 25").unwrap_or(25.0);
    if !(a > b && b > c) {
        issues.push(
            s.span(),
            &s.key_path("a"),
            format!(
                "thresholds must fall from A to C (a > b > c), found a = {a}, b = {b}, c = {c}"
            ),
            Some("a = 70, b = 45, c = 25"),
        );
    }
    let labels_example = r#"labels = ["A", "B", "C", "D"]"#;
    let labels = match s.string_array(issues, "labels", labels_example) {
        Some(values) if values.len() == 4 => {
            for (index, value) in values.iter().enumerate() {
                if value.get_ref().trim().is_empty() {
                    issues.push(
                        value.span(),
                        &s.key_path("labels"),
                        format!(
                            "the label of tier {} is empty, which would clear the tier field; give each tier a name",
                            ["A", "B", "C", "D"][index]
                        ),
                        Some(labels_example),
                    );
                }
                if values[..index]
                    .iter()
                    .any(|v| v.get_ref() == value.get_ref())
                {
                    issues.push(
                        value.span(),
                        &s.key_path("labels"),
                        format!(
                            "label {:?} is used for two tiers; each tier needs its own",
                            value.get_ref()
                        ),
                        Some(labels_example),
                    );
                }
            }
            let values: Vec<String> = values.into_iter().map(|v| v.into_inner()).collect();
            [
                values[0].clone(),
                values[1].clone(),
                values[2].clone(),
                values[3].clone(),
            ]
        }
        Some(values) => {
            issues.push(
                s.span(),
                &s.key_path("labels"),
                format!("expected 4 labels (tiers A to D), found {}", values.len()),
                Some(labels_example),
            );
            return None;
        }
        None => ["A", "B", "C", "D"].map(str::to_string),
    };
    Some(TierConfig { a, b, c, labels })
}

/// Returns the first value of `values` that an earlier one repeats.
fn first_repeat<T: PartialEq>(values: &[T]) -> Option<&T> {
    values
        .iter()
        .enumerate()
        .find(|(index, value)| values[..*index].contains(value))
        .map(|(_, value)| value)
}

fn read_writeback(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    defaults: &WritebackConfig,
) -> Option<WritebackConfig> {
    let mut field = |key: &'static str, default: &str| {
        s.string(issues, key, &format!("{key} = {default:?}"))
            .map(|v| v.into_inner())
            .unwrap_or_else(|| default.to_string())
    };
    let score_field = field("score_field", &defaults.score_field);
    let tier_field = field("tier_field", &defaults.tier_field);
    let reasons_field = field("reasons_field", &defaults.reasons_field);
    let model_version_field = field("model_version_field", &defaults.model_version_field);
    let scored_at_field = field("scored_at_field", &defaults.scored_at_field);
    let batch_size = s
        .integer(issues, "batch_size", 1..201, "batch_size = 200")
        .map_or(defaults.batch_size, |n| n as usize);
    let names = [
        &score_field,
        &tier_field,
        &reasons_field,
        &model_version_field,
        &scored_at_field,
    ];
    for (index, name) in names.iter().enumerate() {
        if names[..index]
            .iter()
            .any(|earlier| earlier.eq_ignore_ascii_case(name))
        {
            issues.push(
                s.span(),
                &s.key_path("score_field"),
                format!(
                    "field {name:?} is named for two write-back values; give each its own field"
                ),
                None,
            );
        }
    }
    Some(WritebackConfig {
        score_field,
        tier_field,
        reasons_field,
        model_version_field,
        scored_at_field,
        batch_size,
    })
}

fn read_lead(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    defaults: &WritebackConfig,
) -> Option<LeadConfig> {
    let label_example = r#"label = "converted""#;
    let label = match s.string(issues, "label", label_example) {
        None => Some(LeadLabel::Converted),
        Some(value) => match value.get_ref().as_str() {
            "converted" => Some(LeadLabel::Converted),
            "converted_won" => Some(LeadLabel::ConvertedWon),
            other => {
                issues.push(
                    value.span(),
                    &s.key_path("label"),
                    format!("unknown lead label {other:?}; expected \"converted\" (IsConverted) or \"converted_won\" (the converted opportunity was won)"),
                    Some(label_example),
                );
                None
            }
        },
    };
    let lost_after_days = s
        .integer(issues, "lost_after_days", 1..3651, "lost_after_days = 180")
        .unwrap_or(180);
    let observe_days = s
        .integer(issues, "observe_days", 0..3651, "observe_days = 14")
        .unwrap_or(14);
    if observe_days >= lost_after_days {
        let span = s
            .raw("observe_days")
            .or_else(|| s.raw("lost_after_days"))
            .map_or_else(|| s.span(), |v| v.span());
        issues.push(
            span,
            &s.key_path("observe_days"),
            format!("observe_days ({observe_days}) must be below lost_after_days ({lost_after_days}): training looks at a lead before its outcome is known"),
            Some("observe_days = 14"),
        );
    }
    let mut text = |key: &'static str, default: &str| {
        s.string(issues, key, &format!("{key} = {default:?}"))
            .map(|v| v.into_inner())
            .unwrap_or_else(|| default.to_string())
    };
    let company_field = text("company_field", "Company");
    let state_field = text("state_field", "State");
    let account_name_field = text("account_name_field", "Name");
    let account_state_field = text("account_state_field", "BillingState");
    let sales_ready_field = text("sales_ready_field", "LS_Sales_Ready__c");
    let account_field = s
        .string(issues, "account_field", r#"account_field = "Account__c""#)
        .map(|v| v.into_inner())
        .filter(|v| !v.trim().is_empty());
    let sales_ready_score = s.float(
        issues,
        "sales_ready_score",
        0.0,
        100.0,
        "sales_ready_score = 60",
    );
    let mut table = s.table(issues, "writeback");
    let writeback = read_writeback(&mut table, issues, defaults);
    table.finish(issues);
    Some(LeadConfig {
        label: label?,
        lost_after_days,
        observe_days,
        account_field,
        company_field,
        state_field,
        account_name_field,
        account_state_field,
        sales_ready_score,
        sales_ready_field,
        writeback: writeback?,
    })
}

fn read_hints(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    features: Option<&FeatureConfig>,
) -> Option<HintConfig> {
    let example = r#"actionable = ["roles_engaged", "meetings"]"#;
    let actionable = s.string_array(issues, "actionable", example);
    let min_points = s
        .float(issues, "min_points", 0.0, 100.0, "min_points = 5")
        .unwrap_or(5.0);
    let mut names = Vec::new();
    for name in actionable.unwrap_or_default() {
        let known = crate::hints::ACTIONABLE_AGGREGATES.contains(&name.get_ref().as_str())
            || features.is_some_and(|f| {
                f.attributes
                    .iter()
                    .chain(&f.contact_attributes)
                    .chain(&f.lead_attributes)
                    .any(|a| {
                        a.name == *name.get_ref()
                            && matches!(a.kind, AttributeKind::Flag | AttributeKind::Present)
                    })
            });
        if !known {
            issues.push(
                name.span(),
                &s.key_path("actionable"),
                format!(
                    "{:?} is not a feature a rep can change; use one of {} or the name of a configured flag or present feature",
                    name.get_ref(),
                    crate::hints::ACTIONABLE_AGGREGATES.join(", ")
                ),
                Some(example),
            );
        }
        if names.contains(name.get_ref()) {
            issues.push(
                name.span(),
                &s.key_path("actionable"),
                format!("{:?} is listed twice", name.get_ref()),
                Some(example),
            );
        }
        names.push(name.into_inner());
    }
    Some(HintConfig {
        actionable: names,
        min_points,
    })
}

fn read_scoring(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<ScoringConfig> {
    let levels_example = r#"levels = ["account", "contact", "lead"]"#;
    let mut named: Vec<Spanned<String>> = Vec::new();
    // `level = "account"` is the one-level spelling older files use.
    if let Some(level) = s.string(issues, "level", r#"level = "account""#) {
        named.push(level);
    }
    if let Some(list) = s.string_array(issues, "levels", levels_example) {
        let span = s.raw("levels").map_or_else(|| s.span(), |v| v.span());
        if !named.is_empty() {
            issues.push(
                span.clone(),
                &s.key_path("levels"),
                "both level and levels are set; keep only levels".to_string(),
                Some(levels_example),
            );
        }
        if list.is_empty() {
            issues.push(
                span,
                &s.key_path("levels"),
                "levels is empty; list at least one level, for example account".to_string(),
                Some(levels_example),
            );
        }
        named.extend(list);
    }
    let mut levels = Vec::new();
    for name in named {
        match Level::parse(name.get_ref()) {
            Some(level) if levels.contains(&level) => issues.push(
                name.span(),
                &s.key_path("levels"),
                format!("level {:?} is listed twice", name.get_ref()),
                Some(levels_example),
            ),
            Some(level) => levels.push(level),
            None => issues.push(
                name.span(),
                &s.key_path("levels"),
                format!(
                    "unknown level {:?}; expected one of: {}",
                    name.get_ref(),
                    Level::NAMES
                ),
                Some(levels_example),
            ),
        }
    }
    if levels.is_empty() {
        levels.push(Level::Account);
    }
    let reasons = s
        .integer(issues, "reasons", 1..11, "reasons = 3")
        .unwrap_or(3) as usize;
    let as_of_example = "as_of = 2026-12-01T00:00:00Z";
    let as_of = s.datetime(issues, "as_of", as_of_example).and_then(|v| {
        let parsed = DateTime::parse_from_rfc3339(v.get_ref()).ok();
        if parsed.is_none() {
            issues.push(
                v.span(),
                &s.key_path("as_of"),
                format!("{} needs a date, a time and a UTC offset", v.get_ref()),
                Some(as_of_example),
            );
        }
        parsed.map(|t| t.with_timezone(&Utc))
    });
    let skip_customers = s
        .boolean(issues, "skip_customers", "skip_customers = true")
        .unwrap_or(true);
    Some(ScoringConfig {
        levels,
        reasons,
        as_of,
        skip_customers,
    })
}

#[cfg(test)]
mod tests;
