//! [`TrainedModel`]: the model training chose (trees, logistic regression or their blend) with
//! its calibrator, as one unit that predicts, explains and serializes.

use serde::{Deserialize, Serialize};

use super::calibration::Calibrator;
use super::{sigmoid, Contributions, GradientBoostedModel, LogisticModel, Model, ModelError};

/// Format name stored in every serialized model, so foreign JSON is rejected on load.
const FORMAT_NAME: &str = "leadscore-trained-model";
/// Version of the serialized layout. Version 1 blended probabilities and version 2 blends
/// log-odds. The layout is the same, so version 1 trees and logistic models still load.
const FORMAT_VERSION: u32 = 2;
/// Oldest layout version this build reads.
const OLDEST_FORMAT_VERSION: u32 = 1;

/// Weight of the trees' log-odds in a blend. The logistic regression gets `1 - weight`.
pub const BLEND_GBM_WEIGHT: f64 = 0.5;

/// Kind of fitted model that produces the uncalibrated probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Gbm,
    Logistic,
    /// The weighted mean of the two models' log-odds (see [`BLEND_GBM_WEIGHT`]).
    Blend,
}

impl ModelKind {
    /// Returns the name used in reports and version names: `gbm`, `logistic` or `blend`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gbm => "gbm",
            ModelKind::Logistic => "logistic",
            ModelKind::Blend => "blend",
        }
    }
}

/// The chosen model and the calibrator fitted on the validation slice.
#[derive(Debug)]
pub struct TrainedModel {
    pub kind: ModelKind,
    pub gbm: Option<GradientBoostedModel>,
    pub logistic: Option<LogisticModel>,
    pub calibrator: Calibrator,
}

/// Serialized layout; each inner model keeps its own JSON format, stored as a string.
#[derive(Serialize, Deserialize)]
struct StoredTrainedModel {
    format: String,
    version: u32,
    kind: ModelKind,
    calibrator: Calibrator,
    gbm: Option<String>,
    logistic: Option<String>,
}

#[derive(Deserialize)]
struct StoredHeader {
    format: String,
}

impl TrainedModel {
    /// Builds a model of `kind` from the fitted parts it needs; the others may be `None`.
    pub fn new(
        kind: ModelKind,
        gbm: Option<GradientBoostedModel>,
        logistic: Option<LogisticModel>,
        calibrator: Calibrator,
    ) -> Result<Self, ModelError> {
        let (gbm, logistic) = match kind {
            ModelKind::Gbm => (gbm, None),
            ModelKind::Logistic => (None, logistic),
            ModelKind::Blend => (gbm, logistic),
        };
        let needs_gbm = kind != ModelKind::Logistic;
        let needs_logistic = kind != ModelKind::Gbm;
        if needs_gbm != gbm.is_some() || needs_logistic != logistic.is_some() {
            return Err(ModelError::InvalidModelBytes(format!(
                "a {} model needs {}",
                kind.name(),
                match kind {
                    ModelKind::Gbm => "the gradient-boosted model",
                    ModelKind::Logistic => "the logistic regression",
                    ModelKind::Blend =>
                        "both the gradient-boosted model and the logistic regression",
                }
            )));
        }
        Ok(Self {
            kind,
            gbm,
            logistic,
            calibrator,
        })
    }

    /// Returns the feature names of the model, in row order.
    pub fn feature_names(&self) -> &[String] {
        match (&self.gbm, &self.logistic) {
            (Some(gbm), _) => gbm.feature_names(),
            (None, Some(logistic)) => logistic.feature_names(),
            (None, None) => &[],
        }
    }

    /// Returns each row's raw score in log-odds, before calibration.
    pub fn predict_log_odds(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        match (self.kind, &self.gbm, &self.logistic) {
            (ModelKind::Gbm, Some(gbm), _) => gbm.predict_log_odds(rows),
            (ModelKind::Logistic, _, Some(logistic)) => logistic.predict_log_odds(rows),
            (ModelKind::Blend, Some(gbm), Some(logistic)) => Ok(blend(
                &gbm.predict_log_odds(rows)?,
                &logistic.predict_log_odds(rows)?,
            )),
            _ => Err(missing_part(self.kind)),
        }
    }

