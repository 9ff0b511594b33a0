//! Crossing detection: the alert rules of a configuration and, per record, which rules fire.
//!
//! Each rule is a score threshold: `[alerts] threshold`, and for every tier in `into_tiers`
//! that tier's lower bound from `[tiers]`. A rule fires when a record is at or above its
//! threshold and the rule is not latched. Firing latches the rule, and it unlatches once the
//! score falls below the threshold minus `band`. So a score that wobbles around the threshold
//! alerts once, and a record first seen above a threshold alerts once too.

use crate::config::Config;

/// One alert rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Stable name kept in the store's latch list, such as `threshold` or `tier A`.
    pub name: String,
    /// Text for the task, such as `score 80` or `tier A`.
    pub label: String,
    pub threshold: f64,
}

/// Returns the rules of the configuration, highest threshold first.
pub fn rules(config: &Config) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(threshold) = config.alerts.threshold {
        rules.push(Rule {
            // The value is part of the name, so a changed threshold is a new rule.
            name: format!("threshold {}", format_score(threshold)),
            label: format!("score {}", format_score(threshold)),
            threshold,
        });
    }
    let bounds = [config.tiers.a, config.tiers.b, config.tiers.c];
    for &index in &config.alerts.into_tiers {
        let Some(&threshold) = bounds.get(index) else {
            continue;
        };
        let letter = ["A", "B", "C"][index];
        rules.push(Rule {
            name: format!("tier {letter} {}", format_score(threshold)),
            label: format!("tier {}", config.tiers.labels[index]),
            threshold,
        });
    }
    rules.sort_by(|a, b| b.threshold.total_cmp(&a.threshold));
    rules
}

/// Returns the names of the rules that fire for `score`, and updates `latched`: rules the
/// score left by more than `band` are removed. Firing rules are not added; the caller latches
/// them once the alert is recorded, so a crossing held back stays armed.
pub fn evaluate(rules: &[Rule], band: f64, score: f64, latched: &mut Vec<String>) -> Vec<String> {
    latched.retain(|name| {
        rules
            .iter()
            .find(|rule| &rule.name == name)
            .is_some_and(|rule| score >= rule.threshold - band)
    });
    rules
        .iter()
        .filter(|rule| score >= rule.threshold && !latched.contains(&rule.name))
        .map(|rule| rule.name.clone())
        .collect()
}

/// Returns the names of the rules `score` is at or above, for a quiet first pass.
pub fn at_or_above(rules: &[Rule], score: f64) -> Vec<String> {
    rules
        .iter()
        .filter(|rule| score >= rule.threshold)
        .map(|rule| rule.name.clone())
        .collect()
}

/// Formats a 0-100 score with at most one decimal.
pub fn format_score(score: f64) -> String {
    let rounded = (score * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(at: f64) -> Vec<Rule> {
        vec![Rule {
            name: "threshold".to_string(),
            label: format!("score {at}"),
            threshold: at,
        }]
    }

    /// Feeds scores through one rule and returns the indexes of the passes that fired.
    fn fired_at(scores: &[f64], band: f64) -> Vec<usize> {
        let rules = threshold(80.0);
        let mut latched = Vec::new();
        let mut fired = Vec::new();
        for (index, score) in scores.iter().enumerate() {
            let names = evaluate(&rules, band, *score, &mut latched);
            if !names.is_empty() {
                fired.push(index);
                latched.extend(names);
            }
        }
        fired
    }

    #[test]
    fn crossing_fires_once() {
        assert_eq!(fired_at(&[50.0, 79.9, 80.0, 85.0, 90.0], 10.0), vec![2]);
    }

    #[test]
    fn oscillation_inside_band_is_silent() {
        assert_eq!(
            fired_at(&[60.0, 81.0, 75.0, 82.0, 70.0, 84.0], 10.0),
            vec![1]
        );
    }

    #[test]
    fn leaving_band_rearms() {
        assert_eq!(fired_at(&[60.0, 81.0, 69.9, 80.0], 10.0), vec![1, 3]);
    }

    #[test]
    fn zero_band_rearms_below_threshold() {
        assert_eq!(fired_at(&[81.0, 79.0, 81.0], 0.0), vec![0, 2]);
    }

    #[test]
    fn unknown_latch_names_are_dropped() {
        let mut latched = vec!["tier A".to_string()];
        let fired = evaluate(&threshold(80.0), 10.0, 85.0, &mut latched);
        assert!(latched.is_empty());
        assert_eq!(fired, vec!["threshold".to_string()]);
    }

    #[test]
    fn score_formatting() {
        assert_eq!(format_score(80.0), "80");
        assert_eq!(format_score(80.04), "80");
        assert_eq!(format_score(80.25), "80.3");
    }
}
