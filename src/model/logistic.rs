//! [`LogisticModel`]: an L2-regularised logistic regression, the baseline the trees must beat.
//!
//! Inputs are standardised with the training mean and standard deviation. A missing value
//! (NaN) is imputed with the training mean, and every feature that has a missing value in
//! training gets a missing-indicator column, standardised like the others. The fit runs Newton
//! steps with step halving from all-zero coefficients, so it is deterministic.

use serde::{Deserialize, Serialize};

use super::{sigmoid, validate_rows, Contributions, Dataset, ModelError};

/// Format name stored in every serialized model, so foreign JSON is rejected on load.
const FORMAT_NAME: &str = "leadscore-logistic-model";
/// Version of the serialized layout.
const FORMAT_VERSION: u32 = 1;
/// Newton iterations at most; the penalised problem usually converges in under 15.
const MAX_ITERATIONS: usize = 100;
/// Convergence threshold on the largest coefficient change.
const TOLERANCE: f64 = 1e-9;

/// One input of the linear predictor: a feature's standardised value or its missing indicator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Term {
    /// Index of the feature in the model's feature order.
    feature: usize,
    /// True for the missing-indicator column of `feature`.
    indicator: bool,
    mean: f64,
    /// Standard deviation, or 1.0 for a constant column.
    scale: f64,
}

/// A fitted logistic regression with its standardisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    format: String,
    version: u32,
    feature_names: Vec<String>,
    /// L2 penalty on the coefficients (not the intercept), on the summed log loss.
    l2: f64,
    terms: Vec<Term>,
    intercept: f64,
    coefficients: Vec<f64>,
}

impl LogisticModel {
    /// Fits the model on `data` with L2 penalty `l2` (at least 0, finite).
    pub fn fit(data: &Dataset, l2: f64) -> Result<Self, ModelError> {
        if !(l2 >= 0.0 && l2.is_finite()) {
            return Err(ModelError::InvalidParam {
                name: "l2",
                value: l2.to_string(),
                expected: "a finite number of at least 0",
            });
        }
        data.validate()?;
        let terms = standardisation(data);
        let design = Design {
            terms: &terms,
            rows: &data.rows,
        };
        let (intercept, coefficients) = newton(&design, &data.labels, l2)?;
        Ok(Self {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            feature_names: data.feature_names.clone(),
            l2,
            terms,
            intercept,
            coefficients,
        })
    }

    /// Returns the feature names the model was trained on, in row order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Returns the coefficient of each feature's standardised value, in feature order.
    pub fn coefficients(&self) -> Vec<f64> {
        let mut values = vec![0.0; self.feature_names.len()];
        for (term, coefficient) in self.terms.iter().zip(&self.coefficients) {
            if !term.indicator {
                values[term.feature] = *coefficient;
            }
        }
        values
    }

    /// Returns each row's log-odds.
    pub fn predict_log_odds(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        validate_rows(rows, &self.feature_names)?;
        Ok(rows
            .iter()
            .map(|row| {
                let inputs = expand(&self.terms, row);
                self.intercept + dot(&self.coefficients, &inputs)
            })
            .collect())
    }

    /// Returns the probability of a won deal for each row.
    pub fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        Ok(self
            .predict_log_odds(rows)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }

    /// Explains each row as the intercept plus, per feature, coefficient times standardised
    /// value (the missing indicator's term added to its feature). The sum is exact.
    pub fn contributions(&self, rows: &[Vec<f64>]) -> Result<Vec<Contributions>, ModelError> {
        validate_rows(rows, &self.feature_names)?;
        Ok(rows
            .iter()
            .map(|row| {
                let inputs = expand(&self.terms, row);
                let mut values = vec![0.0; self.feature_names.len()];
                for ((term, coefficient), input) in
                    self.terms.iter().zip(&self.coefficients).zip(&inputs)
                {
                    values[term.feature] += coefficient * input;
                }
                Contributions {
                    bias: self.intercept,
                    values,
                }
            })
            .collect())
    }

