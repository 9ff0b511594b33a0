//! [`GradientBoostedModel`]: the [`Model`] implementation backed by forust-ml 0.8.
//!
//! forust-ml was chosen over gbdt 0.1.3 on measured accuracy with missing values, training
//! time and memory (see BENCHMARKS.md). It handles NaN as missing natively, trains on all
//! cores, returns Shapley contributions and serializes to JSON.

use std::fmt;

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use super::{
    sigmoid, validate_feature_names, validate_rows, Contributions, Dataset, Model, ModelError,
    TrainParams,
};

/// Format name stored in every serialized model, so foreign JSON is rejected on load.
const FORMAT_NAME: &str = "leadscore-gradient-boosted-model";
/// Version of the serialized layout; bump it when [`StoredModel`] changes incompatibly.
const FORMAT_VERSION: u32 = 1;
/// Boosting library that wrote the `booster` field.
const LIBRARY: &str = "forust-ml 0.8";

/// A gradient-boosted tree ensemble with a log-loss objective, trained by forust-ml.
pub struct GradientBoostedModel {
    feature_names: Vec<String>,
    params: TrainParams,
    booster: GradientBooster,
}

/// Serialized layout: a JSON object with the format header, the feature names, the training
/// parameters and forust-ml's own JSON representation of the booster.
#[derive(Serialize)]
struct StoredModelRef<'a> {
    format: &'a str,
    version: u32,
    library: &'a str,
    feature_names: &'a [String],
    params: &'a TrainParams,
    booster: &'a GradientBooster,
}

/// Header read first, so a wrong format or version gets its own error before the body is parsed.
#[derive(Deserialize)]
struct StoredHeader {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
struct StoredModel {
    feature_names: Vec<String>,
    params: TrainParams,
    booster: GradientBooster,
}

impl GradientBoostedModel {
    /// Returns the trees `predict` uses: all of them unless the booster stops at an iteration.
    fn prediction_trees(&self) -> &[forust_ml::tree::Tree] {
        let trees = &self.booster.trees;
        let used = self
            .booster
            .prediction_iteration
            .unwrap_or(trees.len())
            .min(trees.len());
        &trees[..used]
    }

    /// Contributions as forust-ml's own `Shapley` method computes them, one block of
    /// `width + 1` values per row with the bias last: the reference for `tree_shap`.
    #[cfg(test)]
    pub(crate) fn library_contributions(&self, rows: &[Vec<f64>]) -> Vec<f64> {
        let width = self.feature_names.len();
        let columns = to_column_major(rows, width);
        let matrix = Matrix::new(&columns, rows.len(), width);
        self.booster.predict_contributions(
            &matrix,
            forust_ml::gradientbooster::ContributionsMethod::Shapley,
            false,
        )
    }

    /// Returns the training parameters the model was built with.
    pub fn params(&self) -> &TrainParams {
        &self.params
    }

    /// Returns each row's raw score in log-odds (the value [`Model::predict`] passes through
    /// the logistic function).
    pub fn predict_log_odds(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        validate_rows(rows, &self.feature_names)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let columns = to_column_major(rows, self.feature_names.len());
        let matrix = Matrix::new(&columns, rows.len(), self.feature_names.len());
        let log_odds = self.booster.predict(&matrix, true);
        check_finite(&log_odds, 1)?;
        Ok(log_odds)
    }
}

impl GradientBoostedModel {
    /// Trains with early stopping: trees are added, up to `params.trees`, until the log loss
    /// on `validation` has not improved for `rounds` trees in a row. The returned model keeps
    /// only the trees up to the one with the lowest validation log loss. `rounds` = 0 fits
    /// `params.trees` trees, as [`Model::fit`] does.
    pub fn fit_early_stopping(
        data: &Dataset,
        validation: &Dataset,
        params: &TrainParams,
        rounds: usize,
    ) -> Result<Self, ModelError> {
        Self::fit_early_stopping_weighted(data, validation, params, rounds, None)
    }

    /// Trains like [`GradientBoostedModel::fit_early_stopping`], with one sample weight per
    /// training row passed to forust-ml's `fit`, which in forust-ml 0.8 scales each row's
    /// gradient, hessian and share of the base score. `None` weighs every row 1. Validation
    /// rows always weigh 1.
    pub fn fit_early_stopping_weighted(
        data: &Dataset,
        validation: &Dataset,
        params: &TrainParams,
        rounds: usize,
        sample_weight: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        check_training(data, params, sample_weight)?;
        let columns = to_column_major(&data.rows, data.feature_names.len());
        let training = Training::of(data, &columns);
        Self::fit_early_stopping_columns(&training, validation, params, rounds, sample_weight)
    }

