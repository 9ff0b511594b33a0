//! `leadscore demo`: the whole pipeline against the Salesforce sandbox seeded with real CMS
//! hospitals, run twice to show that an unchanged org gets no second write.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Utc;
use leadscore_demo_org::{DemoOptions, DemoOrg};
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::{Config, ConnectorSecrets, Secrets};
use crate::features::{FeatureSpace, History};
use crate::level::Level;
use crate::levels;
use crate::model::metrics;
use crate::run::{connect, run_once};
use crate::store::Store;
use crate::{alerts, outcomes, pipeline, report, scoring, territory, training};

/// The example configuration shipped in `deploy/`; `init` and the demo start from it.
pub const EXAMPLE_CONFIG: &str = include_str!("../deploy/leadscore.example.toml");

/// The example configuration for a HubSpot portal.
pub const HUBSPOT_EXAMPLE_CONFIG: &str = include_str!("../deploy/leadscore.hubspot.example.toml");

/// Default loopback port of the Salesforce sandbox.
pub const SANDBOX_PORT: u16 = 8580;

/// Hospitals in the HubSpot demo unless `--hospitals` says otherwise.
pub const HUBSPOT_DEMO_HOSPITALS: usize = 800;

/// Default loopback port of the HubSpot sandbox.
pub const HUBSPOT_SANDBOX_PORT: u16 = 8581;

/// The CRMs the demo and `init` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    Salesforce,
    Hubspot,
}

/// Returns the HubSpot example configuration pointed at a sandbox URL, with the store at
/// `store_path`, all three levels, and scores computed as of the end of the demo history.
pub fn hubspot_sandbox_config(url: &str, store_path: &str) -> String {
    HUBSPOT_EXAMPLE_CONFIG
        .replace(
            "base_url = \"https://api.hubapi.com\"",
            &format!("base_url = {url:?}"),
        )
        .replace(
            "path = \"leadscore-data\"",
            &format!("path = {store_path:?}"),
        )
        .replace("# as_of = ", "as_of = ")
        .replace(
            "levels = [\"account\"]",
            "levels = [\"account\", \"contact\", \"lead\"]",
        )
}

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
        .replace(
            "levels = [\"account\"]",
            "levels = [\"account\", \"contact\", \"lead\"]",
        )
}

/// Parses a configuration text for unit tests, relative paths resolving against the current
/// folder, and panics with the parse error.
#[cfg(test)]
pub(crate) fn parse_test_config(text: &str) -> Config {
    Config::parse(
        text,
        std::path::Path::new("t.toml"),
        std::path::Path::new("."),
    )
    .unwrap_or_else(|err| panic!("{err}"))
}

/// An account in the summary's top list.
#[derive(Debug, Serialize)]
pub struct TopAccount {
    pub name: String,
    pub score: f64,
    pub tier: String,
    pub reasons: Vec<String>,
    pub hint: Option<String>,
}

/// One level's figures in the demo summary.
#[derive(Debug, Serialize)]
pub struct LevelSummary {
    pub level: Level,
    pub examples: usize,
    pub holdout_rows: usize,
    pub holdout_auc: Option<f64>,
    /// AUC of the true probabilities on the same holdout rows: the best any model can do.
    pub oracle_auc: Option<f64>,
    /// The live model that scored the level. A retrained model that did not beat the live
    /// one on its holdout stays out of scoring, so this can differ from the model trained.
    pub model_version: String,
    pub scored: usize,
    /// Scored records with a hint.
    pub hints: usize,
    /// Leads flagged sales-ready (lead level only).
    pub sales_ready: Option<usize>,
    pub written: usize,
    pub failed: usize,
}

/// Summary the demo prints. The top-level figures are the account level's; `levels` has all.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// The CRM the sandbox imitated.
    pub crm: CrmKind,
    pub hospitals: usize,
    pub pulled: usize,
    pub examples: usize,
    pub holdout_rows: usize,
    pub holdout_auc: Option<f64>,
    pub oracle_auc: Option<f64>,
    pub holdout_log_loss: f64,
    pub baseline_log_loss: f64,
    /// The live model that scored the accounts.
    pub model_version: String,
    /// The account model trained in the first run, which the figures above describe. It
    /// differs from `model_version` when it did not beat the live model (the backtest's).
    pub trained_version: String,
    pub scored: usize,
    pub tiers: BTreeMap<String, usize>,
    pub top: Vec<TopAccount>,
    pub levels: Vec<LevelSummary>,
    /// Leads in the sandbox whose sales-ready checkbox is now set, read back from the sandbox.
    pub crm_sales_ready_leads: usize,
    pub written: usize,
    pub failed: usize,
    /// Accounts in the sandbox that now hold a score, read back from the sandbox itself.
    pub crm_records_with_scores: usize,
    pub rerun_pulled: usize,
    pub rerun_written: usize,
    /// The daemon jobs' results on the demo org: alerts, flags, lists and reports.
    pub actions: DemoActions,
    pub seconds: f64,
    /// The example files written by `--export-examples`, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<ExportedExamples>,
}

