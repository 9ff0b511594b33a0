//! Tests of the push reading only the records marked as changed, once it has read every
//! record. They run against the Salesforce sandbox over real HTTP with a real store on disk.

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::Env;
use leadscore::level::Level;
use leadscore::store::{PendingKind, Store};
use leadscore::{pipeline, scoring, training, writeback};
use leadscore_sandbox::SandboxOptions;

fn marked(store: &Store) -> usize {
    store
        .pending_count(PendingKind::Push, "Account")
        .expect("count marks")
}

/// An account-level org pulled, trained, scored and pushed, with the push's echo pulled and
/// pushed again, so the next push reads only marked rows.
struct Settled {
    env: Env,
    store: Store,
    connector: leadscore::run::AnyConnector,
    now: chrono::DateTime<Utc>,
    scored: usize,
    limits: BTreeMap<Level, u32>,
}

/// Clears the score of account `id` in the CRM, as a rep editing the record would.
fn clear_score(env: &Env, id: &str) {
    let score_field = &env.config.writeback_for(Level::Account).score_field;
    let mut fields = serde_json::Map::new();
    fields.insert(score_field.clone(), serde_json::Value::Null);
    env.handle()
        .update_record("Account", id, fields)
        .expect("clear score");
}

async fn settled() -> Settled {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    let connector = env.connector();
    let config = &env.config;
    let now = Utc::now();
    pipeline::pull(&connector, &store, config)
        .await
        .expect("pull");
    training::train(&store, config, now).expect("train");
    let scored = scoring::score(&store, config, now).expect("score").scored;
    let limits = pipeline::check(&connector, config)
        .await
        .expect("check")
        .reasons_max_len;

    // The first push reads every row and clears the marks.
    let first = writeback::push(&connector, &store, config, &limits, now)
        .await
        .expect("first push");
    assert_eq!(first.written, scored, "{first:?}");
    assert_eq!(marked(&store), 0);

    // Its writes come back as echoes, which are marked and found unchanged.
    pipeline::pull(&connector, &store, config)
        .await
        .expect("echo pull");
    assert_eq!(marked(&store), scored);
    let echo = writeback::push(&connector, &store, config, &limits, now)
        .await
        .expect("echo push");
    assert_eq!((echo.planned, echo.unchanged), (0, scored), "{echo:?}");
    assert_eq!(marked(&store), 0);
    Settled {
        env,
        store,
        connector,
        now,
        scored,
        limits,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reads_marked_records_and_misses_none() {
    let settled = settled().await;
    let (env, store, connector) = (&settled.env, &settled.store, &settled.connector);
    let (config, limits) = (&env.config, &settled.limits);

    // Three CRM edits: a rep clears one score, someone renames another account, and a third
    // account is deleted. Then the accounts are scored again 45 days later.
    let ids: Vec<String> = store
        .scores()
        .expect("scores")
        .into_iter()
        .map(|row| row.id)
        .collect();
    let (cleared, renamed, deleted) = (&ids[2], &ids[5], &ids[9]);
    let score_field = &config.writeback_for(Level::Account).score_field;
    let handle = env.handle();
    clear_score(env, cleared);
    let mut fields = serde_json::Map::new();
    fields.insert("Name".into(), serde_json::json!("Renamed Regional Clinic"));
    handle
        .update_record("Account", renamed, fields)
        .expect("rename");
    handle.delete_record("Account", deleted).expect("delete");
    pipeline::pull(connector, store, config)
        .await
        .expect("pull edits");
    let later = settled.now + Duration::days(45);
    let rescored = scoring::score(store, config, later).expect("score later");
    let marks = marked(store);
    assert!(marks >= 3, "{marks} marks");
    assert!(marks < ids.len(), "{marks} marks of {} rows", ids.len());

    let preview =
        writeback::preview(store, config, &[Level::Account], limits, later).expect("preview");
    let planned: Vec<&str> = preview.records.iter().map(|r| r.id.as_str()).collect();
    assert!(planned.contains(&cleared.as_str()), "{planned:?}");
    assert!(!planned.contains(&deleted.as_str()), "{planned:?}");
    assert_eq!(
        preview.changes + preview.unchanged + preview.skipped_deleted,
        rescored.scored,
        "{preview:?}"
    );
    let pushed = writeback::push(connector, store, config, limits, later)
        .await
        .expect("push edits");
    assert_eq!(pushed.written, preview.changes, "{pushed:?}");
    assert!(pushed.failed.is_empty(), "{pushed:?}");
    let in_crm = handle.record("Account", cleared).expect("cleared account");
    assert!(in_crm[score_field.as_str()].is_number(), "{in_crm:?}");

    // Tracking started afresh makes the next plan read every row: nothing is left to write.
    store
        .track_changes("Account", false)
        .expect("stop tracking");
    store.track_changes("Account", true).expect("track again");
    let full =
        writeback::preview(store, config, &[Level::Account], limits, later).expect("full preview");
    assert_eq!(full.changes, 0, "{:?}", full.records);
    assert_eq!(full.unchanged, rescored.scored, "{full:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_keeps_its_mark() {
    let settled = settled().await;
    let (env, store, connector) = (&settled.env, &settled.store, &settled.connector);
    let (config, limits) = (&env.config, &settled.limits);
    assert!(settled.scored > 4, "{} scored", settled.scored);

    // A rep clears one score, and the CRM then rejects its write as locked.
    let locked = store.scores().expect("scores")[4].id.clone();
    clear_score(env, &locked);
    pipeline::pull(connector, store, config)
        .await
        .expect("pull edit");
    env.handle()
        .fail_writes(&locked, "UNABLE_TO_LOCK_ROW", "record locked");
    let pushed = writeback::push(connector, store, config, limits, settled.now)
        .await
        .expect("push");
    assert!(
        pushed.failed.iter().any(|f| f.id == locked && f.retryable),
        "{pushed:?}"
    );
    assert_eq!(marked(store), 1);
    assert_eq!(
        store
            .pending_ids(PendingKind::Push, "Account", None, 10)
            .expect("marks"),
        [locked]
    );
}
