//! HubSpot CRM v3 connector for leadscore.
//!
//! Maps HubSpot objects to the CRM-neutral objects the pipeline reads: `Account` from
//! companies, `Lead` from contacts that entered as leads, `Task` from tasks, calls, emails and
//! notes, and so on. Records are pulled incrementally through CRM search sorted by the
//! modified-date property, associations come from the v4 batch API, and scores are written
//! back with batch updates. HubSpot JSON shapes stay inside this crate.

mod assoc;
mod auth;
mod describe;
mod errors;
mod objects;
mod props;
mod pull;
mod setup;
mod task;
mod transport;
mod wire;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadscore_connector::{
    ApiUsage, Connector, ConnectorError, Cursor, ObjectSchema, Page, PullSpec, RecordUpdate,
    WriteOutcome,
};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::auth::{OAuthClient, RetryPolicy, TokenSource};
use crate::props::{PropertiesWire, Property};
use crate::transport::{Api, CallKind, RateSettings};

pub use crate::setup::{PropertyKind, PropertySetupReport, PropertySpec};

/// Saves a rotated OAuth refresh token. The connector calls it with the new token before it
/// sends any request with the access token that came with it. An `Err` (a message naming what
/// failed) stops that token request with `ConnectorError::Auth`.
pub type RefreshTokenSink =
    Arc<dyn Fn(&SecretString) -> Result<(), String> + Send + Sync + 'static>;

/// Largest number of inputs HubSpot accepts in one batch call.
pub const MAX_BATCH: usize = 100;

/// Largest page size of CRM search.
const MAX_SEARCH_PAGE: u32 = 200;

/// The lifecycle stage that counts a lead as converted unless configured otherwise.
pub const DEFAULT_LEAD_CONVERTED_STAGE: &str = "salesqualifiedlead";

/// The connector's authentication method.
#[derive(Clone)]
pub enum HubSpotAuth {
    /// A private app's access token, sent as is. It does not expire.
    PrivateApp(SecretString),
    /// A public app's OAuth 2.0 credentials. Access tokens come from the refresh-token grant
    /// and are renewed before they expire.
    OAuth {
        /// Token endpoint, `https://api.hubapi.com/oauth/v1/token` for HubSpot.
        token_url: Url,
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
    },
}

impl fmt::Debug for HubSpotAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubSpotAuth::PrivateApp(_) => f.write_str("PrivateApp([redacted])"),
            HubSpotAuth::OAuth {
                token_url,
                client_id,
                ..
            } => f
                .debug_struct("OAuth")
                .field("token_url", &token_url.as_str())
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .field("refresh_token", &"[redacted]")
                .finish(),
        }
    }
}

/// Settings of one HubSpot portal connection.
#[derive(Clone, Debug)]
pub struct HubSpotConfig {
    /// API host, `https://api.hubapi.com` for HubSpot, or a local sandbox URL.
    pub base_url: Url,
    pub auth: HubSpotAuth,
    /// Records per search page, 1 to 200.
    pub page_size: u32,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Retries of connection errors, 5xx responses and 429s other than the daily limit.
    pub max_retries: u32,
    /// Base of the exponential backoff after connection errors and 5xx responses.
    pub retry_base_delay: Duration,
    /// Wait after a ten-second-window 429 without `Retry-After`, times the attempt number.
    pub burst_backoff: Duration,
    /// Wait after a search 429 without `Retry-After`, times the attempt number.
    pub secondly_backoff: Duration,
    /// Search calls per second the client allows itself. HubSpot documents 4 or 5.
    pub search_per_second: u32,
    /// Share (0 to 1] of the ten-second allowance reported by `X-HubSpot-RateLimit-Max` that
    /// the client uses.
    pub burst_share: f64,
    /// Lifecycle stage (internal value) at which a lead counts as converted.
    pub lead_converted_stage: String,
    /// PEM certificates trusted besides the system's roots: a sandbox's own CA, or a corporate
    /// proxy's.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Allow plain http to hosts other than loopback (127.0.0.0/8, ::1, localhost).
    pub allow_insecure_http: bool,
}

impl HubSpotConfig {
    /// Returns a configuration with the defaults: 200 records per page, 60-second timeout,
    /// 4 retries, 4 searches per second, 90% of the burst allowance, and
    /// `salesqualifiedlead` as the conversion stage.
    pub fn new(base_url: Url, auth: HubSpotAuth) -> Self {
        HubSpotConfig {
            base_url,
            auth,
            page_size: MAX_SEARCH_PAGE,
            timeout: Duration::from_secs(60),
            max_retries: 4,
            retry_base_delay: Duration::from_millis(500),
            burst_backoff: Duration::from_secs(10),
            secondly_backoff: Duration::from_secs(1),
            search_per_second: 4,
            burst_share: 0.9,
            lead_converted_stage: DEFAULT_LEAD_CONVERTED_STAGE.to_string(),
            extra_ca_pem: None,
            allow_insecure_http: false,
        }
    }

