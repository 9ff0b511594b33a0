//! One full pass of the pipeline (check, pull, train, score, push) and the connector setup
//! shared by the CLI and the demo.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leadscore_connector::{
    ApiUsage, Connector, ConnectorError, Cursor, ObjectSchema, Page, PullSpec, RecordUpdate,
    WriteOutcome,
};
use leadscore_hubspot::HubSpotConnector;
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use serde::Serialize;

use crate::config::{Config, ConnectorSecrets, ConnectorSettings, Level};
use crate::pipeline::{self, CheckReport, PipelineError, PullReport};
use crate::scoring::{self, ScoreReport};
use crate::store::Store;
use crate::training::{self, TrainReport};
use crate::writeback::{self, PushReport};

/// The client of one CRM.
pub enum Crm {
    Salesforce(SalesforceConnector),
    HubSpot(HubSpotConnector),
}

/// The connector of the configured CRM, with the connector's field renaming applied: the
/// pipeline requests and receives the field names the configuration uses, and the CRM sees its
/// own names.
pub struct AnyConnector {
    crm: Crm,
    fields: FieldMap,
}

/// Field names the configuration uses, mapped to the CRM's own (`[connector] fields`). A key
/// may name one object's field (`Lead.LS_Score__c`), which wins over a bare field name.
#[derive(Clone, Debug, Default)]
pub struct FieldMap {
    to_crm: BTreeMap<String, String>,
}

impl FieldMap {
    pub fn new(to_crm: &BTreeMap<String, String>) -> FieldMap {
        FieldMap {
            to_crm: to_crm.clone(),
        }
    }

    /// Returns the CRM's name of a field of `object`.
    pub fn crm(&self, object: &str, name: &str) -> String {
        self.to_crm
            .get(&format!("{object}.{name}"))
            .or_else(|| self.to_crm.get(name))
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Returns the configuration's names of CRM fields of `object`: the inverse of [`FieldMap::crm`]
    /// for the names a request used.
    fn config_names(&self, object: &str, fields: &[String]) -> BTreeMap<String, String> {
        fields
            .iter()
            .map(|name| (self.crm(object, name), name.clone()))
            .filter(|(crm, name)| crm != name)
            .collect()
    }

    fn spec(&self, spec: &PullSpec) -> PullSpec {
        PullSpec {
            fields: spec
                .fields
                .iter()
                .map(|f| self.crm(&spec.object, f))
                .collect(),
            ..spec.clone()
        }
    }

    fn page(&self, spec: &PullSpec, mut page: Page) -> Page {
        let back = self.config_names(&spec.object, &spec.fields);
        if back.is_empty() {
            return page;
        }
        for record in &mut page.records {
            let fields = std::mem::take(&mut record.fields);
            record.fields = fields
                .into_iter()
                .map(|(k, v)| (back.get(&k).cloned().unwrap_or(k), v))
                .collect();
        }
        page
    }

    /// Renames a described object's fields back: every mapped name of that object.
    fn schema(&self, mut schema: ObjectSchema) -> ObjectSchema {
        let object = schema.name.clone();
        let back: BTreeMap<String, String> = self
            .to_crm
            .iter()
            .filter_map(|(key, crm)| match key.split_once('.') {
                Some((o, field)) if o == object => Some((crm.clone(), field.to_string())),
                Some(_) => None,
                None => Some((crm.clone(), key.clone())),
            })
            .collect();
        for field in &mut schema.fields {
            if let Some(name) = back.get(&field.name) {
                field.name = name.clone();
            }
        }
        schema
    }
}

impl AnyConnector {
    pub fn new(crm: Crm, fields: FieldMap) -> AnyConnector {
        AnyConnector { crm, fields }
    }

    /// Returns the client inside, for CRM-specific setup such as creating custom properties.
    pub fn crm(&self) -> &Crm {
        &self.crm
    }

