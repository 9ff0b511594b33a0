//! Runs the CRM vendors' own client libraries against the sandboxes, so that the sandboxes stay
//! close enough to the real APIs for clients other than leadscore's.
//!
//! Each test starts a sandbox in-process on a loopback port and runs a script from
//! `tests/clients/` with the interpreter named by `LEADSCORE_CLIENTS_PYTHON`, a virtualenv with
//! the client libraries as `.ci/run` builds it. It then checks the script's exit status, its
//! JSON report and the sandbox's records. Without that variable the tests print why they
//! do nothing and pass, so a plain `cargo test` stays quick and offline. One test checks
//! leadscore's own Salesforce connector against the TLS sandbox and needs no Python.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use leadscore_connector::{Connector, ConnectorError};
use leadscore_demo_org::DemoOptions;
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use leadscore_sandbox::hubspot::{HubSpotOptions, HubSpotSandbox, ObjectType, RunningHubSpot};
use leadscore_sandbox::{RecordMap, RunningSandbox, Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;

/// Environment variable naming the Python interpreter that has the client libraries installed.
const PYTHON_VAR: &str = "LEADSCORE_CLIENTS_PYTHON";
/// Time a client script gets before it is killed and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Hospitals in the seeded org. Each becomes an Account, and health systems add a few more.
const HOSPITALS: usize = 60;
/// Query page size of the sandbox, small so that the accounts span several pages.
const PAGE_SIZE: usize = 25;

/// Returns the interpreter from `LEADSCORE_CLIENTS_PYTHON`, or prints why the test does nothing.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    match std::env::var_os(PYTHON_VAR) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            eprintln!(
                "{test}: {PYTHON_VAR} is not set, so the vendor client libraries are not run; \
                 .ci/run sets it to a virtualenv with simple-salesforce and hubspot-api-client"
            );
            None
        }
    }
}

/// The output of one client script run.
struct ScriptRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ScriptRun {
    /// Parses stdout as JSON, failing the test with both streams when the run failed.
    fn report(&self) -> Value {
        assert!(
            self.status.success(),
            "client script exited with {}\nstderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "client script printed invalid JSON ({error}):\n{}",
                self.stdout
            )
        })
    }
}

/// Runs `tests/clients/{script}` with `python` and `env`, killing it after [`SCRIPT_TIMEOUT`].
///
/// The child writes into files rather than pipes, so a large report cannot fill a pipe buffer
/// while this function waits. The wait runs on a blocking thread, leaving the runtime free to
/// serve the sandbox the script talks to.
async fn run_script(python: &Path, script: &str, env: Vec<(String, String)>) -> ScriptRun {
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let python = python.to_path_buf();
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("temporary directory for the script output");
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new(&python)
            .arg(&script_path)
            .envs(env)
            // A proxy from the environment must not see loopback traffic.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "starting {} {} failed: {error}; point {PYTHON_VAR} at a Python interpreter",
                    python.display(),
                    script_path.display()
                )
            });
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        let status = loop {
            match child.try_wait().expect("waiting for the client script") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{script} did not finish within {SCRIPT_TIMEOUT:?}; stderr so far:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        ScriptRun {
            status,
            stdout: std::fs::read_to_string(&stdout_path).expect("stdout file is readable"),
            stderr: std::fs::read_to_string(&stderr_path).expect("stderr file is readable"),
        }
    })
    .await
    .expect("client script thread")
}

/// Starts the Salesforce sandbox over TLS with a small demo org and small query pages.
async fn start_salesforce() -> RunningSandbox {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org generates");
    let options = SandboxOptions {
        page_size: PAGE_SIZE,
        ..SandboxOptions::default()
    };
    Sandbox::new(org.records, options)
        .expect("sandbox accepts the demo org")
        .serve_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("TLS sandbox listens on loopback")
}

fn string_field<'a>(record: &'a RecordMap, field: &str) -> &'a str {
    record
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("record has no string {field}: {record:?}"))
}

