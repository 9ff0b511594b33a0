//! The `scale` benchmark: leadscore's pull, train, score and push against a scaled sandbox.
//!
//! The sandbox runs as its own `leadscore sandbox --scale N` process, so its memory and CPU
//! are not counted as leadscore's. Every leadscore stage runs as a separate child process and
//! is reaped with `wait4`, which returns that child's own peak resident set size and CPU time.
//! Linux copies a parent's resident size at the fork into the child's peak, which `exec`
//! keeps, so the stages are started by `leadscore-bench launch`, a new and small process.
//! Started by this one, every stage below this process's own size would report that size.
//! The sandbox's CPU time during each stage comes from `/proc/PID/stat`. After the full cycle,
//! the benchmark stamps 1% of every object's rows as edited through the sandbox's control
//! endpoint (`/__sandbox/records/touch`) and runs incremental cycles (pull, score, push).
//! Linux only.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// Objects whose rows an incremental cycle stamps as edited: every object the sandbox copies.
const CHANGED_OBJECTS: [&str; 7] = [
    "Account",
    "Contact",
    "Lead",
    "Opportunity",
    "OpportunityContactRole",
    "Task",
    "Event",
];

#[derive(Parser)]
pub struct ScaleArgs {
    /// Copies of the demo org in the sandbox (`leadscore sandbox --scale`); 32 copies of all
    /// hospitals give about 1,000,000 contacts.
    #[arg(long, default_value_t = 4)]
    scale: u32,
    /// Hospitals per copy, all 5,421 when absent.
    #[arg(long)]
    hospitals: Option<u64>,
    /// Incremental cycles after the full cycle; the table reports their medians.
    #[arg(long, default_value_t = 10)]
    incremental_cycles: usize,
    /// Rows stamped as edited per incremental cycle: one in this many of every object.
    #[arg(long, default_value_t = 100)]
    change_every: u64,
    /// Seconds the sandbox's clock moves ahead before each incremental cycle, so the cycles
    /// are as far apart in the org's time as scheduled runs: the example configuration's
    /// `pull_and_score` runs every 30 minutes. With 0 the cycles follow each other at once and
    /// each pull also reads again what changed within `cursor_lookback_secs` (300 s) before
    /// the previous cycle's cursor, the previous push's writes among them.
    #[arg(long, default_value_t = 1_800)]
    cycle_gap_secs: u64,
    /// Also change one value a model reads in each stamped row (a custom number field up by
    /// one, or an activity's date a day earlier), so the score step has inputs to score again.
    #[arg(long)]
    edit_values: bool,
    /// Move the configuration's `[scoring] as_of` ahead with the sandbox's clock before each
    /// incremental cycle, so rows the passing of time changes are scored again as in
    /// production.
    #[arg(long)]
    move_as_of: bool,
    /// Run the incremental cycles' score steps as `leadscore score --whole`, which scores
    /// every open record again, for a comparison with the rows kept.
    #[arg(long)]
    score_whole: bool,
    /// The leadscore binary, `leadscore` next to this benchmark's binary when absent.
    #[arg(long)]
    leadscore: Option<PathBuf>,
    /// Loopback port of the Salesforce sandbox.
    #[arg(long, default_value_t = 18_543)]
    port: u16,
    /// Loopback port of the HubSpot sandbox, which the benchmark does not use.
    #[arg(long, default_value_t = 18_544)]
    hubspot_port: u16,
    /// Directory for the configuration, the store and the stage logs, kept afterwards; a
    /// temporary directory, removed afterwards, when absent.
    #[arg(long)]
    workdir: Option<PathBuf>,
}

/// One stage's measurements.
struct StageRun {
    stage: &'static str,
    wall: Duration,
    /// Peak resident set size of the leadscore process, in KiB.
    peak_rss_kib: u64,
    /// User plus system CPU time of the leadscore process.
    cpu: Duration,
    /// CPU time the sandbox process used while the stage ran.
    sandbox_cpu: Duration,
    stdout: String,
}