/// The daemon's work on the demo org: alerts, rep flags, territory lists and the
/// predicted-versus-actual report, with where each can be seen.
#[derive(Debug, Serialize)]
pub struct DemoActions {
    /// The folder holding the lists, reports and the copy of the alert tasks.
    pub out_dir: PathBuf,
    /// The date the backtest scored the accounts as of, [`BACKTEST_DAYS`] before the end of
    /// the history.
    pub backtest_as_of: chrono::DateTime<Utc>,
    /// Alerts of the first run: accounts that rose into the alert threshold since the backtest.
    pub alerts_sent: usize,
    /// Crossings held back by the per-rep daily cap.
    pub alerts_held_back: usize,
    /// Alerts sent to the fallback user, and alerts that could not be delivered.
    pub alerts_to_fallback: usize,
    pub alerts_failed: usize,
    /// Alerts of the second run, which re-scored the same accounts: none, since each crossing
    /// is alerted once.
    pub rerun_alerts_sent: usize,
    /// leadscore's alert tasks found in the sandbox at the end.
    pub alert_tasks_in_crm: usize,
    /// Flags the demo set on accounts as a rep would, and the flags the second pull stored.
    pub flags_set: usize,
    pub flags_pulled: usize,
    /// Territory lists written (one per rep, plus unassigned accounts).
    pub lists: usize,
    pub lists_index: PathBuf,
    /// Closed deals the outcomes report judged against the score their account had before.
    pub outcomes_judged: usize,
    /// ROC AUC of those scores against the outcomes.
    pub outcomes_auc: Option<f64>,
    pub outcomes_breaches: Vec<String>,
    pub outcomes_page: Option<PathBuf>,
    pub model_card: PathBuf,
}

/// Days before the end of the demo history that the backtest scores accounts as of, so that
/// the deals closed since can be compared with the scores given before.
pub const BACKTEST_DAYS: i64 = 180;

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
    out_dir: &Path,
) -> anyhow::Result<DemoSummary> {
    run_demo_on(CrmKind::Salesforce, hospitals, workdir, export_dir, out_dir).await
}

/// A running sandbox of either CRM.
enum RunningCrm {
    Salesforce(leadscore_sandbox::RunningSandbox),
    HubSpot(leadscore_sandbox::RunningHubSpot),
}

impl RunningCrm {
    async fn shutdown(self) {
        match self {
            RunningCrm::Salesforce(sandbox) => sandbox.shutdown().await,
            RunningCrm::HubSpot(sandbox) => sandbox.shutdown().await,
        }
    }
}

