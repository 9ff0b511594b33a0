//! leadscore-bench: measures the gradient-boosting libraries leadscore could use.
//!
//! `models` runs every case as a child process of this same binary (`case`), so each run
//! starts with a fresh heap and its peak resident memory belongs to that run alone. The
//! parent collects one JSON line per run and prints Markdown tables of the medians.

// The bench compiles the production model module from source instead of depending on the
// `leadscore` crate, which would pull the whole daemon (HTTP, storage, CRM connectors) into
// the release build. The module only needs forust-ml, serde, serde_json and thiserror.
#[path = "../../src/model/mod.rs"]
#[allow(dead_code, unused_imports)]
mod model;

mod file_runs;
mod leads;
mod libraries;
mod memory;
mod raw_data;
mod requests;
mod scale;
mod score_phases;
mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use leads::ColumnSet;
use libraries::Library;
use model::metrics::{brier, log_loss, roc_auc};
use model::TrainParams;

/// Rows in the synthetic holdout used to check that each library learned the signal.
const SYNTHETIC_HOLDOUT_ROWS: usize = 10_000;
/// Seed of the synthetic training rows; the holdout uses the next seed.
const SYNTHETIC_SEED: u64 = 42;

#[derive(Parser)]
#[command(about = "Benchmarks for leadscore's model libraries")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Compare forust-ml 0.8 and gbdt 0.1.3 on the leads CSV and on synthetic data.
    Models(ModelsArgs),
    /// Run one case in this process and print its result as one JSON line (used by `models`).
    #[command(hide = true)]
    Case(CaseArgs),
    /// Write synthetic train, holdout and scoring-batch sets as raw little-endian f64 files.
    ExportSynthetic(ExportArgs),
    /// Train on the exported `train` set once and print time, memory and holdout AUC as JSON.
    FitFile(DataArgs),
    /// Train on the exported `train` set, then time `predict` and `contributions` on the
    /// `batch` set and print records per second as JSON.
    ScoreFile(ScoreArgs),
    /// Count the HTTP requests of a Contact pull over REST and over Bulk API 2.0 and of two
    /// write-backs of every account score, against the in-process Salesforce sandbox.
    Requests(RequestsArgs),
    /// Time pull, train, score and push, and incremental cycles, against a scaled sandbox
    /// in its own process. Prints a Markdown report with peak RSS, CPU and store size.
    Scale(scale::ScaleArgs),
    /// Run one program, wait for it with `wait4` and write its exit code, peak RSS and CPU
    /// to a file (used by `scale`, so each stage is forked from this small process).
    #[command(hide = true)]
    Launch(scale::LaunchArgs),
    /// Time the score step's parts one at a time (store load, feature rows, predict,
    /// contributions, full scoring) on the store a `scale` run left, one JSON line per level.
    ScorePhases(score_phases::PhasesArgs),
}

#[derive(Parser)]
struct RequestsArgs {
    /// Contacts in the org: the demo org's contacts, padded with copies under new ids.
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
}

#[derive(Parser)]
struct ExportArgs {
    /// Directory to write `manifest.json` and the `.f64` files to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Rows in the `train` set (seed 42, the seed `models` uses).
    #[arg(long)]
    rows: usize,
    /// Rows in the `holdout` set (seed 43).
    #[arg(long, default_value_t = SYNTHETIC_HOLDOUT_ROWS)]
    holdout_rows: usize,
    /// Rows in the `batch` set used by `score-file` (seed 44); 0 writes no batch set.
    #[arg(long, default_value_t = 0)]
    batch_rows: usize,
}

#[derive(Parser)]
struct DataArgs {
    /// Directory written by `export-synthetic`.
    #[arg(long)]
    data: PathBuf,
}

#[derive(Parser)]
struct ScoreArgs {
    /// Directory written by `export-synthetic` with a `batch` set.
    #[arg(long)]
    data: PathBuf,
    /// Timed runs of `predict` and of `contributions`.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Time `contributions` on only the first this many batch rows, because it is far slower
    /// than `predict`; the whole batch when absent.
    #[arg(long)]
    contributions_rows: Option<usize>,
}

#[derive(Parser)]
struct ModelsArgs {
    /// Path of the X Education Leads.csv file (9,240 leads, label `Converted`).
    #[arg(long)]
    leads: Option<PathBuf>,
    /// Runs per case; the tables report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Synthetic training sizes in rows, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    rows: Vec<usize>,
    /// Also run 1,000,000 synthetic rows (one run per library; gbdt trained for about 10 minutes on 2 CPUs).
    #[arg(long)]
    million: bool,
    /// Skip gbdt on synthetic sizes of at least this many rows.
    #[arg(long)]
    gbdt_max_rows: Option<usize>,
}

#[derive(Parser)]
struct CaseArgs {
    #[arg(long, value_enum)]
    library: Library,
    /// Leads CSV; when absent, the case uses synthetic data.
    #[arg(long)]
    leads: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "scoring-time")]
    columns: ColumnSet,
    /// Synthetic training rows.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
}