/// The sandbox child process and the URL and credentials its banner prints.
struct SandboxProcess {
    child: Child,
    url: String,
    client_secret: String,
    refresh_token: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        // The sandbox stops on SIGINT (Ctrl-C); kill is enough because it keeps no files.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the benchmark and prints the Markdown report.
pub fn run(args: &ScaleArgs) -> Result<(), String> {
    let leadscore = match &args.leadscore {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("failed to find own binary: {e}"))?
            .with_file_name("leadscore"),
    };
    if !leadscore.is_file() {
        return Err(format!(
            "leadscore binary {} not found; build it with `cargo build --release` or pass --leadscore",
            leadscore.display()
        ));
    }
    let temporary;
    let workdir = match &args.workdir {
        Some(dir) => {
            fs::create_dir_all(dir)
                .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
            dir.clone()
        }
        None => {
            temporary =
                tempfile::tempdir().map_err(|e| format!("failed to make a temp dir: {e}"))?;
            temporary.path().to_path_buf()
        }
    };
    // leadscore resolves a relative store path against the configuration file's directory.
    let workdir = workdir
        .canonicalize()
        .map_err(|e| format!("failed to resolve {}: {e}", workdir.display()))?;
    let counts = record_counts(args)?;

    let started = Instant::now();
    let mut sandbox = start_sandbox(&leadscore, args)?;
    let seed_time = started.elapsed();
    eprintln!(
        "sandbox seeded in {:.1} s at {}",
        seed_time.as_secs_f64(),
        sandbox.url
    );
    let sandbox_pid = sandbox.child.id();

    let store = workdir.join("store");
    let config = workdir.join("leadscore.toml");
    let text = leadscore::demo::sandbox_config(&sandbox.url, &store.display().to_string());
    fs::write(&config, text).map_err(|e| format!("failed to write {}: {e}", config.display()))?;
    let runner = StageRunner {
        leadscore: &leadscore,
        config: &config,
        sandbox: &sandbox,
        sandbox_pid,
        logs: &workdir,
        score_whole: args.score_whole,
    };

    let mut full = Vec::new();
    for stage in ["pull", "train", "score", "push"] {
        full.push(runner.run(stage, "full")?);
    }
    let full_store = dir_size(&store);

    let mut incremental: Vec<Vec<StageRun>> = Vec::new();
    let mut touched_per_cycle = 0;
    let mut cycle_stores = Vec::new();
    for cycle in 0..args.incremental_cycles {
        if args.cycle_gap_secs > 0 {
            advance_clock(&sandbox.url, args.cycle_gap_secs)?;
        }
        if args.move_as_of {
            let ahead = args.cycle_gap_secs * (cycle as u64 + 1);
            move_as_of(&config, ahead)?;
        }
        touched_per_cycle = touch(
            &sandbox.url,
            args.change_every,
            cycle as u64,
            args.edit_values,
        )?;
        eprintln!("incremental-{cycle}: {touched_per_cycle} rows stamped as edited");
        let mut runs = Vec::new();
        for stage in ["pull", "score", "push"] {
            runs.push(runner.run(stage, &format!("incremental-{cycle}"))?);
        }
        incremental.push(runs);
        let size = dir_size(&store);
        eprintln!(
            "incremental-{cycle}: store {:.0} MiB",
            size as f64 / 1_048_576.0
        );
        cycle_stores.push(size);
    }
    let incremental_store = cycle_stores.last().copied().unwrap_or(full_store);
    let sandbox_total_cpu = process_cpu(sandbox_pid);
    let _ = sandbox.child.kill();

    let report = Report {
        args,
        counts: &counts,
        seed_time,
        full: &full,
        incremental: &incremental,
        touched_per_cycle,
        full_store,
        incremental_store,
        cycle_stores: &cycle_stores,
        sandbox_total_cpu,
    };
    print!("{}", report.render());
    Ok(())
}