    fn validate(&self) -> Result<(), ConnectorError> {
        let invalid = |message: String| ConnectorError::Rejected {
            code: "INVALID_CONFIG".to_string(),
            message,
        };
        for (name, url) in std::iter::once(("base_url", &self.base_url)).chain(match &self.auth {
            HubSpotAuth::OAuth { token_url, .. } => Some(("token_url", token_url)),
            HubSpotAuth::PrivateApp(_) => None,
        }) {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(invalid(format!(
                    "{name} {url} is not an http or https URL; use https://api.hubapi.com \
                     (and https://api.hubapi.com/oauth/v1/token for OAuth)"
                )));
            }
        }
        if let HubSpotAuth::OAuth { client_id, .. } = &self.auth {
            if client_id.trim().is_empty() {
                return Err(invalid(
                    "client_id is empty; set it to the public app's client id".to_string(),
                ));
            }
        }
        if !(1..=MAX_SEARCH_PAGE).contains(&self.page_size) {
            return Err(invalid(format!(
                "page_size {} is outside 1 to {MAX_SEARCH_PAGE}, the page sizes CRM search \
                 accepts",
                self.page_size
            )));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "timeout is zero; set a per-request timeout such as 60 seconds".to_string(),
            ));
        }
        if self.search_per_second == 0 {
            return Err(invalid(
                "search_per_second is zero; HubSpot allows 4 searches per second".to_string(),
            ));
        }
        if !(self.burst_share > 0.0 && self.burst_share <= 1.0) {
            return Err(invalid(format!(
                "burst_share {} is outside (0, 1]; 0.9 leaves a tenth of the allowance to other \
                 apps",
                self.burst_share
            )));
        }
        let stage = &self.lead_converted_stage;
        if stage.is_empty()
            || !stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(format!(
                "lead_converted_stage {stage:?} is not a lifecycle stage's internal value; use \
                 for example salesqualifiedlead"
            )));
        }
        Ok(())
    }
}

/// One stage of a deal pipeline.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub label: String,
    pub closed: bool,
    pub won: bool,
}

/// One owner, as the `User` object needs it.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
}

/// A `Connector` for one HubSpot portal over the CRM v3 and v4 APIs.
pub struct HubSpotConnector {
    base_url: Url,
    api: Api,
    page_size: u32,
    lead_converted_stage: String,
    /// Properties per object type, fetched on first use.
    properties: Mutex<HashMap<String, Arc<Vec<Property>>>>,
    /// Deal stages by stage id, fetched on first use.
    stages: Mutex<Option<Arc<HashMap<String, Stage>>>>,
    /// Owners by owner id, fetched on first use by a pull that selects `Owner.` fields.
    owners: Mutex<Option<Arc<HashMap<String, Owner>>>>,
}

impl fmt::Debug for HubSpotConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotConnector")
            .field("base_url", &self.base_url.as_str())
            .field("lead_converted_stage", &self.lead_converted_stage)
            .field("usage", &self.api.usage())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct PipelinesWire {
    results: Vec<PipelineWire>,
}

#[derive(Deserialize)]
struct PipelineWire {
    #[serde(default)]
    stages: Vec<StageWire>,
}

#[derive(Deserialize)]
struct StageWire {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
}

