//! The configuration reference: every table and key the parser accepts, with its type,
//! default, allowed values and meaning, rendered as Markdown by `leadscore init --reference`.
//!
//! Defaults are read from the same `Default` implementations and constants the parser falls
//! back to. A test compares this table with the keys the parser reads, so a key cannot be
//! added to the parser without a line here.

use std::fmt::Write as _;

use super::alerts::AlertsConfig;
use super::bulk::BulkSettings;
use super::daemon::{self, DaemonConfig};
use super::feedback::{self, FeedbackConfig};
use super::reports::ReportsConfig;
use super::territory::{self, TerritoryConfig};
use super::transport::DEFAULT_HUBSPOT_DAILY_ALLOWANCE;
use super::{AttributeKind, Level, ModelConfig, WritebackConfig};

/// The path of the committed reference, relative to the repository root.
pub const REFERENCE_PATH: &str = "docs/CONFIG.md";

/// One table of the configuration file.
pub struct TableDoc {
    /// Dotted path with array indexes removed, for example `features.account`.
    pub path: &'static str,
    /// True for an array of tables (`[[features.account]]`).
    pub array: bool,
    pub meaning: &'static str,
}

/// One key of a table.
pub struct KeyDoc {
    /// Dotted path of the table that contains the key.
    pub table: &'static str,
    pub key: &'static str,
    /// TOML type, such as `integer` or `array of strings`.
    pub kind: &'static str,
    /// Value used when the key is absent; "required" or "none" when there is no default.
    pub default: String,
    /// Range or set of accepted values; empty when any value of the type is accepted.
    pub allowed: String,
    pub meaning: &'static str,
}

/// Returns every table, in the order the reference lists them.
pub fn tables() -> Vec<TableDoc> {
    let table = |path, array, meaning| TableDoc {
        path,
        array,
        meaning,
    };
    vec![
        table("connector", false, "The CRM to pull from and write to. Write `[[connector]]` tables, each with a `name`, to work with two CRMs from one file."),
        table("store", false, "The embedded store that keeps cursors, records, models, scores and the write journal."),
        table("sync", false, "What a pull does about mapped fields the CRM does not offer."),
        table("currency", false, "Conversion of amounts in several currencies to one base currency."),
        table("features", false, "Buying-group and activity aggregates."),
        table("features.account", true, "An account field used as a feature."),
        table("features.contact", true, "A contact field used as a feature of the contact level."),
        table("features.lead", true, "A lead field used as a feature of the lead level."),
        table("enrichment", true, "A CSV file, or the built-in CMS hospital table, joined to accounts or contacts. Set `key` or `match`, not both."),
        table("enrichment.key", false, "Join on an identifier: `key = { field = \"...\", column = \"...\" }`."),
        table("enrichment.match", false, "Join on normalised name and state: `match = { name_field = \"Name\", ... }`."),
        table("enrichment.columns", true, "A column given as an inline table in `columns`, in place of its bare name."),
        table("model", false, "Labels, data checks, splits and training settings."),
        table("tiers", false, "Tier bounds on the 0-100 score and the picklist values written for each tier."),
        table("writeback", false, "The account fields leadscore writes, and the write batch size."),
        table("scoring", false, "What is scored and how many reasons are written."),
        table("contact", false, "Settings of the contact level; it holds only `[contact.writeback]`."),
        table("contact.writeback", false, "The contact fields leadscore writes; each key defaults to the `[writeback]` value."),
        table("lead", false, "Settings of the lead level: its label, account matching and the sales-ready hand-off."),
        table("lead.writeback", false, "The lead fields leadscore writes; each key defaults to the `[writeback]` value."),
        table("hints", false, "The next-best-action hint written after the reasons."),
        table("alerts", false, "Tasks for the owning rep when a record rises past a threshold."),
        table("webhook", false, "A signed HTTP endpoint that receives each pass's alerts and, optionally, the territory lists. Absent means no webhook."),
        table("territory", false, "Per-rep lists of the top open accounts."),
        table("outcomes", false, "The predicted-versus-actual report and its limits."),
        table("feedback", false, "The picklist reps set when they think a score is wrong."),
        table("daemon", false, "The health and metrics endpoint and the time zone of the schedules."),
        table("schedule", false, "Cron schedules of the daemon's jobs: five fields, or six with seconds first; `\"off\"` disables a job."),
    ]
}

