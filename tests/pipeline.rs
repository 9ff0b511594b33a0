//! End-to-end tests of the pipeline against the Salesforce sandbox over real HTTP, with a real
//! redb store on disk and the real trained model.

mod common;

use std::collections::HashSet;

use chrono::{SubsecRound, Utc};
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

async fn connector_check(connector: &leadscore::run::AnyConnector) {
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
    let push = writeback::push(&connector, &store, &env.config, &check.reasons_max_len, now)
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
    let retry = writeback::push(&connector, &store, &env.config, &check.reasons_max_len, now)
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
    assert!(
        first.levels[0].push.written > 0,
        "{:?}",
        first.levels[0].push
    );
    assert!(
        first.levels[0].push.failed.is_empty(),
        "{:?}",
        first.levels[0].push.failed
    );
    assert!(
        first.levels[0].train.holdout_auc.expect("auc") > 0.6,
        "{:?}",
        first.levels[0].train
    );

    // The CRM contains what was written: score, tier, reasons, version.
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
        second.levels[0].train.version, first.levels[0].train.version,
        "same data trains the same model"
    );
    assert_eq!(
        second.levels[0].push.planned, 0,
        "{:?}",
        second.levels[0].push
    );
    assert_eq!(second.levels[0].push.written, 0);
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
    assert!(first.levels[0].push.written > 0);

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
    assert_eq!(
        second.levels[0].push.written, 1,
        "{:?}",
        second.levels[0].push
    );
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
    if let leadscore::config::ConnectorSettings::Salesforce(settings) = &mut other.connector {
        settings.login_url = "https://login.salesforce.com".to_string();
    }
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

