//! Tests of the score history and `leadscore report outcomes`. A small fixed store has tier
//! win rates per month and a ROC AUC counted by hand, and PSI is checked against hand values.
//! Further tests cover breaches and the retrain request, the files the binary writes, and the
//! history that real scoring keeps.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::Env;
use leadscore::config::Config;
use leadscore::level::Level;
use leadscore::outcomes::{self, population_stability_index};
use leadscore::store::{ScoreRow, Store};
use leadscore::{pipeline, scoring, training};
use leadscore_connector::{Cursor, Record, Value};
use leadscore_sandbox::SandboxOptions;
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// The account fields the example configuration maps; one stored account must have each.
const ACCOUNT_FIELDS: [&str; 12] = [
    "Hip_Knee_Discharges__c",
    "CABG_Discharges__c",
    "AMI_Discharges__c",
    "HF_Discharges__c",
    "PN_Discharges__c",
    "COPD_Discharges__c",
    "Hospital_Type__c",
    "Hospital_Ownership__c",
    "CMS_Overall_Rating__c",
    "Emergency_Services__c",
    "Incumbent_Competitor__c",
    "BillingState",
];

fn time(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0)
        .single()
        .expect("valid time")
}

fn record(object: &str, id: &str, fields: Vec<(&str, Value)>) -> Record {
    Record {
        object: object.to_string(),
        id: id.to_string(),
        modstamp: time(1, 1),
        deleted: false,
        fields: fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn save(store: &Store, object: &str, records: &[Record]) {
    let cursor = Cursor {
        modstamp: time(1, 1),
        id: String::new(),
    };
    store
        .save_page(object, records, &cursor)
        .expect("page saved");
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Builds a won or lost deal on `account`, created on 2025-12-01 and closed on 2026-`month`-`day`.
fn deal(id: &str, account: &str, month: u32, day: u32, won: bool) -> Record {
    let close = NaiveDate::from_ymd_opt(2026, month, day).expect("valid date");
    let created = Utc
        .with_ymd_and_hms(2025, 12, 1, 0, 0, 0)
        .single()
        .expect("valid time");
    record(
        "Opportunity",
        id,
        vec![
            ("AccountId", text(account)),
            ("CreatedDate", Value::DateTime(created)),
            ("CloseDate", Value::Date(close)),
            ("IsClosed", Value::Bool(true)),
            ("IsWon", Value::Bool(won)),
            ("OwnerId", text("005rep1")),
            ("Amount", Value::Number(1000.0)),
        ],
    )
}

fn account(id: &str) -> Record {
    let mut fields = vec![("Name", text(&format!("Hospital {id}")))];
    fields.extend(ACCOUNT_FIELDS.iter().map(|field| (*field, Value::Null)));
    record("Account", id, fields)
}

fn score_row(id: &str, probability: f64, tier: &str, at: DateTime<Utc>) -> ScoreRow {
    ScoreRow {
        object: "Account".to_string(),
        id: id.to_string(),
        name: String::new(),
        owner_id: None,
        probability,
        score: (probability * 100.0).round(),
        tier: tier.to_string(),
        reasons: Vec::new(),
        hint: None,
        sales_ready: None,
        model_version: "v-test".to_string(),
        scored_at: at,
        reasons_key: None,
        inputs_key: None,
        valid_from: None,
        valid_until: None,
    }
}

/// A config and store in a temporary directory. Nothing connects, so the Salesforce URL
/// points at a closed loopback port.
struct Workspace {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    store_path: PathBuf,
}

/// Writes the example configuration with each `(from, to)` line of its `[outcomes]` table
/// replaced.
fn workspace(edits: &[(&str, &str)]) -> Workspace {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("store");
    let text =
        leadscore::demo::sandbox_config("http://127.0.0.1:9", &store_path.display().to_string())
            .replace(common::ALL_LEVELS, r#"levels = ["account"]"#);
    let mut text = text;
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "the example configuration has {from:?}"
        );
        text = text.replace(from, to);
    }
    let config_path = dir.path().join("leadscore.toml");
    std::fs::write(&config_path, text).expect("config written");
    Workspace {
        dir,
        config_path,
        store_path,
    }
}

fn load_config(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|err| panic!("{err}"))
}

/// Fills the hand-counted store: five scored accounts, seven deals closed after their account
/// was first scored, one deal on an account never scored, and one that closed before its
/// account's first score.
fn fill_fixed_store(store: &Store) {
    let accounts: Vec<Record> = ["a1", "a2", "a3", "a4", "a5", "a6", "a7"]
        .iter()
        .map(|id| account(id))
        .collect();
    save(store, "Account", &accounts);
    save(
        store,
        "Opportunity",
        &[
            deal("d1", "a1", 1, 15, true),
            deal("d2", "a2", 1, 20, false),
            deal("d3", "a3", 1, 25, false),
            deal("d4", "a3", 2, 10, true),
            deal("d5", "a4", 2, 12, true),
            deal("d6", "a5", 2, 15, false),
            deal("d7", "a1", 2, 20, true),
            deal("d8", "a6", 2, 1, true),
            deal("d9", "a7", 3, 1, false),
        ],
    );
    let january = [
        score_row("a1", 0.80, "A", time(1, 1)),
        score_row("a2", 0.75, "A", time(1, 1)),
        score_row("a3", 0.40, "C", time(1, 1)),
        score_row("a4", 0.55, "B", time(1, 1)),
        score_row("a5", 0.20, "D", time(1, 1)),
    ];
    assert_eq!(store.append_score_history(&january).expect("append"), 5);
    let mut february = january.map(|row| ScoreRow {
        scored_at: time(2, 1),
        ..row
    });
    february[2] = score_row("a3", 0.70, "B", time(2, 1));
    assert_eq!(
        store.append_score_history(&february).expect("append"),
        1,
        "only a3 changed"
    );
    let march = [score_row("a7", 0.30, "C", time(3, 10))];
    assert_eq!(store.append_score_history(&march).expect("append"), 1);
}

fn tier_month(report: &Json, month: &str, tier: &str) -> Option<Json> {
    report["tier_months"]
        .as_array()
        .expect("tier_months is a list")
        .iter()
        .find(|row| row["month"] == month && row["tier"] == tier)
        .cloned()
}

fn assert_close(actual: &Json, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is no number"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} != {expected}"
    );
}

