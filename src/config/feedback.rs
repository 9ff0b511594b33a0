//! `[feedback]`: rep flags on wrong scores and how training uses them.

use super::toml_walk::{Issues, Section};
use super::ConnectorSettings;

/// Default flag field on Salesforce: a picklist with the values `Too high`, `Too low`, `Right`.
pub const SALESFORCE_FIELD: &str = "LS_Feedback__c";
/// Default comment field on Salesforce: a short text field.
pub const SALESFORCE_COMMENT_FIELD: &str = "LS_Feedback_Comment__c";
/// Default flag property on HubSpot, created by `leadscore check --fix`.
pub const HUBSPOT_FIELD: &str = "ls_feedback";
/// Default comment property on HubSpot, created by `leadscore check --fix`.
pub const HUBSPOT_COMMENT_FIELD: &str = "ls_feedback_comment";

/// The use training makes of rep flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackUse {
    /// Flags are stored and reported on the model card; training ignores them.
    #[default]
    Review,
    /// Examples of flagged records whose flag agrees with the outcome get `weight`.
    Weights,
}

/// The `[feedback]` table. Field names left unset take the connector's default, so one file
/// with a Salesforce and a HubSpot connector reads `LS_Feedback__c` on one and `ls_feedback`
/// on the other.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackConfig {
    /// The flag field, when the file names one.
    pub field: Option<String>,
    /// The comment field, when the file names one.
    pub comment_field: Option<String>,
    pub use_flags: FeedbackUse,
    /// Sample weight of an example whose record's flag agrees with its outcome.
    pub weight: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            field: None,
            comment_field: None,
            use_flags: FeedbackUse::Review,
            weight: 2.0,
        }
    }
}

impl FeedbackConfig {
    /// Returns the flag field for `connector`, as this file names fields (before the
    /// `[connector] fields` renaming).
    pub fn field_for(&self, connector: &ConnectorSettings) -> String {
        self.field.clone().unwrap_or_else(|| {
            match connector {
                ConnectorSettings::Salesforce(_) => SALESFORCE_FIELD,
                ConnectorSettings::HubSpot(_) => HUBSPOT_FIELD,
            }
            .to_string()
        })
    }

    /// Returns the comment field for `connector`, as this file names fields.
    pub fn comment_field_for(&self, connector: &ConnectorSettings) -> String {
        self.comment_field.clone().unwrap_or_else(|| {
            match connector {
                ConnectorSettings::Salesforce(_) => SALESFORCE_COMMENT_FIELD,
                ConnectorSettings::HubSpot(_) => HUBSPOT_COMMENT_FIELD,
            }
            .to_string()
        })
    }
}

/// Reads `[feedback]`.
pub(super) fn read_feedback(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> FeedbackConfig {
    let defaults = FeedbackConfig::default();
    let mut section = top.table(issues, "feedback");

    // The walker rejects empty strings, naming the key.
    let mut name = |key: &'static str, example: &str| {
        section
            .string(issues, key, example)
            .map(|value| value.into_inner().trim().to_string())
    };
    let field = name("field", r#"field = "LS_Feedback__c""#);
    let comment_field = name(
        "comment_field",
        r#"comment_field = "LS_Feedback_Comment__c""#,
    );
    if let (Some(flag), Some(comment)) = (&field, &comment_field) {
        if flag.eq_ignore_ascii_case(comment) {
            let span = section
                .raw("comment_field")
                .map_or_else(|| section.span(), |value| value.span());
            issues.push(
                span,
                &section.key_path("comment_field"),
                format!("{comment:?} is also the flag field; give the comment its own field"),
                Some(r#"comment_field = "LS_Feedback_Comment__c""#),
            );
        }
    }

    let use_example = r#"use = "review""#;
    let use_flags = match section.string(issues, "use", use_example) {
        None => defaults.use_flags,
        Some(value) => match value.get_ref().as_str() {
            "review" => FeedbackUse::Review,
            "weights" => FeedbackUse::Weights,
            other => {
                issues.push(
                    value.span(),
                    &section.key_path("use"),
                    format!("{other:?} is not a use of flags; use \"review\" to report flags only or \"weights\" to weight the flagged examples in training"),
                    Some(use_example),
                );
                defaults.use_flags
            }
        },
    };

    let weight = section
        .float(issues, "weight", 1.0, 100.0, "weight = 2.0")
        .unwrap_or(defaults.weight);
    section.finish(issues);
    FeedbackConfig {
        field,
        comment_field,
        use_flags,
        weight,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("leadscore.toml"), Path::new("."))
    }

    fn salesforce(feedback: &str) -> String {
        let text = crate::demo::sandbox_config("http://127.0.0.1:9", "store");
        let start = text.find("[feedback]").expect("the example has [feedback]");
        let end = text[start + 1..]
            .find("\n[")
            .map_or(text.len(), |offset| start + 1 + offset);
        format!("{}{feedback}\n{}", &text[..start], &text[end..])
    }

    #[test]
    fn defaults_follow_the_connector() {
        let config = parse(&salesforce("")).expect("valid");
        assert_eq!(config.feedback, FeedbackConfig::default());
        assert_eq!(
            config.feedback.field_for(&config.connector),
            SALESFORCE_FIELD
        );
        assert_eq!(
            config.feedback.comment_field_for(&config.connector),
            SALESFORCE_COMMENT_FIELD
        );
        let hubspot = crate::demo::hubspot_sandbox_config("http://127.0.0.1:9", "store");
        let config = parse(&hubspot).expect("valid HubSpot config");
        assert_eq!(config.feedback.field_for(&config.connector), HUBSPOT_FIELD);
        assert_eq!(
            config.feedback.comment_field_for(&config.connector),
            HUBSPOT_COMMENT_FIELD
        );
    }

    #[test]
    fn keys_are_read() {
        let text = salesforce(
            "[feedback]\nfield = \"Rep_Flag__c\"\ncomment_field = \"Rep_Note__c\"\nuse = \"weights\"\nweight = 4",
        );
        let config = parse(&text).expect("valid");
        assert_eq!(config.feedback.field.as_deref(), Some("Rep_Flag__c"));
        assert_eq!(
            config.feedback.comment_field.as_deref(),
            Some("Rep_Note__c")
        );
        assert_eq!(config.feedback.use_flags, FeedbackUse::Weights);
        assert_eq!(config.feedback.weight, 4.0);
    }

    #[test]
    fn invalid_values_name_key_and_fix() {
        let cases = [
            ("use = \"sometimes\"", "feedback.use", "\"review\""),
            ("weight = 0.5", "feedback.weight", "from 1 to 100"),
            ("field = \" \"", "feedback.field", "must not be empty"),
            (
                "field = \"X__c\"\ncomment_field = \"x__c\"",
                "feedback.comment_field",
                "also the flag field",
            ),
        ];
        for (body, key, words) in cases {
            let err = parse(&salesforce(&format!("[feedback]\n{body}")))
                .expect_err(body)
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
            assert!(err.contains(words), "{body}: {err}");
        }
    }
}
