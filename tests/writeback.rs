//! Write-back against the sandboxes over HTTP: the plan, the journal and its reconciliation,
//! transient and permanent per-record failures, batches rejected as a whole, echoes of
//! leadscore's own writes, tier values the tier field does not allow, and pushes planned in
//! chunks of score rows.
//!
//! Scores are written into the store directly (no training), so each test controls exactly
//! which records change.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use chrono::{DateTime, Utc};
use common::Env;
use leadscore::config::{Config, ConnectorSecrets};
use leadscore::pipeline::{self, PipelineError};
use leadscore::store::{JournalEntry, JournalWrite, ScoreRow, Store};
use leadscore::writeback;
use leadscore_connector::{
    Connector, ConnectorError, Cursor, ObjectSchema, Page, PullSpec, RecordUpdate, WriteOutcome,
};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, LoggedRequest, SandboxOptions};
use secrecy::SecretString;

const TIERS: [&str; 4] = ["A", "B", "C", "D"];

fn scored_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// Replaces the store's account scores with `count` rows for the first stored accounts, each
/// score raised by `bump`.
fn write_scores(store: &Store, count: usize, bump: f64) -> Vec<ScoreRow> {
    let records = store.records("Account").expect("accounts");
    assert!(records.len() >= count, "only {} accounts", records.len());
    let rows: Vec<ScoreRow> = records
        .iter()
        .take(count)
        .enumerate()
        .map(|(index, record)| ScoreRow {
            object: "Account".into(),
            id: record.id.clone(),
            name: String::new(),
            owner_id: None,
            probability: 0.5,
            score: 10.0 + index as f64 + bump,
            tier: TIERS[index % 4].into(),
            reasons: vec![format!("+ reason {index}")],
            hint: None,
            sales_ready: None,
            model_version: "test-model-1".into(),
            scored_at: scored_at(),
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect();
    store.replace_scores(&rows).expect("scores stored");
    rows
}

/// Returns how many successful collection updates carried each record id.
fn sent_ids(log: &[LoggedRequest]) -> HashMap<String, usize> {
    let mut sent = HashMap::new();
    for request in log {
        if request.method != "PATCH"
            || !request.path.ends_with("/composite/sobjects")
            || request.status != 200
        {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
        for record in body["records"].as_array().expect("records") {
            let id = record["id"].as_str().expect("id").to_string();
            *sent.entry(id).or_default() += 1;
        }
    }
    sent
}

async fn pulled(env: &Env) -> (Store, leadscore::run::AnyConnector) {
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    (store, connector)
}

async fn push(env: &Env, store: &Store, connector: &impl Connector) -> writeback::PushReport {
    writeback::push(connector, store, &env.config, &BTreeMap::new(), Utc::now())
        .await
        .expect("push")
}

/// Sends a JSON request to the sandbox's fault-injection endpoint.
async fn control(base: &str, path: &str, body: serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/__sandbox/{path}"))
        .json(&body)
        .send()
        .await
        .expect("control request");
    assert!(
        response.status().is_success(),
        "control {path}: {}",
        response.status()
    );
}

fn run_binary(env: &Env, args: &[&str]) -> std::process::Output {
    let options = env.sandbox.options();
    std::process::Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(args)
        .arg("--config")
        .arg(&env.config_path)
        .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
        .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
        .output()
        .expect("binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_changes_without_writing() {
    let env = Env::start(SandboxOptions::default()).await;
    let (store, _) = pulled(&env).await;
    let rows = write_scores(&store, 12, 0.0);
    drop(store);
    let mark = env.handle().request_log().len();

    let output = {
        let env = &env;
        tokio::task::block_in_place(|| run_binary(env, &["push", "--plan", "--json"]))
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(plan["changes"], 12, "{plan}");
    assert_eq!(plan["by_object"]["Account"], 12);
    assert_eq!(plan["by_field"]["LS_Score__c"], 12);
    assert_eq!(plan["by_field"]["LS_Tier__c"], 12);
    let records = plan["records"].as_array().expect("records list");
    assert_eq!(records.len(), 12);
    let first = records
        .iter()
        .find(|r| r["id"] == rows[1].id.as_str())
        .expect("second scored account listed");
    assert_eq!(first["object"], "Account");
    let score = first["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == "LS_Score__c")
        .expect("score change");
    assert!(score["old"].is_null(), "{score}");
    assert_eq!(score["new"], rows[1].score);

    let log = env.handle().request_log();
    let writes: Vec<&LoggedRequest> = log[mark..]
        .iter()
        .filter(|r| r.method != "GET")
        .filter(|r| r.path != "/services/oauth2/token")
        .collect();
    assert!(writes.is_empty(), "the plan sent {writes:?}");
    let store = env.store();
    assert!(store.written().expect("written").is_empty());
    assert!(store.journal().expect("journal").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_reconciled_without_resending() {
    let env = Env::start(SandboxOptions::default()).await;
    let (store, connector) = pulled(&env).await;
    write_scores(&store, 6, 0.0);
    let reasons_max_len = BTreeMap::new();
    let mut planner = writeback::PushPlanner::new(
        &store,
        &env.config,
        &reasons_max_len,
        Utc::now(),
        writeback::PLAN_CHUNK_ROWS,
    )
    .expect("planner");
    let plan = planner.next_chunk().expect("plan").expect("one chunk");
    assert_eq!(plan.writes.len(), 6);
    // A push that stopped after journalling six writes, of which the CRM received three.
    let (applied, lost) = plan.writes.split_at(3);
    let updates: Vec<RecordUpdate> = applied.iter().map(|w| w.update.clone()).collect();
    let outcomes = connector.update(&updates).await.expect("update");
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    let entry = JournalEntry {
        object: "Account".into(),
        level: leadscore::level::Level::Account,
        started_at: Utc::now(),
        writes: plan
            .writes
            .iter()
            .map(|w| JournalWrite {
                id: w.update.id.clone(),
                fields: w.update.fields.clone(),
                values: w.values.clone(),
            })
            .collect(),
    };
    store.begin_batch(&entry).expect("journalled");
    let mark = env.handle().request_log().len();

    let report = push(&env, &store, &connector).await;
    assert_eq!(report.reconciled, 3, "{report:?}");
    assert_eq!(report.written, 3, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sent = sent_ids(&env.handle().request_log()[mark..]);
    for write in applied {
        assert_eq!(
            sent.get(&write.update.id),
            None,
            "{} sent again",
            write.update.id
        );
    }
    for write in lost {
        assert_eq!(
            sent.get(&write.update.id),
            Some(&1),
            "{} not sent once",
            write.update.id
        );
    }
    assert!(store.journal().expect("journal").is_empty());
    assert_eq!(store.written().expect("written").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_lock_retried_then_written() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("max_retries = 4", "max_retries = 1")
    })
    .await;
    let (store, connector) = pulled(&env).await;
    let rows = write_scores(&store, 4, 0.0);
    let locked = rows[2].id.clone();
    // The connector sends each write once, so the push itself resends the locked record.
    control(
        &env.sandbox.url(),
        "locks",
        serde_json::json!({"ids": [locked], "times": 3}),
    )
    .await;
    let mark = env.handle().request_log().len();

    let report = push(&env, &store, &connector).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written, 4);
    assert!(report.retried >= 1, "{report:?}");
    let sent = sent_ids(&env.handle().request_log()[mark..]);
    assert_eq!(
        sent.get(&locked),
        Some(&4),
        "three locked sends and one success"
    );
    assert_eq!(sent.get(&rows[0].id), Some(&1));
    let record = env.handle().record("Account", &locked).expect("account");
    assert_eq!(record["LS_Score__c"].as_f64(), Some(rows[2].score));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_held_until_values_change() {
    let env = Env::start(SandboxOptions::default()).await;
    let (store, connector) = pulled(&env).await;
    let rows = write_scores(&store, 5, 0.0);
    let rejected = rows[0].id.clone();
    env.handle().fail_writes(
        &rejected,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Score locked by admin",
    );

    let first = push(&env, &store, &connector).await;
    assert_eq!(first.written, 4);
    assert_eq!(first.failed.len(), 1, "{:?}", first.failed);
    let failure = &first.failed[0];
    assert_eq!(failure.id, rejected);
    assert_eq!(failure.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    assert!(failure.hint.contains("validation rule"), "{}", failure.hint);
    assert!(!failure.held);
    assert!(!failure.retryable);

    let mark = env.handle().request_log().len();
    let second = push(&env, &store, &connector).await;
    assert_eq!(second.planned, 1, "{second:?}");
    assert_eq!(second.written, 0);
    assert_eq!(second.failed.len(), 1);
    assert!(second.failed[0].held, "{:?}", second.failed);
    assert!(second.failed[0].hint.contains("validation rule"));
    let sent = sent_ids(&env.handle().request_log()[mark..]);
    assert!(sent.is_empty(), "nothing is sent: {sent:?}");

    // New values for every record: the held one is sent again, once.
    write_scores(&store, 5, 1.0);
    let mark = env.handle().request_log().len();
    let third = push(&env, &store, &connector).await;
    assert_eq!(third.written, 4, "{third:?}");
    assert_eq!(third.failed.len(), 1);
    assert!(!third.failed[0].held);
    let sent = sent_ids(&env.handle().request_log()[mark..]);
    assert_eq!(sent.get(&rejected), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_pulled_as_echoes() {
    let env = Env::start(SandboxOptions::default()).await;
    let (store, connector) = pulled(&env).await;
    let rows = write_scores(&store, 8, 0.0);
    let first = push(&env, &store, &connector).await;
    assert_eq!(first.written, 8, "{first:?}");

    // A user edits one written account, so its change is not an echo.
    let mut fields = serde_json::Map::new();
    fields.insert("Name".into(), "Renamed Hospital".into());
    env.handle()
        .update_record("Account", &rows[3].id, fields)
        .expect("edit");
    let pull = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let accounts = pull
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .expect("accounts pulled");
    assert_eq!(accounts.pulled, 8, "{pull:?}");
    assert_eq!(accounts.echoed, 7, "{pull:?}");
    assert_eq!(pull.echoed, 7);

    let mark = env.handle().request_log().len();
    let second = push(&env, &store, &connector).await;
    assert_eq!(second.planned, 0, "{second:?}");
    assert_eq!(second.written, 0);
    assert!(sent_ids(&env.handle().request_log()[mark..]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_outside_picklist_rejected() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace(
            r#"labels = ["A", "B", "C", "D"]"#,
            r#"labels = ["A", "B", "C", "Cold"]"#,
        )
    })
    .await;
    let (store, connector) = pulled(&env).await;
    write_scores(&store, 3, 0.0);
    let mark = env.handle().request_log().len();
    let error = writeback::push(
        &connector,
        &store,
        &env.config,
        &BTreeMap::new(),
        Utc::now(),
    )
    .await
    .expect_err("the tier label is rejected");
    let PipelineError::Config(message) = error else {
        panic!("expected a configuration error, got {error:?}");
    };
    assert!(message.contains("\"Cold\""), "{message}");
    assert!(message.contains("A, B, C, D"), "{message}");
    assert!(sent_ids(&env.handle().request_log()[mark..]).is_empty());
    drop(store);

    let output = {
        let env = &env;
        tokio::task::block_in_place(|| run_binary(env, &["push"]))
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Cold"), "{stderr}");
    assert!(stderr.contains("A, B, C, D"), "{stderr}");
}

/// A HubSpot sandbox scoring accounts, with the write-back properties created and one pull
/// stored.
struct HubSpotEnv {
    sandbox: leadscore_sandbox::RunningHubSpot,
    _dir: tempfile::TempDir,
    config: Config,
    connector: leadscore::run::AnyConnector,
    store: Store,
}

async fn hubspot_env(edit: impl FnOnce(String) -> String) -> HubSpotEnv {
    let org = leadscore_demo_org::generate(&leadscore_demo_org::DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..Default::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        private_app_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    };
    let sandbox = HubSpotSandbox::new(org.records, options.clone())
        .expect("HubSpot sandbox accepts the demo org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens on loopback");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = leadscore::demo::hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    )
    .replace(common::ALL_LEVELS, r#"levels = ["account"]"#);
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, edit(text)).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let connector = leadscore::run::connect(
        &config,
        ConnectorSecrets::HubSpotToken(SecretString::from(options.private_app_token.clone())),
    )
    .expect("connector");
    leadscore::setup::fix(&connector, &config)
        .await
        .expect("properties created");
    let store = Store::open(&config.store_path).expect("store");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("pull");
    HubSpotEnv {
        sandbox,
        _dir: dir,
        config,
        connector,
        store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_batch_split_to_bad_row() {
    let env = hubspot_env(|text| text).await;
    let (sandbox, config, connector, store) =
        (&env.sandbox, &env.config, &env.connector, &env.store);
    let mut rows = write_scores(store, 8, 0.0);
    // A scored-at time in the year 10000 has a five-digit year, which the connector sends and
    // the HubSpot sandbox rejects as an invalid datetime, failing the whole batch with 400.
    rows[5].scored_at = DateTime::parse_from_rfc3339("9999-12-31T00:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
        + chrono::Duration::days(400);
    store.replace_scores(&rows).expect("scores");

    let report = writeback::push(connector, store, config, &BTreeMap::new(), Utc::now())
        .await
        .expect("push");
    assert_eq!(report.written, 7, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].id, rows[5].id);
    assert!(!report.failed[0].retryable);
    let handle = sandbox.handle();
    let score_property = &config.writeback.score_field;
    for (index, row) in rows.iter().enumerate() {
        let properties = handle
            .properties(ObjectType::Companies, &row.id)
            .expect("company");
        let score = properties.get(score_property).cloned().unwrap_or_default();
        if index == 5 {
            assert!(score.is_empty(), "the bad row was written: {score}");
        } else {
            assert_eq!(score.parse::<f64>().ok(), Some(row.score), "{}", row.id);
        }
    }
    let updates = handle
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/batch/update"))
        .count();
    assert!(updates > 1, "the batch was not split: {updates} requests");
    assert!(store.journal().expect("journal").is_empty());

    // Batch read, which reconciliation uses, returns the written values under the
    // configuration's field names.
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let fields = vec![
        config.writeback.score_field.clone(),
        config.writeback.tier_field.clone(),
    ];
    let fetched = connector
        .fetch("Account", &ids, &fields)
        .await
        .expect("batch read");
    assert_eq!(fetched.len(), rows.len());
    let first = fetched
        .iter()
        .find(|r| r.id == rows[0].id)
        .expect("first account read");
    assert_eq!(first.get(&fields[0]).as_f64(), Some(rows[0].score));
    assert_eq!(first.get(&fields[1]).as_str(), Some(rows[0].tier.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_read_back_then_resent() {
    let env = hubspot_env(|text| text.replace("max_retries = 4", "max_retries = 1")).await;
    let rows = write_scores(&env.store, 3, 0.0);
    // Two 503s outlast the connector's one retry, so the push reads the records back.
    control(
        &env.sandbox.url(),
        "faults",
        serde_json::json!({
            "method": "POST",
            "path": "/crm/v3/objects/companies/batch/update",
            "count": 2,
            "status": 503,
            "body": {"status": "error", "category": "SERVICE_UNAVAILABLE", "message": "try again"},
        }),
    )
    .await;
    let report = writeback::push(
        &env.connector,
        &env.store,
        &env.config,
        &BTreeMap::new(),
        Utc::now(),
    )
    .await
    .expect("push");
    assert_eq!(report.written, 3, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let log = env.sandbox.handle().request_log();
    let reads = log
        .iter()
        .filter(|r| r.path == "/crm/v3/objects/companies/batch/read")
        .count();
    assert_eq!(reads, 1, "one read-back after the failed request");
    let updates: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.path == "/crm/v3/objects/companies/batch/update")
        .collect();
    assert_eq!(updates.len(), 3, "two failed sends and one resend");
    assert_eq!(updates[2].status, 200);
    let properties = env
        .sandbox
        .handle()
        .properties(ObjectType::Companies, &rows[1].id)
        .expect("company");
    let score = properties.get(&env.config.writeback.score_field).cloned();
    assert_eq!(
        score.and_then(|s| s.parse::<f64>().ok()),
        Some(rows[1].score)
    );
}

/// Score rows per planned chunk in the chunked tests: smaller than the 25 rows scored, and
/// not a multiple of their batch size of 3, so batches span chunk boundaries.
const SMALL_CHUNK: usize = 4;

async fn push_in_small_chunks(
    env: &Env,
    store: &Store,
    connector: &impl Connector,
) -> writeback::PushReport {
    writeback::push_in_chunks(
        connector,
        store,
        &env.config,
        &BTreeMap::new(),
        Utc::now(),
        SMALL_CHUNK,
    )
    .await
    .expect("push")
}

/// Counts the successful collection updates in a request log.
fn update_requests(log: &[LoggedRequest]) -> usize {
    log.iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/composite/sobjects"))
        .filter(|r| r.status == 200)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_push_writes_only_changes() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("batch_size = 200", "batch_size = 3")
    })
    .await;
    let (store, connector) = pulled(&env).await;
    let rows = write_scores(&store, 25, 0.0);

    let mark = env.handle().request_log().len();
    let first = push_in_small_chunks(&env, &store, &connector).await;
    assert_eq!(first.planned, 25, "{first:?}");
    assert_eq!(first.written, 25);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let log = env.handle().request_log();
    let sent = sent_ids(&log[mark..]);
    assert_eq!(sent.len(), 25, "{sent:?}");
    assert!(sent.values().all(|&n| n == 1), "{sent:?}");
    // Full batches carry over chunk boundaries: 25 writes in batches of 3 take 9 requests,
    // as many as when the whole level is planned at once.
    assert_eq!(update_requests(&log[mark..]), 9);

    // rows[9] sits in the middle of the third chunk (rows 8 to 11). It is deleted in the CRM
    // and the deletion pulled, but a score run that began before that pull stores its score
    // again, so the push finds a score row for a record the store has a tombstone for.
    let deleted = rows[9].id.clone();
    env.handle()
        .delete_record("Account", &deleted)
        .expect("delete");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let mut rescored = rows.clone();
    let changed = [5, 13, 22];
    for &index in &changed {
        rescored[index].score += 0.5;
    }
    store.replace_scores(&rescored).expect("scores stored");

    let mark = env.handle().request_log().len();
    let second = push_in_small_chunks(&env, &store, &connector).await;
    assert_eq!(second.planned, 3, "{second:?}");
    assert_eq!(second.written, 3);
    assert_eq!(second.unchanged, 21);
    assert_eq!(second.skipped_deleted, 1);
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    let log = env.handle().request_log();
    let sent = sent_ids(&log[mark..]);
    let expected: HashMap<String, usize> = changed
        .iter()
        .map(|&index| (rows[index].id.clone(), 1))
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(
        update_requests(&log[mark..]),
        1,
        "three writes from three chunks go in one batch"
    );
    for &index in &changed {
        let record = env
            .handle()
            .record("Account", &rows[index].id)
            .expect("account");
        assert_eq!(record["LS_Score__c"].as_f64(), Some(rescored[index].score));
    }
    assert!(store.journal().expect("journal").is_empty());
}

/// A connector that runs a pull into the store after its first update request, as a pull
/// that lands while a push is under way would.
struct PullAfterFirstUpdate<'a> {
    inner: &'a leadscore::run::AnyConnector,
    store: Store,
    config: &'a Config,
    pulled: std::sync::atomic::AtomicBool,
}

impl Connector for PullAfterFirstUpdate<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn check(&self) -> Result<leadscore_connector::ApiUsage, ConnectorError> {
        self.inner.check().await
    }

    async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        self.inner.describe(object).await
    }

    async fn pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ConnectorError> {
        self.inner.pull_first(spec, cursor).await
    }

    async fn pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        next: &str,
    ) -> Result<Page, ConnectorError> {
        self.inner.pull_next(spec, cursor, next).await
    }

    async fn update(&self, updates: &[RecordUpdate]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let outcomes = self.inner.update(updates).await;
        if !self.pulled.swap(true, std::sync::atomic::Ordering::SeqCst) {
            pipeline::pull(self.inner, &self.store, self.config)
                .await
                .expect("pull during the push");
        }
        outcomes
    }

    async fn fetch(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
        self.inner.fetch(object, ids, fields).await
    }

    fn usage(&self) -> Option<leadscore_connector::ApiUsage> {
        self.inner.usage()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_planned_from_current_store() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("batch_size = 200", "batch_size = 3")
    })
    .await;
    let (store, connector) = pulled(&env).await;
    let rows = write_scores(&store, 25, 0.0);
    // Deleted in the CRM before the push, but pulled only after its first batch. A push that
    // planned every chunk up front would still send this record and get ENTITY_IS_DELETED.
    let deleted = rows[13].id.clone();
    env.handle()
        .delete_record("Account", &deleted)
        .expect("delete");
    let probe = PullAfterFirstUpdate {
        inner: &connector,
        store: store.clone(),
        config: &env.config,
        pulled: std::sync::atomic::AtomicBool::new(false),
    };

    let mark = env.handle().request_log().len();
    let report = push_in_small_chunks(&env, &store, &probe).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written, 24, "{report:?}");
    assert_eq!(report.planned, 24);
    let sent = sent_ids(&env.handle().request_log()[mark..]);
    assert!(!sent.contains_key(&deleted), "the deleted record was sent");
    assert_eq!(sent.len(), 24, "{sent:?}");
    assert!(store
        .tombstone("Account", &deleted)
        .expect("tombstone")
        .is_some());
}
