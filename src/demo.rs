//! `leadscore demo`: the whole pipeline against the Salesforce sandbox seeded with real CMS
//! hospitals, run twice to show that an unchanged org gets no second write.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Utc;
use leadscore_demo_org::{DemoOptions, DemoOrg};
use leadscore_sandbox::{Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::{Config, Secrets};
use crate::features::{Deal, FeatureSpace, History};
use crate::model::metrics;
use crate::run::{connect, run_once};
use crate::store::Store;
use crate::training;

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

/// Summary the demo prints.
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
    /// The example files written by `--export-examples`, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<ExportedExamples>,
}

/// The two CSV files of closed deals written by [`export_examples`].
#[derive(Debug, Serialize)]
pub struct ExportedExamples {
    pub train_path: PathBuf,
    pub train_rows: usize,
    pub holdout_path: PathBuf,
    pub holdout_rows: usize,
    /// Feature columns in each file, after `id`, `close_date` and `won`.
    pub features: usize,
}

/// Runs the demo on `hospitals` hospitals (all when `None`), keeping its store under `workdir`.
/// With `export_dir`, writes the training examples of the first run there as CSV files.
pub async fn run_demo(
    hospitals: Option<usize>,
    workdir: &Path,
    export_dir: Option<&Path>,
) -> anyhow::Result<DemoSummary> {
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
    // Exported before the second run, which pulls the accounts just written back.
    let exported = match export_dir {
        Some(dir) => Some(export_examples(
            &store,
            &config,
            &first.train.holdout_ids,
            dir,
        )?),
        None => None,
    };
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
        exported,
    })
}

/// Writes `dir/train.csv` and `dir/holdout.csv` with one row per closed deal in the store.
/// The columns are `id`, `close_date`, `won` (1/0) and every feature column the trainer fits.
/// The split is the training split: the latest `holdout_fraction` by close date, ties broken
/// by id, is the holdout. Fails when the rebuilt holdout ids differ from
/// `expected_holdout_ids`, the training run's holdout.
pub fn export_examples(
    store: &Store,
    config: &Config,
    expected_holdout_ids: &[String],
    dir: &Path,
) -> anyhow::Result<ExportedExamples> {
    let history = training::load_history(store, config)?;
    let mut deals: Vec<(&Deal, f64)> = history
        .deals
        .iter()
        .filter_map(|d| crate::training::label_of(d, &config.model.label).map(|label| (d, label)))
        .collect();
    deals.sort_by(|a, b| {
        a.0.close_date
            .cmp(&b.0.close_date)
            .then_with(|| a.0.id.cmp(&b.0.id))
    });
    anyhow::ensure!(
        !deals.is_empty(),
        "the store has no closed deals to export; the demo's first run pulled none"
    );
    let holdout_count = ((deals.len() as f64) * config.model.holdout_fraction)
        .round()
        .max(1.0) as usize;
    let before_holdout = deals.len().saturating_sub(holdout_count);
    let holdout_ids: Vec<&str> = deals[before_holdout..]
        .iter()
        .map(|(d, _)| d.id.as_str())
        .collect();
    // The holdout rows come out in time order, as the training report lists them.
    anyhow::ensure!(
        holdout_ids
            .iter()
            .copied()
            .eq(expected_holdout_ids.iter().map(String::as_str)),
        "the exported holdout ({} deals) differs from the training run's holdout ({} deals): \
         the export no longer splits as training does; align export_examples in src/demo.rs \
         with training::train",
        holdout_ids.len(),
        expected_holdout_ids.len()
    );

    let training_accounts: Vec<&str> = deals[..before_holdout]
        .iter()
        .map(|(d, _)| d.account_id.as_str())
        .collect();
    let space = FeatureSpace::fit(&config.features, &history, &training_accounts);
    check_against_live_model(store, &space)?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let train_path = dir.join("train.csv");
    let holdout_path = dir.join("holdout.csv");
    write_examples(&train_path, &space, &history, &deals[..before_holdout])?;
    write_examples(&holdout_path, &space, &history, &deals[before_holdout..])?;
    Ok(ExportedExamples {
        train_path,
        train_rows: before_holdout,
        holdout_path,
        holdout_rows: deals.len() - before_holdout,
        features: space.columns.len(),
    })
}

/// Checks that the live model's stored columns are among the refitted columns, so the export
/// contains the inputs that model was trained on.
fn check_against_live_model(store: &Store, space: &FeatureSpace) -> anyhow::Result<()> {
    let Some(stored) = store.current_model()? else {
        anyhow::bail!("the store has no live model after the demo's first run");
    };
    let stored_space: FeatureSpace = serde_json::from_value(stored.features)
        .with_context(|| format!("reading the feature space of model {}", stored.version))?;
    for column in &stored_space.columns {
        anyhow::ensure!(
            space.columns.contains(column),
            "model {} uses column {:?}, which the refitted feature space lacks or defines \
             differently; the export would not match the model's inputs",
            stored.version,
            column.name
        );
    }
    Ok(())
}

/// Writes one CSV file of examples, with a missing feature value (NaN) as an empty cell.
fn write_examples(
    path: &Path,
    space: &FeatureSpace,
    history: &History,
    deals: &[(&Deal, f64)],
) -> anyhow::Result<()> {
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    let mut header = vec![
        "id".to_string(),
        "close_date".to_string(),
        "won".to_string(),
    ];
    header.extend(space.names());
    writer
        .write_record(&header)
        .with_context(|| format!("writing {}", path.display()))?;
    for (deal, label) in deals {
        let close_date = deal
            .close_date
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let mut record = vec![deal.id.clone(), close_date, format!("{label}")];
        // Rows are built at the deal's creation time, as training builds them.
        for value in space.row(history, &deal.account_id, deal.created) {
            record.push(if value.is_nan() {
                String::new()
            } else {
                format!("{value}")
            });
        }
        writer
            .write_record(&record)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
    if let Some(exported) = &summary.exported {
        out.push_str(&format!(
            "\nExported {} training and {} holdout deals with {} feature columns:\n  {}\n  {}\n",
            exported.train_rows,
            exported.holdout_rows,
            exported.features,
            exported.train_path.display(),
            exported.holdout_path.display()
        ));
    }
    out
}