    /// Returns the probabilities before calibration: the logistic function of
    /// [`TrainedModel::predict_log_odds`].
    pub fn predict_uncalibrated(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        let log_odds = self.predict_log_odds(rows)?;
        let mut probabilities = Vec::with_capacity(log_odds.len());
        for (row, &score) in log_odds.iter().enumerate() {
            let probability = sigmoid(score);
            if !(0.0..=1.0).contains(&probability) {
                return Err(ModelError::InvalidPrediction {
                    row,
                    value: probability,
                });
            }
            probabilities.push(probability);
        }
        Ok(probabilities)
    }

    /// Returns the calibrated probability of a won deal for each row.
    pub fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        Ok(self.calibrator.apply_all(&self.predict_uncalibrated(rows)?))
    }

    /// Explains each row in log-odds before calibration: the bias plus the contributions equal
    /// [`TrainedModel::predict_log_odds`], and a blend weighs its two parts' contributions as
    /// it weighs their log-odds. Calibration is monotone, so it never flips the direction of
    /// a contribution.
    pub fn contributions(&self, rows: &[Vec<f64>]) -> Result<Vec<Contributions>, ModelError> {
        match (self.kind, &self.gbm, &self.logistic) {
            (ModelKind::Gbm, Some(gbm), _) => gbm.contributions(rows),
            (ModelKind::Logistic, _, Some(logistic)) => logistic.contributions(rows),
            (ModelKind::Blend, Some(gbm), Some(logistic)) => {
                let trees = gbm.contributions(rows)?;
                let linear = logistic.contributions(rows)?;
                Ok(trees
                    .into_iter()
                    .zip(linear)
                    .map(|(a, b)| Contributions {
                        bias: blend_one(a.bias, b.bias),
                        values: blend(&a.values, &b.values),
                    })
                    .collect())
            }
            _ => Err(missing_part(self.kind)),
        }
    }

    /// Returns the trees' split values when the model is trees only. Such a model's
    /// predictions and Shapley contributions depend on a row only through the side of each
    /// split it falls on, so two rows with equal [`SplitBins::bins`] get equal outputs. A
    /// logistic regression reads exact values, so the other kinds return `None`.
    pub fn split_bins(&self) -> Option<SplitBins> {
        match (self.kind, &self.gbm) {
            (ModelKind::Gbm, Some(gbm)) => {
                let (values, missing) = gbm.split_values();
                Some(SplitBins { values, missing })
            }
            _ => None,
        }
    }

    /// Serializes the model, its parts and the calibrator as JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|e| ModelError::Serialize(e.to_string()))
        };
        let stored = StoredTrainedModel {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            kind: self.kind,
            calibrator: self.calibrator.clone(),
            gbm: self
                .gbm
                .as_ref()
                .map(|m| m.to_bytes())
                .transpose()?
                .map(text)
                .transpose()?,
            logistic: self
                .logistic
                .as_ref()
                .map(LogisticModel::to_bytes)
                .transpose()?
                .map(text)
                .transpose()?,
        };
        serde_json::to_vec(&stored).map_err(|e| ModelError::Serialize(e.to_string()))
    }

    /// Loads a model written by [`TrainedModel::to_bytes`]. Bytes of a bare
    /// [`GradientBoostedModel`], as stored before calibration existed, load as an uncalibrated
    /// tree model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let header: StoredHeader = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::InvalidModelBytes(format!("no readable model header: {e}")))?;
        if header.format != FORMAT_NAME {
            let gbm = GradientBoostedModel::from_bytes(bytes)?;
            return Self::new(ModelKind::Gbm, Some(gbm), None, Calibrator::None);
        }
        let stored: StoredTrainedModel = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::InvalidModelBytes(e.to_string()))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&stored.version) {
            return Err(ModelError::UnsupportedFormatVersion {
                found: stored.version,
                supported: FORMAT_VERSION,
            });
        }
        if stored.version < 2 && stored.kind == ModelKind::Blend {
            return Err(ModelError::RetrainRequired(format!(
                "the stored blend uses model format version {}, which averaged the two \
                 models' probabilities, and this build averages their log-odds",
                stored.version
            )));
        }
        if !stored.calibrator.is_valid() {
            return Err(ModelError::InvalidModelBytes(
                "the calibrator has non-finite or unsorted values".to_string(),
            ));
        }
        let gbm = stored
            .gbm
            .map(|text| GradientBoostedModel::from_bytes(text.as_bytes()))
            .transpose()?;
        let logistic = stored
            .logistic
            .map(|text| LogisticModel::from_bytes(text.as_bytes()))
            .transpose()?;
        if let (Some(gbm), Some(logistic)) = (&gbm, &logistic) {
            if gbm.feature_names() != logistic.feature_names() {
                return Err(ModelError::InvalidModelBytes(
                    "the two parts of the blend have different feature names".to_string(),
                ));
            }
        }
        Self::new(stored.kind, gbm, logistic, stored.calibrator)
    }
}

