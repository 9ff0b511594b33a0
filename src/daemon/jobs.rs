//! The bodies of the scheduled jobs, and the run record each one leaves in the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadscore_connector::ConnectorError;

use super::{metrics, shutdown_requested, Daemon, JobKind};
use crate::config::{Config, Level};
use crate::pipeline::{self, PipelineError};
use crate::store::{JobRun, RunOutcome, Store};
use crate::{scoring, training, writeback};

/// The follow-up a finished run requests from the daemon.
pub(super) struct Done {
    pub retrain_requested: bool,
}

/// The counts a run collects while it works.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    /// Set when the run ended early because the daemon is stopping.
    stopped: bool,
    retrain_requested: bool,
}

impl Tally {
    fn add(&mut self, name: &str, count: usize) {
        *self.counts.entry(name.to_string()).or_default() += count as u64;
    }

    /// Returns true, and marks the run stopped, when the daemon is stopping.
    fn stopping(&mut self) -> bool {
        self.stopped = shutdown_requested();
        self.stopped
    }
}

/// Runs one job for one connector and records the run in that connector's store.
pub(super) async fn run_for_connector(
    daemon: &Arc<Daemon>,
    kind: JobKind,
    config: &Config,
) -> Done {
    let crm = config.connector_name.clone();
    let started_at = Utc::now();
    tracing::info!(job = kind.name(), %crm, "job started");

    let store = daemon.open_store(&config.store_path);
    let mut tally = Tally::default();
    let result = match &store {
        Ok(store) => run_body(daemon, kind, config, store, &mut tally).await,
        Err(err) => Err(PipelineError::Model(err.to_string())),
    };

    let (outcome, error) = match result {
        Ok(()) if tally.stopped => (RunOutcome::Stopped, None),
        Ok(()) => (RunOutcome::Ok, None),
        Err(PipelineError::Connector(ConnectorError::BudgetSpent(message))) => {
            (RunOutcome::BudgetSpent, Some(message))
        }
        Err(err) => (RunOutcome::Failed, Some(err.to_string())),
    };
    let run = JobRun {
        job: kind.name().to_string(),
        started_at,
        finished_at: Utc::now(),
        outcome,
        error,
        counts: tally.counts,
    };

    match &run.error {
        None => {
            tracing::info!(job = kind.name(), %crm, outcome = outcome.as_str(), counts = ?run.counts, "job finished")
        }
        Some(error) => {
            tracing::warn!(job = kind.name(), %crm, outcome = outcome.as_str(), %error, "job did not finish")
        }
    }
    metrics::job_finished(&crm, &run);
    if let Ok(store) = &store {
        if let Err(err) = store.record_job_run(&run) {
            tracing::error!(job = kind.name(), %crm, %err, "cannot record the job run in the store");
        }
        daemon.update_model_metrics(&crm, store, config);
    }
    Done {
        retrain_requested: tally.retrain_requested,
    }
}

