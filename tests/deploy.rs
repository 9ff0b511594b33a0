//! Tests of the files under deploy/: the Dockerfile, the systemd unit, the compose trial and
//! the Kubernetes manifest are parsed, every leadscore command line in them is run against
//! the built binary, and the configs they carry pass `leadscore check --offline`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");

/// Where the images and the unit keep the store; the configs they carry point there.
const STATE_DIR: &str = "/var/lib/leadscore";

/// Path of the config file inside the image and on a systemd host.
const CONFIG_PATH: &str = "/etc/leadscore/leadscore.toml";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn run(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("the leadscore binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks a leadscore command line (the arguments after the program name): its subcommand
/// exists, and `--help` of that subcommand lists every flag the line passes.
fn assert_real_command(args: &[&str], origin: &str) {
    let subcommand = args
        .first()
        .unwrap_or_else(|| panic!("{origin}: no subcommand"));
    let help = run(&[subcommand, "--help"], &[]);
    assert!(
        help.status.success(),
        "{origin}: `leadscore {subcommand}` is not a subcommand: {}",
        text(&help.stderr)
    );
    let help = text(&help.stdout);
    for flag in args.iter().filter(|arg| arg.starts_with('-')) {
        let name = flag.split('=').next().unwrap_or(flag);
        let listed = help
            .split(|c: char| c.is_whitespace() || c == ',')
            .any(|word| word == name);
        assert!(
            listed,
            "{origin}: `leadscore {subcommand}` has no flag {name}"
        );
    }
}

/// Returns the value that follows `-c` or `--config` in a command line.
fn config_arg<'a>(args: &[&'a str]) -> Option<&'a str> {
    args.windows(2)
        .find(|pair| pair[0] == "-c" || pair[0] == "--config")
        .map(|pair| pair[1])
}

/// Copies a config the images read into a temporary folder, with the state folder moved
/// there too, and runs `check --offline` on it with `env`. The state folder is moved because
/// /var/lib/leadscore is a volume that exists only inside the container or on the host.
fn assert_passes_offline_check(config_text: &str, env: &[(String, String)], origin: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state folder");
    let moved = config_text.replace(STATE_DIR, &state.display().to_string());
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, moved).expect("write the config");
    let path_text = path.display().to_string();
    let output = run(&["check", "--offline", "-c", &path_text], env);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{origin}: check --offline failed: {}",
        text(&output.stderr)
    );
}

/// Returns the environment variables named by `*_env = "NAME"` keys, commented out or not.
fn referenced_variables(config_text: &str) -> BTreeSet<String> {
    config_text
        .lines()
        .map(|line| line.trim_start_matches(['#', ' ']))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            if !key.ends_with("_env") || key.contains(' ') {
                return None;
            }
            Some(value.trim().trim_matches('"').to_string())
        })
        .collect()
}

/// Dummy values for every variable the configs reference.
fn dummy_env(config_text: &str) -> Vec<(String, String)> {
    referenced_variables(config_text)
        .into_iter()
        .map(|name| (name, "dummy-value".to_string()))
        .collect()
}

// --- Dockerfile -------------------------------------------------------------------------

/// One Dockerfile instruction: its upper-case keyword and its arguments, continuation lines
/// joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

fn parse_dockerfile(source: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in source.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        // Comment lines inside a continued instruction are dropped, as Docker does.
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, arguments) = pending.split_once(' ').unwrap_or((&pending, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            arguments: arguments.trim().to_string(),
        });
        pending.clear();
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    instructions
}