    /// Shares the API budget with the other runs of the UTC day through the store's ledger.
    /// All runs of a day together then stay within `api_budget_share` of the calls the CRM
    /// had left before leadscore's first call of the day. Call it before the first request.
    pub fn with_budget_ledger(self, ledger: crate::store::StoreBudgetLedger) -> AnyConnector {
        let ledger: std::sync::Arc<dyn leadscore_connector::limits::BudgetLedger> =
            std::sync::Arc::new(ledger);
        let crm = match self.crm {
            Crm::Salesforce(c) => Crm::Salesforce(c.with_budget_ledger(ledger)),
            Crm::HubSpot(c) => Crm::HubSpot(c.with_budget_ledger(ledger)),
        };
        AnyConnector { crm, ..self }
    }

    /// Returns the API calls of this run and of the day and the day's allowance, or `None`
    /// when the connector has no budget.
    pub fn budget_usage(&self) -> Option<leadscore_connector::limits::BudgetUsage> {
        match &self.crm {
            Crm::Salesforce(c) => c.budget_usage(),
            Crm::HubSpot(c) => c.budget_usage(),
        }
    }
}

/// Forwards a call to the CRM client inside.
macro_rules! forward {
    ($self:ident, $c:ident => $call:expr) => {
        match &$self.crm {
            Crm::Salesforce($c) => $call,
            Crm::HubSpot($c) => $call,
        }
    };
}

impl Connector for AnyConnector {
    fn name(&self) -> &'static str {
        forward!(self, c => c.name())
    }

    fn max_batch(&self) -> usize {
        forward!(self, c => c.max_batch())
    }

    async fn check(&self) -> Result<ApiUsage, ConnectorError> {
        forward!(self, c => c.check().await)
    }

    async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        let schema = forward!(self, c => c.describe(object).await)?;
        Ok(self.fields.schema(schema))
    }

    async fn pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ConnectorError> {
        let renamed = self.fields.spec(spec);
        let page = forward!(self, c => c.pull_first(&renamed, cursor).await)?;
        Ok(self.fields.page(spec, page))
    }

    async fn pull_after(&self, spec: &PullSpec, after: &Cursor) -> Result<Page, ConnectorError> {
        let renamed = self.fields.spec(spec);
        let page = forward!(self, c => c.pull_after(&renamed, after).await)?;
        Ok(self.fields.page(spec, page))
    }

    async fn pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        next: &str,
    ) -> Result<Page, ConnectorError> {
        let renamed = self.fields.spec(spec);
        let page = forward!(self, c => c.pull_next(&renamed, cursor, next).await)?;
        Ok(self.fields.page(spec, page))
    }

    async fn update(&self, updates: &[RecordUpdate]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let renamed: Vec<RecordUpdate> = updates
            .iter()
            .map(|u| RecordUpdate {
                fields: u
                    .fields
                    .iter()
                    .map(|(k, v)| (self.fields.crm(&u.object, k), v.clone()))
                    .collect(),
                ..u.clone()
            })
            .collect();
        forward!(self, c => c.update(&renamed).await)
    }

    async fn fetch(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
        let renamed: Vec<String> = fields.iter().map(|f| self.fields.crm(object, f)).collect();
        let back = self.fields.config_names(object, fields);
        let mut records = forward!(self, c => c.fetch(object, ids, &renamed).await)?;
        for record in &mut records {
            let values = std::mem::take(&mut record.fields);
            record.fields = values
                .into_iter()
                .map(|(k, v)| (back.get(&k).cloned().unwrap_or(k), v))
                .collect();
        }
        Ok(records)
    }

    async fn create_tasks(
        &self,
        tasks: &[leadscore_connector::NewTask],
    ) -> Result<Vec<Result<String, leadscore_connector::RecordError>>, ConnectorError> {
        forward!(self, c => c.create_tasks(tasks).await)
    }

    async fn find_tasks(
        &self,
        lookups: &[leadscore_connector::TaskLookup],
    ) -> Result<Vec<Option<String>>, ConnectorError> {
        forward!(self, c => c.find_tasks(lookups).await)
    }

    fn usage(&self) -> Option<ApiUsage> {
        forward!(self, c => c.usage())
    }

    fn server_time(&self) -> Option<DateTime<Utc>> {
        forward!(self, c => c.server_time())
    }
}