fn run_report(config: &Path, extra: &[&str]) -> (String, String, i32) {
    let output = Command::new(BIN)
        .args(["report", "outcomes", "-c"])
        .arg(config)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("the leadscore binary runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

#[test]
fn tier_win_rates_match_hand_count() {
    let ws = workspace(&[]);
    let config = load_config(&ws.config_path);
    let store = Store::open(&ws.store_path).expect("store opens");
    fill_fixed_store(&store);
    let out = ws.dir.path().join("out");
    let report =
        outcomes::write_report_to(&store, &config, time(3, 31), &out).expect("report written");
    let json: Json = serde_json::from_str(
        &std::fs::read_to_string(out.join("outcomes-account.json")).expect("JSON written"),
    )
    .expect("the JSON parses");

    assert_eq!(report.closed_outcomes, 7);
    assert_eq!(json["closed_outcomes"], 7);
    assert_eq!(
        json["unscored_outcomes"], 2,
        "d8 and d9 had no earlier score"
    );
    assert_eq!(json["tier_months"].as_array().map(Vec::len), Some(5));
    // (month, tier, deals, won, win rate, mean probability before the close)
    let expected = [
        ("2026-01", "A", 2, 1, 0.5, (0.80 + 0.75) / 2.0),
        ("2026-01", "C", 1, 0, 0.0, 0.40),
        ("2026-02", "A", 1, 1, 1.0, 0.80),
        ("2026-02", "B", 2, 2, 1.0, (0.70 + 0.55) / 2.0),
        ("2026-02", "D", 1, 0, 0.0, 0.20),
    ];
    for (month, tier, deals, won, rate, predicted) in expected {
        let row = tier_month(&json, month, tier)
            .unwrap_or_else(|| panic!("no row for {month} tier {tier}"));
        assert_eq!(row["deals"], deals, "{month} {tier} deals");
        assert_eq!(row["won"], won, "{month} {tier} won");
        assert_close(&row["win_rate"], rate, &format!("{month} {tier} win rate"));
        assert_close(
            &row["predicted_rate"],
            predicted,
            &format!("{month} {tier} predicted rate"),
        );
        assert_eq!(row["enough_data"], false, "fewer than 5 deals per cell");
    }
    assert_eq!(json["go_live"], "2026-01-01T00:00:00Z");
}

#[test]
fn auc_matches_hand_value() {
    let ws = workspace(&[]);
    let config = load_config(&ws.config_path);
    let store = Store::open(&ws.store_path).expect("store opens");
    fill_fixed_store(&store);
    let report = outcomes::build_report(&store, &config, time(3, 31)).expect("report");
    // Won at 0.80, 0.70, 0.55, 0.80 against lost at 0.75, 0.40, 0.20: 10 of the 12 pairs
    // rank the won deal higher.
    let quarter = report
        .auc_by_quarter
        .iter()
        .find(|q| q.quarter == "2026-Q1")
        .expect("a row for 2026-Q1");
    assert_eq!(quarter.deals, 7);
    assert_eq!(quarter.won, 4);
    assert_eq!(quarter.lost, 3);
    let auc = quarter.auc.expect("both outcomes are present");
    assert!((auc - 10.0 / 12.0).abs() < 1e-12, "AUC {auc}");
    assert!(!quarter.enough_data, "7 deals are fewer than the minimum");
    assert!(
        report.breaches.is_empty(),
        "thin figures never breach: {:?}",
        report.breaches
    );
    assert!(
        report.notes.iter().any(|n| n.contains("ROC AUC needs")),
        "{:?}",
        report.notes
    );
}

#[test]
fn psi_zero_for_same_distribution() {
    let values: Vec<f64> = (0..50).map(|i| f64::from(i % 7)).collect();
    let psi = population_stability_index(&values, &values).expect("PSI");
    assert_eq!(psi, 0.0);
    let mut shuffled = values.clone();
    shuffled.reverse();
    assert_eq!(population_stability_index(&values, &shuffled), Some(0.0));
    assert_eq!(population_stability_index(&[], &values), None);
}

#[test]
fn psi_matches_hand_value_for_shift() {
    // Training values split 50/50 between 0 and 1; now 25/75. The deciles of the training
    // values cut at 0 and 1, so the bins are (..0], (0..1], (1..) and missing:
    // (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5).
    let expected = [0.0, 0.0, 1.0, 1.0];
    let actual = [0.0, 1.0, 1.0, 1.0];
    let hand = (0.25f64 - 0.5) * (0.25f64 / 0.5).ln() + (0.75f64 - 0.5) * (0.75f64 / 0.5).ln();
    let psi = population_stability_index(&expected, &actual).expect("PSI");
    assert!((psi - hand).abs() < 1e-12, "PSI {psi}, hand {hand}");

    // Missing values form their own bin: half missing now, none in training. The empty
    // training bin counts with a share of 0.0001.
    let with_missing = [0.0, f64::NAN, 1.0, f64::NAN];
    let e = 1e-4f64;
    let hand = (0.25f64 - 0.5) * (0.25f64 / 0.5).ln() * 2.0 + (0.5 - e) * (0.5 / e).ln();
    let psi = population_stability_index(&expected, &with_missing).expect("PSI");
    assert!((psi - hand).abs() < 1e-12, "PSI {psi}, hand {hand}");
}

/// Fills a store with ten deals in one quarter whose wins all went to the lowest scores.
fn fill_inverted_store(store: &Store) {
    let ids: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    let accounts: Vec<Record> = ids.iter().map(|id| account(id)).collect();
    save(store, "Account", &accounts);
    let deals: Vec<Record> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| deal(&format!("e{i}"), id, 2, 1 + i as u32, i < 5))
        .collect();
    save(store, "Opportunity", &deals);
    let rows: Vec<ScoreRow> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| score_row(id, 0.05 + 0.09 * i as f64, "B", time(1, 1)))
        .collect();
    store.append_score_history(&rows).expect("append");
}

