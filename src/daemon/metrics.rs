//! The daemon's Prometheus metrics: names, labels and the updates the jobs make.

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::Level;
use crate::store::{JobRun, RunOutcome, Store};

pub const RECORDS_PULLED: &str = "leadscore_records_pulled_total";
pub const RECORDS_WRITTEN: &str = "leadscore_records_written_total";
pub const BUDGET_USED: &str = "leadscore_api_budget_used";
pub const BUDGET_LEFT: &str = "leadscore_api_budget_left";
pub const JOB_LAST_RUN: &str = "leadscore_job_last_run_timestamp_seconds";
pub const JOB_LAST_OK: &str = "leadscore_job_last_run_ok";
pub const JOB_RUNS: &str = "leadscore_job_runs_total";
pub const MODEL_INFO: &str = "leadscore_model_info";
pub const MODEL_AUC: &str = "leadscore_model_holdout_auc";
pub const ALERTS_SENT: &str = "leadscore_alerts_sent_total";

/// Installs the process-wide recorder and returns the handle that renders the text format.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| format!("cannot set up the metrics recorder: {err}"))?;
    describe_counter!(RECORDS_PULLED, "Records pulled from the CRM and stored.");
    describe_counter!(RECORDS_WRITTEN, "Records whose scores the CRM confirmed.");
    describe_gauge!(
        BUDGET_USED,
        "API calls leadscore sent in the current UTC day."
    );
    describe_gauge!(
        BUDGET_LEFT,
        "API calls leadscore may still send in the current UTC day."
    );
    describe_gauge!(JOB_LAST_RUN, "Unix time the job's last run finished.");
    describe_gauge!(
        JOB_LAST_OK,
        "1 when the job's last run succeeded, 0 when it failed, stopped or spent the API budget."
    );
    describe_counter!(JOB_RUNS, "Finished job runs by outcome.");
    describe_gauge!(MODEL_INFO, "1 for the live model version of each level.");
    describe_gauge!(
        MODEL_AUC,
        "Holdout ROC AUC of the live model of each level."
    );
    describe_counter!(ALERTS_SENT, "Threshold alerts delivered as CRM tasks.");
    Ok(handle)
}

/// Records a finished job run.
pub fn job_finished(crm: &str, run: &JobRun) {
    let labels = [("crm", crm.to_string()), ("job", run.job.clone())];
    gauge!(JOB_LAST_RUN, &labels).set(run.finished_at.timestamp() as f64);
    let ok = if run.outcome == RunOutcome::Ok {
        1.0
    } else {
        0.0
    };
    gauge!(JOB_LAST_OK, &labels).set(ok);
    counter!(
        JOB_RUNS,
        "crm" => crm.to_string(),
        "job" => run.job.clone(),
        "outcome" => run.outcome.as_str()
    )
    .increment(1);
}

pub fn pulled(crm: &str, records: usize) {
    counter!(RECORDS_PULLED, "crm" => crm.to_string()).increment(records as u64);
}

pub fn written(crm: &str, level: Level, records: usize) {
    counter!(RECORDS_WRITTEN, "crm" => crm.to_string(), "level" => level.to_string())
        .increment(records as u64);
}

pub fn alerts_sent(crm: &str, level: Level, alerts: usize) {
    counter!(ALERTS_SENT, "crm" => crm.to_string(), "level" => level.to_string())
        .increment(alerts as u64);
}

pub fn budget(crm: &str, usage: &leadscore_connector::limits::BudgetUsage) {
    gauge!(BUDGET_USED, "crm" => crm.to_string()).set(usage.used_today as f64);
    if let Some(allowance) = usage.allowance_today {
        gauge!(BUDGET_LEFT, "crm" => crm.to_string())
            .set(allowance.saturating_sub(usage.used_today) as f64);
    }
}

/// Sets the live model's info gauge and AUC of every level from the store. The info gauge of
/// a version that is no longer live drops to 0.
pub fn live_models(crm: &str, store: &Store, levels: &[Level], previous: &mut Vec<String>) {
    let mut live = Vec::new();
    for &level in levels {
        let at_level = store.at_level(level);
        let Ok(Some(version)) = at_level.live_version() else {
            continue;
        };
        let auc = at_level
            .model_entry(&version)
            .ok()
            .flatten()
            .and_then(|entry| entry.holdout_auc);
        let key = format!("{crm}\u{0}{level}\u{0}{version}");
        gauge!(MODEL_INFO, "crm" => crm.to_string(), "level" => level.to_string(), "version" => version.clone())
            .set(1.0);
        if let Some(auc) = auc {
            gauge!(MODEL_AUC, "crm" => crm.to_string(), "level" => level.to_string()).set(auc);
        }
        live.push(key);
    }
    for old in previous.iter() {
        let mut parts = old.split('\u{0}');
        let (Some(old_crm), Some(level), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if old_crm == crm && !live.contains(old) {
            gauge!(MODEL_INFO, "crm" => old_crm.to_string(), "level" => level.to_string(), "version" => version.to_string())
                .set(0.0);
        }
    }
    previous.retain(|key| !key.starts_with(&format!("{crm}\u{0}")));
    previous.extend(live);
}
