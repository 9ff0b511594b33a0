//! The command line: one subcommand per pipeline step, plus `demo`, `sandbox` and `init`.
//!
//! Exit codes:
//! - 0 success;
//! - 1 a step failed;
//! - 2 the configuration or a secret is invalid, or a model version is not in the store;
//! - 3 the push finished but the CRM rejected some records;
//! - 4 the run stopped because its share of the CRM's daily API calls (`api_budget_share`) is
//!   spent or the CRM's own daily limit is reached. What the run pulled or wrote is saved,
//!   and the next run resumes there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{Config, Level};
use crate::demo::{self, CrmKind, HUBSPOT_SANDBOX_PORT, SANDBOX_PORT};
use crate::pipeline::{self, PipelineError};
use crate::run::{connect, run_once};
use crate::scoring;
use crate::store::Store;
use crate::training;
use crate::writeback::{self, FailedWrite};
use leadscore_connector::ConnectorError;

#[derive(Parser, Debug)]
#[command(
    name = "leadscore",
    version,
    about = "Predictive account scores for medical-device sales teams, written back into the CRM"
)]
pub struct Cli {
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "leadscore.toml")]
    pub config: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Work on one scoring level (account, contact or lead) instead of every configured one;
    /// `models` commands default to account.
    #[arg(long, value_parser = parse_level)]
    pub level: Option<Level>,
    /// With several `[[connector]]` tables, work with the one of this name only.
    #[arg(long)]
    pub connector: Option<String>,
}

fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text)
        .ok_or_else(|| format!("unknown level {text:?}; expected one of: {}", Level::NAMES))
}