/// Returns every key, grouped by table in the order of [`tables`].
pub fn keys() -> Vec<KeyDoc> {
    let mut out = Vec::new();
    connector_keys(&mut out);
    data_keys(&mut out);
    model_keys(&mut out);
    level_keys(&mut out);
    alert_keys(&mut out);
    report_keys(&mut out);
    daemon_keys(&mut out);
    out
}

/// Builds one [`KeyDoc`].
fn key(
    table: &'static str,
    key: &'static str,
    kind: &'static str,
    default: impl ToString,
    allowed: impl ToString,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc {
        table,
        key,
        kind,
        default: default.to_string(),
        allowed: allowed.to_string(),
        meaning,
    }
}

/// Quotes a string default as TOML writes it.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// Writes a list of strings as a TOML array.
fn string_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quoted(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

fn connector_keys(out: &mut Vec<KeyDoc>) {
    let bulk = BulkSettings::default();
    let c = "connector";
    out.extend([
        key(c, "kind", "string", "required", "`salesforce`, `hubspot`", "Which CRM this connector talks to."),
        key(c, "name", "string", "the kind", "lower-case letters, digits, `_`, `-`", "Name of the connector and of its store subdirectory; required with several `[[connector]]` tables."),
        key(c, "fields", "table of strings", "none", "", "Renames fields for this CRM: the name used in this file to the CRM's name."),
        key(c, "login_url", "string", "required (Salesforce)", "http or https URL", "Salesforce only: where the OAuth token endpoint lives (`https://login.salesforce.com`, `https://test.salesforce.com`, a My Domain URL or a sandbox)."),
        key(c, "api_version", "string", quoted("59.0"), "`MAJOR.MINOR`, with or without a leading `v`; 31.0 or later", "Salesforce only: REST API version used for every call. Versions before 31.0 are retired, and Bulk API 2.0 pulls need 47.0 or later."),
        key(c, "client_id", "string", "required (Salesforce, HubSpot OAuth)", "", "Consumer key of the Salesforce connected app, or client id of the HubSpot OAuth app. Not a secret."),
        key(c, "client_secret_env", "string", "required (Salesforce, HubSpot OAuth)", "environment variable name", "Environment variable that holds the client secret."),
        key(c, "refresh_token_env", "string", "required (Salesforce, HubSpot OAuth)", "environment variable name", "Environment variable that holds the OAuth refresh token. On HubSpot it selects OAuth in place of a private app."),
        key(c, "refresh_token_file", "string", "none", "file path", "OAuth only: file read in place of `refresh_token_env` when it exists, and where a rotated refresh token is written (mode 0600). Relative to the config file."),
        key(c, "token_env", "string", "required (HubSpot private app)", "environment variable name", "HubSpot only: environment variable that holds the private app's access token."),
        key(c, "token_url", "string", "`base_url` + `/oauth/v1/token`", "http or https URL", "HubSpot OAuth only: the token endpoint."),
        key(c, "base_url", "string", quoted("https://api.hubapi.com"), "http or https URL", "HubSpot only: API root, or a local sandbox."),
        key(c, "lead_converted_stage", "string", quoted("salesqualifiedlead"), "a lifecycle stage", "HubSpot only: lifecycle stage at which a contact that entered as a lead counts as converted."),
        key(c, "page_size", "integer", "2000", "200 to 2000", "Salesforce only: rows per query page (`Sforce-Query-Options: batchSize`)."),
        key(c, "timeout_secs", "integer", "60", "1 to 3600", "Seconds before one HTTP request is abandoned."),
        key(c, "max_retries", "integer", "4", "0 to 20", "Retries of a request that failed in a way a retry can fix."),
        key(c, "cursor_lookback_secs", "integer", "300", "0 to 86400", "An incremental pull starts this many seconds before the stored cursor, so late commits are still seen."),
        key(c, "allow_insecure_http", "boolean", "false", "true or false", "Allows plain http to a host other than loopback (127.0.0.0/8, ::1, localhost). Without it such URLs are refused, because tokens would cross the network unencrypted."),
        key(c, "ca_file", "string", "none", "PEM file path", "CA certificates trusted besides the system's, for a TLS-intercepting proxy or a sandbox over https. Relative to the config file."),
        key(c, "api_budget_share", "float", leadscore_connector::limits::DEFAULT_BUDGET_SHARE, "0.001 to 1", "Share of the CRM's remaining daily API calls the runs of one UTC day may use together."),
        key(c, "daily_api_allowance", "integer", DEFAULT_HUBSPOT_DAILY_ALLOWANCE, "1 to 999999999", "HubSpot only: daily calls assumed when responses carry no daily limit headers."),
        key(c, "bulk_threshold", "integer", bulk.threshold, "0 to 1000000000000", "Salesforce only: a pull whose first page reports more rows than this runs as a Bulk API 2.0 query job."),
        key(c, "bulk_objects", "array of strings", "[]", "Salesforce object names", "Salesforce only: objects pulled through Bulk API 2.0 whatever their size, or over REST when Salesforce rejects the Bulk job for a spent daily Bulk allowance or an object Bulk cannot query."),
        key(c, "bulk_timeout_secs", "integer", bulk.timeout.as_secs(), "1 to 86400", "Salesforce only: how long one Bulk query job may run before the pull aborts it and fails."),
    ]);
}

fn data_keys(out: &mut Vec<KeyDoc>) {
    out.extend([
        key("store", "path", "string", "required", "directory path", "Directory of the store. Relative to the config file."),
        key("sync", "on_missing_field", "string", quoted("stop"), "`stop`, `drop`", "`stop` fails the run naming a mapped feature field the CRM lacks; `drop` leaves the feature out with a warning. Core and write-back fields always stop the run."),
        key("currency", "base", "string", "none", "ISO 4217 code", "Currency amounts are converted to. Required when `rates` is set."),
        key("currency", "rates", "table of floats", "the org's `CurrencyType` rates (Salesforce)", "positive numbers", "Value of one unit of each currency in the base currency, such as `{ EUR = 1.08 }`."),
        key("currency", "amount_fields", "array of strings", "[]", "field names", AMOUNT_FIELDS_MEANING),
    ]);
    let f = "features";
    out.extend([
        key(f, "role_field", "string", quoted("Buying_Role__c"), "a contact field", "Contact field holding the buying-group role."),
        key(f, "engagement_window_days", "integer", "365", "1 to 3650", "Days back that count as engaged for the roles-engaged and contacts-engaged aggregates."),
        key(f, "activity_windows_days", "array of integers", "[90, 365]", "1 to 3650 each", "Windows, in days, of the activity counts."),
    ]);
    for table in ["features.account", "features.contact", "features.lead"] {
        out.extend([
            key(table, "name", "string", "required", "lower-case letters, digits and `_`; unique across all features", "Feature name used in reasons, reports and other keys."),
            key(table, "field", "string", "required", "a field of the object", "CRM field the feature reads."),
            key(table, "kind", "string", "required", attribute_kinds(), "`number` is used as it is, `category` is one-hot encoded, `flag` is a boolean, `present` is 1 when the field has a value."),
            key(table, "label", "string", "`name` with spaces", "", "Plain wording used in score reasons."),
        ]);
    }
    let e = "enrichment";
    out.extend([
        key(
            e,
            "name",
            "string",
            "required",
            "lower-case letters, digits and `_`; unique",
            "Name of the table; prefixes its feature names.",
        ),
        key(
            e,
            "object",
            "string",
            "required",
            "`account`, `contact`",
            "Records the table is joined to.",
        ),
        key(
            e,
            "source",
            "string",
            "none",
            "`cms-hospitals`",
            "A built-in table in place of `file`.",
        ),
        key(
            e,
            "file",
            "string",
            "required without `source`",
            "CSV file path",
            "CSV file to join. Relative to the config file.",
        ),
        key(
            e,
            "delimiter",
            "string",
            quoted(","),
            "one ASCII character; with `file` only",
            "Column separator of the CSV file.",
        ),
        key(
            e,
            "columns",
            "array of strings or tables",
            "required",
            "column names, or see `[[enrichment.columns]]`",
            "Columns turned into features, kinds inferred unless given.",
        ),
        key(
            "enrichment.key",
            "field",
            "string",
            "required",
            "a field of the object",
            "CRM field holding the identifier, such as a CCN or NPI.",
        ),
        key(
            "enrichment.key",
            "column",
            "string",
            "required",
            "a column of the file",
            "Column holding the same identifier.",
        ),
        key(
            "enrichment.match",
            "name_field",
            "string",
            "required",
            "",
            "CRM field with the name.",
        ),
        key(
            "enrichment.match",
            "state_field",
            "string",
            "required",
            "",
            "CRM field with the state.",
        ),
        key(
            "enrichment.match",
            "city_field",
            "string",
            "none",
            "set with `city_column`",
            "CRM field with the city, to tell apart same-named records in one state.",
        ),
        key(
            "enrichment.match",
            "name_column",
            "string",
            "required",
            "",
            "Column with the name.",
        ),
        key(
            "enrichment.match",
            "state_column",
            "string",
            "required",
            "",
            "Column with the state.",
        ),
        key(
            "enrichment.match",
            "city_column",
            "string",
            "none",
            "set with `city_field`",
            "Column with the city.",
        ),
        key(
            "enrichment.columns",
            "column",
            "string",
            "required",
            "a column of the file",
            "Column to read.",
        ),
        key(
            "enrichment.columns",
            "name",
            "string",
            "derived from the column",
            "lower-case letters, digits and `_`",
            "Feature name.",
        ),
        key(
            "enrichment.columns",
            "kind",
            "string",
            "inferred",
            attribute_kinds(),
            "Feature kind, in place of the inferred one.",
        ),
        key(
            "enrichment.columns",
            "label",
            "string",
            "derived from the column",
            "",
            "Plain wording used in score reasons.",
        ),
    ]);
}

/// Meaning of `currency.amount_fields`. The fields always converted are
/// `sync::DEFAULT_AMOUNT_FIELDS`; a test keeps this text in step with it.
const AMOUNT_FIELDS_MEANING: &str =
    "Amount fields converted besides `Amount` and `AnnualRevenue`, which always are.";

fn attribute_kinds() -> String {
    AttributeKind::NAMES
        .split(", ")
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn model_keys(out: &mut Vec<KeyDoc>) {
    let model = ModelConfig::default();
    let m = "model";
    out.extend([
        key(m, "trees", "integer", model.trees, "1 to 5000", "Maximum number of boosted trees."),
        key(m, "max_depth", "integer", model.max_depth, "1 to 16", "Maximum depth of a tree."),
        key(m, "learning_rate", "float", model.learning_rate, "0.001 to 1", "Shrinkage of each tree."),
        key(m, "early_stopping_rounds", "integer", model.early_stopping_rounds, "0 disables", "Trees are no longer added once validation log loss has not improved for this many rounds."),
        key(m, "label", "string", quoted("is_won"), "`is_won`, `stages`", "How a closed deal's outcome is read: the IsWon flag, or the stage lists below."),
        key(m, "won_stages", "array of strings", "[]", "stage names", "With `label = \"stages\"`: stages that count as won."),
        key(m, "lost_stages", "array of strings", "[]", "stage names", "With `label = \"stages\"`: stages that count as lost."),
        key(m, "holdout_fraction", "float", model.holdout_fraction, "with `validation_fraction`, at most 0.5", "Share of the closed deals, latest by close date, held out for the final metrics."),
        key(m, "validation_fraction", "float", model.validation_fraction, "with `holdout_fraction`, at most 0.5", "Share of the deals just before the holdout, used to choose and calibrate the model."),
        key(m, "min_examples", "integer", model.min_examples, "10 to 999999", "Closed deals needed to publish a model."),
        key(m, "min_minority", "integer", model.min_minority, "1 to 999999", "Deals of the rarer outcome needed to publish a model."),
        key(m, "leakage_auc", "float", model.leakage_auc, "0.5 to 1", "A feature that alone predicts the holdout above this AUC is excluded as leakage."),
        key(m, "keep_features", "array of strings", "[]", "feature names", "Features kept even when the leakage check flags them."),
        key(m, "post_outcome_train_share", "float", model.post_outcome_train_share, "0.01 to 1", "A feature filled for at least this share of training deals..."),
        key(m, "post_outcome_scoring_share", "float", model.post_outcome_scoring_share, "below `post_outcome_train_share`", "...and for at most this share of the records being scored is excluded as filled in after the outcome."),
        key(m, "segment", "string", "none", "a category feature of `[[features.account]]`", "Feature whose values split the deals into segments, each checked for enough deals."),
        key(m, "min_segment_examples", "integer", model.min_segment_examples, "", "Closed deals needed per segment value."),
        key(m, "strict_segments", "boolean", model.strict_segments, "", "When true a thin segment rejects training; when false it is a warning."),
        key(m, "promotion_margin", "float", model.promotion_margin, "", "A retrained model goes live only if its holdout AUC is at most this much below the live model's."),
    ]);
    out.extend([
        key(
            "tiers",
            "a",
            "float",
            "70",
            "0 to 100, a > b > c",
            "Lowest score of tier A.",
        ),
        key(
            "tiers",
            "b",
            "float",
            "45",
            "0 to 100",
            "Lowest score of tier B.",
        ),
        key(
            "tiers",
            "c",
            "float",
            "25",
            "0 to 100",
            "Lowest score of tier C; lower scores are tier D.",
        ),
        key(
            "tiers",
            "labels",
            "array of strings",
            string_list(&["A", "B", "C", "D"]),
            "four distinct values",
            "Picklist values written for tiers A, B, C and D.",
        ),
    ]);
}

fn level_keys(out: &mut Vec<KeyDoc>) {
    writeback_keys(out, "writeback");
    let s = "scoring";
    out.extend([
        key(
            s,
            "levels",
            "array of strings",
            string_list(&["account"]),
            Level::NAMES,
            "Levels trained and scored, each with its own model and write-back fields.",
        ),
        key(
            s,
            "level",
            "string",
            "none",
            Level::NAMES,
            "One level; the older spelling of `levels`. Set one of the two.",
        ),
        key(
            s,
            "reasons",
            "integer",
            "3",
            "1 to 10",
            "Maximum reasons that raise a score; up to two that lower it follow.",
        ),
        key(
            s,
            "as_of",
            "datetime",
            "now",
            "TOML datetime",
            "Point in time scores are computed for; the sandbox configuration sets one.",
        ),
        key(
            s,
            "skip_customers",
            "boolean",
            "true",
            "",
            "Leave accounts with a won deal unscored.",
        ),
    ]);
    writeback_keys(out, "contact.writeback");
    let l = "lead";
    out.extend([
        key(l, "label", "string", quoted("converted"), "`converted`, `converted_won`", "A converted lead is won, or with `converted_won` only when its opportunity was won."),
        key(l, "lost_after_days", "integer", "180", "1 to 3650", "An unconverted lead this many days old counts as lost."),
        key(l, "observe_days", "integer", "14", "0 to 3650, below `lost_after_days`", "Training sees a lead as it was this many days after creation."),
        key(l, "account_field", "string", "none", "a lead lookup field", "Lookup field naming the lead's account; without it leads are matched by company and state."),
        key(l, "company_field", "string", quoted("Company"), "", "Lead field matched against account names."),
        key(l, "state_field", "string", quoted("State"), "", "Lead field matched against account states."),
        key(l, "account_name_field", "string", quoted("Name"), "", "Account field the company is matched against."),
        key(l, "account_state_field", "string", quoted("BillingState"), "", "Account field the state is matched against."),
        key(l, "sales_ready_score", "float", "none (hand-off off)", "0 to 100", "Score at which a lead is handed to sales."),
        key(l, "sales_ready_field", "string", quoted("LS_Sales_Ready__c"), "a checkbox field", "Checkbox set on leads at or above `sales_ready_score`."),
    ]);
    writeback_keys(out, "lead.writeback");
}

/// Adds the keys of a write-back table. The nested tables default to `[writeback]`'s values,
/// which the reference shows as such.
fn writeback_keys(out: &mut Vec<KeyDoc>, table: &'static str) {
    let defaults = WritebackConfig::default();
    let nested = table != "writeback";
    let default = |value: &str| {
        if nested {
            "`[writeback]` value".to_string()
        } else {
            quoted(value)
        }
    };
    let batch = if nested {
        "`[writeback]` value".to_string()
    } else {
        defaults.batch_size.to_string()
    };
    out.extend([
        key(
            table,
            "score_field",
            "string",
            default(&defaults.score_field),
            "a number field",
            "Field that receives the 0-100 score.",
        ),
        key(
            table,
            "tier_field",
            "string",
            default(&defaults.tier_field),
            "a picklist with the tier labels",
            "Field that receives the tier.",
        ),
        key(
            table,
            "reasons_field",
            "string",
            default(&defaults.reasons_field),
            "a long text field",
            "Field that receives the reasons and the hint.",
        ),
        key(
            table,
            "model_version_field",
            "string",
            default(&defaults.model_version_field),
            "a text field",
            "Field that receives the model version.",
        ),
        key(
            table,
            "scored_at_field",
            "string",
            default(&defaults.scored_at_field),
            "a date/time field",
            "Field that receives the time scored.",
        ),
        key(
            table,
            "batch_size",
            "integer",
            batch,
            "1 to 200",
            "Records per write request.",
        ),
    ]);
}

fn alert_keys(out: &mut Vec<KeyDoc>) {
    let hints = crate::hints::ACTIONABLE_AGGREGATES
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    out.extend([
        key(
            "hints",
            "actionable",
            "array of strings",
            "[]",
            format!("{hints}, or a flag or present feature"),
            "What a rep can change; empty writes no hint.",
        ),
        key(
            "hints",
            "min_points",
            "float",
            "5",
            "0 to 100",
            "A hint is written only when it adds at least this many points.",
        ),
    ]);
    let alerts = AlertsConfig::default();
    let a = "alerts";
    out.extend([
        key(
            a,
            "enabled",
            "boolean",
            alerts.enabled,
            "",
            "Turns alerts on; then `threshold`, `into_tiers` or both are required.",
        ),
        key(
            a,
            "levels",
            "array of strings",
            string_list(&["account"]),
            Level::NAMES,
            "Levels that alert.",
        ),
        key(
            a,
            "threshold",
            "float",
            "none",
            "0 to 100",
            "A record alerts when its score rises to this.",
        ),
        key(
            a,
            "into_tiers",
            "array of strings",
            "[]",
            "`A`, `B`, `C`",
            "A record alerts when it enters one of these tiers.",
        ),
        key(
            a,
            "band",
            "float",
            alerts.band,
            "0 to 100",
            "A record alerts again only after falling this many points below the threshold.",
        ),
        key(
            a,
            "per_rep_daily_cap",
            "integer",
            alerts.per_rep_daily_cap,
            "1 to 10000",
            "Alerts per user per UTC day; the rest wait for a later day.",
        ),
        key(
            a,
            "quiet_first_run",
            "boolean",
            alerts.quiet_first_run,
            "",
            "The first pass of a level records scores and sends nothing.",
        ),
        key(
            a,
            "fallback_owner",
            "string",
            "none",
            "a user id",
            "Receives alerts of records whose owner is inactive, a queue, unknown or missing.",
        ),
    ]);
    let webhook_secs = super::alerts::DEFAULT_WEBHOOK_TIMEOUT.as_secs();
    let w = "webhook";
    out.extend([
        key(w, "url", "string", "required", "http or https URL", "Endpoint that receives the events. Redirects are not followed."),
        key(w, "allow_insecure_http", "boolean", "false", "true or false", "Allows a plain http `url` on a host other than loopback; without it such a URL is refused."),
        key(w, "secret_env", "string", "required", "environment variable name", "Environment variable that holds the HMAC-SHA256 key of the `X-Leadscore-Signature` header."),
        key(w, "timeout_secs", "integer", webhook_secs, "1 to 300", "Seconds before one post is abandoned."),
        key(w, "max_attempts", "integer", super::alerts::DEFAULT_WEBHOOK_ATTEMPTS, "1 to 20", "Attempts per event in total, the first one included."),
    ]);
}

fn report_keys(out: &mut Vec<KeyDoc>) {
    let territory = TerritoryConfig::default();
    let t = "territory";
    out.extend([
        key(t, "folder", "string", quoted(territory::DEFAULT_FOLDER), "directory path", "Where `report lists` and the daemon write the lists. Relative to the config file."),
        key(t, "top", "integer", territory.top, format!("1 to {}", territory::MAX_TOP), "Open accounts per rep's list."),
        key(t, "field", "string", "none (owned accounts)", "an account field", "Territory field such as `BillingState`: a rep's territory is every open account sharing a value with the rep's own accounts."),
        key(t, "webhook", "boolean", territory.webhook, "", "Also posts each list to the `[webhook]`."),
    ]);
    let reports = ReportsConfig::default();
    let o = "outcomes";
    out.extend([
        key(
            o,
            "folder",
            "string",
            quoted(super::reports::DEFAULT_FOLDER),
            "directory path",
            "Where `report outcomes` and the daemon write the report. Relative to the config file.",
        ),
        key(
            o,
            "min_auc",
            "float",
            reports.min_auc,
            "0 to 1",
            "A quarter's ROC AUC below this is listed as a breach.",
        ),
        key(
            o,
            "max_calibration_error",
            "float",
            reports.max_calibration_error,
            "0 to 1",
            "A month's calibration error above this is a breach.",
        ),
        key(
            o,
            "max_psi",
            "float",
            reports.max_psi,
            "0 to 100",
            "A feature's population stability index above this is a breach.",
        ),
        key(
            o,
            "retrain_on_breach",
            "boolean",
            reports.retrain_on_breach,
            "",
            "The daemon's monthly report job starts a retrain after a breach.",
        ),
    ]);
    let feedback = FeedbackConfig::default();
    let fb = "feedback";
    out.extend([
        key(fb, "field", "string", format!("{} (Salesforce), {} (HubSpot)", quoted(feedback::SALESFORCE_FIELD), quoted(feedback::HUBSPOT_FIELD)), "a picklist with `Too high`, `Too low`, `Right`", "Field reps set when a score looks wrong."),
        key(fb, "comment_field", "string", format!("{} (Salesforce), {} (HubSpot)", quoted(feedback::SALESFORCE_COMMENT_FIELD), quoted(feedback::HUBSPOT_COMMENT_FIELD)), "a text field other than `field`", "Field with the rep's optional comment."),
        key(fb, "use", "string", serde_json::to_string(&feedback.use_flags).unwrap_or_default(), "`review`, `weights`", "`review` only reports flags on the model card; `weights` also weights flagged examples that agree with their outcome."),
        key(fb, "weight", "float", feedback.weight, "1 to 100", "With `use = \"weights\"`: the weight of such an example."),
    ]);
}

fn daemon_keys(out: &mut Vec<KeyDoc>) {
    let daemon_defaults = DaemonConfig::default();
    out.extend([
        key(
            "daemon",
            "listen",
            "string",
            quoted(&daemon_defaults.listen.to_string()),
            "IP address and port; port 0 picks a free port",
            "Address of `/healthz` and `/metrics`.",
        ),
        key(
            "daemon",
            "time_zone",
            "string",
            quoted(daemon_defaults.time_zone.name()),
            "IANA time zone name",
            "Time zone the schedules are read in.",
        ),
    ]);
    let sc = "schedule";
    out.extend([
        key(
            sc,
            "pull_and_score",
            "string",
            quoted(daemon::DEFAULT_PULL_AND_SCORE),
            "cron expression or `off`",
            "Pull, score, write back and alert at each level.",
        ),
        key(
            sc,
            "retrain",
            "string",
            quoted(daemon::DEFAULT_RETRAIN),
            "cron expression or `off`",
            "Train every level; a better model goes live.",
        ),
        key(
            sc,
            "territory_lists",
            "string",
            quoted(daemon::DEFAULT_TERRITORY_LISTS),
            "cron expression or `off`",
            "Write the territory lists.",
        ),
        key(
            sc,
            "outcomes_report",
            "string",
            quoted(daemon::DEFAULT_OUTCOMES_REPORT),
            "cron expression or `off`",
            "Write the predicted-versus-actual report.",
        ),
    ]);
}

/// Renders the reference as Markdown, the content of [`REFERENCE_PATH`].
pub fn render_markdown() -> String {
    let keys = keys();
    let mut text = String::new();
    text.push_str("# Configuration reference\n\n");
    text.push_str(
        "<!-- Generated by `cargo run -- init --reference > docs/CONFIG.md`; edit\n     \
         src/config/reference.rs, not this file. -->\n\n",
    );
    text.push_str(
        "Every table and key `leadscore.toml` accepts. Unknown keys are errors. Secrets are \
         never in the file: keys ending in `_env` name the environment variables that hold \
         them. `leadscore init` prints an annotated example, and `leadscore check -c FILE` \
         validates a file.\n",
    );
    for table in tables() {
        let heading = if table.array {
            format!("[[{}]]", table.path)
        } else {
            format!("[{}]", table.path)
        };
        let _ = write!(text, "\n## `{heading}`\n\n{}\n", table.meaning);
        let table_keys: Vec<&KeyDoc> = keys.iter().filter(|k| k.table == table.path).collect();
        if table_keys.is_empty() {
            continue;
        }
        text.push('\n');
        text.push_str("| key | type | default | allowed | meaning |\n");
        text.push_str("| --- | --- | --- | --- | --- |\n");
        for doc in table_keys {
            let default = code_unless_prose(&doc.default);
            let _ = writeln!(
                text,
                "| `{}` | {} | {} | {} | {} |",
                doc.key,
                doc.kind,
                escape_cell(&default),
                escape_cell(&doc.allowed),
                escape_cell(doc.meaning)
            );
        }
    }
    text
}

/// Wraps a literal default in backticks; a default in words stays as it is.
fn code_unless_prose(default: &str) -> String {
    let literal = default.starts_with('"')
        || default.starts_with('[')
        || default == "true"
        || default == "false"
        || default.parse::<f64>().is_ok();
    if literal {
        format!("`{default}`")
    } else {
        default.to_string()
    }
}

/// Escapes the characters that end a Markdown table cell.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::super::toml_walk::READ_KEYS;
    use super::super::{Config, SECRET_KEYS};
    use super::*;

    const SALESFORCE: &str = include_str!("../../deploy/leadscore.example.toml");
    const HUBSPOT: &str = include_str!("../../deploy/leadscore.hubspot.example.toml");

    /// Configurations that together take every branch of the parser that reads keys: both
    /// CRMs, both HubSpot credentials, both enrichment joins, a table column and a webhook.
    fn sample_configs() -> Vec<String> {
        let oauth = HUBSPOT.replace(
            "token_env = \"LEADSCORE_HUBSPOT_TOKEN\"",
            "refresh_token_env = \"HS_REFRESH\"\nclient_id = \"app\"\nclient_secret_env = \"HS_SECRET\"",
        );
        let by_key = format!(
            "{SALESFORCE}\n[[enrichment]]\nname = \"cms\"\nobject = \"account\"\n\
             source = \"cms-hospitals\"\nkey = {{ field = \"CCN__c\", column = \"Facility ID\" }}\n\
             columns = [\"Hospital Type\", {{ column = \"Hospital overall rating\", name = \"stars\" }}]\n\
             [webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"HOOK_SECRET\"\n"
        );
        let by_match = format!(
            "{SALESFORCE}\n[[enrichment]]\nname = \"cms\"\nobject = \"account\"\n\
             file = \"hospitals.csv\"\nmatch = {{ name_field = \"Name\", state_field = \"BillingState\", \
             name_column = \"Facility Name\", state_column = \"State\" }}\ncolumns = [\"Hospital Type\"]\n"
        );
        vec![
            SALESFORCE.to_string(),
            HUBSPOT.to_string(),
            oauth,
            by_key,
            by_match,
        ]
    }

    /// Parses the sample configurations and returns the keys the parser read, by table.
    fn keys_read_by_parser() -> BTreeMap<String, BTreeSet<&'static str>> {
        READ_KEYS.with(|keys| keys.borrow_mut().clear());
        for text in sample_configs() {
            // Only the keys read matter here; a sample may fail a cross-key check.
            let _ = Config::parse(&text, Path::new("leadscore.toml"), Path::new("/tmp"));
        }
        READ_KEYS.with(|keys| keys.borrow().clone())
    }

    #[test]
    fn every_parsed_key_documented() {
        let read = keys_read_by_parser();
        let documented: BTreeSet<(String, String)> = keys()
            .iter()
            .map(|k| (k.table.to_string(), k.key.to_string()))
            .collect();
        let tables: BTreeSet<&str> = tables().iter().map(|t| t.path).collect();
        for (table, names) in &read {
            for &name in names {
                let path = if table.is_empty() {
                    name.to_string()
                } else {
                    format!("{table}.{name}")
                };
                if tables.contains(path.as_str()) {
                    continue;
                }
                assert!(
                    !table.is_empty(),
                    "the parser reads the table [{path}], which src/config/reference.rs does not document"
                );
                if table == "connector" && SECRET_KEYS.contains(&name) {
                    continue;
                }
                assert!(
                    documented.contains(&(table.clone(), name.to_string())),
                    "the parser reads {path}, which src/config/reference.rs does not document"
                );
            }
        }
    }

    #[test]
    fn every_documented_key_parsed() {
        let read = keys_read_by_parser();
        for doc in keys() {
            let known = read
                .get(doc.table)
                .is_some_and(|names| names.contains(doc.key));
            assert!(
                known,
                "src/config/reference.rs documents {}.{}, which the parser never reads",
                doc.table, doc.key
            );
        }
        for table in tables() {
            assert!(
                read.contains_key(table.path),
                "src/config/reference.rs documents [{}], which the parser never reads",
                table.path
            );
        }
    }

    #[test]
    fn documented_keys_unique() {
        let mut seen = BTreeSet::new();
        for doc in keys() {
            assert!(
                seen.insert((doc.table, doc.key)),
                "{}.{} is documented twice",
                doc.table,
                doc.key
            );
        }
    }

    #[test]
    fn amount_fields_meaning_names_defaults() {
        for field in super::super::sync::DEFAULT_AMOUNT_FIELDS {
            assert!(
                AMOUNT_FIELDS_MEANING.contains(&format!("`{field}`")),
                "the currency.amount_fields meaning does not name {field}"
            );
        }
    }

    #[test]
    fn committed_reference_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE_PATH);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == render_markdown(),
            "{} is out of date; regenerate it with `cargo run -- init --reference > {}`",
            path.display(),
            REFERENCE_PATH
        );
    }
}
