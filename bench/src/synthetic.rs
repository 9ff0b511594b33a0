//! Synthetic 40-feature binary classification data for timing and memory runs.
//!
//! Ten features drive the label through a logistic function with two interactions, the
//! other thirty are noise, and a tenth of the values in features 30-39 are missing (NaN).
//! A fixed seed gives the same rows to every library.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::Dataset;

pub const FEATURES: usize = 40;
const INFORMATIVE: usize = 10;
const FIRST_SPARSE: usize = 30;
const MISSING_SHARE: f64 = 0.1;

/// Generates `rows` rows from `seed`.
pub fn generate(rows: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = Dataset {
        feature_names: (0..FEATURES).map(|i| format!("f{i:02}")).collect(),
        rows: Vec::with_capacity(rows),
        labels: Vec::with_capacity(rows),
    };
    for _ in 0..rows {
        let mut row: Vec<f64> = (0..FEATURES).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut logit: f64 = row[..INFORMATIVE]
            .iter()
            .enumerate()
            .map(|(i, x)| x * (1.5 - 0.1 * i as f64))
            .sum();
        logit += 2.0 * row[0] * row[1] - 1.5 * row[2] * row[3];
        for value in &mut row[FIRST_SPARSE..] {
            if rng.gen_bool(MISSING_SHARE) {
                *value = f64::NAN;
            }
        }
        let probability = 1.0 / (1.0 + (-logit).exp());
        data.labels
            .push(if rng.gen_bool(probability) { 1.0 } else { 0.0 });
        data.rows.push(row);
    }
    data
}