/// Counts the records of the scaled org: the demo org's counts times the scale, except users,
/// which the copies share.
fn record_counts(args: &ScaleArgs) -> Result<BTreeMap<String, u64>, String> {
    let org = leadscore_demo_org::generate(&leadscore_demo_org::DemoOptions {
        max_hospitals: args.hospitals.map(|n| n as usize),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    Ok(org
        .records
        .iter()
        .map(|(object, records)| {
            let copies = if object == "User" { 1 } else { args.scale };
            (object.clone(), records.len() as u64 * u64::from(copies))
        })
        .collect())
}

fn start_sandbox(leadscore: &Path, args: &ScaleArgs) -> Result<SandboxProcess, String> {
    let mut command = Command::new(leadscore);
    command
        .arg("sandbox")
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--hubspot-port")
        .arg(args.hubspot_port.to_string())
        .arg("--scale")
        .arg(args.scale.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(hospitals) = args.hospitals {
        command.arg("--hospitals").arg(hospitals.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("failed to start {}: {e}", leadscore.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("the sandbox has no stdout pipe")?;
    let mut banner = String::new();
    BufReader::new(stdout)
        .read_line(&mut banner)
        .map_err(|e| format!("failed to read the sandbox banner: {e}"))?;
    let parsed: serde_json::Value = match serde_json::from_str(&banner) {
        Ok(value) => value,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the sandbox exited or printed no banner (got {:?}); is port {} or {} in use?",
                banner.trim(),
                args.port,
                args.hubspot_port
            ));
        }
    };
    let field = |name: &str| parsed[name].as_str().unwrap_or_default().to_string();
    Ok(SandboxProcess {
        url: field("salesforce_url"),
        client_secret: field("client_secret"),
        refresh_token: field("refresh_token"),
        child,
    })
}

struct StageRunner<'a> {
    leadscore: &'a Path,
    config: &'a Path,
    sandbox: &'a SandboxProcess,
    sandbox_pid: u32,
    logs: &'a Path,
    /// Whether score stages run with `--whole`.
    score_whole: bool,
}

impl StageRunner<'_> {
    /// Runs `leadscore STAGE -c CONFIG` and measures it. A stage that exits non-zero fails the
    /// benchmark, with the path of its log.
    fn run(&self, stage: &'static str, cycle: &str) -> Result<StageRun, String> {
        let log = self.logs.join(format!("{cycle}-{stage}.log"));
        let stderr = fs::File::create(&log)
            .map_err(|e| format!("failed to create {}: {e}", log.display()))?;
        let usage_file = self.logs.join(format!("{cycle}-{stage}.usage"));
        // A file left by an earlier run in the same folder must not be read as this run's usage.
        let _ = fs::remove_file(&usage_file);
        let launcher =
            std::env::current_exe().map_err(|e| format!("failed to find own binary: {e}"))?;
        let mut command = Command::new(launcher);
        command
            .arg("launch")
            .arg("--usage-file")
            .arg(&usage_file)
            .arg("--")
            .arg(self.leadscore)
            .arg(stage)
            .arg("-c")
            .arg(self.config);
        if stage == "score" {
            command.arg("--json");
            if self.score_whole {
                command.arg("--whole");
            }
        }
        command
            .env("LEADSCORE_SF_CLIENT_SECRET", &self.sandbox.client_secret)
            .env("LEADSCORE_SF_REFRESH_TOKEN", &self.sandbox.refresh_token)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let sandbox_before = process_cpu(self.sandbox_pid);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("failed to start leadscore {stage}: {e}"))?;
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut stdout)
                .map_err(|e| format!("failed to read leadscore {stage} output: {e}"))?;
        }
        let launched = wait_with_usage(&child)?;
        let wall = started.elapsed();
        let usage = match read_usage(&usage_file) {
            Ok(usage) => usage,
            Err(message) if launched.exit_code != 0 => {
                return Err(format!(
                    "the launcher of leadscore {stage} ({cycle}) exited with code {}: {message}",
                    launched.exit_code
                ))
            }
            Err(message) => return Err(message),
        };
        let sandbox_cpu = process_cpu(self.sandbox_pid).saturating_sub(sandbox_before);
        if usage.exit_code != 0 {
            return Err(format!(
                "leadscore {stage} ({cycle}) exited with code {}; see {}",
                usage.exit_code,
                log.display()
            ));
        }
        // One line per stage as it ends, so an interrupted run still leaves its figures.
        eprintln!(
            "{cycle} {stage}: {:.1} s wall, {} MiB peak RSS, {:.1} s CPU, sandbox {:.1} s CPU",
            wall.as_secs_f64(),
            usage.max_rss_kib / 1024,
            usage.cpu.as_secs_f64(),
            sandbox_cpu.as_secs_f64()
        );
        Ok(StageRun {
            stage,
            wall,
            peak_rss_kib: usage.max_rss_kib,
            cpu: usage.cpu,
            sandbox_cpu,
            stdout,
        })
    }
}

