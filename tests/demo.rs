//! Tests of `leadscore demo`: the three levels against the oracle on both CRMs, what the
//! daemon's jobs leave (alert tasks, flags, lists, the outcomes report), and
//! `--export-examples`, whose CSV files contain every closed deal, split as training splits,
//! and which `leadscore evaluate` reads.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the leadscore binary runs")
}

/// Runs `leadscore demo` with `args` and its output folder in `out`, and returns its JSON.
fn demo_json(args: &[&str], out: &Path) -> serde_json::Value {
    let out_text = out.to_str().expect("UTF-8 temporary path");
    let mut all = vec!["demo", "--json", "--out", out_text];
    all.extend_from_slice(args);
    stdout_json(&run(&all), &format!("leadscore {}", all.join(" ")))
}

/// Checks what the demo's daemon jobs left: one task per alert in the CRM and none on the
/// re-score, the flags pulled and on the model card, the lists and the outcomes report.
fn check_actions(summary: &serde_json::Value, out: &Path) {
    let actions = &summary["actions"];
    let count = |key: &str| -> u64 {
        actions[key]
            .as_u64()
            .unwrap_or_else(|| panic!("actions.{key} missing: {actions}"))
    };
    assert!(count("alerts_sent") > 0, "{actions}");
    assert_eq!(count("rerun_alerts_sent"), 0, "{actions}");
    assert_eq!(count("alerts_failed"), 0, "{actions}");
    assert_eq!(
        count("alert_tasks_in_crm"),
        count("alerts_sent"),
        "{actions}"
    );
    let (header, tasks) = read_csv(&out.join("alert-tasks.csv"));
    assert_eq!(header, ["task_id", "record_id", "owner_id", "subject"]);
    assert_eq!(tasks.len() as u64, count("alerts_sent"));
    assert!(tasks.iter().all(|t| t[3].starts_with("[leadscore]")));

    assert_eq!(count("flags_set"), 3, "{actions}");
    assert_eq!(count("flags_pulled"), 3, "{actions}");
    let card: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("reports/model-card.json")).expect("model card JSON"),
    )
    .expect("model card parses");
    for value in ["Too high", "Too low", "Right"] {
        assert_eq!(
            card["feedback"]["by_value"][value].as_u64(),
            Some(1),
            "{}",
            card["feedback"]
        );
    }

    assert!(count("lists") > 1, "{actions}");
    let index = std::fs::read_to_string(out.join("lists/index.html")).expect("lists index");
    assert!(index.contains(".html"), "the index links no list");

    assert!(count("outcomes_judged") > 0, "{actions}");
    let auc = actions["outcomes_auc"].as_f64().expect("outcomes_auc");
    assert!(auc > 0.6, "AUC of the backtest scores {auc}");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("reports/outcomes-account.json")).expect("outcomes JSON"),
    )
    .expect("outcomes JSON parses");
    assert_eq!(
        report["closed_outcomes"].as_u64(),
        Some(count("outcomes_judged"))
    );
}

fn stdout_json(output: &Output, what: &str) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{what} failed with {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{what} printed no JSON object ({e})"))
}

