//! Rep feedback against the sandboxes over HTTP. A rep flags a score through the CRM's
//! ordinary update API, and the next pull stores the flag with the score it was about.
//! Training then weights the flagged examples, and the model card reports the flags.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use chrono::Utc;
use common::Env;
use leadscore::config::{Config, ConnectorSecrets};
use leadscore::demo::hubspot_sandbox_config;
use leadscore::feedback::{FlagValue, FLAG_VALUES};
use leadscore::pipeline;
use leadscore::run::{connect, run_once};
use leadscore::store::{ScoreRow, Store};
use leadscore::training;
use leadscore_connector::Value as CrmValue;
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::{json, Value};

/// Updates one Salesforce record through `PATCH /sobjects/{object}/{id}`, as a rep's edit in
/// the CRM would.
async fn patch_salesforce(env: &Env, object: &str, id: &str, body: Value) {
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
    let response = http
        .patch(format!(
            "{instance}/services/data/v59.0/sobjects/{object}/{id}"
        ))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("update request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status.as_u16(), 204, "update {object} {id} failed: {text}");
}

/// Returns scored accounts with a lost closed deal, the earliest-closed first, so that
/// their deals fall in the training slice.
fn scored_with_lost_deal(store: &Store, scores: &[ScoreRow]) -> Vec<String> {
    let scored: HashSet<&str> = scores.iter().map(|r| r.id.as_str()).collect();
    let mut lost: BTreeMap<String, String> = BTreeMap::new();
    for deal in store.records("Opportunity").expect("deals") {
        let closed = deal.get("IsClosed") == &CrmValue::Bool(true);
        let won = deal.get("IsWon") == &CrmValue::Bool(true);
        let Some(account) = deal.get("AccountId").as_str() else {
            continue;
        };
        let close = deal.get("CloseDate").to_string();
        if closed && !won && scored.contains(account) {
            let entry = lost.entry(account.to_string()).or_insert(close.clone());
            if close < *entry {
                *entry = close;
            }
        }
    }
    let mut ordered: Vec<(String, String)> = lost.into_iter().map(|(a, c)| (c, a)).collect();
    ordered.sort();
    ordered.into_iter().map(|(_, account)| account).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_reach_store_training_and_card() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace(r#"use = "review""#, r#"use = "weights""#)
            .replace("weight = 2.0", "weight = 3.0")
    })
    .await;
    let connector = env.connector();
    let store = env.store();
    let now = Utc::now();
    let first = run_once(&connector, &store, &env.config, now)
        .await
        .expect("first pass");
    assert!(
        first.check.feedback.is_empty(),
        "the sandbox has both feedback fields: {:?}",
        first.check.feedback
    );
    assert_eq!(first.pull.feedback.recorded, 0, "no rep has flagged yet");
    // Flags never change outcomes: the won deals before any flag, compared after training.
    let won_before = store
        .records("Opportunity")
        .expect("deals")
        .iter()
        .filter(|d| d.get("IsWon") == &CrmValue::Bool(true))
        .count();

    let scores = store.scores().expect("scores");
    let lost = scored_with_lost_deal(&store, &scores);
    assert!(lost.len() >= 5, "too few scored accounts with a lost deal");
    let others: Vec<&ScoreRow> = scores.iter().filter(|r| !lost.contains(&r.id)).collect();
    assert!(others.len() >= 3, "too few other scored accounts");
    let row_of = |id: &str| scores.iter().find(|r| r.id == id).expect("scored").clone();

    // A rep marks one account's score as too high, with a comment.
    let main = row_of(&lost[0]);
    patch_salesforce(
        &env,
        "Account",
        &main.id,
        json!({ "LS_Feedback__c": "Too high", "LS_Feedback_Comment__c": "Signed with a competitor" }),
    )
    .await;
    let pulled = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull after the flag");
    assert_eq!(pulled.feedback.recorded, 1, "{:?}", pulled.feedback);
    let flags = store.flags().expect("flags");
    assert_eq!(flags.len(), 1);
    let flag = &flags[0];
    assert_eq!(flag.id, main.id);
    assert_eq!(flag.object, "Account");
    assert_eq!(flag.value, FlagValue::TooHigh);
    assert_eq!(flag.comment.as_deref(), Some("Signed with a competitor"));
    assert_eq!(flag.score, Some(main.score), "the score the rep saw");
    assert_eq!(flag.tier.as_deref(), Some(main.tier.as_str()));
    assert_eq!(
        flag.model_version.as_deref(),
        Some(main.model_version.as_str())
    );
    assert_eq!(flag.reasons, main.reasons);

    // A pull with no change stores nothing more.
    let again = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull without change");
    assert_eq!(again.feedback.recorded, 0);
    assert_eq!(store.flags().expect("flags").len(), 1);

    // The rep rewrites the comment: a second flag, the first one kept.
    patch_salesforce(
        &env,
        "Account",
        &main.id,
        json!({ "LS_Feedback_Comment__c": "Budget moved to next year" }),
    )
    .await;
    let second = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull after the comment");
    assert_eq!(second.feedback.recorded, 1);
    let flags = store.flags().expect("flags");
    assert_eq!(flags.len(), 2, "the history keeps both flags");
    assert_eq!(
        flags[0].comment.as_deref(),
        Some("Signed with a competitor")
    );
    assert_eq!(
        flags[1].comment.as_deref(),
        Some("Budget moved to next year")
    );
    assert_eq!(flags[1].value, FlagValue::TooHigh);
    assert!(flags[1].modified_at >= flags[0].modified_at);

    // More flags: four more "Too high" on accounts with a lost deal, one "Too low", one
    // "Right" and one value outside the picklist.
    for id in &lost[1..5] {
        patch_salesforce(&env, "Account", id, json!({ "LS_Feedback__c": "Too high" })).await;
    }
    let (too_low, right, bad) = (&others[0].id, &others[1].id, &others[2].id);
    patch_salesforce(
        &env,
        "Account",
        too_low,
        json!({ "LS_Feedback__c": "Too low" }),
    )
    .await;
    patch_salesforce(&env, "Account", right, json!({ "LS_Feedback__c": "Right" })).await;
    patch_salesforce(&env, "Account", bad, json!({ "LS_Feedback__c": "Way off" })).await;
    let third = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull after more flags");
    assert_eq!(third.feedback.recorded, 7, "{:?}", third.feedback);
    assert_eq!(third.feedback.by_value.get("unknown"), Some(&1));
    assert_eq!(third.feedback.unknown.len(), 1, "the bad value is reported");
    assert_eq!(&third.feedback.unknown[0].id, bad);
    assert_eq!(third.feedback.unknown[0].value, "Way off");
    let stored_bad = store
        .latest_flags()
        .expect("latest")
        .remove(&("Account".to_string(), bad.clone()))
        .expect("bad flag stored");
    assert_eq!(stored_bad.value, FlagValue::Unknown("Way off".to_string()));

    // Training with use = "weights": the lost deals of "Too high" accounts weigh 3.
    let trained = training::train(&store, &env.config, now).expect("train with flags");
    let model = store
        .model(&trained.version)
        .expect("read")
        .expect("stored");
    let card_dir = env.dir.path().join("card");
    let paths = leadscore::report::write_model_card(&model, &card_dir).expect("model card");
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.json).expect("card JSON"))
            .expect("card parses");
    let feedback = &card["feedback"];
    assert_eq!(feedback["use"], json!("weights"));
    assert_eq!(feedback["weight"], json!(3.0));
    let weighted = feedback["weighted_rows"].as_u64().expect("weighted rows");
    assert!(
        weighted >= 1,
        "no flagged example reached the fit: {feedback}"
    );
    assert_eq!(feedback["flags"], json!(9), "{feedback}");
    assert_eq!(feedback["by_value"]["Too high"], json!(6));
    assert_eq!(feedback["by_value"]["Too low"], json!(1));
    assert_eq!(feedback["by_value"]["Right"], json!(1));
    assert_eq!(feedback["by_value"]["unknown"], json!(1));
    assert_eq!(feedback["records"], json!(7));
    assert_eq!(feedback["unknown"][0]["value"], json!("Way off"));

    // Agreement, counted here from the new model's scores of the same records.
    let history = training::load_history(&store, &env.config).expect("history");
    let new_scores =
        leadscore::scoring::score_records(&model, &history, &env.config, now).expect("rescore");
    let latest = store.latest_flags().expect("latest");
    let mut evaluated = 0;
    let mut agreed = 0;
    for flag in latest.values() {
        let (Some(flagged), Some(_)) = (flag.score, flag.value.label()) else {
            continue;
        };
        let new = new_scores
            .iter()
            .find(|r| r.id == flag.id)
            .expect("flagged account is scored")
            .score;
        evaluated += 1;
        agreed += u64::from(flag.value.agrees_with(flagged, new));
    }
    assert_eq!(evaluated, 7);
    assert_eq!(feedback["evaluated"], json!(evaluated), "{feedback}");
    assert_eq!(feedback["agreed"], json!(agreed), "{feedback}");
    let too_high_features = feedback["features"]["Too high"]
        .as_array()
        .expect("features of the Too high flags");
    assert!(!too_high_features.is_empty(), "{feedback}");
    let html = std::fs::read_to_string(&paths.html).expect("card HTML");
    assert!(html.contains("<h2>Rep feedback</h2>"));
    assert!(html.contains("Way off"));

    let won_after = store
        .records("Opportunity")
        .expect("deals")
        .iter()
        .filter(|d| d.get("IsWon") == &CrmValue::Bool(true))
        .count();
    assert_eq!(won_before, won_after, "flags never change outcomes");
    for value in FLAG_VALUES {
        assert!(html.contains(value), "{value} row missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_use_leaves_training_unweighted() {
    let env = Env::start_with(SandboxOptions::default(), |text| text).await;
    let connector = env.connector();
    let store = env.store();
    let now = Utc::now();
    let first = run_once(&connector, &store, &env.config, now)
        .await
        .expect("first pass");
    let scores = store.scores().expect("scores");
    let lost = scored_with_lost_deal(&store, &scores);
    for id in lost.iter().take(5) {
        patch_salesforce(&env, "Account", id, json!({ "LS_Feedback__c": "Too high" })).await;
    }
    let pulled = pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    assert_eq!(pulled.feedback.recorded, 5);
    let trained = training::train(&store, &env.config, now).expect("train");
    assert_eq!(
        trained.version, first.levels[0].train.version,
        "flags for review leave the model unchanged"
    );
    let model = store
        .model(&trained.version)
        .expect("read")
        .expect("stored");
    let feedback = &model.report["feedback"];
    assert_eq!(feedback["use"], json!("review"));
    assert_eq!(feedback["weighted_rows"], json!(0));
    assert_eq!(feedback["by_value"]["Too high"], json!(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_fix_creates_feedback_properties() {
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
    let sandbox = HubSpotSandbox::new(org.records, options)
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
    let token = HubSpotOptions::default().private_app_token;
    let connector = connect(
        &config,
        ConnectorSecrets::HubSpotToken(SecretString::from(token.clone())),
    )
    .expect("connector");

    let fixed = leadscore::setup::fix(&connector, &config)
        .await
        .expect("check --fix");
    for name in [
        "Account.ls_feedback (HubSpot companies)",
        "Account.ls_feedback_comment (HubSpot companies)",
    ] {
        assert!(
            fixed.created.iter().any(|p| p == name),
            "{name} not created: {:?}",
            fixed.created
        );
    }
    let checked = pipeline::check(&connector, &config)
        .await
        .expect("check after --fix");
    assert!(checked.feedback.is_empty(), "{:?}", checked.feedback);
    let handle = sandbox.handle();
    let store = Store::open(&config.store_path).expect("store");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("first pull");

    // A rep sets the flag on a company through the CRM v3 objects API.
    let company = handle.ids(ObjectType::Companies)[0].clone();
    let response = reqwest::Client::new()
        .patch(format!(
            "{}/crm/v3/objects/companies/{company}",
            sandbox.url()
        ))
        .bearer_auth(&token)
        .json(&json!({ "properties": { "ls_feedback": "Too low", "ls_feedback_comment": "Just opened a new wing" } }))
        .send()
        .await
        .expect("update request");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "update failed: {status} {body}");
    let pulled = pipeline::pull(&connector, &store, &config)
        .await
        .expect("pull after the flag");
    assert_eq!(pulled.feedback.recorded, 1, "{:?}", pulled.feedback);
    let flags = store.flags().expect("flags");
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].id, company);
    assert_eq!(flags[0].value, FlagValue::TooLow);
    assert_eq!(flags[0].comment.as_deref(), Some("Just opened a new wing"));
    assert_eq!(flags[0].score, None, "nothing was scored yet");
}