    /// Serializes the model as JSON with its format name and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        serde_json::to_vec(self).map_err(|e| ModelError::Serialize(e.to_string()))
    }

    /// Loads a model written by [`LogisticModel::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let model: Self = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::InvalidModelBytes(e.to_string()))?;
        if model.format != FORMAT_NAME {
            return Err(ModelError::InvalidModelBytes(format!(
                "format is `{}`, expected `{FORMAT_NAME}`",
                model.format
            )));
        }
        if model.version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedFormatVersion {
                found: model.version,
                supported: FORMAT_VERSION,
            });
        }
        let width = model.feature_names.len();
        let consistent = model.terms.len() == model.coefficients.len()
            && model.terms.iter().all(|t| {
                t.feature < width && t.mean.is_finite() && t.scale.is_finite() && t.scale > 0.0
            })
            && model.intercept.is_finite()
            && model.coefficients.iter().all(|c| c.is_finite());
        if !consistent {
            return Err(ModelError::InvalidModelBytes(
                "the terms, coefficients and feature names do not match".to_string(),
            ));
        }
        Ok(model)
    }
}

/// Computes mean and standard deviation per feature from the non-missing training values, and
/// adds an indicator term for each feature with a missing value.
fn standardisation(data: &Dataset) -> Vec<Term> {
    let mut terms = Vec::new();
    for feature in 0..data.feature_names.len() {
        let present: Vec<f64> = data
            .rows
            .iter()
            .map(|row| row[feature])
            .filter(|v| !v.is_nan())
            .collect();
        let (mean, scale) = mean_and_scale(&present);
        terms.push(Term {
            feature,
            indicator: false,
            mean,
            scale,
        });
        let missing = data.rows.len() - present.len();
        if missing > 0 {
            let flags: Vec<f64> = data
                .rows
                .iter()
                .map(|row| f64::from(u8::from(row[feature].is_nan())))
                .collect();
            let (mean, scale) = mean_and_scale(&flags);
            terms.push(Term {
                feature,
                indicator: true,
                mean,
                scale,
            });
        }
    }
    terms
}

fn mean_and_scale(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let scale = variance.sqrt();
    if scale > 1e-12 && scale.is_finite() {
        (mean, scale)
    } else {
        (mean, 1.0)
    }
}

/// Turns a raw row into standardised inputs, one per term.
fn expand(terms: &[Term], row: &[f64]) -> Vec<f64> {
    let mut inputs = Vec::with_capacity(terms.len());
    expand_into(terms, row, &mut inputs);
    inputs
}

/// Writes the standardised inputs of `row` into `inputs`, replacing its contents.
fn expand_into(terms: &[Term], row: &[f64], inputs: &mut Vec<f64>) {
    inputs.clear();
    inputs.extend(terms.iter().map(|term| {
        let raw = row[term.feature];
        let value = if term.indicator {
            f64::from(u8::from(raw.is_nan()))
        } else if raw.is_nan() {
            term.mean
        } else {
            raw
        };
        (value - term.mean) / term.scale
    }));
}

/// The rows as the fit reads them, standardised one at a time. A copy of every expanded row
/// would take as much memory as the rows themselves, or more with the missing indicators.
struct Design<'a> {
    terms: &'a [Term],
    rows: &'a [Vec<f64>],
}