/// Returns the levels a step works on: the one named by `--level`, or every configured level.
fn levels_for(args: &ConfigArgs, config: &Config) -> Result<Vec<Level>, Failure> {
    match args.level {
        None => Ok(config.scoring.levels.clone()),
        Some(level) if config.scoring.levels.contains(&level) => Ok(vec![level]),
        Some(level) => Err(config_failure(format!(
            "--level {level}: the configuration does not score {level}s; add \"{level}\" to [scoring] levels"
        ))),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole pipeline against a local CRM sandbox seeded with real CMS hospitals.
    Demo {
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// The CRM the sandbox imitates. The HubSpot demo uses 800 hospitals unless
        /// --hospitals is given.
        #[arg(long, value_enum, default_value_t = CrmKind::Salesforce)]
        crm: CrmKind,
        /// Use only this many hospitals (all 5,421 by default). At least 400, because 400
        /// hospitals give 251 closed deals and training needs 200 by default.
        #[arg(long, value_parser = clap::value_parser!(u64).range(400..))]
        hospitals: Option<u64>,
        /// After the first run, write train.csv and holdout.csv of the closed deals (id,
        /// close_date, won and the model's feature columns, split as training splits) into
        /// this directory, created if missing.
        #[arg(long, value_name = "DIR")]
        export_examples: Option<PathBuf>,
        /// Folder for the territory lists, the outcomes report, the model card and a copy of
        /// the alert tasks, created if missing.
        #[arg(long, value_name = "DIR", default_value = "leadscore-demo")]
        out: PathBuf,
    },
    /// Serve the Salesforce and HubSpot sandboxes in the foreground on 127.0.0.1.
    Sandbox {
        /// Port of the Salesforce sandbox.
        #[arg(long, default_value_t = SANDBOX_PORT)]
        port: u16,
        /// Port of the HubSpot sandbox.
        #[arg(long, default_value_t = HUBSPOT_SANDBOX_PORT)]
        hubspot_port: u16,
        /// Use only this many hospitals, at least 1 (all 5,421 by default).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        hospitals: Option<u64>,
        /// Seed the Salesforce sandbox with this many copies of the org under new ids, for
        /// load tests: 32 copies of all hospitals give about 1,000,000 contacts. The HubSpot
        /// sandbox keeps one copy.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..i64::from(leadscore_demo_org::scale::MAX_SCALE)))]
        scale: u32,
        /// Seconds an access token stays valid, at least 1.
        #[arg(long, default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
        token_ttl_secs: u64,
        /// Serve HTTPS with certificates from a CA generated at start; the first output line
        /// names the CA files to trust (`ca_cert`, `hubspot_ca_cert`).
        #[arg(long)]
        tls: bool,
        /// Start the Salesforce org without the custom fields leadscore writes and reads, as
        /// a real org is before `leadscore check --fix` creates them.
        #[arg(long)]
        bare: bool,
        /// A scope the HubSpot sandbox's tokens lack (repeatable), so that calls needing it
        /// get 403 MISSING_SCOPES, as from a private app created without that scope: for
        /// rehearsing the error, for example `--hubspot-withhold-scope crm.objects.deals.read`.
        #[arg(long = "hubspot-withhold-scope", value_name = "SCOPE")]
        hubspot_withheld_scopes: Vec<String>,
    },
    /// Print a configuration file to standard output.
    Init {
        /// The CRM the configuration connects to.
        #[arg(long, value_enum, default_value_t = CrmKind::Salesforce)]
        crm: CrmKind,
        /// Write a configuration for `leadscore sandbox` on its default port, with the
        /// sandbox's client id and scores as of the end of its history. Without this flag the
        /// configuration is the annotated template for a real org.
        #[arg(long, conflicts_with = "reference")]
        sandbox: bool,
        /// Print the Markdown reference of every configuration table and key instead (the
        /// content of docs/CONFIG.md).
        #[arg(long)]
        reference: bool,
    },
    /// Verify credentials and that every configured field exists in the org.
    Check {
        #[command(flatten)]
        args: ConfigArgs,
        /// First create the write-back and feedback fields the CRM lacks: HubSpot properties,
        /// or Salesforce custom fields granted to the API user through a permission set.
        #[arg(long)]
        fix: bool,
        /// Validate the file, the secrets in the environment and the files and folders it
        /// names, without contacting the CRM. Exits 2 listing every problem.
        #[arg(long, conflicts_with = "fix")]
        offline: bool,
    },
    /// Pull changed records into the store.
    Pull(ConfigArgs),
    /// Train a model on the closed deals in the store.
    Train(ConfigArgs),
    /// Score open accounts with the current model.
    Score {
        #[command(flatten)]
        args: ConfigArgs,
        /// Score every open record again and replace the level's scores at once, even the rows
        /// whose inputs have not changed since the last run.
        #[arg(long)]
        whole: bool,
    },
    /// Write changed scores back to the CRM.
    Push {
        #[command(flatten)]
        args: ConfigArgs,
        /// Print the records, fields, old and new values a push would write, and counts by
        /// object and field, without writing anything.
        #[arg(long, visible_alias = "dry-run")]
        plan: bool,
    },
    /// List, show, promote or roll back trained models.
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
    /// Run the daemon: the jobs of [schedule] on their cron schedules, with /healthz and
    /// /metrics on [daemon] listen. With --once, run check, pull, train, score and push once.
    Run {
        #[command(flatten)]
        args: ConfigArgs,
        /// Run the steps once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Show the daemon's last job runs, recent failures, live models and today's API budget.
    Status(ConfigArgs),
    /// Train and evaluate on a CSV export with no CRM: column types, checks, holdout metrics.
    Evaluate(crate::evaluate::EvaluateArgs),
    /// Write a report file.
    Report {
        #[command(subcommand)]
        target: ReportTarget,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportTarget {
    /// Write the model card (model-card.html and model-card.json) of the live or a named model.
    Model(ReportModelArgs),
    /// Write each rep's territory priority list (CSV and HTML) and the index page linking them.
    Lists(ReportListsArgs),
    /// Write the predicted-versus-actual report (HTML, CSV and JSON) of deals closed since
    /// their record was scored.
    Outcomes(ReportOutcomesArgs),
}

#[derive(Args, Debug)]
pub struct ReportOutcomesArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "leadscore.toml")]
    pub config: PathBuf,
    /// Level whose outcomes are reported.
    #[arg(long, value_parser = parse_level, default_value = "account")]
    pub level: Level,
    /// With several `[[connector]]` tables, the connector whose outcomes are reported.
    #[arg(long)]
    pub connector: Option<String>,
    /// Directory to write the files into, created if missing (`[outcomes] folder` by default).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportListsArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "leadscore.toml")]
    pub config: PathBuf,
    /// With several `[[connector]]` tables, the connector whose accounts are listed.
    #[arg(long)]
    pub connector: Option<String>,
    /// Directory to write the lists into, created if missing (`[territory] folder` by default).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print what was written as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReportModelArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "leadscore.toml")]
    pub config: PathBuf,
    /// Model version to report (the live model by default).
    #[arg(long)]
    pub version: Option<String>,
    /// Level whose live model is reported when no version is named.
    #[arg(long, value_parser = parse_level, default_value = "account")]
    pub level: Level,
    /// With several `[[connector]]` tables, the connector whose model is reported.
    #[arg(long)]
    pub connector: Option<String>,
    /// Directory to write the two files into, created if missing.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List every stored model with its training time, holdout AUC and status.
    List(ConfigArgs),
    /// Show one model's metadata, metrics and promotion history.
    Show {
        /// Model version, as `models list` prints it.
        version: String,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Make a stored model live after shadow-scoring the open accounts with it.
    Promote {
        /// Model version, as `models list` prints it.
        version: String,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Make an earlier model live again: the named version, or the one live before the current.
    Rollback {
        /// Model version to restore (by default, the model live before the current one).
        version: Option<String>,
        #[command(flatten)]
        args: ConfigArgs,
    },
}

/// Exit code of a run that stopped because its API budget was spent.
pub const BUDGET_SPENT_EXIT_CODE: u8 = 4;

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

/// Maps errors that mean "this step failed" to exit code 1, showing their whole cause chain.
macro_rules! step_failure {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for Failure {
            fn from(err: $error) -> Self {
                Failure {
                    code: 1,
                    message: format!("{err:#}"),
                }
            }
        })*
    };
}

step_failure!(
    anyhow::Error,
    std::io::Error,
    serde_json::Error,
    crate::store::StoreError,
    leadscore_demo_org::DemoError,
    leadscore_sandbox::SandboxError,
);

impl From<PipelineError> for Failure {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::Mapping(problems) => config_failure(format!(
                "the configuration does not match the org:\n  {}",
                problems.join("\n  ")
            )),
            PipelineError::Config(message) => config_failure(message),
            PipelineError::Connector(ConnectorError::BudgetSpent(message)) => Failure {
                code: BUDGET_SPENT_EXIT_CODE,
                message: format!("stopped at a checkpoint: {message}"),
            },
            // Rejected credentials are a configuration problem, not a failed step.
            // Most connector messages already end with a "Check ..." or "Grant ..." sentence
            // that names the fix, so a second piece of advice would only repeat it.
            PipelineError::Connector(ConnectorError::Auth(message))
                if message.contains(". Check ") || message.contains(". Grant ") =>
            {
                config_failure(format!("authentication failed: {message}"))
            }
            PipelineError::Connector(ConnectorError::Auth(message)) => config_failure(format!(
                "authentication failed: {message}; check the credentials in the environment variables that [connector] names, and the file refresh_token_file names when it is set"
            )),
            // The CRM's own daily limit is spent: like a spent budget, the next run (after
            // the limit resets) goes on from the last checkpoint.
            PipelineError::Connector(ConnectorError::LimitExceeded(message)) => Failure {
                code: BUDGET_SPENT_EXIT_CODE,
                message: format!("stopped at a checkpoint: the CRM's API limit is reached: {message}; the next run after the limit resets goes on from here"),
            },
            // A connector setting the CRM showed to be wrong, such as an unknown stage.
            PipelineError::Connector(ConnectorError::Rejected { code, message })
                if code == "INVALID_CONFIG" =>
            {
                config_failure(format!("[connector]: {message}"))
            }
            PipelineError::Connector(ConnectorError::Transport(message))
                if message.contains("onnect") =>
            {
                Failure {
                    code: 1,
                    message: format!(
                        "CRM request failed: {message}; check [connector] login_url or base_url and that the CRM (or sandbox) is reachable"
                    ),
                }
            }
            other => Failure {
                code: 1,
                message: other.to_string(),
            },
        }
    }
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Self {
        Failure::from(PipelineError::from(err))
    }
}

