//! Salesforce REST connector for leadscore.
//!
//! Authenticates with the OAuth 2.0 refresh-token grant, pulls records incrementally with SOQL
//! ordered by `(SystemModstamp, Id)`, describes objects, and writes scores back with sObject
//! Collections updates. Salesforce JSON shapes stay inside this crate; callers see only the
//! CRM-neutral types of `leadscore_connector`.

mod auth;
mod bulk;
mod csv_stream;
mod describe;
mod errors;
mod records;
mod setup;
mod soql;
mod task;
mod transport;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadscore_connector::http::{build_client, ClientSettings};
use leadscore_connector::{
    ApiUsage, Connector, ConnectorError, Cursor, ObjectSchema, Page, PullSpec, RecordUpdate,
    WriteOutcome,
};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use tracing::{debug, warn};
use url::Url;

pub use crate::bulk::BULK_PAGE_SIZE;
pub use crate::setup::{
    CustomFieldError, CustomFieldKind, CustomFieldReport, CustomFieldSpec, FieldAccess,
    PermissionSetChange,
};

/// Entry points for the workspace's fuzz tests (`tests/fuzz.rs`), which cannot reach the
/// crate's private decoders otherwise. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a Bulk API 2.0 CSV body delivered in `chunks`, as the connector decodes a
    /// results page: one row per entry, `None` for an empty value.
    pub fn decode_csv_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut decoder = crate::csv_stream::CsvDecoder::new(b',');
        let mut rows = Vec::new();
        for chunk in chunks {
            decoder
                .feed(chunk, &mut rows)
                .map_err(|error| error.to_string())?;
        }
        decoder
            .finish(&mut rows)
            .map_err(|error| error.to_string())?;
        Ok(rows)
    }
}

use crate::auth::TokenSource;
use crate::records::{ConvertError, SchemaSet};
use crate::transport::{Api, Paging};

/// Saves a rotated refresh token. The connector calls it with the new token before it
/// sends any request with the session that came with it. An `Err` (a message naming what
/// failed) stops that token request with `ConnectorError::Auth`.
pub type RefreshTokenSink =
    Arc<dyn Fn(&SecretString) -> Result<(), String> + Send + Sync + 'static>;

/// Smallest and largest page size Salesforce accepts in `Sforce-Query-Options: batchSize`.
const PAGE_SIZE_RANGE: std::ops::RangeInclusive<u32> = 200..=2000;

/// Settings of one Salesforce org connection.
#[derive(Clone)]
pub struct SalesforceConfig {
    /// Login host, for example `https://login.salesforce.com`, `https://test.salesforce.com`,
    /// the org's My Domain, or a local sandbox URL.
    pub login_url: Url,
    /// REST API version without the `v`, for example `59.0`: 31.0 or later, because older
    /// versions are retired, and 47.0 or later for Bulk API 2.0 pulls.
    pub api_version: String,
    /// Consumer key of the connected app.
    pub client_id: String,
    /// Consumer secret of the connected app.
    pub client_secret: SecretString,
    /// Refresh token issued to the connected app for the integration user.
    pub refresh_token: SecretString,
    /// Requested query page size (`Sforce-Query-Options: batchSize`), 200 to 2000. Salesforce
    /// treats it as a hint and may return smaller pages. `None` uses the default of 2000.
    pub page_size: Option<u32>,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Retries of a failed request: 429 and 5xx responses and connection errors. Records that
    /// fail with `UNABLE_TO_LOCK_ROW` are not retried here, because the write-back resends them.
    pub max_retries: u32,
    /// Base of the exponential backoff between retries.
    pub retry_base_delay: Duration,
    /// Extra CA certificates in PEM form, trusted beside the public roots, for example the CA
    /// of a local TLS sandbox or of a TLS-inspecting proxy. `None` trusts the public roots only.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Allow plain http to hosts other than loopback (127.0.0.0/8, ::1, localhost). Without
    /// it such a `login_url`, or an `instance_url` a token response names, is rejected.
    pub allow_insecure_http: bool,
    /// Rows above which a pull switches from REST to Bulk API 2.0 (see
    /// [`DEFAULT_BULK_THRESHOLD`]). The count is the `totalSize` of the first REST page, so
    /// learning it costs no extra request. A smaller pull goes on over REST from that page,
    /// and a larger one discards the page and starts a Bulk job. When Salesforce rejects the
    /// job because the org spent its daily Bulk allowance or the object does not support Bulk
    /// queries, the pull goes on over REST.
    pub bulk_threshold: u64,
    /// Objects pulled with Bulk API 2.0, whatever their size (case-insensitive), except when
    /// Salesforce rejects the query job as described for `bulk_threshold`.
    pub bulk_objects: Vec<String>,
    /// How long a Bulk API 2.0 query job may take to complete before the pull aborts it and fails.
    pub bulk_poll_timeout: Duration,
}

