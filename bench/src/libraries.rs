//! Trains and applies each benchmarked library on the same rows, with the same parameters.
//!
//! `forust-ml` runs through leadscore's own [`GradientBoostedModel`], so its numbers include
//! the input checks and the copy into column-major order that production scoring pays.
//! `gbdt` 0.1.3 runs directly. It reads `f32` features and expects labels of -1 and +1.
//! It has its own missing-value marker, `VALUE_TYPE_UNKNOWN` (`f32::MIN`), with a separate
//! branch for it in every split. The bench measures that marker, raw NaN, and a plain
//! number below every real value ([`PLAIN_SENTINEL`]).

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use gbdt::config::Config;
use gbdt::decision_tree::{Data, DataVec, VALUE_TYPE_UNKNOWN};
use gbdt::gradient_boost::GBDT;

use crate::memory;
use crate::model::{Dataset, GradientBoostedModel, Model, TrainParams};

/// Replacement for NaN in the plain-sentinel variant: an ordinary number below every value
/// in the benchmark data, so missing rows sort to one end of each feature.
pub const PLAIN_SENTINEL: f32 = -1.0e9;

/// A library and how missing values reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Library {
    /// forust-ml 0.8 through `GradientBoostedModel`, missing values as NaN.
    Forust,
    /// gbdt 0.1.3 with missing values passed as NaN.
    GbdtNan,
    /// gbdt 0.1.3 with missing values replaced by its own marker `VALUE_TYPE_UNKNOWN`.
    GbdtUnknown,
    /// gbdt 0.1.3 with missing values replaced by [`PLAIN_SENTINEL`].
    GbdtSentinel,
}

/// Encoding of a missing value in the rows passed to gbdt.
#[derive(Clone, Copy)]
enum GbdtMissing {
    Nan,
    Unknown,
    Sentinel,
}

impl GbdtMissing {
    fn replacement(self) -> Option<f32> {
        match self {
            GbdtMissing::Nan => None,
            GbdtMissing::Unknown => Some(VALUE_TYPE_UNKNOWN),
            GbdtMissing::Sentinel => Some(PLAIN_SENTINEL),
        }
    }
}

impl Library {
    pub fn label(self) -> &'static str {
        match self {
            Library::Forust => "forust-ml 0.8 (NaN)",
            Library::GbdtNan => "gbdt 0.1.3 (NaN)",
            Library::GbdtUnknown => "gbdt 0.1.3 (VALUE_TYPE_UNKNOWN)",
            Library::GbdtSentinel => "gbdt 0.1.3 (sentinel -1e9)",
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            Library::Forust => "forust",
            Library::GbdtNan => "gbdt-nan",
            Library::GbdtUnknown => "gbdt-unknown",
            Library::GbdtSentinel => "gbdt-sentinel",
        }
    }
}

/// Timings and memory of one fit, plus holdout probabilities unless training panicked.
pub struct Outcome {
    pub train_seconds: f64,
    pub predict_seconds: f64,
    pub rss_before_fit_kib: Option<u64>,
    pub peak_rss_during_fit_kib: Option<u64>,
    pub probabilities: Vec<f64>,
    pub panic: Option<String>,
}

/// Trains `library` on `train` and predicts `holdout`. Consumes `train` so that each
/// library holds only its own input format while it trains.
pub fn run(
    library: Library,
    train: Dataset,
    holdout: &Dataset,
    params: &TrainParams,
) -> Result<Outcome, String> {
    match library {
        Library::Forust => run_forust(train, holdout, params),
        Library::GbdtNan => run_gbdt(train, holdout, params, GbdtMissing::Nan),
        Library::GbdtUnknown => run_gbdt(train, holdout, params, GbdtMissing::Unknown),
        Library::GbdtSentinel => run_gbdt(train, holdout, params, GbdtMissing::Sentinel),
    }
}

fn run_forust(train: Dataset, holdout: &Dataset, params: &TrainParams) -> Result<Outcome, String> {
    let rss_before_fit_kib = memory::reset_peak();
    let started = Instant::now();
    let model = GradientBoostedModel::fit(&train, params).map_err(|e| e.to_string())?;
    let train_seconds = started.elapsed().as_secs_f64();
    let peak_rss_during_fit_kib = memory::peak_kib();
    drop(train);

    let started = Instant::now();
    let probabilities = model.predict(&holdout.rows).map_err(|e| e.to_string())?;
    Ok(Outcome {
        train_seconds,
        predict_seconds: started.elapsed().as_secs_f64(),
        rss_before_fit_kib,
        peak_rss_during_fit_kib,
        probabilities,
        panic: None,
    })
}

fn to_gbdt_features(row: &[f64], missing: GbdtMissing) -> Vec<f32> {
    row.iter()
        .map(|&v| {
            if v.is_nan() {
                missing.replacement().unwrap_or(f32::NAN)
            } else {
                v as f32
            }
        })
        .collect()
}

fn run_gbdt(
    train: Dataset,
    holdout: &Dataset,
    params: &TrainParams,
    missing: GbdtMissing,
) -> Result<Outcome, String> {
    let width = train.feature_names.len();
    let mut config = Config::new();
    config.set_feature_size(width);
    config.set_max_depth(u32::try_from(params.max_depth).map_err(|e| e.to_string())?);
    config.set_iterations(params.trees);
    config.set_shrinkage(params.learning_rate as f32);
    // gbdt has no minimum hessian per leaf; its closest setting is a minimum row count.
    config.set_min_leaf_size(1);
    // LogLikelyhood is gbdt's binary log loss. Its gradient and its prediction,
    // 1 / (1 + exp(-2x)), assume labels of -1 and +1, not 0 and 1.
    config.set_loss("LogLikelyhood");

    let mut train_data: DataVec = train
        .rows
        .iter()
        .zip(&train.labels)
        .map(|(row, &label)| {
            let signed = if label == 1.0 { 1.0 } else { -1.0 };
            Data::new_training_data(to_gbdt_features(row, missing), 1.0, signed, None)
        })
        .collect();
    drop(train);
    let test_data: DataVec = holdout
        .rows
        .iter()
        .map(|row| Data::new_test_data(to_gbdt_features(row, missing), None))
        .collect();

    let rss_before_fit_kib = memory::reset_peak();
    let mut model = GBDT::new(&config);
    let started = Instant::now();
    let fitted = panic::catch_unwind(AssertUnwindSafe(|| model.fit(&mut train_data)));
    let train_seconds = started.elapsed().as_secs_f64();
    let peak_rss_during_fit_kib = memory::peak_kib();
    if let Err(payload) = fitted {
        return Ok(Outcome {
            train_seconds,
            predict_seconds: 0.0,
            rss_before_fit_kib,
            peak_rss_during_fit_kib,
            probabilities: Vec::new(),
            panic: Some(format!("fit: {}", panic_message(payload.as_ref()))),
        });
    }
    drop(train_data);

    let started = Instant::now();
    let predicted = panic::catch_unwind(AssertUnwindSafe(|| model.predict(&test_data)));
    let predict_seconds = started.elapsed().as_secs_f64();
    let (probabilities, panic) = match predicted {
        Ok(values) => (values.into_iter().map(f64::from).collect(), None),
        Err(payload) => (
            Vec::new(),
            Some(format!("predict: {}", panic_message(payload.as_ref()))),
        ),
    };
    Ok(Outcome {
        train_seconds,
        predict_seconds,
        rss_before_fit_kib,
        peak_rss_during_fit_kib,
        probabilities,
        panic,
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}