impl From<crate::registry::RegistryError> for Failure {
    fn from(err: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError;
        let code = match err {
            // A version that is not in the store is a bad argument, like a bad config value.
            RegistryError::UnknownVersion { .. } => 2,
            _ => 1,
        };
        Failure {
            code,
            message: format!("{err:#}"),
        }
    }
}

impl From<crate::report::ReportError> for Failure {
    fn from(err: crate::report::ReportError) -> Self {
        use crate::report::ReportError;
        let code = match err {
            // A version that is not in the store is a bad argument, as for `models show`.
            ReportError::VersionNotFound { .. } => 2,
            _ => 1,
        };
        Failure {
            code,
            message: format!("{err:#}"),
        }
    }
}

fn config_failure(message: String) -> Failure {
    Failure { code: 2, message }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn load(args: &ConfigArgs) -> Result<Config, Failure> {
    Config::load(&args.config).map_err(|err| config_failure(err.to_string()))
}

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match dispatch(cli.command).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message.trim_end());
            ExitCode::from(failure.code)
        }
    }
}

/// Returns the configurations a step runs with: one per connector, or the one `--connector` names.
fn configs(args: &ConfigArgs) -> Result<Vec<Config>, Failure> {
    let config = load(args)?;
    let all = config.per_connector();
    match &args.connector {
        None => Ok(all),
        Some(name) => {
            let names: Vec<String> = all.iter().map(|c| c.connector_name.clone()).collect();
            let chosen: Vec<Config> = all
                .into_iter()
                .filter(|c| c.connector_name == *name)
                .collect();
            if chosen.is_empty() {
                return Err(config_failure(format!(
                    "--connector {name}: the configuration has no connector of that name; it has {}",
                    names.join(", ")
                )));
            }
            Ok(chosen)
        }
    }
}

/// Runs a step once per connector and returns the highest exit code.
macro_rules! each_connector {
    ($args:ident, $config:ident => $step:expr) => {{
        let mut code = 0;
        for $config in configs(&$args)? {
            code = code.max($step?);
        }
        Ok(code)
    }};
}

async fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Demo {
            json,
            crm,
            hospitals,
            export_examples,
            out,
        } => run_demo(json, crm, hospitals, export_examples, &out).await,
        Command::Sandbox {
            port,
            hubspot_port,
            hospitals,
            scale,
            token_ttl_secs,
            tls,
            bare,
            hubspot_withheld_scopes,
        } => {
            let seed = SandboxSeed { hospitals, scale };
            let shape = SandboxShape {
                token_ttl_secs,
                tls,
                bare,
                hubspot_withheld_scopes,
            };
            serve_sandbox(port, hubspot_port, seed, shape).await
        }
        Command::Init {
            reference: true, ..
        } => {
            print!("{}", crate::config::reference::render_markdown());
            Ok(0)
        }
        Command::Init {
            crm,
            sandbox,
            reference: false,
        } => {
            let text = match (crm, sandbox) {
                (CrmKind::Salesforce, true) => demo::sandbox_config(
                    &format!("http://127.0.0.1:{SANDBOX_PORT}"),
                    "leadscore-data",
                ),
                (CrmKind::Salesforce, false) => demo::EXAMPLE_CONFIG.to_string(),
                (CrmKind::Hubspot, true) => demo::hubspot_sandbox_config(
                    &format!("http://127.0.0.1:{HUBSPOT_SANDBOX_PORT}"),
                    "leadscore-data",
                ),
                (CrmKind::Hubspot, false) => demo::HUBSPOT_EXAMPLE_CONFIG.to_string(),
            };
            print!("{text}");
            Ok(0)
        }
        Command::Check {
            args,
            offline: true,
            ..
        } => step_check_offline(&args),
        Command::Check { args, fix, .. } => {
            each_connector!(args, config => step_check(&args, &config, fix).await)
        }
        Command::Pull(args) => each_connector!(args, config => step_pull(&args, &config).await),
        Command::Train(args) => each_connector!(args, config => step_train(&args, &config)),
        Command::Score { args, whole } => {
            each_connector!(args, config => step_score(&args, &config, whole))
        }
        Command::Push { args, plan: false } => {
            each_connector!(args, config => step_push(&args, &config).await)
        }
        Command::Push { args, plan: true } => {
            each_connector!(args, config => step_push_plan(&args, &config).await)
        }
        Command::Models { action } => step_models(action),
        Command::Run { args, once } => {
            if !once {
                let config = load(&args)?;
                // A missing secret stops the start rather than failing every scheduled run.
                for connector_config in config.per_connector() {
                    connector_config.secrets().map_err(config_failure)?;
                }
                check_webhook_secret(&config)?;
                crate::daemon::run(&args.config, config)
                    .await
                    .map_err(|message| Failure { code: 1, message })?;
                return Ok(0);
            }
            each_connector!(args, config => step_run(&args, &config).await)
        }
        Command::Status(args) => {
            let text = crate::status::render(&configs(&args)?, args.json)
                .map_err(|message| Failure { code: 1, message })?;
            print!("{text}");
            Ok(0)
        }
        Command::Evaluate(args) => step_evaluate(&args),
        Command::Report {
            target: ReportTarget::Model(args),
        } => step_report_model(&args),
        Command::Report {
            target: ReportTarget::Lists(args),
        } => step_report_lists(&args),
        Command::Report {
            target: ReportTarget::Outcomes(args),
        } => step_report_outcomes(&args),
    }
}