    /// Trains like [`GradientBoostedModel::fit_early_stopping_weighted`] on rows it owns. Each
    /// row is freed once copied into the column-major buffer forust-ml reads, so the rows and
    /// the buffer are not both in memory. At a million contacts that saves an estimated
    /// 90 MiB at the train step's peak.
    pub fn fit_early_stopping_owned(
        data: Dataset,
        validation: &Dataset,
        params: &TrainParams,
        rounds: usize,
        sample_weight: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        check_training(&data, params, sample_weight)?;
        let Dataset {
            feature_names,
            rows,
            labels,
        } = data;
        let count = rows.len();
        let columns = into_column_major(rows, feature_names.len());
        let training = Training {
            columns: &columns,
            rows: count,
            feature_names: &feature_names,
            labels: &labels,
        };
        Self::fit_early_stopping_columns(&training, validation, params, rounds, sample_weight)
    }

    fn fit_early_stopping_columns(
        training: &Training<'_>,
        validation: &Dataset,
        params: &TrainParams,
        rounds: usize,
        sample_weight: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        if rounds == 0 {
            return Self::fit_with(training, params, None, None, sample_weight);
        }
        if validation.feature_names != training.feature_names {
            return Err(ModelError::InvalidParam {
                name: "validation",
                value: format!("{} features", validation.feature_names.len()),
                expected: "the same feature names as the training data, in the same order",
            });
        }
        validation.validate()?;

        let width = validation.feature_names.len();
        let columns = to_column_major(&validation.rows, width);
        let matrix = Matrix::new(&columns, validation.rows.len(), width);
        let weights = vec![1.0; validation.rows.len()];
        let evaluation = vec![(matrix, validation.labels.as_slice(), weights.as_slice())];
        let mut model = Self::fit_with(
            training,
            params,
            Some(rounds),
            Some(evaluation),
            sample_weight,
        )?;

        // forust-ml keeps the trees fitted after the best one and skips them when predicting.
        // Dropping them makes the stored model, its parameters and its contributions agree.
        let kept = model
            .booster
            .prediction_iteration
            .unwrap_or(model.booster.trees.len())
            .clamp(1, model.booster.trees.len().max(1));
        model.booster.trees.truncate(kept);
        model.booster.prediction_iteration = None;
        model.booster.early_stopping_rounds = None;
        model.params.trees = kept;
        Ok(model)
    }

    /// Returns the number of trees the model predicts with.
    pub fn tree_count(&self) -> usize {
        self.booster.trees.len()
    }

    /// Returns the split values of every tree per input column, sorted and without repeats,
    /// and the value that marks a missing input. A node sends a row left when the column's
    /// value is below its split value, and to its missing branch when the value is missing.
    pub fn split_values(&self) -> (Vec<Vec<f64>>, f64) {
        let mut values = vec![Vec::new(); self.feature_names.len()];
        for tree in &self.booster.trees {
            for node in tree.nodes.iter().filter(|node| !node.is_leaf) {
                // A NaN split value sends every value right, so it separates nothing.
                if node.split_value.is_nan() {
                    continue;
                }
                if let Some(column) = values.get_mut(node.split_feature) {
                    column.push(node.split_value);
                }
            }
        }
        for column in &mut values {
            column.sort_by(f64::total_cmp);
            column.dedup();
        }
        (values, self.booster.missing)
    }

    fn fit_with(
        data: &Training<'_>,
        params: &TrainParams,
        early_stopping_rounds: Option<usize>,
        evaluation: Option<Vec<forust_ml::gradientbooster::EvaluationData<'_>>>,
        sample_weight: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        let matrix = Matrix::new(data.columns, data.rows, data.feature_names.len());
        // The objective, missing marker and base score match forust-ml's defaults. They are
        // set anyway, so that a change of library defaults cannot change the model.
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(params.trees)
            .set_max_depth(params.max_depth)
            .set_learning_rate(params.learning_rate as f32)
            .set_min_leaf_weight(params.min_leaf_weight as f32)
            .set_seed(params.seed)
            .set_missing(f64::NAN)
            .set_initialize_base_score(true)
            .set_parallel(true)
            .set_early_stopping_rounds(early_stopping_rounds);
        let fitted = match sample_weight {
            Some(weights) => booster.fit(&matrix, data.labels, weights, evaluation),
            None => booster.fit_unweighted(&matrix, data.labels, evaluation),
        };
        fitted.map_err(|e| ModelError::Library(e.to_string()))?;
        if !booster.base_score.is_finite() {
            return Err(ModelError::Library(format!(
                "the base score is {}, so the class balance of the labels is unusable",
                booster.base_score
            )));
        }

        Ok(Self {
            feature_names: data.feature_names.to_vec(),
            params: params.clone(),
            booster,
        })
    }
}

/// Training rows in the column-major order forust-ml reads, with their names and labels.
struct Training<'a> {
    columns: &'a [f64],
    rows: usize,
    feature_names: &'a [String],
    labels: &'a [f64],
}

