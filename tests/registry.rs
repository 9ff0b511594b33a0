//! Tests of the model registry against the Salesforce sandbox over real HTTP, with a real redb
//! store: the promotion gate, shadow scoring, rollback reaching the CRM, and the `models`
//! subcommand of the binary.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Utc;
use common::Env;
use leadscore::config::Config;
use leadscore::registry::{self, Candidate, ModelStatus, PublishOutcome};
use leadscore::store::{Store, StoredModel};
use leadscore::{pipeline, scoring, training, writeback};
use leadscore_sandbox::SandboxOptions;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// Runs the binary off the async runtime's worker threads, so the in-process sandbox keeps
/// serving requests while the child process runs.
async fn leadscore(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join")
}

fn models_args(config: &Path, words: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = std::iter::once("models")
        .chain(words.iter().copied())
        .map(str::to_string)
        .collect();
    args.push("-c".into());
    args.push(config.display().to_string());
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pulls the sandbox org and trains the first model, which goes live.
async fn pull_and_train(env: &Env, store: &Store) -> StoredModel {
    pipeline::pull(&env.connector(), store, &env.config)
        .await
        .expect("pull");
    training::train(store, &env.config, Utc::now()).expect("train");
    store
        .current_model()
        .expect("read live model")
        .expect("the first model is live")
}

/// A candidate that reuses `base`'s model under another version, with planted AUCs.
fn planted(
    base: &StoredModel,
    version: &str,
    auc: Option<f64>,
    live_auc: Option<f64>,
    config: &Config,
) -> Candidate {
    let mut stored = base.clone();
    stored.version = version.to_string();
    stored.trained_at = Utc::now();
    Candidate {
        stored,
        holdout_auc: auc,
        live_holdout_auc: live_auc,
        holdout_ids: vec!["006A".into(), "006B".into()],
        config_hash: "planted".into(),
        window: (None, None),
        feature_names: vec!["roles_engaged".into()],
        config: Some(config.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_gate_keeps_worse_candidate() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let live = pull_and_train(&env, &store).await;

    let worse = planted(
        &live,
        "gbm-planted-worse",
        Some(0.70),
        Some(0.75),
        &env.config,
    );
    let outcome = registry::publish(&store, &worse, 0.01, None).expect("publish");
    let PublishOutcome::KeptAsCandidate {
        version,
        live_version,
        reason,
    } = outcome
    else {
        panic!("a worse candidate must not go live: {outcome:?}");
    };
    assert_eq!(version, "gbm-planted-worse");
    assert_eq!(live_version, live.version);
    assert!(reason.contains("0.7000"), "{reason}");
    assert!(reason.contains("0.7500"), "{reason}");
    assert_eq!(
        store.live_version().expect("live"),
        Some(live.version.clone())
    );
    let kept_entry = store
        .model_entry("gbm-planted-worse")
        .expect("entry")
        .expect("the kept candidate is stored");
    assert!(
        kept_entry.decision.contains("kept as candidate"),
        "{kept_entry:?}"
    );
    assert_eq!(kept_entry.holdout_ids.len(), 2);

    // No AUC on the candidate's side never replaces a live model.
    let one_class = planted(
        &live,
        "gbm-planted-one-class",
        None,
        Some(0.75),
        &env.config,
    );
    let outcome = registry::publish(&store, &one_class, 0.01, None).expect("publish");
    assert!(
        matches!(&outcome, PublishOutcome::KeptAsCandidate { reason, .. } if reason.contains("only won or only lost")),
        "{outcome:?}"
    );

    // Within the margin the candidate goes live, after shadow scoring. It reuses the live
    // model's trees, so no account changes tier.
    let close = planted(
        &live,
        "gbm-planted-close",
        Some(0.745),
        Some(0.75),
        &env.config,
    );
    let outcome = registry::publish(&store, &close, 0.01, None).expect("publish");
    let PublishOutcome::Promoted {
        version,
        previous,
        shadow,
    } = outcome
    else {
        panic!("a candidate within the margin goes live: {outcome:?}");
    };
    assert_eq!(version, "gbm-planted-close");
    assert_eq!(previous.as_deref(), Some(live.version.as_str()));
    let shadow = shadow.expect("shadow report");
    let scored = scoring::score(&store, &env.config, Utc::now()).expect("score");
    assert_eq!(shadow.accounts, scored.scored);
    assert_eq!(shadow.tier_changes, 0, "{shadow:?}");
    assert_eq!(shadow.new_top_tier, 0, "{shadow:?}");

    // Publishing the live version again changes nothing.
    let outcome = registry::publish(&store, &close, 0.01, None).expect("publish");
    assert_eq!(
        outcome,
        PublishOutcome::AlreadyLive {
            version: "gbm-planted-close".into()
        }
    );

    let statuses: BTreeMap<String, ModelStatus> = registry::list(&store)
        .expect("list")
        .into_iter()
        .map(|model| (model.version, model.status))
        .collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert_eq!(statuses[&live.version], ModelStatus::Retired);
    assert_eq!(statuses["gbm-planted-worse"], ModelStatus::Candidate);
    assert_eq!(statuses["gbm-planted-close"], ModelStatus::Live);
}

/// The CRM's score, tier and model version per scored account.
fn crm_scores(env: &Env, store: &Store) -> BTreeMap<String, (f64, String, String)> {
    store
        .scores()
        .expect("scores")
        .into_iter()
        .map(|row| {
            let record = env.handle().record("Account", &row.id).expect("account");
            let value = (
                record["LS_Score__c"].as_f64().unwrap_or(f64::NAN),
                record["LS_Tier__c"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                record["LS_Model_Version__c"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (row.id, value)
        })
        .collect()
}

async fn score_and_push(env: &Env, store: &Store) -> writeback::PushReport {
    scoring::score(store, &env.config, Utc::now()).expect("score");
    let connector = env.connector();
    let check = pipeline::check(&connector, &env.config)
        .await
        .expect("check");
    let push = writeback::push(
        &connector,
        store,
        &env.config,
        &check.reasons_max_len,
        Utc::now(),
    )
    .await
    .expect("push");
    assert!(push.failed.is_empty(), "{push:?}");
    push
}

/// Writes a copy of the test config with a one-tree, depth-one model.
fn weak_config(env: &Env) -> Config {
    let text = std::fs::read_to_string(&env.config_path).expect("config");
    assert!(text.contains("trees = 100"), "{text}");
    assert!(text.contains("max_depth = 5"), "{text}");
    let weak = text
        .replace("trees = 100", "trees = 1")
        .replace("max_depth = 5", "max_depth = 1");
    let path: PathBuf = env.dir.path().join("weak.toml");
    std::fs::write(&path, weak).expect("write");
    Config::load(&path).unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_previous_scores() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let good = pull_and_train(&env, &store).await;
    let first = score_and_push(&env, &store).await;
    assert!(first.written > 0, "{first:?}");
    let good_scores = store.scores().expect("scores");
    let good_crm = crm_scores(&env, &store);
    assert!(good_crm.values().all(|(_, _, v)| *v == good.version));

    // A one-tree model, made live by hand if the gate kept it as a candidate.
    let weak = weak_config(&env);
    training::train(&store, &weak, Utc::now()).expect("train weak model");
    let weak_version = registry::list(&store)
        .expect("list")
        .into_iter()
        .map(|model| model.version)
        .find(|version| *version != good.version)
        .expect("the weak model is stored under its own version");
    if store.live_version().expect("live").as_deref() != Some(weak_version.as_str()) {
        let change =
            registry::promote(&store, &env.config, &weak_version, Utc::now()).expect("promote");
        assert!(change.changed);
        let shadow = change.shadow.expect("shadow report");
        assert_eq!(shadow.live_version, good.version);

        // The shadow report predicts exactly what the next score does.
        scoring::score(&store, &env.config, Utc::now()).expect("score");
        let before: BTreeMap<&str, &str> = good_scores
            .iter()
            .map(|row| (row.id.as_str(), row.tier.as_str()))
            .collect();
        let after = store.scores().expect("scores");
        let changed = after
            .iter()
            .filter(|row| before.get(row.id.as_str()) != Some(&row.tier.as_str()))
            .count();
        let top = &env.config.tiers.labels[0];
        let entered = after
            .iter()
            .filter(|row| row.tier == *top && before.get(row.id.as_str()) != Some(&top.as_str()))
            .count();
        assert_eq!(shadow.accounts, after.len());
        assert_eq!(shadow.tier_changes, changed, "{shadow:?}");
        assert_eq!(shadow.new_top_tier, entered, "{shadow:?}");
    }
    let weak_push = score_and_push(&env, &store).await;
    assert!(weak_push.written > 0, "{weak_push:?}");
    let weak_crm = crm_scores(&env, &store);
    assert!(weak_crm.values().all(|(_, _, v)| *v == weak_version));
    assert_ne!(weak_crm, good_crm);

    // One command through the binary, which needs the store to itself.
    drop(store);
    let output = leadscore(models_args(&env.config_path, &["rollback"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&good.version), "{stdout}");
    assert!(stdout.contains("rollback"), "{stdout}");

    let store = env.store();
    assert_eq!(
        store.live_version().expect("live"),
        Some(good.version.clone())
    );
    let back = score_and_push(&env, &store).await;
    assert_eq!(back.written, good_crm.len(), "{back:?}");
    assert_eq!(crm_scores(&env, &store), good_crm);

    // Publishing the rolled-back version again, even with a better AUC, does not undo the
    // rollback: only a promotion by hand does.
    let weak_model = store
        .model(&weak_version)
        .expect("read")
        .expect("the weak model stays stored");
    let mut again = planted(
        &weak_model,
        &weak_version,
        Some(0.9),
        Some(0.7),
        &env.config,
    );
    again.stored = weak_model;
    let outcome = registry::publish(&store, &again, 0.01, None).expect("publish");
    assert!(
        matches!(&outcome, PublishOutcome::KeptAsCandidate { reason, .. } if reason.contains("replaced by hand")),
        "{outcome:?}"
    );
    assert_eq!(store.live_version().expect("live"), Some(good.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_commands_through_binary() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let live = pull_and_train(&env, &store).await;
    let worse = planted(
        &live,
        "gbm-planted-worse",
        Some(0.5),
        Some(0.8),
        &env.config,
    );
    registry::publish(&store, &worse, 0.01, None).expect("publish");
    drop(store);

    let output = leadscore(models_args(&env.config_path, &["list", "--json"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON list");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let status_of = |version: &str| {
        listed
            .iter()
            .find(|m| m["version"] == version)
            .map(|m| m["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status_of(&live.version).as_deref(), Some("live"));
    assert_eq!(status_of("gbm-planted-worse").as_deref(), Some("candidate"));

    let output = leadscore(models_args(&env.config_path, &["list"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let planted_line = table
        .lines()
        .find(|line| line.starts_with("gbm-planted-worse"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(planted_line.contains("0.5000"), "{planted_line}");
    assert!(planted_line.ends_with("candidate"), "{planted_line}");

    let output = leadscore(models_args(
        &env.config_path,
        &["show", "gbm-planted-worse", "--json"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let details_json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON details");
    assert_eq!(details_json["version"], "gbm-planted-worse");
    assert_eq!(details_json["status"], "candidate");
    assert_eq!(details_json["holdout_auc"], 0.5);
    assert_eq!(
        details_json["live_version_at_publish"],
        live.version.as_str()
    );
    assert_eq!(details_json["config_hash"], "planted");
    assert!(details_json["report"].is_object(), "{details_json}");

    let output = leadscore(models_args(&env.config_path, &["show", &live.version])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let details = text(&output.stdout);
    assert!(details.contains("(live)"), "{details}");

    let output = leadscore(models_args(&env.config_path, &["promote", "gbm-missing"])).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("\"gbm-missing\" is not in the store"),
        "{stderr}"
    );
    assert!(stderr.contains(&live.version), "{stderr}");

    // With one live model and no earlier one, a bare rollback has nowhere to go.
    let output = leadscore(models_args(&env.config_path, &["rollback"])).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no earlier live model"), "{stderr}");

    let output = leadscore(models_args(
        &env.config_path,
        &["promote", "gbm-planted-worse"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Shadow scoring"), "{stdout}");
    assert!(
        stdout.contains("0 of"),
        "same trees, no tier changes: {stdout}"
    );
    let store = env.store();
    assert_eq!(
        store.live_version().expect("live").as_deref(),
        Some("gbm-planted-worse")
    );
}