async fn run_demo(
    json: bool,
    crm: CrmKind,
    hospitals: Option<u64>,
    export_examples: Option<PathBuf>,
    out: &Path,
) -> Result<u8, Failure> {
    let mut hospitals = hospitals.map(|n| n as usize);
    if crm == CrmKind::Hubspot && hospitals.is_none() {
        // Under HubSpot's request limits a first pull of all 5,421 hospitals' history takes
        // about as long as it would from a real portal of that size: minutes, not seconds.
        hospitals = Some(demo::HUBSPOT_DEMO_HOSPITALS);
        eprintln!(
            "The HubSpot demo uses {} hospitals by default, because HubSpot's request limits make a full-size first pull take minutes; pass --hospitals 5421 for all of them.",
            demo::HUBSPOT_DEMO_HOSPITALS
        );
    }
    let workdir = tempfile::tempdir()?;
    let summary = demo::run_demo_on(
        crm,
        hospitals,
        workdir.path(),
        export_examples.as_deref(),
        out,
    )
    .await?;
    if json {
        print_json(&summary)?;
    } else {
        print!("{}", demo::render(&summary));
    }
    Ok(if summary.failed > 0 { 3 } else { 0 })
}

/// The org that `leadscore sandbox` serves: how many hospitals and how many copies.
struct SandboxSeed {
    hospitals: Option<u64>,
    scale: u32,
}

/// Behaviour settings of the sandboxes, apart from their data.
struct SandboxShape {
    token_ttl_secs: u64,
    tls: bool,
    bare: bool,
    hubspot_withheld_scopes: Vec<String>,
}

async fn serve_sandbox(
    port: u16,
    hubspot_port: u16,
    seed: SandboxSeed,
    shape: SandboxShape,
) -> Result<u8, Failure> {
    let SandboxShape {
        token_ttl_secs,
        tls,
        bare,
        hubspot_withheld_scopes,
    } = shape;
    let demo_options = leadscore_demo_org::DemoOptions {
        max_hospitals: seed.hospitals.map(|n| n as usize),
        ..Default::default()
    };
    let org = leadscore_demo_org::generate(&demo_options)?;
    let options = leadscore_sandbox::SandboxOptions {
        token_ttl: std::time::Duration::from_secs(token_ttl_secs),
        bare,
        ..Default::default()
    };
    let listen_failure = |port: u16, flag: &str, err: std::io::Error| Failure {
        code: 1,
        message: format!("cannot listen on 127.0.0.1:{port}: {err}; pick another port with {flag}"),
    };
    let hubspot_options = leadscore_sandbox::hubspot::HubSpotOptions {
        access_token_ttl: std::time::Duration::from_secs(token_ttl_secs),
        withheld_scopes: hubspot_withheld_scopes,
        ..Default::default()
    };
    let hubspot =
        leadscore_sandbox::hubspot::HubSpotSandbox::new(org.records.clone(), hubspot_options)?;
    let hubspot_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, hubspot_port));
    let hubspot = if tls {
        hubspot.serve_tls(hubspot_addr).await
    } else {
        hubspot.serve(hubspot_addr).await
    }
    .map_err(|err| listen_failure(hubspot_port, "--hubspot-port", err))?;
    let sandbox = leadscore_sandbox::Sandbox::new(org.records.clone(), options)?;
    // Each copy is built as JSON, moved into the sandbox's typed rows and dropped, so besides
    // the org itself only one copy exists as JSON at a time.
    for copy in 1..seed.scale {
        let records = leadscore_demo_org::scale::scaled_copy(&org, copy, demo_options.seed)?;
        sandbox.add_records(records)?;
    }
    drop(org);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sandbox = if tls {
        sandbox.serve_tls(addr).await
    } else {
        sandbox.serve(addr).await
    }
    .map_err(|err| listen_failure(port, "--port", err))?;
    let options = sandbox.options();
    let hubspot_options = hubspot.options();
    // These are the sandboxes' own demo credentials, printed so clients can connect; they open
    // nothing but this local process.
    let mut banner = serde_json::json!({
        "salesforce_url": sandbox.url(),
        "client_id": options.client_id,
        "client_secret": options.client_secret,
        "refresh_token": options.refresh_token,
        "client_secret_env": "LEADSCORE_SF_CLIENT_SECRET",
        "refresh_token_env": "LEADSCORE_SF_REFRESH_TOKEN",
        "hubspot_url": hubspot.url(),
        "hubspot_token": hubspot_options.private_app_token,
        "hubspot_token_env": "LEADSCORE_HUBSPOT_TOKEN",
        "hubspot_client_id": hubspot_options.client_id,
        "hubspot_client_secret": hubspot_options.client_secret,
        "hubspot_refresh_token": hubspot_options.refresh_token,
    });
    if let (Some(ca), Some(hubspot_ca)) = (sandbox.ca_cert_path(), hubspot.ca_cert_path()) {
        banner["ca_cert"] = serde_json::json!(ca.display().to_string());
        banner["hubspot_ca_cert"] = serde_json::json!(hubspot_ca.display().to_string());
    }
    println!("{banner}");
    eprintln!(
        "Salesforce sandbox listening on {}, HubSpot sandbox on {}; press Ctrl-C (or send SIGTERM) to stop.",
        sandbox.url(),
        hubspot.url()
    );
    // Container runtimes and systemd stop a process with SIGTERM; a terminal sends SIGINT.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    sandbox.shutdown().await;
    hubspot.shutdown().await;
    Ok(0)
}

