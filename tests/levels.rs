//! The three scoring levels end to end against the sandbox over HTTP. Each level trains on
//! its own outcome and writes its own object's fields, and sales-ready leads are flagged. A
//! lead converted after scoring is won at the next training, hints hold when the action is
//! taken, and an org whose accounts carry only a CCN gets the CMS features through enrichment.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use common::{Env, ALL_LEVELS};
use leadscore::features::FeatureSpace;
use leadscore::hints::{self, HintAction};
use leadscore::level::Level;
use leadscore::model::TrainedModel;
use leadscore::run::run_once;
use leadscore::store::ScoreRow;
use leadscore::{levels, pipeline, scoring, training};
use leadscore_sandbox::SandboxOptions;
use serde_json::{json, Value};

fn all_levels(text: String) -> String {
    text.replace(r#"levels = ["account"]"#, ALL_LEVELS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_train_and_write_separately() {
    let env = Env::start_with(SandboxOptions::default(), all_levels).await;
    let store = env.store();
    let report = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("one pass over three levels");
    let levels: Vec<Level> = report.levels.iter().map(|l| l.level).collect();
    assert_eq!(levels, [Level::Account, Level::Contact, Level::Lead]);

    let handle = env.handle();
    let opportunities: BTreeMap<String, bool> = handle
        .records("Opportunity")
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap_or_default().to_string(),
                r["IsWon"] == json!(true),
            )
        })
        .collect();
    let leads: BTreeMap<String, Value> = handle
        .records("Lead")
        .into_iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap_or_default().to_string(),
                Value::Object(r),
            )
        })
        .collect();
    for run in &report.levels {
        let train = &run.train;
        assert!(
            train.examples >= 30,
            "{}: {} examples",
            run.level,
            train.examples
        );
        assert!(
            train.holdout_auc.expect("both outcomes in the holdout") > 0.6,
            "{} AUC {:?}",
            run.level,
            train.holdout_auc
        );
        for (id, label) in train.holdout_ids.iter().zip(&train.holdout_labels) {
            let won = *label == 1.0;
            match run.level {
                Level::Account => assert_eq!(opportunities[id], won, "deal {id}"),
                Level::Contact => {
                    let (deal, contact) = id.split_once(':').expect("deal:contact ids");
                    assert!(contact.starts_with("003"), "{id}");
                    assert_eq!(opportunities[deal], won, "contact example {id}");
                }
                Level::Lead => {
                    assert_eq!(leads[id]["IsConverted"] == json!(true), won, "lead {id}")
                }
            }
        }
        let version = &train.version;
        match run.level {
            Level::Account => {
                assert!(!version.starts_with("lead-") && !version.starts_with("contact-"))
            }
            other => assert!(version.starts_with(&format!("{other}-")), "{version}"),
        }
        assert_eq!(run.push.failed.len(), 0, "{:?}", run.push.failed);
        assert_eq!(run.push.written, run.score.scored, "{} writes", run.level);

        // Each level's scores sit on its own object, written by its own model.
        let scored: Vec<ScoreRow> = store.at_level(run.level).scores().expect("scores");
        assert_eq!(scored.len(), run.score.scored);
        let object = run.level.object();
        for row in scored.iter().take(50) {
            assert_eq!(row.object, object);
            let record = handle
                .record(object, &row.id)
                .expect("scored record exists");
            assert_eq!(
                record["LS_Score__c"],
                json!(row.score),
                "{object} {}",
                row.id
            );
            assert_eq!(record["LS_Model_Version__c"], json!(version));
        }
    }

    // Sales-ready leads carry the checkbox, exactly those at or above the hand-off score.
    let threshold = env
        .config
        .lead
        .sales_ready_score
        .expect("the sandbox config hands off leads");
    let lead_scores = store.at_level(Level::Lead).scores().expect("lead scores");
    let ready: HashSet<&str> = lead_scores
        .iter()
        .filter(|r| r.score >= threshold)
        .map(|r| r.id.as_str())
        .collect();
    assert!(!ready.is_empty(), "no lead reached {threshold}");
    assert!(ready.len() < lead_scores.len(), "every lead is sales-ready");
    for row in &lead_scores {
        let record = handle.record("Lead", &row.id).expect("lead");
        assert_eq!(
            record["LS_Sales_Ready__c"] == json!(true),
            ready.contains(row.id.as_str()),
            "lead {} scored {}",
            row.id,
            row.score
        );
    }
    let events = store.events().expect("events");
    assert_eq!(
        events.iter().filter(|e| e.kind == "sales_ready").count(),
        ready.len(),
        "one sales-ready event per lead that reached the hand-off"
    );
    // Converted and aged-out leads are not scored.
    for row in &lead_scores {
        assert_ne!(
            leads[&row.id]["IsConverted"],
            json!(true),
            "{} is converted",
            row.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_lead_labelled_won_later() {
    let env = Env::start_with(SandboxOptions::default(), all_levels).await;
    let store = env.store();
    run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("first pass");
    let lead_store = store.at_level(Level::Lead);
    let scored = lead_store.scores().expect("lead scores");
    let lead = scored.first().expect("an open lead was scored");
    let account = env
        .handle()
        .records("Account")
        .first()
        .and_then(|a| a["Id"].as_str().map(str::to_string))
        .expect("an account");
    let converted_at = Utc::now();
    env.handle()
        .convert_lead(&lead.id, &account, None, None, converted_at)
        .expect("the sandbox converts the lead");

    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    let train = training::train(&lead_store, &env.config, Utc::now()).expect("lead training");
    let position = train
        .holdout_ids
        .iter()
        .position(|id| *id == lead.id)
        .expect("the lead converted last is among the latest decided leads");
    assert_eq!(train.holdout_labels[position], 1.0);
    let rescored = scoring::score(&lead_store, &env.config, Utc::now()).expect("score");
    assert!(rescored.top.iter().all(|r| r.id != lead.id));
    assert!(
        lead_store
            .scores()
            .expect("scores")
            .iter()
            .all(|r| r.id != lead.id),
        "a converted lead is no longer scored"
    );
}

/// Creates a record over the sandbox's REST API, as a rep's client would.
async fn create(env: &Env, object: &str, body: Value) -> String {
    let http = reqwest::Client::new();
    let options = env.sandbox.options();
    let token: Value = http
        .post(format!("{}/services/oauth2/token", env.sandbox.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", options.client_id.as_str()),
            ("client_secret", options.client_secret.as_str()),
            ("refresh_token", options.refresh_token.as_str()),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    let access = token["access_token"].as_str().expect("access token");
    let instance = token["instance_url"].as_str().expect("instance url");
    let created: Value = http
        .post(format!("{instance}/services/data/v59.0/sobjects/{object}"))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("create request")
        .json()
        .await
        .expect("create JSON");
    created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("create {object} failed: {created}"))
        .to_string()
}

/// The score step searches the hints of a whole batch of records with one model call, and
/// the `score` command builds one history for all levels. Every record's hint must equal the
/// hint a search of that record alone finds. Its candidate rows built from its own row must
/// equal those built whole. Scoring a level with the shared history must report what
/// scoring it with its own freshly built history reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_hints_and_shared_history_change_nothing() {
    let env = Env::start_with(SandboxOptions::default(), all_levels).await;
    let store = env.store();
    run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("one pass over three levels");
    let config = &env.config;
    let now = Utc::now();
    let at = config.scoring.as_of.unwrap_or(now);
    let history = training::load_history(&store, config).expect("history");
    let mut hinted = 0;
    let mut candidates = 0;
    for level in [Level::Account, Level::Contact, Level::Lead] {
        let stored = store
            .at_level(level)
            .current_model()
            .expect("model read")
            .expect("a live model");
        let space: FeatureSpace =
            serde_json::from_value(stored.features.clone()).expect("feature space");
        let model = TrainedModel::from_bytes(&stored.model).expect("model bytes");
        let rows = scoring::score_records(&stored, &history, config, now).expect("scores");
        let open = levels::open_records(level, &history, config, now);
        assert_eq!(open.len(), rows.len(), "{level}");
        // The tiers alone, as the shadow comparison computes them, equal the scored rows'.
        let tiers = scoring::tiers(&stored, &history, config, now).expect("tiers");
        let scored: Vec<(&str, &str)> = rows
            .iter()
            .map(|row| (row.id.as_str(), row.tier.as_str()))
            .collect();
        assert_eq!(tiers, scored, "{level}");
        for (record, row) in open.iter().zip(&rows) {
            assert_eq!(record.id, row.id);
            let alone = hints::best_hint(
                &space,
                &model,
                &history,
                record,
                at,
                row.score,
                &config.hints,
            );
            assert_eq!(row.hint, alone, "{level} {}", row.id);
            hinted += usize::from(alone.is_some());
            // The candidate rows built from the record's own row equal those built whole,
            // bit for bit (NaN included).
            let base = space.row(&history, record.target(), at);
            let bits = |rows: Vec<Vec<f64>>| -> Vec<Vec<u64>> {
                rows.iter()
                    .map(|row| row.iter().map(|v| v.to_bits()).collect())
                    .collect()
            };
            let whole = hints::HintSearch::new(&space, &history, record, at, &config.hints, None);
            let from_base =
                hints::HintSearch::new(&space, &history, record, at, &config.hints, Some(&base));
            candidates += whole.rows.len();
            assert_eq!(bits(from_base.rows), bits(whole.rows), "{level} {}", row.id);
        }
    }
    assert!(hinted > 0, "no record got a hint, so nothing was compared");
    assert!(candidates > 0, "no record had a hint candidate");

    let mut shared = None;
    for level in [Level::Account, Level::Contact, Level::Lead] {
        let at_level = store.at_level(level);
        let with_shared =
            scoring::score_sharing(&at_level, config, now, &mut shared).expect("shared");
        let with_own = scoring::score(&at_level, config, now).expect("own history");
        // The second run finds the first run's scores stored, so only it can see no lead
        // newly reach the hand-off score; everything else must match.
        let report = |report: &scoring::ScoreReport| {
            let mut value = serde_json::to_value(report).expect("json");
            value["newly_sales_ready"] = Value::Null;
            value
        };
        assert_eq!(report(&with_shared), report(&with_own), "{level}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_gain_holds_when_acted() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("first pass");
    let scores = store.scores().expect("account scores");
    let with_hints: Vec<&ScoreRow> = scores.iter().filter(|r| r.hint.is_some()).collect();
    assert!(!with_hints.is_empty(), "no account got a hint");
    let min_points = env.config.hints.min_points;
    for row in &with_hints {
        let hint = row.hint.as_ref().expect("hint");
        assert!(hint.points >= min_points, "{hint:?}");
        assert!(
            hint.text.starts_with(&format!("+{:.0} ", hint.points)),
            "{}",
            hint.text
        );
    }
    // Carry out the hints of up to three accounts with different actions in the sandbox.
    let mut checked = Vec::new();
    for row in with_hints.iter().take(3) {
        let hint = row.hint.as_ref().expect("hint");
        let HintAction::Activity {
            who, meeting, date, ..
        } = &hint.action
        else {
            continue;
        };
        let day = date.format("%Y-%m-%d").to_string();
        if *meeting {
            create(
                &env,
                "Event",
                json!({"WhoId": who, "WhatId": row.id, "Subject": "Demo", "StartDateTime": date.to_rfc3339(), "EndDateTime": (*date + chrono::Duration::hours(1)).to_rfc3339(), "Type": "Meeting"}),
            )
            .await;
        } else {
            create(
                &env,
                "Task",
                json!({"WhoId": who, "WhatId": row.id, "Subject": "Call", "ActivityDate": day, "Status": "Completed", "Type": "Call"}),
            )
            .await;
        }
        checked.push(((*row).clone(), hint.points));
    }
    assert!(!checked.is_empty(), "no activity hint to carry out");
    let connector = env.connector();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    scoring::score(&store, &env.config, Utc::now()).expect("rescore with the same model");
    let after: BTreeMap<String, ScoreRow> = store
        .scores()
        .expect("scores")
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for (before, points) in checked {
        let now = &after[&before.id];
        assert_eq!(now.model_version, before.model_version);
        assert_eq!(
            now.score,
            before.score + points,
            "{}: the hint claimed +{points} from {}",
            before.id,
            before.score
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccn_only_org_gets_cms_features_through_enrichment() {
    let table = r#"
[[enrichment]]
name = "cms"
object = "account"
source = "cms-hospitals"
key = { field = "CMS_Certification_Number__c", column = "Facility ID" }
columns = ["Hospital Type", "Hospital Ownership", "Hospital overall rating", "HIP-KNEE Discharges", "CABG Discharges", "AMI Discharges"]
"#;
    let env = Env::start_org(SandboxOptions::default(), true, |text| {
        text.replace("\n[model]", &format!("{table}\n[model]"))
    })
    .await;
    let handle = env.handle();
    let accounts = handle.records("Account");
    let hospitals = accounts
        .iter()
        .filter(|a| a["Type"] == json!("Hospital"))
        .count();
    assert!(accounts
        .iter()
        .all(|a| a["Hospital_Type__c"].is_null() && a["CMS_Overall_Rating__c"].is_null()));

    let store = env.store();
    let report = run_once(&env.connector(), &store, &env.config, Utc::now())
        .await
        .expect("pass with enrichment");
    let train = &report.levels[0].train;
    let stored = store.current_model().expect("store").expect("live model");
    let model_report = &stored.report;
    let enrichment = &model_report["enrichment"][0];
    // Every hospital carries its CCN; health systems have none and are reported, not dropped.
    assert_eq!(
        enrichment["matched_exact"]["count"].as_u64(),
        Some(hospitals as u64),
        "{enrichment}"
    );
    assert_eq!(
        enrichment["records_without_key"]["count"].as_u64(),
        Some((accounts.len() - hospitals) as u64),
        "{enrichment}"
    );
    assert_eq!(enrichment["version"].as_str().map(str::len), Some(16));
    let features: Vec<String> =
        serde_json::from_value::<leadscore::features::FeatureSpace>(stored.features.clone())
            .expect("feature space")
            .names();
    assert!(
        features.iter().any(|f| f.starts_with("cms_hospital_type=")),
        "{features:?}"
    );
    assert!(
        features.iter().any(|f| f.starts_with("cms_")),
        "{features:?}"
    );
    assert!(train.holdout_auc.expect("auc") > 0.6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_missing_sales_ready_field() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        all_levels(text).replace(
            r#"sales_ready_field = "LS_Sales_Ready__c""#,
            r#"sales_ready_field = "LS_Hot_Lead__c""#,
        )
    })
    .await;
    let err = pipeline::check(&env.connector(), &env.config)
        .await
        .expect_err("the field does not exist");
    let text = err.to_string();
    assert!(
        text.contains(r#"[lead] sales_ready_field: Lead has no field "LS_Hot_Lead__c""#),
        "{text}"
    );
    assert!(
        text.contains("`leadscore check --fix` creates the missing custom fields"),
        "{text}"
    );
    assert_eq!(
        text.matches("LS_Hot_Lead__c").count(),
        1,
        "reported once: {text}"
    );
    let err = run_once(&env.connector(), &env.store(), &env.config, Utc::now())
        .await
        .expect_err("a run stops at check");
    assert!(err.to_string().contains("LS_Hot_Lead__c"));
    assert!(
        env.handle()
            .records("Account")
            .iter()
            .all(|a| a["LS_Score__c"].is_null()),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_level_object_named() {
    let env = Env::start_with(SandboxOptions::default(), all_levels).await;
    env.handle().hide_object("Lead");
    let err = pipeline::check(&env.connector(), &env.config)
        .await
        .expect_err("Lead is hidden");
    let text = err.to_string();
    assert!(
        text.contains("[scoring] levels: lead scoring needs the Lead object, which the org does not offer this user"),
        "{text}"
    );
    assert!(
        text.contains(r#"remove "lead" from levels or grant access to Lead"#),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Lead")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one problem for the object, not one per field: {text}"
    );
}
