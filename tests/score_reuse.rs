//! Reuse of the previous run's reasons by the score step, against the sandbox over HTTP: after
//! records change and are pulled, every stored row must equal a full rescore without reuse,
//! and a different model version must reuse nothing.

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::{Env, ALL_LEVELS};
use leadscore::level::Level;
use leadscore::run::run_once;
use leadscore::store::{ScoreRow, Store};
use leadscore::{pipeline, scoring, training};
use leadscore_sandbox::SandboxOptions;
use serde_json::{json, Value};

const LEVELS: [Level; 3] = [Level::Account, Level::Contact, Level::Lead];

/// Reasons planted in stored rows: a run that returns them took them from the store.
const PLANTED: &str = "planted by the test";

fn all_levels(text: String) -> String {
    text.replace(r#"levels = ["account"]"#, ALL_LEVELS)
}

/// Sends `method` to a path under the sandbox's REST API with a fresh access token, as a
/// rep's client would, and returns the response body (empty for 204).
async fn rest(env: &Env, method: reqwest::Method, path: &str, body: Value) -> String {
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
        .request(method, format!("{instance}/services/data/v59.0/{path}"))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("REST request");
    let status = response.status();
    let text = response.text().await.expect("REST body");
    assert!(status.is_success(), "{path}: {status} {text}");
    text
}

fn by_id(rows: Vec<ScoreRow>) -> BTreeMap<String, ScoreRow> {
    rows.into_iter().map(|row| (row.id.clone(), row)).collect()
}

/// Replaces the reasons of every stored row of `store`'s level with [`PLANTED`], keeping the
/// model version and fingerprint, so that a run which reuses a row shows it.
fn plant(store: &Store) {
    let mut rows = store.scores().expect("scores");
    for row in &mut rows {
        row.reasons = vec![PLANTED.to_string()];
    }
    store.replace_scores(&rows).expect("planted rows stored");
}

fn planted(rows: &[ScoreRow]) -> usize {
    rows.iter()
        .filter(|row| row.reasons == [PLANTED.to_string()])
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_reasons_equal_full_rescore() {
    let env = Env::start_with(SandboxOptions::default(), all_levels).await;
    let store = env.store();
    let first = Utc::now();
    run_once(&env.connector(), &store, &env.config, first)
        .await
        .expect("first pass over three levels");
    let before: Vec<BTreeMap<String, ScoreRow>> = LEVELS
        .iter()
        .map(|level| by_id(store.at_level(*level).scores().expect("scores")))
        .collect();

    // Edit accounts that were scored: a number the model reads, the competitor a reason
    // quotes, and new activities with their contacts, which change the account's and the
    // contacts' aggregates.
    let handle = env.handle();
    let changed: Vec<String> = before[0].keys().step_by(7).take(12).cloned().collect();
    for (index, account) in changed.iter().enumerate() {
        rest(
            &env,
            reqwest::Method::PATCH,
            &format!("sobjects/Account/{account}"),
            json!({
                "Hip_Knee_Discharges__c": 2500 + index,
                "Incumbent_Competitor__c": format!("Changed Competitor {index}"),
            }),
        )
        .await;
        let contact = handle
            .records("Contact")
            .into_iter()
            .find(|c| c["AccountId"] == json!(account))
            .and_then(|c| c["Id"].as_str().map(str::to_string));
        if let Some(contact) = contact {
            let day = (first - Duration::days(2)).format("%Y-%m-%d").to_string();
            rest(
                &env,
                reqwest::Method::POST,
                "sobjects/Task",
                json!({"WhoId": contact, "WhatId": account, "Subject": "Call", "ActivityDate": day, "Status": "Completed", "Type": "Call"}),
            )
            .await;
        }
    }
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull after the edits");

    // Score again with reuse, later in time, as the next scheduled run would.
    let now = first + Duration::minutes(10);
    let mut shared = None;
    for level in LEVELS {
        scoring::score_sharing(&store.at_level(level), &env.config, now, &mut shared)
            .expect("score with reuse");
    }

    let history = training::load_history(&store, &env.config).expect("history");
    let mut reasons_changed = 0;
    for (level, previous) in LEVELS.iter().zip(&before) {
        let at_level = store.at_level(*level);
        let stored = at_level
            .current_model()
            .expect("model read")
            .expect("a live model");
        let full = scoring::score_records(&stored, &history, &env.config, now).expect("rescore");
        let full = comparable(full);
        let reused = comparable(at_level.scores().expect("stored scores"));
        assert_eq!(reused.len(), full.len(), "{level}: row count");
        for (id, row) in &full {
            assert_eq!(reused.get(id), Some(row), "{level} {id}");
            if previous.get(id).is_some_and(|p| p.reasons != row.reasons) {
                reasons_changed += 1;
            }
        }
    }
    // Without rows whose reasons changed, the comparison could not catch a stale reuse.
    assert!(reasons_changed > 0, "no record's reasons changed");

    // Each level's rows were stored with their fingerprints, so scoring the same history at
    // the same time again must take every record's reasons from the store.
    for level in LEVELS {
        let at_level = store.at_level(level);
        plant(&at_level);
        let stored = at_level
            .current_model()
            .expect("model read")
            .expect("a live model");
        let rows = scoring::score_records_reusing(&stored, &history, &env.config, now, &at_level)
            .expect("score with reuse");
        assert!(!rows.is_empty(), "{level}: nothing scored");
        assert_eq!(planted(&rows), rows.len(), "{level}: rows not reused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_model_version_reuses_nothing() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let now = Utc::now();
    run_once(&env.connector(), &store, &env.config, now)
        .await
        .expect("first pass");
    plant(&store);
    let history = training::load_history(&store, &env.config).expect("history");
    let live = store
        .current_model()
        .expect("model read")
        .expect("a live model");

    // The same model under its own version reuses every row, which shows the planted rows
    // are reusable at all.
    let same = scoring::score_records_reusing(&live, &history, &env.config, now, &store)
        .expect("score with the live model");
    assert!(!same.is_empty(), "nothing scored");
    assert_eq!(
        planted(&same),
        same.len(),
        "rows not reused by the live model"
    );

    // The same bytes under another version name: only the version differs.
    let mut renamed = live.clone();
    renamed.version = format!("{}-other", live.version);
    let other = scoring::score_records_reusing(&renamed, &history, &env.config, now, &store)
        .expect("score with another version");
    assert_eq!(planted(&other), 0, "rows reused across model versions");
    let full = scoring::score_records(&renamed, &history, &env.config, now).expect("rescore");
    assert_eq!(other, full);
}

/// Returns `rows` by id with the scoring times set aside. A kept row keeps the times it was
/// computed at and as of. Its `valid_until` may differ from a later computation's by the
/// rounding of days-since values to whole seconds, so `score_and_compare` checks it apart.
fn comparable(rows: Vec<ScoreRow>) -> BTreeMap<String, ScoreRow> {
    let epoch = chrono::DateTime::<Utc>::default();
    rows.into_iter()
        .map(|mut row| {
            row.scored_at = epoch;
            row.valid_from = None;
            row.valid_until = None;
            (row.id.clone(), row)
        })
        .collect()
}

/// Scores every level in place at `now`, as a scheduled run does, then checks that every
/// stored row equals a full rescore of the same history at `now`. Returns the rows kept.
fn score_and_compare(env: &Env, store: &Store, now: chrono::DateTime<Utc>) -> usize {
    let mut shared = None;
    let mut kept = 0;
    for level in LEVELS {
        let report = scoring::score_sharing(&store.at_level(level), &env.config, now, &mut shared)
            .expect("score in place");
        kept += report.scored - report.rescored;
    }
    let history = training::load_history(store, &env.config).expect("history");
    for level in LEVELS {
        let at_level = store.at_level(level);
        let stored = at_level
            .current_model()
            .expect("model read")
            .expect("a live model");
        let full = scoring::score_records(&stored, &history, &env.config, now).expect("rescore");
        let until: BTreeMap<String, Option<chrono::DateTime<Utc>>> = full
            .iter()
            .map(|row| (row.id.clone(), row.valid_until))
            .collect();
        let live = at_level.scores().expect("stored scores");
        for row in &live {
            assert!(
                row.scored_at <= now,
                "{level} {}: scored in the future",
                row.id
            );
            assert!(
                row.valid_from.is_some_and(|from| from <= now),
                "{level} {}: valid from {:?}",
                row.id,
                row.valid_from
            );
            // A kept row's time is the one computed with it, which may be up to a few
            // seconds earlier than a computation at `now` finds, never later.
            let full_until = until.get(&row.id).copied().flatten();
            match (row.valid_until, full_until) {
                (Some(kept), Some(full)) => assert!(
                    kept <= full + Duration::seconds(3) && full <= kept + Duration::seconds(3),
                    "{level} {}: valid until {kept}, a rescore says {full}",
                    row.id
                ),
                (kept, full) => assert_eq!(kept, full, "{level} {}: valid until", row.id),
            }
        }
        let full = comparable(full);
        let live = comparable(live);
        assert_eq!(live.len(), full.len(), "{level} at {now}: row count");
        for (id, row) in &full {
            assert_eq!(live.get(id), Some(row), "{level} {id} at {now}");
        }
    }
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_rows_equal_full_rescore_over_time() {
    // Scores follow the clock here, as in production, so time moves the rows: the runs are
    // at chosen instants after the demo org's history ends on 2026-12-01.
    let env = Env::start_with(SandboxOptions::default(), |text| {
        let text = all_levels(text);
        assert!(
            text.contains("\nas_of = "),
            "the sandbox config has no as_of line"
        );
        text.replace("\nas_of = ", "\n# as_of = ")
    })
    .await;
    assert_eq!(env.config.scoring.as_of, None);
    let store = env.store();
    let first = chrono::DateTime::parse_from_rfc3339("2026-12-01T16:47:31.250Z")
        .expect("time")
        .with_timezone(&Utc);
    run_once(&env.connector(), &store, &env.config, first)
        .await
        .expect("first pass over three levels");

    // An hour later nothing changed: most rows hold, and those that time moved are scored
    // again.
    let kept = score_and_compare(&env, &store, first + Duration::hours(1));
    assert!(kept > 0, "an hour later no row was kept");

    // Change the data a row reads: account fields, a new activity, a contact moved to
    // another account, a contact's buying role, and a deleted contact.
    let handle = env.handle();
    let accounts: Vec<String> = store
        .scores()
        .expect("account scores")
        .into_iter()
        .map(|row| row.id)
        .step_by(9)
        .take(8)
        .collect();
    let contacts = handle.records("Contact");
    let contact_of = |account: &str| {
        contacts
            .iter()
            .filter(|c| c["AccountId"] == json!(account) && c["IsDeleted"] != json!(true))
            .filter_map(|c| c["Id"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let day = (first - Duration::days(1)).format("%Y-%m-%d").to_string();
    for (index, account) in accounts.iter().enumerate() {
        rest(
            &env,
            reqwest::Method::PATCH,
            &format!("sobjects/Account/{account}"),
            json!({ "Hip_Knee_Discharges__c": 3100 + index }),
        )
        .await;
        let people = contact_of(account);
        match (index % 4, people.first()) {
            (0, Some(contact)) => {
                rest(
                    &env,
                    reqwest::Method::POST,
                    "sobjects/Task",
                    json!({
                        "WhoId": contact,
                        "WhatId": account,
                        "Subject": "Demo",
                        "ActivityDate": day,
                        "Status": "Completed",
                        "Type": "Meeting",
                    }),
                )
                .await;
            }
            (1, Some(contact)) => {
                let other = &accounts[(index + 1) % accounts.len()];
                rest(
                    &env,
                    reqwest::Method::PATCH,
                    &format!("sobjects/Contact/{contact}"),
                    json!({ "AccountId": other }),
                )
                .await;
            }
            (2, Some(contact)) => {
                rest(
                    &env,
                    reqwest::Method::PATCH,
                    &format!("sobjects/Contact/{contact}"),
                    json!({ "Buying_Role__c": "Chief Financial Officer" }),
                )
                .await;
            }
            (3, Some(contact)) => handle
                .delete_record("Contact", contact)
                .expect("contact deleted"),
            _ => {}
        }
    }
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull after the edits");
    // The same day, before the hints' action date moves at midnight: the rows the edits
    // touch must be scored again while the others are kept.
    let kept = score_and_compare(&env, &store, first + Duration::hours(3));
    assert!(kept > 0, "after the edits no row was kept");
    score_and_compare(&env, &store, first + Duration::hours(26));

    // Weeks later activities have left their windows and days-since values have crossed
    // splits and whole days.
    score_and_compare(&env, &store, first + Duration::days(40));
    score_and_compare(
        &env,
        &store,
        first + Duration::days(40) + Duration::minutes(5),
    );

    // `leadscore score --whole` scores every record again though the rows are valid, and
    // stores its stamp, so the next run keeps rows again.
    let later = first + Duration::days(40) + Duration::minutes(10);
    let mut shared = None;
    for level in LEVELS {
        let report = scoring::score_whole(&store.at_level(level), &env.config, later, &mut shared)
            .expect("whole run");
        assert_eq!(
            report.rescored, report.scored,
            "{level}: a whole run kept rows"
        );
    }
    let kept = score_and_compare(&env, &store, later + Duration::minutes(1));
    assert!(kept > 0, "no row kept after a whole run");
}