/// Oldest REST API version Salesforce still serves. Versions 7.0 to 30.0 are retired, and
/// every REST call to them returns 410 Gone (versions 21.0 to 30.0 since Summer '25).
const OLDEST_API_VERSION: u32 = 31;

/// First REST API version with Bulk API 2.0 query jobs.
const FIRST_BULK_QUERY_VERSION: u32 = 47;

/// Returns the major number of an API version such as `59.0`, once it is validated.
fn major_version(api_version: &str) -> u32 {
    api_version
        .split_once('.')
        .and_then(|(major, _)| major.parse().ok())
        .unwrap_or(0)
}

/// Default of [`SalesforceConfig::bulk_threshold`]: 20,000 rows, an estimate. A REST pull
/// costs one request per 2,000 rows. A Bulk pull costs a job creation, at least two polls and
/// one request per 10,000 rows, plus seconds of polling. At 20,000 rows that is 10 REST
/// requests against about 6 Bulk requests, and the gap grows with the row count.
pub const DEFAULT_BULK_THRESHOLD: u64 = 20_000;

/// Default of [`SalesforceConfig::bulk_poll_timeout`]: ten minutes.
pub const DEFAULT_BULK_POLL_TIMEOUT: Duration = Duration::from_secs(600);

impl fmt::Debug for SalesforceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceConfig")
            .field("login_url", &self.login_url.as_str())
            .field("api_version", &self.api_version)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("page_size", &self.page_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("bulk_threshold", &self.bulk_threshold)
            .field("bulk_objects", &self.bulk_objects)
            .field("bulk_poll_timeout", &self.bulk_poll_timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field(
                "extra_ca_pem",
                &self
                    .extra_ca_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .finish()
    }
}

impl SalesforceConfig {
    fn validate(&self) -> Result<(), ConnectorError> {
        let invalid = |message: String| ConnectorError::Rejected {
            code: "INVALID_CONFIG".to_string(),
            message,
        };
        if !matches!(self.login_url.scheme(), "http" | "https") || self.login_url.host().is_none() {
            return Err(invalid(format!(
                "login_url {} is not an http or https URL; use https://login.salesforce.com, \
                 https://test.salesforce.com or the org's My Domain URL",
                self.login_url
            )));
        }
        let version_ok = self
            .api_version
            .split_once('.')
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major.chars().all(|c| c.is_ascii_digit())
                    && minor.chars().all(|c| c.is_ascii_digit())
            });
        if !version_ok {
            return Err(invalid(format!(
                "api_version {:?} is not a REST API version; use the form 59.0 (without a v)",
                self.api_version
            )));
        }
        let major = major_version(&self.api_version);
        if major < OLDEST_API_VERSION {
            return Err(invalid(format!(
                "api_version {} is retired, and Salesforce returns 410 Gone to every REST call \
                 to versions before {OLDEST_API_VERSION}.0; set api_version to a supported \
                 version such as 59.0",
                self.api_version
            )));
        }
        if major < FIRST_BULK_QUERY_VERSION && !self.bulk_objects.is_empty() {
            return Err(invalid(format!(
                "bulk_objects needs api_version {FIRST_BULK_QUERY_VERSION}.0 or later, the first \
                 with Bulk API 2.0 query jobs, but api_version is {}; raise api_version or \
                 remove bulk_objects",
                self.api_version
            )));
        }
        if self.client_id.trim().is_empty() {
            return Err(invalid(
                "client_id is empty; set it to the connected app's consumer key".to_string(),
            ));
        }
        if let Some(size) = self.page_size {
            if !PAGE_SIZE_RANGE.contains(&size) {
                return Err(invalid(format!(
                    "page_size {size} is outside the batch sizes Salesforce accepts ({} to {}); \
                     leave it unset for the default of 2000",
                    PAGE_SIZE_RANGE.start(),
                    PAGE_SIZE_RANGE.end()
                )));
            }
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "timeout is zero; set a per-request timeout such as 60 seconds".to_string(),
            ));
        }
        Ok(())
    }

    fn token_url(&self) -> Result<Url, ConnectorError> {
        let base = self.login_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/services/oauth2/token")).map_err(|error| {
            ConnectorError::Rejected {
                code: "INVALID_CONFIG".to_string(),
                message: format!(
                    "login_url {} gives no valid token URL: {error}",
                    self.login_url
                ),
            }
        })
    }
}

