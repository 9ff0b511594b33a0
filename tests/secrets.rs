//! Secret scan: full cycles of the real binary at trace level against both sandboxes, plus
//! failing runs, then a search for every secret in the output, the files the runs wrote and
//! the store's bytes on disk.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::Env;
use leadscore::demo::hubspot_sandbox_config;
use leadscore_demo_org::DemoOptions;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, LoggedRequest, SandboxOptions};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

const SF_CLIENT_SECRET: &str = "sfClientSecret-7f3kQ9vXw2";
const SF_REFRESH_TOKEN: &str = "5AepSfRefresh-Jd81LmPq0z";
const HS_PRIVATE_APP_TOKEN: &str = "pat-na1-hsPrivate-Rt55Ycv3";
const HS_CLIENT_SECRET: &str = "hsClientSecret-Vb92NzLa4u";
const HS_REFRESH_TOKEN: &str = "hsRefresh-Gg60QwXe1o";
const WEBHOOK_SECRET: &str = "hookSigningKey-Pp14KsUy8t";
/// A token in the webhook URL's query string, which must never be printed.
const WEBHOOK_QUERY_TOKEN: &str = "hookQueryToken-Ml27HdRc5s";
/// Wrong values sent on purpose in the failing runs. They must not be echoed either.
const WRONG_CLIENT_SECRET: &str = "wrongClientSecret-Xc03TbNf6y";
const WRONG_REFRESH_TOKEN: &str = "wrongRefresh-Aq48WsEd2r";
const WRONG_PRIVATE_APP_TOKEN: &str = "pat-na1-wrongPrivate-Kj39Oi";

/// Everything the runs printed, with the command line of each run for failure messages.
#[derive(Default)]
struct Transcript {
    runs: Vec<(String, String)>,
}

impl Transcript {
    /// Runs the binary at trace level and records its stdout and stderr.
    async fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BIN);
        command.arg("-vv").args(args).env("RUST_LOG", "trace");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = tokio::task::spawn_blocking(move || command.output().expect("binary runs"))
            .await
            .expect("join");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.runs.push((args.join(" "), text));
        output
    }

    /// Runs a command that must succeed.
    async fn ok(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let output = self.run(args, env).await;
        let (line, text) = self.runs.last().expect("recorded");
        assert_eq!(output.status.code(), Some(0), "leadscore {line}:\n{text}");
    }

    /// Runs a command that must fail, and returns its output.
    async fn fails(&mut self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self.run(args, env).await;
        let (line, text) = self.runs.last().expect("recorded");
        assert_ne!(output.status.code(), Some(0), "leadscore {line}:\n{text}");
        text.clone()
    }
}

