//! Tests of `leadscore check --offline`: the config file, secrets, files and folders are
//! validated with no CRM running and no network connection made.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

const SECRET_VARIABLES: [&str; 2] = ["LEADSCORE_SF_CLIENT_SECRET", "LEADSCORE_SF_REFRESH_TOKEN"];

/// Runs `leadscore check --offline -c path` with the given variables and no others of
/// leadscore's.
fn check_offline(path: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["check", "--offline", "-c"])
        .arg(path)
        .args(extra)
        .env_remove("RUST_LOG");
    for name in SECRET_VARIABLES {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .output()
        .expect("the leadscore binary runs")
}

fn dummy_secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LEADSCORE_SF_CLIENT_SECRET", "dummy-client-secret"),
        ("LEADSCORE_SF_REFRESH_TOKEN", "dummy-refresh-token"),
    ]
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes the `init --sandbox` config into `dir` with its login URL at `login_url`, after
/// applying `edit` to the text.
fn write_config(
    dir: &Path,
    login_url: &str,
    edit: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let text = leadscore::demo::sandbox_config(login_url, "leadscore-data");
    let path = dir.join("leadscore.toml");
    std::fs::write(&path, edit(text)).expect("write the config");
    path
}

#[test]
fn good_config_passes_without_network() {
    // The config's login URL is a listener that nothing may connect to.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), &url, |text| text);

    let output = check_offline(&path, &dummy_secrets(), &[]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("is valid"), "stdout: {stdout}");
    match listener.accept() {
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock),
        Ok((_, peer)) => panic!("check --offline connected to the CRM address from {peer}"),
    }
    assert!(
        !dir.path().join("leadscore-data").exists(),
        "check --offline must not create the store"
    );
}

#[test]
fn missing_secrets_all_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);

    let output = check_offline(&path, &[], &[]);

    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("2 problems"), "stderr: {message}");
    for name in SECRET_VARIABLES {
        assert!(message.contains(name), "{name} not named in: {message}");
    }
}

#[test]
fn blank_secret_is_a_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);
    let env = [
        ("LEADSCORE_SF_CLIENT_SECRET", "  "),
        ("LEADSCORE_SF_REFRESH_TOKEN", "dummy-refresh-token"),
    ];

    let output = check_offline(&path, &env, &[]);

    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("LEADSCORE_SF_CLIENT_SECRET (the Salesforce client secret) is empty"),
        "stderr: {message}"
    );
    assert!(
        !message.contains("LEADSCORE_SF_REFRESH_TOKEN"),
        "stderr: {message}"
    );
}

#[test]
fn bad_keys_named_with_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| {
        text.replace("page_size = 2000", "page_size = 50000")
            .replace("batch_size = 200", "batch_size = \"many\"")
    });

    let output = check_offline(&path, &dummy_secrets(), &[]);

    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("connector.page_size"), "stderr: {message}");
    assert!(
        message.contains("writeback.batch_size"),
        "stderr: {message}"
    );
    assert!(message.contains("2 problems"), "stderr: {message}");
}

#[test]
fn unreadable_files_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("proxy-ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| {
        let text = text.replace(
            "# ca_file = \"/etc/ssl/certs/corporate-proxy.pem\"",
            "ca_file = \"proxy-ca.pem\"",
        );
        format!(
            "{text}\n[[enrichment]]\nname = \"physicians\"\nobject = \"account\"\n\
             file = \"missing/physicians.csv\"\n\
             key = {{ field = \"BillingState\", column = \"state\" }}\ncolumns = [\"physicians\"]\n"
        )
    });

    let output = check_offline(&path, &dummy_secrets(), &[]);

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert!(
        message.contains("[connector] ca_file") && message.contains("proxy-ca.pem"),
        "stderr: {message}"
    );
    assert!(
        message.contains("missing/physicians.csv"),
        "stderr: {message}"
    );
}

#[test]
fn store_path_that_is_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("leadscore-data"), "").expect("write");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);

    let output = check_offline(&path, &dummy_secrets(), &[]);

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert!(message.contains("[store] path"), "stderr: {message}");
    assert!(message.contains("is a file"), "stderr: {message}");
}

#[test]
fn store_path_foreign_folder() {
    // A start rejects a store folder that contains other files and no store, so the
    // offline check must report it too.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("leadscore-data");
    std::fs::create_dir(&store).expect("create the folder");
    std::fs::write(store.join("notes.txt"), "unrelated").expect("write");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);

    let output = check_offline(&path, &dummy_secrets(), &[]);

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert!(message.contains("[store] path"), "stderr: {message}");
    assert!(message.contains("notes.txt"), "stderr: {message}");
    assert!(
        message.contains("not a leadscore store"),
        "stderr: {message}"
    );
}

#[test]
fn refresh_token_file_replaces_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("refresh-token"), "token-from-file\n").expect("write");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| {
        text.replace(
            "# refresh_token_file = \"/var/lib/leadscore/refresh-token\"",
            "refresh_token_file = \"refresh-token\"",
        )
    });
    let env = [("LEADSCORE_SF_CLIENT_SECRET", "dummy-client-secret")];

    let output = check_offline(&path, &env, &[]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
}

#[test]
fn json_lists_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);
    let env = [("LEADSCORE_SF_CLIENT_SECRET", "dummy-client-secret")];

    let output = check_offline(&path, &env, &["--json"]);

    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    let problems = report["problems"].as_array().expect("problems array");
    assert_eq!(problems.len(), 1, "problems: {problems:?}");
    let problem = problems[0].as_str().expect("text");
    assert!(problem.contains("LEADSCORE_SF_REFRESH_TOKEN"), "{problem}");
    assert_eq!(report["connectors"][0], "salesforce");
}

#[test]
fn json_reports_a_file_that_does_not_parse() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| {
        format!("{text}\n[no_such_table]\nkey = 1\n")
    });

    let output = check_offline(&path, &dummy_secrets(), &["--json"]);

    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    let problems = report["problems"].as_array().expect("problems array");
    assert_eq!(problems.len(), 1, "problems: {problems:?}");
    assert!(
        problems[0]
            .as_str()
            .expect("text")
            .contains("no_such_table"),
        "{problems:?}"
    );
    assert_eq!(report["connectors"], serde_json::json!([]));
}

#[test]
fn offline_rejects_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), "http://127.0.0.1:9", |text| text);

    let output = check_offline(&path, &dummy_secrets(), &["--fix"]);

    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--fix"),
        "stderr: {}",
        stderr(&output)
    );
}
