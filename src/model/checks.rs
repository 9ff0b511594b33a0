//! Checks run before training: enough examples of each class overall and per segment, source
//! features that predict the holdout too well to be honest or that are filled in only after the
//! outcome (leakage), and columns too empty or constant to use.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::metrics::roc_auc;
use super::Dataset;

/// A column needs at least this share of non-missing values to be kept.
pub const MIN_PRESENT_SHARE: f64 = 0.01;

/// Outcome of the data-sufficiency check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SufficiencyCheck {
    pub passed: bool,
    pub floor_examples: usize,
    pub floor_minority: usize,
    pub message: String,
    /// Segments below the per-segment floor or lacking a class. They are warnings unless
    /// `strict_segments` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentShortfall>,
}

/// One segment value with too few closed deals, or with only one class, to learn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentShortfall {
    pub segment: String,
    pub examples: usize,
    pub won: usize,
    pub lost: usize,
    pub floor: usize,
    /// Closed deals still needed to reach the floor, 0 when only a class is absent.
    pub missing: usize,
    pub message: String,
}

/// A source feature that leaks the outcome: its values alone rank the holdout rows with an AUC
/// above the leakage threshold, or it is present for most closed deals but almost no account
/// being scored, so its value is likely filled in only after the outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakageFlag {
    /// The source feature: a column name, or the category a group of one-hot columns encodes.
    pub feature: String,
    /// The larger of the feature's holdout AUC and 1 - AUC, so either direction counts. For a
    /// feature flagged only by its presence shares this is 0.5 when the holdout lacks a class.
    pub auc: f64,
    /// Reason the feature was flagged, in words for the model card.
    #[serde(default)]
    pub reason: String,
    /// Share of the closed deals used for training where the feature is present, when the
    /// presence rule flagged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_share: Option<f64>,
    /// Share of the accounts being scored where the feature is present, when the presence rule
    /// flagged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_share: Option<f64>,
    /// False when the admin kept the feature, or every column of it, on purpose.
    pub excluded: bool,
    /// The model columns left out because of this flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_columns: Vec<String>,
}

/// A column left out of training, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedFeature {
    pub feature: String,
    pub reason: String,
}

/// Counts examples and the rarer class against the floors.
/// How examples are named in messages: `closed deals` won or lost, `decided leads` converted
/// or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExampleNoun {
    pub plural: &'static str,
    /// The plural without qualifiers, after "won" or "lost": `deals`.
    pub short: &'static str,
    pub positive: &'static str,
    pub negative: &'static str,
}

impl ExampleNoun {
    pub const DEALS: ExampleNoun = ExampleNoun {
        plural: "closed deals",
        short: "deals",
        positive: "won",
        negative: "lost",
    };
    pub const CONTACT_ROLES: ExampleNoun = ExampleNoun {
        plural: "contact roles on closed deals",
        short: "contact roles",
        positive: "won",
        negative: "lost",
    };
    pub const LEADS: ExampleNoun = ExampleNoun {
        plural: "decided leads",
        short: "leads",
        positive: "converted",
        negative: "unconverted",
    };
}

pub fn sufficiency(
    labels: &[f64],
    floor_examples: usize,
    floor_minority: usize,
    noun: ExampleNoun,
) -> SufficiencyCheck {
    let ExampleNoun {
        plural,
        short,
        positive,
        negative,
    } = noun;
    let won = labels.iter().filter(|y| **y >= 0.5).count();
    let lost = labels.len() - won;
    let (minority_name, minority) = if won <= lost {
        (positive, won)
    } else {
        (negative, lost)
    };
    let mut shortfalls = Vec::new();
    if labels.len() < floor_examples {
        shortfalls.push(format!(
            "needs {floor_examples} {plural}, has {}: {} more",
            labels.len(),
            floor_examples - labels.len()
        ));
    }
    if minority < floor_minority {
        shortfalls.push(format!(
            "needs {floor_minority} {minority_name} {short} (the rarer class), has {minority}: {} more",
            floor_minority - minority
        ));
    }
    let passed = shortfalls.is_empty();
    let message = if passed {
        format!(
            "{} {plural} ({won} {positive}, {lost} {negative}) meet the floors of {floor_examples} and {floor_minority} of the rarer class",
            labels.len()
        )
    } else {
        format!(
            "{}; collect more {plural}, or lower [model] min_examples and min_minority",
            shortfalls.join("; ")
        )
    };
    SufficiencyCheck {
        passed,
        floor_examples,
        floor_minority,
        message,
        segments: Vec::new(),
    }
}