/// Small deterministic generator (SplitMix64) for synthetic example sets.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// Rows with a real signal (`signal`, `weak`), a leaky copy of the label with 2% of it
/// flipped (`leaky`), a constant column and a column that is almost always missing.
fn planted_examples(rows: usize) -> training::ExampleSet {
    let mut rng = SplitMix(41);
    let mut examples = training::ExampleSet::default();
    examples.dataset.feature_names = ["signal", "weak", "leaky", "constant", "sparse"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for index in 0..rows {
        let signal = rng.normal();
        let weak = rng.normal();
        let won = rng.uniform() < 1.0 / (1.0 + (-(1.5 * signal + 0.5 * weak)).exp());
        let label = if won { 1.0 } else { 0.0 };
        let leaky = if rng.uniform() < 0.02 {
            1.0 - label
        } else {
            label
        } + 0.01 * rng.normal();
        let sparse = if index % 500 == 0 { 1.0 } else { f64::NAN };
        examples
            .dataset
            .rows
            .push(vec![signal, weak, leaky, 7.0, sparse]);
        examples.dataset.labels.push(label);
        examples.ids.push(format!("deal-{index:05}"));
        examples.order.push(index as i64);
    }
    examples
}

#[test]
fn leaky_column_flagged_and_excluded() {
    let examples = planted_examples(1500);
    let settings = leadscore::config::ModelConfig {
        trees: 30,
        ..Default::default()
    };
    let evaluation = training::evaluate_examples(&examples, &settings, None).expect("evaluates");
    let report = &evaluation.report;

    let leak = &report.checks.leakage;
    assert_eq!(leak.len(), 1, "{leak:?}");
    assert_eq!(leak[0].feature, "leaky");
    assert!(leak[0].auc > 0.95, "{leak:?}");
    assert!(leak[0].excluded);
    let dropped: Vec<&str> = report
        .checks
        .dropped
        .iter()
        .map(|d| d.feature.as_str())
        .collect();
    assert_eq!(dropped, vec!["constant", "sparse"]);
    assert_eq!(
        evaluation.model.feature_names(),
        &["signal".to_string(), "weak".to_string()]
    );

    // Slices follow the order key: the latest 20% are the holdout.
    assert_eq!(report.counts.holdout, 300);
    assert_eq!(report.counts.validation, 225);
    assert_eq!(report.counts.train, 975);
    assert_eq!(evaluation.holdout_ids[0], "deal-01200");
    assert_eq!(evaluation.holdout_predictions.len(), 300);

    // Without the leak the honest AUC is well below 0.95 but well above chance.
    let auc = report.metrics.auc.expect("auc");
    assert!((0.7..0.95).contains(&auc), "auc {auc}");
    let baseline = report.baseline.metrics.auc.expect("baseline auc");
    assert!(baseline > 0.7, "baseline auc {baseline}");
    assert_eq!(report.candidates.len(), 3);
    assert_eq!(report.lift.len(), 10);
    assert!(report.lift[0].win_rate > report.lift[9].win_rate);
    assert_eq!(report.tiers.iter().map(|t| t.count).sum::<usize>(), 300);
}

#[test]
fn kept_feature_stays_in_model() {
    let examples = planted_examples(1500);
    let settings = leadscore::config::ModelConfig {
        trees: 30,
        keep_features: vec!["leaky".to_string()],
        ..Default::default()
    };
    let evaluation = training::evaluate_examples(&examples, &settings, None).expect("evaluates");
    let leak = &evaluation.report.checks.leakage;
    assert_eq!(leak.len(), 1, "{leak:?}");
    assert!(!leak[0].excluded);
    assert!(evaluation
        .model
        .feature_names()
        .contains(&"leaky".to_string()));
}

#[test]
fn sufficiency_floor_rejects_evaluation() {
    let mut examples = planted_examples(1500);
    examples.dataset.rows.truncate(151);
    examples.dataset.labels = vec![0.0; 151];
    for label in examples.dataset.labels.iter_mut().take(12) {
        *label = 1.0;
    }
    examples.ids.truncate(151);
    examples.order.truncate(151);
    let err = training::evaluate_examples(&examples, &Default::default(), None)
        .expect_err("below the floors");
    let message = err.to_string();
    assert!(
        message.contains("needs 200 closed deals, has 151: 49 more"),
        "{message}"
    );
    assert!(
        message.contains("needs 40 won deals (the rarer class), has 12: 28 more"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_refuses_below_floor() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let closed = store
        .records("Opportunity")
        .expect("records")
        .iter()
        .filter(|r| r.get("IsClosed").as_bool() == Some(true))
        .filter(|r| r.get("CloseDate").as_datetime().is_some())
        .count();
    let mut config = env.config.clone();
    config.model.min_examples = closed + 25;
    let err = training::train(&store, &config, Utc::now()).expect_err("below the floor");
    let expected = format!("needs {} closed deals, has {closed}: 25 more", closed + 25);
    assert!(err.to_string().contains(&expected), "{err}");
    assert!(
        store.current_model().expect("store").is_none(),
        "nothing is published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_labels_and_stored_report() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let by_flag = training::train(&store, &env.config, Utc::now()).expect("train by IsWon");

    let mut config = env.config.clone();
    config.model.label = leadscore::config::LabelRule::Stages {
        won: vec!["Closed Won".to_string()],
        lost: vec!["Closed Lost".to_string()],
    };
    let by_stage = training::train(&store, &config, Utc::now()).expect("train by stage");
    assert_eq!(by_stage.examples, by_flag.examples);
    assert_eq!(by_stage.won, by_flag.won);

    // Only won stages: every example is won, so the minority floor rejects training.
    config.model.label = leadscore::config::LabelRule::Stages {
        won: vec!["Closed Won".to_string()],
        lost: vec!["No Such Stage".to_string()],
    };
    let err = training::train(&store, &config, Utc::now()).expect_err("one class");
    assert!(
        err.to_string()
            .contains("lost deals (the rarer class), has 0"),
        "{err}"
    );

    let stored = store.current_model().expect("store").expect("a live model");
    let report = &stored.report;
    for key in [
        "version",
        "trained_at",
        "chosen",
        "calibration_method",
        "window",
        "counts",
        "checks",
        "metrics",
        "baseline",
        "candidates",
        "calibration",
        "lift",
        "tiers",
        "top_features",
        "trees_used",
        "live_comparison",
    ] {
        assert!(report.get(key).is_some(), "report lacks {key}: {report}");
    }
    assert!(report["window"]["holdout_from"].is_string(), "{report}");
    let trees_used = report["trees_used"]
        .as_u64()
        .expect("trees_used is a count");
    assert!(
        (1..=config.model.trees as u64).contains(&trees_used),
        "{trees_used} trees"
    );
    // Top features name configured features: one-hot columns (`feature=level`) are summed.
    let top_features = report["top_features"].as_array().expect("a list");
    assert!(!top_features.is_empty());
    for entry in top_features {
        let name = entry["feature"].as_str().expect("a name");
        assert!(
            !name.contains('='),
            "column {name} listed instead of its feature"
        );
    }
    let names: HashSet<&str> = top_features
        .iter()
        .filter_map(|e| e["feature"].as_str())
        .collect();
    assert_eq!(names.len(), top_features.len(), "a feature is listed twice");
    assert_eq!(report["checks"]["sufficiency"]["passed"], true);
    let method = report["calibration_method"].as_str().expect("method");
    assert!(["isotonic", "platt", "none"].contains(&method), "{method}");
}

/// Adds a `tags` category to `examples` as one-hot columns `tags=t0` .. `tags=t19`, the form
/// the CSV encoder gives. Even levels are won deals and odd levels lost ones, so each column
/// alone covers a twentieth of the rows and ranks them weakly, while the level decides the
/// outcome.
fn add_leaky_category(examples: &mut training::ExampleSet) {
    let levels = 20;
    let mut rng = SplitMix(97);
    examples
        .dataset
        .feature_names
        .extend((0..levels).map(|l| format!("tags=t{l}")));
    for (row, label) in examples
        .dataset
        .rows
        .iter_mut()
        .zip(&examples.dataset.labels)
    {
        let pair = (rng.uniform() * (levels / 2) as f64) as usize % (levels / 2);
        let level = 2 * pair + usize::from(*label < 0.5);
        row.extend((0..levels).map(|l| f64::from(u8::from(l == level))));
    }
}

#[test]
fn leaky_category_flagged_as_feature() {
    let mut examples = planted_examples(1500);
    add_leaky_category(&mut examples);
    let settings = leadscore::config::ModelConfig {
        trees: 30,
        ..Default::default()
    };
    let evaluation = training::evaluate_examples(&examples, &settings, None).expect("evaluates");
    let leak = &evaluation.report.checks.leakage;
    let features: Vec<&str> = leak.iter().map(|l| l.feature.as_str()).collect();
    assert_eq!(features, vec!["leaky", "tags"], "{leak:?}");
    let tags = &leak[1];
    assert!(tags.auc > 0.95, "{tags:?}");
    assert!(tags.excluded);
    assert_eq!(tags.excluded_columns.len(), 20, "{tags:?}");

    // No level alone passes the threshold, so a per-column check would miss the leak.
    for level in 0..20 {
        let name = format!("tags=t{level}");
        let column = examples
            .dataset
            .feature_names
            .iter()
            .position(|n| *n == name)
            .expect("column present");
        let values: Vec<f64> = examples.dataset.rows.iter().map(|r| r[column]).collect();
        let auc = leadscore::model::metrics::roc_auc(&examples.dataset.labels, &values)
            .expect("both classes");
        assert!(auc.max(1.0 - auc) < 0.6, "{name}: auc {auc}");
    }

    // Every tags column is out of the model, and the honest signal remains.
    let kept = evaluation.model.feature_names();
    assert_eq!(kept, &["signal".to_string(), "weak".to_string()]);
    let auc = evaluation.report.metrics.auc.expect("auc");
    assert!((0.7..0.95).contains(&auc), "auc {auc}");
}

#[test]
fn kept_category_stays_in_model() {
    let mut examples = planted_examples(1500);
    add_leaky_category(&mut examples);
    let settings = leadscore::config::ModelConfig {
        trees: 30,
        keep_features: vec!["tags".to_string()],
        ..Default::default()
    };
    let evaluation = training::evaluate_examples(&examples, &settings, None).expect("evaluates");
    let tags = evaluation
        .report
        .checks
        .leakage
        .iter()
        .find(|l| l.feature == "tags")
        .expect("tags flagged");
    assert!(!tags.excluded);
    let kept = evaluation.model.feature_names();
    let tag_columns = kept.iter().filter(|n| n.starts_with("tags=")).count();
    assert_eq!(tag_columns, 20, "{kept:?}");
}

#[test]
fn misspelt_keep_feature_rejected() {
    let examples = planted_examples(1500);
    let settings = leadscore::config::ModelConfig {
        trees: 10,
        keep_features: vec!["tgas".to_string()],
        ..Default::default()
    };
    let err = training::evaluate_examples(&examples, &settings, None)
        .expect_err("an unknown keep_features name is rejected");
    let message = err.to_string();
    assert!(message.contains("\"tgas\""), "{message}");
    assert!(message.contains("Features are:"), "{message}");
}

/// Counts closed deals with a close date per `Hospital_Type__c` of their account, the way
/// training labels them, straight from the pulled records.
fn closed_deals_by_hospital_type(
    store: &leadscore::store::Store,
) -> std::collections::BTreeMap<String, usize> {
    let accounts = store.records("Account").expect("accounts");
    let mut counts = std::collections::BTreeMap::new();
    for deal in store.records("Opportunity").expect("deals") {
        if deal.get("IsClosed").as_bool() != Some(true)
            || deal.get("CloseDate").as_datetime().is_none()
        {
            continue;
        }
        let account_id = deal.get("AccountId").as_str().expect("account id");
        let account = accounts
            .iter()
            .find(|a| a.id == account_id)
            .expect("account pulled");
        if let Some(kind) = account.get("Hospital_Type__c").as_str() {
            *counts.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_segments_warn_and_train() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let counts = closed_deals_by_hospital_type(&store);
    assert!(counts.len() >= 2, "{counts:?}");
    let largest = counts.values().copied().max().expect("a segment");
    let smallest = counts.values().copied().min().expect("a segment");
    assert!(smallest < largest, "{counts:?}");

    // A floor above every segment but the largest one.
    let floor = largest;
    let mut config = env.config.clone();
    config.model.segment = Some("hospital_type".to_string());
    config.model.min_segment_examples = floor;
    let trained = training::train(&store, &config, Utc::now()).expect("warnings do not block");
    assert!(trained.examples > 0);

    let stored = store.current_model().expect("store").expect("a live model");
    let segments = stored.report["checks"]["sufficiency"]["segments"]
        .as_array()
        .expect("segments listed")
        .clone();
    let short: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n < floor).collect();
    assert!(!short.is_empty());
    for (segment, closed) in short {
        let entry = segments
            .iter()
            .find(|s| s["segment"] == segment.as_str())
            .unwrap_or_else(|| panic!("{segment} missing from {segments:?}"));
        assert_eq!(entry["examples"], *closed);
        assert_eq!(entry["missing"], floor - closed);
        let expected = format!(
            "segment {segment}: {closed} closed deals, needs {floor}: {} more",
            floor - closed
        );
        let message = entry["message"].as_str().expect("message");
        assert!(message.starts_with(&expected), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_segments_reject_training() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("# segment = ", "segment = ")
            .replace("min_segment_examples = 30", "min_segment_examples = 100000")
            .replace("strict_segments = false", "strict_segments = true")
    })
    .await;
    assert!(env.config.model.strict_segments);
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let err = training::train(&store, &env.config, Utc::now()).expect_err("strict segments");
    let message = err.to_string();
    assert!(message.contains("strict_segments = true"), "{message}");
    for (segment, closed) in closed_deals_by_hospital_type(&store) {
        let expected = format!(
            "segment {segment}: {closed} closed deals, needs 100000: {} more",
            100_000 - closed
        );
        assert!(message.contains(&expected), "{expected} not in {message}");
    }
    assert!(
        store.current_model().expect("store").is_none(),
        "nothing is published"
    );
}

/// Gives `Incumbent_Competitor__c` (mapped as the `present` feature `incumbent_competitor`) a
/// value on exactly the accounts with a closed deal and clears it on every other account, as a
/// field filled in when a deal closes would be. Returns how many accounts got a value.
fn fill_field_on_closed_accounts(env: &Env) -> usize {
    let closed_accounts: HashSet<&str> = env.org.records["Opportunity"]
        .iter()
        .filter(|deal| deal["IsClosed"].as_bool() == Some(true))
        .filter_map(|deal| deal["AccountId"].as_str())
        .collect();
    let handle = env.handle();
    for account in &env.org.records["Account"] {
        let id = account["Id"].as_str().expect("account id");
        let value = if closed_accounts.contains(id) {
            serde_json::json!("Post-sale service vendor")
        } else {
            serde_json::Value::Null
        };
        let mut fields = serde_json::Map::new();
        fields.insert("Incumbent_Competitor__c".into(), value);
        handle
            .update_record("Account", id, fields)
            .expect("account edit");
    }
    closed_accounts.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_outcome_field_flagged_and_excluded() {
    // Accounts whose only closed deals were lost stay scored, and in this org they are about a
    // third of the accounts scored, so the default 5% scoring share would not flag the field.
    // Every closed deal has it, though, while other features reach at most 86% in training.
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace(
            "post_outcome_train_share = 0.5\npost_outcome_scoring_share = 0.05",
            "post_outcome_train_share = 0.9\npost_outcome_scoring_share = 0.4",
        )
    })
    .await;
    assert_eq!(env.config.model.post_outcome_train_share, 0.9);
    assert_eq!(env.config.model.post_outcome_scoring_share, 0.4);
    let filled = fill_field_on_closed_accounts(&env);
    assert!(filled > 0, "the org has accounts with closed deals");
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let summary = training::train(&store, &env.config, Utc::now()).expect("train");

    let stored = store
        .model(&summary.version)
        .expect("store")
        .expect("the trained model is stored");
    let flags = stored.report["checks"]["leakage"]
        .as_array()
        .expect("a leakage list");
    let flag = flags
        .iter()
        .find(|f| f["feature"] == "incumbent_competitor")
        .unwrap_or_else(|| panic!("incumbent_competitor not flagged: {flags:?}"));
    assert_eq!(flag["excluded"], true, "{flag}");
    let train_share = flag["train_share"].as_f64().expect("train share");
    let scoring_share = flag["scoring_share"].as_f64().expect("scoring share");
    assert_eq!(
        train_share, 1.0,
        "every closed deal's account has the field: {flag}"
    );
    assert!(scoring_share > 0.0, "lost accounts are scored: {flag}");
    assert!(scoring_share <= 0.4, "{flag}");
    assert_eq!(
        flags.len(),
        1,
        "only the filled field is flagged: {flags:?}"
    );
    let reason = flag["reason"].as_str().expect("a reason");
    let expected = format!(
        "present for {:.0}% of closed deals but {:.0}% of accounts being scored",
        train_share * 100.0,
        scoring_share * 100.0
    );
    assert_eq!(reason, expected);
    assert!(
        stored.report["checks"].get("notes").is_none(),
        "the check ran: {}",
        stored.report["checks"]
    );

    // The feature is out of the stored feature space, so scoring never reads it.
    let columns = stored.features["columns"].as_array().expect("columns");
    assert!(!columns.is_empty());
    for column in columns {
        assert_ne!(column["feature"], "incumbent_competitor", "{column}");
    }
}

#[test]
fn evaluation_notes_skipped_post_outcome_check() {
    let examples = planted_examples(1500);
    let settings = leadscore::config::ModelConfig {
        trees: 30,
        ..Default::default()
    };
    let evaluation = training::evaluate_examples(&examples, &settings, None).expect("evaluates");
    let notes = &evaluation.report.checks.notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("post-outcome check skipped"),
        "{notes:?}"
    );
    let json = serde_json::to_value(&evaluation.report).expect("report serialises");
    assert_eq!(json["checks"]["notes"][0], notes[0].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_added_to_config_pulls_every_record_again() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let accounts = store.records("Account").expect("accounts");
    assert!(accounts
        .iter()
        .all(|a| !a.fields.contains_key("CMS_Certification_Number__c")));

    // An admin adds a feature on a field that was never pulled.
    let mut config = env.config.clone();
    config
        .features
        .attributes
        .push(leadscore::config::AttributeFeature {
            name: "ccn".into(),
            field: "CMS_Certification_Number__c".into(),
            kind: leadscore::config::AttributeKind::Present,
            label: "CMS certification number".into(),
        });
    let again = pipeline::pull(&connector, &store, &config)
        .await
        .expect("pull after the change");
    let pulled_accounts = again
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .expect("accounts pulled")
        .pulled;
    assert_eq!(
        pulled_accounts,
        accounts.len(),
        "every account is fetched again"
    );
    let contacts = again
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .expect("contacts")
        .pulled;
    assert_eq!(
        contacts, 0,
        "objects whose fields did not change stay incremental"
    );
    let hospitals_with_ccn = store
        .records("Account")
        .expect("accounts")
        .iter()
        .filter(|a| !a.get("CMS_Certification_Number__c").is_null())
        .count();
    let hospitals = env
        .handle()
        .records("Account")
        .iter()
        .filter(|a| !a["CMS_Certification_Number__c"].is_null())
        .count();
    assert_eq!(hospitals_with_ccn, hospitals);
    let third = pipeline::pull(&connector, &store, &config)
        .await
        .expect("third pull");
    assert_eq!(third.pulled, 0, "nothing changed since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_refuses_a_field_never_pulled() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let mut config = env.config.clone();
    config.features.attributes[0].field = "Hip_Knee_Dischargez__c".into();
    let err = training::train(&store, &config, Utc::now()).expect_err("the field was never pulled");
    let text = err.to_string();
    assert!(text.contains("Hip_Knee_Dischargez__c"), "{text}");
    assert!(text.contains("leadscore check"), "{text}");
    assert!(
        store.current_model().expect("store").is_none(),
        "no model went live"
    );
    // The configured fields train.
    training::train(&store, &env.config, Utc::now()).expect("train");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_inside_the_lookback_is_pulled() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let cursor = store.cursor("Contact").expect("store").expect("a cursor");
    // A record that changed, committed late with a stamp a minute before the stored cursor:
    // an incremental pull from the cursor alone would never see it.
    let contact = store.records("Contact").expect("contacts")[0].clone();
    let handle = env.handle();
    let mut fields = serde_json::Map::new();
    fields.insert("Title".into(), serde_json::json!("Chief Late Committer"));
    handle
        .update_record("Contact", &contact.id, fields)
        .expect("update");
    let late = cursor.modstamp - chrono::Duration::seconds(60);
    handle
        .set_system_modstamp("Contact", &contact.id, late)
        .expect("stamp");
    let again = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");
    let contacts = again
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .expect("contacts");
    assert_eq!(contacts.pulled, 1, "only the late record is new work");
    let stored = store
        .records("Contact")
        .expect("contacts")
        .into_iter()
        .find(|c| c.id == contact.id)
        .expect("stored");
    assert_eq!(stored.modstamp, late.trunc_subsecs(3));
    assert!(
        store.cursor("Contact").expect("store").expect("cursor") >= cursor,
        "a late record never moves the cursor back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_from_the_future_is_reset() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let accounts = store.record_count("Account").expect("count");
    // A host clock that ran a year ahead once saved this cursor.
    let future = leadscore_connector::Cursor {
        modstamp: Utc::now() + chrono::Duration::days(365),
        id: "001zzzzzzzzzzzzzzz".into(),
    };
    store
        .save_page("Account", &[], &future)
        .expect("cursor saved");
    let again = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let pulled = again
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .expect("accounts")
        .pulled;
    assert_eq!(pulled, accounts, "every account is fetched again");
    assert!(
        store
            .cursor("Account")
            .expect("store")
            .expect("cursor")
            .modstamp
            < future.modstamp
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_during_paging_is_pulled_next_time() {
    let options = SandboxOptions {
        page_size: 200,
        ..SandboxOptions::default()
    };
    let env = Env::start_with(options, |text| {
        text.replace("cursor_lookback_secs = 300", "cursor_lookback_secs = 0")
    })
    .await;
    // The first follow-up page of the pull (the second page of Account, the first object
    // with more than one page) is returned 2.5 s late, while the test edits two accounts.
    let response = reqwest::Client::new()
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&serde_json::json!({
            "method": "GET",
            "path": "/services/data/v59.0/query/",
            "nth": 1,
            "count": 1,
            "delay_ms": 2500,
        }))
        .send()
        .await
        .expect("fault added");
    assert!(response.status().is_success(), "{}", response.status());

    let handle = env.handle();
    let mut accounts = handle.records("Account");
    accounts.sort_by_key(|a| {
        (
            a["SystemModstamp"].as_str().unwrap_or_default().to_string(),
            a["Id"].as_str().unwrap_or_default().to_string(),
        )
    });
    let first = accounts[0]["Id"].as_str().expect("id").to_string();
    let last = accounts[accounts.len() - 1]["Id"]
        .as_str()
        .expect("id")
        .to_string();

    let store = env.store();
    let connector = env.connector();
    let pull = pipeline::pull(&connector, &store, &env.config);
    let edits = async {
        // Waits for the first pages of User and Account, then edits an account already read
        // and, a second later, one on a page not read yet.
        while handle
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/queryAll"))
            .count()
            < 2
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let rename = |name: &str| {
            let mut fields = serde_json::Map::new();
            fields.insert("Name".into(), serde_json::json!(name));
            fields
        };
        handle
            .update_record("Account", &first, rename("Edited While Paging"))
            .expect("first edit");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        handle
            .update_record("Account", &last, rename("Edited Later"))
            .expect("second edit");
    };
    let (pulled, ()) = tokio::join!(pull, edits);
    pulled.expect("first pull");

    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");
    let stored = store
        .records("Account")
        .expect("accounts")
        .into_iter()
        .find(|a| a.id == first)
        .expect("stored");
    assert_eq!(
        stored.get("Name").as_str(),
        Some("Edited While Paging"),
        "an edit made while an earlier pull paged is pulled by the next one"
    );
}