/// Opens the store and connects, reporting configuration problems with exit code 2.
/// With several connectors, `--connector` must name the one whose store is meant.
fn open(args: &ConfigArgs) -> Result<(Config, Store), Failure> {
    let mut configs = configs(args)?;
    if configs.len() > 1 {
        let names: Vec<&str> = configs.iter().map(|c| c.connector_name.as_str()).collect();
        return Err(config_failure(format!(
            "the configuration has {} connectors ({}); name one with --connector",
            names.len(),
            names.join(", ")
        )));
    }
    let config = configs.remove(0);
    let store = Store::open(&config.store_path)?;
    Ok((config, store))
}

/// Fails with exit code 2 when `[webhook]` is set but its signing key is not in the
/// environment, so the admin learns it at `check` or start-up, not when the first event is
/// dropped.
fn check_webhook_secret(config: &Config) -> Result<(), Failure> {
    match &config.alerts.webhook {
        Some(webhook) => crate::webhook::Webhook::from_config(webhook)
            .map(|_| ())
            .map_err(|err| config_failure(err.to_string())),
        None => Ok(()),
    }
}

fn connector_for(config: &Config) -> Result<crate::run::AnyConnector, Failure> {
    let secrets = config.secrets().map_err(config_failure)?;
    Ok(connect(config, secrets)?)
}

/// Connects with the API budget shared by all runs of the UTC day through the store's ledger.
fn budgeted_connector(config: &Config, store: &Store) -> Result<crate::run::AnyConnector, Failure> {
    Ok(connector_for(config)?.with_budget_ledger(store.budget_ledger()))
}

/// A step's JSON report with the API budget figures of the run and the day added as `budget`.
#[derive(Serialize)]
struct WithBudget<'a, T> {
    #[serde(flatten)]
    report: &'a T,
    budget: Option<leadscore_connector::limits::BudgetUsage>,
}

/// Converts the error of a step into a failure. When a spent API budget stopped the step
/// before it stored a page or settled a write batch, the failure states that the run made no
/// progress and how to fix it. `before` is the store's checkpoint marker from the step's start.
fn budget_failure(
    err: PipelineError,
    store: &Store,
    before: &crate::store::CheckpointMarker,
    connector: &crate::run::AnyConnector,
    config: &Config,
) -> Failure {
    if !matches!(
        err,
        PipelineError::Connector(ConnectorError::BudgetSpent(_))
    ) {
        return err.into();
    }
    if store.checkpoint_marker().ok().as_ref() != Some(before) {
        return err.into();
    }
    let usage = connector.budget_usage().unwrap_or_default();
    let allowance = usage
        .allowance_today
        .map_or("its".to_string(), |n| format!("the {n}"));
    Failure {
        code: BUDGET_SPENT_EXIT_CODE,
        message: format!(
            "no progress was made: today's share of the CRM's API calls is spent before this run \
             stored a page or settled a write batch (leadscore used {} of {allowance} calls it \
             may send per UTC day, {} of them in this run). Wait for the next UTC day, when a \
             new allowance starts, or raise [connector] api_budget_share (now {})",
            usage.used_today,
            usage.used_this_run,
            config.connector.transport().api_budget_share
        ),
    }
}

/// Runs `check --offline`: exit 0 when nothing is wrong, else 2 with every problem listed.
fn step_check_offline(args: &ConfigArgs) -> Result<u8, Failure> {
    let report = match configs(args) {
        Ok(configs) => crate::offline_check::check(&configs),
        // A file that does not parse is one more problem in the report, so `--json` callers
        // read the same shape whatever went wrong.
        Err(failure) if args.json => crate::offline_check::OfflineReport {
            connectors: Vec::new(),
            problems: vec![failure.message],
        },
        Err(failure) => return Err(failure),
    };
    if args.json {
        print_json(&report)?;
    } else if report.problems.is_empty() {
        println!(
            "{} is valid for connector {}; the CRM was not contacted.",
            args.config.display(),
            report.connectors.join(", ")
        );
    } else {
        let noun = if report.problems.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        eprintln!(
            "error: {} ({} {noun}):",
            args.config.display(),
            report.problems.len()
        );
        for problem in &report.problems {
            eprintln!("  {problem}");
        }
    }
    Ok(if report.problems.is_empty() { 0 } else { 2 })
}

async fn step_check(args: &ConfigArgs, config: &Config, fix: bool) -> Result<u8, Failure> {
    let connector = connector_for(config)?;
    check_webhook_secret(config)?;
    let mut fix_report = None;
    if fix {
        let report = crate::setup::fix(&connector, config).await?;
        if args.json {
            fix_report = Some(report);
        } else {
            for created in &report.created {
                println!("Created {created}.");
            }
            for mismatched in &report.mismatched {
                eprintln!("warning: {mismatched}; left unchanged, fix it in the CRM");
            }
            if let Some(set) = &report.permission_set {
                let verb = if set.created { "Created" } else { "Using" };
                println!("{verb} permission set {}.", set.name);
            }
            for granted in &report.granted {
                println!("Granted the API user access to {granted}.");
            }
            if report.assigned {
                println!("Assigned the permission set to the API user.");
            }
            let changed = !report.created.is_empty()
                || !report.granted.is_empty()
                || report.assigned
                || report
                    .permission_set
                    .as_ref()
                    .is_some_and(|set| set.created);
            if !changed && report.mismatched.is_empty() {
                println!(
                    "Every write-back and feedback field exists already; --fix changed nothing."
                );
            }
        }
    }
    // The field report is printed whether or not the check passes, so the output lists every
    // missing or read-only field at once. It fails on a rejected login, an unreachable CRM or
    // a spent API allowance, which would fail the check the same way, so that error is
    // reported once here instead of again after the check's own retries.
    let statuses = match crate::field_report::build(&connector, config).await {
        Ok(statuses) => Some(statuses),
        Err(error) => {
            if args.json {
                print_json(&serde_json::json!({ "fix": fix_report, "fields": null }))?;
            }
            return Err(error.into());
        }
    };
    let report = match pipeline::check(&connector, config).await {
        Ok(report) => report,
        Err(error) => {
            if args.json {
                let output = serde_json::json!({ "fix": fix_report, "fields": statuses });
                print_json(&output)?;
            } else if let Some(statuses) = &statuses {
                print!("{}", crate::field_report::table(statuses));
            }
            return Err(error.into());
        }
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("fields".to_string(), serde_json::to_value(&statuses)?);
            if let Some(fix_report) = &fix_report {
                object.insert("fix".to_string(), serde_json::to_value(fix_report)?);
            }
        }
        print_json(&value)?;
    } else {
        if let Some(statuses) = &statuses {
            print!("{}", crate::field_report::table(statuses));
        }
        let fields: usize = report.objects.iter().map(|o| o.fields).sum();
        println!(
            "Connected to {}; {} fields on {} objects and the write-back fields check out. API usage {}/{}.",
            config.connector.url(),
            fields,
            report.objects.len(),
            report.api_usage.used,
            report.api_usage.max
        );
        for problem in &report.feedback {
            eprintln!("warning: {problem}");
        }
    }
    Ok(0)
}