/// Runs the demo against the sandbox of `crm`; see [`run_demo`]. The territory lists, the
/// outcomes report, the model card and a copy of the alert tasks go into `out_dir`.
pub async fn run_demo_on(
    crm: CrmKind,
    hospitals: Option<usize>,
    workdir: &Path,
    export_dir: Option<&Path>,
    out_dir: &Path,
) -> anyhow::Result<DemoSummary> {
    let started = std::time::Instant::now();
    let mut org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: hospitals,
        ..DemoOptions::default()
    })
    .context("generating the demo org")?;
    let hospital_count = count_hospitals(&org);
    // The sandbox takes the records; the demo keeps only the true probabilities.
    let records = std::mem::take(&mut org.records);
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let store_path = workdir.join("store");
    let store_text = store_path.display().to_string();
    let (sandbox, text, secrets): (RunningCrm, String, Box<dyn Fn() -> ConnectorSecrets>) =
        match crm {
            CrmKind::Salesforce => {
                let options = SandboxOptions::default();
                let sandbox = Sandbox::new(records, options.clone())
                    .context("loading the demo org into the sandbox")?
                    .serve(loopback)
                    .await
                    .context("starting the Salesforce sandbox on 127.0.0.1")?;
                let text = sandbox_config(&sandbox.url(), &store_text);
                let secrets = move || {
                    ConnectorSecrets::Salesforce(Secrets {
                        client_secret: SecretString::from(options.client_secret.clone()),
                        refresh_token: SecretString::from(options.refresh_token.clone()),
                    })
                };
                (RunningCrm::Salesforce(sandbox), text, Box::new(secrets))
            }
            CrmKind::Hubspot => {
                let options = HubSpotOptions::default();
                let sandbox = HubSpotSandbox::new(records, options.clone())
                    .context("loading the demo org into the HubSpot sandbox")?
                    .serve(loopback)
                    .await
                    .context("starting the HubSpot sandbox on 127.0.0.1")?;
                let text = hubspot_sandbox_config(&sandbox.url(), &store_text);
                let token = options.private_app_token.clone();
                let secrets =
                    move || ConnectorSecrets::HubSpotToken(SecretString::from(token.clone()));
                (RunningCrm::HubSpot(sandbox), text, Box::new(secrets))
            }
        };

    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("creating the output folder {}", out_dir.display()))?;
    let out_dir = std::fs::canonicalize(out_dir)
        .with_context(|| format!("resolving the output folder {}", out_dir.display()))?;
    let text = with_actions(&text, &out_dir);
    let config_path = workdir.join("leadscore.toml");
    std::fs::write(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let store = Store::open(&config.store_path)?;

    let connector = connect(&config, secrets())?;
    // What `leadscore check --fix` does: a HubSpot portal gets the write-back properties.
    if crm == CrmKind::Hubspot {
        crate::setup::fix(&connector, &config).await?;
    }
    // The backtest: the accounts scored as of half a year before the end of the history, as
    // if leadscore had gone live then. It is the alerts' quiet first run, and the outcomes
    // report compares the deals closed since with these scores.
    let end = config.scoring.as_of.unwrap_or_else(Utc::now);
    let backtest_as_of = end - chrono::Duration::days(BACKTEST_DAYS);
    let mut backtest = config.clone();
    backtest.scoring.as_of = Some(backtest_as_of);
    let backtest_pull = pipeline::pull(&connector, &store, &config).await?;
    store.bind_source(&pipeline::source_name(&config))?;
    let accounts = store.at_level(Level::Account);
    training::train(&accounts, &backtest, backtest_as_of)?;
    scoring::score(&accounts, &backtest, backtest_as_of)?;
    alerts::run_alerts(&connector, &accounts, &backtest, backtest_as_of).await?;

    let first = run_once(&connector, &store, &config, Utc::now()).await?;
    // Exported before the second run, which pulls the accounts just written back.
    let exported = match export_dir {
        Some(dir) => Some(export_examples(
            &store,
            &config,
            &first.levels[0].train.holdout_ids,
            dir,
        )?),
        None => None,
    };
    // Reps flag three scores as they would on the record: the highest as too high, the
    // lowest as too low, the middle one as right. The second pull stores the flags.
    let flagged = flag_accounts(&sandbox, &accounts, &config)?;
    let rerun_connector = connect(&config, secrets())?;
    let second = run_once(&rerun_connector, &store, &config, Utc::now()).await?;
    let now = Utc::now();
    let lists = territory::write_lists(&accounts, &config, now)?;
    let outcome = outcomes::write_report(&accounts, &config, now)?;
    // The card of the account model trained after the flags were pulled, whose feedback
    // section counts them, whether or not it replaced the live model.
    let retrained = second
        .levels
        .iter()
        .find(|run| run.level == Level::Account)
        .map(|run| run.train.version.clone());
    let model = report::load_model(&accounts, retrained.as_deref())?;
    let card = report::write_model_card(&model, &out_dir.join("reports"))?;
    let alert_tasks = copy_alert_tasks(&sandbox, &out_dir.join("alert-tasks.csv"))?;

    // Read back from the CRM itself how many records hold a score, and the demo ids of the
    // CRM's records, to look up their true probabilities.
    let (crm_records_with_scores, crm_sales_ready_leads, to_demo) = match &sandbox {
        RunningCrm::Salesforce(sandbox) => {
            let handle = sandbox.handle();
            let scored = handle
                .records("Account")
                .iter()
                .filter(|r| {
                    r.get(&config.writeback.score_field)
                        .is_some_and(|v| !v.is_null())
                })
                .count();
            let ready = handle
                .records("Lead")
                .iter()
                .filter(|r| {
                    r.get(&config.lead.sales_ready_field)
                        .and_then(|v| v.as_bool())
                        == Some(true)
                })
                .count();
            (scored, ready, BTreeMap::new())
        }
        RunningCrm::HubSpot(sandbox) => {
            use leadscore_sandbox::hubspot::ObjectType;
            let handle = sandbox.handle();
            let with_value = |object: ObjectType, field: &str, value: Option<&str>| {
                handle
                    .ids(object)
                    .iter()
                    .filter(|id| {
                        handle
                            .properties(object, id)
                            .is_some_and(|p| match p.get(field) {
                                Some(v) if v.is_empty() => false,
                                Some(v) => value.is_none_or(|wanted| v == wanted),
                                None => false,
                            })
                    })
                    .count()
            };
            let scored = with_value(ObjectType::Companies, &config.writeback.score_field, None);
            let ready = with_value(
                ObjectType::Contacts,
                &config.lead.sales_ready_field,
                Some("true"),
            );
            // Several demo ids can map to one HubSpot id (a converted lead and the contact it
            // became); the lead's id is the one with a conversion probability.
            let mut to_demo: BTreeMap<String, String> = BTreeMap::new();
            for (demo, hubspot) in sandbox.id_map() {
                let keep = match to_demo.get(&hubspot) {
                    Some(existing) => !org.conversion_probability.contains_key(existing),
                    None => true,
                };
                if keep {
                    to_demo.insert(hubspot, demo);
                }
            }
            (scored, ready, to_demo)
        }
    };
    sandbox.shutdown().await;
    let demo_id =
        |id: &str| -> String { to_demo.get(id).cloned().unwrap_or_else(|| id.to_string()) };

    let oracle_of = |level: Level, id: &str| -> Option<f64> {
        match level {
            Level::Account => org.win_probability.get(&demo_id(id)).copied(),
            Level::Contact => id
                .split(':')
                .next()
                .and_then(|deal| org.win_probability.get(&demo_id(deal)).copied()),
            Level::Lead => org.conversion_probability.get(&demo_id(id)).copied(),
        }
    };
    let levels: Vec<LevelSummary> = first
        .levels
        .iter()
        .map(|run| {
            let train = &run.train;
            let oracle: Option<Vec<f64>> = train
                .holdout_ids
                .iter()
                .map(|id| oracle_of(run.level, id))
                .collect();
            LevelSummary {
                level: run.level,
                examples: train.examples,
                holdout_rows: train.holdout_rows,
                holdout_auc: train.holdout_auc,
                oracle_auc: oracle.and_then(|p| metrics::roc_auc(&train.holdout_labels, &p)),
                model_version: run.score.model_version.clone(),
                scored: run.score.scored,
                hints: run.score.hints,
                sales_ready: run.score.sales_ready,
                written: run.push.written,
                failed: run.push.failed.len(),
            }
        })
        .collect();
    let account = first
        .levels
        .iter()
        .find(|run| run.level == Level::Account)
        .context("the demo configuration scores no accounts")?;
    let train = &account.train;
    Ok(DemoSummary {
        crm,
        hospitals: hospital_count,
        pulled: backtest_pull.pulled + first.pull.pulled,
        examples: train.examples,
        holdout_rows: train.holdout_rows,
        holdout_auc: train.holdout_auc,
        oracle_auc: levels
            .iter()
            .find(|l| l.level == Level::Account)
            .and_then(|l| l.oracle_auc),
        holdout_log_loss: train.holdout_log_loss,
        baseline_log_loss: train.baseline_log_loss,
        model_version: account.score.model_version.clone(),
        trained_version: train.version.clone(),
        scored: account.score.scored,
        tiers: account.score.tiers.clone(),
        top: account
            .score
            .top
            .iter()
            .map(|row| TopAccount {
                name: row.name.clone(),
                score: row.score,
                tier: row.tier.clone(),
                reasons: row.reasons.clone(),
                hint: row.hint.as_ref().map(|h| h.text.clone()),
            })
            .collect(),
        written: first.levels.iter().map(|l| l.push.written).sum(),
        failed: first.levels.iter().map(|l| l.push.failed.len()).sum(),
        levels,
        crm_sales_ready_leads,
        crm_records_with_scores,
        rerun_pulled: second.pull.pulled,
        rerun_written: second.levels.iter().map(|l| l.push.written).sum(),
        actions: DemoActions {
            out_dir: out_dir.clone(),
            backtest_as_of,
            alerts_sent: account.alerts.sent,
            alerts_held_back: account.alerts.held_back,
            alerts_to_fallback: account.alerts.to_fallback,
            alerts_failed: account.alerts.failed.len(),
            rerun_alerts_sent: second.levels.iter().map(|l| l.alerts.sent).sum(),
            alert_tasks_in_crm: alert_tasks,
            flags_set: flagged,
            flags_pulled: second.pull.feedback.recorded,
            lists: lists.reps,
            lists_index: lists.index.clone(),
            outcomes_judged: outcome.closed_outcomes,
            outcomes_auc: outcome
                .auc_by_quarter
                .iter()
                .find(|q| q.quarter == "all")
                .and_then(|q| q.auc),
            outcomes_breaches: outcome.breaches.clone(),
            outcomes_page: outcome
                .files
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "html"))
                .cloned(),
            model_card: card.html.clone(),
        },
        seconds: started.elapsed().as_secs_f64(),
        exported,
    })
}