#[test]
fn breach_requests_retrain_only_when_configured() {
    let off = ("retrain_on_breach = false", "retrain_on_breach = false");
    let on = ("retrain_on_breach = false", "retrain_on_breach = true");
    for (edit, requested) in [(off, false), (on, true)] {
        let ws = workspace(&[edit]);
        let config = load_config(&ws.config_path);
        let store = Store::open(&ws.store_path).expect("store opens");
        fill_inverted_store(&store);
        let report = outcomes::build_report(&store, &config, time(3, 31)).expect("report");
        assert!(
            report
                .breaches
                .iter()
                .any(|b| b.contains("ROC AUC in 2026-Q1 is 0.000") && b.contains("min_auc")),
            "{edit:?}: {:?}",
            report.breaches
        );
        assert_eq!(report.retrain_requested, requested, "{edit:?}");
    }

    // A lower limit than the observed AUC is no breach.
    let ws = workspace(&[("min_auc = 0.65", "min_auc = 0"), on]);
    let config = load_config(&ws.config_path);
    let store = Store::open(&ws.store_path).expect("store opens");
    fill_inverted_store(&store);
    let report = outcomes::build_report(&store, &config, time(3, 31)).expect("report");
    assert!(report.breaches.is_empty(), "{:?}", report.breaches);
    assert!(!report.retrain_requested);
}

