//! The connector against the Salesforce sandbox over real HTTP on loopback: authentication,
//! paged and incremental pulls, token expiry while paging, writes with per-record failures,
//! the daily request limit, the abort of a timed-out Bulk job, and secrets kept out of logs and
//! `Debug` output.

#[path = "support/capture.rs"]
mod capture;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use leadscore_connector::{
    Connector, ConnectorError, Cursor, FieldKind, Page, PullSpec, Record, RecordUpdate, Value,
};
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use leadscore_sandbox::{RecordMap, RunningSandbox, Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

const ACTIVE_USER: &str = "005000000000001AAA";
const INACTIVE_USER: &str = "005000000000002AAA";
const ACCOUNT: &str = "001000000000001AAA";
const LEAD_COUNT: usize = 7;

fn lead_id(n: usize) -> String {
    format!("00Q00000000000{n}AAA")
}

fn as_map(value: serde_json::Value) -> RecordMap {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("test record is not an object: {other}"),
    }
}

/// Two users, one account, seven leads created one second apart, and two tasks.
fn seed() -> BTreeMap<String, Vec<RecordMap>> {
    let users = vec![
        as_map(json!({"Id": ACTIVE_USER, "Name": "Dana Rep", "IsActive": true})),
        as_map(json!({"Id": INACTIVE_USER, "Name": "Former Rep", "IsActive": false})),
    ];
    let accounts = vec![as_map(json!({
        "Id": ACCOUNT, "Name": "Mercy General", "OwnerId": ACTIVE_USER,
        "CMS_Overall_Rating__c": 4.0
    }))];
    let leads = (1..=LEAD_COUNT)
        .map(|n| {
            let owner = if n % 2 == 0 {
                INACTIVE_USER
            } else {
                ACTIVE_USER
            };
            as_map(json!({
                "Id": lead_id(n),
                "FirstName": format!("Lead{n}"),
                "LastName": "Example",
                "Company": "Mercy General",
                "Status": "Open - Not Contacted",
                "OwnerId": owner,
                "LS_Score__c": n as f64 * 10.0,
                "CreatedDate": format!("2024-05-01T12:00:0{n}.250Z"),
            }))
        })
        .collect();
    let tasks = vec![
        as_map(
            json!({"Id": "00T000000000001AAA", "Subject": "Demo", "WhatId": ACCOUNT,
                      "OwnerId": ACTIVE_USER, "ActivityDate": "2024-05-02"}),
        ),
        as_map(json!({"Id": "00T000000000002AAA", "Subject": "Call", "OwnerId": ACTIVE_USER})),
    ];
    BTreeMap::from([
        ("User".to_string(), users),
        ("Account".to_string(), accounts),
        ("Lead".to_string(), leads),
        ("Task".to_string(), tasks),
    ])
}

async fn start(options: SandboxOptions) -> RunningSandbox {
    Sandbox::new(seed(), options)
        .expect("seed records fit the sandbox schema")
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox binds a loopback port")
}

/// Starts a sandbox that serves at most three rows per query page.
async fn start_paged() -> RunningSandbox {
    start(SandboxOptions {
        page_size: 3,
        ..SandboxOptions::default()
    })
    .await
}

fn config(sandbox: &RunningSandbox) -> SalesforceConfig {
    let options = sandbox.options();
    SalesforceConfig {
        login_url: Url::parse(&sandbox.url()).unwrap(),
        api_version: "59.0".to_string(),
        client_id: options.client_id.clone(),
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
        page_size: Some(200),
        timeout: Duration::from_secs(10),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(2),
        extra_ca_pem: None,
        allow_insecure_http: false,
        bulk_threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
        bulk_objects: Vec::new(),
        bulk_poll_timeout: leadscore_salesforce::DEFAULT_BULK_POLL_TIMEOUT,
    }
}

fn connector(sandbox: &RunningSandbox) -> SalesforceConnector {
    SalesforceConnector::new(config(sandbox)).unwrap()
}

fn lead_spec() -> PullSpec {
    PullSpec {
        object: "Lead".to_string(),
        fields: vec![
            "FirstName".to_string(),
            "LS_Score__c".to_string(),
            "Owner.IsActive".to_string(),
            "Title".to_string(),
        ],
        include_deleted: false,
    }
}