/// Replaces `${NAME}` with the values in `args`.
fn expand(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in args {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// Parses the JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK CMD.
fn exec_form(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments)
        .unwrap_or_else(|err| panic!("not the exec (JSON) form: {arguments}: {err}"))
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "SECRET", "TOKEN", "PASSWORD", "PASSWD", "API_KEY", "PRIVATE",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Returns the user id of the final stage's USER, with ARG defaults expanded.
fn dockerfile_user_id() -> u32 {
    let instructions = parse_dockerfile(&read("deploy/Dockerfile"));
    let mut args = BTreeMap::new();
    let mut user = None;
    for instruction in &instructions {
        match instruction.keyword.as_str() {
            "FROM" => user = None,
            "ARG" => {
                if let Some((name, value)) = instruction.arguments.split_once('=') {
                    args.insert(name.to_string(), value.to_string());
                }
            }
            "USER" => user = Some(expand(&instruction.arguments, &args)),
            _ => {}
        }
    }
    let user = user.expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user:?} is not numeric"))
}

#[test]
fn dockerfile_stages_and_user() {
    let instructions = parse_dockerfile(&read("deploy/Dockerfile"));
    let stages: Vec<&Instruction> = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .collect();
    assert!(stages.len() >= 2, "expected a builder and a runtime stage");

    let builder = &stages[0].arguments;
    assert!(builder.starts_with("rust:"), "builder image: {builder}");
    assert!(
        builder.ends_with(" AS builder"),
        "builder stage name: {builder}"
    );
    let build = instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.arguments.contains("cargo build"))
        .expect("the builder runs cargo build");
    for part in ["--release", "--locked", "--bin leadscore"] {
        assert!(build.arguments.contains(part), "cargo build lacks {part}");
    }

    // The toolchain pin must not be older than the crates' rust-version.
    let rust_version = instructions
        .iter()
        .find_map(|i| (i.keyword == "ARG").then(|| i.arguments.strip_prefix("RUST_VERSION=")))
        .flatten()
        .expect("ARG RUST_VERSION=...");
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let minimum = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        numbers(rust_version) >= numbers(minimum),
        "RUST_VERSION {rust_version} is older than rust-version {minimum}"
    );

    // The runtime stage copies the binary and nothing else from the builder.
    let last_from = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("FROM");
    let runtime = &instructions[last_from..];
    let copies: Vec<&Instruction> = runtime.iter().filter(|i| i.keyword == "COPY").collect();
    assert_eq!(copies.len(), 1, "runtime COPY lines: {copies:?}");
    assert!(copies[0].arguments.starts_with("--from=builder "));
    assert!(copies[0].arguments.contains("/leadscore "));

    assert_ne!(dockerfile_user_id(), 0, "the image must not run as root");
}

#[test]
fn dockerfile_has_no_secrets() {
    for instruction in parse_dockerfile(&read("deploy/Dockerfile")) {
        if instruction.keyword != "ENV" && instruction.keyword != "ARG" {
            continue;
        }
        for pair in instruction.arguments.split_whitespace() {
            let name = pair.split('=').next().unwrap_or(pair);
            assert!(
                !looks_secret(name),
                "{} {pair}: pass secrets at run time, never at build time",
                instruction.keyword
            );
        }
    }
}

#[test]
fn dockerfile_commands_and_probe() {
    let instructions = parse_dockerfile(&read("deploy/Dockerfile"));
    let find = |keyword: &str| {
        instructions
            .iter()
            .rfind(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("no {keyword}"))
    };
    let entrypoint = exec_form(&find("ENTRYPOINT").arguments);
    assert_eq!(entrypoint, ["/usr/local/bin/leadscore"]);
    let command = exec_form(&find("CMD").arguments);
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    assert_real_command(&args, "Dockerfile CMD");
    assert_eq!(args[0], "run");
    assert_eq!(config_arg(&args), Some(CONFIG_PATH));

    let healthcheck = &find("HEALTHCHECK").arguments;
    assert!(
        healthcheck.contains("/healthz"),
        "HEALTHCHECK: {healthcheck}"
    );
    assert!(healthcheck.contains("9464"), "HEALTHCHECK: {healthcheck}");
    let volume = &find("VOLUME").arguments;
    assert!(volume.contains(STATE_DIR), "VOLUME: {volume}");
}

