//! The scoring model: a small library-neutral API and its gradient-boosted implementation.
//!
//! The rest of leadscore trains, applies, explains and stores models only through [`Model`],
//! so the boosting library behind [`GradientBoostedModel`] can be replaced without touching
//! callers. The model does no IO of its own: it takes rows and bytes and returns numbers and
//! bytes. Every input from outside is checked before it reaches the library, because the
//! library panics or silently returns NaN on some inputs (rows narrower than the model,
//! training on zero rows).

pub mod calibration;
pub mod checks;
mod forust;
pub(crate) mod heap;
mod logistic;
pub mod metrics;
#[cfg(test)]
mod tests;
mod trained;
mod tree_shap;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use forust::GradientBoostedModel;
pub use logistic::LogisticModel;
pub use trained::{blend, ModelKind, SplitBins, TrainedModel, BLEND_GBM_WEIGHT};

/// Training data: one row of feature values per closed deal, with its outcome.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Column names, one per value in each row. Names must be unique and non-empty.
    pub feature_names: Vec<String>,
    /// Feature values. NaN marks a missing value; infinite values are rejected.
    pub rows: Vec<Vec<f64>>,
    /// Outcome per row: 1.0 for won, 0.0 for lost.
    pub labels: Vec<f64>,
}

/// Boosting parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Number of boosting rounds (trees), at least 1.
    pub trees: usize,
    /// Maximum depth of each tree, at least 1.
    pub max_depth: usize,
    /// Shrinkage applied to each tree's leaf weights, in (0, 1].
    pub learning_rate: f64,
    /// Minimum sum of hessians (roughly, of p * (1 - p) over the rows) in a leaf, at least 0.
    pub min_leaf_weight: f64,
    /// Seed for any randomness in training.
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            trees: 100,
            max_depth: 5,
            learning_rate: 0.1,
            min_leaf_weight: 1.0,
            seed: 0,
        }
    }
}

/// Per-feature explanation of one row's score, in log-odds.
///
/// `bias + values.iter().sum()` equals the row's raw log-odds score, up to floating-point
/// rounding. `values[i]` belongs to `feature_names()[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Contributions {
    /// Expected log-odds before any feature of the row is known.
    pub bias: f64,
    /// Shapley value of each feature, in the model's feature order.
    pub values: Vec<f64>,
}

/// A binary classifier that scores rows with the probability of a won deal.
pub trait Model: Sized {
    /// Trains a model on `data`, after checking it (see [`Dataset::validate`]).
    fn fit(data: &Dataset, params: &TrainParams) -> Result<Self, ModelError>;

    /// Returns the feature names the model was trained on, in row order.
    fn feature_names(&self) -> &[String];

    /// Returns the probability of a won deal for each row, each in [0, 1].
    fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError>;

    /// Explains each row's score as a bias plus one log-odds contribution per feature.
    fn contributions(&self, rows: &[Vec<f64>]) -> Result<Vec<Contributions>, ModelError>;

    /// Serializes the model, including its feature names and a format version.
    fn to_bytes(&self) -> Result<Vec<u8>, ModelError>;

    /// Loads a model written by [`Model::to_bytes`], rejecting corrupt or foreign bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError>;
}

/// Errors from training, applying or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "training data has no rows: collect at least one won and one lost deal before training"
    )]
    NoRows,

    #[error("training data has no features: add at least one feature column")]
    NoFeatures,

    #[error(
        "training needs both won and lost examples: found {won} won and {lost} lost; \
         wait for more closed deals or widen the training window"
    )]
    OneClass { won: usize, lost: usize },

    #[error("training data has {rows} rows but {labels} labels: pass exactly one label per row")]
    LabelCount { rows: usize, labels: usize },

    #[error("label {value} in row {row} is invalid: use 1.0 for won and 0.0 for lost")]
    InvalidLabel { row: usize, value: f64 },

    #[error("feature name at position {position} is empty: give every feature a name")]
    EmptyFeatureName { position: usize },

    #[error("feature name `{name}` appears more than once: feature names must be unique")]
    DuplicateFeatureName { name: String },

    #[error(
        "row {row} has {found} values but {expected} were expected (one per feature): \
         build every row with the model's feature list, using NaN for missing values"
    )]
    RowWidth {
        row: usize,
        expected: usize,
        found: usize,
    },

    #[error(
        "row {row}, feature `{feature}` is {value}: infinite values are invalid; \
         clip the value to a finite number or use NaN for missing"
    )]
    InfiniteValue {
        row: usize,
        feature: String,
        value: f64,
    },

    #[error("training parameter {name} = {value} is invalid: expected {expected}")]
    InvalidParam {
        name: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error("the boosting library failed: {0}; check the training data and parameters")]
    Library(String),

    #[error(
        "the model returned {value} for row {row}, which is not a valid score; \
         the model is unusable, so retrain it"
    )]
    InvalidPrediction { row: usize, value: f64 },

    #[error("failed to serialize the model: {0}")]
    Serialize(String),

    #[error("model bytes are invalid: {0}; retrain the model or restore an intact copy")]
    InvalidModelBytes(String),

    #[error(
        "model format version {found} is not supported (this build reads version {supported}); \
         retrain the model with this build"
    )]
    UnsupportedFormatVersion { found: u32, supported: u32 },

    #[error("{0}; retrain the model with this build (`leadscore train`)")]
    RetrainRequired(String),
}

