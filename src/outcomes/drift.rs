//! Feature drift: the population stability index of each model input, comparing the open
//! records now with the examples of the live model's training window, with feature rows built
//! as training builds them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::features::{FeatureSpace, History};
use crate::levels;
use crate::store::{ModelEntry, StoredModel};

/// Fewer rows than this on either side give no PSI.
pub const MIN_ROWS_FOR_PSI: usize = 20;
/// Bins per feature, cut at the training distribution's deciles.
const BINS: usize = 10;
/// Share given to a bin that is empty on one side only, so its log ratio stays finite.
const EMPTY_SHARE: f64 = 1e-4;

/// The drift of one model input.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub psi: f64,
}

/// The drift of every model input, or why it could not be measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Drift {
    pub model_version: Option<String>,
    /// The rows PSI compares against, in words.
    pub baseline: String,
    pub training_rows: usize,
    pub open_rows: usize,
    /// Largest PSI first.
    pub features: Vec<FeatureDrift>,
    /// The reason no PSI was computed, when none was.
    pub note: Option<String>,
}

/// Returns the bin of `value` for the cut points. Bin `i` contains the values above cut `i - 1`
/// and at most cut `i`, the last bin contains the values above every cut, and NaN gets a bin
/// of its own.
fn bin_of(value: f64, cuts: &[f64]) -> usize {
    if value.is_nan() {
        return cuts.len() + 1;
    }
    cuts.partition_point(|cut| *cut < value)
}

/// Computes the population stability index of `actual` against `expected`: the sum over bins
/// of (actual share - expected share) * ln(actual share / expected share). Bins are cut at the
/// deciles of `expected` (fewer when values repeat), and missing values (NaN) form one more
/// bin. A bin empty on one side only counts with a share of 0.0001. Returns `None` when either
/// side is empty.
pub fn population_stability_index(expected: &[f64], actual: &[f64]) -> Option<f64> {
    if expected.is_empty() || actual.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = expected.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut cuts: Vec<f64> = (1..BINS)
        .filter_map(|i| sorted.get(i * sorted.len() / BINS).copied())
        .collect();
    cuts.dedup();
    let bins = cuts.len() + 2;
    let shares = |values: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; bins];
        for value in values {
            counts[bin_of(*value, &cuts)] += 1;
        }
        counts
            .into_iter()
            .map(|count| count as f64 / values.len() as f64)
            .collect()
    };
    let expected_shares = shares(expected);
    let actual_shares = shares(actual);
    let psi = expected_shares
        .iter()
        .zip(&actual_shares)
        .filter(|(e, a)| **e > 0.0 || **a > 0.0)
        .map(|(e, a)| {
            let e = e.max(EMPTY_SHARE);
            let a = a.max(EMPTY_SHARE);
            (a - e) * (a / e).ln()
        })
        .sum();
    Some(psi)
}

/// Measures the drift of each input of the live model: the records that were open at the end
/// of its training window (the population it was built to score) against the records scored
/// now. Without a known window end, the baseline is the examples of the training window.
pub fn feature_drift(
    history: &History,
    model: &StoredModel,
    entry: Option<&ModelEntry>,
    config: &Config,
    now: DateTime<Utc>,
) -> Drift {
    let mut drift = Drift {
        model_version: Some(model.version.clone()),
        ..Drift::default()
    };
    let space: FeatureSpace = match serde_json::from_value(model.features.clone()) {
        Ok(space) => space,
        Err(err) => {
            drift.note = Some(format!(
                "the feature encoding of model {} is unreadable ({err}), so drift was not measured; retrain to replace it",
                model.version
            ));
            return drift;
        }
    };

    let (from, to) = entry.map_or((None, None), |e| (e.window_from, e.window_to));
    // Comparing the open records with the closed examples would flag differences between two
    // populations (accounts that never bought look unlike deals), not change over time.
    let training: Vec<Vec<f64>> = match to {
        Some(end) => {
            let mut then = config.clone();
            then.scoring.as_of = Some(end);
            drift.baseline = format!(
                "open records as of {}, the end of the training window",
                end.format("%Y-%m-%d")
            );
            levels::open_records(space.level, history, &then, end)
                .iter()
                .map(|record| space.row(history, record.target(), end))
                .collect()
        }
        None => {
            drift.baseline = "examples of the training window".to_string();
            levels::examples(space.level, history, config, now)
                .iter()
                .filter(|e| from.is_none_or(|from| e.decided >= from))
                .map(|e| space.row(history, e.target(), e.at))
                .collect()
        }
    };

    let at = config.scoring.as_of.unwrap_or(now);
    let open: Vec<Vec<f64>> = levels::open_records(space.level, history, config, now)
        .iter()
        .map(|record| space.row(history, record.target(), at))
        .collect();

    drift.training_rows = training.len();
    drift.open_rows = open.len();
    if training.len() < MIN_ROWS_FOR_PSI || open.len() < MIN_ROWS_FOR_PSI {
        drift.note = Some(format!(
            "too little data for drift: {} rows of the baseline ({}) and {} open records, and PSI needs at least {MIN_ROWS_FOR_PSI} of each",
            training.len(),
            drift.baseline,
            open.len()
        ));
        return drift;
    }

    for (column, name) in space.names().into_iter().enumerate() {
        let values = |rows: &[Vec<f64>]| -> Vec<f64> {
            rows.iter()
                .map(|row| row.get(column).copied().unwrap_or(f64::NAN))
                .collect()
        };
        if let Some(psi) = population_stability_index(&values(&training), &values(&open)) {
            drift.features.push(FeatureDrift { feature: name, psi });
        }
    }
    drift.features.sort_by(|a, b| {
        b.psi
            .total_cmp(&a.psi)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    drift
}
