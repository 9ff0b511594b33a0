//! The daemon's job run history, kept in the store for `leadscore status` and `/metrics`.
//!
//! Each finished run of a scheduled job is one entry in the `job_runs` tree, keyed by its start
//! time, so entries iterate oldest first. The tree keeps the latest [`MAX_JOB_RUNS`] entries.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use redb::ReadableTableMetadata;

use super::store_db::{table, Commit};
use super::{decode, encode, Store, StoreError};

const JOB_RUNS_TREE: &str = "job_runs";

/// Runs kept; a run every 30 minutes fills this in about six weeks.
pub const MAX_JOB_RUNS: usize = 2_000;

/// The result of a job run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Ok,
    Failed,
    /// The day's share of the CRM's API calls was spent; the next run resumes where it stopped.
    BudgetSpent,
    /// The daemon was asked to stop and the run ended after its current batch or page.
    Stopped,
}

impl RunOutcome {
    /// Returns the outcome's name as `status` and `/metrics` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::BudgetSpent => "budget_spent",
            RunOutcome::Stopped => "stopped",
        }
    }
}

/// One finished run of a scheduled job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// The job's `[schedule]` key, for example `pull_and_score`.
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    /// The error of a failed or budget-stopped run.
    pub error: Option<String>,
    /// Counts of the run's work, for example `pulled`, `written`, `alerts_sent`.
    pub counts: BTreeMap<String, u64>,
}

fn run_key(run: &JobRun) -> Vec<u8> {
    let nanos = run.started_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
    // Big-endian with the sign bit flipped sorts like the signed value.
    let mut key = ((nanos as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    key.extend_from_slice(run.job.as_bytes());
    key
}

impl Store {
    /// Records a finished job run and drops the oldest runs beyond [`MAX_JOB_RUNS`].
    pub fn record_job_run(&self, run: &JobRun) -> Result<(), StoreError> {
        let key = run_key(run);
        let bytes = encode(run);
        self.db.write(Commit::Durable, |transaction| {
            let mut tree = transaction.open_table(table(JOB_RUNS_TREE))?;
            tree.insert(key.as_slice(), bytes.as_slice())?;
            let excess = tree.len()?.saturating_sub(MAX_JOB_RUNS as u64);
            for _ in 0..excess {
                tree.pop_first()?;
            }
            Ok(())
        })
    }

    /// Returns the latest `limit` job runs, newest first.
    pub fn job_runs(&self, limit: usize) -> Result<Vec<JobRun>, StoreError> {
        let mut runs = Vec::new();
        for (key, bytes) in self.db.last_entries(JOB_RUNS_TREE, limit)? {
            runs.push(decode(JOB_RUNS_TREE, &key, &bytes)?);
        }
        Ok(runs)
    }

    /// Returns the latest run of each job that has run.
    pub fn last_job_runs(&self) -> Result<BTreeMap<String, JobRun>, StoreError> {
        let mut last = BTreeMap::new();
        for run in self.job_runs(MAX_JOB_RUNS)? {
            last.entry(run.job.clone()).or_insert(run);
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, minute: u32, outcome: RunOutcome) -> JobRun {
        use chrono::TimeZone;
        let started_at = Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap();
        JobRun {
            job: job.to_string(),
            started_at,
            finished_at: started_at + chrono::Duration::seconds(20),
            outcome,
            error: None,
            counts: BTreeMap::new(),
        }
    }

    #[test]
    fn runs_newest_first_and_last_per_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store opens");
        store
            .record_job_run(&run("retrain", 1, RunOutcome::Failed))
            .expect("recorded");
        store
            .record_job_run(&run("pull_and_score", 2, RunOutcome::Ok))
            .expect("recorded");
        store
            .record_job_run(&run("retrain", 3, RunOutcome::Ok))
            .expect("recorded");
        let runs = store.job_runs(10).expect("read");
        let minutes: Vec<u32> = runs
            .iter()
            .map(|r| chrono::Timelike::minute(&r.started_at))
            .collect();
        assert_eq!(minutes, vec![3, 2, 1]);
        let last = store.last_job_runs().expect("read");
        assert_eq!(last["retrain"].outcome, RunOutcome::Ok);
        assert_eq!(last.len(), 2);
    }
}