/// Pulls every page and returns the pages.
async fn pull_all(
    connector: &SalesforceConnector,
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Vec<Page> {
    let mut pages = vec![connector.pull_first(spec, cursor).await.unwrap()];
    while let Some(next) = pages.last().and_then(|p| p.next.clone()) {
        pages.push(connector.pull_next(spec, cursor, &next).await.unwrap());
    }
    pages
}

fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn cursor_of(record: &Record) -> Cursor {
    Cursor {
        modstamp: record.modstamp,
        id: record.id.clone(),
    }
}

#[tokio::test]
async fn check_returns_usage() {
    let sandbox = start(SandboxOptions::default()).await;
    let connector = connector(&sandbox);

    let usage = connector.check().await.unwrap();

    let (used, max) = sandbox.handle().api_usage();
    assert_eq!(usage.max, max);
    assert!(
        usage.used >= 1 && usage.used <= used,
        "usage {usage:?}, sandbox {used}"
    );
    assert_eq!(connector.usage(), Some(usage));
    let log = sandbox.handle().request_log();
    assert_eq!(log[0].path, "/services/oauth2/token");
    assert_eq!(log[1].path, "/services/data/v59.0/limits");
    assert_eq!(log[1].status, 200);
}

/// Changes one credential of a working configuration.
type SpoilConfig = fn(&mut SalesforceConfig);

#[tokio::test]
async fn auth_errors_carry_code_and_hint() {
    let sandbox = start(SandboxOptions::default()).await;
    let cases: [(&str, SpoilConfig); 3] = [
        ("invalid_grant", |c| {
            c.refresh_token = SecretString::from("5Aep-revoked")
        }),
        ("invalid_client_id", |c| {
            c.client_id = "3MVG9-unknown".to_string()
        }),
        ("invalid_client", |c| {
            c.client_secret = SecretString::from("wrong-secret")
        }),
    ];
    for (code, spoil) in cases {
        let mut config = config(&sandbox);
        spoil(&mut config);
        let connector = SalesforceConnector::new(config).unwrap();

        let error = connector.check().await.unwrap_err();

        match error {
            ConnectorError::Auth(message) => {
                assert!(message.contains(&format!("{code}:")), "{code}: {message}");
                assert!(
                    message.contains("environment variables"),
                    "{code}: {message}"
                );
            }
            other => panic!("{code}: expected Auth, got {other:?}"),
        }
    }
    let limits_calls = sandbox
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/limits"))
        .count();
    assert_eq!(limits_calls, 0, "no API call without a token");
}

#[tokio::test]
async fn pull_pages_then_incremental() {
    let sandbox = start_paged().await;
    let connector = connector(&sandbox);
    let spec = lead_spec();

    let pages = pull_all(&connector, &spec, None).await;

    let sizes: Vec<usize> = pages.iter().map(|p| p.records.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(pages[0].total, Some(LEAD_COUNT as u64));
    let records: Vec<Record> = pages.into_iter().flat_map(|p| p.records).collect();
    let expected: Vec<String> = (1..=LEAD_COUNT).map(lead_id).collect();
    assert_eq!(ids(&records), expected);
    let second = &records[1];
    assert_eq!(second.object, "Lead");
    assert_eq!(second.get("FirstName"), &Value::Text("Lead2".to_string()));
    assert_eq!(second.get("LS_Score__c"), &Value::Number(20.0));
    assert_eq!(second.get("Owner.IsActive"), &Value::Bool(false));
    assert_eq!(records[0].get("Owner.IsActive"), &Value::Bool(true));
    assert_eq!(second.get("Title"), &Value::Null);
    assert!(!second.deleted);
    // Seeded with 12:00:02.250; Salesforce keeps whole seconds.
    assert_eq!(
        second.modstamp,
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 2).unwrap()
    );

    // The record at the cursor comes back on every incremental pull, because the contract
    // returns ties with the cursor's stamp and leaves dropping copies to the caller.
    let last = records.last().unwrap();
    let cursor = cursor_of(last);
    let unchanged: Vec<Record> = pull_all(&connector, &spec, Some(&cursor))
        .await
        .into_iter()
        .flat_map(|p| p.records)
        .collect();
    assert_eq!(ids(&unchanged), vec![last.id.clone()]);

    sandbox
        .handle()
        .update_record(
            "Lead",
            &lead_id(3),
            as_map(json!({"Title": "Director of Surgery"})),
        )
        .unwrap();
    let changed: Vec<Record> = pull_all(&connector, &spec, Some(&cursor))
        .await
        .into_iter()
        .flat_map(|p| p.records)
        .collect();
    assert_eq!(ids(&changed), vec![last.id.clone(), lead_id(3)]);
    assert_eq!(
        changed[1].get("Title"),
        &Value::Text("Director of Surgery".to_string())
    );
    assert!(changed[1].modstamp > cursor.modstamp);
}

#[tokio::test]
async fn cursor_ties_kept_earlier_dropped() {
    let sandbox = start_paged().await;
    let handle = sandbox.handle();
    let tie = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
    for n in [2, 4, 6] {
        handle
            .set_system_modstamp("Lead", &lead_id(n), tie)
            .unwrap();
    }
    let earlier = tie - chrono::Duration::seconds(1);
    handle
        .set_system_modstamp("Lead", &lead_id(1), earlier)
        .unwrap();
    let connector = connector(&sandbox);
    let cursor = Cursor {
        modstamp: tie,
        id: lead_id(4),
    };

    // From a cursor, every record sharing its stamp comes back whatever its id.
    let records: Vec<Record> = pull_all(&connector, &lead_spec(), Some(&cursor))
        .await
        .into_iter()
        .flat_map(|p| p.records)
        .collect();
    assert_eq!(ids(&records), vec![lead_id(2), lead_id(4), lead_id(6)]);

    // Resuming after the cursor skips the ties up to and including its id.
    let resumed = connector.pull_after(&lead_spec(), &cursor).await.unwrap();
    assert_eq!(ids(&resumed.records), vec![lead_id(6)]);

    let queries: Vec<String> = handle
        .request_log()
        .into_iter()
        .filter(|r| r.path == "/services/data/v59.0/query")
        .filter_map(|r| r.query)
        .filter_map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "q")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert!(
        queries[0].contains("SystemModstamp >= 2024-06-01T00:00:00Z"),
        "{queries:?}"
    );
    assert!(
        queries[1].contains("SystemModstamp = 2024-06-01T00:00:00Z AND Id > '00Q000000000004AAA'"),
        "{queries:?}"
    );
}