/// Counts won and lost deals per segment value (`None` rows are not counted) and lists, by
/// segment name, each segment below `floor` closed deals or lacking a class.
pub fn segment_shortfalls(
    segments: &[Option<String>],
    labels: &[f64],
    floor: usize,
) -> Vec<SegmentShortfall> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (segment, label) in segments.iter().zip(labels) {
        let Some(segment) = segment else {
            continue;
        };
        let entry = counts.entry(segment.as_str()).or_default();
        if *label >= 0.5 {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let mut shortfalls = Vec::new();
    for (segment, (won, lost)) in counts {
        let examples = won + lost;
        let missing = floor.saturating_sub(examples);
        let absent_class = match (won, lost) {
            (0, _) => Some("won"),
            (_, 0) => Some("lost"),
            _ => None,
        };
        if missing == 0 && absent_class.is_none() {
            continue;
        }
        let mut message = format!("segment {segment}: {examples} closed deals");
        if missing > 0 {
            message.push_str(&format!(", needs {floor}: {missing} more"));
        }
        if let Some(class) = absent_class {
            message.push_str(&format!(", none {class}: needs {class} deals too"));
        }
        shortfalls.push(SegmentShortfall {
            segment: segment.to_string(),
            examples,
            won,
            lost,
            floor,
            missing,
            message,
        });
    }
    shortfalls
}

/// Lists the columns to drop: constant ones (one distinct value, a missing value counting as
/// a value) and those with fewer than 1% non-missing values.
pub fn unusable_columns<R: AsRef<[f64]>>(rows: &[R], names: &[String]) -> Vec<DroppedFeature> {
    let mut dropped = Vec::new();
    if rows.is_empty() {
        return dropped;
    }
    for (column, name) in names.iter().enumerate() {
        let values: Vec<f64> = rows.iter().map(|row| row.as_ref()[column]).collect();
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

/// Model columns that come from one source feature: a single column, or the one-hot columns
/// of one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGroup {
    /// The source feature's name, as `keep_features` names it.
    pub feature: String,
    /// Column indices in the dataset.
    pub columns: Vec<usize>,
    /// True when the columns are one-hot indicators of the feature's levels.
    pub one_hot: bool,
    /// True when the single column is 1 where the source field has a value and 0 where it is
    /// empty (the `present` kind), so a 0 counts as absent in [`presence_share`].
    pub marks_presence: bool,
}

/// Groups columns given as `(source feature, is one-hot)` per column, in column order. One-hot
/// columns of the same feature form one group, and every other column is a group of its own.
pub fn group_columns(sources: &[(String, bool)]) -> Vec<FeatureGroup> {
    let mut groups: Vec<FeatureGroup> = Vec::new();
    for (column, (feature, one_hot)) in sources.iter().enumerate() {
        if *one_hot {
            let existing = groups
                .iter_mut()
                .find(|g| g.one_hot && g.feature == *feature);
            if let Some(group) = existing {
                group.columns.push(column);
                continue;
            }
        }
        groups.push(FeatureGroup {
            feature: feature.clone(),
            columns: vec![column],
            one_hot: *one_hot,
            marks_presence: false,
        });
    }
    groups
}

/// Groups columns by name: `feature=level` is a one-hot column of `feature`, the form both the
/// CRM feature space and the CSV encoder use, and any other name is a column of its own.
pub fn groups_from_names(names: &[String]) -> Vec<FeatureGroup> {
    let sources: Vec<(String, bool)> = names
        .iter()
        .map(|name| match name.split_once('=') {
            Some((feature, _)) => (feature.to_string(), true),
            None => (name.clone(), false),
        })
        .collect();
    group_columns(&sources)
}

/// The level of one row in a one-hot group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Level {
    /// Some indicator is missing, so the feature's value is missing.
    Missing,
    /// Every indicator is 0: a value too rare in training to get its own column.
    Other,
    /// The indicator at this position in the group is 1.
    Column(usize),
}

/// Reads the level of `row` in the group, or `None` when the columns are not one-hot there
/// (a value other than 0, 1 or missing, or more than one 1).
fn level_of(row: &[f64], columns: &[usize]) -> Option<Level> {
    let mut level = Level::Other;
    for (position, &column) in columns.iter().enumerate() {
        let value = row[column];
        if value.is_nan() {
            return Some(Level::Missing);
        }
        if value == 1.0 {
            if level != Level::Other {
                return None;
            }
            level = Level::Column(position);
        } else if value != 0.0 {
            return None;
        }
    }
    Some(level)
}

/// Scores each holdout row by the training win rate of its level (target encoding), with the
/// training base rate for a missing level or one absent from training. Returns `None` when
/// a row of either slice is not one-hot in the group.
fn target_encoded<R: AsRef<[f64]>>(
    train_rows: &[R],
    train_labels: &[f64],
    holdout: &Dataset,
    columns: &[usize],
) -> Option<Vec<f64>> {
    let mut wins: HashMap<Level, (f64, usize)> = HashMap::new();
    for (row, label) in train_rows.iter().zip(train_labels) {
        let level = level_of(row.as_ref(), columns)?;
        if level != Level::Missing {
            let entry = wins.entry(level).or_insert((0.0, 0));
            entry.0 += label;
            entry.1 += 1;
        }
    }
    let base_rate = train_labels.iter().sum::<f64>() / train_labels.len().max(1) as f64;
    holdout
        .rows
        .iter()
        .map(|row| {
            let level = level_of(row, columns)?;
            let rate = match wins.get(&level) {
                Some((won, count)) if level != Level::Missing => won / *count as f64,
                _ => base_rate,
            };
            Some(rate)
        })
        .collect()
}

/// Returns the AUC of one column's values used as the score, missing as the lowest value.
fn column_auc(holdout: &Dataset, column: usize) -> Option<f64> {
    let scores: Vec<f64> = holdout
        .rows
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
    roc_auc(&holdout.labels, &scores)
}

/// Flags each source feature that alone ranks the holdout rows with an AUC above `threshold`,
/// in either direction. A single column is scored by its values, missing as the lowest value.
/// A one-hot group is scored by target encoding learned on `train`, so a category whose levels
/// are each weak but together decisive is caught. A group whose rows are not one-hot is scored
/// column by column instead. A flagged group stays in the model when `keep` names the feature,
/// and a column of it stays when `keep` names the column. Returns no flags when the holdout
/// lacks a class.
pub fn leakage<R: AsRef<[f64]>>(
    train_rows: &[R],
    train_labels: &[f64],
    holdout: &Dataset,
    groups: &[FeatureGroup],
    threshold: f64,
    keep: &[String],
) -> Vec<LeakageFlag> {
    let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
    let names = &holdout.feature_names;
    let mut flags = Vec::new();
    let mut flag = |feature: &str, columns: &[usize], auc: f64| {
        let auc = auc.max(1.0 - auc);
        if auc <= threshold {
            return;
        }
        let kept_feature = keep.contains(feature);
        let columns: Vec<String> = columns.iter().map(|&c| names[c].clone()).collect();
        let excluded = !kept_feature && columns.iter().any(|c| !keep.contains(c.as_str()));
        flags.push(LeakageFlag {
            feature: feature.to_string(),
            auc,
            reason: format!("predicts the outcome alone (AUC {auc:.2})"),
            train_share: None,
            scoring_share: None,
            excluded,
            excluded_columns: if kept_feature {
                Vec::new()
            } else {
                columns
                    .into_iter()
                    .filter(|c| !keep.contains(c.as_str()))
                    .collect()
            },
        });
    };
    for group in groups {
        let encoded = if group.one_hot {
            target_encoded(train_rows, train_labels, holdout, &group.columns)
        } else {
            None
        };
        match encoded {
            Some(scores) => {
                if let Some(auc) = roc_auc(&holdout.labels, &scores) {
                    flag(&group.feature, &group.columns, auc);
                }
            }
            None => {
                for &column in &group.columns {
                    if let Some(auc) = column_auc(holdout, column) {
                        flag(&names[column], &[column], auc);
                    }
                }
            }
        }
    }
    flags
}

/// Returns the share of `rows` where the group's feature is present: any level set for a
/// one-hot group, a 1 for a `present` column, and a value other than missing otherwise.
/// Returns 0 for no rows.
pub fn presence_share<R: AsRef<[f64]>>(rows: &[R], group: &FeatureGroup) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let present = rows
        .iter()
        .filter(|row| {
            let row = row.as_ref();
            let mut values = group.columns.iter().map(|&c| row[c]);
            if group.one_hot {
                values.any(|v| v == 1.0)
            } else if group.marks_presence {
                values.any(|v| v > 0.5)
            } else {
                values.any(|v| !v.is_nan())
            }
        })
        .count();
    present as f64 / rows.len() as f64
}

