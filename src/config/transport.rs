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
}

/// Keys this module reads from a `[connector]` table.
pub(super) const TRANSPORT_KEYS: [&str; 3] = [
    "refresh_token_file",
    "api_budget_share",
    "daily_api_allowance",
];

/// Reads the transport keys. `oauth` is false for a HubSpot private app, which has no refresh
/// token; `hubspot` is true for HubSpot connectors.
pub(super) fn read_transport(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    oauth: bool,
    hubspot: bool,
) -> TransportSettings {
    let file_example = r#"refresh_token_file = "/var/lib/leadscore/refresh-token""#;
    let refresh_token_file = s
        .string(issues, "refresh_token_file", file_example)
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
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};
    use crate::demo::{hubspot_sandbox_config, sandbox_config};

    fn salesforce(lines: &str) -> Result<Config, ConfigError> {
        let text = sandbox_config("http://127.0.0.1:9", "data").replacen(
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
}
