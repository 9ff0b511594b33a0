//! Threshold alerts against the sandboxes over HTTP with a real store. The tests cover one task
//! per crossing (also after a store reopen and a re-score), the hysteresis band, the quiet
//! first run, the per-user daily cap, the fallback user, and a pending alert reconciled after
//! a lost response. They also cover HubSpot tasks and the signed webhook against a loopback
//! receiver, with a refused post queued in the store until the next pass.
//!
//! Scores are set by writing score rows into the store, so each test controls exactly which
//! records cross; owners and users come from a real pull.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use leadscore::alerts::{run_alerts, AlertReport, TASK_SUBJECT_PREFIX};
use leadscore::config::{Config, ConnectorSecrets};
use leadscore::demo::hubspot_sandbox_config;
use leadscore::run::{connect, AnyConnector};
use leadscore::store::{AlertStatus, ScoreRow, Store};
use leadscore::webhook::{self, Webhook, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use leadscore_connector::{Connector, Record, TaskLookup};
use leadscore_demo_org::DemoOptions;
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::{json, Value as Json};

use common::Env;

const ALERTS: &str = r#"
[alerts]
enabled = true
threshold = 80
band = 10
"#;

/// Returns a time `day` days and `hour` hours after midnight UTC 30 days ago. Test passes
/// run in the past, so that tasks the sandbox stamps with the real clock are never older
/// than the pass that created them.
fn at(day: i64, hour: i64) -> DateTime<Utc> {
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    midnight - Duration::days(30) + Duration::days(day) + Duration::hours(hour)
}

fn day_text(day: i64) -> String {
    at(day, 0).date_naive().to_string()
}

async fn start(alerts: &str) -> Env {
    let alerts = alerts.to_string();
    Env::start_with(SandboxOptions::default(), move |text| {
        strip_tables(&text) + &alerts
    })
    .await
}

/// Pulls the org and returns the store with the accounts whose owner is an active user,
/// grouped by owner, largest group first.
async fn pulled(env: &Env) -> (Store, Vec<(String, Vec<Record>)>) {
    let store = env.store();
    leadscore::pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    (store.clone(), accounts_by_active_owner(&store))
}

fn accounts_by_active_owner(store: &Store) -> Vec<(String, Vec<Record>)> {
    let active: Vec<String> = store
        .records("User")
        .expect("users")
        .into_iter()
        .filter(|user| user.get("IsActive").as_bool() == Some(true))
        .map(|user| user.id)
        .collect();
    let mut groups: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for account in store.records("Account").expect("accounts") {
        if let Some(owner) = account.get("OwnerId").as_str() {
            if active.iter().any(|id| id == owner) {
                groups.entry(owner.to_string()).or_default().push(account);
            }
        }
    }
    let mut groups: Vec<(String, Vec<Record>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, accounts)| std::cmp::Reverse(accounts.len()));
    groups
}