/// Presence shares at which [`post_outcome`] flags a feature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkewThresholds {
    /// Smallest share of training rows where a flagged feature is present.
    pub min_train_share: f64,
    /// Largest share of scoring rows where a flagged feature is present.
    pub max_scoring_share: f64,
}

/// Flags each source feature present (see [`presence_share`]) for at least
/// `min_train_share` of `training_rows` (closed deals) but at most `max_scoring_share` of
/// `scoring_rows` (accounts being scored). Account fields carry no history, so such a feature
/// is most likely filled in once a deal closes and is missing when a score is needed. A flag
/// that [`leakage`] already raised for the same feature gains the shares and the reason, and
/// other features get a new flag whose AUC is the feature's alone on `holdout` (0.5 when the
/// holdout lacks a class). `keep` works as in [`leakage`]. Returns no flags without scoring
/// rows.
pub fn post_outcome<R: AsRef<[f64]>>(
    flags: &mut Vec<LeakageFlag>,
    training_rows: &[R],
    scoring_rows: &[Vec<f64>],
    groups: &[FeatureGroup],
    thresholds: SkewThresholds,
    holdout: &Dataset,
    keep: &[String],
) {
    if training_rows.is_empty() || scoring_rows.is_empty() {
        return;
    }
    let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
    let names = &holdout.feature_names;
    for group in groups {
        let train_share = presence_share(training_rows, group);
        let scoring_share = presence_share(scoring_rows, group);
        if train_share < thresholds.min_train_share || scoring_share > thresholds.max_scoring_share
        {
            continue;
        }
        let reason = format!(
            "present for {:.0}% of closed deals but {:.0}% of accounts being scored",
            train_share * 100.0,
            scoring_share * 100.0
        );
        if let Some(existing) = flags.iter_mut().find(|f| f.feature == group.feature) {
            existing.reason = format!("{}; {reason}", existing.reason);
            existing.train_share = Some(train_share);
            existing.scoring_share = Some(scoring_share);
            continue;
        }
        let kept_feature = keep.contains(group.feature.as_str());
        let excluded_columns: Vec<String> = if kept_feature {
            Vec::new()
        } else {
            group
                .columns
                .iter()
                .map(|&c| names[c].clone())
                .filter(|c| !keep.contains(c.as_str()))
                .collect()
        };
        flags.push(LeakageFlag {
            feature: group.feature.clone(),
            auc: group_auc(holdout, group).unwrap_or(0.5),
            reason,
            train_share: Some(train_share),
            scoring_share: Some(scoring_share),
            excluded: !excluded_columns.is_empty(),
            excluded_columns,
        });
    }
}

