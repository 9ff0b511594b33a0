//! `requests`: counts the HTTP requests a Salesforce pull and write-back send to the sandbox.
//!
//! The demo org is padded with copies of its contacts (new ids, same fields) to the requested
//! contact count and served by the in-process Salesforce sandbox on a loopback port. Each
//! step's count is the number of `/services/data` requests in the sandbox's request log
//! during that step. Token requests are counted apart, because they are not API calls.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use leadscore::config::{Config, Secrets};
use leadscore::store::{ScoreRow, Store};
use leadscore_connector::{Connector, PullSpec};
use leadscore_demo_org::DemoOptions;
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use leadscore_sandbox::{RunningSandbox, Sandbox, SandboxHandle, SandboxOptions};
use secrecy::SecretString;
use serde_json::Value;

/// Rows per REST query page, the Salesforce maximum.
const REST_PAGE: u64 = 2_000;
/// Records per sObject Collections update, the Salesforce maximum.
const COLLECTION_BATCH: u64 = 200;
/// Contact fields the pulls select besides the ones every pull adds.
const CONTACT_FIELDS: [&str; 6] = [
    "AccountId",
    "FirstName",
    "LastName",
    "Title",
    "Email",
    "Buying_Role__c",
];

/// One measured step.
struct Step {
    name: String,
    records: u64,
    api_requests: u64,
    token_requests: u64,
    floor: u64,
    seconds: f64,
}

/// Counts requests in the sandbox log from `start` on.
fn count_since(handle: &SandboxHandle, start: usize) -> (u64, u64, usize) {
    let log = handle.request_log();
    let mut api = 0;
    let mut token = 0;
    for entry in log.iter().skip(start) {
        if entry.path.starts_with("/services/data") {
            api += 1;
        } else if entry.path == "/services/oauth2/token" {
            token += 1;
        }
    }
    (api, token, log.len())
}

/// Builds the demo org with its Contact list padded to `contacts` by copying contacts under
/// new ids. Fails when the log would drop entries or the org already has more contacts.
fn padded_org(
    contacts: usize,
) -> Result<BTreeMap<String, Vec<leadscore_sandbox::RecordMap>>, String> {
    let org = leadscore_demo_org::generate(&DemoOptions::default())
        .map_err(|error| format!("generating the demo org failed: {error}"))?;
    let mut records = org.records;
    let list = records
        .get_mut("Contact")
        .ok_or("the demo org has no Contact records")?;
    if list.len() > contacts {
        return Err(format!(
            "the demo org already has {} contacts; ask for at least that many",
            list.len()
        ));
    }
    let originals = list.clone();
    let mut copy = 0usize;
    while list.len() < contacts {
        let mut record = originals[copy % originals.len()].clone();
        // 3 + 5 + 10 characters: an 18-character id with the Contact key prefix.
        let id = format!("003Bench{copy:010}");
        record.insert("Id".to_string(), Value::String(id));
        list.push(record);
        copy += 1;
    }
    eprintln!(
        "demo org: {} contacts, padded with {copy} copies to {contacts}",
        originals.len()
    );
    Ok(records)
}

fn connector_config(
    sandbox: &RunningSandbox,
    bulk_objects: &[&str],
) -> Result<SalesforceConfig, String> {
    let options = sandbox.options();
    Ok(SalesforceConfig {
        login_url: url::Url::parse(&sandbox.url()).map_err(|e| format!("sandbox URL: {e}"))?,
        api_version: "59.0".to_string(),
        client_id: options.client_id.clone(),
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
        page_size: Some(REST_PAGE as u32),
        timeout: Duration::from_secs(300),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(100),
        extra_ca_pem: None,
        allow_insecure_http: false,
        // Only the forced objects use Bulk, so the REST pull stays on REST at any size.
        bulk_threshold: u64::MAX,
        bulk_objects: bulk_objects.iter().map(|o| o.to_string()).collect(),
        bulk_poll_timeout: Duration::from_secs(600),
    })
}

/// Pulls every Contact once and returns the record count.
async fn pull_contacts(connector: &SalesforceConnector) -> Result<u64, String> {
    let spec = PullSpec {
        object: "Contact".to_string(),
        fields: CONTACT_FIELDS.iter().map(|f| f.to_string()).collect(),
        include_deleted: true,
    };
    let failed =
        |error: leadscore_connector::ConnectorError| format!("Contact pull failed: {error}");
    let mut page = connector.pull_first(&spec, None).await.map_err(failed)?;
    let mut records = page.records.len() as u64;
    while let Some(next) = page.next.clone() {
        page = connector
            .pull_next(&spec, None, &next)
            .await
            .map_err(failed)?;
        records += page.records.len() as u64;
    }
    Ok(records)
}