/// Arguments of `leadscore-bench launch`.
#[derive(Parser)]
pub struct LaunchArgs {
    /// File that receives one line: exit code, peak RSS in KiB and CPU microseconds.
    #[arg(long)]
    usage_file: PathBuf,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// Runs one program with this process's standard streams, reaps it with `wait4` and writes
/// what that reports to the usage file. Forked from this small process, the program's peak
/// RSS is its own.
pub fn launch(args: &LaunchArgs) -> Result<(), String> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("launch needs a program to run")?;
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .map_err(|e| format!("failed to start {program}: {e}"))?;
    let usage = wait_with_usage(&child)?;
    let line = format!(
        "{} {} {}\n",
        usage.exit_code,
        usage.max_rss_kib,
        usage.cpu.as_micros()
    );
    fs::write(&args.usage_file, line)
        .map_err(|e| format!("failed to write {}: {e}", args.usage_file.display()))
}

/// Reads the line that `launch` wrote.
fn read_usage(path: &Path) -> Result<ChildUsage, String> {
    let text = fs::read_to_string(path).map_err(|e| {
        format!(
            "failed to read the stage's usage from {}: {e}",
            path.display()
        )
    })?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let parsed = match fields.as_slice() {
        [code, rss, cpu] => code
            .parse::<i32>()
            .ok()
            .zip(rss.parse::<u64>().ok())
            .zip(cpu.parse::<u64>().ok()),
        _ => None,
    };
    let ((exit_code, max_rss_kib), cpu_micros) = parsed.ok_or_else(|| {
        format!(
            "{} holds {text:?}, not an exit code, a peak RSS and CPU microseconds",
            path.display()
        )
    })?;
    Ok(ChildUsage {
        exit_code,
        max_rss_kib,
        cpu: Duration::from_micros(cpu_micros),
    })
}

/// The exit code and resource usage that `wait4` reports for one child.
struct ChildUsage {
    exit_code: i32,
    max_rss_kib: u64,
    cpu: Duration,
}

/// Reaps the child with `wait4`, which reports that child's own peak RSS and CPU time.
/// `Child::wait` must not be called on it afterwards.
fn wait_with_usage(child: &Child) -> Result<ChildUsage, String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, writable and live for the call; `pid` is our
        // own child, not yet reaped.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 on leadscore process {pid} failed: {error}"));
        }
    }
    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(ChildUsage {
        exit_code,
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    })
}

/// Returns the user plus system CPU time of a running process from `/proc/PID/stat`, or zero
/// when the file cannot be read.
fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name, which may contain spaces: utime and stime
    // are fields 14 and 15 of the line, so 12 and 13 after the name.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Stamps one row in `every` of each copied object as edited, starting at row `offset`, and
