//! Probability calibration fitted on a validation slice: Platt scaling (a logistic curve on the
//! log-odds) and isotonic regression (pool adjacent violators).

use serde::{Deserialize, Serialize};

use super::metrics::log_loss;
use super::sigmoid;

/// Isotonic outputs are clipped to `[ISOTONIC_FLOOR, 1 - ISOTONIC_FLOOR]`, so a bin that was
/// all won or all lost on validation does not give certain scores.
const ISOTONIC_FLOOR: f64 = 1e-3;
/// Folds used to compare the methods on rows their fit did not see.
const FOLDS: usize = 5;
/// Minimum number of validation rows of each class for fitting a calibrator.
const MIN_CLASS_ROWS: usize = 5;

/// A fitted mapping from a model probability to a calibrated probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// The model's probabilities are used as they are.
    None,
    /// `sigmoid(slope * logit(p) + intercept)`.
    Platt { slope: f64, intercept: f64 },
    /// A non-decreasing step function: `values[i]` applies to probabilities up to
    /// `thresholds[i]`, and the last value to anything higher.
    Isotonic {
        thresholds: Vec<f64>,
        values: Vec<f64>,
    },
}

impl Calibrator {
    /// Returns the method name used in reports: `none`, `platt` or `isotonic`.
    pub fn method(&self) -> &'static str {
        match self {
            Calibrator::None => "none",
            Calibrator::Platt { .. } => "platt",
            Calibrator::Isotonic { .. } => "isotonic",
        }
    }

    /// Maps one model probability to a calibrated probability.
    pub fn apply(&self, probability: f64) -> f64 {
        match self {
            Calibrator::None => probability,
            Calibrator::Platt { slope, intercept } => {
                sigmoid(slope * logit(probability) + intercept)
            }
            Calibrator::Isotonic { thresholds, values } => {
                let index = thresholds.partition_point(|t| *t < probability);
                values
                    .get(index)
                    .or(values.last())
                    .copied()
                    .unwrap_or(probability)
            }
        }
    }

    /// Maps every probability.
    pub fn apply_all(&self, probabilities: &[f64]) -> Vec<f64> {
        probabilities.iter().map(|p| self.apply(*p)).collect()
    }

    /// Checks a loaded calibrator: finite numbers, sorted thresholds, values in [0, 1].
    pub fn is_valid(&self) -> bool {
        match self {
            Calibrator::None => true,
            Calibrator::Platt { slope, intercept } => slope.is_finite() && intercept.is_finite(),
            Calibrator::Isotonic { thresholds, values } => {
                thresholds.len() == values.len()
                    && !values.is_empty()
                    && thresholds.windows(2).all(|w| w[0] <= w[1])
                    && values.iter().all(|v| (0.0..=1.0).contains(v))
            }
        }
    }
}

/// Converts a probability to log-odds, clipping it away from 0 and 1.
fn logit(probability: f64) -> f64 {
    let p = probability.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// Fits Platt scaling: a two-parameter logistic regression on the log-odds, by Newton steps
/// with step halving.
pub fn fit_platt(probabilities: &[f64], labels: &[f64]) -> Calibrator {
    let inputs: Vec<f64> = probabilities.iter().map(|p| logit(*p)).collect();
    let loss = |slope: f64, intercept: f64| {
        let predicted: Vec<f64> = inputs
            .iter()
            .map(|x| sigmoid(slope * x + intercept))
            .collect();
        log_loss(labels, &predicted)
    };
    let (mut slope, mut intercept) = (1.0, 0.0);
    let mut current = loss(slope, intercept);
    for _ in 0..100 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (x, y) in inputs.iter().zip(labels) {
            let p = sigmoid(slope * x + intercept);
            let w = (p * (1.0 - p)).max(1e-12);
            g0 += (p - y) * x;
            g1 += p - y;
            h00 += w * x * x;
            h01 += w * x;
            h11 += w;
        }
        let det = h00 * h11 - h01 * h01;
        if det.abs() < 1e-18 || !det.is_finite() {
            break;
        }
        let d_slope = (h11 * g0 - h01 * g1) / det;
        let d_intercept = (h00 * g1 - h01 * g0) / det;
        let mut factor = 1.0;
        let mut next = loss(slope - d_slope, intercept - d_intercept);
        while (next.is_nan() || next > current) && factor > 1e-6 {
            factor /= 2.0;
            next = loss(slope - factor * d_slope, intercept - factor * d_intercept);
        }
        if next.is_nan() || next > current {
            break;
        }
        slope -= factor * d_slope;
        intercept -= factor * d_intercept;
        current = next;
        if (factor * d_slope).abs().max((factor * d_intercept).abs()) < 1e-10 {
            break;
        }
    }
    if slope.is_finite() && intercept.is_finite() {
        Calibrator::Platt { slope, intercept }
    } else {
        Calibrator::None
    }
}

