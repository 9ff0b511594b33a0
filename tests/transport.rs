//! Token refresh, the per-day API budget, retries and rate limits of both connectors, against
//! the sandboxes over HTTP with faults scripted through their `/__sandbox/` control endpoint.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use leadscore::config::{Config, ConnectorSecrets, Secrets};
use leadscore::run::AnyConnector;
use leadscore::store::Store;
use leadscore::{pipeline, token_file};
use leadscore_connector::{Connector, ConnectorError};
use leadscore_demo_org::DemoOptions;
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, RunningHubSpot, SandboxOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// Salesforce query paths of a pull: the first page (`queryAll?q=`) and the later ones.
const QUERY_ALL: &str = "/services/data/v59.0/queryAll";
const SF_TOKEN: &str = "/services/oauth2/token";
const HS_TOKEN: &str = "/oauth/v1/token";

// ---- control endpoint helpers ----

async fn control(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{base}/__sandbox{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("control request sent");
    let status = response.status();
    let text = response.text().await.expect("control response read");
    assert!(status.is_success(), "control {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn add_fault(base: &str, fault: Value) {
    control(base, reqwest::Method::POST, "/faults", Some(fault)).await;
}

async fn reset_requests(base: &str) {
    control(base, reqwest::Method::DELETE, "/requests", None).await;
}

/// Returns how many requests with this method had a path starting with `prefix`.
async fn request_count(base: &str, method: &str, prefix: &str) -> u64 {
    let listing = control(base, reqwest::Method::GET, "/requests", None).await;
    listing["requests"]
        .as_array()
        .expect("requests list")
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().unwrap_or("").starts_with(prefix))
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

async fn current_refresh_token(base: &str) -> Option<String> {
    let value = control(base, reqwest::Method::GET, "/refresh-token", None).await;
    value["refresh_token"].as_str().map(str::to_string)
}

// ---- Salesforce setup ----

/// Starts a Salesforce sandbox that serves at most 100 rows per query page, so a pull has
/// many pages.
async fn salesforce(edit: impl FnOnce(String) -> String) -> Env {
    let options = SandboxOptions {
        page_size: 100,
        ..SandboxOptions::default()
    };
    Env::start_with(options, edit).await
}

/// Adds lines to the `[connector]` table of a sandbox configuration.
fn connector_lines(text: String, lines: &str) -> String {
    text.replacen(
        "cursor_lookback_secs = 300",
        &format!("cursor_lookback_secs = 300\n{lines}"),
        1,
    )
}

fn salesforce_config(env: &Env, refresh_token: &str) -> SalesforceConfig {
    let options = env.sandbox.options();
    SalesforceConfig {
        login_url: url::Url::parse(&env.sandbox.url()).expect("sandbox URL"),
        api_version: "59.0".to_string(),
        client_id: options.client_id.clone(),
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(refresh_token.to_string()),
        page_size: None,
        timeout: Duration::from_secs(30),
        max_retries: 3,
        retry_base_delay: Duration::from_millis(20),
        extra_ca_pem: None,
        allow_insecure_http: false,
        bulk_threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
        bulk_objects: Vec::new(),
        bulk_poll_timeout: leadscore_salesforce::DEFAULT_BULK_POLL_TIMEOUT,
    }
}

/// Asserts that the store contains exactly the org's live records of every pulled object.
fn assert_store_matches_org(env: &Env, store: &Store) {
    for spec in pipeline::pull_specs(&env.config) {
        let stored: BTreeSet<String> = store
            .records(&spec.object)
            .expect("stored records")
            .into_iter()
            .filter(|r| !r.deleted)
            .map(|r| r.id)
            .collect();
        let live: BTreeSet<String> = env
            .handle()
            .records(&spec.object)
            .into_iter()
            .filter(|r| r.get("IsDeleted") != Some(&Value::Bool(true)))
            .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
            .collect();
        assert_eq!(stored, live, "{} records in the store", spec.object);
    }
}

fn total_org_records(env: &Env) -> usize {
    pipeline::pull_specs(&env.config)
        .iter()
        .map(|spec| env.handle().records(&spec.object).len())
        .sum()
}

fn stored_total(env: &Env, store: &Store) -> usize {
    pipeline::pull_specs(&env.config)
        .iter()
        .map(|spec| store.record_count(&spec.object).expect("record count"))
        .sum()
}

/// Runs the binary off the runtime's worker threads, so the in-process sandbox keeps
/// responding while the child process sends requests to it.
async fn leadscore(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .envs(env)
            .env_remove("RUST_LOG")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join")
}

fn salesforce_env_vars(env: &Env, refresh_token: &str) -> Vec<(String, String)> {
    vec![
        (
            "LEADSCORE_SF_CLIENT_SECRET".into(),
            env.sandbox.options().client_secret.clone(),
        ),
        (
            "LEADSCORE_SF_REFRESH_TOKEN".into(),
            refresh_token.to_string(),
        ),
    ]
}

fn pull_args(config: &Path, json: bool) -> Vec<String> {
    let mut args = vec!["pull".into(), "-c".into(), config.display().to_string()];
    if json {
        args.push("--json".into());
    }
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns how many requests to `path` were rejected with 401.
fn rejected_since(log: &[leadscore_sandbox::LoggedRequest], path: &str) -> u64 {
    log.iter()
        .filter(|r| r.status == 401 && r.path.starts_with(path))
        .count() as u64
}

// ---- Salesforce tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_token_expired_mid_pull() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    add_fault(
        &base,
        json!({"method": "GET", "path": QUERY_ALL, "nth": 3, "expire_tokens": true}),
    )
    .await;
    let connector = env.connector();
    let store = env.store();

    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull survives the expired token");

    assert_eq!(request_count(&base, "POST", SF_TOKEN).await, 2);
    let rejected = env
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(rejected, 1, "only the third page was rejected");
    assert_store_matches_org(&env, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_concurrent_401s_one_refresh() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    let connector = Arc::new(env.connector());
    connector.check().await.expect("first session");
    control(&base, reqwest::Method::POST, "/tokens/expire", None).await;
    reset_requests(&base).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let connector = connector.clone();
        tasks.spawn(async move { connector.check().await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("check after renewal");
    }

    assert_eq!(request_count(&base, "POST", SF_TOKEN).await, 1);
    // Calls that start while the renewal runs wait for it and are not rejected first.
    let rejected = rejected_since(&env.handle().request_log(), "/services/data/v59.0/limits");
    assert!(rejected >= 1, "at least one call saw the expired token");
    let limits = request_count(&base, "GET", "/services/data/v59.0/limits").await;
    assert_eq!(limits, 20 + rejected, "each rejected call repeated once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_rotated_token_saved_before_use() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    let old = env.sandbox.options().refresh_token.clone();
    let file = env.dir.path().join("refresh-token");
    control(&base, reqwest::Method::POST, "/refresh-token/rotate", None).await;

    let saved_at: Arc<Mutex<Option<usize>>> = Arc::default();
    let sink = {
        let inner = token_file::sink(file.clone());
        let handle = env.handle();
        let saved_at = saved_at.clone();
        Arc::new(move |token: &SecretString| {
            inner(token)?;
            *saved_at.lock().unwrap() = Some(handle.request_log().len());
            Ok(())
        })
    };
    let connector = SalesforceConnector::new(salesforce_config(&env, &old))
        .expect("connector")
        .with_refresh_token_sink(sink);
    connector.check().await.expect("check after rotation");

    let rotated = current_refresh_token(&base).await.expect("rotated token");
    assert_ne!(rotated, old);
    let in_file = std::fs::read_to_string(&file).expect("token file written");
    assert_eq!(in_file.trim(), rotated);
    let log = env.handle().request_log();
    let saved_at = saved_at.lock().unwrap().expect("sink called");
    assert_eq!(
        log[saved_at - 1].path,
        SF_TOKEN,
        "saved right after the token response"
    );
    assert!(
        log[..saved_at].iter().all(|r| r.path == SF_TOKEN),
        "no API request before the new token was saved"
    );
    assert!(log.len() > saved_at, "the session was used after saving");

    let stale = SalesforceConnector::new(salesforce_config(&env, &old)).expect("connector");
    let error = stale.check().await.expect_err("old refresh token refused");
    assert!(matches!(error, ConnectorError::Auth(_)), "{error}");
    let fresh = SalesforceConnector::new(salesforce_config(&env, &rotated)).expect("connector");
    fresh.check().await.expect("rotated refresh token works");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_restart_reads_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let file_name = "refresh-token";
    let env =
        salesforce(|text| connector_lines(text, &format!("refresh_token_file = {file_name:?}")))
            .await;
    let base = env.sandbox.url();
    let old = env.sandbox.options().refresh_token.clone();
    let file = env.dir.path().join(file_name);
    control(&base, reqwest::Method::POST, "/refresh-token/rotate", None).await;

    let first = leadscore(
        pull_args(&env.config_path, false),
        salesforce_env_vars(&env, &old),
    )
    .await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let rotated = current_refresh_token(&base).await.expect("rotated token");
    let in_file = std::fs::read_to_string(&file).expect("token file written");
    assert_eq!(in_file.trim(), rotated);
    let mode = std::fs::metadata(&file)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The environment variable still contains the old token, which the org now rejects.
    control(&base, reqwest::Method::POST, "/tokens/expire", None).await;
    let second = leadscore(
        pull_args(&env.config_path, false),
        salesforce_env_vars(&env, &old),
    )
    .await;
    assert!(second.status.success(), "{}", text(&second.stderr));

    std::fs::remove_file(&file).expect("file removed");
    let third = leadscore(
        pull_args(&env.config_path, false),
        salesforce_env_vars(&env, &old),
    )
    .await;
    assert_eq!(third.status.code(), Some(2), "{}", text(&third.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_budget_spent_then_resumed() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    // 25% of 100 remaining calls: 25 calls, a few pages into the pull.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 100})),
    )
    .await;
    let vars = salesforce_env_vars(&env, &env.sandbox.options().refresh_token.clone());

    let first = leadscore(pull_args(&env.config_path, false), vars).await;
    let stderr = text(&first.stderr);
    assert_eq!(
        first.status.code(),
        Some(i32::from(leadscore::cli::BUDGET_SPENT_EXIT_CODE)),
        "{stderr}"
    );
    assert!(stderr.contains("used 25 of the 25"), "{stderr}");
    assert!(stderr.contains("next run resumes"), "{stderr}");
    let (used, _) = env.handle().api_usage();
    assert_eq!(used, 25, "the org counted exactly the budget");

    let first_stored = {
        let store = env.store();
        stored_total(&env, &store)
    };
    assert!(first_stored > 0, "pages before the stop were saved");
    assert!(
        first_stored < total_org_records(&env),
        "the stop came mid-pull"
    );

    // The next UTC day, when the org has calls to spare, the pull resumes. The binary's ledger
    // follows the system clock, so this run uses a ledger clock one day ahead instead.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 1_000_000, "daily_used": 0})),
    )
    .await;
    let store = env.store();
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let connector = env
        .connector()
        .with_budget_ledger(store.budget_ledger_with_clock(Arc::new(move || tomorrow)));
    let report = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("the next day's pull finishes");
    let second_pulled = report.pulled;

    assert_store_matches_org(&env, &store);
    assert_eq!(
        first_stored + second_pulled,
        total_org_records(&env),
        "every record pulled exactly once across the two runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_retry_after_honoured() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    add_fault(
        &base,
        json!({
            "method": "GET", "path": "/services/data/v59.0/limits", "status": 503,
            "headers": {"Retry-After": "1"},
            "body": [{"errorCode": "SERVER_UNAVAILABLE", "message": "down for a moment"}],
        }),
    )
    .await;
    let connector = env.connector();
    let started = Instant::now();
    connector.check().await.expect("check after the retry");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(
        request_count(&base, "GET", "/services/data/v59.0/limits").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_daily_limit_not_retried() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 10, "daily_used": 10})),
    )
    .await;
    let connector = env.connector();
    let error = connector.check().await.expect_err("limit reached");
    assert!(matches!(error, ConnectorError::LimitExceeded(_)), "{error}");
    assert_eq!(
        request_count(&base, "GET", "/services/data/v59.0/limits").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_cut_response_retried() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    add_fault(
        &base,
        json!({"method": "GET", "path": QUERY_ALL, "nth": 2, "cut_after_bytes": 200}),
    )
    .await;
    let connector = env.connector();
    let store = env.store();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull survives the cut page");
    assert_store_matches_org(&env, &store);

    // The cut page was requested again: the second and third query requests are the same.
    let pages: Vec<(String, Option<String>)> = env
        .handle()
        .request_log()
        .into_iter()
        .filter(|r| r.path.starts_with(QUERY_ALL))
        .map(|r| (r.path, r.query))
        .collect();
    assert!(pages.len() > 3, "{} query requests", pages.len());
    assert_eq!(pages[1], pages[2], "the cut page was fetched again");
    assert_ne!(pages[0], pages[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_locked_row_sent_once_by_connector() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    let id = env.handle().records("Account")[0]["Id"]
        .as_str()
        .expect("account id")
        .to_string();
    control(
        &base,
        reqwest::Method::POST,
        "/locks",
        Some(json!({"ids": [id], "times": 2})),
    )
    .await;
    let connector = env.connector();

    let update = leadscore_connector::RecordUpdate {
        object: "Account".to_string(),
        id: id.clone(),
        fields: [(
            "LS_Score__c".to_string(),
            leadscore_connector::Value::Number(77.0),
        )]
        .into(),
    };
    let outcomes = connector.update(&[update]).await.expect("update call");

    assert_eq!(outcomes.len(), 1);
    let error = outcomes[0].result.clone().expect_err("the row is locked");
    assert_eq!(error.code, "UNABLE_TO_LOCK_ROW");
    assert!(error.retryable, "{error:?}");
    let writes = request_count(&base, "PATCH", "/services/data/v59.0/composite/sobjects").await;
    assert_eq!(
        writes, 1,
        "the write-back, not the connector, resends locked rows"
    );
}

// ---- per-day API budget ----

/// Returns a ledger clock stopped at `hour`:00 UTC on day `day` of December 2026.
fn clock_at(day: u32, hour: u32) -> leadscore::store::BudgetClock {
    let time = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, day, hour, 0, 0)
        .single()
        .expect("valid time");
    Arc::new(move || time)
}

fn december(day: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 12, day).expect("valid date")
}

/// Returns how many requests the sandbox received on the REST API, which is what its daily
/// limit counts (token requests are not among them).
fn api_requests(env: &Env) -> u64 {
    env.handle()
        .request_log()
        .iter()
        .filter(|r| r.path.starts_with("/services/data/"))
        .count() as u64
}

/// Pulls once with the store's ledger on `clock` and returns the number of API requests sent
/// and whether the budget stopped the pull.
async fn ledger_pull(
    env: &Env,
    store: &Store,
    clock: leadscore::store::BudgetClock,
) -> (u64, bool) {
    let before = api_requests(env);
    let connector = env
        .connector()
        .with_budget_ledger(store.budget_ledger_with_clock(clock));
    let stopped = match pipeline::pull(&connector, store, &env.config).await {
        Ok(_) => false,
        Err(pipeline::PipelineError::Connector(ConnectorError::BudgetSpent(_))) => true,
        Err(other) => panic!("pull failed: {other}"),
    };
    let usage = connector.budget_usage().expect("budget");
    let sent = api_requests(env) - before;
    assert_eq!(
        usage.used_this_run, sent,
        "the budget counted every request"
    );
    (sent, stopped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_ten_pulls_share_one_day() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    // 200 calls left at the day's first run: the day's share is 50.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 1000, "daily_used": 800})),
    )
    .await;
    let store = env.store();

    let mut sent = Vec::new();
    for hour in 0..10 {
        let (count, _) = ledger_pull(&env, &store, clock_at(4, hour + 1)).await;
        sent.push(count);
    }
    let total: u64 = sent.iter().sum();
    assert_eq!(total, 50, "ten pulls sent {sent:?}");
    let (used, _) = env.handle().api_usage();
    assert_eq!(used, 850, "the org counted the same calls");
    let day = store.api_budget_day(december(4)).expect("ledger day");
    assert_eq!(day.remaining_at_start, Some(200));
    assert_eq!(day.used, 50);
    assert!(stored_total(&env, &store) > 0, "pages were stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_new_day_fresh_allowance() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 1000, "daily_used": 800})),
    )
    .await;
    let store = env.store();
    let (first, stopped) = ledger_pull(&env, &store, clock_at(4, 22)).await;
    assert_eq!(first, 50);
    assert!(stopped, "the first day's share ran out mid-pull");
    let (again, stopped_again) = ledger_pull(&env, &store, clock_at(4, 23)).await;
    assert_eq!(again, 0, "nothing is left on the same day");
    assert!(stopped_again);

    // The CRM's daily count starts over, and so does the ledger's day.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_used": 0})),
    )
    .await;
    let (next_day, _) = ledger_pull(&env, &store, clock_at(5, 0)).await;
    assert!(next_day > 0, "the new day sent requests");
    let day_two = store.api_budget_day(december(5)).expect("ledger day");
    assert_eq!(day_two.remaining_at_start, Some(1000));
    assert_eq!(day_two.used, next_day);
    let day_one = store.api_budget_day(december(4)).expect("ledger day");
    assert_eq!(day_one.remaining_at_start, Some(200));
    assert_eq!(day_one.used, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_spent_day_says_no_progress() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 100})),
    )
    .await;
    let vars = salesforce_env_vars(&env, &env.sandbox.options().refresh_token.clone());
    let first = leadscore(pull_args(&env.config_path, false), vars.clone()).await;
    let stderr = text(&first.stderr);
    assert_eq!(first.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("next run resumes"), "{stderr}");
    assert!(!stderr.contains("no progress"), "{stderr}");

    let before = api_requests(&env);
    let second = leadscore(pull_args(&env.config_path, false), vars.clone()).await;
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no progress was made"), "{stderr}");
    assert!(stderr.contains("next UTC day"), "{stderr}");
    assert!(stderr.contains("api_budget_share"), "{stderr}");
    assert!(stderr.contains("used 25 of the 25"), "{stderr}");
    assert!(!stderr.contains("resumes"), "{stderr}");
    assert_eq!(api_requests(&env), before, "a spent day sends nothing");

    // A raised share applies the same day: half of the 100 calls leaves 25 more.
    let config = std::fs::read_to_string(&env.config_path).expect("config");
    std::fs::write(
        &env.config_path,
        connector_lines(config, "api_budget_share = 0.5"),
    )
    .expect("config written");
    let third = leadscore(pull_args(&env.config_path, false), vars).await;
    let stderr = text(&third.stderr);
    assert_eq!(third.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("used 50 of the 50"), "{stderr}");
    assert_eq!(api_requests(&env), before + 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_budget_spent_before_first_page() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    // A share of 3 calls ends in the check, before any page.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 12})),
    )
    .await;
    let vars = salesforce_env_vars(&env, &env.sandbox.options().refresh_token.clone());
    let output = leadscore(pull_args(&env.config_path, false), vars).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no progress was made"), "{stderr}");
    assert!(stderr.contains("3 of them in this run"), "{stderr}");
    assert_eq!(api_requests(&env), 3);
    let store = env.store();
    assert_eq!(stored_total(&env, &store), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_pull_json_reports_budget() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 1_000_000})),
    )
    .await;
    let vars = salesforce_env_vars(&env, &env.sandbox.options().refresh_token.clone());
    let first = leadscore(pull_args(&env.config_path, true), vars.clone()).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let report: Value = serde_json::from_slice(&first.stdout).expect("pull report");
    let first_calls = api_requests(&env);
    assert!(report["pulled"].as_u64().expect("pulled") > 0);
    assert_eq!(report["budget"]["used_this_run"], json!(first_calls));
    assert_eq!(report["budget"]["used_today"], json!(first_calls));
    assert_eq!(report["budget"]["allowance_today"], json!(250_000));

    let second = leadscore(pull_args(&env.config_path, true), vars).await;
    assert!(second.status.success(), "{}", text(&second.stderr));
    let report: Value = serde_json::from_slice(&second.stdout).expect("pull report");
    let second_calls = api_requests(&env) - first_calls;
    assert_eq!(report["budget"]["used_this_run"], json!(second_calls));
    assert_eq!(
        report["budget"]["used_today"],
        json!(first_calls + second_calls)
    );
    assert_eq!(report["budget"]["allowance_today"], json!(250_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_locked_row_sends_bounded() {
    let env = salesforce(|text| text).await;
    let base = env.sandbox.url();
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let accounts = store.records("Account").expect("accounts");
    let rows: Vec<leadscore::store::ScoreRow> = accounts
        .iter()
        .take(3)
        .enumerate()
        .map(|(index, record)| leadscore::store::ScoreRow {
            object: "Account".into(),
            id: record.id.clone(),
            name: String::new(),
            owner_id: None,
            probability: 0.5,
            score: 40.0 + index as f64,
            tier: "B".into(),
            reasons: vec![format!("+ reason {index}")],
            hint: None,
            sales_ready: None,
            model_version: "lock-test-1".into(),
            scored_at: chrono::Utc::now(),
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect();
    store.replace_scores(&rows).expect("scores stored");
    let locked = rows[1].id.clone();
    control(
        &base,
        reqwest::Method::POST,
        "/locks",
        Some(json!({"ids": [locked], "times": 100})),
    )
    .await;
    let mark = env.handle().request_log().len();

    let started = Instant::now();
    let report = leadscore::writeback::push(
        &connector,
        &store,
        &env.config,
        &Default::default(),
        chrono::Utc::now(),
    )
    .await
    .expect("push");
    let elapsed = started.elapsed();

    let mut sends = std::collections::HashMap::<String, u64>::new();
    for request in &env.handle().request_log()[mark..] {
        if request.method != "PATCH" || !request.path.ends_with("/composite/sobjects") {
            continue;
        }
        let body: Value = serde_json::from_str(&request.body).expect("JSON body");
        for record in body["records"].as_array().expect("records") {
            let id = record["id"].as_str().expect("id").to_string();
            *sends.entry(id).or_default() += 1;
        }
    }
    assert_eq!(sends.get(&locked), Some(&4), "one send and three resends");
    assert_eq!(sends.get(&rows[0].id), Some(&1));
    assert_eq!(sends.get(&rows[2].id), Some(&1));
    assert_eq!(report.written, 2);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].id, locked);
    assert!(report.failed[0].retryable);
    assert!(elapsed < Duration::from_secs(5), "push took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_log_has_no_secrets() {
    let env =
        salesforce(|text| connector_lines(text, "refresh_token_file = \"refresh-token\"")).await;
    let base = env.sandbox.url();
    let old = env.sandbox.options().refresh_token.clone();
    control(&base, reqwest::Method::POST, "/refresh-token/rotate", None).await;
    add_fault(
        &base,
        json!({"method": "GET", "path": QUERY_ALL, "nth": 2, "expire_tokens": true}),
    )
    .await;
    let vars = salesforce_env_vars(&env, &old);
    let args = pull_args(&env.config_path, false);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .arg("-vv")
            .envs(vars)
            .env("RUST_LOG", "trace")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join");
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{log}");
    assert!(log.contains("TRACE"), "trace logging was on");

    let rotated = current_refresh_token(&base).await.expect("rotated");
    let client_secret = env.sandbox.options().client_secret.clone();
    let mut secrets = vec![old, rotated, client_secret];
    for request in env.handle().request_log() {
        if let Some(token) = request
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
        {
            secrets.push(token.to_string());
        }
    }
    assert!(secrets.len() > 4, "access tokens were collected");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "the log contains a secret");
        // The part after the org id of an access token is its secret part.
        if let Some((_, tail)) = secret.split_once('!') {
            assert!(
                !log.contains(tail),
                "the log contains part of an access token"
            );
        }
    }
}

/// How the oversize server sends its large body.
#[derive(Clone, Copy)]
enum Oversize {
    /// A `Content-Length` above the cap, and only a few bytes.
    DeclaredLength,
    /// Chunked encoding without a length, up to twice the cap or until the client hangs up.
    Streamed,
}

/// Starts a loopback proxy over raw TCP in front of the Salesforce sandbox. It forwards every
/// request and rewrites the token response's instance URL to itself. Once `oversize` is set,
/// every request except the token request gets a body above the JSON cap.
async fn oversize_proxy(sandbox: String, oversize: Arc<Mutex<Option<Oversize>>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let proxy = base.clone();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (proxy, sandbox, client) = (proxy.clone(), sandbox.clone(), client.clone());
            let mode = *oversize.lock().unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut lines = head.lines();
                let request_line: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
                let (method, target) = (request_line[0], request_line[1]);
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().into()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .and_then(|(_, value)| value.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if socket.read_exact(&mut body).await.is_err() {
                    return;
                }
                let token_request = target.starts_with(SF_TOKEN);
                let response = match mode {
                    Some(mode) if !token_request => oversize_response(mode),
                    _ => {
                        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                        let mut request = client.request(method, format!("{sandbox}{target}"));
                        for (name, value) in &headers {
                            if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                                request = request.header(name, value);
                            }
                        }
                        let forwarded = request.body(body).send().await.expect("forwarded");
                        let status = forwarded.status().as_u16();
                        let kind = forwarded
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("application/json")
                            .to_string();
                        let text = forwarded.text().await.expect("sandbox body");
                        let text = text.replace(&sandbox, &proxy);
                        let mut response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n",
                            text.len()
                        )
                        .into_bytes();
                        response.extend_from_slice(text.as_bytes());
                        vec![response]
                    }
                };
                for part in response {
                    if socket.write_all(&part).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

/// Builds the parts of a response above the JSON cap: one declared too long, or one that
/// streams chunks up to twice the cap.
fn oversize_response(mode: Oversize) -> Vec<Vec<u8>> {
    let cap = leadscore_connector::http::JSON_BODY_CAP;
    match mode {
        Oversize::DeclaredLength => vec![format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{{\"a\":",
            cap + 1
        )
        .into_bytes()],
        Oversize::Streamed => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let chunk = vec![b' '; 1 << 20];
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            let mut parts = vec![head.as_bytes().to_vec()];
            parts.extend(std::iter::repeat_n(framed, ((2 * cap) >> 20) as usize));
            parts
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_oversize_response_fails_request() {
    let oversize = Arc::new(Mutex::new(None));
    let env = salesforce(|text| text).await;
    let proxy = oversize_proxy(env.sandbox.url(), oversize.clone()).await;
    let text = std::fs::read_to_string(&env.config_path)
        .expect("config")
        .replace(&env.sandbox.url(), &proxy);
    let config = Config::parse(&text, &env.config_path, env.dir.path())
        .unwrap_or_else(|error| panic!("{error}"));
    let store = env.store();
    let connector = leadscore::run::connect(&config, env.secrets()).expect("connector");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("first pull through the proxy");
    assert_store_matches_org(&env, &store);
    let stored_before = stored_total(&env, &store);

    for mode in [Oversize::DeclaredLength, Oversize::Streamed] {
        *oversize.lock().unwrap() = Some(mode);
        let connector = leadscore::run::connect(&config, env.secrets()).expect("connector");
        let error = pipeline::pull(&connector, &store, &config)
            .await
            .expect_err("an oversize response fails the pull")
            .to_string();
        let cap = leadscore_connector::http::JSON_BODY_CAP.to_string();
        assert!(error.contains(&cap), "{error}");
        assert!(error.contains(&proxy), "{error}");
        assert!(
            !error.contains('?'),
            "the URL is shown without its query: {error}"
        );
        assert_eq!(stored_total(&env, &store), stored_before);
        assert_store_matches_org(&env, &store);
    }
}

// ---- HubSpot setup ----

struct HubSpotEnv {
    sandbox: RunningHubSpot,
    dir: tempfile::TempDir,
    config: Config,
}

/// Starts a HubSpot sandbox with limits high enough that only the tests that lower them wait.
async fn hubspot(edit: impl FnOnce(String) -> String) -> HubSpotEnv {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        private_app_ten_second_limit: 100_000,
        oauth_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    };
    let sandbox = HubSpotSandbox::new(org.records, options)
        .expect("sandbox accepts the demo org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens on loopback");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = leadscore::demo::hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    );
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, edit(text)).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    HubSpotEnv {
        sandbox,
        dir,
        config,
    }
}

/// Switches a HubSpot sandbox configuration from the private app token to OAuth.
fn oauth_lines(text: String, extra: &str) -> String {
    let client_id = HubSpotOptions::default().client_id;
    text.replacen(
        "token_env = \"LEADSCORE_HUBSPOT_TOKEN\"",
        &format!(
            "client_id = {client_id:?}\nclient_secret_env = \"LS_HS_SECRET\"\n\
             refresh_token_env = \"LS_HS_REFRESH\"\n{extra}"
        ),
        1,
    )
}

fn oauth_secrets(refresh_token: &str) -> ConnectorSecrets {
    ConnectorSecrets::HubSpotOAuth(Secrets {
        client_secret: SecretString::from(HubSpotOptions::default().client_secret),
        refresh_token: SecretString::from(refresh_token.to_string()),
    })
}

fn private_token() -> ConnectorSecrets {
    ConnectorSecrets::HubSpotToken(SecretString::from(
        HubSpotOptions::default().private_app_token,
    ))
}

impl HubSpotEnv {
    fn oauth_connector(&self) -> AnyConnector {
        let token = self.sandbox.options().refresh_token.clone();
        leadscore::run::connect(&self.config, oauth_secrets(&token)).expect("connector")
    }

    /// Creates the write-back properties, which a pull's mapping check requires, and resets
    /// the request counts.
    async fn create_properties(&self, secrets: ConnectorSecrets) {
        let connector = leadscore::run::connect(&self.config, secrets).expect("connector");
        leadscore::setup::fix(&connector, &self.config)
            .await
            .expect("check --fix creates the properties");
        reset_requests(&self.sandbox.url()).await;
    }
}

/// Asserts that the store contains the portal's live companies and deals.
fn assert_hubspot_store_matches(env: &HubSpotEnv, store: &Store) {
    for (object, kind) in [
        ("Account", ObjectType::Companies),
        ("Opportunity", ObjectType::Deals),
    ] {
        let stored: BTreeSet<String> = store
            .records(object)
            .expect("stored records")
            .into_iter()
            .filter(|r| !r.deleted)
            .map(|r| r.id)
            .collect();
        let live: BTreeSet<String> = env.sandbox.handle().ids(kind).into_iter().collect();
        assert_eq!(stored, live, "{object} records in the store");
    }
}

// ---- HubSpot tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_token_expired_mid_pull() {
    let env = hubspot(|text| oauth_lines(text, "")).await;
    let base = env.sandbox.url();
    let token = env.sandbox.options().refresh_token.clone();
    env.create_properties(oauth_secrets(&token)).await;
    add_fault(
        &base,
        json!({"method": "POST", "path": "/crm/v3/objects/contacts/search", "nth": 3,
               "expire_tokens": true}),
    )
    .await;
    let connector = env.oauth_connector();
    let store = Store::open(&env.config.store_path).expect("store");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull survives the expired token");

    assert_eq!(request_count(&base, "POST", HS_TOKEN).await, 2);
    let rejected = env
        .sandbox
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(rejected, 1, "only the third contacts page was rejected");
    assert_hubspot_store_matches(&env, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_concurrent_401s_one_refresh() {
    let env = hubspot(|text| oauth_lines(text, "")).await;
    let base = env.sandbox.url();
    let connector = Arc::new(env.oauth_connector());
    connector.check().await.expect("first token");
    control(&base, reqwest::Method::POST, "/tokens/expire", None).await;
    reset_requests(&base).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let connector = connector.clone();
        tasks.spawn(async move { connector.check().await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("check after renewal");
    }
    assert_eq!(request_count(&base, "POST", HS_TOKEN).await, 1);
    // Calls that start while the renewal runs wait for it and are not rejected first.
    let rejected = rejected_since(&env.sandbox.handle().request_log(), "/crm/v3/owners");
    assert!(rejected >= 1, "at least one call saw the expired token");
    let owners = request_count(&base, "GET", "/crm/v3/owners").await;
    assert_eq!(owners, 20 + rejected, "each rejected call repeated once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_rotated_token_in_file() {
    let env = hubspot(|text| oauth_lines(text, "refresh_token_file = \"refresh-token\"")).await;
    let base = env.sandbox.url();
    let old = env.sandbox.options().refresh_token.clone();
    let file = env.dir.path().join("refresh-token");
    control(&base, reqwest::Method::POST, "/refresh-token/rotate", None).await;

    env.oauth_connector()
        .check()
        .await
        .expect("check after rotation");
    let rotated = current_refresh_token(&base).await.expect("rotated token");
    assert_ne!(rotated, old);
    let in_file = std::fs::read_to_string(&file).expect("token file written");
    assert_eq!(in_file.trim(), rotated);

    // A restart reads the file in preference to the old token of the environment.
    let secrets = {
        let _guard = EnvGuard::set(&[
            (
                "LS_HS_SECRET",
                HubSpotOptions::default().client_secret.as_str(),
            ),
            ("LS_HS_REFRESH", old.as_str()),
        ]);
        env.config.secrets().expect("secrets")
    };
    let ConnectorSecrets::HubSpotOAuth(read) = &secrets else {
        panic!("OAuth secrets expected");
    };
    assert_eq!(read.refresh_token.expose_secret(), rotated);
    let restarted = leadscore::run::connect(&env.config, secrets).expect("connector");
    restarted
        .check()
        .await
        .expect("restart with the rotated token");

    let stale = leadscore::run::connect(&env.config, oauth_secrets(&old)).expect("connector");
    let error = stale.check().await.expect_err("old refresh token refused");
    assert!(matches!(error, ConnectorError::Auth(_)), "{error}");
}

/// Sets environment variables for one scope. Only this test file's HubSpot test reads them.
struct EnvGuard(Vec<&'static str>);

impl EnvGuard {
    fn set(pairs: &[(&'static str, &str)]) -> EnvGuard {
        for (name, value) in pairs {
            std::env::set_var(name, value);
        }
        EnvGuard(pairs.iter().map(|(name, _)| *name).collect())
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            std::env::remove_var(name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_retry_after_honoured() {
    let env = hubspot(|text| text).await;
    let base = env.sandbox.url();
    add_fault(
        &base,
        json!({
            "method": "GET", "path": "/crm/v3/owners", "status": 429,
            "headers": {"Retry-After": "1"},
            "body": {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                     "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
        }),
    )
    .await;
    let connector = leadscore::run::connect(&env.config, private_token()).expect("connector");
    let started = Instant::now();
    connector.check().await.expect("check after the retry");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "waited the burst backoff instead: {waited:?}"
    );
    assert_eq!(request_count(&base, "GET", "/crm/v3/owners").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_daily_limit_not_retried() {
    let env = hubspot(|text| text).await;
    let base = env.sandbox.url();
    add_fault(
        &base,
        json!({
            "method": "GET", "path": "/crm/v3/owners", "status": 429, "count": 5,
            "body": {"status": "error", "message": "You have reached your daily limit.",
                     "errorType": "RATE_LIMIT", "policyName": "DAILY"},
        }),
    )
    .await;
    let connector = leadscore::run::connect(&env.config, private_token()).expect("connector");
    let error = connector.check().await.expect_err("daily limit");
    assert!(matches!(error, ConnectorError::LimitExceeded(_)), "{error}");
    assert_eq!(request_count(&base, "GET", "/crm/v3/owners").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_limiter_stays_in_window() {
    let env = hubspot(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"ten_second_max": 20, "window_ms": 1000})),
    )
    .await;
    let connector =
        Arc::new(leadscore::run::connect(&env.config, private_token()).expect("connector"));
    // The first response reports the window, which sizes the client's limiter.
    connector.check().await.expect("check");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reset_requests(&base).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let connector = connector.clone();
        tasks.spawn(async move { connector.check().await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("check within the limit");
    }
    let rate_limited = env
        .sandbox
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(rate_limited, 0, "the client stayed under the window");
    // 90% of 20 a second is 18 calls per padded window of 1.2 seconds, so 40 calls need at
    // least two more windows.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2300), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_budget_spent_then_resumed() {
    let env = hubspot(|text| text).await;
    let base = env.sandbox.url();
    env.create_properties(private_token()).await;
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_used": 0})),
    )
    .await;
    // 25% of 60 remaining calls: 15 calls, which ends the pull early.
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 60})),
    )
    .await;
    let store = Store::open(&env.config.store_path).expect("store");

    let connector = leadscore::run::connect(&env.config, private_token()).expect("connector");
    let error = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect_err("budget spent");
    let text = error.to_string();
    assert!(
        matches!(
            error,
            leadscore::pipeline::PipelineError::Connector(ConnectorError::BudgetSpent(_))
        ),
        "{text}"
    );
    assert!(text.contains("used 15 of the 15"), "{text}");
    assert_eq!(env.sandbox.handle().daily_usage().0, 15);

    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"daily_max": 1_000_000})),
    )
    .await;
    let connector = leadscore::run::connect(&env.config, private_token()).expect("connector");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("the next run finishes the pull");
    assert_hubspot_store_matches(&env, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_searches_stay_under_per_second_limit() {
    let env = hubspot(|text| text).await;
    let base = env.sandbox.url();
    control(
        &base,
        reqwest::Method::POST,
        "/limits",
        Some(json!({"search_per_second": 4})),
    )
    .await;
    let connector =
        Arc::new(leadscore::run::connect(&env.config, private_token()).expect("connector"));
    connector.check().await.expect("check");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reset_requests(&base).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let connector = connector.clone();
        tasks.spawn(async move {
            let spec = leadscore_connector::PullSpec {
                object: "Contact".to_string(),
                fields: vec!["FirstName".to_string()],
                include_deleted: false,
            };
            connector.pull_first(&spec, None).await.map(|_| ())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("search within the limit");
    }
    let log = env.sandbox.handle().request_log();
    let searches = log.iter().filter(|r| r.path.ends_with("/search")).count();
    let rate_limited = log.iter().filter(|r| r.status == 429).count();
    assert!(searches >= 12, "only {searches} searches");
    assert_eq!(rate_limited, 0, "the client stayed under the search limit");
    // Four searches per padded window of 1.1 seconds: twelve need at least two more windows.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2200), "took {elapsed:?}");
}