impl Dataset {
    /// Checks the data before training and returns the number of won and lost rows.
    ///
    /// Rejects: no features, empty or duplicate feature names, a label count that differs
    /// from the row count, no rows, rows of the wrong width, infinite values, labels other
    /// than 0.0 and 1.0, and data with only one class. NaN values are accepted as missing.
    pub fn validate(&self) -> Result<(usize, usize), ModelError> {
        validate_feature_names(&self.feature_names)?;
        if self.labels.len() != self.rows.len() {
            return Err(ModelError::LabelCount {
                rows: self.rows.len(),
                labels: self.labels.len(),
            });
        }
        if self.rows.is_empty() {
            return Err(ModelError::NoRows);
        }
        validate_rows(&self.rows, &self.feature_names)?;

        let mut won = 0;
        let mut lost = 0;
        for (row, &label) in self.labels.iter().enumerate() {
            if label == 1.0 {
                won += 1;
            } else if label == 0.0 {
                lost += 1;
            } else {
                return Err(ModelError::InvalidLabel { row, value: label });
            }
        }
        if won == 0 || lost == 0 {
            return Err(ModelError::OneClass { won, lost });
        }
        Ok((won, lost))
    }
}

impl TrainParams {
    /// Checks that every parameter is in its documented range.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.trees == 0 {
            return Err(invalid_param("trees", self.trees, "at least 1"));
        }
        if self.max_depth == 0 {
            return Err(invalid_param("max_depth", self.max_depth, "at least 1"));
        }
        let rate = self.learning_rate;
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(invalid_param(
                "learning_rate",
                rate,
                "a number greater than 0 and at most 1",
            ));
        }
        let weight = self.min_leaf_weight;
        if !(weight >= 0.0 && (weight as f32).is_finite()) {
            return Err(invalid_param(
                "min_leaf_weight",
                weight,
                "a finite number of at least 0",
            ));
        }
        Ok(())
    }
}

fn invalid_param(name: &'static str, value: impl ToString, expected: &'static str) -> ModelError {
    ModelError::InvalidParam {
        name,
        value: value.to_string(),
        expected,
    }
}

fn validate_feature_names(names: &[String]) -> Result<(), ModelError> {
    if names.is_empty() {
        return Err(ModelError::NoFeatures);
    }
    let mut seen = HashSet::with_capacity(names.len());
    for (position, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ModelError::EmptyFeatureName { position });
        }
        if !seen.insert(name.as_str()) {
            return Err(ModelError::DuplicateFeatureName { name: name.clone() });
        }
    }
    Ok(())
}

/// Checks that every row has one value per feature and no infinite value.
fn validate_rows(rows: &[Vec<f64>], feature_names: &[String]) -> Result<(), ModelError> {
    let expected = feature_names.len();
    for (row_index, row) in rows.iter().enumerate() {
        if row.len() != expected {
            return Err(ModelError::RowWidth {
                row: row_index,
                expected,
                found: row.len(),
            });
        }
        if let Some(column) = row.iter().position(|v| v.is_infinite()) {
            return Err(ModelError::InfiniteValue {
                row: row_index,
                feature: feature_names[column].clone(),
                value: row[column],
            });
        }
    }
    Ok(())
}

/// Converts log-odds to a probability without overflow for large magnitudes.
pub(crate) fn sigmoid(log_odds: f64) -> f64 {
    if log_odds >= 0.0 {
        1.0 / (1.0 + (-log_odds).exp())
    } else {
        let e = log_odds.exp();
        e / (1.0 + e)
    }
}