/// Fits isotonic regression by pooling adjacent violators over rows sorted by probability.
pub fn fit_isotonic(probabilities: &[f64], labels: &[f64]) -> Calibrator {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));

    // Each block: (highest probability in it, sum of labels, row count).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for index in order {
        let p = probabilities[index];
        match blocks.last_mut() {
            // Tied probabilities must share one value, so they join the open block.
            Some(last) if last.0 == p => {
                last.1 += labels[index];
                last.2 += 1.0;
            }
            _ => blocks.push((p, labels[index], 1.0)),
        }
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (_, sum_high, count_high) = blocks[n - 1];
            let (_, sum_low, count_low) = blocks[n - 2];
            if sum_low / count_low < sum_high / count_high {
                break;
            }
            let top = blocks[n - 1].0;
            blocks.pop();
            let merged = &mut blocks[n - 2];
            merged.0 = top;
            merged.1 += sum_high;
            merged.2 += count_high;
        }
    }
    if blocks.is_empty() {
        return Calibrator::None;
    }
    Calibrator::Isotonic {
        thresholds: blocks.iter().map(|b| b.0).collect(),
        values: blocks
            .iter()
            .map(|b| (b.1 / b.2).clamp(ISOTONIC_FLOOR, 1.0 - ISOTONIC_FLOOR))
            .collect(),
    }
}

/// A calibration method: fits a calibrator to probabilities and labels.
type Fitter = fn(&[f64], &[f64]) -> Calibrator;

/// Fits Platt and isotonic calibration on validation rows and keeps the one with the lower
/// log loss, or none when neither beats the raw probabilities.
///
/// The methods are compared on out-of-fold predictions (5 interleaved folds), because
/// isotonic regression judged on its own fitting rows always looks best. The kept method is
/// then refitted on all validation rows. With fewer than 5 rows of either class, no
/// calibration is fitted.
pub fn fit_best(probabilities: &[f64], labels: &[f64]) -> Calibrator {
    let won = labels.iter().filter(|y| **y > 0.5).count();
    let lost = labels.len() - won;
    if won < MIN_CLASS_ROWS || lost < MIN_CLASS_ROWS || probabilities.len() != labels.len() {
        return Calibrator::None;
    }
    let fitters: [Fitter; 2] = [fit_platt, fit_isotonic];
    let mut best = (log_loss(labels, probabilities), None);
    for fit in fitters {
        let mut out_of_fold = vec![0.0; probabilities.len()];
        for fold in 0..FOLDS {
            let (mut fit_p, mut fit_y) = (Vec::new(), Vec::new());
            for (i, (p, y)) in probabilities.iter().zip(labels).enumerate() {
                if i % FOLDS != fold {
                    fit_p.push(*p);
                    fit_y.push(*y);
                }
            }
            let calibrator = fit(&fit_p, &fit_y);
            for (i, p) in probabilities.iter().enumerate() {
                if i % FOLDS == fold {
                    out_of_fold[i] = calibrator.apply(*p);
                }
            }
        }
        let loss = log_loss(labels, &out_of_fold);
        if loss < best.0 {
            best = (loss, Some(fit));
        }
    }
    match best.1 {
        Some(fit) => fit(probabilities, labels),
        None => Calibrator::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators() {
        let calibrator = fit_isotonic(&[0.1, 0.2, 0.3, 0.4], &[0.0, 1.0, 0.0, 1.0]);
        let Calibrator::Isotonic { thresholds, values } = &calibrator else {
            panic!("expected isotonic, got {calibrator:?}");
        };
        // 0.2 (won) and 0.3 (lost) violate the order and pool to 0.5.
        assert_eq!(thresholds, &vec![0.1, 0.3, 0.4]);
        assert_eq!(values, &vec![ISOTONIC_FLOOR, 0.5, 1.0 - ISOTONIC_FLOOR]);
        assert_eq!(calibrator.apply(0.25), 0.5);
        assert_eq!(calibrator.apply(0.9), 1.0 - ISOTONIC_FLOOR);
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn platt_recovers_known_curve() {
        // Labels follow sigmoid(2 * logit(p) - 1) exactly in expectation: use weights by
        // repeating rows in proportion to the true probability.
        let mut probabilities = Vec::new();
        let mut labels = Vec::new();
        for step in 1..100 {
            let p = step as f64 / 100.0;
            let truth = sigmoid(2.0 * logit(p) - 1.0);
            let won = (truth * 100.0).round() as usize;
            for k in 0..100 {
                probabilities.push(p);
                labels.push(if k < won { 1.0 } else { 0.0 });
            }
        }
        let Calibrator::Platt { slope, intercept } = fit_platt(&probabilities, &labels) else {
            panic!("expected Platt");
        };
        assert!((slope - 2.0).abs() < 0.05, "slope {slope}");
        assert!((intercept + 1.0).abs() < 0.05, "intercept {intercept}");
    }

    #[test]
    fn one_class_gets_no_calibration() {
        assert_eq!(fit_best(&[0.2; 20], &[1.0; 20]), Calibrator::None);
    }
}
