//! Salesforce pulls through Bulk API 2.0 against the sandbox over HTTP: the same stored
//! records as REST, results read over several locator pages, session renewal between polls,
//! failed jobs and compound fields.

mod common;

use std::time::Duration;

use common::Env;
use leadscore::config::Config;
use leadscore::pipeline;
use leadscore_connector::{Connector, ConnectorError, Page, PullSpec, Record};
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use leadscore_sandbox::{RunningSandbox, SandboxOptions};
use secrecy::SecretString;
use url::Url;

/// Every object the demo configuration pulls.
const ALL_OBJECTS: &str = r#"bulk_objects = ["User", "Account", "Contact", "Lead", "Opportunity", "OpportunityContactRole", "Task", "Event"]"#;

fn small_bulk_pages() -> SandboxOptions {
    SandboxOptions {
        bulk_page_size: 150,
        ..SandboxOptions::default()
    }
}

/// Loads a second config for the same sandbox whose store lives in `store` and whose
/// `[connector]` table gets `extra` after the refresh token line.
fn config_with(env: &Env, store: &str, extra: &str) -> Config {
    let text = std::fs::read_to_string(&env.config_path).expect("config readable");
    let store_path = env.dir.path().join(store);
    let anchor = "refresh_token_env = \"LEADSCORE_SF_REFRESH_TOKEN\"\n";
    assert!(text.contains(anchor), "the test config has no {anchor}");
    let text = text
        .replace(
            &format!("path = {:?}", env.config.store_path.display().to_string()),
            &format!("path = {:?}", store_path.display().to_string()),
        )
        .replace(anchor, &format!("{anchor}{extra}\n"));
    let path = env.dir.path().join(format!("{store}.toml"));
    std::fs::write(&path, text).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.store_path, store_path);
    config
}

fn connector_config(sandbox: &RunningSandbox, bulk_objects: &[&str]) -> SalesforceConfig {
    let options = sandbox.options();
    SalesforceConfig {
        login_url: Url::parse(&sandbox.url()).expect("sandbox URL"),
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
        bulk_objects: bulk_objects.iter().map(|o| o.to_string()).collect(),
        bulk_poll_timeout: Duration::from_secs(30),
    }
}

async fn pull_all(
    connector: &SalesforceConnector,
    spec: &PullSpec,
) -> Result<(Vec<Record>, Vec<Page>), ConnectorError> {
    let mut pages = vec![connector.pull_first(spec, None).await?];
    while let Some(next) = pages.last().and_then(|p| p.next.clone()) {
        pages.push(connector.pull_next(spec, None, &next).await?);
    }
    // Bulk pages come in no order, so records are compared by id.
    let mut records: Vec<Record> = pages.iter().flat_map(|p| p.records.clone()).collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((records, pages))
}

