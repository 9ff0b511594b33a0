//! Tests of `leadscore evaluate` run as a binary on small CSV files in a temporary directory:
//! quoted commas, blank cells, constant columns, invalid labels, ragged rows and the outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");
const HEADER: &str = "Lead Id,Created,First Touch,City,Visits,Emailed,Region,Converted";
const CITIES: [&str; 3] = ["\"Boston, MA\"", "\"Austin, TX\"", "\"Denver, CO\""];

fn leadscore(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("evaluate")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the leadscore binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns `count` CSV data rows whose `Converted` outcome depends on `Visits` and `City`,
/// from a fixed linear congruential generator so every run sees the same file.
fn lead_rows(count: usize, first_id: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rows = Vec::with_capacity(count);
    for index in 0..count {
        let id = first_id + index;
        let visits = (uniform() * 12.0).floor();
        let city_index = (uniform() * 3.0) as usize;
        let emailed = uniform() < 0.5;
        let logit = (visits - 6.0) / 2.0 + if city_index == 0 { 1.0 } else { -0.5 };
        let won = uniform() < 1.0 / (1.0 + (-logit).exp());
        // Every 7th row has a blank city, every 11th a placeholder, every 13th no visits.
        let city = if id.is_multiple_of(7) {
            ""
        } else if id.is_multiple_of(11) {
            "Select"
        } else {
            CITIES[city_index]
        };
        let visits = if id.is_multiple_of(13) {
            String::new()
        } else {
            visits.to_string()
        };
        let day = 1 + id % 28;
        let month = 1 + (id / 28) % 12;
        rows.push(format!(
            "L{id:05},2024-{month:02}-{day:02},{month:02}/{day:02}/2023,{city},{visits},{},East,{}",
            if emailed { "Yes" } else { "No" },
            u8::from(won)
        ));
    }
    rows
}

fn write_csv(dir: &Path, name: &str, header: &str, rows: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write the CSV file");
    path
}

fn parse_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "evaluate failed: {}",
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

fn column<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["columns"]
        .as_array()
        .expect("columns is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("column {name} is listed"))
}

#[test]
fn json_output_and_inference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = write_csv(dir.path(), "leads.csv", HEADER, &lead_rows(400, 1, 7));
    let path = csv.to_str().expect("utf-8 path");
    let output = leadscore(&[
        "--csv",
        path,
        "--label",
        "Converted",
        "--time",
        "Created",
        "--id",
        "Lead Id",
        "--json",
    ]);
    let json = parse_json(&output);

    for key in [
        "auc",
        "log_loss",
        "ece",
        "rows_train",
        "rows_holdout",
        "report",
    ] {
        assert!(json.get(key).is_some(), "key {key} missing from {json}");
    }
    let train = json["rows_train"].as_u64().expect("rows_train is a count");
    let holdout = json["rows_holdout"]
        .as_u64()
        .expect("rows_holdout is a count");
    assert_eq!(train + holdout, 400);
    assert!(holdout > 0);
    let auc = json["auc"].as_f64().expect("auc is a number");
    assert!(auc > 0.6, "the outcome depends on Visits, but AUC is {auc}");

    // The quoted commas stay inside one cell: three cities, not six half-values.
    let city = column(&json, "City");
    assert_eq!(city["type"], "category");
    assert_eq!(city["distinct"], 3);
    assert_eq!(city["features"], 3);
    // Blank cells (every 7th row) and "Select" (every 11th) are both missing.
    let missing = city["missing_share"].as_f64().expect("share");
    let expected = (1..=400).filter(|i| i % 7 == 0 || i % 11 == 0).count() as f64 / 400.0;
    assert!((missing - expected).abs() < 1e-9, "{missing} != {expected}");

    assert_eq!(column(&json, "Visits")["type"], "number");
    assert_eq!(column(&json, "Emailed")["type"], "yes/no");
    assert_eq!(column(&json, "First Touch")["type"], "date");
    assert_eq!(column(&json, "Created")["role"], "time");
    assert_eq!(column(&json, "Lead Id")["role"], "id");
    assert_eq!(column(&json, "Converted")["role"], "label");
    // A constant column is reported as such, dropped by the trainer's checks, and does not
    // stop the run.
    assert_eq!(column(&json, "Region")["distinct"], 1);
    let dropped: Vec<&str> = json["report"]["checks"]["dropped"]
        .as_array()
        .expect("checks.dropped is an array")
        .iter()
        .filter_map(|d| d["feature"].as_str())
        .collect();
    assert!(dropped.contains(&"Region=East"), "dropped: {dropped:?}");
}

#[test]
fn human_summary_lists_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = write_csv(dir.path(), "leads.csv", HEADER, &lead_rows(400, 1, 3));
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for word in ["AUC", "PR AUC", "log loss", "Brier", "ECE", "Chosen model"] {
        assert!(text.contains(word), "{word} missing from: {text}");
    }
    // The inference table goes to standard error.
    assert!(stderr(&output).contains("City"), "{}", stderr(&output));
}