impl<'a> Training<'a> {
    /// Pairs `data`'s names and labels with `columns`, its rows in column-major order.
    fn of(data: &'a Dataset, columns: &'a [f64]) -> Training<'a> {
        Training {
            columns,
            rows: data.rows.len(),
            feature_names: &data.feature_names,
            labels: &data.labels,
        }
    }
}

/// Checks the parameters, the rows and the weights of a fit before any copy is made.
fn check_training(
    data: &Dataset,
    params: &TrainParams,
    sample_weight: Option<&[f64]>,
) -> Result<(), ModelError> {
    params.validate()?;
    data.validate()?;
    if let Some(weights) = sample_weight {
        validate_weights(weights, data.rows.len())?;
    }
    Ok(())
}

/// Rejects sample weights that are not one finite, positive number per training row.
fn validate_weights(weights: &[f64], rows: usize) -> Result<(), ModelError> {
    if weights.len() != rows {
        return Err(ModelError::InvalidParam {
            name: "sample_weight",
            value: format!("{} weights for {rows} rows", weights.len()),
            expected: "one weight per training row",
        });
    }
    if let Some(bad) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(ModelError::InvalidParam {
            name: "sample_weight",
            value: bad.to_string(),
            expected: "finite weights above 0",
        });
    }
    Ok(())
}

impl Model for GradientBoostedModel {
    fn fit(data: &Dataset, params: &TrainParams) -> Result<Self, ModelError> {
        check_training(data, params, None)?;
        let columns = to_column_major(&data.rows, data.feature_names.len());
        let training = Training::of(data, &columns);
        Self::fit_with(&training, params, None, None, None)
    }

    fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
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

    fn contributions(&self, rows: &[Vec<f64>]) -> Result<Vec<Contributions>, ModelError> {
        validate_rows(rows, &self.feature_names)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let width = self.feature_names.len();
        let trees = self.prediction_trees();
        let mut explainer = super::tree_shap::Explainer::new(trees, self.booster.missing);
        let mut flat = vec![0.0; rows.len() * (width + 1)];
        for (row, out) in rows.iter().zip(flat.chunks_exact_mut(width + 1)) {
            out[width] = self.booster.base_score;
            explainer.add_row(row, out);
        }
        check_finite(&flat, width + 1)?;

        // One block of `width + 1` values per row, with the bias last.
        let explanations = flat
            .chunks_exact(width + 1)
            .map(|block| Contributions {
                bias: block[width],
                values: block[..width].to_vec(),
            })
            .collect();
        Ok(explanations)
    }

    fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let stored = StoredModelRef {
            format: FORMAT_NAME,
            version: FORMAT_VERSION,
            library: LIBRARY,
            feature_names: &self.feature_names,
            params: &self.params,
            booster: &self.booster,
        };
        serde_json::to_vec(&stored).map_err(|e| ModelError::Serialize(e.to_string()))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let header: StoredHeader = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::InvalidModelBytes(format!("no readable model header: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(ModelError::InvalidModelBytes(format!(
                "format is `{}`, expected `{FORMAT_NAME}`",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedFormatVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }

        let stored: StoredModel = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::InvalidModelBytes(e.to_string()))?;
        validate_feature_names(&stored.feature_names)
            .map_err(|e| ModelError::InvalidModelBytes(e.to_string()))?;
        stored
            .params
            .validate()
            .map_err(|e| ModelError::InvalidModelBytes(e.to_string()))?;
        validate_booster(&stored.booster, stored.feature_names.len())?;

        Ok(Self {
            feature_names: stored.feature_names,
            params: stored.params,
            booster: stored.booster,
        })
    }
}

impl fmt::Debug for GradientBoostedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GradientBoostedModel")
            .field("feature_names", &self.feature_names)
            .field("params", &self.params)
            .field("trees_fitted", &self.booster.trees.len())
            .finish()
    }
}