/// Returns the shell command of the Dockerfile's HEALTHCHECK.
fn healthcheck_command() -> Vec<String> {
    let instructions = parse_dockerfile(&read("deploy/Dockerfile"));
    let healthcheck = instructions
        .iter()
        .rfind(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let (_, command) = healthcheck
        .arguments
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    exec_form(command)
}

/// Runs the image's health check against a real daemon, on a free port in place of 9464,
/// then stops the daemon with SIGTERM as `docker stop` does.
#[test]
fn healthcheck_probes_running_daemon() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    // Every job off: the daemon serves /healthz and contacts no CRM.
    let config = leadscore::demo::sandbox_config("http://127.0.0.1:9", "store")
        .replace(
            "listen = \"127.0.0.1:9464\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .lines()
        .map(|line| match line.split_once(" = ") {
            Some((key, _))
                if [
                    "pull_and_score",
                    "retrain",
                    "territory_lists",
                    "outcomes_report",
                ]
                .contains(&key) =>
            {
                format!("{key} = \"off\"")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, config).expect("write the config");
    let mut daemon = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .env("LEADSCORE_SF_CLIENT_SECRET", "dummy-client-secret")
        .env("LEADSCORE_SF_REFRESH_TOKEN", "dummy-refresh-token")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the daemon");

    let probe = healthcheck_command();
    let script = probe[2].replace("9464", &port.to_string());
    let mut healthy = false;
    for _ in 0..100 {
        let status = Command::new(&probe[0])
            .args([probe[1].as_str(), script.as_str()])
            .status()
            .expect("run the health check");
        if status.success() {
            healthy = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("send SIGTERM");
    let exit = daemon.wait().expect("wait for the daemon");
    assert!(
        healthy,
        "the HEALTHCHECK command never succeeded on port {port}"
    );
    assert!(killed.success());
    assert_eq!(exit.code(), Some(0), "the daemon's exit after SIGTERM");

    // With no daemon listening, the same check fails.
    let status = Command::new(&probe[0])
        .args([probe[1].as_str(), script.as_str()])
        .status()
        .expect("run the health check");
    assert!(!status.success(), "the health check passed with no daemon");
}

/// Returns true when a .dockerignore pattern excludes `path` (relative, `/`-separated). Only
/// the pattern forms the file uses are handled: plain names, `**/` prefixes and `*.ext`.
fn ignored(pattern: &str, path: &str) -> bool {
    let (anywhere, pattern) = match pattern.strip_prefix("**/") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let matches = |name: &str| match pattern.strip_prefix('*') {
        Some(suffix) => name.ends_with(suffix),
        None => name == pattern,
    };
    if anywhere {
        parts.iter().any(|part| matches(part))
    } else {
        // A pattern without a slash matches a top-level name, and with it everything below.
        matches(parts[0]) || path == pattern || path.starts_with(&format!("{pattern}/"))
    }
}

/// Returns the repository paths that `include_str!` and `include_bytes!` read, from every
/// Rust source below `folder`.
fn included_files(folder: &Path, root: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(folder)
        .expect("read the folder")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            included_files(&path, root, found);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("read the source");
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (start, _) in source.match_indices(macro_name) {
                let rest = &source[start + macro_name.len()..];
                let Some(end) = rest.find('"') else { continue };
                let target = path.parent().expect("folder").join(&rest[..end]);
                let target = target.canonicalize().expect("the included file exists");
                let relative = target.strip_prefix(root).expect("inside the repository");
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

#[test]
fn dockerignore_keeps_build_inputs() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(
        patterns.iter().any(|p| p == "target"),
        "target/ must stay out of the build context"
    );
    let root = repo_file("").canonicalize().expect("repository root");
    let mut included = Vec::new();
    for folder in ["src", "connectors", "bench"] {
        included_files(&root.join(folder), &root, &mut included);
    }
    assert!(
        included.iter().any(|p| p.starts_with("data/")),
        "the scan should find the CMS data files: {included:?}"
    );
    for file in &included {
        for pattern in &patterns {
            assert!(
                !ignored(pattern, file),
                ".dockerignore pattern {pattern} excludes {file}, which the build compiles in"
            );
        }
    }
    for manifest in ["Cargo.toml", "Cargo.lock", "bench/Cargo.toml"] {
        for pattern in &patterns {
            assert!(!ignored(pattern, manifest), "{pattern} excludes {manifest}");
        }
    }
}

// --- systemd unit -----------------------------------------------------------------------

/// A unit file: section name to its keys in file order. A key may repeat (ExecReload).
type Unit = BTreeMap<String, Vec<(String, String)>>;

/// Parses systemd's INI dialect: `[Section]`, `Key=Value`, `#` and `;` comments, and
/// backslash continuation lines.
fn parse_unit(source: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    for (index, line) in source.lines().enumerate() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        if let Some(name) = entry.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = entry
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not Key=Value: {entry}", index + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: key outside a section", index + 1));
        unit.get_mut(section)
            .expect("section")
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    unit
}

fn unit_values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .unwrap_or_else(|| panic!("no [{section}]"))
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn unit_value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit_values(unit, section, key);
    assert_eq!(values.len(), 1, "[{section}] {key}: {values:?}");
    values[0]
}

/// Splits a unit command line into the leadscore arguments, or `None` for other programs.
fn leadscore_args(command: &str) -> Option<Vec<&str>> {
    let mut words = command.split_whitespace();
    let program = words.next()?;
    program.ends_with("/leadscore").then(|| words.collect())
}

/// Parses a systemd time span such as `15min`, `90s` or `1h` into seconds.
fn span_seconds(span: &str) -> u64 {
    let digits: String = span.chars().take_while(char::is_ascii_digit).collect();
    let number: u64 = digits.parse().expect("a number");
    match &span[digits.len()..] {
        "" | "s" | "sec" => number,
        "m" | "min" => number * 60,
        "h" | "hr" => number * 3600,
        unit => panic!("time unit {unit:?} of {span:?} is not handled here"),
    }
}

#[test]
fn unit_parser_reads_sections() {
    let unit = parse_unit("# c\n[A]\nX=1\nX=2 \\\n  3\n; c\n[B]\nY = y\n");
    assert_eq!(unit_values(&unit, "A", "X"), ["1", "2 3"]);
    assert_eq!(unit_value(&unit, "B", "Y"), "y");
}

#[test]
fn unit_validates_config() {
    let unit = parse_unit(&read("deploy/leadscore.service"));
    for section in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(section), "no [{section}]");
    }

    let start = unit_value(&unit, "Service", "ExecStart");
    let start_args = leadscore_args(start).expect("ExecStart runs leadscore");
    assert_eq!(start_args[0], "run");
    assert!(
        !start_args.contains(&"--once"),
        "ExecStart must run the daemon"
    );
    let config = config_arg(&start_args).expect("ExecStart names the config with -c");

    let pre = unit_value(&unit, "Service", "ExecStartPre");
    let pre_args = leadscore_args(pre).expect("ExecStartPre runs leadscore");
    assert_eq!(pre_args[..2], ["check", "--offline"]);
    assert_eq!(config_arg(&pre_args), Some(config));

    // ExecReload lines run in order: validate, then signal the running daemon.
    let reload = unit_values(&unit, "Service", "ExecReload");
    assert_eq!(reload.len(), 2, "ExecReload: {reload:?}");
    let validate = leadscore_args(reload[0]).expect("the first ExecReload runs leadscore");
    assert_eq!(validate[..2], ["check", "--offline"]);
    assert_eq!(config_arg(&validate), Some(config));
    assert!(reload[1].contains("kill -HUP $MAINPID"), "{}", reload[1]);

    for (origin, args) in [
        ("ExecStart", &start_args),
        ("ExecStartPre", &pre_args),
        ("ExecReload", &validate),
    ] {
        assert_real_command(args, origin);
    }
}

#[test]
fn unit_service_settings() {
    let unit = parse_unit(&read("deploy/leadscore.service"));
    let expected = [
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "leadscore"),
        ("RestartPreventExitStatus", "2"),
    ];
    for (key, value) in expected {
        assert_eq!(unit_value(&unit, "Service", key), value, "[Service] {key}");
    }

    let user = unit_value(&unit, "Service", "User");
    assert_ne!(user, "root");
    assert_ne!(user, "0");

    let env_file = unit_value(&unit, "Service", "EnvironmentFile");
    assert!(env_file.starts_with("/etc/leadscore/"), "{env_file}");

    // A running job ends after its current page or write batch, which may take minutes.
    let stop = span_seconds(unit_value(&unit, "Service", "TimeoutStopSec"));
    assert!(stop >= 600, "TimeoutStopSec is {stop} s");

    assert_eq!(
        unit_value(&unit, "Service", "WorkingDirectory"),
        STATE_DIR,
        "StateDirectory=leadscore is {STATE_DIR}"
    );
    assert_eq!(
        unit_value(&unit, "Install", "WantedBy"),
        "multi-user.target"
    );
}

