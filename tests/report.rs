//! Tests of `leadscore report model`: the model card written from a hand-written report, from
//! partial and malformed reports, and from a model trained on the sandbox org.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Utc;
use common::Env;
use leadscore::store::{Store, StoredModel};
use leadscore::{pipeline, training};
use leadscore_sandbox::SandboxOptions;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// A feature name with HTML markup, which must reach the page escaped.
const MARKUP_FEATURE: &str = "<b>beds</b> & \"bays\"";

fn full_report() -> Value {
    json!({
        "version": "gbm-00000000000000aa",
        "trained_at": "2026-11-30T12:00:00Z",
        "chosen": "blend",
        "calibration_method": "isotonic",
        "window": {"from": "2023-01-02T00:00:00Z", "to": "2026-11-20T00:00:00Z", "holdout_from": "2026-03-01T00:00:00Z"},
        "counts": {"examples": 1234, "won": 456, "lost": 778, "train": 864, "validation": 123, "holdout": 247},
        "checks": {
            "sufficiency": {"passed": true, "floor_examples": 200, "floor_minority": 40, "message": "1234 closed deals, 456 won"},
            "leakage": [{"feature": "<i>stage_age</i>", "auc": 0.97, "excluded": true}],
            "dropped": [{"feature": "fax & phone", "reason": "constant"}]
        },
        "metrics": {"auc": 0.8123, "pr_auc": 0.7012, "log_loss": 0.4987, "brier": 0.1711, "ece": 0.0312},
        "baseline": {"name": "logistic regression", "metrics": {"auc": 0.7741, "pr_auc": 0.6502, "log_loss": 0.5321, "brier": 0.1844, "ece": 0.0401}},
        "candidates": [
            {"name": "gbm", "validation_auc": 0.8011, "validation_log_loss": 0.5012},
            {"name": "logistic", "validation_auc": 0.7702, "validation_log_loss": 0.5333},
            {"name": "blend", "validation_auc": 0.8105, "validation_log_loss": 0.4950}
        ],
        "calibration": (1..=10).map(|bin| json!({
            "bin": bin, "count": 25, "mean_predicted": (bin as f64 - 0.5) / 10.0,
            "observed": ((bin as f64 - 0.5) / 10.0 + 0.02).min(1.0)
        })).collect::<Vec<_>>(),
        "lift": (1..=10).map(|decile| json!({
            "decile": decile, "count": 25, "win_rate": 0.9 - 0.08 * decile as f64,
            "lift": (0.9 - 0.08 * decile as f64) / 0.37,
            "cumulative_gain": (decile as f64 / 10.0).sqrt()
        })).collect::<Vec<_>>(),
        "tiers": [
            {"tier": "A", "count": 40, "win_rate": 0.8},
            {"tier": "B", "count": 70, "win_rate": 0.5},
            {"tier": "C", "count": 80, "win_rate": 0.25},
            {"tier": "D", "count": 57, "win_rate": 0.08}
        ],
        "top_features": [
            {"feature": "roles_engaged", "mean_abs_contribution": 0.42},
            {"feature": MARKUP_FEATURE, "mean_abs_contribution": 0.31},
            {"feature": "meetings_90d", "mean_abs_contribution": 0.12}
        ],
        "live_comparison": {"live_version": "gbm-00000000000000bb", "live_auc": 0.7990, "candidate_auc": 0.8123, "margin": 0.01}
    })
}

struct Workspace {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    store_path: PathBuf,
}

/// Writes a config whose store is in a temporary directory. The report never connects, so
/// the Salesforce URL points at a closed loopback port.
fn workspace() -> Workspace {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("store");
    let text =
        leadscore::demo::sandbox_config("http://127.0.0.1:9", &store_path.display().to_string());
    let config_path = dir.path().join("leadscore.toml");
    std::fs::write(&config_path, text).expect("config written");
    Workspace {
        dir,
        config_path,
        store_path,
    }
}

fn save_model(store_path: &Path, version: &str, report: Value) {
    let store = Store::open(store_path).expect("store opens");
    store
        .save_model(&StoredModel {
            level: leadscore::level::Level::Account,
            version: version.to_string(),
            trained_at: Utc::now(),
            features: json!({}),
            report,
            model: Vec::new(),
        })
        .expect("model saved");
}

