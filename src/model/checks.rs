//! Checks run before training: enough examples of each class, single features that predict
//! the holdout too well to be honest (leakage), and columns too empty or constant to use.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::metrics::roc_auc;

/// A column needs at least this share of non-missing values to be kept.
pub const MIN_PRESENT_SHARE: f64 = 0.01;

/// Outcome of the data-sufficiency check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SufficiencyCheck {
    pub passed: bool,
    pub floor_examples: usize,
    pub floor_minority: usize,
    pub message: String,
}

/// A feature whose values alone rank the holdout rows with an AUC above the leakage threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakageFlag {
    pub feature: String,
    /// The larger of the feature's AUC and 1 - AUC, so either direction counts.
    pub auc: f64,
    /// False when the admin kept the feature on purpose.
    pub excluded: bool,
}

/// A column left out of training, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedFeature {
    pub feature: String,
    pub reason: String,
}

/// Counts examples and the rarer class against the floors.
pub fn sufficiency(
    labels: &[f64],
    floor_examples: usize,
    floor_minority: usize,
) -> SufficiencyCheck {
    let won = labels.iter().filter(|y| **y >= 0.5).count();
    let lost = labels.len() - won;
    let (minority_name, minority) = if won <= lost {
        ("won", won)
    } else {
        ("lost", lost)
    };
    let mut shortfalls = Vec::new();
    if labels.len() < floor_examples {
        shortfalls.push(format!(
            "needs {floor_examples} closed deals, has {}: {} more",
            labels.len(),
            floor_examples - labels.len()
        ));
    }
    if minority < floor_minority {
        shortfalls.push(format!(
            "needs {floor_minority} {minority_name} deals (the rarer class), has {minority}: {} more",
            floor_minority - minority
        ));
    }
    let passed = shortfalls.is_empty();
    let message = if passed {
        format!(
            "{} closed deals ({won} won, {lost} lost) meet the floors of {floor_examples} deals and {floor_minority} of the rarer class",
            labels.len()
        )
    } else {
        format!(
            "{}; collect more closed deals, or lower [model] min_examples and min_minority",
            shortfalls.join("; ")
        )
    };
    SufficiencyCheck {
        passed,
        floor_examples,
        floor_minority,
        message,
    }
}

/// Lists the columns to drop: constant ones (one distinct value, a missing value counting as
/// a value) and those with fewer than 1% non-missing values.
pub fn unusable_columns(rows: &[Vec<f64>], names: &[String]) -> Vec<DroppedFeature> {
    let mut dropped = Vec::new();
    if rows.is_empty() {
        return dropped;
    }
    for (column, name) in names.iter().enumerate() {
        let values: Vec<f64> = rows.iter().map(|row| row[column]).collect();
        let present = values.iter().filter(|v| !v.is_nan()).count();
        let share = present as f64 / values.len() as f64;
        let first = values[0];
        let constant = values
            .iter()
            .all(|v| (v.is_nan() && first.is_nan()) || *v == first);
        let reason = if constant {
            if first.is_nan() {
                "constant: always missing".to_string()
            } else {
                format!("constant: always {first}")
            }
        } else if share < MIN_PRESENT_SHARE {
            format!(
                "almost empty: {present} of {} values present, fewer than {:.0}%",
                values.len(),
                MIN_PRESENT_SHARE * 100.0
            )
        } else {
            continue;
        };
        dropped.push(DroppedFeature {
            feature: name.clone(),
            reason,
        });
    }
    dropped
}

/// Flags each column whose values alone, used as the score in either direction with missing
/// as the lowest value, give a holdout AUC above `threshold`. Columns named in `keep` are
/// flagged but not excluded. Returns no flags when the holdout lacks a class.
pub fn leakage(
    rows: &[Vec<f64>],
    labels: &[f64],
    names: &[String],
    threshold: f64,
    keep: &[String],
) -> Vec<LeakageFlag> {
    let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
    let mut flags = Vec::new();
    for (column, name) in names.iter().enumerate() {
        let scores: Vec<f64> = rows
            .iter()
            .map(|row| {
                let value = row[column];
                if value.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    value
                }
            })
            .collect();
        let Some(auc) = roc_auc(labels, &scores) else {
            continue;
        };
        let auc = auc.max(1.0 - auc);
        if auc > threshold {
            flags.push(LeakageFlag {
                feature: name.clone(),
                auc,
                excluded: !keep.contains(name.as_str()),
            });
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sufficiency_counts_shortfall() {
        let mut labels = vec![0.0; 139];
        labels.extend(vec![1.0; 12]);
        let check = sufficiency(&labels, 200, 40);
        assert!(!check.passed);
        assert!(
            check
                .message
                .contains("needs 200 closed deals, has 151: 49 more"),
            "{}",
            check.message
        );
        assert!(
            check
                .message
                .contains("needs 40 won deals (the rarer class), has 12: 28 more"),
            "{}",
            check.message
        );
    }

    #[test]
    fn sufficiency_passes_at_floor() {
        let mut labels = vec![0.0; 160];
        labels.extend(vec![1.0; 40]);
        assert!(sufficiency(&labels, 200, 40).passed);
    }

    #[test]
    fn constant_and_empty_columns_dropped() {
        let names: Vec<String> = ["constant", "empty", "useful"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let empty = if i == 0 { 1.0 } else { f64::NAN };
                vec![3.0, empty, i as f64]
            })
            .collect();
        let dropped = unusable_columns(&rows, &names);
        let features: Vec<&str> = dropped.iter().map(|d| d.feature.as_str()).collect();
        assert_eq!(features, vec!["constant", "empty"]);
        assert!(
            dropped[0].reason.starts_with("constant"),
            "{:?}",
            dropped[0]
        );
        assert!(dropped[1].reason.contains("1 of 200"), "{:?}", dropped[1]);
    }

    #[test]
    fn leakage_either_direction_and_keep() {
        let names: Vec<String> = ["copy", "inverse", "noise"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let labels: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let rows: Vec<Vec<f64>> = labels
            .iter()
            .enumerate()
            .map(|(i, y)| vec![*y, -*y, (i % 7) as f64])
            .collect();
        let flags = leakage(&rows, &labels, &names, 0.95, &["inverse".to_string()]);
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert_eq!(flags[0].feature, "copy");
        assert!(flags[0].excluded);
        assert_eq!(flags[1].feature, "inverse");
        assert!(!flags[1].excluded);
        assert!((flags[1].auc - 1.0).abs() < 1e-12);
    }
}
