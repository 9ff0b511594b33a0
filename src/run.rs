//! One full pass of the pipeline (check, pull, train, score, push) and the connector setup
//! shared by the CLI and the demo.

use std::time::Duration;

use chrono::{DateTime, Utc};
use leadscore_connector::Connector;
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use serde::Serialize;

use crate::config::{Config, Level, Secrets};
use crate::pipeline::{self, CheckReport, PipelineError, PullReport};
use crate::scoring::{self, ScoreReport};
use crate::store::Store;
use crate::training::{self, TrainReport};
use crate::writeback::{self, PushReport};

/// Builds the Salesforce connector from the configuration and the secrets.
pub fn connect(config: &Config, secrets: Secrets) -> Result<SalesforceConnector, PipelineError> {
    let settings = &config.salesforce;
    let login_url = url::Url::parse(&settings.login_url).map_err(|err| {
        PipelineError::Model(format!(
            "[connector] login_url {:?} is not a URL: {err}",
            settings.login_url
        ))
    })?;
    let connector = SalesforceConnector::new(SalesforceConfig {
        login_url,
        api_version: settings.api_version.clone(),
        client_id: settings.client_id.clone(),
        client_secret: secrets.client_secret,
        refresh_token: secrets.refresh_token,
        page_size: settings.page_size,
        timeout: settings.timeout,
        max_retries: settings.max_retries,
        retry_base_delay: Duration::from_millis(500),
    })?;
    Ok(connector)
}

/// Everything one pass did.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub check: CheckReport,
    pub pull: PullReport,
    /// One entry per configured level, in the order of `[scoring] levels`.
    pub levels: Vec<LevelRun>,
}

/// What one pass did at one level.
#[derive(Debug, Serialize)]
pub struct LevelRun {
    pub level: Level,
    pub train: TrainReport,
    pub score: ScoreReport,
    pub push: PushReport,
}

/// Runs check, pull, train, score and push in order, stopping at the first failing step.
pub async fn run_once<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<RunReport, PipelineError> {
    let check = pipeline::check(connector, config).await?;
    let pull = pipeline::pull(connector, store, config).await?;
    store.bind_source(&pipeline::source_name(config))?;
    let mut levels = Vec::new();
    for &level in &config.scoring.levels {
        let at_level = store.at_level(level);
        let train = training::train(&at_level, config, now)?;
        let score = scoring::score(&at_level, config, now)?;
        let push =
            writeback::push(connector, &at_level, config, &check.reasons_max_len, now).await?;
        levels.push(LevelRun {
            level,
            train,
            score,
            push,
        });
    }
    Ok(RunReport {
        check,
        pull,
        levels,
    })
}
