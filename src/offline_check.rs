//! `leadscore check --offline`: validates a configuration without contacting the CRM.
//!
//! Besides parsing the file, it checks what a start needs from this machine. That is the
//! secrets in the environment, the CA, refresh token and enrichment files, and write access
//! to the store, lists and reports folders. It never opens the store, so it can run while the
//! daemon has the store locked (systemd's `ExecReload` does that).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::enrichment::EnrichmentSource;
use crate::config::{Config, ConnectorSettings, HubSpotAuthSettings};
use crate::enrichment;

/// Result of an offline check of a configuration that parsed.
#[derive(Debug, Default, Serialize)]
pub struct OfflineReport {
    /// Names of the connectors checked, in file order.
    pub connectors: Vec<String>,
    /// Every problem found, one sentence each with the value and the fix.
    pub problems: Vec<String>,
}

/// Checks each configuration of `configs` (one per connector) without network access.
pub fn check(configs: &[Config]) -> OfflineReport {
    let mut report = OfflineReport::default();
    for config in configs {
        report.connectors.push(config.connector_name.clone());
        // With several connectors, a problem names the connector it belongs to.
        let prefix = if config.connectors.len() > 1 {
            format!("connector {:?}: ", config.connector_name)
        } else {
            String::new()
        };
        let mut problems = Vec::new();
        check_secrets(config, &mut problems);
        check_ca_file(config, &mut problems);
        check_folder("[store] path", &config.store_path, &mut problems);
        check_store_folder(&config.store_path, &mut problems);
        report
            .problems
            .extend(problems.into_iter().map(|p| format!("{prefix}{p}")));
    }
    // The tables below are shared by every connector, so they are checked once.
    if let Some(config) = configs.first() {
        check_shared(config, &mut report.problems);
    }
    report
}

/// Checks what every connector's configuration shares: webhook key, enrichment files and
/// output folders.
fn check_shared(config: &Config, problems: &mut Vec<String>) {
    if let Some(webhook) = &config.alerts.webhook {
        check_variable(
            &webhook.secret_env,
            "the [webhook] signing key",
            "the shared signing key",
            problems,
        );
    }
    for table in &config.enrichment {
        if let EnrichmentSource::File(_) = &table.source {
            // Loading reads and indexes the CSV file as a run would, which also checks its
            // header against the configured columns.
            if let Err(err) = enrichment::load(table) {
                problems.push(err.to_string());
            }
        }
    }
    check_folder("[territory] folder", &config.territory.folder, problems);
    check_folder("[outcomes] folder", &config.reports.folder, problems);
}

/// Checks the connector's secret variables, and its refresh token file when one is named.
fn check_secrets(config: &Config, problems: &mut Vec<String>) {
    let (crm, transport) = match &config.connector {
        ConnectorSettings::Salesforce(settings) => ("Salesforce", &settings.transport),
        ConnectorSettings::HubSpot(settings) => ("HubSpot", &settings.transport),
    };
    // An existing refresh token file replaces the refresh token's variable.
    let token_from_file = match crate::token_file::read(transport) {
        Ok(token) => token.is_some(),
        Err(message) => {
            problems.push(message);
            false
        }
    };
    let mut variables: Vec<(&str, &str)> = Vec::new();
    match &config.connector {
        ConnectorSettings::Salesforce(settings) => {
            variables.push((&settings.client_secret_env, "client secret"));
            if !token_from_file {
                variables.push((&settings.refresh_token_env, "refresh token"));
            }
        }
        ConnectorSettings::HubSpot(settings) => match &settings.auth {
            HubSpotAuthSettings::PrivateApp { token_env } => {
                variables.push((token_env, "private app token"));
            }
            HubSpotAuthSettings::OAuth {
                client_secret_env,
                refresh_token_env,
                ..
            } => {
                variables.push((client_secret_env, "client secret"));
                if !token_from_file {
                    variables.push((refresh_token_env, "refresh token"));
                }
            }
        },
    }
    for (name, what) in variables {
        check_variable(name, &format!("the {crm} {what}"), what, problems);
    }
}