fn report_model(config: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["report", "model", "-c"])
        .arg(config)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("the leadscore binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the report into `out` and returns the page and the parsed JSON.
fn run_report(config: &Path, out: &Path, extra: &[&str]) -> (String, Value) {
    let mut args = vec!["--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let output = report_model(config, &args);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let html_path = out.join("model-card.html");
    let json_path = out.join("model-card.json");
    assert!(
        stdout.contains(&html_path.display().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains(&json_path.display().to_string()),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&html_path).expect("HTML written");
    let json_text = std::fs::read_to_string(&json_path).expect("JSON written");
    let json: Value = serde_json::from_str(&json_text).expect("the JSON parses");
    (html, json)
}

#[test]
fn full_report_renders_every_part() {
    let ws = workspace();
    save_model(&ws.store_path, "gbm-00000000000000aa", full_report());
    let out = ws.dir.path().join("card");
    let (html, card) = run_report(&ws.config_path, &out, &[]);

    // Calibration, lift, cumulative gain, tiers and top features.
    assert_eq!(html.matches("<svg").count(), 5, "{html}");
    assert!(!html.contains("<b>beds</b>"), "raw markup leaked");
    assert!(html.contains("&lt;b&gt;beds&lt;/b&gt; &amp; &quot;bays&quot;"));
    assert!(html.contains("&lt;i&gt;stage_age&lt;/i&gt;"));
    assert!(html.contains("fax &amp; phone"));
    assert!(!html.contains("<i>stage_age"));
    assert!(html.contains("roles_engaged"));
    assert!(html.contains("0.8123"), "holdout AUC shown");
    assert!(html.contains("0.7741"), "baseline AUC shown");
    assert!(html.contains("logistic regression"));
    assert!(html.contains("0.8105"), "blend validation AUC shown");
    assert!(html.contains("1234"), "example count shown");
    assert!(html.contains("gbm-00000000000000bb"), "live model named");
    assert!(html.contains("may replace it"));
    assert!(!html.contains("not available"), "every part is present");

    let mut expected = full_report();
    expected["model_version"] = json!("gbm-00000000000000aa");
    assert_eq!(card, expected);
}

#[test]
fn partial_report_marks_missing_parts() {
    let ws = workspace();
    let report = json!({
        "metrics": {"auc": 0.6789},
        "calibration": "not a list",
        "live_comparison": null
    });
    save_model(&ws.store_path, "gbm-partial", report.clone());
    let out = ws.dir.path().join("card");
    let (html, card) = run_report(&ws.config_path, &out, &["--version", "gbm-partial"]);

    assert_eq!(html.matches("<svg").count(), 0, "no chart without data");
    assert!(html.contains("0.6789"));
    assert!(html.contains("not available"));
    assert!(html.contains("<code>calibration</code> part is unreadable"));
    assert!(html.contains("no live model"));
    assert_eq!(card["model_version"], json!("gbm-partial"));
    assert_eq!(card["calibration"], report["calibration"]);
}

#[test]
fn flat_report_shows_metrics() {
    // The report shape written before the full model report: flat holdout keys.
    let report = json!({
        "version": "gbm-flat",
        "examples": 300,
        "won": 120,
        "train_rows": 240,
        "holdout_rows": 60,
        "holdout_from": "2026-06-01T00:00:00Z",
        "holdout_auc": 0.7345,
        "holdout_log_loss": 0.5567,
        "holdout_brier": 0.1899,
        "baseline_log_loss": 0.6731,
        "features": 12
    });
    let ws = workspace();
    save_model(&ws.store_path, "gbm-flat", report.clone());
    let out = ws.dir.path().join("card");
    let (html, card) = run_report(&ws.config_path, &out, &[]);

    assert!(html.contains("0.7345"), "AUC shown");
    assert!(html.contains("0.5567"), "log loss shown");
    assert!(html.contains("<td>180</td>"), "lost deals derived");
    assert!(html.contains("2026-06-01T00:00:00Z"), "holdout start shown");
    let mut expected = report;
    expected["model_version"] = json!("gbm-flat");
    assert_eq!(card, expected, "the JSON keeps the stored report as it is");
}

#[test]
fn earlier_version_reported_by_name() {
    let ws = workspace();
    let mut old_report = full_report();
    old_report["metrics"]["auc"] = json!(0.6543);
    old_report["live_comparison"] = Value::Null;
    save_model(&ws.store_path, "gbm-old", old_report);
    save_model(&ws.store_path, "gbm-new", full_report());

    let (live_html, live_card) = run_report(&ws.config_path, &ws.dir.path().join("live"), &[]);
    assert_eq!(live_card["model_version"], json!("gbm-new"));
    assert!(live_html.contains("0.8123"));

    let (old_html, old_card) = run_report(
        &ws.config_path,
        &ws.dir.path().join("old"),
        &["--version", "gbm-old"],
    );
    assert_eq!(old_card["model_version"], json!("gbm-old"));
    assert!(old_html.contains("0.6543"));
    assert!(!old_html.contains("0.8123"));
}

#[test]
fn unknown_version_fails() {
    let ws = workspace();
    save_model(&ws.store_path, "gbm-live", full_report());
    let out = ws.dir.path().join("card");
    let output = report_model(
        &ws.config_path,
        &[
            "--version",
            "gbm-missing",
            "--out",
            out.to_str().expect("utf-8"),
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("gbm-missing"), "{stderr}");
    assert!(stderr.contains("models list"), "{stderr}");
    assert!(!out.join("model-card.html").exists());
}

#[test]
fn empty_store_fails() {
    let ws = workspace();
    let output = report_model(&ws.config_path, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("leadscore train"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_model_card_shows_metrics() {
    let env = Env::start(SandboxOptions::default()).await;
    let stored = {
        let store = env.store();
        pipeline::pull(&env.connector(), &store, &env.config)
            .await
            .expect("pull");
        training::train(&store, &env.config, Utc::now()).expect("train");
        store.current_model().expect("read").expect("model stored")
    };
    let auc = stored.report["metrics"]["auc"]
        .as_f64()
        .or_else(|| stored.report["holdout_auc"].as_f64())
        .expect("the report has a holdout AUC");

    let out = env.dir.path().join("card");
    let config_path = env.config_path.clone();
    let out_dir = out.clone();
    let (html, card) = tokio::task::spawn_blocking(move || run_report(&config_path, &out_dir, &[]))
        .await
        .expect("join");

    assert!(html.contains("ROC AUC"));
    // The trainer's report has every chart's data: calibration, lift, gain, tiers, features.
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(html.contains(&format!("{auc:.4}")), "AUC {auc:.4} missing");
    assert!(html.contains(&stored.version));
    assert_eq!(card["model_version"], json!(stored.version));
}

#[test]
fn card_shows_segments_and_excluded_columns() {
    let ws = workspace();
    let mut report = full_report();
    report["checks"]["sufficiency"]["segments"] = json!([
        {"segment": "<ASC>", "examples": 12, "won": 3, "lost": 9, "floor": 30, "missing": 18,
         "message": "segment <ASC> has 12 closed deals"},
        {"segment": "teaching hospital", "examples": 44, "won": 0, "lost": 44, "floor": 30,
         "missing": 0, "message": "segment teaching hospital has no won deal"}
    ]);
    report["checks"]["leakage"] = json!([
        {"feature": "stage", "auc": 0.99, "excluded": true,
         "excluded_columns": ["stage=Negotiation", "stage=<Closed>"]},
        {"feature": "bed_count", "auc": 0.96, "excluded": false}
    ]);
    report["trees_used"] = json!(37);
    save_model(&ws.store_path, "gbm-00000000000000cc", report);
    let out = ws.dir.path().join("card");
    let (html, card) = run_report(&ws.config_path, &out, &[]);

    assert!(html.contains("Segments short of closed deals"), "{html}");
    assert!(html.contains("&lt;ASC&gt;"), "segment name escaped");
    assert!(!html.contains("<ASC>"), "raw markup leaked");
    assert!(
        html.contains("<td class=\"num\">18</td>"),
        "deals still needed"
    );
    assert!(html.contains("teaching hospital has no won deal"));
    assert!(html.contains("stage=Negotiation, stage=&lt;Closed&gt;"));
    assert!(
        html.contains("<td>bed_count</td><td class=\"num\">0.960</td><td>no</td><td>none</td>"),
        "{html}"
    );
    assert!(html.contains("early stopping on the validation slice: 37"));
    assert_eq!(card["trees_used"], json!(37));
    assert_eq!(
        card["checks"]["sufficiency"]["segments"][0]["missing"],
        json!(18)
    );

    // Without shortfalls the card says so instead of an empty table.
    let ws = workspace();
    save_model(&ws.store_path, "gbm-00000000000000aa", full_report());
    let (html, _) = run_report(&ws.config_path, &ws.dir.path().join("card"), &[]);
    assert!(html.contains("No segment shortfall was recorded."));
    assert!(!html.contains("Segments short of closed deals"));
    assert!(!html.contains("early stopping"));
}