/// Turns on the daemon's actions in a sandbox configuration: alerts when an account reaches
/// tier A's score, and the lists and reports written under `out_dir`.
fn with_actions(text: &str, out_dir: &Path) -> String {
    let Some(start) = text.find("\n[alerts]\n") else {
        return text.to_string();
    };
    let (head, alerts) = text.split_at(start);
    let alerts = alerts
        .replacen("\nenabled = false\n", "\nenabled = true\n", 1)
        .replacen("\nthreshold = 80\n", "\nthreshold = 70\n", 1);
    let folder = |name: &str| format!("folder = {:?}", out_dir.join(name).display().to_string());
    format!("{head}{alerts}")
        .replacen("folder = \"lists\"", &folder("lists"), 1)
        .replacen("folder = \"reports\"", &folder("reports"), 1)
}

/// Sets the feedback flag on three scored accounts in the sandbox, as reps editing the records
/// would: the highest score "Too high", the lowest "Too low", the middle one "Right". Returns
/// how many were set.
fn flag_accounts(sandbox: &RunningCrm, accounts: &Store, config: &Config) -> anyhow::Result<usize> {
    let mut scores = accounts.scores()?;
    if scores.len() < 3 {
        return Ok(0);
    }
    scores.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    let picks = [
        (&scores[0], "Too high"),
        (&scores[scores.len() - 1], "Too low"),
        (&scores[scores.len() / 2], "Right"),
    ];
    let fields = crate::feedback::FeedbackFields::of(config);
    let comment = "set by the demo, as a rep would";
    for (row, value) in picks {
        match sandbox {
            RunningCrm::Salesforce(sandbox) => {
                let mut update = leadscore_sandbox::RecordMap::new();
                update.insert(fields.flag.clone(), serde_json::json!(value));
                update.insert(fields.comment.clone(), serde_json::json!(comment));
                sandbox
                    .handle()
                    .update_record("Account", &row.id, update)
                    .with_context(|| format!("flagging account {} in the sandbox", row.id))?;
            }
            RunningCrm::HubSpot(sandbox) => {
                use leadscore_sandbox::hubspot::ObjectType;
                let handle = sandbox.handle();
                for (name, text) in [(&fields.flag, value), (&fields.comment, comment)] {
                    handle
                        .set_property(ObjectType::Companies, &row.id, name, text)
                        .with_context(|| format!("flagging company {} in the sandbox", row.id))?;
                }
            }
        }
    }
    Ok(picks.len())
}