/// returns how many rows it stamped. With `edit`, each also gets one changed value.
fn touch(url: &str, every: u64, offset: u64, edit: bool) -> Result<u64, String> {
    let mut total = 0;
    for object in CHANGED_OBJECTS {
        let body = serde_json::json!({
            "object": object,
            "every": every,
            "offset": offset % every,
            "edit": edit,
        });
        let response = post_json(url, "/__sandbox/records/touch", &body.to_string())?;
        let parsed: serde_json::Value = serde_json::from_str(&response)
            .map_err(|e| format!("invalid records/touch response {response:?}: {e}"))?;
        total += parsed["touched"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

/// Sets the `as_of` line of the configuration at `path` to the time the sandbox
/// configuration scores as of, plus `seconds`.
fn move_as_of(path: &Path, seconds: u64) -> Result<(), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let base = leadscore::demo::sandbox_config("http://127.0.0.1:1", "store");
    let line = |text: &str| {
        text.lines()
            .find(|line| line.starts_with("as_of = "))
            .map(str::to_string)
    };
    let (Some(base_line), Some(current)) = (line(&base), line(&text)) else {
        return Err(format!(
            "{} has no `as_of = ` line to move ahead",
            path.display()
        ));
    };
    let base_time = base_line["as_of = ".len()..].trim();
    let base_time = chrono::DateTime::parse_from_rfc3339(base_time)
        .map_err(|e| format!("the sandbox configuration's as_of {base_time:?}: {e}"))?;
    let moved = base_time + chrono::Duration::seconds(seconds as i64);
    let text = text.replace(
        &current,
        &format!(
            "as_of = {}",
            moved.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    );
    fs::write(path, text).map_err(|e| format!("failed to write {}: {e}", path.display()))
}

/// Moves the sandbox's clock `seconds` ahead (`POST /__sandbox/clock`).
fn advance_clock(url: &str, seconds: u64) -> Result<(), String> {
    let body = serde_json::json!({"advance_secs": seconds});
    post_json(url, "/__sandbox/clock", &body.to_string()).map(drop)
}

/// Sends one POST over plain HTTP/1.1 to the loopback sandbox and returns the body of a 200.
fn post_json(url: &str, path: &str, body: &str) -> Result<String, String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("sandbox URL {url} is not plain http://"))?;
    let mut stream =
        TcpStream::connect(host).map_err(|e| format!("failed to connect to {host}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("failed to send POST {path}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("failed to read the response to POST {path}: {e}"))?;
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("POST {path} failed: {head} {rest}"));
    }
    Ok(rest.to_string())
}

/// Total size in bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sums every `"scored"` count in `leadscore score --json` output.
fn scored_records(stdout: &str) -> u64 {
    fn walk(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(key, value)| match (key.as_str(), value.as_u64()) {
                    ("scored", Some(count)) => count,
                    _ => walk(value),
                })
                .sum(),
            serde_json::Value::Array(items) => items.iter().map(walk).sum(),
            _ => 0,
        }
    }
    serde_json::from_str(stdout).map_or(0, |value| walk(&value))
}

struct Report<'a> {
    args: &'a ScaleArgs,
    counts: &'a BTreeMap<String, u64>,
    seed_time: Duration,
    full: &'a [StageRun],
    incremental: &'a [Vec<StageRun>],
    touched_per_cycle: u64,
    full_store: u64,
    incremental_store: u64,
    /// Store size after each incremental cycle.
    cycle_stores: &'a [u64],
    sandbox_total_cpu: Duration,
}