async fn measure_pull(
    sandbox: &RunningSandbox,
    name: &str,
    bulk_objects: &[&str],
    per_call: u64,
) -> Result<Step, String> {
    let handle = sandbox.handle();
    let connector = SalesforceConnector::new(connector_config(sandbox, bulk_objects)?)
        .map_err(|e| format!("connector: {e}"))?;
    let start = handle.request_log().len();
    let clock = Instant::now();
    let records = pull_contacts(&connector).await?;
    let seconds = clock.elapsed().as_secs_f64();
    let (api_requests, token_requests, _) = count_since(&handle, start);
    Ok(Step {
        name: name.to_string(),
        records,
        api_requests,
        token_requests,
        floor: records.div_ceil(per_call),
        seconds,
    })
}

/// Gives every stored account a score, so that a push writes all of them.
fn score_all_accounts(store: &Store) -> Result<u64, String> {
    let accounts = store
        .records("Account")
        .map_err(|e| format!("reading stored accounts: {e}"))?;
    let now = chrono::Utc::now();
    let tiers = ["A", "B", "C", "D"];
    let rows: Vec<ScoreRow> = accounts
        .iter()
        .filter(|record| !record.deleted)
        .enumerate()
        .map(|(index, record)| ScoreRow {
            object: "Account".to_string(),
            id: record.id.clone(),
            name: format!("Account {index}"),
            owner_id: None,
            probability: (index % 100) as f64 / 100.0,
            score: (index % 100) as f64,
            tier: tiers[index % tiers.len()].to_string(),
            reasons: vec![format!("Benchmark reason {}", index % 7)],
            hint: None,
            sales_ready: None,
            model_version: "bench-requests".to_string(),
            scored_at: now,
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect();
    store
        .replace_scores(&rows)
        .map_err(|e| format!("storing scores: {e}"))?;
    Ok(rows.len() as u64)
}

async fn measure_push(
    sandbox: &RunningSandbox,
    store: &Store,
    config: &Config,
    name: &str,
    accounts: u64,
    floor: u64,
) -> Result<Step, String> {
    let handle = sandbox.handle();
    let connector =
        leadscore::run::connect(config, secrets(sandbox)).map_err(|e| format!("connector: {e}"))?;
    let start = handle.request_log().len();
    let clock = Instant::now();
    let report = leadscore::writeback::push(
        &connector,
        store,
        config,
        &BTreeMap::new(),
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| format!("{name} failed: {e}"))?;
    let seconds = clock.elapsed().as_secs_f64();
    let (api_requests, token_requests, _) = count_since(&handle, start);
    eprintln!(
        "{name}: {} written, {} unchanged, {} failed",
        report.written,
        report.unchanged,
        report.failed.len()
    );
    Ok(Step {
        name: name.to_string(),
        records: accounts,
        api_requests,
        token_requests,
        floor,
        seconds,
    })
}

fn secrets(sandbox: &RunningSandbox) -> Secrets {
    let options = sandbox.options();
    Secrets {
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
    }
}

async fn measure(contacts: usize) -> Result<Vec<Step>, String> {
    let records = padded_org(contacts)?;
    let sandbox = Sandbox::new(records, SandboxOptions::default())
        .map_err(|e| format!("the sandbox rejected the org: {e}"))?
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| format!("starting the sandbox failed: {e}"))?;
    let bulk_page = u64::from(leadscore_salesforce::BULK_PAGE_SIZE);
    let mut steps = vec![
        measure_pull(&sandbox, "Contact pull over REST", &[], REST_PAGE).await?,
        measure_pull(
            &sandbox,
            "Contact pull over Bulk API 2.0",
            &["Contact"],
            bulk_page,
        )
        .await?,
    ];

    // The write-back runs through leadscore's own pull and push on a store in a temp dir.
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let store_path = dir.path().join("store");
    let text = leadscore::demo::sandbox_config(&sandbox.url(), &store_path.display().to_string());
    let config_path = dir.path().join("leadscore.toml");
    std::fs::write(&config_path, text).map_err(|e| format!("writing the config: {e}"))?;
    let config = Config::load(&config_path).map_err(|e| format!("loading the config: {e}"))?;
    let store = Store::open(&config.store_path).map_err(|e| format!("opening the store: {e}"))?;
    let connector = leadscore::run::connect(&config, secrets(&sandbox))
        .map_err(|e| format!("connector: {e}"))?;
    leadscore::pipeline::pull(&connector, &store, &config)
        .await
        .map_err(|e| format!("pulling the org failed: {e}"))?;
    let accounts = score_all_accounts(&store)?;
    let floor = accounts.div_ceil(COLLECTION_BATCH);
    steps.push(
        measure_push(
            &sandbox,
            &store,
            &config,
            "Write-back of all account scores",
            accounts,
            floor,
        )
        .await?,
    );
    steps.push(
        measure_push(
            &sandbox,
            &store,
            &config,
            "Second write-back, nothing changed",
            accounts,
            0,
        )
        .await?,
    );
    sandbox.shutdown().await;
    Ok(steps)
}

/// Runs the measurement and prints a Markdown table.
pub fn run(contacts: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime failed: {e}"))?;
    let steps = runtime.block_on(measure(contacts))?;
    println!("| Step | Records | API requests | Floor | Token requests | Seconds |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for step in steps {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} |",
            step.name,
            step.records,
            step.api_requests,
            step.floor,
            step.token_requests,
            step.seconds
        );
    }
    Ok(())
}
