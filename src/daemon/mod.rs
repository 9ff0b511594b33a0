//! `leadscore run`: the long-lived daemon that runs the configured jobs on their schedules.
//!
//! Every fire time is computed by [`cron::CronSchedule`] in `[daemon] time_zone` and handed to
//! tokio-cron-scheduler as a one-shot job, which arms the following fire time when it runs.
//! A job never runs twice at once: a start that finds the previous run still going logs a
//! warning and waits for it, and a further start while one already waits is skipped.
//! `pull_and_score` and `retrain` also exclude each other, because both change what is written
//! to the CRM. SIGTERM and Ctrl-C stop scheduling, let running jobs end after their current
//! page or write batch, and exit. SIGHUP reloads the configuration file.

pub mod cron;
mod daemon_lock;
mod http;
mod jobs;
mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::daemon::ScheduleConfig;
use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::store::Store;
use cron::CronSchedule;
use daemon_lock::DaemonLocks;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Returns true once the daemon was asked to stop. Long steps check it between pages and
/// write batches and end early, leaving the store where the next run resumes.
pub fn shutdown_requested() -> bool {
    SHUTDOWN.load(Ordering::Relaxed)
}

/// Asks running steps to end after their current page or batch.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::Relaxed);
}

/// A scheduled job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    PullAndScore,
    Retrain,
    TerritoryLists,
    OutcomesReport,
}

impl JobKind {
    /// Every job, in the order a stop waits for them: a job that starts another comes before it.
    pub const ALL: [JobKind; 4] = [
        JobKind::OutcomesReport,
        JobKind::TerritoryLists,
        JobKind::PullAndScore,
        JobKind::Retrain,
    ];

    /// Returns the job's `[schedule]` key.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::PullAndScore => "pull_and_score",
            JobKind::Retrain => "retrain",
            JobKind::TerritoryLists => "territory_lists",
            JobKind::OutcomesReport => "outcomes_report",
        }
    }

    /// Returns the job's schedule, or `None` when it is off.
    pub fn schedule(self, schedule: &ScheduleConfig) -> Option<&CronSchedule> {
        match self {
            JobKind::PullAndScore => schedule.pull_and_score.as_ref(),
            JobKind::Retrain => schedule.retrain.as_ref(),
            JobKind::TerritoryLists => schedule.territory_lists.as_ref(),
            JobKind::OutcomesReport => schedule.outcomes_report.as_ref(),
        }
    }
}

/// The run state of one job.
#[derive(Default)]
struct JobSlot {
    /// Held while the job runs.
    running: tokio::sync::Mutex<()>,
    /// Set while a start waits for the running one to end.
    waiting: AtomicBool,
}

struct Daemon {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    /// Raised by each reload; a fire armed under an older generation does nothing.
    generation: AtomicU64,
    scheduler: JobScheduler,
    slots: HashMap<JobKind, JobSlot>,
    /// Held by the jobs that change what is written to the CRM, and by the lists and reports
    /// that read their results.
    crm_writes: tokio::sync::Mutex<()>,
    /// Stores open while some job uses them, by path. The store locks its database file, so it is
    /// opened once per process and closed when no job needs it, which lets `leadscore status`
    /// read it between runs.
    stores: Mutex<HashMap<PathBuf, Weak<Store>>>,
    /// Live model versions shown on the info gauge, as `crm\0level\0version`.
    live_models: Mutex<Vec<String>>,
    /// The daemon locks of the stores this daemon has used, held until it exits.
    daemon_locks: Mutex<DaemonLocks>,
}

