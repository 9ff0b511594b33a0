//! The `[connector]` keys for the refresh token file and the per-day API budget, which both
//! CRMs share.

use std::path::PathBuf;

use super::toml_walk::{Issues, Section};

/// Default of `daily_api_allowance` for HubSpot: 250,000 calls a day, the smallest allowance
/// HubSpot documents (private apps on Free and Starter).
pub const DEFAULT_HUBSPOT_DAILY_ALLOWANCE: u64 = 250_000;

/// Token storage and API budget settings of one connector.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportSettings {
    /// File with the OAuth refresh token. When it exists it is read instead of the
    /// environment variable, and a refresh token the CRM rotates is written to it.
    pub refresh_token_file: Option<PathBuf>,
    /// Share (0 to 1] of the CRM's remaining daily API calls that the runs of one UTC day may
    /// use together.
    pub api_budget_share: f64,
    /// Daily calls assumed for HubSpot when its responses carry no daily limit headers;
    /// `None` for Salesforce, which always reports its limit.
    pub daily_api_allowance: Option<u64>,
    /// Accept plain http URLs to hosts other than loopback. Plain http to 127.0.0.0/8, ::1
    /// and localhost (the sandboxes) is always accepted.
    pub allow_insecure_http: bool,
}

/// Keys this module reads from a `[connector]` table.
pub(super) const TRANSPORT_KEYS: [&str; 4] = [
    "refresh_token_file",
    "api_budget_share",
    "daily_api_allowance",
    "allow_insecure_http",
];