impl HubSpotConnector {
    /// Validates the configuration and builds the HTTP client. Makes no request; `check()`
    /// proves the credentials.
    pub fn new(config: HubSpotConfig) -> Result<Self, ConnectorError> {
        config.validate()?;
        let mut urls = vec![&config.base_url];
        if let HubSpotAuth::OAuth { token_url, .. } = &config.auth {
            urls.push(token_url);
        }
        let http = leadscore_connector::http::build_client(
            &leadscore_connector::http::ClientSettings {
                timeout: config.timeout,
                extra_ca_pem: config.extra_ca_pem.as_deref(),
                allow_insecure_http: config.allow_insecure_http,
                allow_key: "[connector] allow_insecure_http",
            },
            &urls,
        )?;
        let tokens = match config.auth {
            HubSpotAuth::PrivateApp(token) => TokenSource::Static(token),
            HubSpotAuth::OAuth {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => TokenSource::oauth(
                OAuthClient {
                    token_url,
                    client_id,
                    client_secret,
                    sink: None,
                },
                refresh_token,
            ),
        };
        let api = Api::new(
            http,
            config.base_url.clone(),
            tokens,
            RetryPolicy {
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
            },
            RateSettings {
                burst_share: config.burst_share,
                search_per_second: config.search_per_second,
                burst_backoff: config.burst_backoff,
                secondly_backoff: config.secondly_backoff,
            },
        );
        Ok(HubSpotConnector {
            base_url: config.base_url,
            api,
            page_size: config.page_size,
            lead_converted_stage: config.lead_converted_stage,
            properties: Mutex::new(HashMap::new()),
            stages: Mutex::new(None),
            owners: Mutex::new(None),
        })
    }

    /// Saves every new OAuth refresh token through `sink` before it is used. Has no effect
    /// with a private-app token.
    pub fn with_refresh_token_sink(mut self, sink: RefreshTokenSink) -> Self {
        self.api.tokens.set_sink(sink);
        self
    }

    /// Limits this connector to `share` (0 to 1] of the portal's remaining daily calls, read
    /// from the `X-HubSpot-RateLimit-Daily*` headers. When the first response has no such
    /// headers (OAuth apps often get none), `daily_allowance` is taken as the remaining
    /// calls. Once the share is used, every call returns `ConnectorError::BudgetSpent`
    /// without a request.
    pub fn with_api_budget(mut self, share: f64, daily_allowance: Option<u64>) -> Self {
        self.api.budget = Some(leadscore_connector::limits::ApiBudget::new(
            share,
            daily_allowance,
        ));
        self
    }

    /// Shares the API budget with the other runs of the day through `ledger`; see
    /// [`leadscore_connector::limits::ApiBudget::attach_ledger`]. Has no effect without a
    /// budget, so call it after `with_api_budget`.
    pub fn with_budget_ledger(
        mut self,
        ledger: std::sync::Arc<dyn leadscore_connector::limits::BudgetLedger>,
    ) -> Self {
        if let Some(budget) = self.api.budget.as_mut() {
            budget.attach_ledger(ledger);
        }
        self
    }

    /// Returns the API budget figures of this run and of the day, or `None` without a budget.
    pub fn budget_usage(&self) -> Option<leadscore_connector::limits::BudgetUsage> {
        self.api.budget.as_ref().map(|budget| budget.usage())
    }

    /// Returns (calls sent, calls allowed) of the API budget, or `None` without a budget.
    pub fn budget_spent(&self) -> Option<(u64, Option<u64>)> {
        self.api.budget.as_ref().map(|budget| budget.spent())
    }

    /// Returns the properties of a HubSpot object type, fetching them on first use.
    pub(crate) async fn properties(
        &self,
        object_type: &str,
    ) -> Result<Arc<Vec<Property>>, ConnectorError> {
        if let Some(cached) = self
            .properties
            .lock()
            .ok()
            .and_then(|cache| cache.get(object_type).cloned())
        {
            return Ok(cached);
        }
        let wire: PropertiesWire = self
            .api
            .call(
                Method::GET,
                &format!("/crm/v3/properties/{object_type}"),
                None,
                CallKind::Standard,
            )
            .await?;
        let properties = Arc::new(wire.results);
        if let Ok(mut cache) = self.properties.lock() {
            cache.insert(object_type.to_string(), properties.clone());
        }
        Ok(properties)
    }

    /// Drops cached properties of `object_type`, after creating some.
    fn forget_properties(&self, object_type: &str) {
        if let Ok(mut cache) = self.properties.lock() {
            cache.remove(object_type);
        }
    }

    /// Returns every deal stage by id, fetching the pipelines on first use.
    pub(crate) async fn stages(&self) -> Result<Arc<HashMap<String, Stage>>, ConnectorError> {
        if let Some(cached) = self.stages.lock().ok().and_then(|cache| cache.clone()) {
            return Ok(cached);
        }
        let wire: PipelinesWire = self
            .api
            .call(
                Method::GET,
                "/crm/v3/pipelines/deals",
                None,
                CallKind::Standard,
            )
            .await?;
        let mut stages = HashMap::new();
        for pipeline in wire.results {
            for stage in pipeline.stages {
                let text = |key: &str| match stage.metadata.get(key) {
                    Some(serde_json::Value::String(text)) => text.trim().to_string(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let closed = text("isClosed").eq_ignore_ascii_case("true");
                let won = text("probability")
                    .parse::<f64>()
                    .is_ok_and(|p| (p - 1.0).abs() < 1e-9);
                stages.insert(
                    stage.id,
                    Stage {
                        label: stage.label,
                        closed,
                        won,
                    },
                );
            }
        }
        let stages = Arc::new(stages);
        if let Ok(mut cache) = self.stages.lock() {
            *cache = Some(stages.clone());
        }
        Ok(stages)
    }

    /// Returns the portal's lifecycle stages (internal values) in display order, and the
    /// stages that count as converted: the configured one and every later one except `other`.
    ///
    /// Fails with `Rejected` naming the configured stage and listing the portal's stages when
    /// the portal has no such stage.
    pub(crate) async fn conversion_stages(&self) -> Result<Vec<String>, ConnectorError> {
        let properties = self.properties("contacts").await?;
        let lifecycle = properties
            .iter()
            .find(|property| property.name == "lifecyclestage")
            .ok_or_else(|| ConnectorError::Rejected {
                code: "INVALID_FIELD".to_string(),
                message: "the contacts property lifecyclestage was not found, so lead \
                          conversion cannot be read"
                    .to_string(),
            })?;
        let stages = lifecycle.option_values();
        let position = stages
            .iter()
            .position(|stage| stage == &self.lead_converted_stage)
            .ok_or_else(|| ConnectorError::Rejected {
                code: "INVALID_CONFIG".to_string(),
                message: format!(
                    "lead_converted_stage {:?} is not a lifecycle stage of this portal; set it \
                     to one of: {}",
                    self.lead_converted_stage,
                    stages.join(", ")
                ),
            })?;
        // NOTE: `other` follows `evangelist` in HubSpot's default order but does not mean the
        // lead progressed, so it never counts as converted.
        Ok(stages[position..]
            .iter()
            .filter(|stage| stage.as_str() != "other")
            .cloned()
            .collect())
    }

    /// Creates the `leadscore` property group and every property in `specs` that the portal
    /// lacks, and reports properties that exist with another type. Existing properties are
    /// never changed.
    pub async fn ensure_properties(
        &self,
        specs: &[PropertySpec],
    ) -> Result<PropertySetupReport, ConnectorError> {
        setup::ensure_properties(self, specs).await
    }
}

impl Connector for HubSpotConnector {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn check(&self) -> Result<ApiUsage, ConnectorError> {
        self.api.authenticate().await?;
        let _: serde_json::Value = self
            .api
            .call(
                Method::GET,
                "/crm/v3/owners?limit=1",
                None,
                CallKind::Standard,
            )
            .await?;
        self.conversion_stages().await?;
        // OAuth calls may carry no daily headers; the usage is then unknown, shown as 0 of 0.
        Ok(self.api.usage().unwrap_or_default())
    }

    async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        describe::describe(self, object).await
    }

    async fn pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ConnectorError> {
        pull::pull_first(self, spec, cursor).await
    }

    async fn pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        next: &str,
    ) -> Result<Page, ConnectorError> {
        pull::pull_next(self, spec, cursor, next).await
    }

    async fn update(&self, updates: &[RecordUpdate]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        write::update(self, updates).await
    }

    async fn fetch(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
        write::fetch(self, object, ids, fields).await
    }

    async fn create_tasks(
        &self,
        tasks: &[leadscore_connector::NewTask],
    ) -> Result<Vec<Result<String, leadscore_connector::RecordError>>, ConnectorError> {
        self.create_task_records(tasks).await
    }

    async fn find_tasks(
        &self,
        lookups: &[leadscore_connector::TaskLookup],
    ) -> Result<Vec<Option<String>>, ConnectorError> {
        self.find_task_records(lookups).await
    }

    fn usage(&self) -> Option<ApiUsage> {
        self.api.usage()
    }

    fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.api.server_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HubSpotConfig {
        HubSpotConfig::new(
            Url::parse("https://api.hubapi.com").unwrap(),
            HubSpotAuth::OAuth {
                token_url: Url::parse("https://api.hubapi.com/oauth/v1/token").unwrap(),
                client_id: "client-1".to_string(),
                client_secret: SecretString::from("secret-value-1234"),
                refresh_token: SecretString::from("refresh-value-5678"),
            },
        )
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = config();
        let text = format!("{config:?}");
        assert!(!text.contains("secret-value-1234"), "{text}");
        assert!(!text.contains("refresh-value-5678"), "{text}");
        assert!(text.contains("client-1"), "{text}");
        let private = HubSpotAuth::PrivateApp(SecretString::from("pat-na1-secret"));
        assert!(!format!("{private:?}").contains("pat-na1-secret"));
        let connector = HubSpotConnector::new(config).unwrap();
        let text = format!("{connector:?}");
        assert!(!text.contains("secret-value-1234"), "{text}");
    }

    #[test]
    fn config_validation() {
        let mut page = config();
        page.page_size = 500;
        let error = HubSpotConnector::new(page).unwrap_err();
        assert!(error.to_string().contains("page_size 500"), "{error}");

        let mut stage = config();
        stage.lead_converted_stage = "sales qualified".to_string();
        assert!(HubSpotConnector::new(stage).is_err());

        let mut url = config();
        url.base_url = Url::parse("ftp://api.hubapi.com").unwrap();
        assert!(HubSpotConnector::new(url).is_err());

        let mut share = config();
        share.burst_share = 0.0;
        assert!(HubSpotConnector::new(share).is_err());
    }
}
