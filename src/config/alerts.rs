//! `[alerts]` and `[webhook]`: threshold alerts to owning reps as CRM tasks, and the signed webhook.

use std::time::Duration;

use url::Url;

use super::toml_walk::{Issues, Section};
use crate::level::Level;

/// Default `[alerts] band`: points below the threshold a record must fall to before it can
/// alert again.
pub const DEFAULT_BAND: f64 = 10.0;
/// Default `[alerts] per_rep_daily_cap`: alerts one user receives per UTC day.
pub const DEFAULT_PER_REP_DAILY_CAP: u32 = 10;
/// Default `[webhook] timeout_secs`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `[webhook] max_attempts`: the first attempt and the retries together.
pub const DEFAULT_WEBHOOK_ATTEMPTS: u32 = 4;

/// The settings read from `[alerts]` and `[webhook]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// Alerts are sent only when this is true.
    pub enabled: bool,
    /// The scoring levels whose records alert.
    pub levels: Vec<Level>,
    /// Alert when a score rises from below to at or above this 0-100 value.
    pub threshold: Option<f64>,
    /// Alert when a record's tier rises into one of these tiers (0 is A, 1 is B, 2 is C).
    pub into_tiers: Vec<usize>,
    /// Points below a rule's threshold a record must fall to before the rule can fire again.
    pub band: f64,
    /// Alerts one user receives per UTC day; later crossings wait for a later day.
    pub per_rep_daily_cap: u32,
    /// The first pass of a level without alert state records every record and sends nothing.
    pub quiet_first_run: bool,
    /// The user that receives alerts whose owner is inactive, not a user, or missing.
    pub fallback_owner: Option<String>,
    /// `[webhook]`, when present: alerts (and territory lists) are also posted there.
    pub webhook: Option<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: false,
            levels: vec![Level::Account],
            threshold: None,
            into_tiers: Vec::new(),
            band: DEFAULT_BAND,
            per_rep_daily_cap: DEFAULT_PER_REP_DAILY_CAP,
            quiet_first_run: true,
            fallback_owner: None,
            webhook: None,
        }
    }
}

/// The `[webhook]` table: where JSON events are posted and how they are signed.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    pub url: Url,
    /// The environment variable that contains the HMAC-SHA256 key. The key is never in the file.
    pub secret_env: String,
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// Accept a plain http `url` to a host other than loopback.
    pub allow_insecure_http: bool,
}

