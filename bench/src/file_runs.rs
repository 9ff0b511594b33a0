//! Training and scoring runs on a data directory written by `export-synthetic`, for the
//! comparison with LightGBM in `bench/python/lightgbm_synthetic.py`.
//!
//! Each command does one measurement per process and prints one JSON line, so a shell loop
//! can wrap every run in `/usr/bin/time -f %M` the same way as the Python side.

use std::fs;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::memory;
use crate::model::metrics::roc_auc;
use crate::model::{GradientBoostedModel, Model, TrainParams};
use crate::raw_data;

/// Clock ticks per second of the `utime` and `stime` fields in `/proc/self/stat`.
/// NOTE: assumed to be 100 (`getconf CLK_TCK` on Linux x86-64) instead of asking libc.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// One training run, printed as a JSON line.
#[derive(Serialize)]
struct FitResult {
    library: &'static str,
    train_rows: usize,
    features: usize,
    /// Seconds to read the train and holdout sets from disk.
    load_seconds: f64,
    /// Wall time of `GradientBoostedModel::fit`, which includes the column-major copy and
    /// forust-ml's binning.
    train_seconds: f64,
    /// CPU time (user + system) of the whole process during the fit.
    train_cpu_seconds: f64,
    rss_before_fit_kib: Option<u64>,
    peak_rss_during_fit_kib: Option<u64>,
    holdout_rows: usize,
    holdout_auc: Option<f64>,
    /// Threads of the process after the fit (main thread plus rayon's pool).
    threads: Option<u64>,
    rayon_num_threads: Option<String>,
}

/// Trains on the `train` set of `dir` and scores its `holdout` set.
pub fn fit(dir: &Path, params: &TrainParams) -> Result<(), String> {
    let started = Instant::now();
    let train = raw_data::load(dir, "train")?;
    let holdout = raw_data::load(dir, "holdout")?;
    let load_seconds = started.elapsed().as_secs_f64();

    let rss_before_fit_kib = memory::reset_peak();
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let model = GradientBoostedModel::fit(&train, params).map_err(|e| e.to_string())?;
    let train_seconds = started.elapsed().as_secs_f64();
    let train_cpu_seconds = cpu_seconds()? - cpu_before;
    let peak_rss_during_fit_kib = memory::peak_kib();

    let probabilities = model.predict(&holdout.rows).map_err(|e| e.to_string())?;
    let result = FitResult {
        library: "leadscore GradientBoostedModel (forust-ml 0.8)",
        train_rows: train.rows.len(),
        features: train.feature_names.len(),
        load_seconds,
        train_seconds,
        train_cpu_seconds,
        rss_before_fit_kib,
        peak_rss_during_fit_kib,
        holdout_rows: holdout.rows.len(),
        holdout_auc: roc_auc(&holdout.labels, &probabilities),
        threads: thread_count(),
        rayon_num_threads: std::env::var("RAYON_NUM_THREADS").ok(),
    };
    print_json(&result)
}

/// Scoring measurements, printed as a JSON line.
#[derive(Serialize)]
struct ScoreResult {
    model_rows: usize,
    batch_rows: usize,
    /// Rows passed to `contributions`, the first ones of the batch.
    contributions_rows: usize,
    runs: usize,
    predict_seconds: Vec<f64>,
    predict_cpu_seconds: Vec<f64>,
    contributions_seconds: Vec<f64>,
    contributions_cpu_seconds: Vec<f64>,
    /// Batch rows divided by the median wall time.
    predict_records_per_second: f64,
    contributions_records_per_second: f64,
    /// Batch rows divided by the median CPU time: records per second per busy core.
    predict_records_per_cpu_second: f64,
    contributions_records_per_cpu_second: f64,
    threads: Option<u64>,
    rayon_num_threads: Option<String>,
}

/// Trains on the `train` set of `dir`, then times `predict` on its `batch` set and
/// `contributions` on the first `contributions_rows` rows of it (all rows when `None`),
/// `runs` times each.
pub fn score(
    dir: &Path,
    params: &TrainParams,
    runs: usize,
    contributions_rows: Option<usize>,
) -> Result<(), String> {
    if runs == 0 {
        return Err("--runs must be at least 1".to_string());
    }
    let train = raw_data::load(dir, "train")?;
    let batch = raw_data::load(dir, "batch").map_err(|e| {
        format!("{e}; write a scoring batch with `export-synthetic --batch-rows 200000`")
    })?;
    let explained_count = contributions_rows
        .unwrap_or(batch.rows.len())
        .min(batch.rows.len());
    let explained = &batch.rows[..explained_count];
    if explained.is_empty() {
        return Err("--contributions-rows must be at least 1".to_string());
    }
    let model = GradientBoostedModel::fit(&train, params).map_err(|e| e.to_string())?;

    let mut predict_seconds = Vec::with_capacity(runs);
    let mut predict_cpu_seconds = Vec::with_capacity(runs);
    let mut contributions_seconds = Vec::with_capacity(runs);
    let mut contributions_cpu_seconds = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (wall, cpu) = timed(|| model.predict(&batch.rows).map(|p| p.len()))?;
        predict_seconds.push(wall);
        predict_cpu_seconds.push(cpu);
        let (wall, cpu) = timed(|| model.contributions(explained).map(|c| c.len()))?;
        contributions_seconds.push(wall);
        contributions_cpu_seconds.push(cpu);
    }

    let rows = batch.rows.len() as f64;
    let explained_rows = explained.len() as f64;
    let result = ScoreResult {
        model_rows: train.rows.len(),
        batch_rows: batch.rows.len(),
        contributions_rows: explained.len(),
        runs,
        predict_records_per_second: rows / crate::median(predict_seconds.iter().copied()),
        contributions_records_per_second: explained_rows
            / crate::median(contributions_seconds.iter().copied()),
        predict_records_per_cpu_second: rows / crate::median(predict_cpu_seconds.iter().copied()),
        contributions_records_per_cpu_second: explained_rows
            / crate::median(contributions_cpu_seconds.iter().copied()),
        predict_seconds,
        predict_cpu_seconds,
        contributions_seconds,
        contributions_cpu_seconds,
        threads: thread_count(),
        rayon_num_threads: std::env::var("RAYON_NUM_THREADS").ok(),
    };
    print_json(&result)
}

/// Runs `work` and returns its wall and CPU seconds.
fn timed(
    work: impl FnOnce() -> Result<usize, crate::model::ModelError>,
) -> Result<(f64, f64), String> {
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let count = work().map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    std::hint::black_box(count);
    Ok((wall, cpu))
}

fn print_json(value: &impl Serialize) -> Result<(), String> {
    let line = serde_json::to_string(value).map_err(|e| e.to_string())?;
    println!("{line}");
    Ok(())
}

/// Reads the user plus system CPU time of this process from `/proc/self/stat`.
pub fn cpu_seconds() -> Result<f64, String> {
    let stat = fs::read_to_string("/proc/self/stat")
        .map_err(|e| format!("failed to read /proc/self/stat: {e}"))?;
    // The command name in field 2 may contain spaces, so fields are counted after its `)`.
    // There, index 0 is field 3 (state), so fields 14 (utime) and 15 (stime) are 11 and 12.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("invalid /proc/self/stat: {stat:?}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64, String> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .map(|value| value as f64)
            .ok_or_else(|| format!("invalid CPU time field in /proc/self/stat: {stat:?}"))
    };
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SECOND)
}

/// Reads `Threads` from `/proc/self/status`.
fn thread_count() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:")?.trim().parse().ok())
}