/// Copies leadscore's alert tasks from the sandbox into a CSV file (id, record, owner,
/// subject), since the sandbox ends with the demo. Returns how many there were.
fn copy_alert_tasks(sandbox: &RunningCrm, path: &Path) -> anyhow::Result<usize> {
    let text = |value: Option<&serde_json::Value>| -> String {
        match value {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    let mut rows: Vec<[String; 4]> = Vec::new();
    match sandbox {
        RunningCrm::Salesforce(sandbox) => {
            for task in sandbox.handle().records("Task") {
                let subject = text(task.get("Subject"));
                if subject.starts_with(alerts::TASK_SUBJECT_PREFIX) {
                    let record = match text(task.get("WhatId")) {
                        what if what.is_empty() => text(task.get("WhoId")),
                        what => what,
                    };
                    rows.push([
                        text(task.get("Id")),
                        record,
                        text(task.get("OwnerId")),
                        subject,
                    ]);
                }
            }
        }
        RunningCrm::HubSpot(sandbox) => {
            use leadscore_sandbox::hubspot::ObjectType;
            let handle = sandbox.handle();
            for id in handle.ids(ObjectType::Tasks) {
                let Some(properties) = handle.properties(ObjectType::Tasks, &id) else {
                    continue;
                };
                let subject = properties
                    .get("hs_task_subject")
                    .cloned()
                    .unwrap_or_default();
                if subject.starts_with(alerts::TASK_SUBJECT_PREFIX) {
                    let owner = properties
                        .get("hubspot_owner_id")
                        .cloned()
                        .unwrap_or_default();
                    rows.push([id.clone(), String::new(), owner, subject]);
                }
            }
        }
    }
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    writer.write_record(["task_id", "record_id", "owner_id", "subject"])?;
    for row in &rows {
        writer.write_record(row)?;
    }
    writer.flush()?;
    Ok(rows.len())
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
    let loaded = training::load(store, config)?;
    let history = &loaded.history;
    let examples = levels::examples(Level::Account, history, config, Utc::now());
    anyhow::ensure!(
        !examples.is_empty(),
        "the store has no closed deals to export; the demo's first run pulled none"
    );
    let holdout_count = ((examples.len() as f64) * config.model.holdout_fraction)
        .round()
        .max(1.0) as usize;
    let before_holdout = examples.len().saturating_sub(holdout_count);
    // The holdout rows come out in time order, as the training report lists them.
    anyhow::ensure!(
        examples[before_holdout..]
            .iter()
            .map(|e| e.id.as_str())
            .eq(expected_holdout_ids.iter().map(String::as_str)),
        "the exported holdout ({} deals) differs from the training run's holdout ({} deals): \
         the export no longer splits as training does; align export_examples in src/demo.rs \
         with training::train",
        examples.len() - before_holdout,
        expected_holdout_ids.len()
    );

    let training_targets: Vec<_> = examples[..before_holdout]
        .iter()
        .map(levels::Example::target)
        .collect();
    let space = FeatureSpace::fit(&loaded.features, Level::Account, history, &training_targets);
    check_against_live_model(store, &space)?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let train_path = dir.join("train.csv");
    let holdout_path = dir.join("holdout.csv");
    write_examples(&train_path, &space, history, &examples[..before_holdout])?;
    write_examples(&holdout_path, &space, history, &examples[before_holdout..])?;
    Ok(ExportedExamples {
        train_path,
        train_rows: before_holdout,
        holdout_path,
        holdout_rows: examples.len() - before_holdout,
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
    examples: &[levels::Example],
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
    for example in examples {
        let close_date = example
            .decided
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut record = vec![example.id.clone(), close_date, format!("{}", example.label)];
        // Rows are built at the deal's creation time, as training builds them.
        for value in space.row(history, example.target(), example.at) {
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
    let (crm, accounts) = match summary.crm {
        CrmKind::Salesforce => ("Salesforce", "accounts"),
        CrmKind::Hubspot => ("HubSpot", "companies"),
    };
    out.push_str(&format!(
        "Pulled {} records for {} real hospitals from the {crm} sandbox.\n",
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
    if summary.trained_version != summary.model_version {
        out.push_str(&format!(
            "That model ({}) stayed a candidate: on the same holdout it did not beat the live model from the backtest, which kept scoring.\n",
            summary.trained_version
        ));
    }
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
        if let Some(hint) = &account.hint {
            out.push_str(&format!("    next: {hint}\n"));
        }
    }
    out.push_str("\nLevels (holdout AUC beside the oracle's, the best any model can reach):\n");
    for level in &summary.levels {
        let ready = level
            .sales_ready
            .map(|n| format!(", {n} sales-ready"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<8} {:>6} examples, AUC {} (oracle {}) on {}; scored {}, {} with a hint{ready}; wrote {}\n",
            level.level.name(),
            level.examples,
            auc(level.holdout_auc),
            auc(level.oracle_auc),
            level.holdout_rows,
            level.scored,
            level.hints,
            level.written
        ));
    }
    out.push_str(&format!(
        "\nWrote {} records ({} rejected); {} {crm} sandbox {accounts} now hold a score and {} leads are flagged sales-ready.\n",
        summary.written, summary.failed, summary.crm_records_with_scores, summary.crm_sales_ready_leads
    ));
    out.push_str(&format!(
        "Second run: pulled {} records (the accounts just written, read back), wrote {}. Finished in {:.1} s.\n",
        summary.rerun_pulled, summary.rerun_written, summary.seconds
    ));
    out.push_str(&render_actions(&summary.actions));
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

/// Renders what the daemon's jobs did and where to look.
fn render_actions(actions: &DemoActions) -> String {
    let mut out = String::new();
    let day = actions.backtest_as_of.format("%Y-%m-%d");
    out.push_str(&format!(
        "\nAs the daemon would act (accounts were first scored as of {day}, a backtest):\n"
    ));
    out.push_str(&format!(
        "  Alerts: {} accounts rose to the alert threshold since {day}; {} tasks sent to their owners ({} to the fallback user, {} held back by the daily cap, {} failed). The second run sent {}.\n",
        actions.alerts_sent + actions.alerts_held_back,
        actions.alerts_sent,
        actions.alerts_to_fallback,
        actions.alerts_held_back,
        actions.alerts_failed,
        actions.rerun_alerts_sent
    ));
    out.push_str(&format!(
        "    {} leadscore tasks are in the sandbox; copied to {}\n",
        actions.alert_tasks_in_crm,
        actions.out_dir.join("alert-tasks.csv").display()
    ));

    out.push_str(&format!(
        "  Feedback: {} accounts flagged as a rep would; the second pull stored {} flags (see the model card).\n",
        actions.flags_set, actions.flags_pulled
    ));
    out.push_str(&format!(
        "  Territory lists: {} lists, index at {}\n",
        actions.lists,
        actions.lists_index.display()
    ));

    let auc = actions
        .outcomes_auc
        .map_or("n/a".to_string(), |a| format!("{a:.3}"));
    out.push_str(&format!(
        "  Predicted against actual: {} deals closed since {day}, AUC of the scores given before them {auc}",
        actions.outcomes_judged
    ));
    match &actions.outcomes_page {
        Some(page) => out.push_str(&format!("; report at {}\n", page.display())),
        None => out.push('\n'),
    }
    for breach in &actions.outcomes_breaches {
        out.push_str(&format!("    past a limit: {breach}\n"));
    }

    out.push_str(&format!(
        "  Model card of the account model trained after the flags: {}\n",
        actions.model_card.display()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(crm: CrmKind) -> DemoSummary {
        DemoSummary {
            crm,
            hospitals: 3,
            pulled: 40,
            examples: 12,
            holdout_rows: 4,
            holdout_auc: Some(0.75),
            oracle_auc: None,
            holdout_log_loss: 0.5,
            baseline_log_loss: 0.7,
            model_version: "m1".to_string(),
            trained_version: "m1".to_string(),
            scored: 3,
            tiers: BTreeMap::new(),
            top: Vec::new(),
            levels: Vec::new(),
            crm_sales_ready_leads: 1,
            written: 3,
            failed: 0,
            crm_records_with_scores: 3,
            rerun_pulled: 3,
            rerun_written: 0,
            actions: DemoActions {
                out_dir: PathBuf::from("out"),
                backtest_as_of: Utc::now(),
                alerts_sent: 0,
                alerts_held_back: 0,
                alerts_to_fallback: 0,
                alerts_failed: 0,
                rerun_alerts_sent: 0,
                alert_tasks_in_crm: 0,
                flags_set: 0,
                flags_pulled: 0,
                lists: 0,
                lists_index: PathBuf::from("out/lists.csv"),
                outcomes_judged: 0,
                outcomes_auc: None,
                outcomes_breaches: Vec::new(),
                outcomes_page: None,
                model_card: PathBuf::from("out/card.md"),
            },
            seconds: 1.0,
            exported: None,
        }
    }

    #[test]
    fn summary_names_the_crm_object_that_holds_scores() {
        let salesforce = render(&summary(CrmKind::Salesforce));
        assert!(
            salesforce.contains("3 Salesforce sandbox accounts now hold a score"),
            "{salesforce}"
        );
        assert!(!salesforce.contains("compan"), "{salesforce}");
        let hubspot = render(&summary(CrmKind::Hubspot));
        assert!(
            hubspot.contains("3 HubSpot sandbox companies now hold a score"),
            "{hubspot}"
        );
    }
}