#[tokio::test]
async fn simple_salesforce_over_tls() {
    let Some(python) = python_or_skip("simple_salesforce_over_tls") else {
        return;
    };
    let sandbox = start_salesforce().await;
    let handle = sandbox.handle();
    let options = sandbox.options().clone();
    let ca_path = sandbox
        .ca_cert_path()
        .expect("a TLS sandbox has a CA file")
        .to_path_buf();

    let live_accounts: Vec<RecordMap> = handle
        .records("Account")
        .into_iter()
        .filter(|record| record.get("IsDeleted") != Some(&Value::Bool(true)))
        .collect();
    assert!(
        live_accounts.len() > 2 * PAGE_SIZE,
        "the org needs more than two pages of accounts, has {}",
        live_accounts.len()
    );
    let account_ids: BTreeSet<String> = live_accounts
        .iter()
        .map(|record| string_field(record, "Id").to_string())
        .collect();

    // Three valid writes and one with an inactive value of the restricted tier picklist.
    let targets: Vec<String> = account_ids.iter().take(4).cloned().collect();
    let tiers = ["A", "B", "C"];
    let mut updates = Vec::new();
    for (index, id) in targets.iter().take(3).enumerate() {
        updates.push(json!({
            "attributes": {"type": "Account"},
            "id": id,
            "LS_Score__c": 90.5 - 10.0 * index as f64,
            "LS_Tier__c": tiers[index],
            "LS_Reasons__c": format!("Reason {index} from simple-salesforce"),
        }));
    }
    let rejected_id = targets[3].clone();
    let tier_before = handle
        .record("Account", &rejected_id)
        .and_then(|record| record.get("LS_Tier__c").cloned());
    updates.push(json!({
        "attributes": {"type": "Account"},
        "id": rejected_id,
        "LS_Tier__c": "Hot",
    }));

    let env = vec![
        ("LEADSCORE_SF_URL".to_string(), sandbox.url()),
        (
            "LEADSCORE_SF_CA_CERT".to_string(),
            ca_path.display().to_string(),
        ),
        (
            "LEADSCORE_SF_CLIENT_ID".to_string(),
            options.client_id.clone(),
        ),
        (
            "LEADSCORE_SF_CLIENT_SECRET".to_string(),
            options.client_secret.clone(),
        ),
        (
            "LEADSCORE_SF_REFRESH_TOKEN".to_string(),
            options.refresh_token.clone(),
        ),
        (
            "LEADSCORE_SF_QUERY".to_string(),
            "SELECT Id, Name FROM Account ORDER BY Id".to_string(),
        ),
        ("LEADSCORE_SF_DESCRIBE".to_string(), "Account".to_string()),
        (
            "LEADSCORE_SF_UPDATES".to_string(),
            Value::Array(updates.clone()).to_string(),
        ),
    ];
    let run = run_script(&python, "salesforce_client.py", env).await;
    let report = run.report();

    assert_eq!(report["instance_url"], json!(sandbox.url()));

    // The first page stops at the sandbox's page size and points to the next one.
    assert_eq!(report["first_page"]["done"], json!(false));
    assert_eq!(report["first_page"]["records"], json!(PAGE_SIZE));
    assert_eq!(report["first_page"]["has_next_records_url"], json!(true));

    // query_all followed every nextRecordsUrl and saw each account once.
    assert_eq!(report["query_all"]["done"], json!(true));
    assert_eq!(report["query_all"]["totalSize"], json!(account_ids.len()));
    let fetched: Vec<String> = report["query_all"]["ids"]
        .as_array()
        .expect("query_all ids")
        .iter()
        .map(|id| id.as_str().expect("string id").to_string())
        .collect();
    assert_eq!(
        fetched.len(),
        account_ids.len(),
        "duplicate or missing rows"
    );
    assert_eq!(
        fetched.iter().cloned().collect::<BTreeSet<_>>(),
        account_ids
    );

    // The describe the client parsed matches the sandbox schema.
    let schema = leadscore_sandbox::schema::objects();
    let account_schema = schema
        .iter()
        .find(|object| object.name == "Account")
        .expect("Account in the schema");
    let describe = &report["describe"];
    assert_eq!(describe["name"], json!("Account"));
    assert_eq!(describe["field_count"], json!(account_schema.fields.len()));
    let tier = &describe["fields"]["LS_Tier__c"];
    assert_eq!(tier["type"], json!("picklist"));
    assert_eq!(tier["restrictedPicklist"], json!(true));
    assert_eq!(
        tier["picklistValues"],
        json!([
            {"value": "A", "active": true},
            {"value": "B", "active": true},
            {"value": "C", "active": true},
            {"value": "D", "active": true},
            {"value": "Hot", "active": false},
        ])
    );
    assert_eq!(describe["fields"]["Id"]["updateable"], json!(false));

    // One save result per input, in input order, and only the inactive tier value fails.
    let saves = report["save_results"].as_array().expect("save results");
    assert_eq!(saves.len(), 4);
    for (save, id) in saves.iter().zip(&targets).take(3) {
        assert_eq!(save["success"], json!(true), "{save}");
        assert_eq!(save["id"], json!(id), "{save}");
    }
    assert_eq!(saves[3]["success"], json!(false), "{}", saves[3]);
    assert_eq!(
        saves[3]["errors"][0]["statusCode"],
        json!("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{}",
        saves[3]
    );

    // The sandbox stored the written values, and the client read the same values back.
    let retrieved: BTreeMap<String, &Value> = report["retrieved"]
        .as_array()
        .expect("retrieved records")
        .iter()
        .map(|record| (record["Id"].as_str().expect("Id").to_string(), record))
        .collect();
    for update in updates.iter().take(3) {
        let id = update["id"].as_str().expect("id");
        let stored = handle
            .record("Account", id)
            .expect("updated account exists");
        let read = retrieved
            .get(id)
            .unwrap_or_else(|| panic!("{id} was not retrieved"));
        for field in ["LS_Score__c", "LS_Tier__c", "LS_Reasons__c"] {
            assert_eq!(
                stored.get(field),
                Some(&update[field]),
                "{id} {field} stored"
            );
            assert_eq!(read[field], update[field], "{id} {field} retrieved");
        }
    }
    let rejected = handle
        .record("Account", &rejected_id)
        .expect("rejected account exists");
    assert_eq!(rejected.get("LS_Tier__c").cloned(), tier_before);

    // Every REST call carried the bearer token, and later pages came from query locators.
    let log = handle.request_log();
    let rest: Vec<_> = log
        .iter()
        .filter(|request| request.path.starts_with("/services/data/"))
        .collect();
    assert!(!rest.is_empty(), "no REST request reached the sandbox");
    for request in &rest {
        let authorization = request.authorization.as_deref().unwrap_or("");
        assert!(
            authorization.starts_with("Bearer "),
            "{} {} had no bearer token",
            request.method,
            request.path
        );
    }
    let locator_pages = rest
        .iter()
        .filter(|request| {
            request
                .path
                .split_once("/query/")
                .is_some_and(|(_, locator)| !locator.is_empty())
        })
        .count();
    let pages = account_ids.len().div_ceil(PAGE_SIZE);
    assert_eq!(
        locator_pages,
        pages - 1,
        "query_all fetched every later page once"
    );
    assert!(report["api_usage"]["used"]
        .as_u64()
        .is_some_and(|used| used > 0));

    sandbox.shutdown().await;
    assert!(!ca_path.exists(), "shutdown left {}", ca_path.display());
}

fn connector_config(sandbox: &RunningSandbox, extra_ca_pem: Option<Vec<u8>>) -> SalesforceConfig {
    let options = sandbox.options();
    SalesforceConfig {
        login_url: Url::parse(&sandbox.url()).expect("sandbox URL parses"),
        api_version: "59.0".to_string(),
        client_id: options.client_id.clone(),
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
        page_size: None,
        timeout: Duration::from_secs(10),
        max_retries: 0,
        retry_base_delay: Duration::from_millis(1),
        extra_ca_pem,
        allow_insecure_http: false,
        bulk_threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
        bulk_objects: Vec::new(),
        bulk_poll_timeout: leadscore_salesforce::DEFAULT_BULK_POLL_TIMEOUT,
    }
}

// leadscore's own Salesforce client needs no Python, so this test always runs.
#[tokio::test]
async fn connector_trusts_extra_ca() {
    let sandbox = start_salesforce().await;
    let pem = sandbox
        .ca_pem()
        .expect("TLS sandbox CA")
        .as_bytes()
        .to_vec();

    let trusted = SalesforceConnector::new(connector_config(&sandbox, Some(pem)))
        .expect("connector accepts the CA PEM");
    let usage = trusted.check().await.expect("check succeeds over TLS");
    assert!(usage.used > 0, "{usage:?}");
    let schema = trusted
        .describe("Account")
        .await
        .expect("describe succeeds over TLS");
    assert!(schema.field("LS_Tier__c").is_some());

    let untrusted = SalesforceConnector::new(connector_config(&sandbox, None))
        .expect("connector builds without an extra CA");
    let error = untrusted
        .check()
        .await
        .expect_err("the public roots must not trust the sandbox CA");
    assert!(
        matches!(error, ConnectorError::Transport(_)),
        "expected a transport error, got {error}"
    );

    let garbage = SalesforceConnector::new(connector_config(
        &sandbox,
        Some(b"not a certificate".to_vec()),
    ))
    .expect_err("text without a certificate is rejected");
    assert!(garbage.to_string().contains("extra CA file"), "{garbage}");

    sandbox.shutdown().await;
}

/// Starts the HubSpot sandbox with the same demo org, over HTTPS.
async fn start_hubspot() -> RunningHubSpot {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org generates");
    HubSpotSandbox::new(org.records, HubSpotOptions::default())
        .expect("HubSpot sandbox accepts the demo org")
        .serve_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("HubSpot sandbox listens on loopback")
}

fn id_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of ids, got {value}"))
        .iter()
        .map(|id| id.as_str().expect("string id").to_string())
        .collect()
}

