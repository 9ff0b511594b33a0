//! `check --fix` on a Salesforce org without leadscore's custom fields, over real HTTP. The
//! check names the missing fields, and the fix creates them through the Tooling API and
//! grants them through a permission set. A full pass then writes into them. The field
//! report of `check` is tested on both sandboxes.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use chrono::Utc;
use common::{Env, ALL_LEVELS};
use leadscore::config::{Config, ConnectorSecrets};
use leadscore::demo::hubspot_sandbox_config;
use leadscore::field_report::{self, FieldUse};
use leadscore::level::Level;
use leadscore::run::{connect, run_once};
use leadscore::{pipeline, setup};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::json;

fn bare() -> SandboxOptions {
    SandboxOptions {
        bare: true,
        ..SandboxOptions::default()
    }
}

/// Starts a bare org with all three levels scored.
async fn bare_env() -> Env {
    Env::start_with(bare(), |text| {
        text.replace(r#"levels = ["account"]"#, ALL_LEVELS)
    })
    .await
}

fn tooling_requests(env: &Env) -> usize {
    env.handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/tooling/sobjects/CustomField"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_org_fixed_then_scored() {
    let env = bare_env().await;
    assert!(env.config.lead.sales_ready_score.is_some());
    let connector = env.connector();

    let missing = pipeline::check(&connector, &env.config)
        .await
        .expect_err("check fails on a bare org")
        .to_string();
    for field in ["LS_Score__c", "LS_Tier__c", "LS_Reasons__c"] {
        assert!(missing.contains(field), "{field} not named: {missing}");
    }

    let fixed = setup::fix(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check --fix: {err}"));
    let specs = setup::custom_field_specs(&env.config);
    assert_eq!(fixed.created.len(), specs.len(), "{fixed:?}");
    for field in [
        "Account.LS_Score__c",
        "Contact.LS_Tier__c",
        "Lead.LS_Sales_Ready__c",
        "Lead.LS_Feedback__c",
        "Account.LS_Feedback_Comment__c",
    ] {
        assert!(
            fixed.created.iter().any(|c| c == field),
            "{field}: {fixed:?}"
        );
    }
    assert!(fixed.mismatched.is_empty(), "{fixed:?}");
    let set = fixed.permission_set.as_ref().expect("permission set used");
    assert_eq!(set.name, setup::PERMISSION_SET);
    assert!(set.created);
    assert_eq!(fixed.granted.len(), specs.len());
    assert!(fixed.assigned);
    assert_eq!(tooling_requests(&env), specs.len());

    // Write-back fields are editable; the feedback fields reps fill in are read-only.
    let account = leadscore_connector::Connector::describe(&connector, "Account")
        .await
        .expect("describe");
    let score = account.field("LS_Score__c").expect("score field visible");
    assert!(score.updateable);
    let flag = account
        .field("LS_Feedback__c")
        .expect("feedback field visible");
    assert!(!flag.updateable);
    assert!(flag.restricted_picklist);

    pipeline::check(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check passes after --fix: {err}"));

    let again = setup::fix(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("second --fix: {err}"));
    assert!(again.created.is_empty(), "{again:?}");
    assert!(again.granted.is_empty(), "{again:?}");
    assert!(again.permission_set.is_none(), "{again:?}");
    assert!(!again.assigned);
    assert_eq!(again.existing.len(), specs.len());
    assert_eq!(
        tooling_requests(&env),
        specs.len(),
        "no create the second time"
    );

    let store = env.store();
    let report = run_once(&connector, &store, &env.config, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("first pass: {err}"));
    let handle = env.handle();
    for run in &report.levels {
        assert!(run.push.failed.is_empty(), "{:?}", run.push.failed);
        assert!(run.push.written > 0, "{} wrote nothing", run.level);
        let writeback = env.config.writeback_for(run.level);
        let object = run.level.object();
        let scores = store.at_level(run.level).scores().expect("scores");
        for row in scores.iter().take(20) {
            let record = handle.record(object, &row.id).expect("scored record");
            assert_eq!(
                record[&writeback.score_field],
                json!(row.score),
                "{object} {}",
                row.id
            );
            assert_eq!(record[&writeback.tier_field], json!(row.tier));
        }
    }
    let levels: Vec<Level> = report.levels.iter().map(|l| l.level).collect();
    assert_eq!(levels, [Level::Account, Level::Contact, Level::Lead]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_without_assign_permission_reports_progress() {
    let env = bare_env().await;
    let response = reqwest::Client::new()
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&json!({
            "method": "POST",
            "path": "/services/data/v59.0/sobjects/PermissionSetAssignment",
            "status": 403,
            "body": [{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights on cross-reference id"}],
        }))
        .send()
        .await
        .expect("fault added");
    assert!(response.status().is_success(), "{}", response.status());
    let connector = env.connector();
    let error = setup::fix(&connector, &env.config)
        .await
        .expect_err("assignment is denied")
        .to_string();
    assert!(error.contains("Manage Users"), "{error}");
    assert!(error.contains("assigning Leadscore_Fields"), "{error}");
    assert!(
        error.contains("Account.LS_Score__c"),
        "created fields listed: {error}"
    );

    // With the permission back, a second run assigns the set and creates no field again.
    let fixed = setup::fix(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("second --fix: {err}"));
    assert!(fixed.created.is_empty(), "{fixed:?}");
    // The fields stayed hidden until the assignment, so they were found by their duplicate
    // names, and the grants of the first run were kept.
    assert_eq!(
        fixed.existing.len(),
        setup::custom_field_specs(&env.config).len()
    );
    assert!(fixed.granted.is_empty(), "{fixed:?}");
    assert!(fixed.assigned, "{fixed:?}");
    pipeline::check(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check passes: {err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_without_customize_application_stops() {
    let env = bare_env().await;
    let response = reqwest::Client::new()
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&json!({
            "method": "POST",
            "path": "/services/data/v59.0/tooling/sobjects/CustomField",
            "nth": 3,
            "status": 403,
            "body": [{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights"}],
        }))
        .send()
        .await
        .expect("fault added");
    assert!(response.status().is_success(), "{}", response.status());
    let error = setup::fix(&env.connector(), &env.config)
        .await
        .expect_err("the third field create is denied")
        .to_string();
    assert!(error.contains("Customize Application"), "{error}");
    assert!(error.contains("creating Account.LS_Reasons__c"), "{error}");
    assert!(
        error.contains("fields created: Account.LS_Score__c, Account.LS_Tier__c"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_reports_picklist_missing_values() {
    let env = Env::start_with(bare(), |text| text).await;
    let connector = env.connector();
    let leadscore::run::Crm::Salesforce(salesforce) = connector.crm() else {
        panic!("the sandbox config uses Salesforce");
    };
    // An admin created the tier field earlier with only the first tier as a value.
    let mut tier = setup::custom_field_specs(&env.config)
        .into_iter()
        .find(|spec| spec.object == "Account" && spec.name == "LS_Tier__c")
        .expect("tier field spec");
    let leadscore_salesforce::CustomFieldKind::Picklist { values, .. } = &mut tier.kind else {
        panic!("the tier field is a picklist: {:?}", tier.kind);
    };
    assert!(values.len() > 1, "{values:?}");
    let missing: Vec<String> = values.split_off(1);
    salesforce
        .ensure_custom_fields(&[tier], "Admin_Fields")
        .await
        .unwrap_or_else(|err| panic!("creating the narrow tier field: {err}"));

    let fixed = setup::fix(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check --fix: {err}"));

    assert!(
        !fixed.existing.iter().any(|f| f == "Account.LS_Tier__c"),
        "{fixed:?}"
    );
    let mismatch = fixed
        .mismatched
        .iter()
        .find(|m| m.starts_with("Account.LS_Tier__c"))
        .unwrap_or_else(|| panic!("tier field not reported: {fixed:?}"));
    for value in &missing {
        assert!(mismatch.contains(value.as_str()), "{value}: {mismatch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_reports_hidden_field_of_other_type() {
    let env = Env::start_with(bare(), |text| text).await;
    let connector = env.connector();
    let leadscore::run::Crm::Salesforce(salesforce) = connector.crm() else {
        panic!("the sandbox config uses Salesforce");
    };
    // An admin created the score field as text, and field-level security hides it from the
    // API user, so describe does not list it and the create reports a duplicate name.
    let mut score = setup::custom_field_specs(&env.config)
        .into_iter()
        .find(|spec| spec.object == "Account" && spec.name == "LS_Score__c")
        .expect("score field spec");
    assert_eq!(score.kind, leadscore_salesforce::CustomFieldKind::Number);
    score.kind = leadscore_salesforce::CustomFieldKind::Text { length: 40 };
    salesforce
        .ensure_custom_fields(&[score], "Admin_Fields")
        .await
        .unwrap_or_else(|err| panic!("creating the text score field: {err}"));
    env.handle()
        .set_field_access("Account", "LS_Score__c", false, false)
        .expect("hide the field");

    let fixed = setup::fix(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check --fix: {err}"));

    assert!(
        !fixed.existing.iter().any(|f| f == "Account.LS_Score__c"),
        "{fixed:?}"
    );
    assert!(
        fixed
            .mismatched
            .iter()
            .any(|m| m.starts_with("Account.LS_Score__c") && m.contains("not as a number")),
        "{fixed:?}"
    );
}

/// Runs the leadscore binary off the async runtime's worker threads, so the in-process
/// sandbox keeps serving while the child process calls it.
async fn leadscore_check(env: &Env, flags: &[&str]) -> std::process::Output {
    let options = env.sandbox.options().clone();
    let mut args = vec![
        "check".to_string(),
        "-c".to_string(),
        env.config_path.display().to_string(),
    ];
    args.extend(flags.iter().map(|flag| flag.to_string()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .args(&args)
            .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
            .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
            .env_remove("RUST_LOG")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join")
}

fn status<'a>(
    report: &'a [field_report::FieldStatus],
    object: &str,
    field: &str,
) -> &'a field_report::FieldStatus {
    report
        .iter()
        .find(|s| s.object == object && s.field == field)
        .unwrap_or_else(|| panic!("{object}.{field} not in the report: {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_report_salesforce_read_only() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("field = \"CABG_Discharges__c\"", "field = \"Bed_Count__c\"")
    })
    .await;
    env.handle()
        .set_field_access("Account", "LS_Score__c", true, false)
        .expect("field exists");
    let connector = env.connector();
    let report = field_report::build(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("field report: {err}"));

    let score = status(&report, "Account", "LS_Score__c");
    assert_eq!(score.field_use, FieldUse::WriteBack);
    assert!(score.exists);
    assert!(score.readable);
    assert_eq!(score.writable, Some(false));
    let tier = status(&report, "Account", "LS_Tier__c");
    assert_eq!(tier.writable, Some(true));
    let missing = status(&report, "Account", "Bed_Count__c");
    assert_eq!(missing.field_use, FieldUse::Read);
    assert!(!missing.exists);
    assert!(!missing.readable);
    assert_eq!(missing.writable, None);
    let name = status(&report, "Account", "Name");
    assert!(name.readable);
    let flag = status(&report, "Account", "LS_Feedback__c");
    assert_eq!(flag.field_use, FieldUse::Feedback);
    assert!(flag.exists);

    // The binary prints the table and still fails the check with the usual exit code.
    let output = leadscore_check(&env, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stdout.starts_with("Object"), "{stdout}");
    let score_row = stdout
        .lines()
        .find(|line| line.contains("LS_Score__c"))
        .unwrap_or_else(|| panic!("no score row: {stdout}"));
    let cells: Vec<&str> = score_row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["Account", "LS_Score__c", "write-back", "yes", "yes", "no"]
    );
    assert!(stderr.contains("Bed_Count__c"), "{stderr}");

    let output = leadscore_check(&env, &["--json"]).await;
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let fields = json["fields"].as_array().expect("fields list");
    let score = fields
        .iter()
        .find(|f| f["object"] == "Account" && f["field"] == "LS_Score__c")
        .expect("score field listed");
    assert_eq!(score["use"], "write-back");
    assert_eq!(score["writable"], false);
    assert_eq!(score["readable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_report_in_passing_check() {
    let env = Env::start(SandboxOptions::default()).await;
    let output = leadscore_check(&env, &["--json"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert!(json["api_usage"].is_object(), "{json}");
    let fields = json["fields"].as_array().expect("fields list");
    let writable: Vec<&serde_json::Value> =
        fields.iter().filter(|f| f["use"] == "write-back").collect();
    assert!(!writable.is_empty());
    assert!(writable.iter().all(|f| f["writable"] == true), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_with_nothing_missing_says_so() {
    let env = Env::start(SandboxOptions::default()).await;
    let output = leadscore_check(&env, &["--fix"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("--fix changed nothing"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !stdout.lines().any(|line| line.starts_with("Created ")),
        "{stdout}"
    );
    assert_eq!(tooling_requests(&env), 0, "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_json_lists_created_fields() {
    let env = bare_env().await;
    let output = leadscore_check(&env, &["--fix", "--json"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let created = json["fix"]["created"].as_array().expect("created list");
    assert_eq!(created.len(), setup::custom_field_specs(&env.config).len());
    assert_eq!(json["fix"]["permission_set"]["name"], setup::PERMISSION_SET);
    assert_eq!(json["fix"]["assigned"], true);
    let fields = json["fields"].as_array().expect("fields list");
    assert!(fields
        .iter()
        .filter(|f| f["use"] == "write-back")
        .all(|f| f["writable"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_report_hubspot_read_only() {
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
    let text = hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    );
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, text).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let token = ConnectorSecrets::HubSpotToken(SecretString::from(options.private_app_token));
    let connector = connect(&config, token).expect("connector");
    setup::fix(&connector, &config)
        .await
        .unwrap_or_else(|err| panic!("check --fix: {err}"));

    let score_field = config.writeback_for(Level::Account).score_field.clone();
    let tier_field = config.writeback_for(Level::Account).tier_field.clone();
    let handle = sandbox.handle();
    handle
        .set_field_access(ObjectType::Companies, &score_field, true, false)
        .expect("score property exists");
    handle
        .set_field_access(ObjectType::Companies, &tier_field, false, false)
        .expect("tier property exists");
    let report = field_report::build(&connector, &config)
        .await
        .unwrap_or_else(|err| panic!("field report: {err}"));

    let score = status(&report, "Account", &score_field);
    assert!(score.exists);
    assert!(score.readable);
    assert_eq!(score.writable, Some(false));
    let tier = status(&report, "Account", &tier_field);
    assert!(!tier.exists);
    assert_eq!(tier.writable, Some(false));
    let reasons = status(
        &report,
        "Account",
        &config.writeback_for(Level::Account).reasons_field,
    );
    assert_eq!(reasons.writable, Some(true));
    let check = pipeline::check(&connector, &config)
        .await
        .expect_err("a read-only score property fails the check")
        .to_string();
    assert!(check.contains(&score_field), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_report_stops_on_auth_failure() {
    let env = Env::start_with(SandboxOptions::default(), |text| text).await;
    let mut secrets = env.secrets();
    secrets.refresh_token = SecretString::from("not-the-sandbox-refresh-token".to_string());
    let connector = connect(&env.config, secrets).expect("connector builds");

    let error = field_report::build(&connector, &env.config)
        .await
        .expect_err("a rejected refresh token fails the report");
    assert!(
        error.to_string().contains("authentication failed"),
        "{error}"
    );
    // One token request per field was the old behaviour: dozens of retried logins against an
    // unreachable CRM before the real error appeared.
    let token_requests = env
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/token"))
        .count();
    assert_eq!(token_requests, 1);
}
