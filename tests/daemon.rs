//! The daemon (`leadscore run` without `--once`) as a real process against an in-process
//! Salesforce sandbox. Covered: scheduled runs that never overlap, `/metrics` and `/healthz`,
//! SIGTERM during a write-back, SIGHUP with a broken file, `status`, and one daemon per store.
//! The fire times of daily and half-hourly jobs are checked across both daylight-saving
//! changes of a year.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use common::Env;
use leadscore::daemon::cron::CronSchedule;
use leadscore::store::{RunOutcome, Store};
use leadscore_sandbox::SandboxOptions;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");
const UPDATE_PATH: &str = "/services/data/v59.0/composite/sobjects";
const QUERY_PATH: &str = "/services/data/v59.0/query";

/// A daemon process whose standard error is collected line by line.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(env: &Env) -> Daemon {
        Daemon::start_with_flags(env, &["-v"])
    }

    /// Starts `leadscore run` with `flags` before `-c`.
    fn start_with_flags(env: &Env, flags: &[&str]) -> Daemon {
        let options = env.sandbox.options();
        let mut child = Command::new(BIN)
            .arg("run")
            .args(flags)
            .arg("-c")
            .arg(&env.config_path)
            .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
            .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the leadscore binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        Daemon { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().expect("log lock").join("\n")
    }

    /// Waits until a log line contains `text` and returns that line.
    fn wait_for_line(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self
                .lines
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l.contains(text))
            {
                return line.clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no log line with {text:?} within {timeout:?}:\n{}",
            self.log()
        );
    }

    /// Waits until `count` log lines contain `text`.
    fn wait_for_count(&self, text: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let seen = || {
            self.lines
                .lock()
                .expect("log lock")
                .iter()
                .filter(|l| l.contains(text))
                .count()
        };
        while seen() < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} log lines with {text:?} within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns the address the daemon logged as `listening on ADDR`.
    fn address(&self) -> String {
        let line = self.wait_for_line("listening on ", Duration::from_secs(20));
        let rest = &line[line.find("listening on ").expect("found") + "listening on ".len()..];
        rest.split_whitespace()
            .next()
            .expect("an address")
            .to_string()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "the daemon did not exit within {timeout:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets `[daemon]` to a free loopback port and UTC, and `[schedule]` to run only
/// `pull_and_score`, on the given schedule.
fn with_schedule(text: String, pull_and_score: &str) -> String {
    let mut text = text;
    for (line, replacement) in [
        (
            r#"listen = "127.0.0.1:9464""#,
            r#"listen = "127.0.0.1:0""#.to_string(),
        ),
        (
            r#"pull_and_score = "*/30 * * * *""#,
            format!("pull_and_score = {pull_and_score:?}"),
        ),
        (
            r#"retrain = "0 3 * * SUN""#,
            r#"retrain = "off""#.to_string(),
        ),
        (
            r#"territory_lists = "0 7 * * MON""#,
            r#"territory_lists = "off""#.to_string(),
        ),
        (
            r#"outcomes_report = "0 6 1 * *""#,
            r#"outcomes_report = "off""#.to_string(),
        ),
    ] {
        assert!(text.contains(line), "the sandbox config lacks {line}");
        text = text.replace(line, &replacement);
    }
    text
}

async fn add_fault(env: &Env, fault: serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/__sandbox/faults", env.sandbox.url()))
        .json(&fault)
        .send()
        .await
        .expect("fault request sent");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn clear_faults(env: &Env) {
    let response = reqwest::Client::new()
        .delete(format!("{}/__sandbox/faults", env.sandbox.url()))
        .send()
        .await
        .expect("fault request sent");
    assert!(response.status().is_success(), "{}", response.status());
}

/// Parses Prometheus text format: every sample line is `name{labels} value` with a float
/// value, and `# TYPE` lines name a known type. Returns the samples by name and labels.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let name_ok = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(parts.len(), 2, "TYPE line {line:?} needs a name and a type");
            assert!(name_ok(parts[0]), "bad metric name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&parts[1]),
                "unknown type in {line:?}"
            );
            continue;
        }
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP "),
                "comment {line:?} is neither HELP nor TYPE"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample {line:?} has no value"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} is not a float"));
        let name = series.split('{').next().expect("a name");
        assert!(name_ok(name), "bad metric name in {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "labels of {line:?} are not in braces"
                );
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (key, quoted) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label {pair:?} in {line:?} has no ="));
                    assert!(name_ok(key), "bad label name {key:?} in {line:?}");
                    assert!(
                        quoted.starts_with('"'),
                        "label value in {line:?} is unquoted"
                    );
                }
            }
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Sums the samples of a metric over its label sets.
fn metric_sum(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_repeat_without_overlap() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        with_schedule(text, "*/2 * * * * *")
    })
    .await;
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env));
    let address = tokio::task::block_in_place(|| daemon.address());
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(
        !address.ends_with(":0"),
        "the real port is logged: {address}"
    );

    let (status, body) = get(&format!("http://{address}/healthz")).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\""), "{body}");

    // Wait for the first run to finish: pull, train, score and push.
    tokio::task::block_in_place(|| {
        daemon.wait_for_line("job finished", Duration::from_secs(60));
    });
    // The next query responds after 4 seconds, so the run it belongs to overruns the 2-second
    // schedule.
    add_fault(
        &env,
        serde_json::json!({ "path": QUERY_PATH, "nth": 1, "count": 1, "delay_ms": 4000 }),
    )
    .await;
    let (status, text) = get(&format!("http://{address}/metrics")).await;
    assert_eq!(status, 200);
    let samples = parse_prometheus(&text);
    assert!(
        metric_sum(&samples, "leadscore_records_pulled_total") > 0.0,
        "{text}"
    );
    assert!(
        metric_sum(&samples, "leadscore_job_last_run_timestamp_seconds") > 0.0,
        "{text}"
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("leadscore_model_info{")),
        "{text}"
    );

    tokio::task::block_in_place(|| {
        daemon.wait_for_line("overran", Duration::from_secs(20));
        // Let the slow run and the start that waited for it finish.
        daemon.wait_for_count("job finished", 3, Duration::from_secs(30));
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    });

    let store = Store::open(&env.config.store_path).expect("store opens");
    let mut runs = store.job_runs(100).expect("runs read");
    runs.reverse();
    assert!(runs.len() >= 3, "expected several runs, got {runs:?}");
    for pair in runs.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "runs overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(runs.iter().all(|r| r.job == "pull_and_score"));
    assert_eq!(runs[0].outcome, RunOutcome::Ok, "{:?}", runs[0]);
    assert!(runs[0].counts.get("pulled").copied().unwrap_or(0) > 0);
    drop(store);

    let options = env.sandbox.options();
    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["status", "--json", "-c"])
            .arg(&env.config_path)
            .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
            .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
            .output()
            .expect("status runs")
    });
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("status prints JSON");
    let job = status["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["job"] == "pull_and_score")
        .expect("pull_and_score listed");
    assert_eq!(job["schedule"], "*/2 * * * * *");
    assert!(job["last_run"]["outcome"].is_string(), "{job}");
    assert!(status["models"][0]["version"].is_string(), "{status}");

    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["status", "-c"])
            .arg(&env.config_path)
            .output()
            .expect("status runs")
    });
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pull_and_score"), "{text}");
    assert!(text.contains("last run"), "{text}");
    assert!(text.contains("holdout AUC"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_push_loses_nothing() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        with_schedule(
            text.replace("batch_size = 200", "batch_size = 5"),
            "* * * * * *",
        )
    })
    .await;
    {
        let store = env.store();
        let connector = env.connector();
        leadscore::pipeline::pull(&connector, &store, &env.config)
            .await
            .expect("pull");
        leadscore::training::train(&store, &env.config, Utc::now()).expect("train");
    }
    // Every write batch responds after 300 ms, so the push is still going at SIGTERM.
    add_fault(
        &env,
        serde_json::json!({ "method": "PATCH", "path": UPDATE_PATH, "count": 1_000_000, "delay_ms": 300 }),
    )
    .await;
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env));
    let handle = env.handle();
    let updates = || {
        handle
            .request_log()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == UPDATE_PATH)
            .count()
    };
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while updates() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(updates() >= 3, "the push never started:\n{}", daemon.log());
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    });
    let sent_before = updates();

    let store = env.store();
    assert!(store.journal().expect("journal").is_empty());
    let scores = store.scores().expect("scores");
    let written = store.written().expect("written values");
    assert!(
        written.len() < scores.len(),
        "the push finished before SIGTERM ({} of {})",
        written.len(),
        scores.len()
    );
    let runs = store.job_runs(10).expect("runs");
    assert_eq!(runs[0].outcome, RunOutcome::Stopped, "{runs:?}");
    drop(store);

    clear_faults(&env).await;
    let options = env.sandbox.options();
    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["push", "-c"])
            .arg(&env.config_path)
            .env("LEADSCORE_SF_CLIENT_SECRET", &options.client_secret)
            .env("LEADSCORE_SF_REFRESH_TOKEN", &options.refresh_token)
            .output()
            .expect("push runs")
    });
    assert!(output.status.success(), "{output:?}");
    assert!(updates() > sent_before, "the second push wrote nothing");

    // Every scored account was sent in exactly one write request and now has its score in the CRM.
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for request in handle
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == UPDATE_PATH)
    {
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
        let records = body["records"]
            .as_array()
            .unwrap_or_else(|| panic!("no records in {}", request.body));
        for record in records {
            let id = record["id"].as_str().expect("id").to_string();
            *sent.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<&String> = sent
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    for row in &scores {
        assert_eq!(sent.get(&row.id), Some(&1), "{} never written", row.id);
        let record = handle.record("Account", &row.id).expect("account exists");
        assert_eq!(
            record["LS_Score__c"].as_f64(),
            Some(row.score),
            "{}",
            row.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_broken_config_keeps_running() {
    let env = Env::start_with(SandboxOptions::default(), |text| with_schedule(text, "off")).await;
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env));
    let address = tokio::task::block_in_place(|| daemon.address());
    let good = std::fs::read_to_string(&env.config_path).expect("config read");
    std::fs::write(
        &env.config_path,
        good.replace(
            "pull_and_score = \"off\"",
            "pull_and_score = \"every hour\"",
        ),
    )
    .expect("config written");
    tokio::task::block_in_place(|| {
        daemon.signal("HUP");
        let line = daemon.wait_for_line("SIGHUP", Duration::from_secs(10));
        assert!(line.contains("keeps the one it runs with"), "{line}");
        daemon.wait_for_line("schedule.pull_and_score", Duration::from_secs(5));
    });
    let (status, _) = get(&format!("http://{address}/healthz")).await;
    assert_eq!(status, 200, "the daemon stopped serving after a bad reload");

    std::fs::write(&env.config_path, &good).expect("config written");
    tokio::task::block_in_place(|| {
        daemon.signal("HUP");
        daemon.wait_for_line("configuration reloaded", Duration::from_secs(10));
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_one_store_refuses_to_start() {
    let env = Env::start_with(SandboxOptions::default(), |text| with_schedule(text, "off")).await;
    let mut first = tokio::task::block_in_place(|| Daemon::start(&env));
    tokio::task::block_in_place(|| {
        first.address();
        let mut second = Daemon::start(&env);
        let code = second.wait_exit(Duration::from_secs(20));
        assert_ne!(code, Some(0), "the second daemon ran: {}", second.log());
        assert!(code.is_some(), "the second daemon is still running");
        let log = second.log();
        assert!(
            log.contains("another leadscore daemon is running on the store")
                && log.contains("daemon.lock"),
            "{log}"
        );

        // One-off commands still read the store while the daemon waits between jobs.
        let status = Command::new(BIN)
            .args(["status", "-c"])
            .arg(&env.config_path)
            .output()
            .expect("status runs");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );

        first.signal("TERM");
        assert_eq!(first.wait_exit(Duration::from_secs(20)), Some(0));
        // The lock ends with the daemon that held it.
        let mut third = Daemon::start(&env);
        third.address();
        third.signal("TERM");
        assert_eq!(third.wait_exit(Duration::from_secs(20)), Some(0));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_log_shows_start_and_stop() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        with_schedule(text, "0 0 3 * * *")
    })
    .await;
    let mut daemon = tokio::task::block_in_place(|| Daemon::start_with_flags(&env, &[]));
    tokio::task::block_in_place(|| {
        daemon.address();
        let first = daemon.wait_for_line("first run scheduled", Duration::from_secs(10));
        assert!(
            first.contains("pull_and_score") && first.contains("03:00:00"),
            "the first fire time is logged with its job: {first}"
        );
        daemon.wait_for_line("job is off", Duration::from_secs(5));
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
        daemon.wait_for_line("SIGTERM received", Duration::from_secs(5));
        daemon.wait_for_line("stopped", Duration::from_secs(5));
    });
    let log = daemon.log();
    assert!(
        !log.contains("tokio_cron_scheduler"),
        "other crates stay at warn without -v:\n{log}"
    );
}

#[test]
fn bad_schedule_names_key_and_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leadscore.toml");
    let text = leadscore::demo::sandbox_config("http://127.0.0.1:1", "store");
    let text = text
        .replace(r#"time_zone = "UTC""#, r#"time_zone = "Mars/Olympus""#)
        .replace(r#"retrain = "0 3 * * SUN""#, r#"retrain = "0 25 * * *""#);
    std::fs::write(&path, text).expect("config written");
    let err = leadscore::config::Config::load(&path)
        .expect_err("invalid")
        .to_string();
    assert!(err.contains("schedule.retrain"), "{err}");
    assert!(err.contains("0 25 * * *"), "{err}");
    assert!(err.contains("example: retrain = "), "{err}");
    assert!(err.contains("daemon.time_zone"), "{err}");
    assert!(err.contains("Mars/Olympus"), "{err}");
}

#[test]
fn never_firing_schedule_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leadscore.toml");
    let text = leadscore::demo::sandbox_config("http://127.0.0.1:1", "store")
        .replace(r#"retrain = "0 3 * * SUN""#, r#"retrain = "0 3 31 2 *""#);
    std::fs::write(&path, text).expect("config written");
    let err = leadscore::config::Config::load(&path)
        .expect_err("invalid")
        .to_string();
    assert!(err.contains("schedule.retrain"), "{err}");
    assert!(err.contains("never fires"), "{err}");
}

/// Collects the fire times of `expression` in `zone` over the year 2026.
fn fire_times(expression: &str, zone: chrono_tz::Tz) -> Vec<DateTime<chrono_tz::Tz>> {
    let schedule = CronSchedule::parse(expression).expect("valid expression");
    let start = Utc.with_ymd_and_hms(2025, 12, 31, 12, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 12, 0, 0).unwrap();
    let mut times = Vec::new();
    let mut at = start;
    while let Some(next) = schedule.next_after(at, zone) {
        if next >= end {
            break;
        }
        assert!(next > at, "fire times must increase");
        times.push(next.with_timezone(&zone));
        at = next;
    }
    times
}

#[test]
fn daily_jobs_across_dst_changes() {
    let zone = chrono_tz::America::New_York;
    // 2026: clocks skip 02:00-03:00 on 8 March and repeat 01:00-02:00 on 1 November.
    let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
    let autumn = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let days_2026: BTreeSet<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .iter_days()
        .take_while(|d| d.year() == 2026)
        .collect();
    assert_eq!(days_2026.len(), 365);

    for (expression, hour, minute) in [
        ("30 2 * * *", 2, 30),
        ("30 1 * * *", 1, 30),
        ("0 9 * * *", 9, 0),
    ] {
        let times = fire_times(expression, zone);
        let in_2026: Vec<&DateTime<chrono_tz::Tz>> = times
            .iter()
            .filter(|t| t.date_naive().year() == 2026)
            .collect();
        let days: BTreeSet<NaiveDate> = in_2026.iter().map(|t| t.date_naive()).collect();
        assert_eq!(
            in_2026.len(),
            365,
            "{expression}: one run per day, none doubled"
        );
        assert_eq!(days, days_2026, "{expression}: no day skipped");
        for time in &in_2026 {
            let expected = if hour == 2 && time.date_naive() == spring {
                // 02:30 does not exist that night: the run is at 03:00 EDT, the end of the gap.
                NaiveTime::from_hms_opt(3, 0, 0).unwrap()
            } else {
                NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
            };
            assert_eq!(
                time.time(),
                expected,
                "{expression} on {}",
                time.date_naive()
            );
        }
    }

    // 01:30 happens twice on 1 November; the run is at the first one, 05:30 UTC (EDT).
    let times = fire_times("30 1 * * *", zone);
    let autumn_run = times
        .iter()
        .find(|t| t.date_naive() == autumn)
        .expect("a run on the fall-back day");
    assert_eq!(
        autumn_run.with_timezone(&Utc),
        Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap()
    );
    // 09:00 local is 14:00 UTC in winter and 13:00 UTC in summer.
    let times = fire_times("0 9 * * *", zone);
    let utc_hour = |day: NaiveDate| {
        times
            .iter()
            .find(|t| t.date_naive() == day)
            .map(|t| chrono::Timelike::hour(&t.with_timezone(&Utc)))
    };
    assert_eq!(
        utc_hour(NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()),
        Some(14)
    );
    assert_eq!(utc_hour(spring), Some(13));
    assert_eq!(
        utc_hour(NaiveDate::from_ymd_opt(2026, 10, 31).unwrap()),
        Some(13)
    );
    assert_eq!(utc_hour(autumn), Some(14));
}

#[test]
fn half_hourly_job_across_dst_changes() {
    let zone = chrono_tz::America::New_York;
    let times = fire_times("*/30 * * * *", zone);
    // Consecutive runs are 30 minutes apart except around the changes: the spring gap has
    // no local times to run at, and the repeated autumn hour runs once.
    for pair in times.windows(2) {
        let gap = pair[1].with_timezone(&Utc) - pair[0].with_timezone(&Utc);
        let allowed = gap == chrono::Duration::minutes(30)
            || (gap == chrono::Duration::minutes(90) && pair[0].date_naive().month0() == 10);
        assert!(allowed, "{} to {} is {gap}", pair[0], pair[1]);
    }
}