#[tokio::test]
async fn token_expiry_mid_paging_is_transparent() {
    let sandbox = start_paged().await;
    let handle = sandbox.handle();
    let connector = connector(&sandbox);
    let spec = lead_spec();
    let first = connector.pull_first(&spec, None).await.unwrap();
    handle.expire_tokens_after_requests(0);

    let mut records = first.records;
    let mut next = first.next;
    while let Some(token) = next {
        let page = connector.pull_next(&spec, None, &token).await.unwrap();
        records.extend(page.records);
        next = page.next;
    }

    assert_eq!(records.len(), LEAD_COUNT);
    let log = handle.request_log();
    let token_requests = log
        .iter()
        .filter(|r| r.path == "/services/oauth2/token")
        .count();
    let rejected = log.iter().filter(|r| r.status == 401).count();
    assert_eq!(token_requests, 2);
    assert_eq!(rejected, 1);
}

#[tokio::test]
async fn polymorphic_parent_fields() {
    let sandbox = start(SandboxOptions::default()).await;
    let connector = connector(&sandbox);
    let spec = PullSpec {
        object: "Task".to_string(),
        fields: vec!["Subject".into(), "What.Name".into(), "ActivityDate".into()],
        include_deleted: false,
    };

    let page = connector.pull_first(&spec, None).await.unwrap();

    assert_eq!(page.records.len(), 2);
    let demo = page
        .records
        .iter()
        .find(|r| r.get("Subject").as_str() == Some("Demo"))
        .unwrap();
    assert_eq!(
        demo.get("What.Name"),
        &Value::Text("Mercy General".to_string())
    );
    assert_eq!(
        demo.get("ActivityDate"),
        &Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 5, 2).unwrap())
    );
    let call = page
        .records
        .iter()
        .find(|r| r.get("Subject").as_str() == Some("Call"))
        .unwrap();
    assert_eq!(call.get("What.Name"), &Value::Null);
    assert!(call.fields.contains_key("What.Name"));
}

#[tokio::test]
async fn deleted_records_need_query_all() {
    let sandbox = start(SandboxOptions::default()).await;
    let handle = sandbox.handle();
    handle.delete_record("Lead", &lead_id(5)).unwrap();
    let connector = connector(&sandbox);
    let mut spec = lead_spec();

    let live = connector.pull_first(&spec, None).await.unwrap();
    spec.include_deleted = true;
    let all = connector.pull_first(&spec, None).await.unwrap();

    assert!(!ids(&live.records).contains(&lead_id(5)));
    let deleted = all.records.iter().find(|r| r.id == lead_id(5)).unwrap();
    assert!(deleted.deleted);
    assert_eq!(all.records.len(), LEAD_COUNT);
    assert!(handle
        .request_log()
        .iter()
        .any(|r| r.path == "/services/data/v59.0/queryAll"));
}