async fn run_body(
    daemon: &Arc<Daemon>,
    kind: JobKind,
    config: &Config,
    store: &Arc<Store>,
    tally: &mut Tally,
) -> Result<(), PipelineError> {
    let now = Utc::now();
    match kind {
        JobKind::PullAndScore => {
            let _crm_writes = daemon.crm_writes.lock().await;
            let connector =
                crate::run::connect(config, config.secrets().map_err(PipelineError::Config)?)?
                    .with_budget_ledger(store.budget_ledger());
            let result = pull_and_score(&connector, config, store, now, tally).await;
            if let Some(usage) = connector.budget_usage() {
                metrics::budget(&config.connector_name, &usage);
            }
            result
        }
        JobKind::Retrain => {
            let _crm_writes = daemon.crm_writes.lock().await;
            // At start-up every job may fire in the same minute. A retrain that takes the lock
            // before the first pull finds no deals, so it skips and that pull trains instead.
            if store
                .cursor(crate::features::fields::OPPORTUNITY)?
                .is_none()
            {
                tracing::info!("no deals pulled yet; skipped until the first pull_and_score");
                tally.add("skipped", 1);
                return Ok(());
            }
            let mut errors = Vec::new();
            let mut loaded = None;
            for &level in &config.scoring.levels {
                match train(store, config, level, now, &mut loaded).await {
                    Ok(report) => {
                        tracing::info!(%level, version = %report.version, auc = ?report.holdout_auc, "trained");
                        tally.add("trained_levels", 1);
                    }
                    Err(err) => errors.push(format!("{level}: {err}")),
                }
                if tally.stopping() {
                    break;
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(PipelineError::Model(errors.join("; ")))
            }
        }
        JobKind::TerritoryLists => {
            // Lists and reports read the scores, so they wait for a scoring run in progress;
            // at start-up the first pull_and_score trains the model they need.
            let _crm_writes = daemon.crm_writes.lock().await;
            let account_store = store.at_level(Level::Account);
            if account_store.live_version()?.is_none() {
                tracing::info!("no live account model yet, so no scores to list; skipped until the first scoring");
                tally.add("skipped", 1);
                return Ok(());
            }
            let config = config.clone();
            let report =
                blocking(move || crate::territory::write_lists(&account_store, &config, now))
                    .await?;
            tally.add("reps", report.reps);
            Ok(())
        }
        JobKind::OutcomesReport => {
            let _crm_writes = daemon.crm_writes.lock().await;
            let mut errors = Vec::new();
            for &level in &config.scoring.levels {
                let at_level = store.at_level(level);
                if at_level.live_version()?.is_none() {
                    tracing::info!(%level, "no live model yet, so nothing to report; skipped until the first scoring");
                    tally.add("skipped", 1);
                    continue;
                }
                let level_config = config.clone();
                match blocking(move || crate::outcomes::write_report(&at_level, &level_config, now))
                    .await
                {
                    Ok(report) => {
                        tally.add("files", report.files.len());
                        tally.add("breaches", report.breaches.len());
                        tally.retrain_requested |= report.retrain_requested;
                    }
                    Err(err) => errors.push(format!("{level}: {err}")),
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(PipelineError::Model(errors.join("; ")))
            }
        }
    }
}

/// Pulls, then scores, writes back and alerts at each level. A level without a live model is
/// trained first.
async fn pull_and_score(
    connector: &crate::run::AnyConnector,
    config: &Config,
    store: &Arc<Store>,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), PipelineError> {
    let crm = config.connector_name.as_str();
    let check = pipeline::check(connector, config).await?;
    let pull = pipeline::pull(connector, store, config).await?;
    tally.add("pulled", pull.pulled);
    metrics::pulled(crm, pull.pulled);
    if tally.stopping() {
        return Ok(());
    }
    store.bind_source(&pipeline::source_name(config))?;
    // The levels share one history, loaded from the store by the first level that trains or
    // scores, as in `run::run_once`. It moves into each blocking task and back out.
    let mut loaded: Option<training::Loaded> = None;
    for &level in &config.scoring.levels {
        let at_level = store.at_level(level);
        if at_level.live_version()?.is_none() {
            tracing::info!(%level, "no live model yet; training one first");
            train(store, config, level, now, &mut loaded).await?;
            tally.add("trained_levels", 1);
        }
        let scored = {
            let at_level = at_level.clone();
            let config = config.clone();
            let shared = loaded.take();
            let (scored, shared) = blocking(move || {
                let records = match shared {
                    Some(records) => records,
                    None => training::load(&at_level, &config)?,
                };
                let report = scoring::score_loaded(&at_level, &config, now, &records.history)?;
                Ok((report, records))
            })
            .await?;
            loaded = Some(shared);
            scored
        };
        tally.add("scored", scored.scored);
        tally.add("rescored", scored.rescored);
        if tally.stopping() {
            return Ok(());
        }
        let push =
            writeback::push(connector, &at_level, config, &check.reasons_max_len, now).await?;
        tally.add("written", push.written);
        tally.add("write_failures", push.failed.len());
        metrics::written(crm, level, push.written);
        if tally.stopping() {
            return Ok(());
        }
        let alerts = crate::alerts::run_alerts(connector, &at_level, config, now).await?;
        tally.add("alerts_sent", alerts.sent);
        metrics::alerts_sent(crm, level, alerts.sent);
    }
    Ok(())
}

/// Trains `level` with the records in `loaded`, loading them first when it is `None`, so the
/// levels of one job read the store once (see [`training::train_sharing`]). The records move
/// into the blocking task and back out.
async fn train(
    store: &Store,
    config: &Config,
    level: Level,
    now: DateTime<Utc>,
    loaded: &mut Option<training::Loaded>,
) -> Result<training::TrainReport, PipelineError> {
    let at_level = store.at_level(level);
    let config = config.clone();
    let mut shared = loaded.take();
    let (report, shared) = blocking(move || {
        let report = training::train_sharing(&at_level, &config, now, &mut shared);
        Ok((report, shared))
    })
    .await?;
    *loaded = shared;
    report
}

/// Runs CPU-bound work off the async worker threads, so `/metrics` keeps responding.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PipelineError> + Send + 'static,
) -> Result<T, PipelineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| PipelineError::Model(format!("the step stopped unexpectedly: {err}")))?
}
