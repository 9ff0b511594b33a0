//! The `leadscore` command line.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use tracing_subscriber::EnvFilter;

use leadscore::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs its own starts, stops and jobs at info by default, because it runs
    // unattended and its log is the only record of what it did.
    let daemon = matches!(cli.command, Command::Run { once: false, .. });
    let default_level = match cli.verbose {
        0 if daemon => "warn,leadscore=info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colour codes only when a person is watching; cron mail and log files get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    install_broken_pipe_hook();
    // A write to a closed standard output (`leadscore check | head`) panics inside `println!`.
    // The hook keeps that panic quiet and the process exits as a shell expects after SIGPIPE,
    // after unwinding has closed the store.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(cli::main(cli))
    })) {
        Ok(code) => code,
        Err(_) if STDOUT_CLOSED.load(Ordering::SeqCst) => ExitCode::from(BROKEN_PIPE_EXIT_CODE),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Exit code after standard output was closed early: 128 + SIGPIPE (13), as a shell reports
/// a command that SIGPIPE ended.
const BROKEN_PIPE_EXIT_CODE: u8 = 141;

/// Set when a panic came from printing to a closed standard output.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Installs a panic hook that stays silent for the standard library's "failed printing to
/// stdout: Broken pipe" panic and passes every other panic to the default hook.
fn install_broken_pipe_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        } else {
            default_hook(info);
        }
    }));
}