/// Returns the header and the data rows of a CSV file.
fn read_csv(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_path(path).expect("the exported file opens");
    let header = reader
        .headers()
        .expect("the exported file has a header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("every exported row parses");
    (header, rows)
}

#[test]
fn export_examples_feeds_evaluate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("examples");
    let out_text = out.to_str().expect("UTF-8 temporary path");
    let summary = demo_json(
        &["--hospitals", "400", "--export-examples", out_text],
        &dir.path().join("out"),
    );

    let train_path = out.join("train.csv");
    let holdout_path = out.join("holdout.csv");
    assert!(train_path.is_file(), "train.csv is missing");
    assert!(holdout_path.is_file(), "holdout.csv is missing");
    let (train_header, train_rows) = read_csv(&train_path);
    let (holdout_header, holdout_rows) = read_csv(&holdout_path);

    let examples = summary["examples"].as_u64().expect("examples is a number") as usize;
    let holdout = summary["holdout_rows"]
        .as_u64()
        .expect("holdout_rows is a number") as usize;
    assert_eq!(train_rows.len() + holdout_rows.len(), examples);
    assert_eq!(holdout_rows.len(), holdout);
    assert_eq!(
        summary["exported"]["features"].as_u64(),
        Some(train_header.len() as u64 - 3)
    );

    assert_eq!(train_header, holdout_header);
    assert_eq!(&train_header[..3], ["id", "close_date", "won"]);
    assert!(
        train_header.len() > 3,
        "no feature columns in {train_header:?}"
    );
    for feature in ["hip_knee_volume", "roles_engaged"] {
        assert!(
            train_header.iter().any(|h| h == feature),
            "feature column {feature} missing from {train_header:?}"
        );
    }

    // Labels are 1/0 and both classes appear in the training file.
    let labels: Vec<&str> = train_rows.iter().map(|r| &r[2]).collect();
    assert!(labels.iter().all(|l| *l == "1" || *l == "0"));
    assert!(labels.contains(&"1"));
    assert!(labels.contains(&"0"));

    // The holdout is the latest slice: no training deal closes after the first holdout deal.
    let last_train = train_rows.iter().map(|r| r[1].to_string()).max();
    let first_holdout = holdout_rows.iter().map(|r| r[1].to_string()).min();
    assert!(last_train <= first_holdout);

    let evaluate = run(&[
        "evaluate",
        "--csv",
        train_path.to_str().expect("UTF-8 path"),
        "--holdout-csv",
        holdout_path.to_str().expect("UTF-8 path"),
        "--label",
        "won",
        "--id",
        "id",
        "--exclude",
        "close_date",
        "--json",
    ]);
    let result = stdout_json(&evaluate, "leadscore evaluate");
    let auc = result["auc"].as_f64().expect("auc is a number");
    assert!(
        (0.5..=1.0).contains(&auc),
        "holdout AUC {auc} is out of range"
    );
    assert_eq!(result["rows_holdout"].as_u64(), Some(holdout as u64));
}

#[test]
fn demo_reports_three_levels_beside_the_oracle() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let summary = demo_json(&["--hospitals", "400"], dir.path());
    check_actions(&summary, dir.path());
    let levels = summary["levels"].as_array().expect("levels is an array");
    let names: Vec<&str> = levels.iter().filter_map(|l| l["level"].as_str()).collect();
    assert_eq!(names, ["account", "contact", "lead"]);
    for level in levels {
        let name = &level["level"];
        let auc = level["holdout_auc"].as_f64().expect("holdout_auc");
        let oracle = level["oracle_auc"].as_f64().expect("oracle_auc");
        assert!((0.5..=1.0).contains(&oracle), "{name}: oracle {oracle}");
        // The oracle scores with the true probabilities. A model can tie it on a small
        // holdout, but not beat it by much.
        assert!(
            auc < oracle + 0.05,
            "{name}: AUC {auc} beats the oracle {oracle}"
        );
        assert!(auc > 0.65, "{name}: AUC {auc}");
        let scored = level["scored"].as_u64().expect("scored");
        assert!(scored > 0, "{name} scored nothing");
        assert_eq!(level["written"].as_u64(), Some(scored), "{name}");
    }
    let sales_ready = levels[2]["sales_ready"].as_u64().expect("lead sales_ready");
    assert!(sales_ready > 0);
    assert_eq!(summary["crm_sales_ready_leads"].as_u64(), Some(sales_ready));
    assert_eq!(summary["rerun_written"].as_u64(), Some(0));
}

#[test]
fn hubspot_demo_has_the_same_shape() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let salesforce = demo_json(&["--hospitals", "400"], &dir.path().join("salesforce"));
    let hubspot_out = dir.path().join("hubspot");
    let hubspot = demo_json(&["--crm", "hubspot", "--hospitals", "400"], &hubspot_out);
    check_actions(&hubspot, &hubspot_out);
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&hubspot), keys(&salesforce));
    assert_eq!(hubspot["crm"], "hubspot");
    assert_eq!(hubspot["rerun_written"].as_u64(), Some(0));
    let levels = hubspot["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 3);
    for level in levels {
        let auc = level["holdout_auc"].as_f64().expect("holdout_auc");
        let oracle = level["oracle_auc"].as_f64().expect("oracle_auc");
        assert!(auc > 0.65, "{level}");
        assert!(auc < oracle + 0.05, "{level}");
        assert!(level["written"].as_u64().expect("written") > 0, "{level}");
    }
    // The same org gives the same examples in either CRM.
    for (hs, sf) in levels
        .iter()
        .zip(salesforce["levels"].as_array().expect("levels"))
    {
        assert_eq!(hs["examples"], sf["examples"], "{}", hs["level"]);
    }
}