/// Replaces the level's scores with these (account, score) pairs.
fn set_scores(store: &Store, config: &Config, scores: &[(&Record, f64)], now: DateTime<Utc>) {
    let rows: Vec<ScoreRow> = scores
        .iter()
        .map(|(account, score)| ScoreRow {
            object: "Account".to_string(),
            id: account.id.clone(),
            name: account.get("Name").as_str().unwrap_or("").to_string(),
            owner_id: account.get("OwnerId").as_str().map(str::to_string),
            probability: score / 100.0,
            score: *score,
            tier: config.tiers.tier_for(*score).to_string(),
            reasons: vec![
                "3 meetings in the last 30 days".to_string(),
                "410 staffed beds".to_string(),
            ],
            hint: None,
            sales_ready: None,
            model_version: "test-model".to_string(),
            scored_at: now,
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect();
    store.replace_scores(&rows).expect("scores stored");
}

async fn alert(env: &Env, store: &Store, now: DateTime<Utc>) -> AlertReport {
    run_alerts(&env.connector(), store, &env.config, now)
        .await
        .expect("alert pass")
}

/// Returns the sandbox's tasks that leadscore created.
fn alert_tasks(env: &Env) -> Vec<serde_json::Map<String, Json>> {
    env.handle()
        .records("Task")
        .into_iter()
        .filter(|task| {
            task.get("Subject")
                .and_then(Json::as_str)
                .is_some_and(|subject| subject.starts_with(TASK_SUBJECT_PREFIX))
        })
        .collect()
}

fn tasks_on(env: &Env, account: &str) -> usize {
    alert_tasks(env)
        .iter()
        .filter(|task| task.get("WhatId").and_then(Json::as_str) == Some(account))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_creates_one_task() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let (owner, accounts) = &groups[0];
    let account = &accounts[0];

    set_scores(&store, &env.config, &[(account, 55.0)], at(1, 8));
    let quiet = alert(&env, &store, at(1, 8)).await;
    assert_eq!(quiet.quiet_first_run, 1);
    assert_eq!(quiet.sent, 0);

    set_scores(&store, &env.config, &[(account, 86.0)], at(1, 9));
    let crossed = alert(&env, &store, at(1, 9)).await;
    assert_eq!(crossed.sent, 1, "{crossed:?}");
    assert!(crossed.failed.is_empty(), "{:?}", crossed.failed);

    let tasks = alert_tasks(&env);
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task["WhatId"], account.id.as_str());
    assert_eq!(task["OwnerId"], owner.as_str());
    assert_eq!(task["Status"], "Not Started");
    assert_eq!(task["Priority"], "High");
    assert_eq!(task["ActivityDate"], day_text(1).as_str());
    let subject = task["Subject"].as_str().unwrap();
    assert!(subject.contains("score 55 to 86"), "{subject}");
    let description = task["Description"].as_str().unwrap();
    assert!(
        description.contains("- 3 meetings in the last 30 days"),
        "{description}"
    );

    // The store records the alert as sent with the CRM's task id.
    let alerts = store.alerts().expect("alerts");
    assert_eq!(alerts.len(), 1);
    let AlertStatus::Sent { task_id } = &alerts[0].status else {
        panic!("alert not marked sent: {:?}", alerts[0].status);
    };
    assert_eq!(task["Id"], task_id.as_str());

    // The task is found again through SOQL by its key.
    let found = env
        .connector()
        .find_tasks(&[TaskLookup {
            object: "Account".to_string(),
            record_id: account.id.clone(),
            marker: alerts[0].key.clone(),
            created_after: at(1, 0) - Duration::days(400),
        }])
        .await
        .expect("lookup");
    assert_eq!(found, vec![Some(task_id.clone())]);

    // A re-score with the same score sends nothing.
    set_scores(&store, &env.config, &[(account, 86.0)], at(1, 10));
    let rescored = alert(&env, &store, at(1, 10)).await;
    assert_eq!(rescored.sent, 0);

    // Nor does a restart: the store reopened from disk.
    drop(store);
    let reopened = env.store();
    let restarted = alert(&env, &reopened, at(1, 11)).await;
    assert_eq!(restarted.sent, 0);
    assert_eq!(restarted.quiet_first_run, 0);
    assert_eq!(tasks_on(&env, &account.id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn band_oscillation_alerts_once() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let account = &groups[0].1[0];

    let mut sent = Vec::new();
    // Quiet first pass, crossing, three moves inside the band, leaving it, crossing again.
    for (hour, score) in [
        (1, 60.0),
        (2, 85.0),
        (3, 75.0),
        (4, 82.0),
        (5, 71.0),
        (6, 69.0),
        (7, 81.0),
    ] {
        set_scores(&store, &env.config, &[(account, score)], at(2, hour));
        sent.push(alert(&env, &store, at(2, hour)).await.sent);
    }
    assert_eq!(sent, vec![0, 1, 0, 0, 0, 0, 1]);
    assert_eq!(tasks_on(&env, &account.id), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_threshold_is_no_crossing() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let steady = &groups[0].1[0];
    let rising = &groups[1].1[0];
    let mut lowered = env.config.clone();
    lowered.alerts.threshold = Some(60.0);
    let pass = |config: leadscore::config::Config, now| {
        let env = &env;
        let store = &store;
        async move {
            run_alerts(&env.connector(), store, &config, now)
                .await
                .expect("alert pass")
        }
    };

    // Quiet first pass at threshold 80, with both records between 60 and 80.
    set_scores(
        &store,
        &env.config,
        &[(steady, 67.0), (rising, 55.0)],
        at(4, 1),
    );
    assert_eq!(pass(env.config.clone(), at(4, 1)).await.sent, 0);

    // The admin lowers the threshold to 60: the record already above it did not cross.
    let after_change = pass(lowered.clone(), at(4, 2)).await;
    assert_eq!(after_change.sent, 0, "{after_change:?}");

    // A record that really rises past the new threshold is alerted once.
    set_scores(
        &store,
        &env.config,
        &[(steady, 67.0), (rising, 64.0)],
        at(4, 3),
    );
    let crossing = pass(lowered.clone(), at(4, 3)).await;
    assert_eq!(crossing.sent, 1, "{crossing:?}");
    assert_eq!(tasks_on(&env, &rising.id), 1);
    assert_eq!(tasks_on(&env, &steady.id), 0);

    // Back to 80: the steady record rising from 67 to 82 crosses it and is alerted.
    set_scores(
        &store,
        &env.config,
        &[(steady, 82.0), (rising, 64.0)],
        at(4, 4),
    );
    let back = pass(env.config.clone(), at(4, 4)).await;
    assert_eq!(back.sent, 1, "{back:?}");
    assert_eq!(tasks_on(&env, &steady.id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_first_run_sends_none() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let accounts: Vec<&Record> = groups.iter().map(|(_, list)| &list[0]).take(3).collect();
    let high: Vec<(&Record, f64)> = accounts.iter().map(|a| (*a, 90.0)).collect();

    set_scores(&store, &env.config, &high, at(3, 8));
    let first = alert(&env, &store, at(3, 8)).await;
    assert_eq!(first.quiet_first_run, 3);
    assert_eq!(first.sent, 0);
    assert!(alert_tasks(&env).is_empty());

    // The records above the threshold count as alerted: they stay silent while above.
    let second = alert(&env, &store, at(3, 9)).await;
    assert_eq!(second.sent, 0);
    assert!(alert_tasks(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loud_first_run_alerts_above() {
    let env = start(&ALERTS.replace("band = 10", "band = 10\nquiet_first_run = false")).await;
    let (store, groups) = pulled(&env).await;
    let above: Vec<(&Record, f64)> = groups.iter().take(2).map(|(_, l)| (&l[0], 90.0)).collect();
    let below = (&groups[2].1[0], 40.0);
    let mut scores = above.clone();
    scores.push(below);

    set_scores(&store, &env.config, &scores, at(3, 8));
    let first = alert(&env, &store, at(3, 8)).await;
    assert_eq!(first.quiet_first_run, 0);
    assert_eq!(first.sent, 2, "{first:?}");
    assert_eq!(alert_tasks(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_cap_holds_back_and_reports() {
    let env = start(&ALERTS.replace("band = 10", "band = 10\nper_rep_daily_cap = 1")).await;
    let (store, groups) = pulled(&env).await;
    let (owner, accounts) = &groups[0];
    assert!(
        accounts.len() >= 3,
        "the largest owner has {} accounts",
        accounts.len()
    );
    let (first, second, third) = (&accounts[0], &accounts[1], &accounts[2]);

    let low: Vec<(&Record, f64)> = vec![(first, 50.0), (second, 50.0), (third, 50.0)];
    set_scores(&store, &env.config, &low, at(4, 8));
    alert(&env, &store, at(4, 8)).await;

    let high = vec![(first, 85.0), (second, 88.0), (third, 90.0)];
    set_scores(&store, &env.config, &high, at(4, 9));
    let day_one = alert(&env, &store, at(4, 9)).await;
    assert_eq!(day_one.sent, 1, "{day_one:?}");
    assert_eq!(day_one.held_back, 2);
    assert_eq!(day_one.held.len(), 2);
    assert!(
        day_one.held[0].contains(owner.as_str()),
        "{:?}",
        day_one.held
    );

    // Later the same day the cap still holds.
    let later = alert(&env, &store, at(4, 15)).await;
    assert_eq!(later.sent, 0);
    assert_eq!(later.held_back, 2);

    // The next day, the held record still above is sent; the one that fell below is not.
    let next = vec![(first, 85.0), (second, 88.0), (third, 78.0)];
    set_scores(&store, &env.config, &next, at(5, 9));
    let day_two = alert(&env, &store, at(5, 9)).await;
    assert_eq!(day_two.sent, 1, "{day_two:?}");
    assert_eq!(day_two.held_back, 0);
    let sent_first = tasks_on(&env, &first.id) + tasks_on(&env, &second.id);
    assert_eq!(sent_first, 2);
    assert_eq!(tasks_on(&env, &third.id), 0);
    // The delayed task reports the change from the score before the held crossing.
    let delayed = alert_tasks(&env)
        .into_iter()
        .find(|task| task["ActivityDate"] == day_text(5).as_str())
        .expect("the delayed task");
    let subject = delayed["Subject"].as_str().unwrap();
    assert!(subject.contains("score 50 to"), "{subject}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_owner_goes_to_fallback() {
    let mut env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let (owner, accounts) = groups[0].clone();
    let fallback = groups[1].0.clone();
    env.config.alerts.fallback_owner = Some(fallback.clone());
    let account = &accounts[0];
    set_scores(&store, &env.config, &[(account, 50.0)], at(6, 8));
    alert(&env, &store, at(6, 8)).await;

    let mut inactive = serde_json::Map::new();
    inactive.insert("IsActive".to_string(), json!(false));
    env.handle()
        .update_record("User", &owner, inactive)
        .expect("user deactivated");
    leadscore::pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");

    set_scores(&store, &env.config, &[(account, 90.0)], at(6, 9));
    let report = alert(&env, &store, at(6, 9)).await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(report.to_fallback, 1);
    assert!(
        report.fallbacks[0].contains("inactive"),
        "{:?}",
        report.fallbacks
    );
    let tasks = alert_tasks(&env);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["OwnerId"], fallback.as_str());
    assert_eq!(tasks[0]["WhatId"], account.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_owner_without_fallback_is_reported() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let (owner, accounts) = &groups[0];
    let account = &accounts[0];
    set_scores(&store, &env.config, &[(account, 50.0)], at(7, 8));
    alert(&env, &store, at(7, 8)).await;

    let mut inactive = serde_json::Map::new();
    inactive.insert("IsActive".to_string(), json!(false));
    env.handle()
        .update_record("User", owner, inactive)
        .expect("user deactivated");
    leadscore::pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    set_scores(&store, &env.config, &[(account, 90.0)], at(7, 9));
    let report = alert(&env, &store, at(7, 9)).await;
    assert_eq!(report.sent, 0);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].contains("fallback_owner"),
        "{:?}",
        report.failed
    );
    assert!(alert_tasks(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_reconciled_once() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let account = &groups[0].1[0];
    set_scores(&store, &env.config, &[(account, 50.0)], at(8, 8));
    alert(&env, &store, at(8, 8)).await;

    // The org creates the task, but the response is cut off.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&json!({
            "method": "POST",
            "path": "/services/data/v59.0/composite/sobjects",
            "cut_after_bytes": 3,
        }))
        .send()
        .await
        .expect("fault added");
    assert!(response.status().is_success(), "{}", response.status());

    set_scores(&store, &env.config, &[(account, 90.0)], at(8, 9));
    let cut = alert(&env, &store, at(8, 9)).await;
    assert_eq!(cut.sent, 0);
    assert_eq!(cut.failed.len(), 1, "{cut:?}");
    assert_eq!(tasks_on(&env, &account.id), 1);
    assert_eq!(store.pending_alerts().expect("pending").len(), 1);

    let next = alert(&env, &store, at(8, 10)).await;
    assert_eq!(next.reconciled, 1, "{next:?}");
    assert_eq!(next.sent, 0);
    assert!(store.pending_alerts().expect("pending").is_empty());
    assert_eq!(tasks_on(&env, &account.id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_tasks_pulled_with_subject() {
    let env = start(ALERTS).await;
    let (store, groups) = pulled(&env).await;
    let account = &groups[0].1[0];
    set_scores(&store, &env.config, &[(account, 50.0)], at(9, 8));
    alert(&env, &store, at(9, 8)).await;
    set_scores(&store, &env.config, &[(account, 90.0)], at(9, 9));
    assert_eq!(alert(&env, &store, at(9, 9)).await.sent, 1);

    leadscore::pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let own: Vec<Record> = store
        .records("Task")
        .expect("tasks")
        .into_iter()
        .filter(|task| {
            task.get("Subject")
                .as_str()
                .is_some_and(leadscore::alerts::is_own_task)
        })
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].get("WhatId").as_str(), Some(account.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_crossing_creates_associated_task() {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        private_app_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    };
    let sandbox = HubSpotSandbox::new(org.records, options)
        .expect("HubSpot sandbox accepts the demo org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens on loopback");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    );
    let text = strip_tables(&text) + ALERTS;
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, text).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let token = HubSpotOptions::default().private_app_token;
    let connector: AnyConnector = connect(
        &config,
        ConnectorSecrets::HubSpotToken(SecretString::from(token.clone())),
    )
    .expect("connector");
    leadscore::setup::fix(&connector, &config)
        .await
        .expect("check --fix creates the properties");
    let store = Store::open(&config.store_path).expect("store");
    leadscore::pipeline::pull(&connector, &store, &config)
        .await
        .expect("pull");
    let groups = accounts_by_active_owner(&store);
    let (owner, accounts) = &groups[0];
    let company = &accounts[0];
    let tasks_before = sandbox.handle().count(ObjectType::Tasks);

    set_scores(&store, &config, &[(company, 40.0)], at(10, 8));
    run_alerts(&connector, &store, &config, at(10, 8))
        .await
        .expect("quiet pass");
    set_scores(&store, &config, &[(company, 92.0)], at(10, 9));
    let report = run_alerts(&connector, &store, &config, at(10, 9))
        .await
        .expect("alert pass");
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(sandbox.handle().count(ObjectType::Tasks), tasks_before + 1);

    let alerts = store.alerts().expect("alerts");
    let AlertStatus::Sent { task_id } = &alerts[0].status else {
        panic!("alert not sent: {:?}", alerts[0].status);
    };
    let properties = sandbox
        .handle()
        .properties(ObjectType::Tasks, task_id)
        .expect("the task exists");
    assert_eq!(properties["hubspot_owner_id"], *owner);
    assert_eq!(properties["hs_task_status"], "NOT_STARTED");
    assert_eq!(properties["hs_task_priority"], "HIGH");
    assert!(properties["hs_task_subject"].starts_with(TASK_SUBJECT_PREFIX));
    assert!(properties["hs_task_body"].contains(&alerts[0].key));

    // The association to the company, read through the v4 API.
    let associations: Json = reqwest::Client::new()
        .get(format!(
            "{}/crm/v4/objects/tasks/{task_id}/associations/companies",
            sandbox.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("associations request")
        .json()
        .await
        .expect("associations body");
    let targets: Vec<String> = associations["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["toObjectId"].to_string().trim_matches('"').to_string())
        .collect();
    assert_eq!(targets, vec![company.id.clone()]);

    // Found again by search, and not repeated on the next pass.
    let found = connector
        .find_tasks(&[TaskLookup {
            object: "Account".to_string(),
            record_id: company.id.clone(),
            marker: alerts[0].key.clone(),
            created_after: at(10, 0),
        }])
        .await
        .expect("search");
    assert_eq!(found, vec![Some(task_id.clone())]);
    let again = run_alerts(&connector, &store, &config, at(10, 10))
        .await
        .expect("alert pass");
    assert_eq!(again.sent, 0);
    assert_eq!(sandbox.handle().count(ObjectType::Tasks), tasks_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_webhook_post_goes_out_with_next_pass() {
    std::env::set_var("LS_TEST_HOOK_SECRET_Q", "shared-secret-q");
    // The receiver refuses the first post with 400, which is not retried, then accepts.
    let receiver = receiver(vec![400]).await;
    let mut env = start(ALERTS).await;
    env.config.alerts.webhook = Some(leadscore::config::alerts::WebhookConfig {
        url: url::Url::parse(&receiver.url).expect("url"),
        secret_env: "LS_TEST_HOOK_SECRET_Q".to_string(),
        timeout: std::time::Duration::from_secs(5),
        max_attempts: 2,
        allow_insecure_http: false,
    });
    let (store, groups) = pulled(&env).await;
    let account = &groups[0].1[0];
    set_scores(&store, &env.config, &[(account, 55.0)], at(1, 8));
    let quiet = alert(&env, &store, at(1, 8)).await;
    assert_eq!(quiet.quiet_first_run, 1);
    assert!(quiet.webhook.is_none(), "{:?}", quiet.webhook);

    set_scores(&store, &env.config, &[(account, 86.0)], at(1, 9));
    let crossed = alert(&env, &store, at(1, 9)).await;
    assert_eq!(crossed.sent, 1, "{crossed:?}");
    let line = crossed.webhook.expect("a webhook line");
    assert!(
        line.starts_with("failed") && line.contains("1 alerts stay queued"),
        "{line}"
    );
    let key = store.alerts().expect("alerts")[0].key.clone();

    // The queued alert is on disk: the next pass runs on the store opened again, finds no new
    // crossing and posts it.
    drop(store);
    let store = env.store();
    let queued = store.webhook_outbox().expect("outbox");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].key, key);
    set_scores(&store, &env.config, &[(account, 86.0)], at(1, 10));
    let next = alert(&env, &store, at(1, 10)).await;
    assert_eq!(next.sent, 0);
    let line = next.webhook.expect("a webhook line");
    assert!(line.starts_with("delivered 1 alerts in 1 events"), "{line}");
    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let body: Json = serde_json::from_slice(&seen[1].1).expect("JSON body");
        assert_eq!(body["alerts"][0]["key"], key.as_str());
        assert_eq!(body["alerts"][0]["record_id"], account.id.as_str());
        assert_eq!(body["alerts"][0]["to_score"], 86.0);
    }

    // Nothing is left to post, and a later pass posts nothing.
    assert!(store.webhook_outbox().expect("outbox").is_empty());
    let later = alert(&env, &store, at(1, 11)).await;
    assert!(later.webhook.is_none(), "{:?}", later.webhook);
    assert_eq!(receiver.seen.lock().unwrap().len(), 2);
}

/// A loopback receiver that responds with the scripted statuses in turn (then 200) and keeps
/// every request's headers and body.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receiver(statuses: Vec<u16>) -> Receiver {
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let script = Arc::new(Mutex::new(statuses));
    let app = Router::new().route(
        "/hook",
        post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                let script = script.clone();
                async move {
                    seen.lock().unwrap().push((headers, body));
                    let mut script = script.lock().unwrap();
                    let status = if script.is_empty() {
                        200
                    } else {
                        script.remove(0)
                    };
                    StatusCode::from_u16(status).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("receiver binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    Receiver {
        url: format!("http://{address}/hook"),
        seen,
    }
}

fn webhook_to(url: &str, secret_env: &str, attempts: u32) -> Webhook {
    let config = leadscore::config::alerts::WebhookConfig {
        url: url::Url::parse(url).expect("url"),
        secret_env: secret_env.to_string(),
        timeout: std::time::Duration::from_secs(5),
        max_attempts: attempts,
        allow_insecure_http: false,
    };
    Webhook::from_config(&config)
        .expect("webhook")
        .with_retry_base_delay(std::time::Duration::from_millis(20))
}

#[tokio::test]
async fn webhook_signature_verifies() {
    std::env::set_var("LS_TEST_HOOK_SECRET_A", "shared-secret-a");
    let receiver = receiver(Vec::new()).await;
    let hook = webhook_to(&receiver.url, "LS_TEST_HOOK_SECRET_A", 3);
    let event = json!({"event": "score_alerts", "alerts": [{"key": "ls01", "to_score": 91.5}]});

    let delivery = webhook::send(&hook, &event).await.expect("delivered");
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.status, 200);

    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
    assert!(webhook::verify(b"shared-secret-a", body, signature));
    assert!(!webhook::verify(b"another secret", body, signature));
    let sent: Json = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(sent, event);
    let timestamp: i64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
    assert!((Utc::now().timestamp() - timestamp).abs() < 60);
    assert!(!format!("{hook:?}").contains("shared-secret-a"));
}

#[tokio::test]
async fn webhook_retries_server_error() {
    std::env::set_var("LS_TEST_HOOK_SECRET_B", "shared-secret-b");
    let receiver = receiver(vec![500, 503]).await;
    let hook = webhook_to(&receiver.url, "LS_TEST_HOOK_SECRET_B", 4);

    let delivery = webhook::send(&hook, &json!({"n": 1}))
        .await
        .expect("delivered after retries");
    assert_eq!(delivery.attempts, 3);
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    // Every attempt carries the same body and a valid signature.
    for (headers, body) in seen.iter() {
        let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(webhook::verify(b"shared-secret-b", body, signature));
    }
}

#[tokio::test]
async fn webhook_client_error_not_retried() {
    std::env::set_var("LS_TEST_HOOK_SECRET_C", "shared-secret-c");
    let receiver = receiver(vec![400]).await;
    let hook = webhook_to(&receiver.url, "LS_TEST_HOOK_SECRET_C", 4);
    let error = webhook::send(&hook, &json!({"n": 1}))
        .await
        .expect_err("400 is final");
    assert!(error.to_string().contains("HTTP 400"), "{error}");
    assert_eq!(receiver.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn webhook_unreachable_exhausts_attempts() {
    std::env::set_var("LS_TEST_HOOK_SECRET_D", "shared-secret-d");
    // A port that was free a moment ago: connections are refused.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let hook = webhook_to(
        &format!("http://127.0.0.1:{port}/hook"),
        "LS_TEST_HOOK_SECRET_D",
        2,
    );
    let error = webhook::send(&hook, &json!({"n": 1}))
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("after 2 attempts"), "{error}");
}

#[tokio::test]
async fn webhook_missing_secret_named() {
    let config = leadscore::config::alerts::WebhookConfig {
        url: url::Url::parse("http://127.0.0.1:9/hook").expect("url"),
        secret_env: "LS_TEST_HOOK_SECRET_UNSET".to_string(),
        timeout: std::time::Duration::from_secs(1),
        max_attempts: 1,
        allow_insecure_http: false,
    };
    let error = Webhook::from_config(&config).expect_err("no secret");
    assert!(
        error.to_string().contains("LS_TEST_HOOK_SECRET_UNSET"),
        "{error}"
    );
}

#[test]
fn alert_config_errors_name_key_and_fix() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/leadscore.example.toml"
    ))
    .expect("example config");
    let cases = [
        (
            "[alerts]\nenabled = true\n",
            "alerts.threshold",
            "no rule is set",
        ),
        (
            "[alerts]\nenabled = true\ninto_tiers = [\"D\"]\n",
            "alerts.into_tiers",
            "D is the lowest tier",
        ),
        (
            "[alerts]\nenabled = true\nthreshold = 120\n",
            "alerts.threshold",
            "out of range",
        ),
        (
            "[webhook]\nurl = \"http://127.0.0.1:9000/x\"\nsecret_env = \"abc-def=1\"\n",
            "webhook.secret_env",
            "not an environment variable name",
        ),
        (
            "[webhook]\nurl = \"ftp://example.com/x\"\nsecret_env = \"HOOK\"\n",
            "webhook.url",
            "not an http or https URL",
        ),
        (
            "[webhook]\nurl = \"http://127.0.0.1:9000/x\"\n",
            "webhook.secret_env",
            "missing",
        ),
    ];
    for (table, key, message) in cases {
        let text = strip_tables(&base) + "\n" + table;
        let error = Config::parse(
            &text,
            std::path::Path::new("leadscore.toml"),
            std::path::Path::new("/etc/leadscore"),
        )
        .expect_err(table)
        .to_string();
        assert!(error.contains(key), "{table}: {error}");
        assert!(error.contains(message), "{table}: {error}");
    }
}

#[test]
fn alert_config_defaults() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/leadscore.example.toml"
    ))
    .expect("example config");
    let text = strip_tables(&base)
        + "\n[alerts]\nenabled = true\ninto_tiers = [\"A\"]\n\n[webhook]\nurl = \"http://127.0.0.1:9000/x\"\nsecret_env = \"HOOK_KEY\"\n";
    let config = Config::parse(
        &text,
        std::path::Path::new("leadscore.toml"),
        std::path::Path::new("/etc/leadscore"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let alerts = &config.alerts;
    assert!(alerts.enabled);
    assert_eq!(alerts.levels, vec![leadscore::level::Level::Account]);
    assert_eq!(alerts.into_tiers, vec![0]);
    assert_eq!(alerts.band, 10.0);
    assert_eq!(alerts.per_rep_daily_cap, 10);
    assert!(alerts.quiet_first_run);
    let webhook = alerts.webhook.as_ref().expect("webhook");
    assert_eq!(webhook.max_attempts, 4);
    assert_eq!(webhook.timeout, std::time::Duration::from_secs(10));
}

/// Removes the example's own `[alerts]` and `[webhook]` tables, so a case can add its own.
fn strip_tables(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = trimmed == "[alerts]" || trimmed == "[webhook]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_task_not_counted_as_activity() {
    let env = start(&ALERTS.replace("band = 10", "band = 10\nquiet_first_run = false")).await;
    let connector = env.connector();
    let store = env.store();
    let now = Utc::now();
    leadscore::pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    leadscore::training::train(&store, &env.config, now).expect("train");
    let stored = store.current_model().expect("model").expect("a live model");
    let space: leadscore::features::FeatureSpace =
        serde_json::from_value(stored.features).expect("feature space");
    assert!(
        space
            .names()
            .iter()
            .any(|name| name.starts_with("activities_")),
        "{:?}",
        space.names()
    );

    let (_, accounts) = &accounts_by_active_owner(&store)[0];
    let account = &accounts[0];
    let history = leadscore::training::load_history(&store, &env.config).expect("history");
    let before = space.row(
        &history,
        leadscore::features::Target::account(&account.id),
        now,
    );

    set_scores(&store, &env.config, &[(account, 90.0)], now);
    let report = run_alerts(&connector, &store, &env.config, now)
        .await
        .expect("alert pass");
    assert_eq!(report.sent, 1, "{report:?}");

    // The task comes back in the next pull, and the account's features as of the same time
    // are unchanged: the alert task is not engagement.
    leadscore::pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let own = store
        .records("Task")
        .expect("tasks")
        .into_iter()
        .filter(|task| task.get("WhatId").as_str() == Some(account.id.as_str()))
        .filter(|task| {
            task.get("Subject")
                .as_str()
                .is_some_and(leadscore::alerts::is_own_task)
        })
        .count();
    assert_eq!(own, 1);
    let history = leadscore::training::load_history(&store, &env.config).expect("history");
    let after = space.row(
        &history,
        leadscore::features::Target::account(&account.id),
        now,
    );
    // Bit patterns, because missing values are NaN and NaN never equals itself.
    let bits = |row: &[f64]| row.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    assert_eq!(
        bits(&after),
        bits(&before),
        "{:?}\n{after:?}\n{before:?}",
        space.names()
    );
}

#[test]
fn webhook_accepts_https_url() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/leadscore.example.toml"
    ))
    .expect("example config");
    let text = strip_tables(&base)
        + "\n[alerts]\nenabled = true\nthreshold = 80\n\n[webhook]\nurl = \"https://hooks.example.com/leadscore\"\nsecret_env = \"HOOK_KEY\"\n";
    let config = Config::parse(
        &text,
        std::path::Path::new("leadscore.toml"),
        std::path::Path::new("/etc/leadscore"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let webhook = config.alerts.webhook.expect("webhook");
    assert_eq!(webhook.url.scheme(), "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_missing_webhook_secret() {
    let env = start(
        "[alerts]\nenabled = true\nthreshold = 80\n\n[webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"LS_TEST_CHECK_HOOK_UNSET\"\n",
    )
    .await;
    let options = env.sandbox.options().clone();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_leadscore"));
    command
        .args(["check", "-c"])
        .arg(&env.config_path)
        .env_remove("LS_TEST_CHECK_HOOK_UNSET")
        .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
        .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the check process joins")
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LS_TEST_CHECK_HOOK_UNSET"), "{stderr}");
}