/// Runs the daemon until SIGTERM or Ctrl-C. `config` is the configuration read from
/// `config_path`, which SIGHUP reads again.
pub async fn run(config_path: &Path, config: Config) -> Result<(), String> {
    crate::progress::disable_bars();
    let mut signals = Signals::register()?;
    let mut daemon_locks = DaemonLocks::default();
    daemon_locks.take_all(&config)?;
    let metrics = metrics::install()?;
    let (listener, addr) = http::bind(config.daemon.listen).await?;
    tracing::info!("listening on {addr}");
    let scheduler = JobScheduler::new()
        .await
        .map_err(|err| format!("cannot start the job scheduler: {err}"))?;
    let daemon = Arc::new(Daemon {
        config_path: config_path.to_path_buf(),
        config: RwLock::new(Arc::new(config)),
        generation: AtomicU64::new(0),
        scheduler: scheduler.clone(),
        slots: JobKind::ALL
            .iter()
            .map(|kind| (*kind, JobSlot::default()))
            .collect(),
        crm_writes: tokio::sync::Mutex::new(()),
        stores: Mutex::new(HashMap::new()),
        live_models: Mutex::new(Vec::new()),
        daemon_locks: Mutex::new(daemon_locks),
    });
    daemon.load_metrics_from_stores();

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, metrics, async {
        let _ = server_stopped.await;
    }));

    scheduler
        .start()
        .await
        .map_err(|err| format!("cannot start the job scheduler: {err}"))?;
    daemon.arm_all(0).await;

    wait_for_stop(&daemon, &mut signals).await;

    request_shutdown();
    tracing::info!(
        "stopping: no new job starts; running jobs end after their current page or write batch"
    );
    let mut scheduler = scheduler;
    if let Err(err) = scheduler.shutdown().await {
        tracing::warn!(%err, "the job scheduler did not shut down cleanly");
    }
    for kind in JobKind::ALL {
        if let Some(slot) = daemon.slots.get(&kind) {
            let _ended = slot.running.lock().await;
        }
    }
    daemon.check_journals();
    // Scheduled jobs that never fired may still hold the daemon, so the locks are released
    // here rather than when it drops.
    match daemon.daemon_locks.lock() {
        Ok(mut locks) => locks.release_all(),
        Err(poisoned) => poisoned.into_inner().release_all(),
    }
    let _ = stop_server.send(());
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}

/// The signals the daemon handles. They are registered before anything is logged, so a
/// SIGTERM sent as soon as the daemon reports that it listens stops it cleanly instead of
/// killing it by the default action.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen_error = |err: std::io::Error| format!("cannot listen for signals: {err}");
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).map_err(listen_error)?,
            interrupt: signal(SignalKind::interrupt()).map_err(listen_error)?,
            hangup: signal(SignalKind::hangup()).map_err(listen_error)?,
        })
    }
}

/// Handles signals until SIGTERM or Ctrl-C: SIGHUP reloads the configuration.
async fn wait_for_stop(daemon: &Arc<Daemon>, signals: &mut Signals) {
    loop {
        tokio::select! {
            _ = signals.terminate.recv() => {
                tracing::info!("SIGTERM received");
                return;
            }
            _ = signals.interrupt.recv() => {
                tracing::info!("Ctrl-C received");
                return;
            }
            _ = signals.hangup.recv() => daemon.reload().await,
        }
    }
}