/// A `Connector` for one Salesforce org over the REST API.
pub struct SalesforceConnector {
    login_url: Url,
    api_version: String,
    api: Api,
    /// Describes fetched so far, keyed by lower-case object name.
    schemas: Mutex<SchemaSet>,
    /// Compound fields and their components per lower-case object name, from the describes.
    compounds: Mutex<HashMap<String, bulk::Compounds>>,
    bulk_threshold: u64,
    bulk_objects: Vec<String>,
    bulk_poll_timeout: Duration,
}

impl fmt::Debug for SalesforceConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceConnector")
            .field("login_url", &self.login_url.as_str())
            .field("api_version", &self.api_version)
            .field("usage", &self.api.usage())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct LimitsWire {
    #[serde(rename = "DailyApiRequests")]
    daily_api_requests: Option<LimitWire>,
}

#[derive(Deserialize)]
struct LimitWire {
    #[serde(rename = "Max")]
    max: u64,
    #[serde(rename = "Remaining")]
    remaining: u64,
}

impl SalesforceConnector {
    /// Validates the configuration and builds the HTTP client. Makes no request; `check()`
    /// proves the credentials.
    pub fn new(config: SalesforceConfig) -> Result<Self, ConnectorError> {
        config.validate()?;
        let token_url = config.token_url()?;
        let http = build_client(
            &ClientSettings {
                timeout: config.timeout,
                extra_ca_pem: config.extra_ca_pem.as_deref(),
                allow_insecure_http: config.allow_insecure_http,
                allow_key: "[connector] allow_insecure_http",
            },
            &[&config.login_url, &token_url],
        )?;
        let mut tokens = TokenSource::new(
            http.clone(),
            token_url,
            config.client_id.clone(),
            config.client_secret.clone(),
            config.refresh_token.clone(),
            config.max_retries,
            config.retry_base_delay,
        );
        tokens.allow_insecure_http = config.allow_insecure_http;
        let api = Api::new(
            http,
            tokens,
            config.page_size,
            config.max_retries,
            config.retry_base_delay,
        );
        Ok(SalesforceConnector {
            login_url: config.login_url,
            api_version: config.api_version,
            api,
            schemas: Mutex::new(HashMap::new()),
            compounds: Mutex::new(HashMap::new()),
            bulk_threshold: config.bulk_threshold,
            bulk_objects: config.bulk_objects,
            bulk_poll_timeout: config.bulk_poll_timeout,
        })
    }

    /// Saves every refresh token the org rotates through `sink` before it is used.
    pub fn with_refresh_token_sink(mut self, sink: RefreshTokenSink) -> Self {
        self.api.tokens.sink = Some(sink);
        self
    }

    /// Limits this connector to `share` (0 to 1] of the org's remaining daily API requests,
    /// read from `GET /limits` or the first `Sforce-Limit-Info` header. Once the share is
    /// used, every call returns `ConnectorError::BudgetSpent` without a request.
    pub fn with_api_budget(mut self, share: f64) -> Self {
        self.api.budget = Some(leadscore_connector::limits::ApiBudget::new(share, None));
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

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{rest}", self.api_version)
    }

    /// Drops every cached describe, so the next use describes the objects again.
    fn forget_schemas(&self) {
        if let Ok(mut schemas) = self.schemas.lock() {
            schemas.clear();
        }
        if let Ok(mut compounds) = self.compounds.lock() {
            compounds.clear();
        }
    }

