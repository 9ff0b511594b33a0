//! Classification metrics for judging a model on held-out rows.
//!
//! Labels are 1.0 for the positive class (won) and 0.0 for the negative class (lost).

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON]` in [`log_loss`], so
/// one confident miss costs at most about 34.5 instead of infinity.
pub const LOG_LOSS_EPSILON: f64 = 1e-15;

/// Computes the area under the ROC curve: the probability that a random positive row scores
/// higher than a random negative one, with tied scores counted as half.
///
/// Uses the rank-sum (Mann-Whitney U) form with tied scores given their average rank. A label
/// of at least 0.5 counts as positive. Returns `None` when either class is absent, when the
/// slices differ in length, or when a score is NaN.
pub fn roc_auc(labels: &[f64], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let positives = labels.iter().filter(|&&y| y >= 0.5).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }

    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));

    // Walk groups of equal scores; every member of a group gets the group's average rank.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks are 1-based, so the group covers ranks start+1 ..= end.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let group_positives = order[start..end]
            .iter()
            .filter(|&&i| labels[i] >= 0.5)
            .count();
        positive_rank_sum += average_rank * group_positives as f64;
        start = end;
    }

    let positives = positives as f64;
    let negatives = negatives as f64;
    let u = positive_rank_sum - positives * (positives + 1.0) / 2.0;
    Some(u / (positives * negatives))
}

/// Computes the mean binary cross-entropy in nats, with probabilities clipped to
/// `[1e-15, 1 - 1e-15]`.
///
/// Returns NaN when the slices are empty or differ in length.
pub fn log_loss(labels: &[f64], probabilities: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != probabilities.len() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(&y, &p)| {
            let p = p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len() as f64
}

/// Computes the Brier score: the mean squared difference between probability and label.
///
/// Returns NaN when the slices are empty or differ in length.
pub fn brier(labels: &[f64], probabilities: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != probabilities.len() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(&y, &p)| (p - y) * (p - y))
        .sum();
    total / labels.len() as f64
}

/// Computes the area under the precision-recall curve as average precision: the mean, over
/// positive rows, of the precision among rows scored at least as high.
///
/// Rows with tied scores enter together, so their order does not matter. Returns `None` when
/// there is no positive row, when the slices differ in length, or when a score is NaN.
pub fn pr_auc(labels: &[f64], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let positives = labels.iter().filter(|&&y| y >= 0.5).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let mut total = 0.0;
    let mut seen = 0usize;
    let mut seen_positive = 0usize;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let group_positives = order[start..end]
            .iter()
            .filter(|&&i| labels[i] >= 0.5)
            .count();
        seen += end - start;
        seen_positive += group_positives;
        // Recall rises by group_positives / positives at precision seen_positive / seen.
        total += group_positives as f64 * seen_positive as f64 / seen as f64;
        start = end;
    }
    Some(total / positives as f64)
}

/// One bin of a calibration table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Bin number from 1 (probabilities in [0, 0.1)) to 10 ([0.9, 1]).
    pub bin: usize,
    pub count: usize,
    pub mean_predicted: f64,
    /// Share of won rows in the bin.
    pub observed: f64,
}

/// Groups rows into 10 equal-width probability bins and returns the non-empty ones.
pub fn calibration_table(labels: &[f64], probabilities: &[f64]) -> Vec<CalibrationBin> {
    const BINS: usize = 10;
    let mut sums = [(0usize, 0.0f64, 0.0f64); BINS];
    for (&y, &p) in labels.iter().zip(probabilities) {
        if p.is_nan() {
            continue;
        }
        let index = ((p * BINS as f64) as usize).min(BINS - 1);
        sums[index].0 += 1;
        sums[index].1 += p;
        sums[index].2 += y;
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 0)
        .map(|(index, &(count, predicted, won))| CalibrationBin {
            bin: index + 1,
            count,
            mean_predicted: predicted / count as f64,
            observed: won / count as f64,
        })
        .collect()
}

/// Computes the expected calibration error over 10 equal-width bins: the row-weighted mean
/// of |mean predicted - observed win rate|. Returns NaN for empty or mismatched slices.
pub fn expected_calibration_error(labels: &[f64], probabilities: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != probabilities.len() {
        return f64::NAN;
    }
    let total: f64 = calibration_table(labels, probabilities)
        .iter()
        .map(|b| b.count as f64 * (b.mean_predicted - b.observed).abs())
        .sum();
    total / labels.len() as f64
}

/// One decile of a lift table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiftRow {
    /// Decile 1 is the highest-scored tenth of the rows.
    pub decile: usize,
    pub count: usize,
    pub win_rate: f64,
    /// Win rate of the decile divided by the overall win rate.
    pub lift: f64,
    /// Share of all won rows found in deciles 1 to this one.
    pub cumulative_gain: f64,
}

/// Sorts rows by probability, highest first, splits them into 10 groups whose sizes differ by
/// at most one, and returns win rate, lift and cumulative gain per group. Returns an empty
/// table when there are fewer than 10 rows or no won row.
pub fn lift_table(labels: &[f64], probabilities: &[f64]) -> Vec<LiftRow> {
    let n = labels.len();
    let won_total: f64 = labels.iter().sum();
    if n < 10 || n != probabilities.len() || won_total <= 0.0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        probabilities[b]
            .total_cmp(&probabilities[a])
            .then(a.cmp(&b))
    });
    let overall = won_total / n as f64;
    let mut cumulative = 0.0;
    (0..10)
        .map(|decile| {
            let rows = &order[decile * n / 10..(decile + 1) * n / 10];
            let won: f64 = rows.iter().map(|&i| labels[i]).sum();
            cumulative += won;
            let win_rate = won / rows.len() as f64;
            LiftRow {
                decile: decile + 1,
                count: rows.len(),
                win_rate,
                lift: win_rate / overall,
                cumulative_gain: cumulative / won_total,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "expected {expected}, got {actual}"
        );
    }

    #[test]
    fn auc_perfect_and_reversed() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(roc_auc(&labels, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(roc_auc(&labels, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
    }

    #[test]
    fn auc_hand_computed_case() {
        // Pairs (positive, negative): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, 0.1) win,
        // (0.8, 0.4) win, so AUC = 3 / 4.
        let labels = [0.0, 0.0, 1.0, 1.0];
        let scores = [0.1, 0.4, 0.35, 0.8];
        assert_close(roc_auc(&labels, &scores).unwrap(), 0.75);
    }

    #[test]
    fn auc_ties_count_half() {
        // All four scores tie, so every pair counts 1/2.
        let labels = [0.0, 1.0, 0.0, 1.0];
        assert_close(roc_auc(&labels, &[0.5; 4]).unwrap(), 0.5);

        // Positives 0.5 and 0.9, negatives 0.5 and 0.1. Pairs: (0.5, 0.5) tie = 0.5,
        // (0.5, 0.1) win, (0.9, 0.5) win, (0.9, 0.1) win, so AUC = 3.5 / 4.
        let labels = [1.0, 1.0, 0.0, 0.0];
        let scores = [0.5, 0.9, 0.5, 0.1];
        assert_close(roc_auc(&labels, &scores).unwrap(), 0.875);
    }

    #[test]
    fn auc_none_without_both_classes() {
        assert_eq!(roc_auc(&[1.0, 1.0], &[0.2, 0.3]), None);
        assert_eq!(roc_auc(&[0.0, 0.0], &[0.2, 0.3]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn auc_none_on_bad_input() {
        assert_eq!(roc_auc(&[0.0, 1.0], &[0.2]), None);
        assert_eq!(roc_auc(&[0.0, 1.0], &[0.2, f64::NAN]), None);
    }

    #[test]
    fn log_loss_hand_computed() {
        // -(ln 0.8 + ln(1 - 0.4)) / 2
        let expected = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert_close(log_loss(&[1.0, 0.0], &[0.8, 0.4]), expected);
    }

    #[test]
    fn log_loss_clips_certain_misses() {
        // A certain miss on a positive costs -ln(1e-15) = 34.54 instead of infinity.
        assert_close(log_loss(&[1.0], &[0.0]), -(1e-15f64).ln());
        // In f64, 1 - (1 - 1e-15) rounds to about 1.1e-15, so a certain miss on a negative
        // costs a little less. It must still be finite and close to the same bound.
        let loss = log_loss(&[0.0], &[1.0]);
        assert!(loss.is_finite(), "loss {loss}");
        assert!((loss - 34.54).abs() < 0.2, "loss {loss}");
    }

    #[test]
    fn log_loss_nan_on_bad_input() {
        assert!(log_loss(&[], &[]).is_nan());
        assert!(log_loss(&[1.0], &[0.5, 0.5]).is_nan());
    }

    #[test]
    fn brier_hand_computed() {
        // ((0.8 - 1)^2 + (0.4 - 0)^2 + (0.5 - 1)^2) / 3 = (0.04 + 0.16 + 0.25) / 3
        assert_close(brier(&[1.0, 0.0, 1.0], &[0.8, 0.4, 0.5]), 0.45 / 3.0);
        assert_close(brier(&[1.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn brier_nan_on_bad_input() {
        assert!(brier(&[], &[]).is_nan());
        assert!(brier(&[1.0, 0.0], &[0.5]).is_nan());
    }

    #[test]
    fn pr_auc_hand_computed() {
        // Sorted by score: won (P 1/1), lost, won (P 2/3). AP = (1 + 2/3) / 2.
        let labels = [1.0, 0.0, 1.0];
        let scores = [0.9, 0.8, 0.7];
        assert_close(pr_auc(&labels, &scores).unwrap(), (1.0 + 2.0 / 3.0) / 2.0);
        assert_eq!(pr_auc(&[0.0, 0.0], &[0.1, 0.2]), None);
    }

    #[test]
    fn ece_zero_when_calibrated() {
        // Bin [0.2, 0.3) contains five rows at 0.2 with one won: observed 0.2, no error.
        let labels = [1.0, 0.0, 0.0, 0.0, 0.0];
        assert_close(expected_calibration_error(&labels, &[0.2; 5]), 0.0);
        // Predicting 0.9 for the same rows is off by 0.7.
        assert_close(expected_calibration_error(&labels, &[0.9; 5]), 0.7);
    }

    #[test]
    fn lift_top_decile_first() {
        let labels: Vec<f64> = (0..20).map(|i| if i >= 18 { 1.0 } else { 0.0 }).collect();
        let scores: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
        let table = lift_table(&labels, &scores);
        assert_eq!(table.len(), 10);
        assert_eq!(table[0].decile, 1);
        assert_close(table[0].win_rate, 1.0);
        assert_close(table[0].lift, 10.0);
        assert_close(table[0].cumulative_gain, 1.0);
        assert_close(table[9].win_rate, 0.0);
    }
}