/// Returns true for a name a shell can export: letters, digits and `_`, not starting with a digit.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads `[alerts]` and `[webhook]`.
pub(super) fn read_alerts(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> AlertsConfig {
    let webhook = read_webhook(top, issues);
    let mut section = top.table(issues, "alerts");
    let defaults = AlertsConfig::default();
    let enabled = section
        .boolean(issues, "enabled", "enabled = true")
        .unwrap_or(false);

    let levels_example = r#"levels = ["account", "contact"]"#;
    let mut levels = Vec::new();
    for name in section
        .string_array(issues, "levels", levels_example)
        .unwrap_or_default()
    {
        match Level::parse(name.get_ref()) {
            Some(level) if levels.contains(&level) => issues.push(
                name.span(),
                &section.key_path("levels"),
                format!("level {:?} is listed twice", name.get_ref()),
                Some(levels_example),
            ),
            Some(level) => levels.push(level),
            None => issues.push(
                name.span(),
                &section.key_path("levels"),
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
        levels = defaults.levels.clone();
    }

    let threshold = section.float(issues, "threshold", 0.0, 100.0, "threshold = 80");
    let tiers_example = r#"into_tiers = ["A"]"#;
    let mut into_tiers = Vec::new();
    for name in section
        .string_array(issues, "into_tiers", tiers_example)
        .unwrap_or_default()
    {
        let index = match name.get_ref().trim().to_ascii_uppercase().as_str() {
            "A" => Some(0),
            "B" => Some(1),
            "C" => Some(2),
            _ => None,
        };
        match index {
            Some(index) if !into_tiers.contains(&index) => into_tiers.push(index),
            Some(_) => issues.push(
                name.span(),
                &section.key_path("into_tiers"),
                format!("tier {:?} is listed twice", name.get_ref()),
                Some(tiers_example),
            ),
            None => issues.push(
                name.span(),
                &section.key_path("into_tiers"),
                format!(
                    "{:?} is not a tier a score can rise into; use \"A\", \"B\" or \"C\" (D is the lowest tier)",
                    name.get_ref()
                ),
                Some(tiers_example),
            ),
        }
    }
    into_tiers.sort_unstable();

    let band = section
        .float(issues, "band", 0.0, 100.0, "band = 10")
        .unwrap_or(defaults.band);
    let per_rep_daily_cap = section
        .integer(
            issues,
            "per_rep_daily_cap",
            1..10_001,
            "per_rep_daily_cap = 10",
        )
        .map(|cap| cap as u32)
        .unwrap_or(defaults.per_rep_daily_cap);
    let quiet_first_run = section
        .boolean(issues, "quiet_first_run", "quiet_first_run = true")
        .unwrap_or(defaults.quiet_first_run);
    let fallback_owner = section
        .string(
            issues,
            "fallback_owner",
            r#"fallback_owner = "005000000000001AAA""#,
        )
        .map(|owner| owner.into_inner().trim().to_string());

    let rule_given = section.raw("threshold").is_some() || section.raw("into_tiers").is_some();
    if enabled && threshold.is_none() && into_tiers.is_empty() && !rule_given {
        issues.push(
            section.span(),
            &section.key_path("threshold"),
            "alerts are enabled but no rule is set; set threshold (a score from 0 to 100), \
             into_tiers, or both"
                .to_string(),
            Some("threshold = 80"),
        );
    }
    section.finish(issues);
    AlertsConfig {
        enabled,
        levels,
        threshold,
        into_tiers,
        band,
        per_rep_daily_cap,
        quiet_first_run,
        fallback_owner,
        webhook,
    }
}

/// Reads `[webhook]`; `None` when the table is absent or invalid.
fn read_webhook(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<WebhookConfig> {
    let present = top.raw("webhook").is_some();
    let mut section = top.table(issues, "webhook");
    if !present {
        section.finish(issues);
        return None;
    }
    let url_example = r#"url = "https://hooks.example.com/leadscore""#;
    let allow_insecure_http = section
        .boolean(issues, "allow_insecure_http", "allow_insecure_http = false")
        .unwrap_or(false);
    let url = section
        .required_string(issues, "url", url_example)
        .and_then(|text| match Url::parse(text.get_ref().trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                let plain_http = leadscore_connector::http::check_plain_http(
                    &url,
                    allow_insecure_http,
                    "[webhook] allow_insecure_http",
                );
                match plain_http {
                    Ok(()) => Some(url),
                    Err(message) => {
                        issues.push(
                            text.span(),
                            &section.key_path("url"),
                            message,
                            Some(url_example),
                        );
                        None
                    }
                }
            }
            Ok(url) => {
                issues.push(
                    text.span(),
                    &section.key_path("url"),
                    format!(
                        "{} is not an http or https URL with a host",
                        leadscore_connector::http::redact_url(&url)
                    ),
                    Some(url_example),
                );
                None
            }
            Err(error) => {
                issues.push(
                    text.span(),
                    &section.key_path("url"),
                    format!("{:?} is not a URL: {error}", text.get_ref()),
                    Some(url_example),
                );
                None
            }
        });
    let secret_example = r#"secret_env = "LEADSCORE_WEBHOOK_SECRET""#;
    let secret_env = section
        .required_string(issues, "secret_env", secret_example)
        .and_then(|name| {
            let text = name.get_ref().trim().to_string();
            if is_env_name(&text) {
                Some(text)
            } else {
                issues.push(
                    name.span(),
                    &section.key_path("secret_env"),
                    format!(
                        "{text:?} is not an environment variable name; name the variable that \
                         holds the key (letters, digits and _), never the key itself"
                    ),
                    Some(secret_example),
                );
                None
            }
        });
    let timeout = section
        .integer(issues, "timeout_secs", 1..301, "timeout_secs = 10")
        .map(|secs| Duration::from_secs(secs as u64))
        .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
    let max_attempts = section
        .integer(issues, "max_attempts", 1..21, "max_attempts = 4")
        .map(|n| n as u32)
        .unwrap_or(DEFAULT_WEBHOOK_ATTEMPTS);
    section.finish(issues);
    Some(WebhookConfig {
        url: url?,
        secret_env: secret_env?,
        timeout,
        max_attempts,
        allow_insecure_http,
    })
}
