//! Tests of the `leadscore` binary: config errors, mapping errors, secrets kept out of the
//! output, and the sandbox banner.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::Env;
use leadscore_sandbox::SandboxOptions;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// Runs the binary off the async runtime's worker threads, so the in-process sandbox keeps
/// answering while the child process talks to it.
async fn leadscore(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .envs(env)
            .env_remove("RUST_LOG")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn secret_env(env: &Env) -> Vec<(String, String)> {
    let options = env.sandbox.options();
    vec![
        (
            "LEADSCORE_SF_CLIENT_SECRET".into(),
            options.client_secret.clone(),
        ),
        (
            "LEADSCORE_SF_REFRESH_TOKEN".into(),
            options.refresh_token.clone(),
        ),
    ]
}

fn config_arg(path: &Path) -> Vec<String> {
    vec!["-c".into(), path.display().to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_listed_with_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    let example = leadscore::demo::EXAMPLE_CONFIG
        .replace("page_size = 2000", "page_size = 50000")
        .replace("batch_size = 200", "batch_size = 500")
        .replacen("\n[tiers]\n", "\n[tiers]\nsilver = 40\n", 1);
    std::fs::write(&path, &example).expect("write");
    let line_of = |needle: &str| {
        example
            .lines()
            .position(|l| l.starts_with(needle))
            .expect("line")
            + 1
    };

    let mut args = vec!["check".to_string()];
    args.extend(config_arg(&path));
    let output = leadscore(args, vec![]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "bad.toml:{}:13: connector.page_size",
            line_of("page_size")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "bad.toml:{}:14: writeback.batch_size",
            line_of("batch_size")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "bad.toml:{}:1: tiers.silver: unknown key",
            line_of("silver")
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_names_variable() {
    let env = Env::start(SandboxOptions::default()).await;
    let mut args = vec!["check".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, vec![]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LEADSCORE_SF_CLIENT_SECRET"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_fails_before_pulling() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace("field = \"CABG_Discharges__c\"", "field = \"Bed_Count__c\"")
    })
    .await;
    let mut args = vec!["run".to_string(), "--once".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, secret_env(&env)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Bed_Count__c"), "{stderr}");
    assert!(stderr.contains("Account has no field"), "{stderr}");
    let pulled = env
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.path.contains("/query"))
        .count();
    assert_eq!(pulled, 0, "no query may run before the mapping checks out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_loads_history_once_for_all_levels() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace(r#"levels = ["account"]"#, common::ALL_LEVELS)
    })
    .await;
    let mut args = vec!["-vv".to_string(), "run".to_string(), "--once".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, secret_env(&env)).await;
    let logged = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{logged}");
    // Three levels train and score, and all six steps read the history loaded by the first.
    let trained = logged.matches("trained version=").count();
    assert_eq!(trained, 3, "{logged}");
    for line in [r#"loaded records object="Contact""#, "loaded activities"] {
        assert_eq!(logged.matches(line).count(), 1, "{line}: {logged}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_output() {
    let env = Env::start(SandboxOptions::default()).await;
    let mut args = vec!["-vv".to_string(), "run".to_string(), "--once".to_string()];
    args.extend(config_arg(&env.config_path));
    let mut vars = secret_env(&env);
    vars.push(("RUST_LOG".into(), "trace".into()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .envs(vars)
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        all.contains("DEBUG"),
        "debug logging was on, so the check means something"
    );

    let options = env.sandbox.options();
    let mut secrets = vec![options.client_secret.clone(), options.refresh_token.clone()];
    for request in env.handle().request_log() {
        if let Some(header) = request.authorization {
            secrets.push(header.trim_start_matches("Bearer ").to_string());
        }
    }
    assert!(secrets.len() > 2, "access tokens were issued and used");
    for secret in secrets {
        assert!(!all.contains(&secret), "a secret leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_prints_connection_banner() {
    let (mut child, banner) = start_sandbox(&[]).await;
    let url = banner["salesforce_url"].as_str().expect("url").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The HubSpot sandbox answers with the printed private-app token.
    let hubspot = banner["hubspot_url"].as_str().expect("hubspot_url");
    let token = banner["hubspot_token"].as_str().expect("hubspot_token");
    let owners = reqwest::Client::new()
        .get(format!("{hubspot}/crm/v3/owners?limit=1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("HubSpot sandbox answers");
    assert!(owners.status().is_success(), "{}", owners.status());

    let form = [
        ("grant_type", "refresh_token"),
        (
            "client_id",
            banner["client_id"].as_str().expect("client_id"),
        ),
        (
            "client_secret",
            banner["client_secret"].as_str().expect("secret"),
        ),
        (
            "refresh_token",
            banner["refresh_token"].as_str().expect("token"),
        ),
    ];
    let response = reqwest::Client::new()
        .post(format!("{url}/services/oauth2/token"))
        .form(&form)
        .send()
        .await
        .expect("token request");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("json body");
    // Container runtimes and systemd stop it with SIGTERM, which must end it cleanly.
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(exit) = child.try_wait().expect("wait") {
                return Some(exit);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    assert_eq!(body["instance_url"].as_str(), Some(url.as_str()));
    let exit = exit.expect("the sandbox ends within 20 s of SIGTERM");
    assert!(
        exit.success(),
        "SIGTERM should end the sandbox with 0, not {exit}"
    );
}

/// Returns a `leadscore sandbox` command on free ports with `hospitals` hospitals.
fn sandbox_command(hospitals: &str) -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "sandbox",
        "--port",
        "0",
        "--hubspot-port",
        "0",
        "--hospitals",
        hospitals,
    ]);
    command
}

/// Starts `leadscore sandbox` on free ports with `extra` flags and returns it with the JSON
/// banner of its first output line.
async fn start_sandbox(extra: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut child = sandbox_command("20")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("banner line");
        line
    })
    .await
    .expect("join");
    let banner = serde_json::from_str(&line).expect("first line is JSON");
    (child, banner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_withholds_a_hubspot_scope() {
    let (mut child, banner) =
        start_sandbox(&["--hubspot-withhold-scope", "crm.objects.deals.read"]).await;
    let hubspot = banner["hubspot_url"].as_str().expect("hubspot_url");
    let token = banner["hubspot_token"].as_str().expect("hubspot_token");
    let get = |path: &str| {
        reqwest::Client::new()
            .get(format!("{hubspot}{path}"))
            .bearer_auth(token)
            .send()
    };
    let deals = get("/crm/v3/objects/deals?limit=1").await.expect("answers");
    let status = deals.status();
    let body: serde_json::Value = deals.json().await.expect("json body");
    let companies = get("/crm/v3/objects/companies?limit=1")
        .await
        .expect("answers");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["category"], "MISSING_SCOPES", "{body}");
    assert!(
        body.to_string().contains("crm.objects.deals.read"),
        "{body}"
    );
    assert!(companies.status().is_success(), "{}", companies.status());

    // A misspelt scope would withhold nothing, so the sandbox refuses to start.
    let output = sandbox_command("5")
        .args(["--hubspot-withhold-scope", "crm.objects.deal.read"])
        .output()
        .expect("runs");
    let stderr = text(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("\"crm.objects.deal.read\"") && stderr.contains("crm.objects.deals.read"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_case_and_kind_checked() {
    let env = Env::start_with(SandboxOptions::default(), |text| {
        text.replace(
            "field = \"AMI_Discharges__c\"",
            "field = \"ami_discharges__c\"",
        )
        .replace(
            "field = \"BillingState\"\nkind = \"category\"",
            "field = \"BillingState\"\nkind = \"number\"",
        )
    })
    .await;
    let mut args = vec!["check".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, secret_env(&env)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"AMI_Discharges__c\""),
        "the exact API name is suggested: {stderr}"
    );
    assert!(stderr.contains("[features] territory"), "{stderr}");
    assert!(stderr.contains("kind = \"category\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_config_error() {
    let env = Env::start(SandboxOptions::default()).await;
    let mut args = vec!["check".to_string()];
    args.extend(config_arg(&env.config_path));
    let mut vars = secret_env(&env);
    vars[0].1 = "not-the-secret".to_string();
    let output = leadscore(args, vars).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert_eq!(
        stderr.matches("invalid_client").count(),
        1,
        "the rejected login is reported once: {stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_unreachable_url_leaves_store_unbound() {
    let env = Env::start(SandboxOptions::default()).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let good = std::fs::read_to_string(&env.config_path).expect("config read");
    let wrong_path = env.dir.path().join("wrong-url.toml");
    let wrong = good
        .replace(
            &env.sandbox.url(),
            &format!("http://127.0.0.1:{closed_port}"),
        )
        .replace("max_retries = 4", "max_retries = 0");
    assert_ne!(wrong, good, "the sandbox config names the sandbox URL");
    std::fs::write(&wrong_path, wrong).expect("config written");

    let mut args = vec!["pull".to_string()];
    args.extend(config_arg(&wrong_path));
    let output = leadscore(args, secret_env(&env)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("check [connector] login_url"), "{stderr}");

    // After the URL is fixed, the same store takes the pull.
    let mut args = vec!["pull".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, secret_env(&env)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("contains data from"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_error_names_level_once() {
    let env = Env::start(SandboxOptions::default()).await;
    let mut args = vec!["train".to_string()];
    args.extend(config_arg(&env.config_path));
    let output = leadscore(args, secret_env(&env)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: account level: the store has no closed deals"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("account level").count(), 1, "{stderr}");
}

#[test]
fn closed_stdout_ends_without_panic() {
    // A pipe whose only reader, `true`, has exited before leadscore starts, so every write
    // to leadscore's standard output fails with EPIPE however fast leadscore runs.
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("true runs");
    let closed_pipe = reader.stdin.take().expect("stdin is piped");
    assert!(reader.wait().expect("true ends").success());
    let output = Command::new(BIN)
        .args(["init", "--reference"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(closed_pipe))
        .stderr(Stdio::piped())
        .output()
        .expect("the leadscore binary runs");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