#[tokio::test]
async fn hubspot_client_over_https() {
    let Some(python) = python_or_skip("hubspot_client_over_https") else {
        return;
    };
    let sandbox = start_hubspot().await;
    let handle = sandbox.handle();
    let contact_ids: Vec<String> = handle.ids(ObjectType::Contacts);
    let contact_count = contact_ids.len();
    assert!(
        contact_count > 30,
        "the portal needs several pages of contacts, has {contact_count}"
    );

    // Three search pages at most, because the sandbox allows four searches per second.
    let list_limit = 10;
    let search_limit = contact_count.div_ceil(3).min(200);
    let search = json!({
        "filterGroups": [{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}
        ]}],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
        "limit": search_limit,
    });

    let targets: Vec<String> = contact_ids.iter().take(3).cloned().collect();
    let missing_id = "999999999999";
    let mut updates: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(index, id)| {
            json!({"id": id, "properties": {
                "jobtitle": format!("Director of Surgery {index}"),
                "specialty": "Orthopedics",
            }})
        })
        .collect();
    updates.push(json!({"id": missing_id, "properties": {"jobtitle": "Nobody"}}));

    assert!(sandbox.url().starts_with("https://"));
    let ca = sandbox
        .ca_cert_path()
        .expect("a TLS sandbox has a CA file")
        .display()
        .to_string();
    let env = vec![
        ("LEADSCORE_HS_URL".to_string(), sandbox.url()),
        ("LEADSCORE_HS_CA_CERT".to_string(), ca),
        (
            "LEADSCORE_HS_TOKEN".to_string(),
            sandbox.options().private_app_token.clone(),
        ),
        (
            "LEADSCORE_HS_PAGE_LIMIT".to_string(),
            list_limit.to_string(),
        ),
        ("LEADSCORE_HS_SEARCH".to_string(), search.to_string()),
        (
            "LEADSCORE_HS_UPDATES".to_string(),
            Value::Array(updates.clone()).to_string(),
        ),
    ];
    let run = run_script(&python, "hubspot_client.py", env).await;
    let report = run.report();

    // Listing pages by id order returns every live contact once.
    assert_eq!(report["list"]["ids"], json!(contact_ids));
    assert_eq!(
        report["list"]["pages"],
        json!(contact_count.div_ceil(list_limit))
    );
    assert_eq!(report["get_all"]["ids"], json!(contact_ids));

    // Search pages through the whole result without repeating or losing a contact.
    assert_eq!(report["search"]["total"], json!(contact_count));
    assert_eq!(
        report["search"]["pages"],
        json!(contact_count.div_ceil(search_limit))
    );
    let found = id_list(&report["search"]["ids"]);
    assert_eq!(
        found.len(),
        contact_count,
        "duplicate or missing search rows"
    );
    let found: BTreeSet<String> = found.into_iter().collect();
    assert_eq!(found, contact_ids.iter().cloned().collect::<BTreeSet<_>>());

    // The batch update returns 207: three results and one error naming the missing id.
    let update = &report["batch_update"];
    assert_eq!(update["status"], json!("COMPLETE"));
    let updated: BTreeSet<String> = update["results"]
        .as_array()
        .expect("update results")
        .iter()
        .map(|result| result["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(updated, targets.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(
        update["errors"],
        json!([{"category": "OBJECT_NOT_FOUND", "ids": [missing_id]}])
    );

    // The portal stored the values, and the batch read returned them.
    let read: BTreeMap<String, &Value> = report["batch_read"]["results"]
        .as_array()
        .expect("read results")
        .iter()
        .map(|result| (result["id"].as_str().expect("id").to_string(), result))
        .collect();
    for update in updates.iter().take(3) {
        let id = update["id"].as_str().expect("id");
        let stored = handle
            .properties(ObjectType::Contacts, id)
            .unwrap_or_else(|| panic!("contact {id} vanished"));
        let read = read
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing from the batch read"));
        for field in ["jobtitle", "specialty"] {
            assert_eq!(
                stored.get(field).map(String::as_str),
                update["properties"][field].as_str(),
                "{id} {field} stored"
            );
            assert_eq!(
                read["properties"][field], update["properties"][field],
                "{id} {field} read back"
            );
        }
    }
    assert!(handle
        .properties(ObjectType::Contacts, missing_id)
        .is_none());

    sandbox.shutdown().await;
}