/// Builds the connector of the configured CRM from the configuration and the secrets.
pub fn connect(
    config: &Config,
    secrets: impl Into<ConnectorSecrets>,
) -> Result<AnyConnector, PipelineError> {
    let secrets = secrets.into();
    let extra_ca_pem = match config.connector.ca_file() {
        Some(path) => Some(std::fs::read(path).map_err(|err| {
            PipelineError::Config(format!(
                "[connector] ca_file {}: cannot read it: {err}; give the path of a PEM file of CA certificates",
                path.display()
            ))
        })?),
        None => None,
    };
    match (&config.connector, secrets) {
        (ConnectorSettings::Salesforce(settings), ConnectorSecrets::Salesforce(secrets)) => {
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
                extra_ca_pem,
                allow_insecure_http: settings.transport.allow_insecure_http,
                bulk_threshold: settings.bulk.threshold,
                bulk_objects: settings.bulk.objects.clone(),
                bulk_poll_timeout: settings.bulk.timeout,
            })?
            .with_api_budget(settings.transport.api_budget_share);
            let connector = match &settings.transport.refresh_token_file {
                Some(path) => {
                    connector.with_refresh_token_sink(crate::token_file::sink(path.clone()))
                }
                None => connector,
            };
            Ok(AnyConnector::new(
                Crm::Salesforce(connector),
                FieldMap::new(&config.field_map),
            ))
        }
        (ConnectorSettings::HubSpot(settings), secrets) => Ok(AnyConnector::new(
            Crm::HubSpot(crate::hubspot::connect(settings, secrets, extra_ca_pem)?),
            FieldMap::new(&config.field_map),
        )),
        (settings, _) => Err(PipelineError::Model(format!(
            "the secrets given do not fit the {} connector",
            settings.kind()
        ))),
    }
}

/// Everything one pass did.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub check: CheckReport,
    pub pull: PullReport,
    /// One entry per configured level, in the order of `[scoring] levels`.
    pub levels: Vec<LevelRun>,
}

/// The outcome of one pass at one level.
#[derive(Debug, Serialize)]
pub struct LevelRun {
    pub level: Level,
    pub train: TrainReport,
    pub score: ScoreReport,
    pub push: PushReport,
    /// The threshold alerts sent after the push (empty when `[alerts]` is off or the level
    /// is not listed in `[alerts] levels`).
    pub alerts: crate::alerts::AlertReport,
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
    // The levels share one history, loaded from the store by the first level's training, and
    // each level scores with the history it trained on, so only one is ever in memory. A push
    // between levels changes only the write-back fields of the stored records (score, tier,
    // reasons, model version, time scored).
    // NOTE: a feature mapped to a write-back field would see its value from before the push.
    let mut loaded = None;
    for &level in &config.scoring.levels {
        let at_level = store.at_level(level);
        let train = training::train_sharing(&at_level, config, now, &mut loaded)?;
        let score = match &loaded {
            Some(loaded) => scoring::score_loaded(&at_level, config, now, &loaded.history)?,
            None => scoring::score(&at_level, config, now)?,
        };
        let push =
            writeback::push(connector, &at_level, config, &check.reasons_max_len, now).await?;
        let alerts = crate::alerts::run_alerts(connector, &at_level, config, now).await?;
        levels.push(LevelRun {
            level,
            train,
            score,
            push,
            alerts,
        });
    }
    Ok(RunReport {
        check,
        pull,
        levels,
    })
}
