//! Offline evaluation: checks, training and holdout metrics on a CSV export, with no CRM.
//!
//! `leadscore evaluate` reads a CSV file, infers each column's type, encodes the columns as
//! features, orders the rows in time and runs the trainer's evaluation
//! ([`crate::training::evaluate_examples`]) on them. Without `--holdout-csv`, the trainer holds
//! out the latest rows. With it, the whole first file trains and the second file is the
//! holdout, so the numbers can be compared with another tool on identical rows.

mod encode;
pub(crate) mod table;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ModelConfig};
use crate::training::{self, ExampleSet};
use encode::Encoder;
use table::{ColumnSummary, Table};

/// Options of `leadscore evaluate`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// CSV export with a header row, one row per closed lead or deal.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Outcome column: 1/0, yes/no, true/false, won/lost or converted/not converted.
    #[arg(long, value_name = "COLUMN")]
    pub label: String,
    /// Date or number column giving each row's time, used for ordering and not as a feature.
    /// The latest rows form the holdout. Without it, the file's row order is the time order.
    #[arg(long, value_name = "COLUMN")]
    pub time: Option<String>,
    /// Column identifying each row in `--predictions` (the data row number by default).
    #[arg(long, value_name = "COLUMN")]
    pub id: Option<String>,
    /// Columns to leave out of the features; repeat the option or list several names.
    #[arg(long, value_name = "COLUMN", num_args = 1..)]
    pub exclude: Vec<String>,
    /// Evaluate on this CSV file (same columns) after training on all of `--csv`.
    #[arg(long, value_name = "FILE")]
    pub holdout_csv: Option<PathBuf>,
    /// Write `id,probability` for each holdout row to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Configuration file whose `[model]` section sets the training; the defaults without it.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Errors of `leadscore evaluate`.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The CSV files or the options do not fit together; the message names the value and fix.
    #[error("{0}")]
    Input(String),
    /// Training or evaluation failed on valid input.
    #[error("evaluation failed: {0}")]
    Training(String),
    /// Writing the predictions file failed.
    #[error("cannot write predictions to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl EvaluateError {
    /// Returns the process exit code: 2 for invalid input, 1 for a failed step.
    pub fn exit_code(&self) -> u8 {
        match self {
            EvaluateError::Input(_) => 2,
            EvaluateError::Training(_) | EvaluateError::Write { .. } => 1,
        }
    }
}

/// Inference and encoding result for one input column.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnReport {
    #[serde(flatten)]
    pub summary: ColumnSummary,
    /// `feature`, `label`, `time`, `id` or `excluded`.
    pub role: &'static str,
    /// Model features made from the column (one per category level).
    pub features: usize,
}

/// The result of `leadscore evaluate`: headline holdout metrics, then the trainer's report.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluateOutput {
    pub auc: serde_json::Value,
    pub pr_auc: serde_json::Value,
    pub log_loss: serde_json::Value,
    pub brier: serde_json::Value,
    pub ece: serde_json::Value,
    /// Rows used to fit and calibrate the model (everything before the holdout).
    pub rows_train: usize,
    pub rows_holdout: usize,
    pub features: usize,
    pub chosen: serde_json::Value,
    pub columns: Vec<ColumnReport>,
    /// The trainer's full model report.
    pub report: serde_json::Value,
    /// Holdout row ids with their calibrated probability, for `--predictions`.
    #[serde(skip)]
    pub predictions: Vec<(String, f64)>,
}

/// Loads the `[model]` settings from `path`, or returns the defaults.
pub fn model_settings(path: Option<&Path>) -> Result<ModelConfig, EvaluateError> {
    match path {
        Some(path) => Config::load(path)
            .map(|config| config.model)
            .map_err(|err| EvaluateError::Input(err.to_string())),
        None => Ok(ModelConfig::default()),
    }
}

/// The columns named on the command line, as indexes into the training file.
struct ColumnRoles {
    label: usize,
    time: Option<usize>,
    id: Option<usize>,
    excluded: Vec<usize>,
}

