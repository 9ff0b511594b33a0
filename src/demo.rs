//! `leadscore demo`: the whole pipeline against the Salesforce sandbox seeded with real CMS
//! hospitals, run twice to show that an unchanged org gets no second write.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use leadscore_demo_org::{DemoOptions, DemoOrg};
use leadscore_sandbox::{Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::{Config, Secrets};
use crate::model::metrics;
use crate::run::{connect, run_once};
use crate::store::Store;

/// The example configuration shipped in `deploy/`; `init` and the demo start from it.
pub const EXAMPLE_CONFIG: &str = include_str!("../deploy/leadscore.example.toml");

/// Default loopback port of the Salesforce sandbox.
pub const SANDBOX_PORT: u16 = 8580;

/// Returns the example configuration pointed at a sandbox URL with the sandbox's client id,
/// the store at `store_path`, and scores computed as of the end of the demo org's history.
pub fn sandbox_config(url: &str, store_path: &str) -> String {
    let client_id = SandboxOptions::default().client_id;
    EXAMPLE_CONFIG
        .replace(
            "login_url = \"https://login.salesforce.com\"",
            &format!("login_url = {url:?}"),
        )
        .replace(
            "client_id = \"YOUR_CONNECTED_APP_CONSUMER_KEY\"",
            &format!("client_id = {client_id:?}"),
        )
        .replace(
            "path = \"leadscore-data\"",
            &format!("path = {store_path:?}"),
        )
        .replace("# as_of = ", "as_of = ")
}

/// An account in the summary's top list.
#[derive(Debug, Serialize)]
pub struct TopAccount {
    pub name: String,
    pub score: f64,
    pub tier: String,
    pub reasons: Vec<String>,
}

/// What the demo prints.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub hospitals: usize,
    pub pulled: usize,
    pub examples: usize,
    pub holdout_rows: usize,
    pub holdout_auc: Option<f64>,
    pub oracle_auc: Option<f64>,
    pub holdout_log_loss: f64,
    pub baseline_log_loss: f64,
    pub model_version: String,
    pub scored: usize,
    pub tiers: BTreeMap<String, usize>,
    pub top: Vec<TopAccount>,
    pub written: usize,
    pub failed: usize,
    /// Accounts in the sandbox that now hold a score, read back from the sandbox itself.
    pub crm_records_with_scores: usize,
    pub rerun_pulled: usize,
    pub rerun_written: usize,
    pub seconds: f64,
}

/// Runs the demo on `hospitals` hospitals (all when `None`), keeping its store under `workdir`.
pub async fn run_demo(hospitals: Option<usize>, workdir: &Path) -> anyhow::Result<DemoSummary> {
    let started = std::time::Instant::now();
    let mut org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: hospitals,
        ..DemoOptions::default()
    })
    .context("generating the demo org")?;
    let hospital_count = count_hospitals(&org);
    let options = SandboxOptions::default();
    let secrets = || Secrets {
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
    };
    // The sandbox takes the records; the demo keeps only the true win probabilities.
    let records = std::mem::take(&mut org.records);
    let sandbox = Sandbox::new(records, options.clone())
        .context("loading the demo org into the sandbox")?
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("starting the Salesforce sandbox on 127.0.0.1")?;

    let store_path = workdir.join("store");
    let config_path = workdir.join("leadscore.toml");
    let text = sandbox_config(&sandbox.url(), &store_path.display().to_string());
    std::fs::write(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let store = Store::open(&config.store_path)?;

    let connector = connect(&config, secrets())?;
    let first = run_once(&connector, &store, &config, Utc::now()).await?;
    let rerun_connector = connect(&config, secrets())?;
    let second = run_once(&rerun_connector, &store, &config, Utc::now()).await?;

    let crm_records_with_scores = sandbox
        .handle()
        .records("Account")
        .iter()
        .filter(|r| {
            r.get(&config.writeback.score_field)
                .is_some_and(|v| !v.is_null())
        })
        .count();
    sandbox.shutdown().await;

    let train = &first.train;
    let oracle_scores: Vec<f64> = train
        .holdout_ids
        .iter()
        .map(|id| org.win_probability.get(id).copied().unwrap_or(f64::NAN))
        .collect();
    let oracle_auc = if oracle_scores.iter().any(|p| p.is_nan()) {
        None
    } else {
        metrics::roc_auc(&train.holdout_labels, &oracle_scores)
    };
    Ok(DemoSummary {
        hospitals: hospital_count,
        pulled: first.pull.pulled,
        examples: train.examples,
        holdout_rows: train.holdout_rows,
        holdout_auc: train.holdout_auc,
        oracle_auc,
        holdout_log_loss: train.holdout_log_loss,
        baseline_log_loss: train.baseline_log_loss,
        model_version: train.version.clone(),
        scored: first.score.scored,
        tiers: first.score.tiers.clone(),
        top: first
            .score
            .top
            .iter()
            .map(|row| TopAccount {
                name: row.name.clone(),
                score: row.score,
                tier: row.tier.clone(),
                reasons: row.reasons.clone(),
            })
            .collect(),
        written: first.push.written,
        failed: first.push.failed.len(),
        crm_records_with_scores,
        rerun_pulled: second.pull.pulled,
        rerun_written: second.push.written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn count_hospitals(org: &DemoOrg) -> usize {
    org.records.get("Account").map_or(0, |accounts| {
        accounts
            .iter()
            .filter(|a| a.get("Type").and_then(|t| t.as_str()) == Some("Hospital"))
            .count()
    })
}

/// Formats the summary for a person reading a terminal.
pub fn render(summary: &DemoSummary) -> String {
    let mut out = String::new();
    let auc = |v: Option<f64>| v.map_or("n/a".to_string(), |a| format!("{a:.3}"));
    out.push_str(&format!(
        "Pulled {} records for {} real hospitals from the Salesforce sandbox.\n",
        summary.pulled, summary.hospitals
    ));
    out.push_str(&format!(
        "Trained on {} closed deals; holdout of the latest {}: AUC {} (oracle {}), log loss {:.3} (baseline {:.3}).\n",
        summary.examples,
        summary.holdout_rows,
        auc(summary.holdout_auc),
        auc(summary.oracle_auc),
        summary.holdout_log_loss,
        summary.baseline_log_loss
    ));
    let tiers: Vec<String> = summary
        .tiers
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    out.push_str(&format!(
        "Scored {} open accounts with model {}: {}.\n\nTop accounts:\n",
        summary.scored,
        summary.model_version,
        tiers.join(", ")
    ));
    for (rank, account) in summary.top.iter().enumerate() {
        out.push_str(&format!(
            "{:>2}. {:<45} {:>3} {}  {}\n",
            rank + 1,
            account.name,
            account.score,
            account.tier,
            account.reasons.join("; ")
        ));
    }
    out.push_str(&format!(
        "\nWrote {} records ({} rejected); {} sandbox accounts now hold a score.\n",
        summary.written, summary.failed, summary.crm_records_with_scores
    ));
    out.push_str(&format!(
        "Second run: pulled {} records (the accounts just written, read back), wrote {}. Finished in {:.1} s.\n",
        summary.rerun_pulled, summary.rerun_written, summary.seconds
    ));
    out
}