impl Daemon {
    fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the configuration file again. A valid one replaces the schedules; an invalid
    /// one is logged with its errors and the running configuration is kept.
    async fn reload(self: &Arc<Self>) {
        let new = match Config::load(&self.config_path) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(
                    "SIGHUP: the configuration file has errors, so the daemon keeps the one it runs with:\n{}",
                    err.to_string().trim_end()
                );
                return;
            }
        };
        let locked = match self.daemon_locks.lock() {
            Ok(mut locks) => locks.take_all(&new),
            Err(poisoned) => poisoned.into_inner().take_all(&new),
        };
        if let Err(err) = locked {
            tracing::error!("SIGHUP: {err}; the daemon keeps the configuration it runs with");
            return;
        }
        let old = self.config();
        if new.daemon.listen != old.daemon.listen {
            tracing::warn!(old = %old.daemon.listen, new = %new.daemon.listen, "[daemon] listen changed; the server keeps its address until the daemon restarts");
        }
        match self.config.write() {
            Ok(mut config) => *config = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        // One-shot jobs armed under the old generation stay in the scheduler until their time
        // and then do nothing.
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.arm_all(generation).await;
        tracing::info!("SIGHUP: configuration reloaded and schedules replaced");
    }

    async fn arm_all(self: &Arc<Self>, generation: u64) {
        let now = Utc::now();
        for kind in JobKind::ALL {
            self.arm(kind, now, generation, true).await;
        }
    }

    /// Schedules the first fire of `kind` after `after`, unless the job is off. With
    /// `announce`, the fire time is logged at info, so an operator sees when each job first
    /// runs after a start or a reload.
    async fn arm(
        self: &Arc<Self>,
        kind: JobKind,
        after: DateTime<Utc>,
        generation: u64,
        announce: bool,
    ) {
        let config = self.config();
        let zone = config.daemon.time_zone;
        let Some(schedule) = kind.schedule(&config.daemon.schedule) else {
            tracing::info!(job = kind.name(), "job is off");
            return;
        };
        let Some(due) = schedule.next_after(after, zone) else {
            tracing::warn!(
                job = kind.name(),
                schedule = schedule.as_str(),
                "the schedule has no fire time in the next eight years; the job does not run"
            );
            return;
        };
        let delay = (due - Utc::now()).to_std().unwrap_or_default();
        let daemon = Arc::clone(self);
        let job = Job::new_one_shot_async(delay, move |_id, _scheduler| {
            let daemon = Arc::clone(&daemon);
            Box::pin(async move { daemon.fire(kind, due, generation).await })
        });
        let job = match job {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(job = kind.name(), %err, "cannot schedule the job");
                return;
            }
        };
        match self.scheduler.add(job).await {
            Ok(_) if announce => {
                tracing::info!(job = kind.name(), due = %due.with_timezone(&zone), "first run scheduled");
            }
            Ok(_) => {
                tracing::debug!(job = kind.name(), due = %due.with_timezone(&zone), "next run scheduled");
            }
            Err(err) => tracing::error!(job = kind.name(), %err, "cannot schedule the job"),
        }
    }

    /// Runs a due job after arming its next fire time. Boxed as a `Send` future because it
    /// and [`Daemon::arm`] refer to each other.
    fn fire(
        self: Arc<Self>,
        kind: JobKind,
        due: DateTime<Utc>,
        generation: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            if generation != self.generation.load(Ordering::SeqCst) || shutdown_requested() {
                return;
            }
            // The scheduler keeps fire times in whole seconds and can fire up to a second early.
            if let Ok(early) = (due - Utc::now()).to_std() {
                tokio::time::sleep(early).await;
            }
            // The next fire time follows this one, not the clock, so none is skipped or repeated.
            self.arm(kind, due, generation, false).await;
            self.run_job(kind, due).await;
        })
    }

    /// Runs a job once for each connector, unless another run of it is going: then the start
    /// waits for it, or is skipped if another start already waits.
    fn run_job(
        self: &Arc<Self>,
        kind: JobKind,
        due: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // Boxed because the outcomes report starts a retrain through this function.
        Box::pin(async move {
            let Some(slot) = self.slots.get(&kind) else {
                return;
            };
            let _running = match slot.running.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    if slot.waiting.swap(true, Ordering::SeqCst) {
                        tracing::warn!(job = kind.name(), due = %due, "the job is still running and a start already waits for it; skipping this start");
                        return;
                    }
                    tracing::warn!(job = kind.name(), due = %due, "the previous run overran its schedule and is still going; this start waits for it");
                    let guard = slot.running.lock().await;
                    slot.waiting.store(false, Ordering::SeqCst);
                    guard
                }
            };
            if shutdown_requested() {
                return;
            }
            let config = self.config();
            let mut retrain = false;
            for connector_config in config.per_connector() {
                let done = jobs::run_for_connector(self, kind, &connector_config).await;
                retrain |= done.retrain_requested;
            }
            drop(_running);
            if retrain && !shutdown_requested() {
                tracing::info!("the outcomes report requested a retrain; starting it");
                self.run_job(JobKind::Retrain, Utc::now()).await;
            }
        })
    }

    /// Opens the store at `path`, or shares it with the jobs that have it open.
    fn open_store(&self, path: &Path) -> Result<Arc<Store>, PipelineError> {
        let mut stores = match self.stores.lock() {
            Ok(stores) => stores,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(store) = stores.get(path).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Arc::new(Store::open(path)?);
        stores.insert(path.to_path_buf(), Arc::downgrade(&store));
        Ok(store)
    }

    /// Sets the last-run and model metrics from what the stores recorded before this start.
    fn load_metrics_from_stores(&self) {
        let config = self.config();
        for connector_config in config.per_connector() {
            let crm = connector_config.connector_name.clone();
            let store = match self.open_store(&connector_config.store_path) {
                Ok(store) => store,
                Err(err) => {
                    tracing::warn!(%crm, %err, "cannot read the store for the metrics of earlier runs");
                    continue;
                }
            };
            if let Ok(last) = store.last_job_runs() {
                for run in last.values() {
                    metrics::job_finished(&crm, run);
                }
            }
            self.update_model_metrics(&crm, &store, &connector_config);
        }
    }

    fn update_model_metrics(&self, crm: &str, store: &Store, config: &Config) {
        if let Ok(mut previous) = self.live_models.lock() {
            metrics::live_models(crm, store, &config.scoring.levels, &mut previous);
        }
    }

    /// Logs write batches left unsettled in a journal; the next push reads them back.
    fn check_journals(&self) {
        let config = self.config();
        for connector_config in config.per_connector() {
            let Ok(store) = self.open_store(&connector_config.store_path) else {
                continue;
            };
            match store.journal() {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => tracing::warn!(
                    crm = %connector_config.connector_name,
                    batches = entries.len(),
                    "write batches are unsettled; the next push reads their records back before it writes"
                ),
                Err(err) => tracing::warn!(%err, "cannot read the write journal"),
            }
        }
    }
}