impl Report<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        let count = |object: &str| self.counts.get(object).copied().unwrap_or(0);
        let total: u64 = self.counts.values().sum();
        out += &format!(
            "Command: `leadscore-bench scale --scale {}{} --cycle-gap-secs {}{}{}{}` ({} incremental \
             cycles, the sandbox's clock {} s ahead before each, 1 row in {} of every object \
             changed per cycle: {} rows)\n\n",
            self.args.scale,
            self.args
                .hospitals
                .map(|n| format!(" --hospitals {n}"))
                .unwrap_or_default(),
            self.args.cycle_gap_secs,
            if self.args.edit_values {
                " --edit-values"
            } else {
                ""
            },
            if self.args.move_as_of {
                " --move-as-of"
            } else {
                ""
            },
            if self.args.score_whole {
                " --score-whole"
            } else {
                ""
            },
            self.args.incremental_cycles,
            self.args.cycle_gap_secs,
            self.args.change_every,
            self.touched_per_cycle,
        );
        out += &format!("Machine: {}\n\n", machine());
        out += &format!(
            "Org: {} accounts, {} contacts, {} leads, {} opportunities, {} tasks and events, \
             {} records in all; the sandbox process seeded it in {:.1} s.\n\n",
            count("Account"),
            count("Contact"),
            count("Lead"),
            count("Opportunity"),
            count("Task") + count("Event"),
            total,
            self.seed_time.as_secs_f64()
        );
        out += "| cycle | stage | wall s | leadscore peak RSS MiB | leadscore CPU s | sandbox CPU s |\n";
        out += "| --- | --- | ---: | ---: | ---: | ---: |\n";
        for run in self.full {
            out += &row(
                "full",
                run.stage,
                run.wall,
                run.peak_rss_kib,
                run.cpu,
                run.sandbox_cpu,
            );
        }
        let full_wall: Duration = self.full.iter().map(|run| run.wall).sum();
        let full_peak = self
            .full
            .iter()
            .map(|run| run.peak_rss_kib)
            .max()
            .unwrap_or(0);
        let full_cpu: Duration = self.full.iter().map(|run| run.cpu).sum();
        let full_sandbox: Duration = self.full.iter().map(|run| run.sandbox_cpu).sum();
        out += &row(
            "full",
            "**total**",
            full_wall,
            full_peak,
            full_cpu,
            full_sandbox,
        );
        if !self.incremental.is_empty() {
            for (index, stage) in ["pull", "score", "push"].iter().enumerate() {
                let median = |pick: &dyn Fn(&StageRun) -> f64| {
                    median(
                        self.incremental
                            .iter()
                            .map(|runs| pick(&runs[index]))
                            .collect(),
                    )
                };
                out += &format!(
                    "| incremental (median) | {stage} | {:.1} | {:.0} | {:.1} | {:.1} |\n",
                    median(&|run| run.wall.as_secs_f64()),
                    median(&|run| run.peak_rss_kib as f64 / 1024.0),
                    median(&|run| run.cpu.as_secs_f64()),
                    median(&|run| run.sandbox_cpu.as_secs_f64()),
                );
            }
            let cycle_walls: Vec<f64> = self
                .incremental
                .iter()
                .map(|runs| runs.iter().map(|run| run.wall.as_secs_f64()).sum())
                .collect();
            out += &format!(
                "| incremental (median) | **total** | {:.1} | | | |\n",
                median(cycle_walls)
            );
        }
        out += "\n";
        if let Some(score) = self.full.iter().find(|run| run.stage == "score") {
            let scored = scored_records(&score.stdout);
            let cpu = score.cpu.as_secs_f64();
            out += &format!(
                "Scoring (full cycle, store load included): {scored} records in {:.1} s wall and \
                 {cpu:.1} s CPU: {:.0} records per CPU-second.\n\n",
                score.wall.as_secs_f64(),
                if cpu > 0.0 { scored as f64 / cpu } else { 0.0 },
            );
        }
        out += &format!(
            "Store on disk: {:.0} MiB after the full cycle, {:.0} MiB after {} incremental \
             cycles. Sandbox CPU over the whole run, seeding included: {:.1} s.\n",
            self.full_store as f64 / 1_048_576.0,
            self.incremental_store as f64 / 1_048_576.0,
            self.incremental.len(),
            self.sandbox_total_cpu.as_secs_f64()
        );
        if !self.cycle_stores.is_empty() {
            let sizes: Vec<String> = self
                .cycle_stores
                .iter()
                .map(|size| format!("{:.0}", *size as f64 / 1_048_576.0))
                .collect();
            out += &format!(
                "Store after each incremental cycle, MiB: {}.\n",
                sizes.join(", ")
            );
        }
        out
    }
}

fn row(
    cycle: &str,
    stage: &str,
    wall: Duration,
    peak_rss_kib: u64,
    cpu: Duration,
    sandbox_cpu: Duration,
) -> String {
    format!(
        "| {cycle} | {stage} | {:.1} | {:.0} | {:.1} | {:.1} |\n",
        wall.as_secs_f64(),
        peak_rss_kib as f64 / 1024.0,
        cpu.as_secs_f64(),
        sandbox_cpu.as_secs_f64()
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Describes the machine: logical CPUs, memory and CPU model, from `/proc`.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1_048_576.0);
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, name)| {
            name.trim().to_string()
        });
    format!("{cpus} logical CPUs ({model}), {memory_gib:.1} GiB RAM")
}