#[test]
fn predictions_one_line_per_holdout_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = write_csv(dir.path(), "train.csv", HEADER, &lead_rows(400, 1, 11));
    let holdout_rows = lead_rows(120, 401, 12);
    let holdout = write_csv(dir.path(), "holdout.csv", HEADER, &holdout_rows);
    let predictions = dir.path().join("predictions.csv");
    let output = leadscore(&[
        "--csv",
        train.to_str().expect("utf-8 path"),
        "--holdout-csv",
        holdout.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
        "--id",
        "Lead Id",
        "--exclude",
        "Created",
        "--predictions",
        predictions.to_str().expect("utf-8 path"),
        "--json",
    ]);
    let json = parse_json(&output);
    assert_eq!(json["rows_train"], 400);
    assert_eq!(json["rows_holdout"], 120);
    assert_eq!(column(&json, "Created")["role"], "excluded");

    let text = std::fs::read_to_string(&predictions).expect("predictions file written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,probability");
    assert_eq!(
        lines.len(),
        1 + 120,
        "a header plus one line per holdout row"
    );
    let mut ids: Vec<&str> = Vec::new();
    for line in &lines[1..] {
        let (id, probability) = line.split_once(',').expect("two fields");
        let probability: f64 = probability.parse().expect("probability is a number");
        assert!((0.0..=1.0).contains(&probability), "{line}");
        ids.push(id);
    }
    ids.sort_unstable();
    let expected: Vec<String> = (401..521).map(|id| format!("L{id:05}")).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn one_class_label_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: Vec<String> = lead_rows(300, 1, 5)
        .into_iter()
        .map(|row| format!("{}0", &row[..row.len() - 1]))
        .collect();
    let csv = write_csv(dir.path(), "lost.csv", HEADER, &rows);
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("only one class"), "{message}");
    assert!(message.contains("0 won, 300 lost"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn non_binary_label_names_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = lead_rows(50, 1, 5);
    rows[9] = rows[9]
        .replace(",East,1", ",East,maybe")
        .replace(",East,0", ",East,maybe");
    rows[20] = rows[20]
        .replace(",East,1", ",East,")
        .replace(",East,0", ",East,");
    let csv = write_csv(dir.path(), "labels.csv", HEADER, &rows);
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("\"maybe\""), "{message}");
    assert!(message.contains("(blank)"), "{message}");
    assert!(message.contains("line 11"), "{message}");
}

#[test]
fn ragged_row_reports_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = lead_rows(20, 1, 5);
    // Data row 4 (file line 5) gets one field too many.
    rows[3] = rows[3].replace(",East,", ",East,x,");
    let csv = write_csv(dir.path(), "ragged.csv", HEADER, &rows);
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("line 5"), "{message}");
    assert!(
        message.contains("has 9 fields but the header has 8"),
        "{message}"
    );

    // The same file with Windows line endings reports the same line.
    let crlf = dir.path().join("ragged-crlf.csv");
    let text = std::fs::read_to_string(&csv).expect("read back");
    std::fs::write(&crlf, text.replace('\n', "\r\n")).expect("write");
    let output = leadscore(&[
        "--csv",
        crlf.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("line 5"), "{}", stderr(&output));
}

#[test]
fn missing_column_and_empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = write_csv(dir.path(), "leads.csv", HEADER, &lead_rows(20, 1, 5));
    let path = csv.to_str().expect("utf-8 path");
    for (option, name) in [
        ("--label", "Won"),
        ("--time", "Closed"),
        ("--exclude", "Tags"),
    ] {
        let mut args = vec!["--csv", path, option, name];
        if option != "--label" {
            args.extend(["--label", "Converted"]);
        }
        let output = leadscore(&args);
        assert_eq!(output.status.code(), Some(2), "{option}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("{option} \"{name}\"")),
            "{message}"
        );
        assert!(message.contains("Lead Id"), "lists the columns: {message}");
    }

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").expect("write");
    let output = leadscore(&[
        "--csv",
        empty.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("empty"), "{}", stderr(&output));

    let header_only = write_csv(dir.path(), "header.csv", HEADER, &[]);
    let output = leadscore(&[
        "--csv",
        header_only.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no data rows"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn holdout_value_of_wrong_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = write_csv(dir.path(), "train.csv", HEADER, &lead_rows(300, 1, 9));
    let mut rows = lead_rows(40, 301, 10);
    rows[2] = rows[2]
        .replace(",Yes,East,", ",perhaps,East,")
        .replace(",No,East,", ",perhaps,East,");
    let holdout = write_csv(dir.path(), "holdout.csv", HEADER, &rows);
    let output = leadscore(&[
        "--csv",
        train.to_str().expect("utf-8 path"),
        "--holdout-csv",
        holdout.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("\"Emailed\""), "{message}");
    assert!(message.contains("\"perhaps\""), "{message}");
}

#[test]
fn column_roles_must_differ() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = write_csv(dir.path(), "leads.csv", HEADER, &lead_rows(60, 1, 9));
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
        "--id",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("name the same column"), "{message}");
}

#[test]
fn semicolon_file_named_as_such() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: Vec<String> = lead_rows(30, 1, 3)
        .iter()
        .map(|row| row.replace(',', ";"))
        .collect();
    let csv = write_csv(dir.path(), "semi.csv", &HEADER.replace(',', ";"), &rows);
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("separated by semicolons"), "{message}");
}

#[test]
fn bad_time_cell_reported_at_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = lead_rows(60, 1, 4);
    // Data row 9 (file line 10) gets a day-first date the parser does not read.
    let date = rows[8].split(',').nth(1).expect("created").to_string();
    rows[8] = rows[8].replacen(&date, "31/12/2024", 1);
    let csv = write_csv(dir.path(), "dates.csv", HEADER, &rows);
    let output = leadscore(&[
        "--csv",
        csv.to_str().expect("utf-8 path"),
        "--label",
        "Converted",
        "--time",
        "Created",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("line 10"), "{message}");
    assert!(message.contains("31/12/2024"), "{message}");
}
