//! The text of an alert task and its key.

use sha2::{Digest, Sha256};

use super::detect::format_score;
use crate::level::Level;

/// Subject prefix of every task leadscore creates. Feature building skips activities whose
/// subject starts with it, so alerts do not raise the scores they report.
pub const TASK_SUBJECT_PREFIX: &str = "[leadscore]";

/// Maximum subject length in characters, the length of Salesforce's `Task.Subject`.
const MAX_SUBJECT_CHARS: usize = 255;

/// Text before the key in the task body.
const KEY_LABEL: &str = "Alert key:";

/// Returns true when an activity subject is one of leadscore's own alert tasks.
pub fn is_own_task(subject: &str) -> bool {
    subject.trim_start().starts_with(TASK_SUBJECT_PREFIX)
}

/// Returns the key of the `sequence`-th alert of a record: `ls` and 20 hex digits of a
/// SHA-256 of the level, object, id and sequence. Letters and digits only, so that CRM search
/// treats it as one word.
pub fn alert_key(level: Level, object: &str, id: &str, sequence: u32) -> String {
    let digest = Sha256::digest(format!("{}|{object}|{id}|{sequence}", level.name()).as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("ls{hex}")
}

/// The change an alert reports, for the subject and body.
pub struct Change<'a> {
    pub name: &'a str,
    pub object: &'a str,
    pub id: &'a str,
    pub from_score: Option<f64>,
    pub to_score: f64,
    pub from_tier: Option<&'a str>,
    pub to_tier: &'a str,
    /// Labels of the rules that fired, such as `score 80` or `tier A`.
    pub rules: Vec<String>,
    pub reasons: &'a [String],
    pub model_version: &'a str,
    /// The reason the task went to the fallback user, if it did.
    pub fallback_reason: Option<&'a str>,
}

/// Returns the task subject: the prefix, the record and the score and tier change.
pub fn subject(change: &Change<'_>) -> String {
    let movement = match (change.from_score, change.from_tier) {
        (Some(from), Some(tier)) => format!(
            "score {} to {}, tier {tier} to {}",
            format_score(from),
            format_score(change.to_score),
            change.to_tier
        ),
        _ => format!(
            "score {}, tier {}",
            format_score(change.to_score),
            change.to_tier
        ),
    };
    let text = format!("{TASK_SUBJECT_PREFIX} {}: {movement}", change.name);
    if text.chars().count() <= MAX_SUBJECT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_SUBJECT_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Returns the task body: what crossed, the top reasons, the model and the alert key.
pub fn body(change: &Change<'_>, key: &str) -> String {
    let mut text = String::new();
    let before = match (change.from_score, change.from_tier) {
        (Some(from), Some(tier)) => format!("from score {} (tier {tier}) ", format_score(from)),
        _ => String::new(),
    };
    text.push_str(&format!(
        "{} ({} {}) rose {before}to score {} (tier {}), reaching {}.\n",
        change.name,
        change.object,
        change.id,
        format_score(change.to_score),
        change.to_tier,
        change.rules.join(" and ")
    ));
    if !change.reasons.is_empty() {
        text.push_str("\nTop reasons:\n");
        for reason in change.reasons {
            text.push_str(&format!("- {reason}\n"));
        }
    }
    if let Some(reason) = change.fallback_reason {
        text.push_str(&format!(
            "\nAssigned to you because {reason}; please pass it to the account's rep.\n"
        ));
    }
    text.push_str(&format!(
        "\nScored by leadscore model {}.\n{KEY_LABEL} {key}",
        change.model_version
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(reasons: &[String]) -> Change<'_> {
        Change {
            name: "Mercy General",
            object: "Account",
            id: "001A",
            from_score: Some(62.04),
            to_score: 84.0,
            from_tier: Some("B"),
            to_tier: "A",
            rules: vec!["score 80".to_string()],
            reasons,
            model_version: "m1",
            fallback_reason: None,
        }
    }

    #[test]
    fn subject_names_change() {
        let reasons = vec!["3 meetings in 30 days".to_string()];
        let subject = subject(&change(&reasons));
        assert_eq!(
            subject,
            "[leadscore] Mercy General: score 62 to 84, tier B to A"
        );
        assert!(is_own_task(&subject));
        assert!(!is_own_task("Call back Mercy General"));
    }

    #[test]
    fn body_lists_reasons_and_key() {
        let reasons = vec!["3 meetings in 30 days".to_string(), "500 beds".to_string()];
        let key = alert_key(Level::Account, "Account", "001A", 1);
        let body = body(&change(&reasons), &key);
        assert!(
            body.contains("- 3 meetings in 30 days\n- 500 beds"),
            "{body}"
        );
        assert!(body.ends_with(&format!("Alert key: {key}")), "{body}");
        assert!(
            body.contains("from score 62 (tier B) to score 84 (tier A)"),
            "{body}"
        );
    }

    #[test]
    fn keys_are_words_and_differ() {
        let first = alert_key(Level::Account, "Account", "001A", 1);
        let second = alert_key(Level::Account, "Account", "001A", 2);
        assert_ne!(first, second);
        assert_eq!(first.len(), 22);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn long_subject_is_cut() {
        let name = "x".repeat(400);
        let reasons = Vec::new();
        let mut long = change(&reasons);
        long.name = &name;
        assert_eq!(subject(&long).chars().count(), 255);
    }
}
