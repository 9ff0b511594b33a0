//! The `[connector]` keys that choose Salesforce Bulk API 2.0 for large pulls.

use std::time::Duration;

use super::toml_walk::{Issues, Section};

/// Keys this module reads from a Salesforce `[connector]` table.
pub(super) const BULK_KEYS: [&str; 3] = ["bulk_threshold", "bulk_objects", "bulk_timeout_secs"];

/// When a Salesforce pull uses Bulk API 2.0 instead of REST queries.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkSettings {
    /// Rows above which a pull switches to Bulk API 2.0, counted by the first REST page's
    /// `totalSize`. Defaults to `leadscore_salesforce::DEFAULT_BULK_THRESHOLD` (20,000).
    pub threshold: u64,
    /// Objects pulled with Bulk API 2.0 whatever their size, such as `Task`.
    pub objects: Vec<String>,
    /// How long one Bulk query job may take before the pull aborts it and fails.
    pub timeout: Duration,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
            objects: Vec::new(),
            timeout: leadscore_salesforce::DEFAULT_BULK_POLL_TIMEOUT,
        }
    }
}

/// Reads `bulk_threshold`, `bulk_objects` and `bulk_timeout_secs`, reporting invalid values.
pub(super) fn read_bulk(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> BulkSettings {
    let defaults = BulkSettings::default();
    let threshold = s
        .integer(
            issues,
            "bulk_threshold",
            0..1_000_000_000_001,
            "bulk_threshold = 20000",
        )
        .map_or(defaults.threshold, |n| n as u64);
    let objects_example = r#"bulk_objects = ["Task", "Event"]"#;
    let mut objects: Vec<String> = Vec::new();
    for name in s
        .string_array(issues, "bulk_objects", objects_example)
        .unwrap_or_default()
    {
        let text = name.get_ref().trim();
        let valid = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            issues.push(
                name.span(),
                &s.key_path("bulk_objects"),
                format!(
                    "{text:?} is not a Salesforce object API name; use names such as \"Task\" \
                     or \"Visit__c\""
                ),
                Some(objects_example),
            );
        } else if !objects.iter().any(|o| o.eq_ignore_ascii_case(text)) {
            objects.push(text.to_string());
        }
    }
    let timeout = s
        .integer(
            issues,
            "bulk_timeout_secs",
            1..86_401,
            "bulk_timeout_secs = 600",
        )
        .map_or(defaults.timeout, |n| Duration::from_secs(n as u64));
    BulkSettings {
        threshold,
        objects,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, ConfigError, ConnectorSettings};

    const EXAMPLE: &str = include_str!("../../deploy/leadscore.example.toml");
    const ANCHOR: &str = "refresh_token_env = \"LEADSCORE_SF_REFRESH_TOKEN\"\n";

    fn parse_with(keys: &str) -> Result<Config, ConfigError> {
        let text = EXAMPLE.replace(ANCHOR, &format!("{ANCHOR}{keys}\n"));
        Config::parse(
            &text,
            Path::new("leadscore.toml"),
            Path::new("/etc/leadscore"),
        )
    }

    fn bulk_of(config: &Config) -> &super::BulkSettings {
        match &config.connector {
            ConnectorSettings::Salesforce(settings) => &settings.bulk,
            other => panic!("expected Salesforce settings, got {other:?}"),
        }
    }

    #[test]
    fn bulk_defaults_when_absent() {
        let config = parse_with("").expect("example parses");
        assert_eq!(bulk_of(&config), &super::BulkSettings::default());
        assert_eq!(bulk_of(&config).threshold, 20_000);
    }

    #[test]
    fn bulk_keys_parse() {
        let config = parse_with(
            "bulk_threshold = 5000\nbulk_objects = [\"Task\", \"task\", \"Event\"]\nbulk_timeout_secs = 30",
        )
        .expect("valid keys parse");
        let bulk = bulk_of(&config);
        assert_eq!(bulk.threshold, 5000);
        assert_eq!(bulk.objects, vec!["Task", "Event"]);
        assert_eq!(bulk.timeout, Duration::from_secs(30));
    }

    #[test]
    fn invalid_bulk_values_name_the_key() {
        let cases = [
            ("bulk_threshold = -1", "connector.bulk_threshold"),
            ("bulk_objects = [\"Task WHERE\"]", "connector.bulk_objects"),
            ("bulk_objects = \"Task\"", "connector.bulk_objects"),
            ("bulk_timeout_secs = 0", "connector.bulk_timeout_secs"),
        ];
        for (line, key) in cases {
            let error = parse_with(line).expect_err(line);
            let keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
            assert_eq!(keys, vec![key], "{line}: {error}");
        }
    }
}