#[test]
fn outcomes_config_rejects_bad_values() {
    let ws = workspace(&[
        ("min_auc = 0.65", "min_auc = 1.5"),
        ("retrain_on_breach = false", "retrain_on_breach = \"yes\""),
    ]);
    let err = Config::load(&ws.config_path).expect_err("invalid values are rejected");
    let message = err.to_string();
    assert!(message.contains("outcomes.min_auc"), "{message}");
    assert!(message.contains("outcomes.retrain_on_breach"), "{message}");

    let ws = workspace(&[
        ("folder = \"reports\"", "folder = \"monthly\""),
        ("max_psi = 0.25", "max_psi = 0.5"),
    ]);
    let config = load_config(&ws.config_path);
    assert_eq!(config.reports.folder, ws.dir.path().join("monthly"));
    assert_eq!(config.reports.max_psi, 0.5);
    assert_eq!(config.reports.min_auc, 0.65);
}

#[test]
fn history_records_only_changes() {
    let ws = workspace(&[]);
    let store = Store::open(&ws.store_path).expect("store opens");
    let rows = [score_row("a1", 0.80, "A", time(1, 1))];
    assert_eq!(store.append_score_history(&rows).expect("first"), 1);
    let same = [score_row("a1", 0.80, "A", time(1, 2))];
    assert_eq!(store.append_score_history(&same).expect("same"), 0);
    // A new probability that rounds to the same score and tier is no change.
    let nudged = [score_row("a1", 0.801, "A", time(1, 3))];
    assert_eq!(store.append_score_history(&nudged).expect("nudged"), 0);
    let lower = [score_row("a1", 0.60, "B", time(1, 4))];
    assert_eq!(store.append_score_history(&lower).expect("lower"), 1);

    let entries = store.record_score_history("a1").expect("entries");
    let scores: Vec<(DateTime<Utc>, f64, String)> = entries
        .iter()
        .map(|e| (e.at, e.score, e.tier.clone()))
        .collect();
    assert_eq!(
        scores,
        vec![
            (time(1, 1), 80.0, "A".to_string()),
            (time(1, 4), 60.0, "B".to_string()),
        ]
    );
    let history = store.score_history().expect("history");
    assert_eq!(history.at("a1", time(1, 3)).map(|e| e.score), Some(80.0));
    assert_eq!(history.at("a1", time(1, 5)).map(|e| e.score), Some(60.0));
    assert_eq!(
        history.at("a1", time(1, 1) - chrono::Duration::seconds(1)),
        None
    );
    // Levels never mix.
    let contacts = store
        .at_level(Level::Contact)
        .score_history()
        .expect("read");
    assert!(contacts.is_empty());
}

#[test]
fn history_follows_merges_and_deletions() {
    let ws = workspace(&[]);
    let store = Store::open(&ws.store_path).expect("store opens");
    store
        .append_score_history(&[
            score_row("old", 0.30, "C", time(1, 1)),
            score_row("gone", 0.50, "B", time(1, 1)),
            score_row("new", 0.90, "A", time(2, 1)),
        ])
        .expect("append");
    let mut merged = record("Account", "old", vec![("MasterRecordId", text("new"))]);
    merged.deleted = true;
    let mut deleted = record("Account", "gone", Vec::new());
    deleted.deleted = true;
    store
        .record_deletions("Account", &[merged, deleted])
        .expect("tombstones");

    let history = store.score_history().expect("history");
    assert!(
        !history.entries.contains_key("gone"),
        "deleted records drop out"
    );
    assert_eq!(history.first_scored("new"), Some(time(1, 1)));
    assert_eq!(history.at("new", time(1, 15)).map(|e| e.score), Some(30.0));
    assert_eq!(history.at("new", time(2, 15)).map(|e| e.score), Some(90.0));
}

