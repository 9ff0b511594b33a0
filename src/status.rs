//! `leadscore status`: the daemon's last runs, failures, model and budget, read from the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, Level};
use crate::daemon::JobKind;
use crate::store::{JobRun, RunOutcome, Store, StoreError};

/// Failed runs listed, newest first.
const RECENT_FAILURES: usize = 5;

/// Runs read when looking for recent failures.
const RUNS_SCANNED: usize = 500;

/// How long `status` waits for a running job of the daemon to release the store.
// NOTE: redb lets only one process open the store. While a daemon job runs, `status` waits up
// to this long and then fails, but the daemon's /metrics shows the same figures meanwhile.
const STORE_WAIT: Duration = Duration::from_secs(15);

/// The status of one connector's store.
#[derive(Debug, Serialize)]
pub struct Status {
    pub connector: String,
    pub jobs: Vec<JobStatus>,
    /// Failed or budget-stopped runs, newest first.
    pub recent_failures: Vec<JobRun>,
    pub models: Vec<ModelStatus>,
    pub budget: BudgetStatus,
}

/// One scheduled job: its schedule, next fire time and last run.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    pub job: &'static str,
    /// The cron expression, or `off`.
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<JobRun>,
}

/// The live model of one level.
#[derive(Debug, Serialize)]
pub struct ModelStatus {
    pub level: Level,
    pub version: Option<String>,
    pub trained_at: Option<DateTime<Utc>>,
    pub holdout_auc: Option<f64>,
}

/// API calls of the current UTC day.
#[derive(Debug, Serialize)]
pub struct BudgetStatus {
    pub used: u64,
    /// Calls leadscore may send today; `None` until a run of the day learned the CRM's usage.
    pub allowance: Option<u64>,
    pub left: Option<u64>,
}

/// Reads the status of every connector and renders it as text or as JSON.
pub fn render(configs: &[Config], json: bool) -> Result<String, String> {
    let now = Utc::now();
    let mut all = Vec::new();
    for config in configs {
        let store = open_waiting(config)?;
        all.push(read_status(&store, config, now).map_err(|err| err.to_string())?);
    }
    if json {
        let text = if all.len() == 1 {
            serde_json::to_string_pretty(&all[0])
        } else {
            serde_json::to_string_pretty(&all)
        };
        return text
            .map(|text| text + "\n")
            .map_err(|err| format!("cannot encode the status as JSON: {err}"));
    }
    Ok(all.iter().map(render_text).collect::<Vec<_>>().join("\n"))
}

fn open_waiting(config: &Config) -> Result<Store, String> {
    let started = Instant::now();
    loop {
        match Store::open(&config.store_path) {
            Ok(store) => return Ok(store),
            Err(StoreError::Locked { .. }) if started.elapsed() < STORE_WAIT => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(StoreError::Locked { path }) => {
                return Err(format!(
                    "the store at {} stayed in use by another leadscore process (a daemon job) for {} seconds; run status again when the job ends, or read the daemon's /metrics",
                    path.display(),
                    STORE_WAIT.as_secs()
                ))
            }
            Err(err) => return Err(err.to_string()),
        }
    }
}

/// Reads one connector's status from its store.
pub fn read_status(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Status, StoreError> {
    let last = store.last_job_runs()?;
    let order = [
        JobKind::PullAndScore,
        JobKind::Retrain,
        JobKind::TerritoryLists,
        JobKind::OutcomesReport,
    ];
    let jobs = order
        .iter()
        .map(|kind| {
            let schedule = kind.schedule(&config.daemon.schedule);
            JobStatus {
                job: kind.name(),
                schedule: schedule.map_or("off".to_string(), |s| s.as_str().to_string()),
                next_run: schedule.and_then(|s| s.next_after(now, config.daemon.time_zone)),
                last_run: last.get(kind.name()).cloned(),
            }
        })
        .collect();
    let recent_failures = store
        .job_runs(RUNS_SCANNED)?
        .into_iter()
        .filter(|run| matches!(run.outcome, RunOutcome::Failed | RunOutcome::BudgetSpent))
        .take(RECENT_FAILURES)
        .collect();
    let mut models = Vec::new();
    for &level in &config.scoring.levels {
        let at_level = store.at_level(level);
        let version = at_level.live_version()?;
        let entry = match &version {
            Some(version) => at_level.model_entry(version)?,
            None => None,
        };
        models.push(ModelStatus {
            level,
            version,
            trained_at: entry.as_ref().map(|e| e.trained_at),
            holdout_auc: entry.and_then(|e| e.holdout_auc),
        });
    }
    let day = store.api_budget_day(now.date_naive())?;
    let share = config.connector.transport().api_budget_share;
    let allowance = day
        .remaining_at_start
        .map(|remaining| (remaining as f64 * share).floor() as u64);
    Ok(Status {
        connector: config.connector_name.clone(),
        jobs,
        recent_failures,
        models,
        budget: BudgetStatus {
            used: day.used,
            allowance,
            left: allowance.map(|a| a.saturating_sub(day.used)),
        },
    })
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_text(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Connector {}", status.connector);
    let _ = writeln!(out, "Jobs:");
    for job in &status.jobs {
        let next = job.next_run.map_or("-".to_string(), time);
        let last = match &job.last_run {
            None => "never ran".to_string(),
            Some(run) => format!(
                "last run {} ({}s): {}{}",
                time(run.started_at),
                (run.finished_at - run.started_at).num_seconds(),
                run.outcome.as_str(),
                if run.counts.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", counts(&run.counts))
                }
            ),
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<14} next {}; {}",
            job.job, job.schedule, next, last
        );
    }
    if status.recent_failures.is_empty() {
        let _ = writeln!(out, "Recent failures: none");
    } else {
        let _ = writeln!(out, "Recent failures:");
        for run in &status.recent_failures {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                time(run.started_at),
                run.job,
                run.outcome.as_str(),
                run.error.as_deref().unwrap_or("no error text")
            );
        }
    }
    let _ = writeln!(out, "Live models:");
    for model in &status.models {
        match &model.version {
            Some(version) => {
                let auc = model
                    .holdout_auc
                    .map_or("n/a".to_string(), |a| format!("{a:.3}"));
                let trained = model.trained_at.map_or("-".to_string(), time);
                let _ = writeln!(
                    out,
                    "  {:<8} {version} (holdout AUC {auc}, trained {trained})",
                    model.level.to_string()
                );
            }
            None => {
                let _ = writeln!(out, "  {:<8} no live model", model.level.to_string());
            }
        }
    }
    let budget = &status.budget;
    match (budget.allowance, budget.left) {
        (Some(allowance), Some(left)) => {
            let _ = writeln!(
                out,
                "API budget today (UTC): {} used of {allowance}, {left} left",
                budget.used
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "API budget today (UTC): {} used; the allowance is set by the day's first run",
                budget.used
            );
        }
    }
    out
}