#[tokio::test]
async fn invalid_locator_is_locator_expired() {
    let sandbox = start_paged().await;
    let connector = connector(&sandbox);
    let spec = lead_spec();
    let first = connector.pull_first(&spec, None).await.unwrap();
    sandbox.handle().invalidate_locators();

    let error = connector
        .pull_next(&spec, None, first.next.as_deref().unwrap())
        .await
        .unwrap_err();

    assert!(
        matches!(error, ConnectorError::LocatorExpired(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn describe_maps_sandbox_schema() {
    let sandbox = start(SandboxOptions::default()).await;
    let connector = connector(&sandbox);

    let schema = connector.describe("Lead").await.unwrap();
    let again = connector.describe("Lead").await.unwrap();

    let tier = schema.field("LS_Tier__c").unwrap();
    assert_eq!(tier.kind, FieldKind::Picklist);
    assert_eq!(tier.picklist_values, vec!["A", "B", "C", "D"]);
    assert!(tier.restricted_picklist);
    assert_eq!(
        schema.field("LS_Reasons__c").unwrap().kind,
        FieldKind::LongText
    );
    assert_eq!(schema.field("LS_Score__c").unwrap().kind, FieldKind::Number);
    assert_eq!(
        schema.field("SystemModstamp").unwrap().kind,
        FieldKind::DateTime
    );
    let owner = schema.field("OwnerId").unwrap();
    assert_eq!(owner.relationship_name.as_deref(), Some("Owner"));
    assert_eq!(owner.reference_to, vec!["User"]);
    assert_eq!(again, schema);
    let describes = sandbox
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/sobjects/Lead/describe"))
        .count();
    assert_eq!(describes, 1, "the second describe comes from the cache");
}

#[tokio::test]
async fn describe_unknown_object_rejected() {
    let sandbox = start(SandboxOptions::default()).await;
    let connector = connector(&sandbox);

    let error = connector.describe("Campaign").await.unwrap_err();

    assert!(
        matches!(error, ConnectorError::Rejected { .. }),
        "{error:?}"
    );
}

fn score_update(object: &str, id: &str, score: f64, tier: &str) -> RecordUpdate {
    RecordUpdate {
        object: object.to_string(),
        id: id.to_string(),
        fields: BTreeMap::from([
            ("LS_Score__c".to_string(), Value::Number(score)),
            ("LS_Tier__c".to_string(), Value::Text(tier.to_string())),
            (
                "LS_Scored_At__c".to_string(),
                Value::DateTime(Utc.with_ymd_and_hms(2024, 6, 1, 8, 30, 0).unwrap()),
            ),
        ]),
    }
}

#[tokio::test]
async fn failed_writes_reported_in_order() {
    let sandbox = start(SandboxOptions::default()).await;
    let handle = sandbox.handle();
    handle.fail_writes(
        &lead_id(2),
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Scores are frozen",
    );
    let connector = connector(&sandbox);
    let updates = vec![
        score_update("Lead", &lead_id(1), 91.0, "A"),
        score_update("Lead", &lead_id(2), 12.0, "D"),
        score_update("Account", ACCOUNT, 77.0, "B"),
        score_update("Lead", &lead_id(3), 55.0, "Hot"),
        score_update("Lead", &lead_id(4), 40.0, "C"),
    ];

    let outcomes = connector.update(&updates).await.unwrap();

    let outcome_ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let update_ids: Vec<&str> = updates.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(outcome_ids, update_ids);
    assert_eq!(outcomes[0].result, Ok(()));
    let frozen = outcomes[1].result.clone().unwrap_err();
    assert_eq!(frozen.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    assert_eq!(frozen.message, "Scores are frozen");
    assert!(!frozen.retryable);
    assert_eq!(outcomes[2].result, Ok(()));
    let inactive = outcomes[3].result.clone().unwrap_err();
    assert_eq!(inactive.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    assert_eq!(outcomes[4].result, Ok(()));

    let written = handle.record("Lead", &lead_id(1)).unwrap();
    assert_eq!(written["LS_Score__c"], json!(91.0));
    assert_eq!(written["LS_Tier__c"], json!("A"));
    let scored_at = written["LS_Scored_At__c"].as_str().unwrap();
    assert!(
        scored_at.starts_with("2024-06-01T08:30:00.000"),
        "{scored_at}"
    );
    let account = handle.record("Account", ACCOUNT).unwrap();
    assert_eq!(account["LS_Tier__c"], json!("B"));
    let untouched = handle.record("Lead", &lead_id(2)).unwrap();
    assert_eq!(untouched["LS_Score__c"], json!(20.0));
}

#[tokio::test]
async fn exhausted_limit_is_limit_exceeded() {
    let sandbox = start(SandboxOptions::default()).await;
    let handle = sandbox.handle();
    let connector = connector(&sandbox);
    connector.check().await.unwrap();
    let (used, _) = handle.api_usage();
    handle.set_daily_limit(used);
    let requests_before = handle.request_log().len();

    let error = connector.pull_first(&lead_spec(), None).await.unwrap_err();

    assert!(
        matches!(error, ConnectorError::LimitExceeded(_)),
        "{error:?}"
    );
    assert_eq!(handle.request_log().len(), requests_before + 1, "no retry");
}

#[tokio::test]
async fn secrets_absent_from_logs_and_debug() {
    let log = capture::global_log();
    let sandbox = start_paged().await;
    let handle = sandbox.handle();
    let connector = connector(&sandbox);

    connector.check().await.unwrap();
    handle.expire_tokens_after_requests(1);
    let records = pull_all(&connector, &lead_spec(), None).await;
    connector
        .update(&[score_update("Lead", &lead_id(1), 50.0, "B")])
        .await
        .unwrap();
    let bad_secret = SalesforceConnector::new(SalesforceConfig {
        client_secret: SecretString::from("wrong-secret-value"),
        ..config(&sandbox)
    })
    .unwrap();
    bad_secret.check().await.unwrap_err();

    assert_eq!(
        records.iter().map(|p| p.records.len()).sum::<usize>(),
        LEAD_COUNT
    );
    let text = log.text();
    assert!(
        text.contains("obtained Salesforce access token"),
        "nothing captured: {text}"
    );
    let access_tokens: Vec<String> = handle
        .request_log()
        .iter()
        .filter_map(|r| {
            r.authorization
                .as_deref()?
                .strip_prefix("Bearer ")
                .map(str::to_string)
        })
        .collect();
    assert!(access_tokens.len() >= 2, "{access_tokens:?}");
    let options = sandbox.options();
    let mut secrets = vec![
        options.client_secret.clone(),
        options.refresh_token.clone(),
        "wrong-secret-value".to_string(),
    ];
    secrets.extend(access_tokens);
    let debug_text = format!("{connector:?} {:?}", config(&sandbox));
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "log contains {secret}");
        assert!(
            !debug_text.contains(secret.as_str()),
            "Debug contains {secret}"
        );
    }
}

#[tokio::test]
async fn timed_out_bulk_job_aborted() {
    let sandbox = start(SandboxOptions::default()).await;
    // The sandbox moves a job one state per poll, so the job is unfinished at the first poll,
    // by which time the one-millisecond limit has passed.
    let connector = SalesforceConnector::new(SalesforceConfig {
        bulk_objects: vec!["Lead".to_string()],
        bulk_poll_timeout: Duration::from_millis(1),
        ..config(&sandbox)
    })
    .unwrap();

    let error = connector
        .pull_first(&lead_spec(), None)
        .await
        .expect_err("the job cannot finish within a millisecond");

    let message = error.to_string();
    assert!(message.contains("it was aborted"), "{message}");
    assert!(message.contains("bulk_timeout_secs"), "{message}");
    let log = sandbox.handle().request_log();
    let created = log
        .iter()
        .find(|request| request.method == "POST" && request.path.ends_with("/jobs/query"))
        .expect("a query job was created");
    assert_eq!(created.status, 200);
    let aborts: Vec<_> = log
        .iter()
        .filter(|request| request.method == "PATCH" && request.path.contains("/jobs/query/"))
        .collect();
    assert_eq!(aborts.len(), 1, "{aborts:?}");
    assert_eq!(aborts[0].status, 200, "{aborts:?}");
    assert!(aborts[0].body.contains("Aborted"), "{aborts:?}");
    sandbox.shutdown().await;
}