/// Checks a loaded booster so that prediction cannot index out of bounds or loop forever:
/// every split names an existing feature, and every child index points to a later node of
/// the same tree.
fn validate_booster(booster: &GradientBooster, width: usize) -> Result<(), ModelError> {
    let invalid = |reason: String| Err(ModelError::InvalidModelBytes(reason));

    if !matches!(booster.objective_type, ObjectiveType::LogLoss) {
        return invalid(format!(
            "objective is {:?}, expected LogLoss",
            booster.objective_type
        ));
    }
    if !booster.missing.is_nan() {
        return invalid(format!(
            "missing-value marker is {}, expected NaN",
            booster.missing
        ));
    }
    if !booster.base_score.is_finite() {
        return invalid(format!("base score is {}", booster.base_score));
    }
    if booster.trees.is_empty() {
        return invalid("the model contains no trees".to_string());
    }
    if let Some(limit) = booster.prediction_iteration {
        if limit > booster.trees.len() {
            return invalid(format!(
                "prediction uses {limit} trees but the model contains {}",
                booster.trees.len()
            ));
        }
    }

    for (tree_index, tree) in booster.trees.iter().enumerate() {
        let node_count = tree.nodes.len();
        if node_count == 0 {
            return invalid(format!("tree {tree_index} has no nodes"));
        }
        for (node_index, node) in tree.nodes.iter().enumerate() {
            if !node.weight_value.is_finite() {
                return invalid(format!(
                    "tree {tree_index}, node {node_index} has weight {}",
                    node.weight_value
                ));
            }
            if node.is_leaf {
                continue;
            }
            if node.split_feature >= width {
                return invalid(format!(
                    "tree {tree_index}, node {node_index} splits on feature {} but the model has {width} features",
                    node.split_feature
                ));
            }
            for child in [node.left_child, node.right_child, node.missing_node] {
                if child <= node_index || child >= node_count {
                    return invalid(format!(
                        "tree {tree_index}, node {node_index} points to child {child}, outside {}..{node_count}",
                        node_index + 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Rows moved into the column-major buffer between two hand-backs of the freed rows.
const RELEASE_ROWS: usize = 32_768;

/// Moves row-major rows into the column-major buffer forust-ml reads, freeing each row once
/// copied. The buffer is zeroed memory, whose pages become resident only as they are
/// written, and the freed rows go back to the system every [`RELEASE_ROWS`] rows, so the
/// buffer grows while the rows shrink.
fn into_column_major(rows: Vec<Vec<f64>>, width: usize) -> Vec<f64> {
    let count = rows.len();
    let mut columns = vec![0.0; count * width];
    for (row_index, row) in rows.into_iter().enumerate() {
        for column in 0..width {
            columns[column * count + row_index] = row.get(column).copied().unwrap_or(f64::NAN);
        }
        drop(row);
        if (row_index + 1) % RELEASE_ROWS == 0 {
            super::heap::return_freed();
        }
    }
    super::heap::return_freed();
    columns
}

/// Copies row-major rows into the column-major buffer forust-ml reads.
fn to_column_major(rows: &[Vec<f64>], width: usize) -> Vec<f64> {
    let mut columns = vec![f64::NAN; rows.len() * width];
    for (row_index, row) in rows.iter().enumerate() {
        for (column, &value) in row.iter().enumerate() {
            columns[column * rows.len() + row_index] = value;
        }
    }
    columns
}

/// Rejects any NaN or infinite output, naming its row; each row owns `stride` values.
fn check_finite(values: &[f64], stride: usize) -> Result<(), ModelError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(position) => Err(ModelError::InvalidPrediction {
            row: position / stride,
            value: values[position],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_names_row() {
        assert!(check_finite(&[0.5, -3.0, 2.0], 1).is_ok());
        match check_finite(&[0.5, 1.0, 2.0, f64::NAN, 0.1, 0.2], 3) {
            Err(ModelError::InvalidPrediction { row, value }) => {
                assert_eq!(row, 1);
                assert!(value.is_nan());
            }
            other => panic!("expected InvalidPrediction, got {other:?}"),
        }
        assert!(matches!(
            check_finite(&[f64::INFINITY], 1),
            Err(ModelError::InvalidPrediction { row: 0, .. })
        ));
    }

    #[test]
    fn moved_rows_match_copied_rows() {
        // More rows than RELEASE_ROWS, so the hand-back runs mid-way. A short row's missing
        // values are NaN in both copies.
        let mut rows: Vec<Vec<f64>> = (0..RELEASE_ROWS + 1000)
            .map(|i| {
                let missing = if i % 5 == 0 { f64::NAN } else { 1.0 };
                vec![i as f64, (i % 7) as f64, missing]
            })
            .collect();
        rows[17] = vec![3.5];
        let copied = to_column_major(&rows, 3);
        let moved = into_column_major(rows, 3);
        assert_eq!(copied.len(), moved.len());
        let differ = copied
            .iter()
            .zip(&moved)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(differ, None);
    }

    #[test]
    fn column_major_layout() {
        let rows = vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]];
        assert_eq!(
            to_column_major(&rows, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