/// Reads `allow_insecure_http`, false by default. The URL keys of the table need it, so it is
/// read before them.
pub(super) fn read_allow_insecure_http(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> bool {
    s.boolean(issues, "allow_insecure_http", "allow_insecure_http = false")
        .unwrap_or(false)
}

/// Reads the transport keys. `oauth` is false for a HubSpot private app, which has no refresh
/// token; `hubspot` is true for HubSpot connectors. `allow_insecure_http` is the value
/// [`read_allow_insecure_http`] returned.
pub(super) fn read_transport(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    oauth: bool,
    hubspot: bool,
    allow_insecure_http: bool,
) -> TransportSettings {
    let file_example = r#"refresh_token_file = "/var/lib/leadscore/refresh-token""#;
    let refresh_token_file = s
        .path(issues, "refresh_token_file", file_example)
        .and_then(|value| {
            if value.get_ref().trim().is_empty() {
                issues.push(
                    value.span(),
                    &s.key_path("refresh_token_file"),
                    "is empty; give the path of a file the refresh token may be kept in, or \
                     remove the key"
                        .to_string(),
                    Some(file_example),
                );
                return None;
            }
            if !oauth {
                issues.push(
                    value.span(),
                    &s.key_path("refresh_token_file"),
                    "applies to OAuth apps only; a private app token has no refresh token, so \
                     remove the key or switch to refresh_token_env"
                        .to_string(),
                    None,
                );
                return None;
            }
            Some(PathBuf::from(value.into_inner()))
        });
    let api_budget_share = s
        .float(
            issues,
            "api_budget_share",
            0.001,
            1.0,
            "api_budget_share = 0.25",
        )
        .unwrap_or(leadscore_connector::limits::DEFAULT_BUDGET_SHARE);
    let allowance_example = "daily_api_allowance = 250000";
    let allowance = s
        .integer(
            issues,
            "daily_api_allowance",
            1..1_000_000_000,
            allowance_example,
        )
        .map(|n| n as u64);
    let daily_api_allowance = if hubspot {
        Some(allowance.unwrap_or(DEFAULT_HUBSPOT_DAILY_ALLOWANCE))
    } else {
        if let (Some(_), Some(value)) = (allowance, s.raw("daily_api_allowance")) {
            issues.push(
                value.span(),
                &s.key_path("daily_api_allowance"),
                "applies to HubSpot only; Salesforce reports its daily API limit in GET /limits, \
                 so remove the key"
                    .to_string(),
                None,
            );
        }
        None
    };
    TransportSettings {
        refresh_token_file,
        api_budget_share,
        daily_api_allowance,
        allow_insecure_http,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};
    use crate::demo::{hubspot_sandbox_config, sandbox_config};

    fn salesforce(lines: &str) -> Result<Config, ConfigError> {
        parse_with_url(sandbox_config("http://127.0.0.1:9", "data"), lines)
    }

    fn hubspot(lines: &str) -> Result<Config, ConfigError> {
        let text = hubspot_sandbox_config("http://127.0.0.1:9", "data").replacen(
            "cursor_lookback_secs = 300",
            &format!("cursor_lookback_secs = 300\n{lines}"),
            1,
        );
        Config::parse(
            &text,
            Path::new("leadscore.toml"),
            Path::new("/etc/leadscore"),
        )
    }

    fn messages(error: ConfigError) -> String {
        error.to_string()
    }

    #[test]
    fn defaults_without_keys() {
        let config = salesforce("").unwrap();
        let transport = config.connector.transport();
        assert_eq!(transport.refresh_token_file, None);
        assert_eq!(transport.api_budget_share, 0.25);
        assert_eq!(transport.daily_api_allowance, None);

        let config = hubspot("").unwrap();
        let transport = config.connector.transport();
        assert_eq!(
            transport.daily_api_allowance,
            Some(super::DEFAULT_HUBSPOT_DAILY_ALLOWANCE)
        );
    }

    #[test]
    fn relative_token_file_follows_config() {
        let config =
            salesforce("refresh_token_file = \"secrets/token\"\napi_budget_share = 0.5").unwrap();
        let transport = config.connector.transport();
        assert_eq!(
            transport.refresh_token_file.as_deref(),
            Some(Path::new("/etc/leadscore/secrets/token"))
        );
        assert_eq!(transport.api_budget_share, 0.5);
    }

    #[test]
    fn invalid_values_named() {
        let text = messages(salesforce("api_budget_share = 1.5").unwrap_err());
        assert!(text.contains("api_budget_share"), "{text}");
        let text = messages(salesforce("daily_api_allowance = 1000").unwrap_err());
        assert!(text.contains("applies to HubSpot only"), "{text}");
        let text = messages(salesforce("refresh_token_file = \"\"").unwrap_err());
        assert!(text.contains("connector.refresh_token_file"), "{text}");
        let text = messages(hubspot("refresh_token_file = \"token\"").unwrap_err());
        assert!(text.contains("applies to OAuth apps only"), "{text}");
    }

    fn parse_with_url(text: String, lines: &str) -> Result<Config, ConfigError> {
        let text = text.replacen(
            "cursor_lookback_secs = 300",
            &format!("cursor_lookback_secs = 300\n{lines}"),
            1,
        );
        Config::parse(
            &text,
            Path::new("leadscore.toml"),
            Path::new("/etc/leadscore"),
        )
    }

    #[test]
    fn remote_plain_http_rejected() {
        let remote = "http://crm.example.com:8580";
        let salesforce_text = sandbox_config(remote, "data");
        let text = messages(parse_with_url(salesforce_text.clone(), "").unwrap_err());
        assert!(text.contains("connector.login_url"), "{text}");
        assert!(text.contains("http://crm.example.com:8580/"), "{text}");
        assert!(text.contains("allow_insecure_http = true"), "{text}");

        let hubspot_text = hubspot_sandbox_config(remote, "data");
        let text = messages(parse_with_url(hubspot_text.clone(), "").unwrap_err());
        assert!(text.contains("connector.base_url"), "{text}");
        assert!(text.contains("allow_insecure_http"), "{text}");

        let text = messages(
            parse_with_url(salesforce_text.clone(), "allow_insecure_http = \"yes\"").unwrap_err(),
        );
        assert!(text.contains("connector.allow_insecure_http"), "{text}");
    }

    #[test]
    fn remote_plain_http_allowed_by_flag() {
        let remote = "http://crm.example.com:8580";
        let config = parse_with_url(sandbox_config(remote, "data"), "allow_insecure_http = true")
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(config.connector.transport().allow_insecure_http);
        let config = parse_with_url(
            hubspot_sandbox_config(remote, "data"),
            "allow_insecure_http = true",
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(config.connector.transport().allow_insecure_http);
        // Loopback needs no flag.
        let config = salesforce("").unwrap();
        assert!(!config.connector.transport().allow_insecure_http);
    }

    #[test]
    fn webhook_remote_plain_http() {
        let webhook = |lines: &str| {
            let text = format!(
                "{}\n[webhook]\nurl = \"http://hooks.example.com/x?token=abc\"\n\
                 secret_env = \"HOOK_KEY\"\n{lines}",
                sandbox_config("http://127.0.0.1:9", "data")
            );
            Config::parse(
                &text,
                Path::new("leadscore.toml"),
                Path::new("/etc/leadscore"),
            )
        };
        let text = messages(webhook("").unwrap_err());
        assert!(text.contains("webhook.url"), "{text}");
        assert!(text.contains("[webhook] allow_insecure_http"), "{text}");
        assert!(!text.contains("token=abc"), "{text}");
        let config = webhook("allow_insecure_http = true").unwrap_or_else(|e| panic!("{e}"));
        let hook = config.alerts.webhook.expect("webhook read");
        assert!(hook.allow_insecure_http);
    }
}