/// One run's measurements, printed by the child and parsed by the parent.
#[derive(Serialize, Deserialize, Clone)]
struct RunResult {
    train_rows: usize,
    holdout_rows: usize,
    features: usize,
    train_seconds: f64,
    predict_seconds: f64,
    auc: Option<f64>,
    log_loss: Option<f64>,
    brier: Option<f64>,
    nan_predictions: usize,
    rss_before_fit_kib: Option<u64>,
    peak_rss_during_fit_kib: Option<u64>,
    panic: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Commands::Models(args) => run_models(&args),
        Commands::Case(args) => run_case(&args),
        Commands::ExportSynthetic(args) => run_export(&args),
        Commands::FitFile(args) => file_runs::fit(&args.data, &bench_params()),
        Commands::ScoreFile(args) => file_runs::score(
            &args.data,
            &bench_params(),
            args.runs,
            args.contributions_rows,
        ),
        Commands::Requests(args) => requests::run(args.contacts),
        Commands::Scale(args) => scale::run(&args),
        Commands::Launch(args) => scale::launch(&args),
        Commands::ScorePhases(args) => score_phases::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parameters every library gets: 100 trees of depth 5 with learning rate 0.1.
fn bench_params() -> TrainParams {
    TrainParams::default()
}

fn run_export(args: &ExportArgs) -> Result<(), String> {
    let mut sets = vec![
        ("train", args.rows, SYNTHETIC_SEED),
        ("holdout", args.holdout_rows, SYNTHETIC_SEED + 1),
    ];
    if args.batch_rows > 0 {
        sets.push(("batch", args.batch_rows, SYNTHETIC_SEED + 2));
    }
    let manifest = raw_data::export(&args.out, &sets)?;
    for set in &manifest.sets {
        println!(
            "{}: {} rows x {} features -> {}",
            set.name,
            set.rows,
            manifest.features,
            args.out.join(&set.features_file).display()
        );
    }
    Ok(())
}

fn run_case(args: &CaseArgs) -> Result<(), String> {
    let (train, holdout) = match &args.leads {
        Some(path) => {
            let split = leads::load(path, args.columns)?;
            (split.train, split.holdout)
        }
        None => (
            synthetic::generate(args.rows, SYNTHETIC_SEED),
            synthetic::generate(SYNTHETIC_HOLDOUT_ROWS, SYNTHETIC_SEED + 1),
        ),
    };
    let train_rows = train.rows.len();
    let features = train.feature_names.len();

    let outcome = libraries::run(args.library, train, &holdout, &bench_params())?;
    let nan_predictions = outcome.probabilities.iter().filter(|p| p.is_nan()).count();
    let scored = outcome.panic.is_none() && nan_predictions == 0;
    let result = RunResult {
        train_rows,
        holdout_rows: holdout.rows.len(),
        features,
        train_seconds: outcome.train_seconds,
        predict_seconds: outcome.predict_seconds,
        auc: roc_auc(&holdout.labels, &outcome.probabilities),
        log_loss: scored.then(|| log_loss(&holdout.labels, &outcome.probabilities)),
        brier: scored.then(|| brier(&holdout.labels, &outcome.probabilities)),
        nan_predictions,
        rss_before_fit_kib: outcome.rss_before_fit_kib,
        peak_rss_during_fit_kib: outcome.peak_rss_during_fit_kib,
        panic: outcome.panic,
    };
    let line = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    println!("{line}");
    Ok(())
}

/// Runs one case in a child process and parses its JSON line.
fn spawn_case(library: Library, extra: &[String]) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("failed to find own binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("case")
        .arg("--library")
        .arg(library.arg())
        .args(extra);
    let output = command
        .output()
        .map_err(|e| format!("failed to start a benchmark child process: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "case {} {extra:?} failed ({}): {}",
            library.arg(),
            output.status,
            stderr.trim()
        ));
    }
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("invalid case output {line:?}: {e}"))
}

fn run_repeated(library: Library, extra: &[String], runs: usize) -> Result<Vec<RunResult>, String> {
    let mut results = Vec::with_capacity(runs);
    for run in 1..=runs {
        let result = spawn_case(library, extra)?;
        eprintln!(
            "{} {extra:?} run {run}/{runs}: train {:.2} s, AUC {}, peak {} MiB{}",
            library.label(),
            result.train_seconds,
            format_option(result.auc, 4),
            format_option(result.peak_rss_during_fit_kib.map(|k| k as f64 / 1024.0), 0),
            result
                .panic
                .as_deref()
                .map(|p| format!(", panicked: {p}"))
                .unwrap_or_default()
        );
        let panicked = result.panic.is_some();
        results.push(result);
        // A panic is deterministic here (same rows, same parameters), so one run shows it.
        if panicked {
            break;
        }
    }
    Ok(results)
}