/// Runs `systemd-analyze verify` on the unit, with the binary path pointed at the built
/// binary, where systemd-analyze is installed. It checks every key's name and value.
#[test]
fn unit_passes_systemd_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = read("deploy/leadscore.service").replace("/usr/local/bin/leadscore", BIN);
    let path = dir.path().join("leadscore.service");
    std::fs::write(&path, unit).expect("write the unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}",
        text(&output.stderr)
    );
    assert_eq!(text(&output.stderr).trim(), "", "systemd-analyze warned");
}

// --- docker-compose.yml -----------------------------------------------------------------

fn load_yaml(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|err| panic!("{relative} is not valid YAML: {err}"))
}

fn strings(node: &Yaml) -> Vec<&str> {
    node.as_vec()
        .unwrap_or_else(|| panic!("expected a list, got {node:?}"))
        .iter()
        .map(|item| item.as_str().expect("a string"))
        .collect()
}

/// Returns the value of `--flag VALUE` in a command line.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|pair| pair[0] == flag)
        .map(|pair| pair[1])
}

#[test]
fn compose_trial_runs_sandbox() {
    let documents = load_yaml("deploy/docker-compose.yml");
    assert_eq!(documents.len(), 1);
    let services = &documents[0]["services"];
    let sandbox = &services["sandbox"];
    let daemon = &services["leadscore"];
    assert!(!sandbox.is_badvalue(), "no sandbox service");
    assert!(!daemon.is_badvalue(), "no leadscore service");

    // Both services run the image deploy/Dockerfile builds.
    for service in [sandbox, daemon] {
        assert_eq!(
            service["build"]["dockerfile"].as_str(),
            Some("deploy/Dockerfile")
        );
        assert_eq!(service["image"].as_str(), sandbox["image"].as_str());
        assert!(service["ports"].is_badvalue(), "no port is published");
    }
    assert_eq!(
        daemon["network_mode"].as_str(),
        Some("service:sandbox"),
        "the daemon reaches the loopback-only sandbox through its namespace"
    );

    let sandbox_args = strings(&sandbox["command"]);
    assert_eq!(sandbox_args[0], "sandbox");
    assert_real_command(&sandbox_args, "compose sandbox");
    let daemon_args = strings(&daemon["command"]);
    assert_eq!(daemon_args[0], "run");
    assert_real_command(&daemon_args, "compose leadscore");
    let config_path = config_arg(&daemon_args).expect("-c");

    // The mounted config is the one in deploy/compose/, and the store is on a volume.
    let volumes = strings(&daemon["volumes"]);
    let mount = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some(config_path))
        .unwrap_or_else(|| panic!("no volume mounts {config_path}: {volumes:?}"));
    let host_file = mount.split(':').next().expect("source");
    assert_eq!(host_file, "./compose/leadscore.toml");
    assert!(
        volumes
            .iter()
            .any(|v| v.split(':').nth(1) == Some(STATE_DIR)),
        "no volume at {STATE_DIR}: {volumes:?}"
    );

    // The config reaches the sandbox on the port the sandbox listens on.
    let config_text = read("deploy/compose/leadscore.toml");
    let port = flag_value(&sandbox_args, "--port").expect("sandbox --port");
    assert!(
        config_text.contains(&format!("login_url = \"http://127.0.0.1:{port}\"")),
        "the compose config's login_url must be the sandbox on 127.0.0.1:{port}"
    );

    // The environment the compose file sets is what the config needs.
    let environment = daemon["environment"].as_hash().expect("environment map");
    let env: Vec<(String, String)> = environment
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("name").to_string(),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    let names: BTreeSet<String> = env.iter().map(|(k, _)| k.clone()).collect();
    let needed: BTreeSet<String> = referenced_variables(
        &config_text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(names, needed);
    assert_passes_offline_check(&config_text, &env, "deploy/compose/leadscore.toml");
}