/// Records a problem unless the environment variable `name` contains non-blank UTF-8 text.
/// `role` names what the variable is for, and `value` what to set it to.
fn check_variable(name: &str, role: &str, value: &str, problems: &mut Vec<String>) {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => {}
        Ok(_) => problems.push(format!(
            "environment variable {name} ({role}) is empty; set it to {value}"
        )),
        Err(std::env::VarError::NotUnicode(_)) => problems.push(format!(
            "environment variable {name} ({role}) is not valid UTF-8; set it to {value} as text"
        )),
        Err(std::env::VarError::NotPresent) => problems.push(format!(
            "environment variable {name} ({role}) is not set; export {name}=... or add it to \
             the environment file the service reads"
        )),
    }
}

/// Checks that `[connector] ca_file`, when set, is a readable PEM bundle of certificates.
fn check_ca_file(config: &Config, problems: &mut Vec<String>) {
    let Some(path) = config.connector.ca_file() else {
        return;
    };
    let fix = "give the path of a PEM file of CA certificates";
    match std::fs::read(path) {
        Err(err) => problems.push(format!(
            "[connector] ca_file {}: cannot read it: {err}; {fix}",
            path.display()
        )),
        // The connectors parse the file the same way when they build their HTTP client.
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Err(err) => problems.push(format!(
                "[connector] ca_file {}: not valid PEM: {err}; {fix}",
                path.display()
            )),
            Ok(certificates) if certificates.is_empty() => problems.push(format!(
                "[connector] ca_file {}: contains no -----BEGIN CERTIFICATE----- block; {fix}",
                path.display()
            )),
            Ok(_) => {}
        },
    }
}

/// Checks that files can be created in `path`: in the folder itself when it exists, else in
/// the nearest folder above it that exists, where leadscore would create it.
fn check_folder(key: &str, path: &Path, problems: &mut Vec<String>) {
    if path.exists() && !path.is_dir() {
        problems.push(format!(
            "{key} {}: is a file, not a folder; name a folder (it is created if missing)",
            path.display()
        ));
        return;
    }
    let Some(existing) = nearest_existing(path) else {
        problems.push(format!(
            "{key} {}: no folder above it exists; name a folder on this machine",
            path.display()
        ));
        return;
    };
    if !existing.is_dir() {
        problems.push(format!(
            "{key} {}: {} is a file, so the folder cannot be created there; name another folder",
            path.display(),
            existing.display()
        ));
        return;
    }
    if let Err(err) = probe_writable(&existing) {
        problems.push(format!(
            "{key} {}: cannot create files in {} ({err}); give the user leadscore runs as \
             write access to it, or name another folder",
            path.display(),
            existing.display()
        ));
    }
}

/// Records a problem when opening the store at `path` would reject the folder, such as a
/// folder of other files. A path that is a file is left to [`check_folder`], which reports it.
fn check_store_folder(path: &Path, problems: &mut Vec<String>) {
    if !path.is_dir() {
        return;
    }
    if let Err(err) = crate::store::Store::check_folder(path) {
        problems.push(format!("[store] path: {err}"));
    }
}

/// Returns `path` or its nearest ancestor that exists. The empty ancestor of a relative path
/// is the working directory.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .map(|candidate| {
            if candidate.as_os_str().is_empty() {
                Path::new(".")
            } else {
                candidate
            }
        })
        .find(|candidate| candidate.exists())
        .map(Path::to_path_buf)
}

/// Creates and removes an empty file in `folder`. Permission bits alone cannot tell, because
/// read-only mounts and the process's user decide too.
fn probe_writable(folder: &Path) -> std::io::Result<()> {
    let probe = folder.join(format!(".leadscore-check-probe-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}
