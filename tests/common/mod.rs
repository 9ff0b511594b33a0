//! Shared setup for the integration tests: a Salesforce sandbox seeded with a small demo org
//! on a loopback port, a config file pointing at it, and a store in a temporary directory.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use leadscore::config::{Config, Secrets};
use leadscore::demo::sandbox_config;

/// The `[scoring] levels` line of the sandbox configuration.
pub const ALL_LEVELS: &str = r#"levels = ["account", "contact", "lead"]"#;
use leadscore::run::AnyConnector;
use leadscore::store::Store;
use leadscore_demo_org::{DemoOptions, DemoOrg};
use leadscore_sandbox::{RunningSandbox, Sandbox, SandboxHandle, SandboxOptions};
use secrecy::SecretString;

/// Hospitals in the test org: enough closed deals to train on, small enough to stay quick.
pub const HOSPITALS: usize = 400;

pub struct Env {
    pub org: DemoOrg,
    pub sandbox: RunningSandbox,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
}

impl Env {
    pub async fn start(options: SandboxOptions) -> Env {
        Env::start_with(options, |text| text).await
    }

    /// Starts a sandbox and writes a config, letting `edit` change the config text first.
    pub async fn start_with(options: SandboxOptions, edit: impl FnOnce(String) -> String) -> Env {
        Env::start_org(options, false, edit).await
    }

    /// Like [`Env::start_with`]; with `ccn_only`, hospital accounts carry only their CMS
    /// Certification Number, like an org that never loaded the CMS fields.
    pub async fn start_org(
        options: SandboxOptions,
        ccn_only: bool,
        edit: impl FnOnce(String) -> String,
    ) -> Env {
        let org = leadscore_demo_org::generate(&DemoOptions {
            max_hospitals: Some(HOSPITALS),
            ccn_only,
            ..DemoOptions::default()
        })
        .expect("demo org generates");
        let sandbox = Sandbox::new(org.records.clone(), options)
            .expect("sandbox accepts the demo org")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("sandbox listens on loopback");
        let dir = tempfile::tempdir().expect("temp dir");
        let store_path = dir.path().join("store");
        let text = sandbox_config(&sandbox.url(), &store_path.display().to_string())
            .replace("min_examples = 200", "min_examples = 30")
            .replace("min_minority = 40", "min_minority = 10")
            // Tests score accounts unless they enable the other levels themselves.
            .replace(ALL_LEVELS, r#"levels = ["account"]"#);
        let text = edit(text);
        let config_path = dir.path().join("leadscore.toml");
        std::fs::write(&config_path, &text).expect("config written");
        let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
        Env {
            org,
            sandbox,
            dir,
            config_path,
            config,
        }
    }

    pub fn handle(&self) -> SandboxHandle {
        self.sandbox.handle()
    }

    pub fn secrets(&self) -> Secrets {
        let options = self.sandbox.options();
        Secrets {
            client_secret: SecretString::from(options.client_secret.clone()),
            refresh_token: SecretString::from(options.refresh_token.clone()),
        }
    }

    pub fn connector(&self) -> AnyConnector {
        leadscore::run::connect(&self.config, self.secrets()).expect("connector builds")
    }

    pub fn store(&self) -> Store {
        Store::open(&self.config.store_path).expect("store opens")
    }
}