/// The split values of a tree-only model per input column, from [`TrainedModel::split_bins`].
#[derive(Clone, Debug)]
pub struct SplitBins {
    /// Sorted split values without repeats, one list per column.
    values: Vec<Vec<f64>>,
    /// The value that marks a missing input (NaN for every model leadscore trains).
    missing: f64,
}

/// Bin of a missing value.
const MISSING_BIN: u32 = u32::MAX;
/// Bin of a NaN when the model marks missing values with another number.
const NAN_BIN: u32 = u32::MAX - 1;

impl SplitBins {
    /// Returns one bin per column of `row`: the number of the column's split values at or
    /// below the value, or a fixed bin for a missing value. forust-ml 0.8 sends a value left
    /// when `value < split` (`Node::get_child_idx`, which its prediction and its Shapley
    /// contributions both use), so values in the same bin take the same branch at every node. Columns past the known ones get bin 0, which a model with that many
    /// columns would have rejected before.
    pub fn bins<'a>(&'a self, row: &'a [f64]) -> impl Iterator<Item = u32> + 'a {
        row.iter().enumerate().map(|(column, &value)| {
            let missing = if self.missing.is_nan() {
                value.is_nan()
            } else {
                value == self.missing
            };
            if missing {
                return MISSING_BIN;
            }
            if value.is_nan() {
                return NAN_BIN;
            }
            let splits = self.values.get(column).map_or(&[][..], Vec::as_slice);
            let below = splits.partition_point(|split| *split <= value);
            u32::try_from(below).unwrap_or(NAN_BIN - 1)
        })
    }

    /// Returns the split values of `column`, sorted, without repeats.
    pub fn splits(&self, column: usize) -> &[f64] {
        self.values.get(column).map_or(&[][..], Vec::as_slice)
    }
}

/// Blends the trees' log-odds (or contributions) `gbm` with the logistic regression's
/// `logistic`, element by element, with weight [`BLEND_GBM_WEIGHT`] on the trees.
pub fn blend(gbm: &[f64], logistic: &[f64]) -> Vec<f64> {
    gbm.iter()
        .zip(logistic)
        .map(|(&g, &l)| blend_one(g, l))
        .collect()
}

fn blend_one(gbm: f64, logistic: f64) -> f64 {
    BLEND_GBM_WEIGHT * gbm + (1.0 - BLEND_GBM_WEIGHT) * logistic
}

fn missing_part(kind: ModelKind) -> ModelError {
    ModelError::InvalidModelBytes(format!("the {} model is missing a part", kind.name()))
}
