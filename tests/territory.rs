//! Territory priority lists against the Salesforce sandbox over real HTTP: the real pull,
//! training and scoring fill a redb store on disk, then the lists are written and read back
//! from the folder as CSV and HTML.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Duration, Utc};
use common::Env;
use leadscore::config::Config;
use leadscore::store::{ScoreRow, Store};
use leadscore::territory::{self, ListsReport, CSV_HEADER, INDEX_FILE, UNASSIGNED_KEY};
use leadscore::{pipeline, scoring, training};
use leadscore_connector::Value;
use leadscore_sandbox::SandboxOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// Replaces the body of the config's `[territory]` table with `body`.
fn set_territory(text: &str, body: &str) -> String {
    let start = text
        .find("\n[territory]\n")
        .expect("the example config has a [territory] table")
        + 1;
    let end = text[start + 1..]
        .find("\n[")
        .map_or(text.len(), |i| start + 1 + i + 1);
    format!("{}[territory]\n{body}\n{}", &text[..start], &text[end..])
}

/// Starts a sandbox with `territory` as the `[territory]` table, lets `prepare` edit the org,
/// then pulls, trains and scores.
async fn scored_env(territory: &str, extra: &str, prepare: impl FnOnce(&Env)) -> (Env, Store) {
    let body = territory.to_string();
    let extra = extra.to_string();
    let env = Env::start_with(SandboxOptions::default(), move |text| {
        format!("{}{extra}", set_territory(&text, &body))
    })
    .await;
    prepare(&env);
    let store = env.store();
    pull_and_score(&env, &store).await;
    (env, store)
}

async fn pull_and_score(env: &Env, store: &Store) {
    let now = Utc::now();
    pipeline::pull(&env.connector(), store, &env.config)
        .await
        .expect("pull");
    if store.live_version().expect("live version").is_none() {
        training::train(store, &env.config, now).expect("train");
    }
    scoring::score(store, &env.config, now).expect("score");
}

/// Live accounts in the store by id: not deleted and without a tombstone.
fn live_accounts(store: &Store) -> BTreeMap<String, leadscore_connector::Record> {
    store
        .records("Account")
        .expect("accounts")
        .into_iter()
        .filter(|r| !r.deleted)
        .filter(|r| {
            store
                .tombstone("Account", &r.id)
                .expect("tombstone")
                .is_none()
        })
        .map(|r| (r.id.clone(), r))
        .collect()
}