impl Design<'_> {
    /// Returns the number of inputs per row, the intercept's included.
    fn width(&self) -> usize {
        self.terms.len() + 1
    }

    /// Calls `visit` with each row's standardised inputs and its position, in order.
    fn for_each(&self, mut visit: impl FnMut(&[f64], usize)) {
        let mut inputs = Vec::with_capacity(self.terms.len());
        for (position, row) in self.rows.iter().enumerate() {
            expand_into(self.terms, row, &mut inputs);
            visit(&inputs, position);
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Penalised negative log-likelihood (summed over rows).
fn objective(design: &Design<'_>, labels: &[f64], l2: f64, beta: &[f64]) -> f64 {
    let mut total = 0.0;
    design.for_each(|inputs, position| {
        let y = labels[position];
        let z = beta[0] + dot(&beta[1..], inputs);
        // log(1 + e^z) - y z, written to avoid overflow.
        let softplus = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        total += softplus - y * z;
    });
    total + 0.5 * l2 * beta[1..].iter().map(|b| b * b).sum::<f64>()
}

/// Minimises the penalised log loss by Newton steps; returns the intercept and coefficients.
fn newton(design: &Design<'_>, labels: &[f64], l2: f64) -> Result<(f64, Vec<f64>), ModelError> {
    let width = design.width();
    let mut beta = vec![0.0; width];
    let rate = labels.iter().sum::<f64>() / labels.len() as f64;
    beta[0] = (rate / (1.0 - rate)).ln();
    let mut current = objective(design, labels, l2, &beta);

    for _ in 0..MAX_ITERATIONS {
        let mut gradient = vec![0.0; width];
        let mut hessian = vec![vec![0.0; width]; width];
        let mut xs: Vec<f64> = Vec::with_capacity(width);
        design.for_each(|inputs, position| {
            let y = labels[position];
            let p = sigmoid(beta[0] + dot(&beta[1..], inputs));
            let weight = (p * (1.0 - p)).max(1e-12);
            xs.clear();
            xs.push(1.0);
            xs.extend_from_slice(inputs);
            for (i, xi) in xs.iter().enumerate() {
                gradient[i] += (p - y) * xi;
                for (entry, xj) in hessian[i][..=i].iter_mut().zip(&xs) {
                    *entry += weight * xi * xj;
                }
            }
        });
        for i in 1..width {
            gradient[i] += l2 * beta[i];
            hessian[i][i] += l2;
        }
        // A tiny ridge on every diagonal entry keeps the system solvable when l2 is 0.
        for (i, row) in hessian.iter_mut().enumerate() {
            row[i] += 1e-9;
        }
        let step = solve_symmetric(&hessian, &gradient).ok_or_else(|| {
            ModelError::Library("logistic regression: the Newton system is singular".to_string())
        })?;

        // Halve the step until the objective does not rise.
        let mut factor = 1.0;
        let mut candidate: Vec<f64>;
        let mut value;
        loop {
            candidate = beta
                .iter()
                .zip(&step)
                .map(|(b, s)| b - factor * s)
                .collect();
            value = objective(design, labels, l2, &candidate);
            if value <= current || factor < 1e-6 {
                break;
            }
            factor /= 2.0;
        }
        let change = step.iter().map(|s| (factor * s).abs()).fold(0.0, f64::max);
        beta = candidate;
        current = value;
        if change < TOLERANCE {
            break;
        }
    }
    if beta.iter().any(|b| !b.is_finite()) {
        return Err(ModelError::Library(
            "logistic regression diverged; raise the L2 penalty".to_string(),
        ));
    }
    Ok((beta[0], beta[1..].to_vec()))
}

/// Solves `a x = b` for a symmetric positive-definite `a` given by its lower triangle
/// (Cholesky). Returns `None` when `a` is not positive definite.
fn solve_symmetric(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut lower = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let sum = a[i][j]
                - lower[i][..j]
                    .iter()
                    .zip(&lower[j][..j])
                    .map(|(x, y)| x * y)
                    .sum::<f64>();
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                lower[i][i] = sum.sqrt();
            } else {
                lower[i][j] = sum / lower[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let sum: f64 = (0..i).map(|k| lower[i][k] * y[k]).sum();
        y[i] = (b[i] - sum) / lower[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let sum: f64 = (i + 1..n).map(|k| lower[k][i] * x[k]).sum();
        x[i] = (y[i] - sum) / lower[i][i];
    }
    Some(x)
}