/// Starts a loopback webhook receiver that responds with 200 and counts the posts.
async fn webhook_receiver() -> (String, Arc<Mutex<usize>>) {
    let posts = Arc::new(Mutex::new(0usize));
    let app = Router::new().route(
        "/hook",
        post({
            let posts = posts.clone();
            move |_body: Bytes| {
                let posts = posts.clone();
                async move {
                    *posts.lock().unwrap() += 1;
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("receiver binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (
        format!("http://{address}/hook?token={WEBHOOK_QUERY_TOKEN}"),
        posts,
    )
}

/// Returns a webhook URL, query token included, on a loopback port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("binds");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}/hook?token={WEBHOOK_QUERY_TOKEN}")
}

/// Turns on tier alerts from the first pass, the territory list webhook and `[webhook]`.
fn with_alerts_and_webhook(text: String, webhook_url: &str) -> String {
    let text = text
        .replacen(
            "engagement in the features.\nenabled = false",
            "engagement in the features.\nenabled = true\ninto_tiers = [\"A\"]",
            1,
        )
        .replacen("quiet_first_run = true", "quiet_first_run = false", 1)
        .replacen("\nwebhook = false\n", "\nwebhook = true\n", 1);
    assert!(text.contains("into_tiers = [\"A\"]"), "alerts turned on");
    assert!(
        text.contains("\nwebhook = true\n"),
        "list webhook turned on"
    );
    format!("{text}\n[webhook]\nurl = {webhook_url:?}\nsecret_env = \"LEADSCORE_WEBHOOK_SECRET\"\n")
}

/// Returns every `Authorization` header value the sandbox saw, and the bearer tokens in them.
fn authorization_values(log: &[LoggedRequest]) -> Vec<String> {
    let mut values = Vec::new();
    for request in log {
        if let Some(header) = &request.authorization {
            values.push(header.clone());
            if let Some(token) = header.strip_prefix("Bearer ") {
                values.push(token.to_string());
                // A Salesforce access token is `<org id>!<secret part>`.
                if let Some((_, secret_part)) = token.split_once('!') {
                    values.push(secret_part.to_string());
                }
            }
        }
    }
    values.sort();
    values.dedup();
    values
}

/// Lists every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("folder readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Returns one line per place a secret occurs: in a run's output or in a file's bytes.
fn find_leaks(
    secrets: &[String],
    transcript: &Transcript,
    files: &[PathBuf],
    skip: &[&Path],
) -> Vec<String> {
    let mut leaks = Vec::new();
    for secret in secrets {
        for (line, text) in &transcript.runs {
            if text.contains(secret.as_str()) {
                leaks.push(format!("output of `leadscore {line}` contains {secret:?}"));
            }
        }
        for file in files {
            if skip.contains(&file.as_path()) {
                continue;
            }
            let bytes = std::fs::read(file).expect("file readable");
            let needle = secret.as_bytes();
            if bytes.windows(needle.len()).any(|window| window == needle) {
                leaks.push(format!("{} contains {secret:?}", file.display()));
            }
        }
    }
    leaks
}

/// Checks that the scanner finds a planted secret in output and in a file, so a clean scan
/// means something.
fn assert_scanner_finds_planted(dir: &Path) {
    let planted = "plantedSecret-Hh72Lk".to_string();
    let mut transcript = Transcript::default();
    transcript
        .runs
        .push(("planted".into(), format!("DEBUG token={planted}")));
    let leaks = find_leaks(std::slice::from_ref(&planted), &transcript, &[], &[]);
    assert_eq!(leaks.len(), 1, "the scanner finds a secret in output");

    let file = dir.join("planted.bin");
    std::fs::write(&file, format!("\0\0{planted}\0")).expect("planted file written");
    let leaks = find_leaks(
        std::slice::from_ref(&planted),
        &Transcript::default(),
        std::slice::from_ref(&file),
        &[],
    );
    std::fs::remove_file(&file).expect("planted file removed");
    assert_eq!(leaks.len(), 1, "the scanner finds a secret in a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_cycle_leaks_no_secret() {
    let (webhook_url, posts) = webhook_receiver().await;
    let options = SandboxOptions {
        client_secret: SF_CLIENT_SECRET.to_string(),
        refresh_token: SF_REFRESH_TOKEN.to_string(),
        ..SandboxOptions::default()
    };
    let env = Env::start_with(options, |text| with_alerts_and_webhook(text, &webhook_url)).await;
    assert_scanner_finds_planted(env.dir.path());
    let config = env.config_path.display().to_string();
    let out = env.dir.path().join("card").display().to_string();
    let good = [
        ("LEADSCORE_SF_CLIENT_SECRET", SF_CLIENT_SECRET),
        ("LEADSCORE_SF_REFRESH_TOKEN", SF_REFRESH_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];

    let mut transcript = Transcript::default();
    transcript.ok(&["check", "-c", &config], &good).await;
    transcript.ok(&["pull", "-c", &config], &good).await;
    transcript.ok(&["train", "-c", &config], &good).await;
    transcript.ok(&["score", "-c", &config], &good).await;
    transcript.ok(&["push", "-c", &config], &good).await;
    env.handle().expire_access_tokens();
    transcript
        .ok(&["run", "--once", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "lists", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "outcomes", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "model", "-c", &config, "--out", &out], &good)
        .await;
    transcript
        .ok(&["models", "list", "-c", &config], &good)
        .await;
    transcript.ok(&["status", "-c", &config], &good).await;

    let wrong_secret = [
        ("LEADSCORE_SF_CLIENT_SECRET", WRONG_CLIENT_SECRET),
        ("LEADSCORE_SF_REFRESH_TOKEN", SF_REFRESH_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let text = transcript
        .fails(&["check", "-c", &config], &wrong_secret)
        .await;
    assert!(text.contains("invalid_client"), "{text}");
    let refused_refresh = [
        ("LEADSCORE_SF_CLIENT_SECRET", SF_CLIENT_SECRET),
        ("LEADSCORE_SF_REFRESH_TOKEN", WRONG_REFRESH_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let text = transcript
        .fails(&["pull", "-c", &config], &refused_refresh)
        .await;
    assert!(text.contains("invalid_grant"), "{text}");

    // A webhook that refuses connections prints the failure, URL included.
    let unreachable_path = env.dir.path().join("unreachable-webhook.toml");
    let unreachable = std::fs::read_to_string(&env.config_path)
        .expect("config readable")
        .replace(&webhook_url, &closed_port_url().await)
        .replace("\n[webhook]\nurl", "\n[webhook]\nmax_attempts = 1\nurl");
    std::fs::write(&unreachable_path, unreachable).expect("config written");
    let unreachable_config = unreachable_path.display().to_string();
    transcript
        .run(&["report", "lists", "-c", &unreachable_config], &good)
        .await;
    let (_, text) = transcript.runs.last().expect("recorded");
    assert!(
        text.contains("/hook"),
        "the webhook failure is printed:\n{text}"
    );

    let all_output: String = transcript
        .runs
        .iter()
        .map(|(_, text)| text.as_str())
        .collect();
    assert!(all_output.contains("TRACE"), "trace logging was on");
    assert!(*posts.lock().unwrap() > 0, "the webhook received posts");
    let authorizations = authorization_values(&env.handle().request_log());
    assert!(
        authorizations.len() >= 4,
        "two access tokens were issued and used: {}",
        authorizations.len()
    );

    let mut secrets: Vec<String> = [
        SF_CLIENT_SECRET,
        SF_REFRESH_TOKEN,
        WEBHOOK_SECRET,
        WEBHOOK_QUERY_TOKEN,
        WRONG_CLIENT_SECRET,
        WRONG_REFRESH_TOKEN,
    ]
    .map(String::from)
    .to_vec();
    secrets.extend(authorizations);
    let files = files_under(env.dir.path());
    assert!(
        files.iter().any(|f| f.starts_with(&env.config.store_path)),
        "the store is on disk"
    );
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "html")),
        "reports were written"
    );
    // The config file names the webhook URL with its query token, which is the operator's
    // own input.
    let leaks = find_leaks(
        &secrets,
        &transcript,
        &files,
        &[&env.config_path, &unreachable_path],
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_cycle_leaks_no_secret() {
    let (webhook_url, posts) = webhook_receiver().await;
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        private_app_token: HS_PRIVATE_APP_TOKEN.to_string(),
        client_secret: HS_CLIENT_SECRET.to_string(),
        refresh_token: HS_REFRESH_TOKEN.to_string(),
        private_app_ten_second_limit: 100_000,
        oauth_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    };
    let client_id = options.client_id.clone();
    let sandbox = HubSpotSandbox::new(org.records, options)
        .expect("HubSpot sandbox accepts the demo org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens on loopback");
    let dir = tempfile::tempdir().expect("temp dir");
    assert_scanner_finds_planted(dir.path());
    let store = dir.path().join("store");
    let base = hubspot_sandbox_config(&sandbox.url(), &store.display().to_string())
        .replace("min_examples = 200", "min_examples = 30")
        .replace("min_minority = 40", "min_minority = 10");
    let private_app = with_alerts_and_webhook(base, &webhook_url);
    let oauth = private_app.replacen(
        "token_env = \"LEADSCORE_HUBSPOT_TOKEN\"",
        &format!(
            "client_id = {client_id:?}\nclient_secret_env = \"LEADSCORE_HUBSPOT_CLIENT_SECRET\"\n\
             refresh_token_env = \"LEADSCORE_HUBSPOT_REFRESH_TOKEN\"\n\
             token_url = \"{}/oauth/v1/token\"",
            sandbox.url()
        ),
        1,
    );
    assert!(oauth.contains("client_secret_env"), "OAuth config written");
    let private_path = dir.path().join("private-app.toml");
    let oauth_path = dir.path().join("oauth.toml");
    std::fs::write(&private_path, &private_app).expect("config written");
    std::fs::write(&oauth_path, &oauth).expect("config written");
    let private_config = private_path.display().to_string();
    let config = oauth_path.display().to_string();
    let out = dir.path().join("card").display().to_string();
    let private_env = [
        ("LEADSCORE_HUBSPOT_TOKEN", HS_PRIVATE_APP_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let good = [
        ("LEADSCORE_HUBSPOT_CLIENT_SECRET", HS_CLIENT_SECRET),
        ("LEADSCORE_HUBSPOT_REFRESH_TOKEN", HS_REFRESH_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];

    let mut transcript = Transcript::default();
    transcript
        .ok(&["check", "--fix", "-c", &private_config], &private_env)
        .await;
    transcript
        .ok(&["pull", "-c", &private_config], &private_env)
        .await;
    transcript.ok(&["check", "-c", &config], &good).await;
    transcript.ok(&["pull", "-c", &config], &good).await;
    transcript.ok(&["train", "-c", &config], &good).await;
    transcript.ok(&["score", "-c", &config], &good).await;
    transcript.ok(&["push", "-c", &config], &good).await;
    sandbox.handle().expire_access_tokens();
    transcript
        .ok(&["run", "--once", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "lists", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "outcomes", "-c", &config], &good)
        .await;
    transcript
        .ok(&["report", "model", "-c", &config, "--out", &out], &good)
        .await;
    transcript.ok(&["status", "-c", &config], &good).await;

    let wrong_token = [
        ("LEADSCORE_HUBSPOT_TOKEN", WRONG_PRIVATE_APP_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let text = transcript
        .fails(&["check", "-c", &private_config], &wrong_token)
        .await;
    assert!(text.contains("401"), "{text}");
    let wrong_secret = [
        ("LEADSCORE_HUBSPOT_CLIENT_SECRET", WRONG_CLIENT_SECRET),
        ("LEADSCORE_HUBSPOT_REFRESH_TOKEN", HS_REFRESH_TOKEN),
        ("LEADSCORE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    transcript
        .fails(&["check", "-c", &config], &wrong_secret)
        .await;
    sandbox.handle().revoke_refresh_token();
    transcript.fails(&["pull", "-c", &config], &good).await;

    let all_output: String = transcript
        .runs
        .iter()
        .map(|(_, text)| text.as_str())
        .collect();
    assert!(all_output.contains("TRACE"), "trace logging was on");
    assert!(*posts.lock().unwrap() > 0, "the webhook received posts");
    let authorizations = authorization_values(&sandbox.handle().request_log());
    assert!(
        authorizations.len() >= 6,
        "the private app token and two access tokens were used: {}",
        authorizations.len()
    );

    let mut secrets: Vec<String> = [
        HS_PRIVATE_APP_TOKEN,
        HS_CLIENT_SECRET,
        HS_REFRESH_TOKEN,
        WEBHOOK_SECRET,
        WEBHOOK_QUERY_TOKEN,
        WRONG_CLIENT_SECRET,
        WRONG_PRIVATE_APP_TOKEN,
    ]
    .map(String::from)
    .to_vec();
    secrets.extend(authorizations);
    let files = files_under(dir.path());
    assert!(
        files.iter().any(|f| f.starts_with(&store)),
        "the store is on disk"
    );
    let leaks = find_leaks(&secrets, &transcript, &files, &[&private_path, &oauth_path]);
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