impl ColumnRoles {
    /// Finds every named column, failing on the first one the file lacks.
    fn resolve(table: &Table, args: &EvaluateArgs) -> Result<ColumnRoles, EvaluateError> {
        let optional = |name: &Option<String>, option: &str| {
            name.as_deref()
                .map(|name| table.column(name, option))
                .transpose()
        };
        let mut excluded = Vec::new();
        for name in &args.exclude {
            excluded.push(table.column(name, "--exclude")?);
        }
        let roles = ColumnRoles {
            label: table.column(&args.label, "--label")?,
            time: optional(&args.time, "--time")?,
            id: optional(&args.id, "--id")?,
            excluded,
        };
        // One column cannot play two parts: an id equal to the label would turn the real id
        // column into a feature and write labels as ids.
        let named = [
            ("--label", Some(roles.label)),
            ("--time", roles.time),
            ("--id", roles.id),
        ];
        for (index, (option, column)) in named.iter().enumerate() {
            for (other, other_column) in &named[..index] {
                if column.is_some() && column == other_column {
                    return Err(EvaluateError::Input(format!(
                        "{option} and {other} name the same column {:?}; give each its own column",
                        table.headers[column.unwrap_or_default()]
                    )));
                }
            }
        }
        Ok(roles)
    }

    /// Returns `feature`, `label`, `time`, `id` or `excluded`.
    fn role(&self, column: usize) -> &'static str {
        if column == self.label {
            "label"
        } else if Some(column) == self.time {
            "time"
        } else if Some(column) == self.id {
            "id"
        } else if self.excluded.contains(&column) {
            "excluded"
        } else {
            "feature"
        }
    }
}

/// Reads, checks and encodes the files, runs the evaluation and writes `--predictions`.
pub fn evaluate(
    args: &EvaluateArgs,
    settings: &ModelConfig,
) -> Result<EvaluateOutput, EvaluateError> {
    let train_table = Table::read(&args.csv)?;
    let roles = ColumnRoles::resolve(&train_table, args)?;
    let summaries: Vec<ColumnSummary> = (0..train_table.headers.len())
        .map(|column| train_table.infer(column))
        .collect();
    let feature_columns: Vec<usize> = (0..train_table.headers.len())
        .filter(|column| roles.role(*column) == "feature")
        .collect();

    let labels = encode::labels(&train_table, roles.label)?;
    encode::require_both_classes(&train_table, roles.label, &labels)?;
    let order = time_order(&train_table, roles.time, &summaries)?;

    // Category levels come from the rows that train: all of them when a holdout file is
    // given, else the rows before the trainer's time-based holdout.
    let fitted_rows = match args.holdout_csv {
        Some(_) => order.len(),
        None => {
            let holdout = (order.len() as f64 * settings.holdout_fraction).round() as usize;
            order.len().saturating_sub(holdout.max(1))
        }
    };
    let sorted_rows: Vec<usize> = order.iter().map(|(_, row)| *row).collect();
    let encoder = Encoder::fit(
        &train_table,
        &summaries,
        &feature_columns,
        &sorted_rows[..fitted_rows],
    );
    let train = build_examples(&train_table, &encoder, &labels, roles.id, &order)?;

    let holdout = match &args.holdout_csv {
        Some(path) => Some(read_holdout(path, args, &summaries, &encoder)?),
        None => None,
    };

    let evaluation = training::evaluate_examples(&train, settings, holdout.as_ref())
        .map_err(|err| EvaluateError::Training(err.to_string()))?;
    let output = summarize(
        &evaluation,
        &train,
        holdout.is_some(),
        &summaries,
        &roles,
        &encoder,
    )?;
    if let Some(path) = &args.predictions {
        write_predictions(path, &output.predictions)?;
    }
    Ok(output)
}