#[tokio::test]
async fn simple_salesforce_bulk2_query() {
    let Some(python) = python_or_skip("simple_salesforce_bulk2_query") else {
        return;
    };
    let sandbox = start_salesforce().await;
    let handle = sandbox.handle();
    let options = sandbox.options().clone();
    let ca_path = sandbox
        .ca_cert_path()
        .expect("a TLS sandbox has a CA file")
        .to_path_buf();

    let accounts = handle.records("Account");
    let deleted = string_field(&accounts[0], "Id").to_string();
    handle
        .delete_record("Account", &deleted)
        .expect("account deleted");
    // A name with a quote, a delimiter and a line break, which the CSV must carry intact.
    let tricky = string_field(&accounts[1], "Id").to_string();
    let tricky_name = "Mercy \"North\", Campus\nB\u{e9}thune";
    let mut fields = RecordMap::new();
    fields.insert("Name".to_string(), json!(tricky_name));
    handle
        .update_record("Account", &tricky, fields)
        .expect("account renamed");
    let live: BTreeMap<String, String> = handle
        .records("Account")
        .iter()
        .filter(|record| record.get("IsDeleted") != Some(&Value::Bool(true)))
        .map(|record| {
            (
                string_field(record, "Id").to_string(),
                string_field(record, "Name").to_string(),
            )
        })
        .collect();
    let page = 25;
    assert!(live.len() > 2 * page, "the org needs three results pages");

    let env = vec![
        ("LEADSCORE_SF_URL".to_string(), sandbox.url()),
        (
            "LEADSCORE_SF_CA_CERT".to_string(),
            ca_path.display().to_string(),
        ),
        (
            "LEADSCORE_SF_CLIENT_ID".to_string(),
            options.client_id.clone(),
        ),
        (
            "LEADSCORE_SF_CLIENT_SECRET".to_string(),
            options.client_secret.clone(),
        ),
        (
            "LEADSCORE_SF_REFRESH_TOKEN".to_string(),
            options.refresh_token.clone(),
        ),
        ("LEADSCORE_SF_OBJECT".to_string(), "Account".to_string()),
        (
            "LEADSCORE_SF_QUERY".to_string(),
            "SELECT Id, Name FROM Account ORDER BY Id".to_string(),
        ),
        (
            "LEADSCORE_SF_COMPOUND_QUERY".to_string(),
            "SELECT Id, BillingAddress FROM Account".to_string(),
        ),
        ("LEADSCORE_SF_MAX_RECORDS".to_string(), page.to_string()),
    ];
    let run = run_script(&python, "sf_bulk2.py", env).await;
    let report = run.report();

    assert_eq!(report["header"], json!(["Id", "Name"]));
    let sizes: Vec<u64> = report["page_sizes"]
        .as_array()
        .expect("page sizes")
        .iter()
        .map(|size| size.as_u64().expect("page size"))
        .collect();
    assert!(sizes.len() >= 3, "expected three or more pages: {sizes:?}");
    assert!(sizes.iter().all(|&size| size <= page as u64), "{sizes:?}");
    let rows: BTreeMap<String, String> = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row[0].as_str().expect("id").to_string(),
                row[1].as_str().expect("name").to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), live.len(), "duplicate or missing rows");
    assert_eq!(rows, live);
    assert_eq!(rows[&tricky], tricky_name);
    let ids: Vec<&str> = report["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "ORDER BY Id was not kept across pages");

    let all_ids = report["query_all_ids"].as_array().expect("query_all ids");
    assert_eq!(all_ids.len(), live.len() + 1);
    assert!(all_ids.contains(&json!(deleted)));

    let compound = report["compound_error"]
        .as_str()
        .expect("the compound query failed");
    assert!(compound.contains("BillingAddress"), "{compound}");
}
