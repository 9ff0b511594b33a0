//! Exactly-once write-back under SIGKILL: the real binary pushes scores to an in-process
//! Salesforce sandbox and is killed at random moments, then restarted, at least 20 times.
//! Afterwards every score is in the CRM, each record was written with its final values by
//! exactly one successful request, and the write journal is empty.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::Env;
use leadscore::store::{ScoreRow, Store};
use leadscore_sandbox::SandboxOptions;
use rand::{Rng, SeedableRng};

/// Kills that must land while a push is still running.
const KILLS: usize = 20;
/// Accounts scored; with batches of two this takes many more requests than 20 kills allow.
const RECORDS: usize = 240;

fn spawn_push(env: &Env) -> Child {
    let options = env.sandbox.options();
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["push", "--config"])
        .arg(&env.config_path)
        .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
        .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts")
}

fn prepare_scores(store: &Store) -> Vec<ScoreRow> {
    let at = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc);
    let rows: Vec<ScoreRow> = store
        .records("Account")
        .expect("accounts")
        .iter()
        .take(RECORDS)
        .enumerate()
        .map(|(index, record)| ScoreRow {
            object: "Account".into(),
            id: record.id.clone(),
            name: String::new(),
            owner_id: None,
            probability: 0.5,
            score: (index % 100) as f64 + 0.5,
            tier: ["A", "B", "C", "D"][index % 4].into(),
            reasons: vec![format!("+ reason {index}")],
            hint: None,
            sales_ready: None,
            model_version: "crash-model-1".into(),
            scored_at: at,
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect();
    assert_eq!(rows.len(), RECORDS, "the demo org has too few accounts");
    store.replace_scores(&rows).expect("scores stored");
    rows
}

/// Counts the collection updates the sandbox has completed.
fn updates_completed(env: &Env) -> usize {
    env.handle()
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/composite/sobjects"))
        .count()
}

/// Counts the scored accounts whose values are in the CRM.
fn written_in_crm(env: &Env, rows: &[ScoreRow]) -> usize {
    let handle = env.handle();
    rows.iter()
        .filter(|row| {
            handle
                .record("Account", &row.id)
                .is_some_and(|r| r["LS_Model_Version__c"].as_str() == Some("crash-model-1"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pushes_write_each_record_once() {
    let started = Instant::now();
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("batch_size = 200", "batch_size = 2")
    })
    .await;
    let rows = {
        let store = env.store();
        leadscore::pipeline::pull(&env.connector(), &store, &env.config)
            .await
            .expect("pull");
        prepare_scores(&store)
    };
    // Slow every collection update, so that kills land while requests are in flight too.
    let response = reqwest::Client::new()
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&serde_json::json!({
            "method": "PATCH",
            "path": "/services/data/v59.0/composite/sobjects",
            "count": 1_000_000,
            "delay_ms": 40,
        }))
        .send()
        .await
        .expect("fault added");
    assert!(response.status().is_success(), "{}", response.status());

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261204);
    let mut kills = 0;
    let mut runs = 0;
    // Kills that left a journalled batch unsettled, for the next run to reconcile.
    let mut unsettled = 0;
    tokio::task::block_in_place(|| {
        while kills < KILLS {
            runs += 1;
            assert!(runs < 200, "only {kills} kills landed in {runs} runs");
            // Waits until one to three of the push's batches have completed, however slow the
            // machine is, then kills it a random moment later: while it settles a batch,
            // journals the next one or waits for its response.
            let target = updates_completed(&env) + rng.gen_range(1..=3);
            let mut child = spawn_push(&env);
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().expect("child status").is_none()
                && updates_completed(&env) < target
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
            let running = child.try_wait().expect("child status").is_none();
            // `kill` sends SIGKILL on Unix.
            child.kill().ok();
            child.wait().expect("child reaped");
            // A kill counts when it stopped a push that still had records to write.
            if running && written_in_crm(&env, &rows) < RECORDS {
                kills += 1;
            }
            let store = Store::open(&env.config.store_path).expect("store reopens after a kill");
            if !store.journal().expect("journal").is_empty() {
                unsettled += 1;
            }
        }
        let status = spawn_push(&env).wait().expect("final push");
        assert!(status.success(), "the final push failed: {status}");
    });
    eprintln!(
        "{runs} runs, {kills} killed with records left to write, {unsettled} left a batch unsettled"
    );
    assert!(
        unsettled > 0,
        "no kill landed between journalling and settling a batch"
    );

    let mut sent: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for request in env.handle().request_log() {
        if request.method != "PATCH"
            || !request.path.ends_with("/composite/sobjects")
            || request.status != 200
        {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
        for record in body["records"].as_array().expect("records") {
            let id = record["id"].as_str().expect("id").to_string();
            sent.entry(id).or_default().push(record.clone());
        }
    }
    for row in &rows {
        let record = env.handle().record("Account", &row.id).expect("account");
        assert_eq!(
            record["LS_Score__c"].as_f64(),
            Some(row.score),
            "{}",
            row.id
        );
        assert_eq!(record["LS_Tier__c"].as_str(), Some(row.tier.as_str()));
        assert_eq!(
            record["LS_Model_Version__c"].as_str(),
            Some("crash-model-1")
        );
        let writes = sent.get(&row.id).map_or(0, Vec::len);
        assert_eq!(writes, 1, "{} was written {writes} times", row.id);
        assert_eq!(sent[&row.id][0]["LS_Score__c"].as_f64(), Some(row.score));
    }
    let store = env.store();
    assert!(store.journal().expect("journal").is_empty());
    assert_eq!(store.written().expect("written").len(), RECORDS);
    eprintln!("took {:?}", started.elapsed());
}