/// Collects the headline metrics, row counts, column inference and predictions.
fn summarize(
    evaluation: &training::Evaluation,
    train: &ExampleSet,
    holdout_file: bool,
    summaries: &[ColumnSummary],
    roles: &ColumnRoles,
    encoder: &Encoder,
) -> Result<EvaluateOutput, EvaluateError> {
    let report = serde_json::to_value(&evaluation.report).map_err(|err| {
        EvaluateError::Training(format!("serializing the model report failed: {err}"))
    })?;
    let metric = |key: &str| report["metrics"][key].clone();
    let rows_holdout = evaluation.holdout_ids.len();
    let rows_train = if holdout_file {
        train.ids.len()
    } else {
        train.ids.len().saturating_sub(rows_holdout)
    };
    let feature_counts = encoder.feature_counts();
    let columns = summaries
        .iter()
        .enumerate()
        .map(|(column, summary)| ColumnReport {
            summary: summary.clone(),
            role: roles.role(column),
            features: feature_counts.get(&summary.name).copied().unwrap_or(0),
        })
        .collect();
    Ok(EvaluateOutput {
        auc: metric("auc"),
        pr_auc: metric("pr_auc"),
        log_loss: metric("log_loss"),
        brier: metric("brier"),
        ece: metric("ece"),
        rows_train,
        rows_holdout,
        features: train.dataset.feature_names.len(),
        chosen: report["chosen"].clone(),
        columns,
        predictions: evaluation
            .holdout_ids
            .iter()
            .cloned()
            .zip(evaluation.holdout_predictions.iter().copied())
            .collect(),
        report,
    })
}

/// Returns `(time key, row index)` pairs sorted by time, ties kept in file order.
fn time_order(
    table: &Table,
    time_column: Option<usize>,
    summaries: &[ColumnSummary],
) -> Result<Vec<(i64, usize)>, EvaluateError> {
    let mut order: Vec<(i64, usize)> = match time_column {
        Some(column) => encode::time_keys(table, column, summaries[column].column_type)?
            .into_iter()
            .enumerate()
            .map(|(row, key)| (key, row))
            .collect(),
        None => (0..table.rows.len()).map(|row| (row as i64, row)).collect(),
    };
    order.sort();
    Ok(order)
}

fn build_examples(
    table: &Table,
    encoder: &Encoder,
    labels: &[f64],
    id_column: Option<usize>,
    order: &[(i64, usize)],
) -> Result<ExampleSet, EvaluateError> {
    let rows = encoder.encode(table)?;
    let ids = encode::ids(table, id_column);
    Ok(ExampleSet {
        dataset: crate::model::Dataset {
            feature_names: encoder.feature_names(),
            rows: order.iter().map(|(_, row)| rows[*row].clone()).collect(),
            labels: order.iter().map(|(_, row)| labels[*row]).collect(),
        },
        ids: order.iter().map(|(_, row)| ids[*row].clone()).collect(),
        order: order.iter().map(|(key, _)| *key).collect(),
    })
}

fn read_holdout(
    path: &Path,
    args: &EvaluateArgs,
    train_summaries: &[ColumnSummary],
    encoder: &Encoder,
) -> Result<ExampleSet, EvaluateError> {
    let table = Table::read(path)?;
    let label_column = table.column(&args.label, "--label")?;
    let id_column = args
        .id
        .as_deref()
        .map(|name| table.column(name, "--id"))
        .transpose()?;
    let time_column = args
        .time
        .as_deref()
        .map(|name| table.column(name, "--time"))
        .transpose()?;
    // The time column keeps the type inferred on the training file.
    let summaries: Vec<ColumnSummary> = table
        .headers
        .iter()
        .enumerate()
        .map(|(column, header)| {
            train_summaries
                .iter()
                .find(|s| s.name == *header)
                .cloned()
                .unwrap_or_else(|| table.infer(column))
        })
        .collect();
    let labels = encode::labels(&table, label_column)?;
    let order = time_order(&table, time_column, &summaries)?;
    build_examples(&table, encoder, &labels, id_column, &order)
}

fn write_predictions(path: &Path, predictions: &[(String, f64)]) -> Result<(), EvaluateError> {
    let write_error = |source: std::io::Error| EvaluateError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(|err| write_error(err.into()))?;
    writer
        .write_record(["id", "probability"])
        .map_err(|err| write_error(err.into()))?;
    for (id, probability) in predictions {
        writer
            .write_record([id.as_str(), &probability.to_string()])
            .map_err(|err| write_error(err.into()))?;
    }
    writer.flush().map_err(write_error)
}