fn spec(object: &str, fields: &[&str]) -> PullSpec {
    PullSpec {
        object: object.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        include_deleted: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_and_rest_store_same_records() {
    let env = Env::start(small_bulk_pages()).await;
    let rest_store = env.store();
    let rest = env.connector();
    pipeline::pull(&rest, &rest_store, &env.config)
        .await
        .expect("REST pull");
    let jobs_before = env
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/jobs/query"))
        .count();
    assert_eq!(jobs_before, 0, "the REST pull created Bulk jobs");

    let bulk_config = config_with(&env, "bulk-store", ALL_OBJECTS);
    let bulk_store = leadscore::store::Store::open(&bulk_config.store_path).expect("store opens");
    let bulk = leadscore::run::connect(&bulk_config, env.secrets()).expect("connector builds");
    pipeline::pull(&bulk, &bulk_store, &bulk_config)
        .await
        .expect("Bulk pull");

    let log = env.handle().request_log();
    let jobs = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/jobs/query"))
        .count();
    let objects = pipeline::pull_specs(&env.config);
    assert_eq!(jobs, objects.len(), "one Bulk job per object");
    let located = log
        .iter()
        .filter(|r| r.path.ends_with("/results"))
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("locator=")))
        .count();
    assert!(located > 3, "expected several locator pages, saw {located}");
    for spec in &objects {
        let from_rest = rest_store.records(&spec.object).expect("REST records");
        let from_bulk = bulk_store.records(&spec.object).expect("Bulk records");
        assert!(!from_rest.is_empty(), "no {} records pulled", spec.object);
        assert_eq!(from_rest.len(), from_bulk.len(), "{} count", spec.object);
        assert_eq!(from_rest, from_bulk, "{} records differ", spec.object);
    }
    let cursors_equal = objects
        .iter()
        .all(|spec| rest_store.cursor(&spec.object).ok() == bulk_store.cursor(&spec.object).ok());
    assert!(cursors_equal, "REST and Bulk pulls left different cursors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_switches_large_pull_to_bulk() {
    let env = Env::start(small_bulk_pages()).await;
    let tasks = env.org.records["Task"].len();
    let mut config = connector_config(&env.sandbox, &[]);
    config.bulk_threshold = (tasks / 2) as u64;
    let connector = SalesforceConnector::new(config).expect("connector");
    let (records, pages) = pull_all(&connector, &spec("Task", &["Subject", "WhoId"]))
        .await
        .expect("pull");
    assert_eq!(records.len(), tasks);
    assert!(pages.len() > 2, "expected several Bulk pages");
    let log = env.handle().request_log();
    assert!(log.iter().any(|r| r.path.ends_with("/jobs/query")));

    let small = spec("User", &["Name"]);
    let users = env.org.records["User"].len();
    assert!(users < tasks / 2, "the test needs a small object");
    let (records, _) = pull_all(&connector, &small).await.expect("pull");
    assert_eq!(records.len(), users);
    let jobs = env
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/jobs/query"))
        .count();
    assert_eq!(jobs, 1, "a pull under the threshold created a Bulk job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expired_between_polls_is_renewed() {
    let env = Env::start(small_bulk_pages()).await;
    let handle = env.handle();
    let connector =
        SalesforceConnector::new(connector_config(&env.sandbox, &["Lead"])).expect("connector");
    connector.check().await.expect("credentials accepted");
    // Describe, create the job and the first poll pass; the second poll meets an expired token.
    handle.expire_tokens_after_requests(3);

    let (records, _) = pull_all(&connector, &spec("Lead", &["LastName", "Company"]))
        .await
        .expect("pull survives expiry");

    assert_eq!(records.len(), env.org.records["Lead"].len());
    let log = handle.request_log();
    let rejected_poll = log
        .iter()
        .any(|r| r.status == 401 && r.method == "GET" && r.path.contains("/jobs/query/"));
    assert!(rejected_poll, "no poll was rejected with 401");
    let grants = log
        .iter()
        .filter(|r| r.path == "/services/oauth2/token")
        .count();
    assert_eq!(grants, 2, "expected one renewal after the expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_job_names_job_and_message() {
    let env = Env::start(SandboxOptions::default()).await;
    let connector =
        SalesforceConnector::new(connector_config(&env.sandbox, &["Lead"])).expect("connector");
    let error = pull_all(&connector, &spec("Lead", &["Missing_Field__c"]))
        .await
        .expect_err("the job fails");
    let ConnectorError::Rejected { code, message } = &error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert_eq!(code, "BULK_JOB_FAILED");
    assert!(message.contains("750"), "no job id in {message}");
    assert!(message.contains("Failed"), "{message}");
    assert!(message.contains("Missing_Field__c"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compound_field_expands_on_both_paths() {
    let env = Env::start(SandboxOptions::default()).await;
    let account = env.org.records["Account"][0]["Id"]
        .as_str()
        .expect("account id")
        .to_string();
    let street: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"BillingStreet": "1 \"Main\" St\nSuite 2"}))
            .expect("fields");
    env.handle()
        .update_record("Account", &account, street)
        .expect("update");
    let fields = ["Name", "BillingAddress"];

    let rest = SalesforceConnector::new(connector_config(&env.sandbox, &[])).expect("connector");
    let (rest_records, rest_pages) = pull_all(&rest, &spec("Account", &fields))
        .await
        .expect("REST pull");
    let bulk =
        SalesforceConnector::new(connector_config(&env.sandbox, &["Account"])).expect("connector");
    let (bulk_records, bulk_pages) = pull_all(&bulk, &spec("Account", &fields))
        .await
        .expect("Bulk pull");
    assert!(rest_pages.iter().all(|p| !p.unordered));
    assert!(bulk_pages.iter().all(|p| p.unordered));

    assert_eq!(rest_records, bulk_records);
    let edited = bulk_records
        .iter()
        .find(|r| r.id == account)
        .expect("edited account pulled");
    for component in [
        "BillingStreet",
        "BillingCity",
        "BillingState",
        "BillingPostalCode",
        "BillingCountry",
    ] {
        assert!(edited.fields.contains_key(component), "no {component}");
    }
    assert!(!edited.fields.contains_key("BillingAddress"));
    assert_eq!(
        edited.get("BillingStreet"),
        &leadscore_connector::Value::Text("1 \"Main\" St\nSuite 2".to_string())
    );
}