#[test]
fn cli_writes_html_csv_and_json() {
    let ws = workspace(&[]);
    {
        let store = Store::open(&ws.store_path).expect("store opens");
        fill_fixed_store(&store);
    }
    let out = ws.dir.path().join("out");
    let (stdout, stderr, code) = run_report(
        &ws.config_path,
        &["--out", out.to_str().expect("utf-8 path")],
    );
    assert_eq!(code, 0, "{stderr}");
    let html = std::fs::read_to_string(out.join("outcomes-account.html")).expect("HTML written");
    assert!(html.contains("<svg"), "the page has charts inline");
    assert!(html.contains("Win rate per tier and month"));
    assert!(html.contains("too few to rate"), "thin cells are marked");
    let json: Json = serde_json::from_str(
        &std::fs::read_to_string(out.join("outcomes-account.json")).expect("JSON written"),
    )
    .expect("the JSON parses");
    assert_eq!(json["closed_outcomes"], 7);
    let csv =
        std::fs::read_to_string(out.join("outcomes-account-tier-months.csv")).expect("CSV written");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("month,tier,deals,won,win_rate,predicted_rate,enough_data")
    );
    assert_eq!(lines.count(), 5);
    for suffix in [
        "-calibration.csv",
        "-auc-by-quarter.csv",
        "-tier-impact.csv",
        "-rep-activity.csv",
        "-rep-revenue.csv",
        "-drift.csv",
        "-score-history.csv",
    ] {
        let path = out.join(format!("outcomes-account{suffix}"));
        let text = std::fs::read_to_string(&path).expect("CSV written");
        // A table without rows still names its columns.
        let header = text.lines().next().unwrap_or_default();
        assert!(header.contains(','), "{suffix} has no header row: {text:?}");
        assert!(
            stdout.contains(&path.display().to_string()),
            "{suffix} not listed: {stdout}"
        );
    }
    let revenue =
        std::fs::read_to_string(out.join("outcomes-account-rep-revenue.csv")).expect("CSV written");
    assert!(
        revenue.contains("005rep1,,4,4000.0,4000.0"),
        "four won deals of 1000, all on A or B accounts: {revenue}"
    );

    // Without --out the files go to [outcomes] folder, next to the config file.
    let (_, stderr, code) = run_report(&ws.config_path, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(ws
        .dir
        .path()
        .join("reports")
        .join("outcomes-account.html")
        .is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_keeps_history_and_drift() {
    let env = Env::start(SandboxOptions::default()).await;
    let store = env.store();
    pipeline::pull(&env.connector(), &store, &env.config)
        .await
        .expect("pull");
    let config = env.config.clone();
    let store_for_work = store.clone();
    let (first, second, entries, report) = tokio::task::spawn_blocking(move || {
        let store = store_for_work;
        training::train(&store, &config, Utc::now()).expect("train");
        let first = scoring::score(&store, &config, time(11, 1)).expect("score");
        let entries = store.score_history().expect("history").len();
        let second = scoring::score(&store, &config, time(11, 2)).expect("score again");
        let after = store.score_history().expect("history").len();
        let report = outcomes::build_report(&store, &config, time(12, 1)).expect("report");
        (first.scored, second.scored, (entries, after), report)
    })
    .await
    .expect("join");

    assert!(first > 0);
    assert_eq!(first, second);
    assert_eq!(entries.0, first, "the first scoring records every record");
    assert_eq!(
        entries.1, entries.0,
        "an unchanged rescoring records nothing"
    );
    assert_eq!(report.go_live, Some(time(11, 1)));
    assert!(
        report.drift.note.is_none(),
        "drift is measured: {:?}",
        report.drift.note
    );
    assert!(!report.drift.features.is_empty());
    assert!(report
        .drift
        .features
        .iter()
        .all(|f| f.psi.is_finite() && f.psi >= 0.0));
}
