//! Classification metrics for judging a model on held-out rows.
//!
//! Labels are 1.0 for the positive class (won) and 0.0 for the negative class (lost).

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
}