async fn step_pull(args: &ConfigArgs, config: &Config) -> Result<u8, Failure> {
    let store = Store::open(&config.store_path)?;
    let connector = budgeted_connector(config, &store)?;
    let before = store.checkpoint_marker()?;
    let report = pipeline::pull(&connector, &store, config)
        .await
        .map_err(|err| budget_failure(err, &store, &before, &connector, config))?;
    if args.json {
        print_json(&WithBudget {
            report: &report,
            budget: connector.budget_usage(),
        })?;
    } else {
        let parts: Vec<String> = report
            .objects
            .iter()
            .map(|o| format!("{} {}", o.object, o.pulled))
            .collect();
        println!(
            "Pulled {} changed records ({}).",
            report.pulled,
            parts.join(", ")
        );
        if report.feedback.recorded > 0 {
            println!("Stored {} new rep flags.", report.feedback.recorded);
        }
        for flag in &report.feedback.unknown {
            eprintln!(
                "warning: {} {} has the flag value {:?}, which is not one of {}; it is stored as unknown",
                flag.object,
                flag.id,
                flag.value,
                crate::feedback::FLAG_VALUES.join(", ")
            );
        }
    }
    Ok(0)
}

/// The outcome of one level's step, as `--json` prints it: the report, or the error.
#[derive(Serialize)]
#[serde(untagged)]
enum LevelOutcome<T> {
    Done(T),
    Failed { level: Level, error: String },
}

/// Runs `step` for each level, carrying on past a failing level so that every level's outcome
/// is reported. Returns the outcomes and the exit code of the worst failure.
fn per_level<T>(
    levels: Vec<Level>,
    mut step: impl FnMut(Level) -> Result<T, PipelineError>,
) -> (Vec<LevelOutcome<T>>, u8) {
    let mut code = 0;
    let outcomes = levels
        .into_iter()
        .map(|level| match step(level) {
            Ok(report) => LevelOutcome::Done(report),
            Err(err) => {
                let failure = Failure::from(err);
                code = code.max(failure.code);
                // Some step errors name their level already; the output adds it once.
                let prefix = format!("{level} level: ");
                let error = match failure.message.strip_prefix(&prefix) {
                    Some(rest) => rest.to_string(),
                    None => failure.message,
                };
                LevelOutcome::Failed { level, error }
            }
        })
        .collect();
    (outcomes, code)
}

fn step_train(args: &ConfigArgs, config: &Config) -> Result<u8, Failure> {
    let store = Store::open(&config.store_path)?;
    // The levels share one load of the records, made by the first level trained.
    let mut loaded = None;
    let (outcomes, code) = per_level(levels_for(args, config)?, |level| {
        training::train_sharing(&store.at_level(level), config, Utc::now(), &mut loaded)
    });
    if args.json {
        print_json(&outcomes)?;
        return Ok(code);
    }
    for outcome in &outcomes {
        let report = match outcome {
            LevelOutcome::Done(report) => report,
            LevelOutcome::Failed { level, error } => {
                eprintln!("error: {level} level: {error}");
                continue;
            }
        };
        let auc = report
            .holdout_auc
            .map_or("n/a".to_string(), |a| format!("{a:.3}"));
        let examples = match report.level {
            Level::Lead => "decided leads (converted or aged out)",
            Level::Contact => "contact roles on closed deals",
            Level::Account => "closed deals",
        };
        let calibration = match report.calibration_method.as_str() {
            "none" => "uncalibrated".to_string(),
            method => format!("{method} calibration"),
        };
        println!(
            "Trained {} model {} ({}, {calibration}) on {} {examples} ({} won); holdout of the latest {}: AUC {auc}, log loss {:.3} (baseline {:.3}, always predicting the training rate), expected calibration error {:.3}.",
            report.level,
            report.version,
            report.chosen,
            report.examples,
            report.won,
            report.holdout_rows,
            report.holdout_log_loss,
            report.baseline_log_loss,
            report.holdout_ece
        );
        for warning in &report.warnings {
            eprintln!("warning: {} level: {warning}", report.level);
        }
        print!("{}", crate::registry::render_publish(&report.publish));
    }
    Ok(code)
}