fn run_models(args: &ModelsArgs) -> Result<(), String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".to_string());
    }
    print_machine();

    if let Some(path) = &args.leads {
        run_leads(path, args.runs)?;
    } else {
        println!("Leads CSV: skipped (pass --leads PATH to measure accuracy).\n");
    }

    let mut sizes = args.rows.clone();
    if args.million && !sizes.contains(&1_000_000) {
        sizes.push(1_000_000);
    }
    run_synthetic(&sizes, args)?;
    Ok(())
}

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Logical CPUs: {cpus}; load average at start: {}\n",
        load.trim()
    );
}

fn run_leads(path: &Path, runs: usize) -> Result<(), String> {
    println!("## X Education leads: holdout = last 20% by Lead Number\n");
    println!(
        "| columns | library | train / holdout rows | features | holdout AUC | log loss | Brier | train s (median) | train time vs gbdt (sentinel -1e9) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for columns in [ColumnSet::ScoringTime, ColumnSet::All] {
        let column_arg = match columns {
            ColumnSet::ScoringTime => "scoring-time",
            ColumnSet::All => "all",
        };
        let extra = vec![
            "--leads".to_string(),
            path.display().to_string(),
            "--columns".to_string(),
            column_arg.to_string(),
        ];
        let libraries = [
            Library::GbdtSentinel,
            Library::GbdtUnknown,
            Library::GbdtNan,
            Library::Forust,
        ];
        let mut reference_seconds = None;
        for library in libraries {
            let results = run_repeated(library, &extra, runs)?;
            let first = &results[0];
            let train_seconds = median(results.iter().map(|r| r.train_seconds));
            if library == Library::GbdtSentinel {
                reference_seconds = Some(train_seconds);
            }
            // A panicked fit has no meaningful training time, so it gets the panic instead.
            let ratio = match (&first.panic, first.nan_predictions, reference_seconds) {
                (Some(p), _, _) => format!("panicked: {p}"),
                (None, n, _) if n > 0 => format!("{n} NaN predictions"),
                (None, _, Some(reference)) => format!("{:.2}x", train_seconds / reference),
                (None, _, None) => String::new(),
            };
            println!(
                "| {column_arg} | {} | {} / {} | {} | {} | {} | {} | {:.3} ({}) | {ratio} |",
                library.label(),
                first.train_rows,
                first.holdout_rows,
                first.features,
                format_option(first.auc, 4),
                format_option(first.log_loss, 4),
                format_option(first.brier, 4),
                train_seconds,
                count_runs(results.len()),
            );
        }
    }
    println!();
    Ok(())
}

fn run_synthetic(sizes: &[usize], args: &ModelsArgs) -> Result<(), String> {
    println!(
        "## Synthetic data: {} features, holdout {} rows\n",
        synthetic::FEATURES,
        SYNTHETIC_HOLDOUT_ROWS
    );
    println!(
        "| rows | library | runs | train s (median) | peak RSS during fit, MiB (median) | RSS before fit, MiB | holdout AUC | train time vs gbdt | peak RSS vs gbdt |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &rows in sizes {
        // Runs of a minute or more are measured once.
        let runs = if rows >= 1_000_000 { 1 } else { args.runs };
        let extra = vec!["--rows".to_string(), rows.to_string()];
        let mut reference: Option<(f64, f64)> = None;
        for library in [Library::GbdtSentinel, Library::Forust] {
            if library == Library::GbdtSentinel
                && args.gbdt_max_rows.is_some_and(|limit| rows >= limit)
            {
                println!(
                    "| {rows} | {} | 0 | skipped (--gbdt-max-rows) | | | | | |",
                    library.label()
                );
                continue;
            }
            let results = run_repeated(library, &extra, runs)?;
            let seconds = median(results.iter().map(|r| r.train_seconds));
            let peak_mib = median(
                results
                    .iter()
                    .filter_map(|r| r.peak_rss_during_fit_kib)
                    .map(|k| k as f64 / 1024.0),
            );
            let before_mib = median(
                results
                    .iter()
                    .filter_map(|r| r.rss_before_fit_kib)
                    .map(|k| k as f64 / 1024.0),
            );
            if library == Library::GbdtSentinel {
                reference = Some((seconds, peak_mib));
            }
            let (time_ratio, memory_ratio) = match reference {
                Some((ref_seconds, ref_mib)) => (
                    format!("{:.3}x", seconds / ref_seconds),
                    format!("{:.2}x", peak_mib / ref_mib),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "| {rows} | {} | {} | {seconds:.3} | {peak_mib:.0} | {before_mib:.0} | {} | {time_ratio} | {memory_ratio} |",
                library.label(),
                results.len(),
                format_option(results[0].auc, 4),
            );
        }
    }
    println!();
    Ok(())
}

fn count_runs(count: usize) -> String {
    if count == 1 {
        "1 run".to_string()
    } else {
        format!("{count} runs")
    }
}

/// Median of the values; NaN when there are none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn format_option(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "n/a".to_string(),
    }
}