// --- kubernetes.yaml --------------------------------------------------------------------

fn manifest_objects() -> Vec<Yaml> {
    let documents = load_yaml("deploy/kubernetes.yaml");
    assert!(documents.iter().all(|d| d["kind"].as_str().is_some()));
    documents
}

fn object<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

fn configmap_config(documents: &[Yaml]) -> String {
    object(documents, "ConfigMap")["data"]["leadscore.toml"]
        .as_str()
        .expect("ConfigMap data leadscore.toml")
        .to_string()
}

#[test]
fn manifest_kinds_and_deployment() {
    let documents = manifest_objects();
    let kinds: BTreeSet<&str> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    for kind in ["ConfigMap", "Deployment", "PersistentVolumeClaim"] {
        assert!(kinds.contains(kind), "no {kind}: {kinds:?}");
    }
    assert!(
        !kinds.contains("Secret"),
        "the operator creates the Secret; the manifest only refers to it"
    );

    let deployment = object(&documents, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(
        spec["replicas"].as_i64(),
        Some(1),
        "the store allows one process"
    );
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let uid = pod["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    assert_ne!(uid, 0);
    assert_eq!(
        uid,
        i64::from(dockerfile_user_id()),
        "runAsUser and the image's USER differ"
    );
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("grace");
    assert!(grace >= 600, "terminationGracePeriodSeconds is {grace}");

    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let context = &container["securityContext"];
    assert_eq!(context["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(context["allowPrivilegeEscalation"].as_bool(), Some(false));
    let args = strings(&container["args"]);
    assert_real_command(&args, "Deployment args");
    assert_eq!(args[0], "run");
    let config_path = config_arg(&args).expect("-c");

    // The ConfigMap is mounted where -c points, and the claim where the store is.
    let mounts = container["volumeMounts"].as_vec().expect("volumeMounts");
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let mount_of = |volume: &Yaml| -> &str {
        let name = volume["name"].as_str().expect("volume name");
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("volume {name} is not mounted"))
    };
    let config_volume = volumes
        .iter()
        .find(|v| !v["configMap"].is_badvalue())
        .expect("a configMap volume");
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        object(&documents, "ConfigMap")["metadata"]["name"].as_str()
    );
    assert_eq!(
        format!("{}/leadscore.toml", mount_of(config_volume)),
        config_path
    );
    let data_volume = volumes
        .iter()
        .find(|v| !v["persistentVolumeClaim"].is_badvalue())
        .expect("a persistentVolumeClaim volume");
    assert_eq!(
        data_volume["persistentVolumeClaim"]["claimName"].as_str(),
        object(&documents, "PersistentVolumeClaim")["metadata"]["name"].as_str()
    );
    assert_eq!(mount_of(data_volume), STATE_DIR);
    let config = configmap_config(&documents);
    assert!(
        config.contains(&format!("path = \"{STATE_DIR}/")),
        "the store must be on the claim"
    );
}

#[test]
fn manifest_secrets_are_references() {
    let documents = manifest_objects();
    let deployment = object(&documents, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let from_secret = container["envFrom"]
        .as_vec()
        .into_iter()
        .flatten()
        .any(|source| source["secretRef"]["name"].as_str().is_some());
    assert!(from_secret, "the secrets come from a secretRef");
    for variable in container["env"].as_vec().into_iter().flatten() {
        assert!(
            variable["value"].is_badvalue()
                || !looks_secret(variable["name"].as_str().unwrap_or_default()),
            "{variable:?}: use valueFrom.secretKeyRef for a secret"
        );
    }
    let text = read("deploy/kubernetes.yaml");
    assert!(
        !text.contains("stringData"),
        "no Secret data in the manifest"
    );
}

#[test]
fn manifest_probes_use_listen_port() {
    let documents = manifest_objects();
    let config: toml::Table = configmap_config(&documents)
        .parse()
        .expect("the ConfigMap's config is TOML");
    let listen: std::net::SocketAddr = config["daemon"]["listen"]
        .as_str()
        .expect("[daemon] listen")
        .parse()
        .expect("an address");
    assert!(
        listen.ip().is_unspecified(),
        "the kubelet probes the pod IP, so [daemon] listen must be 0.0.0.0, not {listen}"
    );
    let container = &object(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{probe} path");
        assert_eq!(
            get["port"].as_i64(),
            Some(i64::from(listen.port())),
            "{probe} port"
        );
    }
}

#[test]
fn manifest_config_passes_offline_check() {
    let config = configmap_config(&manifest_objects());
    assert_passes_offline_check(&config, &dummy_env(&config), "the ConfigMap");
    // Without the secrets the same check fails, so it did look at them.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, config.replace(STATE_DIR, "state")).expect("write");
    let mut command = Command::new(BIN);
    command.args(["check", "--offline", "-c"]).arg(&path);
    for (name, _) in dummy_env(&config) {
        command.env_remove(name);
    }
    let output = command.output().expect("run");
    assert_eq!(output.status.code(), Some(2));
}

// --- examples and the env file ----------------------------------------------------------

#[test]
fn example_configs_pass_offline_check() {
    for file in [
        "deploy/leadscore.example.toml",
        "deploy/leadscore.hubspot.example.toml",
    ] {
        let config = read(file);
        assert_passes_offline_check(&config, &dummy_env(&config), file);
    }
}

#[test]
fn env_example_matches_configs() {
    let mut referenced = BTreeSet::new();
    for file in [
        "deploy/leadscore.example.toml",
        "deploy/leadscore.hubspot.example.toml",
        "deploy/compose/leadscore.toml",
    ] {
        referenced.extend(referenced_variables(&read(file)));
    }
    referenced.extend(referenced_variables(&configmap_config(&manifest_objects())));
    assert!(referenced.contains("LEADSCORE_SF_CLIENT_SECRET"));

    let example = read("deploy/leadscore.env.example");
    let mut listed = BTreeSet::new();
    for line in example.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        assert!(
            value.is_empty(),
            "{name} has a value in the example; leave it blank"
        );
        listed.insert(name.to_string());
    }
    assert_eq!(listed, referenced);
}
