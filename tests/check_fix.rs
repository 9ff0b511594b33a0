//! `check --fix` on a Salesforce org without leadscore's custom fields, over real HTTP. The
//! check names the missing fields, and the fix creates them through the Tooling API and
//! grants them through a permission set. A full pass then writes into them.

mod common;

use chrono::Utc;
use common::{Env, ALL_LEVELS};
use leadscore::level::Level;
use leadscore::run::run_once;
use leadscore::{pipeline, setup};
use leadscore_sandbox::SandboxOptions;
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
    assert!(fixed.assigned, "{fixed:?}");
    pipeline::check(&connector, &env.config)
        .await
        .unwrap_or_else(|err| panic!("check passes: {err}"));
}