/// Returns the column inference as an aligned table for standard error.
pub fn render_columns(columns: &[ColumnReport]) -> String {
    let width = columns
        .iter()
        .map(|c| c.summary.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut text = format!(
        "{:<width$}  {:<8}  {:<8}  {:>7}  {:>8}  features\n",
        "column", "type", "role", "missing", "distinct"
    );
    for column in columns {
        text.push_str(&format!(
            "{:<width$}  {:<8}  {:<8}  {:>6.1}%  {:>8}  {}\n",
            column.summary.name,
            column.summary.column_type.name(),
            column.role,
            column.summary.missing_share * 100.0,
            column.summary.distinct,
            column.features
        ));
    }
    text
}

fn number(value: &serde_json::Value, digits: usize) -> String {
    value
        .as_f64()
        .map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// Returns the human summary: rows, features, holdout metrics, chosen model and checks.
pub fn render_summary(output: &EvaluateOutput) -> String {
    let report = &output.report;
    let counts = &report["counts"];
    let slices = match (counts["train"].as_u64(), counts["validation"].as_u64()) {
        (Some(train), Some(validation)) => {
            format!(" ({train} to fit, {validation} to choose and calibrate)")
        }
        _ => String::new(),
    };
    let mut text = format!(
        "Trained on {} rows{slices} with {} features and evaluated on {} holdout rows.\n",
        output.rows_train, output.features, output.rows_holdout
    );
    text.push_str(&format!(
        "Chosen model: {} (calibration: {}).\n",
        output.chosen.as_str().unwrap_or("unknown"),
        report["calibration_method"].as_str().unwrap_or("unknown")
    ));
    text.push_str(&format!(
        "Holdout: AUC {}, PR AUC {}, log loss {}, Brier {}, ECE {}.\n",
        number(&output.auc, 3),
        number(&output.pr_auc, 3),
        number(&output.log_loss, 3),
        number(&output.brier, 3),
        number(&output.ece, 3)
    ));
    let baseline = &report["baseline"];
    if baseline.is_object() {
        text.push_str(&format!(
            "Baseline ({}): AUC {}, log loss {}.\n",
            baseline["name"].as_str().unwrap_or("baseline"),
            number(&baseline["metrics"]["auc"], 3),
            number(&baseline["metrics"]["log_loss"], 3)
        ));
    }
    text.push_str(&render_checks(&report["checks"]));
    text
}

fn render_checks(checks: &serde_json::Value) -> String {
    let mut text = String::new();
    let sufficiency = &checks["sufficiency"];
    if sufficiency.is_object() {
        let passed = sufficiency["passed"].as_bool().unwrap_or(false);
        text.push_str(&format!(
            "Data sufficiency: {}{}.\n",
            if passed { "passed" } else { "failed" },
            sufficiency["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map_or(String::new(), |m| format!(": {m}"))
        ));
    }
    let leakage: Vec<String> = checks["leakage"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|flag| {
            format!(
                "{} (AUC {}, {})",
                flag["feature"].as_str().unwrap_or("?"),
                number(&flag["auc"], 3),
                if flag["excluded"].as_bool().unwrap_or(false) {
                    "excluded"
                } else {
                    "kept"
                }
            )
        })
        .collect();
    text.push_str(&format!(
        "Leakage: {}.\n",
        if leakage.is_empty() {
            "no feature flagged".to_string()
        } else {
            leakage.join(", ")
        }
    ));
    let dropped: Vec<String> = checks["dropped"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            format!(
                "{} ({})",
                d["feature"].as_str().unwrap_or("?"),
                d["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !dropped.is_empty() {
        text.push_str(&format!("Dropped features: {}.\n", dropped.join(", ")));
    }
    let notes = checks["notes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for note in notes.iter().filter_map(|n| n.as_str()) {
        text.push_str(&format!("Note: {note}.\n"));
    }
    text
}