    fn cached_schemas(&self) -> SchemaSet {
        self.schemas.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn describe_cached(&self, object: &str) -> Result<Arc<ObjectSchema>, ConnectorError> {
        let key = object.to_ascii_lowercase();
        if let Some(schema) = self.schemas.lock().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(schema);
        }
        soql::validate_object_name(object)?;
        let path = self.data_path(&format!("sobjects/{object}/describe"));
        let body = self
            .api
            .request(Method::GET, &path, None, Paging::None)
            .await?;
        let schema = Arc::new(describe::parse_describe(object, &body)?);
        if let Ok(mut compounds) = self.compounds.lock() {
            compounds.insert(key.clone(), bulk::parse_compounds(&body));
        }
        debug!(object, fields = schema.fields.len(), "described object");
        if let Ok(mut schemas) = self.schemas.lock() {
            schemas.insert(schema.name.to_ascii_lowercase(), schema.clone());
            schemas.insert(key, schema.clone());
        }
        Ok(schema)
    }

    /// Returns `spec` with each compound field replaced by its components, describing the
    /// object first when needed.
    async fn expanded_spec(&self, spec: &PullSpec) -> Result<PullSpec, ConnectorError> {
        self.describe_cached(&spec.object).await?;
        let key = spec.object.to_ascii_lowercase();
        let compounds = self
            .compounds
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
            .unwrap_or_default();
        Ok(PullSpec {
            fields: bulk::expand_compounds(&spec.fields, &compounds),
            ..spec.clone()
        })
    }

    fn bulk_forced(&self, object: &str) -> bool {
        self.bulk_objects
            .iter()
            .any(|o| o.eq_ignore_ascii_case(object))
    }

    /// Converts a query response body, describing the pulled object and any parent objects
    /// its records reference on first use.
    async fn convert_body(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        body: &[u8],
    ) -> Result<Page, ConnectorError> {
        let wire = records::parse_query_page(&spec.object, body)?;
        self.describe_cached(&spec.object).await?;
        let mut described = Vec::new();
        loop {
            match records::convert_page(spec, cursor, &wire, &self.cached_schemas()) {
                Ok(page) => {
                    debug!(
                        object = %spec.object,
                        received = wire.records.len(),
                        returned = page.records.len(),
                        last_page = page.next.is_none(),
                        "converted query page"
                    );
                    return Ok(page);
                }
                Err(ConvertError::Failed(error)) => return Err(error),
                Err(ConvertError::NeedSchema(object)) => {
                    if described.contains(&object) {
                        return Err(ConnectorError::Payload(format!(
                            "describe of {object} did not return a schema named {object}"
                        )));
                    }
                    self.describe_cached(&object).await?;
                    described.push(object);
                }
            }
        }
    }

    /// Sends one collection update of at most `MAX_BATCH` records once and stores an outcome
    /// for each. Records that fail with `UNABLE_TO_LOCK_ROW` are reported as retryable and not
    /// resent here: the caller owns per-record retries, so that a locked record is not resent
    /// by two layers.
    async fn update_batch(
        &self,
        batch: Vec<(usize, serde_json::Value)>,
        updates: &[RecordUpdate],
        outcomes: &mut [Option<WriteOutcome>],
    ) -> Result<(), ConnectorError> {
        let path = self.data_path("composite/sobjects");
        let records: Vec<serde_json::Value> = batch.iter().map(|(_, json)| json.clone()).collect();
        let body = write::request_body(&records);
        let response = self
            .api
            .request(Method::PATCH, &path, Some(&body), Paging::None)
            .await?;
        let results = write::parse_results(&response, batch.len())?;

        let mut locked = 0;
        let mut failed = 0;
        for ((index, _), result) in batch.into_iter().zip(results) {
            let id = updates[index].id.clone();
            if result.success {
                outcomes[index] = Some(WriteOutcome { id, result: Ok(()) });
                continue;
            }
            failed += 1;
            if write::is_lock_failure(&result) {
                locked += 1;
            }
            outcomes[index] = Some(WriteOutcome {
                id,
                result: Err(write::record_error(&result)),
            });
        }
        debug!(records = records.len(), failed, locked, "collection update");
        Ok(())
    }
}

impl Connector for SalesforceConnector {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn max_batch(&self) -> usize {
        write::MAX_BATCH
    }

