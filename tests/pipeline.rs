//! End-to-end tests of the pipeline against the Salesforce sandbox over real HTTP, with a real
//! sled store on disk and the real trained model.

mod common;

use chrono::Utc;
use common::Env;
use leadscore::pipeline;
use leadscore::run::run_once;
use leadscore::{scoring, training, writeback};
use leadscore_sandbox::SandboxOptions;

fn small_pages() -> SandboxOptions {
    SandboxOptions {
        page_size: 100,
        ..SandboxOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_pull_takes_only_changes() {
    let env = Env::start(small_pages()).await;
    let store = env.store();
    let connector = env.connector();

    let first = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let accounts = env.org.records["Account"].len();
    let account_pull = first
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .expect("accounts pulled");
    assert_eq!(account_pull.pulled, accounts);
    assert_eq!(store.record_count("Account").expect("count"), accounts);

    let again = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");
    assert_eq!(again.pulled, 0, "an unchanged org pulls nothing: {again:?}");

    // One user edit: exactly that record comes back, with its new value.
    let edited = env.org.records["Account"][7]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut fields = serde_json::Map::new();
    fields.insert(
        "Name".into(),
        serde_json::json!("Renamed Memorial Hospital"),
    );
    env.handle()
        .update_record("Account", &edited, fields)
        .expect("edit");
    let third = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("third pull");
    assert_eq!(third.pulled, 1, "{third:?}");
    let stored = store.records("Account").expect("records");
    let renamed = stored
        .iter()
        .find(|r| r.id == edited)
        .expect("edited record stored");
    assert_eq!(
        renamed.get("Name").as_str(),
        Some("Renamed Memorial Hospital")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_sharing_cursor_stamp_not_skipped() {
    let env = Env::start(small_pages()).await;
    let store = env.store();
    let connector = env.connector();
    // Ids follow creation order, so give a contact from the middle the latest stamp: the
    // cursor then sits between ids on both sides.
    let contacts = &env.org.records["Contact"];
    let middle = contacts[contacts.len() / 2]["Id"].as_str().expect("id");
    let latest = env.org.as_of + chrono::Duration::days(1);
    env.handle()
        .set_system_modstamp("Contact", middle, latest)
        .expect("stamp");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let cursor = store
        .cursor("Contact")
        .expect("read")
        .expect("cursor saved");
    assert_eq!(cursor.id, middle);

    // Two contacts take the cursor's exact stamp: one ordered after the cursor's id, one before.
    let ids: Vec<&str> = contacts.iter().filter_map(|c| c["Id"].as_str()).collect();
    let after = ids
        .iter()
        .copied()
        .filter(|id| *id > cursor.id.as_str())
        .max()
        .expect("an id after");
    let before = ids
        .iter()
        .copied()
        .filter(|id| *id < cursor.id.as_str())
        .min()
        .expect("an id before");
    let handle = env.handle();
    let mut stamp_change = serde_json::Map::new();
    stamp_change.insert("Buying_Role__c".into(), serde_json::json!("Patient Safety"));
    for id in [after, before] {
        handle
            .update_record("Contact", id, stamp_change.clone())
            .expect("edit");
        handle
            .set_system_modstamp("Contact", id, cursor.modstamp)
            .expect("stamp");
    }

    let report = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let contact_pull = report
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .expect("contacts");
    assert_eq!(
        contact_pull.pulled, 2,
        "both tied records come back: {report:?}"
    );
    let stored = store.records("Contact").expect("records");
    for id in [after, before] {
        let record = stored.iter().find(|r| r.id == id).expect("stored");
        assert_eq!(
            record.get("Buying_Role__c").as_str(),
            Some("Patient Safety"),
            "{id}"
        );
        assert_eq!(record.modstamp, cursor.modstamp, "{id}");
    }
    let repeat = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    assert_eq!(
        repeat.pulled, 0,
        "tied records are not pulled twice: {repeat:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiring_mid_paging_is_refreshed() {
    let env = Env::start(small_pages()).await;
    let store = env.store();
    let connector = env.connector();
    let handle = env.handle();
    connector_check(&connector).await;
    handle.expire_tokens_after_requests(5);

    let report = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull survives expiry");
    let tasks = env.org.records["Task"].len();
    assert!(
        tasks > 300,
        "the test needs several pages of tasks, found {tasks}"
    );
    assert_eq!(store.record_count("Task").expect("count"), tasks);
    assert!(report.pulled > 0);
    let token_grants = handle
        .request_log()
        .iter()
        .filter(|r| r.path == "/services/oauth2/token")
        .count();
    assert!(
        token_grants >= 2,
        "expected a refresh after expiry, saw {token_grants} grants"
    );
}

async fn connector_check(connector: &leadscore_salesforce::SalesforceConnector) {
    use leadscore_connector::Connector;
    connector.check().await.expect("credentials accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_writes_reported_and_not_marked() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    let now = Utc::now();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    training::train(&store, &env.config, now).expect("train");
    let scores = scoring::score(&store, &env.config, now).expect("score");
    assert!(scores.scored > 10, "{scores:?}");

    let rows = store.scores().expect("scores");
    let refused = rows[3].id.clone();
    env.handle().fail_writes(
        &refused,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Score locked by admin",
    );
    let check = pipeline::check(&connector, &env.config)
        .await
        .expect("check");
    let push = writeback::push(
        &connector,
        &store,
        &env.config.writeback,
        check.reasons_max_len,
        now,
    )
    .await
    .expect("push");
    assert_eq!(push.failed.len(), 1, "{push:?}");
    assert_eq!(push.failed[0].id, refused);
    assert_eq!(push.failed[0].code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    assert_eq!(push.written, rows.len() - 1);
    let written = store.written().expect("written");
    assert!(
        !written.contains_key(&refused),
        "a rejected record must not be marked written"
    );
    assert!(env.handle().record("Account", &refused).expect("exists")["LS_Score__c"].is_null());

    // The next push retries only the rejected record.
    let retry = writeback::push(
        &connector,
        &store,
        &env.config.writeback,
        check.reasons_max_len,
        now,
    )
    .await
    .expect("push");
    assert_eq!(retry.planned, 1, "{retry:?}");
    assert_eq!(retry.written, 0);
    assert_eq!(retry.failed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_writes_nothing() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let first = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("first run");
    assert!(first.push.written > 0, "{:?}", first.push);
    assert!(first.push.failed.is_empty(), "{:?}", first.push.failed);
    assert!(
        first.train.holdout_auc.expect("auc") > 0.6,
        "{:?}",
        first.train
    );

    // The CRM holds what was written: score, tier, reasons, version.
    let scored = store.scores().expect("scores");
    let sample = &scored[0];
    let record = env.handle().record("Account", &sample.id).expect("account");
    assert_eq!(record["LS_Score__c"].as_f64(), Some(sample.score));
    assert_eq!(record["LS_Tier__c"].as_str(), Some(sample.tier.as_str()));
    assert_eq!(
        record["LS_Reasons__c"].as_str(),
        Some(sample.reasons.join("\n").as_str())
    );
    assert_eq!(
        record["LS_Model_Version__c"].as_str(),
        Some(sample.model_version.as_str())
    );
    assert!(!sample.reasons.is_empty());

    let second = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("second run");
    assert_eq!(
        second.train.version, first.train.version,
        "same data trains the same model"
    );
    assert_eq!(second.push.planned, 0, "{:?}", second.push);
    assert_eq!(second.push.written, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_record_leaves_store() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let contacts = store.record_count("Contact").expect("count");

    let removed = env.org.records["Contact"][11]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    env.handle()
        .delete_record("Contact", &removed)
        .expect("delete");
    let report = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let contact_pull = report
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .expect("contacts");
    assert_eq!(contact_pull.pulled, 1, "{report:?}");
    assert_eq!(store.record_count("Contact").expect("count"), contacts - 1);
    let stored = store.records("Contact").expect("records");
    assert!(
        stored.iter().all(|r| r.id != removed),
        "the deleted contact is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_cleared_in_crm_written_again() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let first = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("first run");
    assert!(first.push.written > 0);

    // Someone in the CRM clears one account's score and tier.
    let scored = store.scores().expect("scores");
    let cleared = scored[5].id.clone();
    let mut fields = serde_json::Map::new();
    fields.insert("LS_Score__c".into(), serde_json::Value::Null);
    fields.insert("LS_Tier__c".into(), serde_json::Value::Null);
    env.handle()
        .update_record("Account", &cleared, fields)
        .expect("clear");

    let second = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("second run");
    assert_eq!(second.push.written, 1, "{:?}", second.push);
    let record = env.handle().record("Account", &cleared).expect("account");
    assert_eq!(record["LS_Score__c"].as_f64(), Some(scored[5].score));
    assert_eq!(record["LS_Tier__c"].as_str(), Some(scored[5].tier.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_refuses_second_org() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("first pull");

    let mut other = env.config.clone();
    other.salesforce.login_url = "https://login.salesforce.com".to_string();
    let err = pipeline::pull(&env.connector(), &store, &other)
        .await
        .expect_err("a store holds one org");
    let message = err.to_string();
    assert!(
        message.contains("https://login.salesforce.com"),
        "{message}"
    );
    assert!(message.contains("new directory"), "{message}");
}