fn step_score(args: &ConfigArgs, config: &Config, whole: bool) -> Result<u8, Failure> {
    let store = Store::open(&config.store_path)?;
    // The levels share one history, built from the store by the first level scored.
    let mut history = None;
    let (outcomes, code) = per_level(levels_for(args, config)?, |level| {
        let at_level = store.at_level(level);
        if whole {
            scoring::score_whole(&at_level, config, Utc::now(), &mut history)
        } else {
            scoring::score_sharing(&at_level, config, Utc::now(), &mut history)
        }
    });
    if args.json {
        print_json(&outcomes)?;
        return Ok(code);
    }
    for outcome in &outcomes {
        let report = match outcome {
            LevelOutcome::Done(report) => report,
            LevelOutcome::Failed { level, error } => {
                eprintln!("error: {level} level: {error}");
                continue;
            }
        };
        // Tier order, not the alphabetical order of the labels.
        let tiers: Vec<String> = config
            .tiers
            .labels
            .iter()
            .map(|label| format!("{label} {}", report.tiers.get(label).unwrap_or(&0)))
            .collect();
        let ready = report
            .sales_ready
            .map(|n| format!(", {n} sales-ready ({} new)", report.newly_sales_ready))
            .unwrap_or_default();
        let kept = report.scored - report.rescored;
        let kept = if kept > 0 {
            format!(" ({kept} kept from the last run, their inputs unchanged)")
        } else {
            String::new()
        };
        println!(
            "Scored {} open {}s{kept} with model {}: {}; {} with a hint{ready}.",
            report.scored,
            report.level,
            report.model_version,
            tiers.join(", "),
            report.hints
        );
    }
    Ok(code)
}

fn print_failures(failed: &[FailedWrite]) {
    for failure in failed {
        let status = if failure.held {
            " (rejected before; sent again when the record or its values change)"
        } else if failure.retryable {
            " (will retry on the next push)"
        } else {
            ""
        };
        eprintln!(
            "rejected {} {}: {}: {}{status}",
            failure.object, failure.id, failure.code, failure.message
        );
        if !failure.hint.is_empty() {
            eprintln!("  hint: {}", failure.hint);
        }
    }
}

/// Prints what a push would write, reading the CRM's metadata but writing nothing to the CRM
/// or the store.
async fn step_push_plan(args: &ConfigArgs, config: &Config) -> Result<u8, Failure> {
    let store = Store::open(&config.store_path)?;
    let connector = budgeted_connector(config, &store)?;
    let check = pipeline::check(&connector, config).await?;
    let levels = levels_for(args, config)?;
    let preview = writeback::preview(&store, config, &levels, &check.reasons_max_len, Utc::now())?;
    if args.json {
        print_json(&preview)?;
        return Ok(0);
    }
    for record in &preview.records {
        let fields: Vec<String> = record
            .fields
            .iter()
            .map(|f| format!("{} {} -> {}", f.field, f.old, f.new))
            .collect();
        println!("{} {}: {}", record.object, record.id, fields.join("; "));
    }
    let count = |map: &std::collections::BTreeMap<String, usize>| {
        map.iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "Would write {} records ({}); by field: {}. {} unchanged, {} held back by earlier rejections, {} skipped as deleted.",
        preview.changes,
        count(&preview.by_object),
        count(&preview.by_field),
        preview.unchanged,
        preview.held.len(),
        preview.skipped_deleted
    );
    if preview.unsettled_batches > 0 {
        println!(
            "{} batches of an interrupted push are unsettled; the next push reads their records back before writing.",
            preview.unsettled_batches
        );
    }
    Ok(0)
}

async fn step_push(args: &ConfigArgs, config: &Config) -> Result<u8, Failure> {
    let store = Store::open(&config.store_path)?;
    let connector = budgeted_connector(config, &store)?;
    let before = store.checkpoint_marker()?;
    let stopped = |err| budget_failure(err, &store, &before, &connector, config);
    let check = pipeline::check(&connector, config).await.map_err(stopped)?;
    store.bind_source(&pipeline::source_name(config))?;
    let mut reports = Vec::new();
    for level in levels_for(args, config)? {
        let report = writeback::push(
            &connector,
            &store.at_level(level),
            config,
            &check.reasons_max_len,
            Utc::now(),
        )
        .await
        .map_err(stopped)?;
        reports.push(report);
    }
    if args.json {
        // The budget covers the whole push, so every level's entry carries the same figures.
        let budget = connector.budget_usage();
        let entries: Vec<WithBudget<'_, writeback::PushReport>> = reports
            .iter()
            .map(|report| WithBudget { report, budget })
            .collect();
        print_json(&entries)?;
    } else {
        for report in &reports {
            println!(
                "Wrote {} of {} changed {} scores ({} unchanged, {} rejected).",
                report.written,
                report.planned,
                report.level,
                report.unchanged,
                report.failed.len()
            );
            if report.reconciled > 0 {
                println!(
                    "{} records of an interrupted push were already in the CRM and were not sent again.",
                    report.reconciled
                );
            }
        }
    }
    let mut failed = false;
    for report in &reports {
        print_failures(&report.failed);
        failed |= !report.failed.is_empty();
    }
    Ok(if failed { 3 } else { 0 })
}

fn step_evaluate(args: &crate::evaluate::EvaluateArgs) -> Result<u8, Failure> {
    let failure = |err: crate::evaluate::EvaluateError| Failure {
        code: err.exit_code(),
        message: err.to_string(),
    };
    let settings = crate::evaluate::model_settings(args.config.as_deref()).map_err(failure)?;
    let output = crate::evaluate::evaluate(args, &settings).map_err(failure)?;
    if args.json {
        print_json(&output)?;
    } else {
        eprint!("{}", crate::evaluate::render_columns(&output.columns));
        print!("{}", crate::evaluate::render_summary(&output));
    }
    Ok(0)
}