    async fn check(&self) -> Result<ApiUsage, ConnectorError> {
        self.api.authenticate().await?;
        let body = self
            .api
            .request(Method::GET, &self.data_path("limits"), None, Paging::None)
            .await?;
        let limits: LimitsWire = serde_json::from_slice(&body).map_err(|error| {
            ConnectorError::Payload(format!(
                "limits returned a body that is not a limits map: {error}"
            ))
        })?;
        let usage = match limits.daily_api_requests {
            Some(limit) => ApiUsage {
                used: limit.max.saturating_sub(limit.remaining),
                max: limit.max,
            },
            None => self.api.usage().ok_or_else(|| {
                ConnectorError::Payload(
                    "limits has no DailyApiRequests entry and the response had no \
                     Sforce-Limit-Info header"
                        .to_string(),
                )
            })?,
        };
        self.api.set_usage(usage);
        Ok(usage)
    }

    async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        self.describe_cached(object)
            .await
            .map(|schema| (*schema).clone())
    }

    async fn pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ConnectorError> {
        let spec = &self.expanded_spec(spec).await?;
        let mut bulk_allowed = true;
        if self.bulk_forced(&spec.object) {
            debug!(object = %spec.object, "starting pull with Bulk API 2.0, as configured");
            match self.bulk_pull_first(spec, cursor).await {
                Err(error) if bulk::bulk_job_rejected(&error) => {
                    warn!(object = %spec.object, %error, "Bulk API 2.0 rejected the query job, pulling over REST");
                    bulk_allowed = false;
                }
                result => return result,
            }
        }
        let soql = soql::build_pull_query(spec, cursor)?;
        debug!(object = %spec.object, %soql, include_deleted = spec.include_deleted, "starting pull");
        let path = soql::query_path(&self.api_version, &soql, spec.include_deleted);
        let body = self
            .api
            .request(Method::GET, &path, None, Paging::Query)
            .await?;
        let page = self.convert_body(spec, cursor, &body).await?;
        let total = page.total.unwrap_or(0);
        // Before API 47.0 there are no Bulk query jobs, so a large pull stays on REST.
        let bulk_allowed =
            bulk_allowed && major_version(&self.api_version) >= FIRST_BULK_QUERY_VERSION;
        if bulk_allowed && page.next.is_some() && total > self.bulk_threshold {
            debug!(object = %spec.object, total, threshold = self.bulk_threshold, "switching pull to Bulk API 2.0");
            match self.bulk_pull_first(spec, cursor).await {
                Err(error) if bulk::bulk_job_rejected(&error) => {
                    warn!(object = %spec.object, %error, "Bulk API 2.0 rejected the query job, going on over REST");
                }
                result => return result,
            }
        }
        Ok(page)
    }

    async fn pull_after(&self, spec: &PullSpec, after: &Cursor) -> Result<Page, ConnectorError> {
        let spec = &self.expanded_spec(spec).await?;
        if self.bulk_forced(&spec.object) {
            // Bulk results stay readable while the job exists, so a Bulk pull is never
            // restarted part way; starting at the stamp is enough.
            match self.bulk_pull_first(spec, Some(after)).await {
                Err(error) if bulk::bulk_job_rejected(&error) => {
                    warn!(object = %spec.object, %error, "Bulk API 2.0 rejected the query job, pulling over REST");
                }
                result => return result,
            }
        }
        let soql = soql::build_pull_query_after(spec, after)?;
        debug!(object = %spec.object, %soql, include_deleted = spec.include_deleted, "resuming pull");
        let path = soql::query_path(&self.api_version, &soql, spec.include_deleted);
        let body = self
            .api
            .request(Method::GET, &path, None, Paging::Query)
            .await?;
        self.convert_body(spec, Some(after), &body).await
    }

    async fn pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        next: &str,
    ) -> Result<Page, ConnectorError> {
        if let Some(token) = bulk::decode_token(next) {
            let spec = &self.expanded_spec(spec).await?;
            return self.bulk_pull_next(spec, cursor, token?).await;
        }
        let body = self
            .api
            .request(Method::GET, next, None, Paging::Query)
            .await?;
        // Expanded after the request, so a token that is not an API path sends nothing.
        let spec = &self.expanded_spec(spec).await?;
        self.convert_body(spec, cursor, &body).await
    }

    async fn update(&self, updates: &[RecordUpdate]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; updates.len()];

        // Salesforce splits a request into runs of consecutive same-type records and allows
        // at most 10 runs, so records are grouped by object (stable, to keep per-object order).
        let mut order: Vec<usize> = (0..updates.len()).collect();
        order.sort_by(|a, b| updates[*a].object.cmp(&updates[*b].object));

        let mut sendable = Vec::with_capacity(updates.len());
        for index in order {
            match write::record_json(&updates[index]) {
                Ok(json) => sendable.push((index, json)),
                Err(error) => {
                    outcomes[index] = Some(WriteOutcome {
                        id: updates[index].id.clone(),
                        result: Err(error),
                    })
                }
            }
        }
        // NOTE: when a later batch fails as a whole (limit, auth, transport), the error is
        // returned and the outcomes of batches already written are lost. Rewriting the same
        // values is harmless, so callers can retry the whole call.
        for batch in sendable.chunks(write::MAX_BATCH) {
            self.update_batch(batch.to_vec(), updates, &mut outcomes)
                .await?;
        }

        outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                outcome.ok_or_else(|| {
                    ConnectorError::Payload(format!("update {index} received no result"))
                })
            })
            .collect()
    }

    async fn fetch(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
        self.fetch_records(object, ids, fields).await
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

    fn config() -> SalesforceConfig {
        SalesforceConfig {
            login_url: Url::parse("https://login.salesforce.com").unwrap(),
            api_version: "59.0".to_string(),
            client_id: "3MVG9client".to_string(),
            client_secret: SecretString::from("secret-value-1234"),
            refresh_token: SecretString::from("refresh-value-5678"),
            page_size: Some(500),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(5),
            extra_ca_pem: None,
            allow_insecure_http: false,
            bulk_threshold: DEFAULT_BULK_THRESHOLD,
            bulk_objects: Vec::new(),
            bulk_poll_timeout: DEFAULT_BULK_POLL_TIMEOUT,
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = config();
        let text = format!("{config:?}");
        assert!(!text.contains("secret-value-1234"), "{text}");
        assert!(!text.contains("refresh-value-5678"), "{text}");
        assert!(text.contains("3MVG9client"), "{text}");
        let connector = SalesforceConnector::new(config).unwrap();
        let text = format!("{connector:?}");
        assert!(!text.contains("secret-value-1234"), "{text}");
        assert!(!text.contains("refresh-value-5678"), "{text}");
    }

    #[test]
    fn config_validation() {
        let mut bad_version = config();
        bad_version.api_version = "v59.0".to_string();
        assert!(SalesforceConnector::new(bad_version).is_err());

        let mut bad_page = config();
        bad_page.page_size = Some(50);
        let error = SalesforceConnector::new(bad_page).unwrap_err();
        assert!(error.to_string().contains("page_size 50"), "{error}");

        let mut bad_url = config();
        bad_url.login_url = Url::parse("ftp://login.salesforce.com").unwrap();
        assert!(SalesforceConnector::new(bad_url).is_err());

        let mut no_client = config();
        no_client.client_id = " ".to_string();
        assert!(SalesforceConnector::new(no_client).is_err());

        let mut retired = config();
        retired.api_version = "30.0".to_string();
        let error = SalesforceConnector::new(retired).unwrap_err();
        assert!(error.to_string().contains("30.0"), "{error}");
        assert!(error.to_string().contains("retired"), "{error}");

        let mut oldest = config();
        oldest.api_version = "31.0".to_string();
        assert!(SalesforceConnector::new(oldest).is_ok());

        let mut bulk_too_old = config();
        bulk_too_old.api_version = "46.0".to_string();
        bulk_too_old.bulk_objects = vec!["Task".to_string()];
        let error = SalesforceConnector::new(bulk_too_old).unwrap_err();
        assert!(error.to_string().contains("47.0"), "{error}");
        assert!(error.to_string().contains("bulk_objects"), "{error}");
    }

    #[test]
    fn token_url_from_login_url() {
        let mut with_slash = config();
        with_slash.login_url = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            with_slash.token_url().unwrap().as_str(),
            "http://127.0.0.1:8080/services/oauth2/token"
        );
    }
}