/// Returns the larger of the group's holdout AUC and 1 - AUC, scored by presence: any level
/// set for a one-hot group, the column's values otherwise.
fn group_auc(holdout: &Dataset, group: &FeatureGroup) -> Option<f64> {
    let scores: Vec<f64> = holdout
        .rows
        .iter()
        .map(|row| presence_share(std::slice::from_ref(row), group))
        .collect();
    let auc = if group.one_hot || group.marks_presence {
        roc_auc(&holdout.labels, &scores)?
    } else {
        column_auc(holdout, *group.columns.first()?)?
    };
    Some(auc.max(1.0 - auc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sufficiency_counts_shortfall() {
        let mut labels = vec![0.0; 139];
        labels.extend(vec![1.0; 12]);
        let check = sufficiency(&labels, 200, 40, ExampleNoun::DEALS);
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
        assert!(sufficiency(&labels, 200, 40, ExampleNoun::DEALS).passed);
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

    fn dataset(names: &[&str], rows: Vec<Vec<f64>>, labels: Vec<f64>) -> Dataset {
        Dataset {
            feature_names: names.iter().map(|s| s.to_string()).collect(),
            rows,
            labels,
        }
    }

    #[test]
    fn leakage_either_direction_and_keep() {
        let names = ["copy", "inverse", "noise"];
        let labels: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let rows: Vec<Vec<f64>> = labels
            .iter()
            .enumerate()
            .map(|(i, y)| vec![*y, -*y, (i % 7) as f64])
            .collect();
        let data = dataset(&names, rows, labels);
        let groups = groups_from_names(&data.feature_names);
        let flags = leakage(
            &data.rows,
            &data.labels,
            &data,
            &groups,
            0.95,
            &["inverse".to_string()],
        );
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert_eq!(flags[0].feature, "copy");
        assert!(flags[0].excluded);
        assert_eq!(flags[0].excluded_columns, vec!["copy".to_string()]);
        assert_eq!(flags[1].feature, "inverse");
        assert!(!flags[1].excluded);
        assert!(flags[1].excluded_columns.is_empty());
        assert!((flags[1].auc - 1.0).abs() < 1e-12);
    }

    #[test]
    fn names_grouped_by_source_feature() {
        let names: Vec<String> = ["beds", "type=A", "type=B", "state=CA", "type=C"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let groups = groups_from_names(&names);
        let summary: Vec<(&str, Vec<usize>, bool)> = groups
            .iter()
            .map(|g| (g.feature.as_str(), g.columns.clone(), g.one_hot))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("beds", vec![0], false),
                ("type", vec![1, 2, 4], true),
                ("state", vec![3], true),
            ]
        );
    }

    /// Twenty levels, half of them always won and half always lost: each indicator alone
    /// ranks the rows barely better than chance, but the level decides the outcome.
    fn planted_category(rows: usize, seed: u64) -> Dataset {
        let levels = 20;
        let names: Vec<String> = (0..levels).map(|l| format!("tags=level {l}")).collect();
        let mut state = seed;
        let mut data = Dataset {
            feature_names: names,
            rows: Vec::new(),
            labels: Vec::new(),
        };
        for _ in 0..rows {
            // A linear congruential step is enough to spread rows over the levels.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let level = ((state >> 33) % levels as u64) as usize;
            let mut row = vec![0.0; levels];
            row[level] = 1.0;
            data.rows.push(row);
            data.labels
                .push(f64::from(u8::from(level.is_multiple_of(2))));
        }
        data
    }

    #[test]
    fn leaky_category_flagged_as_group() {
        let train = planted_category(2000, 7);
        let holdout = planted_category(500, 11);
        let groups = groups_from_names(&train.feature_names);

        // Each level alone stays under the threshold.
        let one_by_one: Vec<FeatureGroup> = (0..20)
            .map(|c| FeatureGroup {
                feature: train.feature_names[c].clone(),
                columns: vec![c],
                one_hot: false,
                marks_presence: false,
            })
            .collect();
        let weak = leakage(&train.rows, &train.labels, &holdout, &one_by_one, 0.95, &[]);
        assert!(weak.is_empty(), "{weak:?}");

        let flags = leakage(&train.rows, &train.labels, &holdout, &groups, 0.95, &[]);
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].feature, "tags");
        assert!(flags[0].auc > 0.99, "{flags:?}");
        assert!(flags[0].excluded);
        assert_eq!(flags[0].excluded_columns.len(), 20);
    }

    #[test]
    fn leaky_category_kept_by_feature_or_column() {
        let train = planted_category(2000, 7);
        let holdout = planted_category(500, 11);
        let groups = groups_from_names(&train.feature_names);

        let kept = leakage(
            &train.rows,
            &train.labels,
            &holdout,
            &groups,
            0.95,
            &["tags".to_string()],
        );
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(!kept[0].excluded);
        assert!(kept[0].excluded_columns.is_empty());

        let one_column = leakage(
            &train.rows,
            &train.labels,
            &holdout,
            &groups,
            0.95,
            &["tags=level 3".to_string()],
        );
        assert!(one_column[0].excluded);
        assert_eq!(one_column[0].excluded_columns.len(), 19);
        assert!(!one_column[0]
            .excluded_columns
            .contains(&"tags=level 3".to_string()));
    }

    #[test]
    fn unseen_and_missing_levels_get_base_rate() {
        // The training slice contains only level a (always won) and level b (always lost), so
        // the base rate is 0.5. Holdout rows with level c (unseen) or a missing value score 0.5.
        let names = ["kind=a", "kind=b", "kind=c"];
        let mut train_rows = Vec::new();
        let mut train_labels = Vec::new();
        for i in 0..40 {
            let won = i % 2 == 0;
            train_rows.push(if won {
                vec![1.0, 0.0, 0.0]
            } else {
                vec![0.0, 1.0, 0.0]
            });
            train_labels.push(f64::from(u8::from(won)));
        }
        let train = dataset(&names, train_rows, train_labels);
        let holdout = dataset(
            &names,
            vec![
                vec![1.0, 0.0, 0.0],
                vec![0.0, 1.0, 0.0],
                vec![0.0, 0.0, 1.0],
                vec![f64::NAN, f64::NAN, f64::NAN],
            ],
            vec![1.0, 0.0, 1.0, 0.0],
        );
        let scores =
            target_encoded(&train.rows, &train.labels, &holdout, &[0, 1, 2]).expect("one-hot rows");
        assert_eq!(scores, vec![1.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn non_one_hot_group_scored_by_column() {
        let names = ["ratio=x"];
        let labels: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let rows: Vec<Vec<f64>> = labels.iter().map(|y| vec![*y * 3.0 + 0.5]).collect();
        let data = dataset(&names, rows, labels);
        let groups = groups_from_names(&data.feature_names);
        let flags = leakage(&data.rows, &data.labels, &data, &groups, 0.95, &[]);
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].feature, "ratio=x");
    }

    /// Columns: `score` (a number, missing in some rows), `signed` (a `present` column) and
    /// `stage=won`, `stage=lost` (one category, all zeros for a rare level).
    fn presence_groups() -> (Vec<String>, Vec<FeatureGroup>) {
        let names: Vec<String> = ["score", "signed", "stage=won", "stage=lost"]
            .map(String::from)
            .to_vec();
        let mut groups = groups_from_names(&names);
        groups[1].marks_presence = true;
        (names, groups)
    }

    #[test]
    fn presence_share_per_group_kind() {
        let (_, groups) = presence_groups();
        let nan = f64::NAN;
        let rows = vec![
            vec![1.5, 1.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.0, 1.0],
            vec![nan, 0.0, 0.0, 0.0],
            vec![nan, 1.0, nan, nan],
        ];
        // A zero is a value for a number column.
        assert_eq!(presence_share(&rows, &groups[0]), 0.5);
        // A zero is an empty field for a `present` column.
        assert_eq!(presence_share(&rows, &groups[1]), 0.5);
        // Any level set counts, all zeros (a rare level) and missing do not.
        assert_eq!(groups[2].columns, vec![2, 3]);
        assert_eq!(presence_share(&rows, &groups[2]), 0.5);
        assert_eq!(presence_share::<Vec<f64>>(&[], &groups[0]), 0.0);
    }

    #[test]
    fn post_outcome_flags_skewed_features() {
        let (names, groups) = presence_groups();
        let nan = f64::NAN;
        // Training: score always present, signed on 9 of 10, stage set on 8 of 10.
        let training: Vec<Vec<f64>> = (0..10)
            .map(|i| {
                let signed = f64::from(u8::from(i < 9));
                let (won, lost) = match i {
                    0..=3 => (1.0, 0.0),
                    4..=7 => (0.0, 1.0),
                    _ => (nan, nan),
                };
                vec![i as f64, signed, won, lost]
            })
            .collect();
        // Scoring: score still present, signed on 1 of 25 (4%), stage set on 3 of 25 (12%).
        let scoring: Vec<Vec<f64>> = (0..25)
            .map(|i| {
                let signed = f64::from(u8::from(i == 0));
                let won = if i < 3 { 1.0 } else { 0.0 };
                vec![2.0, signed, won, 0.0]
            })
            .collect();
        let holdout = dataset(
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![vec![1.0, 1.0, 1.0, 0.0], vec![2.0, 0.0, 0.0, 1.0]],
            vec![1.0, 0.0],
        );
        let thresholds = SkewThresholds {
            min_train_share: 0.5,
            max_scoring_share: 0.05,
        };

        let mut flags = Vec::new();
        post_outcome(
            &mut flags,
            &training,
            &scoring,
            &groups,
            thresholds,
            &holdout,
            &[],
        );
        assert_eq!(flags.len(), 1, "{flags:?}");
        let signed = &flags[0];
        assert_eq!(signed.feature, "signed");
        assert_eq!(signed.train_share, Some(0.9));
        assert_eq!(signed.scoring_share, Some(0.04));
        assert_eq!(
            signed.reason,
            "present for 90% of closed deals but 4% of accounts being scored"
        );
        assert!(signed.excluded);
        assert_eq!(signed.excluded_columns, vec!["signed".to_string()]);
        assert_eq!(signed.auc, 1.0);

        // A looser scoring share catches the category as one group.
        let loose = SkewThresholds {
            max_scoring_share: 0.15,
            ..thresholds
        };
        let mut flags = Vec::new();
        post_outcome(
            &mut flags,
            &training,
            &scoring,
            &groups,
            loose,
            &holdout,
            &["signed".to_string()],
        );
        let features: Vec<&str> = flags.iter().map(|f| f.feature.as_str()).collect();
        assert_eq!(features, vec!["signed", "stage"]);
        assert!(!flags[0].excluded, "kept by keep_features");
        assert!(flags[0].excluded_columns.is_empty());
        assert_eq!(flags[1].train_share, Some(0.8));
        assert_eq!(flags[1].scoring_share, Some(0.12));
        assert_eq!(flags[1].excluded_columns.len(), 2);
    }

    #[test]
    fn post_outcome_extends_auc_flag() {
        let (names, groups) = presence_groups();
        let training = vec![vec![1.0, 1.0, 1.0, 0.0]; 4];
        let scoring = vec![vec![1.0, 0.0, 1.0, 0.0]; 4];
        let holdout = dataset(
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![vec![1.0, 1.0, 1.0, 0.0]],
            vec![1.0],
        );
        let mut flags = vec![LeakageFlag {
            feature: "signed".to_string(),
            auc: 0.97,
            reason: "predicts the outcome alone (AUC 0.97)".to_string(),
            train_share: None,
            scoring_share: None,
            excluded: true,
            excluded_columns: vec!["signed".to_string()],
        }];
        let thresholds = SkewThresholds {
            min_train_share: 0.5,
            max_scoring_share: 0.05,
        };
        post_outcome(
            &mut flags,
            &training,
            &scoring,
            &groups,
            thresholds,
            &holdout,
            &[],
        );
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].auc, 0.97);
        assert_eq!(
            flags[0].reason,
            "predicts the outcome alone (AUC 0.97); present for 100% of closed deals but 0% of accounts being scored"
        );
        assert_eq!(flags[0].scoring_share, Some(0.0));

        // Without scoring rows the rule does nothing.
        let mut none = Vec::new();
        post_outcome(
            &mut none,
            &training,
            &[],
            &groups,
            thresholds,
            &holdout,
            &[],
        );
        assert!(none.is_empty());
    }

    #[test]
    fn segments_below_floor_listed() {
        let mut segments = Vec::new();
        let mut labels = Vec::new();
        let mut add = |segment: Option<&str>, won: usize, lost: usize| {
            for i in 0..won + lost {
                segments.push(segment.map(str::to_string));
                labels.push(f64::from(u8::from(i < won)));
            }
        };
        add(Some("Acute Care Hospitals"), 20, 25);
        add(Some("Critical Access Hospitals"), 4, 8);
        add(Some("Childrens"), 0, 35);
        add(None, 1, 1);
        let shortfalls = segment_shortfalls(&segments, &labels, 30);
        let names: Vec<&str> = shortfalls.iter().map(|s| s.segment.as_str()).collect();
        assert_eq!(names, vec!["Childrens", "Critical Access Hospitals"]);

        let critical = &shortfalls[1];
        assert_eq!(critical.missing, 18);
        assert_eq!((critical.won, critical.lost), (4, 8));
        assert_eq!(
            critical.message,
            "segment Critical Access Hospitals: 12 closed deals, needs 30: 18 more"
        );
        let childrens = &shortfalls[0];
        assert_eq!(childrens.missing, 0);
        assert!(
            childrens.message.contains("none won"),
            "{}",
            childrens.message
        );
    }
}