fn step_models(action: ModelsCommand) -> Result<u8, Failure> {
    use crate::registry;
    match action {
        ModelsCommand::List(args) => {
            let (config, store) = open(&args)?;
            // Without --level, every configured level is listed under its own heading.
            let levels = match args.level {
                Some(level) => vec![level],
                None => config.scoring.levels.clone(),
            };
            let mut listed = std::collections::BTreeMap::new();
            for level in &levels {
                listed.insert(level.name(), registry::list(&store.at_level(*level))?);
            }
            if args.json && levels.len() == 1 {
                print_json(&listed.into_values().next().unwrap_or_default())?;
            } else if args.json {
                print_json(&listed)?;
            } else {
                for level in &levels {
                    if levels.len() > 1 {
                        println!("{level} models:");
                    }
                    print!("{}", registry::render_list(&listed[level.name()]));
                }
            }
        }
        ModelsCommand::Show { version, args } => {
            let (_, store) = open(&args)?;
            let store = store.at_level(args.level.unwrap_or_default());
            let details = registry::show(&store, &version)?;
            if args.json {
                print_json(&details)?;
            } else {
                print!("{}", registry::render_details(&details));
            }
        }
        ModelsCommand::Promote { version, args } => {
            let (config, store) = open(&args)?;
            let store = store.at_level(args.level.unwrap_or_default());
            let change = registry::promote(&store, &config, &version, Utc::now())?;
            print_change(&change, args.json)?;
        }
        ModelsCommand::Rollback { version, args } => {
            let (config, store) = open(&args)?;
            let store = store.at_level(args.level.unwrap_or_default());
            let change = registry::rollback(&store, &config, version.as_deref(), Utc::now())?;
            print_change(&change, args.json)?;
        }
    }
    Ok(0)
}

fn print_change(change: &crate::registry::LiveChange, json: bool) -> Result<(), Failure> {
    if json {
        print_json(change)
    } else {
        print!("{}", crate::registry::render_change(change));
        Ok(())
    }
}

async fn step_run(args: &ConfigArgs, config: &Config) -> Result<u8, Failure> {
    check_webhook_secret(config)?;
    let store = Store::open(&config.store_path)?;
    let connector = budgeted_connector(config, &store)?;
    let before = store.checkpoint_marker()?;
    let report = run_once(&connector, &store, config, Utc::now())
        .await
        .map_err(|err| budget_failure(err, &store, &before, &connector, config))?;
    if args.json {
        print_json(&WithBudget {
            report: &report,
            budget: connector.budget_usage(),
        })?;
    } else {
        println!("Pulled {} records.", report.pull.pulled);
        for level in &report.levels {
            let auc = level
                .train
                .holdout_auc
                .map_or("n/a".to_string(), |a| format!("{a:.3}"));
            println!(
                "{}: trained {} (holdout AUC {auc}), scored {} with live model {}, wrote {} ({} rejected).",
                level.level,
                level.train.version,
                level.score.scored,
                level.score.model_version,
                level.push.written,
                level.push.failed.len()
            );
            print!("{}", crate::registry::render_publish(&level.train.publish));
        }
    }
    let mut failed = false;
    for level in &report.levels {
        print_failures(&level.push.failed);
        failed |= !level.push.failed.is_empty();
    }
    Ok(if failed { 3 } else { 0 })
}

fn step_report_model(args: &ReportModelArgs) -> Result<u8, Failure> {
    let (_, store) = open(&ConfigArgs {
        config: args.config.clone(),
        json: false,
        level: None,
        connector: args.connector.clone(),
    })?;
    let store = store.at_level(args.level);
    let model = crate::report::load_model(&store, args.version.as_deref())?;
    let paths = crate::report::write_model_card(&model, &args.out)?;
    println!("{}", paths.html.display());
    println!("{}", paths.json.display());
    Ok(0)
}

fn step_report_lists(args: &ReportListsArgs) -> Result<u8, Failure> {
    let (mut config, store) = open(&ConfigArgs {
        config: args.config.clone(),
        json: args.json,
        level: None,
        connector: args.connector.clone(),
    })?;
    if config.territory.webhook {
        check_webhook_secret(&config)?;
    }
    if let Some(out) = &args.out {
        config.territory.folder = out.clone();
    }
    let report = crate::territory::write_lists(&store, &config, Utc::now())?;
    // Lists the webhook did not accept are still written, but the step counts as failed.
    let code = u8::from(!report.webhook_failures.is_empty());
    if args.json {
        print_json(&report)?;
        return Ok(code);
    }
    for list in &report.lists {
        println!(
            "{}: {} accounts, {} in the top tier, {} new, {} dropped",
            list.rep_name, list.accounts, list.top_tier, list.new, list.dropped
        );
    }
    for failure in &report.webhook_failures {
        eprintln!("error: webhook: {failure}");
    }
    println!("{}", report.index.display());
    Ok(code)
}

fn step_report_outcomes(args: &ReportOutcomesArgs) -> Result<u8, Failure> {
    let (config, store) = open(&ConfigArgs {
        config: args.config.clone(),
        json: false,
        level: None,
        connector: args.connector.clone(),
    })?;
    let store = store.at_level(args.level);
    let now = Utc::now();
    let report = match &args.out {
        Some(out) => crate::outcomes::write_report_to(&store, &config, now, out)?,
        None => crate::outcomes::write_report(&store, &config, now)?,
    };
    for file in &report.files {
        println!("{}", file.display());
    }
    for breach in &report.breaches {
        eprintln!("breach: {breach}");
    }
    if report.retrain_requested {
        eprintln!(
            "a retrain is requested ([outcomes] retrain_on_breach); run `leadscore train --level {}`",
            args.level
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failure_advice_not_repeated() {
        let connector_advice = "Salesforce token request was rejected: invalid_grant: expired \
                                access/refresh token. Check the Salesforce client id";
        let failure = Failure::from(PipelineError::Connector(ConnectorError::Auth(
            connector_advice.to_string(),
        )));
        assert_eq!(failure.code, 2);
        assert_eq!(
            failure.message,
            format!("authentication failed: {connector_advice}")
        );

        let bare = Failure::from(PipelineError::Connector(ConnectorError::Auth(
            "token rejected".to_string(),
        )));
        assert_eq!(bare.code, 2);
        assert!(
            bare.message.contains("check the credentials"),
            "a message without advice gets it: {}",
            bare.message
        );
    }
}