fn text_field(record: &leadscore_connector::Record, field: &str) -> Option<String> {
    match record.get(field) {
        Value::Text(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Returns the ids of `rows` best first, as the lists order them, cut to `top`.
fn top_ids(mut rows: Vec<&ScoreRow>, top: usize) -> Vec<String> {
    rows.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then_with(|| a.id.cmp(&b.id))
    });
    rows.into_iter().take(top).map(|r| r.id.clone()).collect()
}

/// One CSV row, by column name.
type CsvRow = BTreeMap<String, String>;

/// Reads a list's CSV file, checking its header.
fn read_csv(path: &Path) -> Vec<CsvRow> {
    let mut reader = csv::Reader::from_path(path).expect("the CSV file opens");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, CSV_HEADER, "{}", path.display());
    reader
        .records()
        .map(|row| {
            let row = row.expect("row parses");
            header
                .iter()
                .cloned()
                .zip(row.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn listed(rows: &[CsvRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r["change"] != "dropped")
        .map(|r| r["account_id"].clone())
        .collect()
}

fn dropped(rows: &[CsvRow]) -> BTreeMap<String, String> {
    rows.iter()
        .filter(|r| r["change"] == "dropped")
        .map(|r| (r["account_id"].clone(), r["dropped_because"].clone()))
        .collect()
}

fn csv_of<'r>(report: &'r ListsReport, rep: &str) -> &'r Path {
    &report
        .lists
        .iter()
        .find(|l| l.rep_key == rep)
        .unwrap_or_else(|| panic!("no list for {rep}"))
        .csv
}

fn write(store: &Store, config: &Config, days_later: i64) -> ListsReport {
    territory::write_lists(store, config, Utc::now() + Duration::days(days_later))
        .expect("lists written")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_match_owner_top_accounts() {
    let (env, store) = scored_env("top = 5", "", |_| {}).await;
    let handle = env.handle();

    // The best account and its owner get names with markup; another open account loses its
    // owner and so belongs on the unassigned list.
    let scores = store.scores().expect("scores");
    let best_id = top_ids(scores.iter().collect(), 1)[0].clone();
    let best = scores.iter().find(|r| r.id == best_id).expect("scores");
    let rep = best
        .owner_id
        .clone()
        .expect("the best account has an owner");
    let ownerless = scores
        .iter()
        .find(|r| r.id != best.id && r.owner_id.as_deref() != Some(rep.as_str()))
        .expect("another rep's account")
        .id
        .clone();
    let mut name = serde_json::Map::new();
    name.insert("Name".into(), serde_json::json!("St. <Jude> & Mary"));
    handle
        .update_record("Account", &best.id, name)
        .expect("rename account");
    let mut name = serde_json::Map::new();
    name.insert("Name".into(), serde_json::json!("Pat <Lead> & Co"));
    handle
        .update_record("User", &rep, name)
        .expect("rename user");
    let mut owner = serde_json::Map::new();
    owner.insert("OwnerId".into(), serde_json::Value::Null);
    handle
        .update_record("Account", &ownerless, owner)
        .expect("clear owner");
    // The lists take names and owners from the pulled accounts, so no new scoring is needed.
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");

    let report = write(&store, &env.config, 0);
    let folder = env.dir.path().join("lists");
    assert_eq!(report.folder, folder);
    assert!(report.index.is_file(), "{}", report.index.display());

    // Expected lists, from the store's scores and the owners of the pulled accounts.
    let accounts = live_accounts(&store);
    let scores = store.scores().expect("scores");
    let mut by_owner: BTreeMap<String, Vec<&ScoreRow>> = BTreeMap::new();
    for row in &scores {
        let record = accounts.get(&row.id).expect("a scored account is live");
        let key = text_field(record, "OwnerId").unwrap_or_else(|| UNASSIGNED_KEY.to_string());
        by_owner.entry(key).or_default().push(row);
    }
    let keys: BTreeSet<&str> = report.lists.iter().map(|l| l.rep_key.as_str()).collect();
    let expected_keys: BTreeSet<&str> = by_owner.keys().map(String::as_str).collect();
    assert_eq!(keys, expected_keys, "one list per owner, plus unassigned");
    assert_eq!(report.reps, by_owner.len());
    assert!(keys.contains(UNASSIGNED_KEY));

    for (owner, rows) in &by_owner {
        let csv = read_csv(csv_of(&report, owner));
        assert_eq!(listed(&csv), top_ids(rows.clone(), 5), "list of {owner}");
        for (index, row) in csv.iter().enumerate() {
            assert_eq!(row["rank"], (index + 1).to_string());
            assert_eq!(row["change"], "new", "first list: {row:?}");
            let stored = scores
                .iter()
                .find(|s| s.id == row["account_id"])
                .expect("scored");
            assert_eq!(row["score"], format!("{:.0}", stored.score));
            assert_eq!(row["tier"], stored.tier);
        }
    }
    let unassigned = read_csv(csv_of(&report, UNASSIGNED_KEY));
    assert_eq!(listed(&unassigned), [ownerless.as_str()]);

    // Names with markup are escaped in the rep's page and in the index.
    let summary = report
        .lists
        .iter()
        .find(|l| l.rep_key == rep)
        .expect("list");
    assert_eq!(summary.rep_name, "Pat <Lead> & Co");
    let page = std::fs::read_to_string(&summary.html).expect("page");
    assert!(page.contains("St. &lt;Jude&gt; &amp; Mary"), "{page}");
    assert!(page.contains("Pat &lt;Lead&gt; &amp; Co"), "{page}");
    assert!(!page.contains("<Jude>"), "{page}");
    assert!(!page.contains("<Lead>"), "{page}");
    let csv = read_csv(&summary.csv);
    assert_eq!(csv[0]["account_id"], best.id);
    assert_eq!(csv[0]["account_name"], "St. <Jude> & Mary");

    // The index links every list and its CSV, and escapes names too.
    let index = std::fs::read_to_string(folder.join(INDEX_FILE)).expect("index");
    for list in &report.lists {
        let stem = list.html.file_stem().expect("stem").to_string_lossy();
        assert!(index.contains(&format!("href=\"{stem}.html\"")), "{stem}");
        assert!(index.contains(&format!("href=\"{stem}.csv\"")), "{stem}");
        assert_eq!(list.html.parent(), Some(folder.as_path()));
    }
    assert!(index.contains("Pat &lt;Lead&gt; &amp; Co"));
    assert!(!index.contains("<Lead>"));

    // Only finished files are left: no temporary file survives the renames.
    let names: Vec<String> = std::fs::read_dir(&folder)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert_eq!(names.len(), 2 * report.reps + 1, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_shows_changes() {
    let (env, store) = scored_env("top = 5", "", |_| {}).await;
    let first = write(&store, &env.config, 0);

    // Pick the rep with the most open accounts, so that one below the top 5 can move up.
    let scores = store.scores().expect("scores");
    let mut per_owner: BTreeMap<String, Vec<&ScoreRow>> = BTreeMap::new();
    for row in &scores {
        per_owner
            .entry(row.owner_id.clone().expect("owner"))
            .or_default()
            .push(row);
    }
    let (rep, rows) = per_owner
        .iter()
        .max_by_key(|(_, rows)| rows.len())
        .expect("reps");
    assert!(rows.len() > 6, "the rep needs more than 5 open accounts");
    let before = listed(&read_csv(csv_of(&first, rep)));
    let raised = before[1].clone();
    let closed = before[0].clone();
    let sixth = top_ids(rows.clone(), 6)[5].clone();

    // One listed account gains 7 points; the top one is no longer scored (a deal closed).
    let changed: Vec<ScoreRow> = scores
        .iter()
        .filter(|r| r.id != closed)
        .map(|r| {
            let mut row = r.clone();
            if row.id == raised {
                row.score += 7.0;
                row.probability += 0.07;
            }
            row
        })
        .collect();
    store.replace_scores(&changed).expect("scores replaced");
    let second = write(&store, &env.config, 7);

    let csv = read_csv(csv_of(&second, rep));
    let change: BTreeMap<String, String> = csv
        .iter()
        .map(|r| (r["account_id"].clone(), r["change"].clone()))
        .collect();
    assert_eq!(change[&raised], "+7");
    assert_eq!(
        change[&sixth], "new",
        "the sixth account moves up into the list"
    );
    for id in &before[2..] {
        assert_eq!(change[id], "0", "{id}");
    }
    let raised_row = csv.iter().find(|r| r["account_id"] == raised).expect("row");
    let old_score = scores.iter().find(|r| r.id == raised).expect("score").score;
    assert_eq!(raised_row["previous_score"], format!("{old_score:.0}"));
    assert_eq!(
        dropped(&csv),
        BTreeMap::from([(closed.clone(), "no longer open or scored".to_string())])
    );
    let summary = second
        .lists
        .iter()
        .find(|l| &l.rep_key == rep)
        .expect("list");
    assert_eq!(summary.new, 1);
    assert_eq!(summary.dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_deleted_accounts_leave_lists() {
    let (env, store) = scored_env("top = 5", "", |_| {}).await;
    let first = write(&store, &env.config, 0);
    let handle = env.handle();

    // Every account of one rep moves to another rep; one listed account of a third rep is
    // deleted in the CRM.
    let reps: Vec<&str> = first
        .lists
        .iter()
        .map(|l| l.rep_key.as_str())
        .filter(|k| *k != UNASSIGNED_KEY)
        .collect();
    assert!(reps.len() >= 3, "{reps:?}");
    let (moved_rep, new_owner, other_rep) = (reps[0], reps[1], reps[2]);
    let moved_list = listed(&read_csv(csv_of(&first, moved_rep)));
    for (id, record) in live_accounts(&store) {
        if text_field(&record, "OwnerId").as_deref() == Some(moved_rep) {
            let mut owner = serde_json::Map::new();
            owner.insert("OwnerId".into(), serde_json::json!(new_owner));
            handle
                .update_record("Account", &id, owner)
                .expect("reassign");
        }
    }
    let deleted = listed(&read_csv(csv_of(&first, other_rep)))[0].clone();
    handle.delete_record("Account", &deleted).expect("delete");
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");

    let second = write(&store, &env.config, 7);
    let moved_csv = read_csv(csv_of(&second, moved_rep));
    assert!(listed(&moved_csv).is_empty(), "{moved_csv:?}");
    let expected: BTreeMap<String, String> = moved_list
        .iter()
        .map(|id| (id.clone(), "moved to another territory".to_string()))
        .collect();
    assert_eq!(dropped(&moved_csv), expected);
    let moved_page = std::fs::read_to_string(
        &second
            .lists
            .iter()
            .find(|l| l.rep_key == moved_rep)
            .expect("list")
            .html,
    )
    .expect("page");
    assert!(
        moved_page.contains(&format!(
            "all {} accounts of the last list left it",
            moved_list.len()
        )),
        "{moved_page}"
    );

    let other_csv = read_csv(csv_of(&second, other_rep));
    assert_eq!(
        dropped(&other_csv).get(&deleted).map(String::as_str),
        Some("deleted or merged in the CRM")
    );
    for list in &second.lists {
        let rows = read_csv(&list.csv);
        assert!(!listed(&rows).contains(&deleted), "{}", list.rep_key);
    }

    // A third run: the rep with no accounts has no list, and their files are gone.
    let third = write(&store, &env.config, 14);
    let moved_files = second
        .lists
        .iter()
        .find(|l| l.rep_key == moved_rep)
        .expect("list")
        .clone();
    assert!(third.lists.iter().all(|l| l.rep_key != moved_rep));
    assert!(!moved_files.csv.exists());
    assert!(!moved_files.html.exists());
    let stem = moved_files
        .html
        .file_stem()
        .expect("stem")
        .to_string_lossy();
    assert_eq!(third.removed, [stem.to_string()]);
    let index = std::fs::read_to_string(&third.index).expect("index");
    assert!(!index.contains(&format!("{stem}.html")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_never_pulled_fails_lists() {
    let (env, store) = scored_env("top = 5", "", |_| {}).await;
    // The field is set after the last pull, so no stored account has it yet.
    let mut config = env.config.clone();
    config.territory.field = Some("Region__c".to_string());

    let error = territory::write_lists(&store, &config, Utc::now())
        .expect_err("lists by a field no account has")
        .to_string();

    assert!(error.contains("\"Region__c\""), "{error}");
    assert!(error.contains("leadscore pull"), "{error}");
    assert!(
        !config.territory.folder.join(INDEX_FILE).exists(),
        "no lists were written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lists_follow_values() {
    // One account moves to a rep from another state, so that rep's territory gains that
    // state and covers the other owners' accounts there.
    let mut moved = None;
    let (env, store) = scored_env("top = 10\nfield = \"BillingState\"", "", |env| {
        let accounts = &env.org.records["Account"];
        let state_of = |a: &serde_json::Map<String, serde_json::Value>| {
            a.get("BillingState")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let owner_of = |a: &serde_json::Map<String, serde_json::Value>| {
            a.get("OwnerId")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let first = &accounts[0];
        let taker = accounts
            .iter()
            .find(|a| owner_of(a) != owner_of(first) && state_of(a) != state_of(first))
            .and_then(owner_of)
            .expect("a rep in another state");
        let id = first["Id"].as_str().expect("id").to_string();
        let mut owner = serde_json::Map::new();
        owner.insert("OwnerId".into(), serde_json::json!(taker));
        env.handle()
            .update_record("Account", &id, owner)
            .expect("reassign");
        moved = Some((taker, state_of(first).expect("state")));
    })
    .await;
    let (taker, state) = moved.expect("prepared");
    let report = write(&store, &env.config, 0);

    let accounts = live_accounts(&store);
    let mut territories: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in accounts.values() {
        if let (Some(owner), Some(value)) = (
            text_field(record, "OwnerId"),
            text_field(record, "BillingState"),
        ) {
            territories.entry(owner).or_default().insert(value);
        }
    }
    assert!(territories[&taker].contains(&state));
    let scores = store.scores().expect("scores");
    for (rep, values) in &territories {
        let rows: Vec<&ScoreRow> = scores
            .iter()
            .filter(|row| {
                let record = &accounts[&row.id];
                match text_field(record, "BillingState") {
                    Some(value) => values.contains(&value),
                    None => text_field(record, "OwnerId").as_deref() == Some(rep.as_str()),
                }
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let csv = read_csv(csv_of(&report, rep));
        assert_eq!(listed(&csv), top_ids(rows, 10), "list of {rep}");
        for row in &csv {
            let own_without_value =
                row["territory_value"].is_empty() && row["owner_id"] == rep.as_str();
            assert!(
                own_without_value || values.contains(&row["territory_value"]),
                "{row:?}"
            );
        }
    }
    // The rep who took one account in the other state now lists other owners' accounts there.
    let taker_csv = read_csv(csv_of(&report, &taker));
    assert!(
        taker_csv
            .iter()
            .any(|r| r["territory_value"] == state && r["owner_id"] != taker),
        "{taker_csv:?}"
    );
}

/// Starts a loopback receiver that returns 200 to every POST and keeps each request's signature
/// header and body.
async fn start_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver listens");
    let url = format!("http://{}/lists", listener.local_addr().expect("address"));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "request ended early");
                    bytes.extend_from_slice(&chunk[..n]);
                    if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .expect("content-length");
                        break (end + 4, length);
                    }
                };
                while bytes.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "body ended early");
                    bytes.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
                let signature = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case(leadscore::webhook::SIGNATURE_HEADER)
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                let body = bytes[head_end..head_end + length].to_vec();
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await
                    .expect("answer");
                let _ = sender.send((signature, body));
            });
        }
    });
    (url, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_posted_to_webhook_signed() {
    const SECRET_ENV: &str = "LEADSCORE_TEST_TERRITORY_WEBHOOK_SECRET";
    const SECRET: &str = "territory-test-signing-key";
    std::env::set_var(SECRET_ENV, SECRET);
    let (url, mut received) = start_receiver().await;
    let webhook = format!("\n[webhook]\nurl = {url:?}\nsecret_env = {SECRET_ENV:?}\n");
    let (env, store) = scored_env("top = 3\nwebhook = true", &webhook, |_| {}).await;

    let config = env.config.clone();
    let report = tokio::task::spawn_blocking(move || write(&store, &config, 0))
        .await
        .expect("join");
    assert!(
        report.webhook_failures.is_empty(),
        "{:?}",
        report.webhook_failures
    );
    assert_eq!(report.webhook_sent, report.reps);

    let mut reps = BTreeSet::new();
    for _ in 0..report.reps {
        let (signature, body) = received.recv().await.expect("a post per list");
        assert!(
            leadscore::webhook::verify(SECRET.as_bytes(), &body, &signature),
            "signature {signature:?} does not verify"
        );
        let event: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(event["event"], "territory_list");
        assert_eq!(event["top"], 3);
        assert!(event["entries"].as_array().expect("entries").len() <= 3);
        reps.insert(event["rep_key"].as_str().expect("rep key").to_string());
    }
    let expected: BTreeSet<String> = report.lists.iter().map(|l| l.rep_key.clone()).collect();
    assert_eq!(reps, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_command_writes_files() {
    let env = Env::start_with(SandboxOptions::default(), |text| text).await;
    let out: PathBuf = env.dir.path().join("out");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .env_remove("RUST_LOG")
                .output()
                .expect("the leadscore binary runs")
        })
    };
    let args = vec![
        "report".to_string(),
        "lists".to_string(),
        "-c".to_string(),
        env.config_path.display().to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ];

    // Before anything is scored, the command names the steps to run first.
    let output = run(args.clone()).await.expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("leadscore train"), "{stderr}");
    assert!(!out.exists());

    let store = env.store();
    pull_and_score(&env, &store).await;
    drop(store);
    let output = run(args).await.expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let index = out.join(INDEX_FILE);
    assert!(index.is_file());
    assert!(stdout.contains(&index.display().to_string()), "{stdout}");
    assert!(stdout.contains("accounts,"), "{stdout}");
    assert!(
        !env.dir.path().join("lists").exists(),
        "--out replaces the configured folder"
    );
    let csv_files = std::fs::read_dir(&out)
        .expect("out")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "csv")
        })
        .count();
    assert!(csv_files > 1, "{csv_files}");
}

#[test]
fn territory_config_errors_name_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = leadscore::demo::sandbox_config("http://127.0.0.1:9", "store");
    let path = dir.path().join("leadscore.toml");

    let good = set_territory(
        &base,
        "folder = \"out/lists\"\ntop = 7\nfield = \"BillingState\"",
    );
    let config = Config::parse(&good, &path, dir.path()).expect("valid [territory]");
    assert_eq!(config.territory.folder, dir.path().join("out/lists"));
    assert_eq!(config.territory.top, 7);
    assert_eq!(config.territory.field.as_deref(), Some("BillingState"));
    assert!(!config.territory.webhook);

    let bad = set_territory(
        &base,
        "top = 0\nfield = \"Billing State\"\nwebhook = \"yes\"\ncolour = 1",
    );
    let err = Config::parse(&bad, &path, dir.path()).expect_err("invalid [territory]");
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "territory.top",
            "territory.field",
            "territory.webhook",
            "territory.colour"
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("0 is out of range; expected 1 to 1000"),
        "{text}"
    );
    assert!(
        text.contains("\"Billing State\" is not a field name"),
        "{text}"
    );
}
