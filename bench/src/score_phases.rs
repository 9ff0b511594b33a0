//! The `score-phases` benchmark: the score step's parts timed one at a time on the store a
//! `scale` run left behind. It compares the model's own throughput with the 200,000 records
//! per second per core target, apart from reasons, hints and the store load.
//!
//! Run it with `RAYON_NUM_THREADS=1` for per-core figures: forust-ml's `predict` and
//! `contributions` run on rayon's global pool, and the feature rows are built on one thread.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use serde::Serialize;

use leadscore::config::Config;
use leadscore::features::FeatureSpace;
use leadscore::model::TrainedModel;
use leadscore::store::Store;

/// Rows per `predict` call, as the score step batches them.
const BATCH_ROWS: usize = 2048;

#[derive(Parser)]
pub struct PhasesArgs {
    /// The configuration of a scored store: `leadscore.toml` in the `--workdir` of `scale`.
    #[arg(long)]
    config: PathBuf,
    /// Rows explained with `contributions` per level, from the first open record.
    #[arg(long, default_value_t = 5_000)]
    contributions_rows: usize,
}

/// One level's timings, printed as a JSON line.
#[derive(Serialize)]
struct LevelPhases {
    level: String,
    open_records: usize,
    /// Building the in-memory history from the store.
    load_seconds: f64,
    /// Feature rows of every open record, on this thread.
    rows_seconds: f64,
    /// `predict` on every row in batches of 2,048.
    predict_seconds: f64,
    predict_records_per_second: f64,
    contributions_rows: usize,
    contributions_seconds: f64,
    contributions_records_per_second: f64,
    /// `scoring::score_records`: rows, predict, contributions, reasons and hints on every
    /// core, without the store load and the store writes.
    full_wall_seconds: f64,
    full_cpu_seconds: f64,
    full_records_per_cpu_second: f64,
}

/// Times each phase for every configured level and prints one JSON line per level.
pub fn run(args: &PhasesArgs) -> Result<(), String> {
    let config = Config::load(&args.config)
        .map_err(|e| format!("failed to load {}: {e}", args.config.display()))?;
    let store = Store::open(&config.store_path).map_err(|e| e.to_string())?;
    let now = Utc::now();
    let at = config.scoring.as_of.unwrap_or(now);
    for &level in &config.scoring.levels {
        let store = store.at_level(level);
        let stored = store
            .current_model()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("no {level} model in the store; run the scale benchmark first")
            })?;
        let space: FeatureSpace = serde_json::from_value(stored.features.clone())
            .map_err(|e| format!("unreadable feature encoding: {e}"))?;
        let model = TrainedModel::from_bytes(&stored.model).map_err(|e| e.to_string())?;

        let started = Instant::now();
        let history =
            leadscore::training::load_history(&store, &config).map_err(|e| e.to_string())?;
        let load_seconds = started.elapsed().as_secs_f64();
        let open = leadscore::levels::open_records(level, &history, &config, now);

        let started = Instant::now();
        let rows: Vec<Vec<f64>> = open
            .iter()
            .map(|record| space.row(&history, record.target(), at))
            .collect();
        let rows_seconds = started.elapsed().as_secs_f64();

        let started = Instant::now();
        for chunk in rows.chunks(BATCH_ROWS) {
            model.predict(chunk).map_err(|e| e.to_string())?;
        }
        let predict_seconds = started.elapsed().as_secs_f64();

        let explained = args.contributions_rows.min(rows.len());
        let started = Instant::now();
        model
            .contributions(&rows[..explained])
            .map_err(|e| e.to_string())?;
        let contributions_seconds = started.elapsed().as_secs_f64();
        drop(rows);

        let cpu_before = crate::file_runs::cpu_seconds()?;
        let started = Instant::now();
        let scored = leadscore::scoring::score_records(&stored, &history, &config, now)
            .map_err(|e| e.to_string())?;
        let full_wall_seconds = started.elapsed().as_secs_f64();
        let full_cpu_seconds = crate::file_runs::cpu_seconds()? - cpu_before;

        let rate = |records: usize, seconds: f64| {
            if seconds > 0.0 {
                records as f64 / seconds
            } else {
                0.0
            }
        };
        let phases = LevelPhases {
            level: level.to_string(),
            open_records: open.len(),
            load_seconds,
            rows_seconds,
            predict_seconds,
            predict_records_per_second: rate(open.len(), predict_seconds),
            contributions_rows: explained,
            contributions_seconds,
            contributions_records_per_second: rate(explained, contributions_seconds),
            full_wall_seconds,
            full_cpu_seconds,
            full_records_per_cpu_second: rate(scored.len(), full_cpu_seconds),
        };
        let line = serde_json::to_string(&phases).map_err(|e| e.to_string())?;
        println!("{line}");
    }
    Ok(())
}
