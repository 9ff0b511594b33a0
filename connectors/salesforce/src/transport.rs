//! Authenticated REST calls with session renewal, retries and API-usage tracking.

use std::sync::Mutex;
use std::time::Duration;

use leadscore_connector::http::BodyError;
use leadscore_connector::limits::{parse_retry_after, ApiBudget};
use leadscore_connector::{ApiUsage, ConnectorError};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::ExposeSecret;
use tracing::{debug, info, warn};
use url::Url;

use crate::auth::TokenSource;
use crate::errors::{parse_error_body, ApiError};

/// Upper bound of one backoff delay before jitter.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Returns the delay before retry number `attempt` (counting from 0): `base * 2^attempt`,
/// capped at `MAX_BACKOFF`, with full jitter over its upper half.
pub(crate) fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    let ceiling = base.saturating_mul(factor).min(MAX_BACKOFF);
    let floor = ceiling / 2;
    if ceiling <= floor {
        return ceiling;
    }
    rand::thread_rng().gen_range(floor..=ceiling)
}

/// Parses `Sforce-Limit-Info`, for example `api-usage=25/5000;per-app-api-usage=17/250(appName=X)`,
/// into the org-wide usage.
pub(crate) fn parse_limit_info(header: &str) -> Option<ApiUsage> {
    header.split(';').find_map(|part| {
        let (used, max) = part.trim().strip_prefix("api-usage=")?.split_once('/')?;
        Some(ApiUsage {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    })
}

/// Appends an absolute API path (`/services/data/...`) to the instance URL. Paths that could
/// move the request to another host are rejected, because the request carries the token.
pub(crate) fn api_url(instance: &Url, path: &str) -> Result<Url, ConnectorError> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(ConnectorError::Payload(format!(
            "API path {path:?} is not an absolute path on the Salesforce instance; a paging \
             token must be the nextRecordsUrl of a query response"
        )));
    }
    let base = instance.as_str().trim_end_matches('/');
    let url = Url::parse(&format!("{base}{path}")).map_err(|error| {
        ConnectorError::Payload(format!(
            "API path {path:?} does not form a valid URL: {error}"
        ))
    })?;
    if url.origin() != instance.origin() {
        return Err(ConnectorError::Payload(format!(
            "API path {path:?} points away from the instance {instance}"
        )));
    }
    Ok(url)
}

/// Whether a request sends the page-size header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    Query,
    None,
}

/// Returns true when sending `method` to `path` twice has the effect of sending it once:
/// reads, Collections retrieve (a POST that only reads) and creating a Bulk query job.
fn replay_safe(method: &Method, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    if *method == Method::GET || *method == Method::HEAD {
        return true;
    }
    if *method != Method::POST {
        return false;
    }
    let after = |marker: &str| {
        path.split_once(marker)
            .map(|(_, rest)| rest.trim_end_matches('/'))
    };
    match after("/composite/sobjects/") {
        // `composite/sobjects/{Object}` with ids in the body is a retrieve.
        Some(rest) => !rest.is_empty() && !rest.contains('/'),
        None => after("/jobs/query").is_some_and(str::is_empty),
    }
}

/// Returns true when `method` to `path` creates records: `POST` to `composite/sobjects`
/// (Collections create) or to `sobjects/{Object}`. Sending a create twice makes two records.
fn creates_records(method: &Method, path: &str) -> bool {
    if *method != Method::POST {
        return false;
    }
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if path.ends_with("/composite/sobjects") {
        return true;
    }
    // `composite/sobjects/{Object}` with ids in the body is a retrieve.
    if path.contains("/composite/sobjects/") {
        return false;
    }
    path.rsplit_once("/sobjects/")
        .is_some_and(|(_, object)| !object.is_empty() && !object.contains('/'))
}

/// A REST client for one org: shared session, retry policy and the last reported API usage.
pub(crate) struct Api {
    http: reqwest::Client,
    pub(crate) tokens: TokenSource,
    /// This run's share of the org's daily API requests; `None` sends without a limit.
    pub(crate) budget: Option<ApiBudget>,
    usage: Mutex<Option<ApiUsage>>,
    /// The `Date` of the last response.
    server_time: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    page_size: Option<u32>,
    max_retries: u32,
    retry_base_delay: Duration,
}

impl Api {
    pub fn new(
        http: reqwest::Client,
        tokens: TokenSource,
        page_size: Option<u32>,
        max_retries: u32,
        retry_base_delay: Duration,
    ) -> Self {
        Api {
            server_time: Mutex::new(None),
            http,
            tokens,
            budget: None,
            usage: Mutex::new(None),
            page_size,
            max_retries,
            retry_base_delay,
        }
    }

    /// Returns the API usage from the last `Sforce-Limit-Info` header seen.
    pub fn usage(&self) -> Option<ApiUsage> {
        self.usage.lock().ok().and_then(|usage| *usage)
    }

    pub fn set_usage(&self, usage: ApiUsage) {
        if let Ok(mut last) = self.usage.lock() {
            *last = Some(usage);
        }
        if let Some(allowed) = self.budget.as_ref().and_then(|b| b.observe(usage)) {
            info!(
                allowed,
                used_today = usage.used,
                max_today = usage.max,
                "API budget of this run set from the org's daily API requests"
            );
        }
    }

    /// Ensures a session exists, requesting a token when needed.
    pub async fn authenticate(&self) -> Result<(), ConnectorError> {
        self.tokens.session().await.map(|_| ())
    }

    /// Sends one API call and returns the body of its 2xx response.
    ///
    /// A 401 `INVALID_SESSION_ID` renews the session and repeats the call once. Connection
    /// errors, 429 and 5xx responses and the concurrent-request `REQUEST_LIMIT_EXCEEDED` are
    /// retried up to `max_retries` times, after `Retry-After` when the response has one and
    /// with jittered exponential backoff otherwise. Other failures, the daily
    /// `REQUEST_LIMIT_EXCEEDED` and a whole-request `UNABLE_TO_LOCK_ROW` among them, are mapped
    /// to `ConnectorError` at once, and so are a 500, 502 and 504 to a create, which may have
    /// been applied. Every attempt counts against the run's API budget, and a spent budget
    /// returns `BudgetSpent` before anything is sent.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        paging: Paging,
    ) -> Result<Vec<u8>, ConnectorError> {
        let (_, body) = self.exchange(method, path, body, paging, None).await?;
        Ok(body)
    }

    /// Sends one API call as [`Api::request`] does, with an optional `Accept` header, and
    /// returns the headers and body of its 2xx response. Bulk API 2.0 results need both. A 2xx
    /// response that carries an HTML page is a `Payload` error, because a proxy sent it.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        paging: Paging,
        accept: Option<&str>,
    ) -> Result<(HeaderMap, Vec<u8>), ConnectorError> {
        let log_path = path.split('?').next().unwrap_or(path);
        let body = body
            .map(|json| leadscore_connector::http::encode_request_body(json, &method, log_path))
            .transpose()?;
        let mut session = self.tokens.session().await?;
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            if let Some(budget) = &self.budget {
                budget.admit()?;
            }
            let url = api_url(&session.instance_url, path)?;
            let mut builder = self
                .http
                .request(method.clone(), url)
                .bearer_auth(session.access_token.expose_secret());
            if let (Paging::Query, Some(size)) = (paging, self.page_size) {
                builder = builder.header("Sforce-Query-Options", format!("batchSize={size}"));
            }
            if let Some(body) = &body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(accept) = accept {
                builder = builder.header(reqwest::header::ACCEPT, accept);
            }

            let mut retry_after = None;
            let mut lost_before_sending = false;
            let failure = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let content_type = headers
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string);
                    self.record_usage(response.headers());
                    retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| parse_retry_after(value, chrono::Utc::now()));
                    let cap = if accept == Some("text/csv") {
                        leadscore_connector::http::BULK_PAGE_CAP
                    } else {
                        leadscore_connector::http::JSON_BODY_CAP
                    };
                    match leadscore_connector::http::read_capped(response, cap, "response").await {
                        Ok(bytes) => {
                            debug!(%method, path = log_path, status, bytes = bytes.len(), "Salesforce response");
                            let html = leadscore_connector::http::is_html_page(
                                content_type.as_deref(),
                                &bytes,
                            );
                            if (200..300).contains(&status) && html {
                                return Err(ConnectorError::Payload(format!(
                                    "{method} {log_path} returned {}; an HTML page came back in \
                                     place of the API's response, which usually means a proxy, \
                                     firewall or sign-in page answered in place of Salesforce. \
                                     Check login_url and any proxy between leadscore and \
                                     Salesforce",
                                    crate::errors::describe_unparsed_body(status, &bytes)
                                )));
                            }
                            if (200..300).contains(&status) {
                                return Ok((headers, bytes));
                            }
                            parse_error_body(status, &bytes)
                        }
                        Err(BodyError::TooLarge(message)) => {
                            return Err(ConnectorError::Payload(message));
                        }
                        Err(BodyError::Read(message)) => ApiError {
                            status: 0,
                            code: "READ_FAILED".to_string(),
                            message,
                        },
                    }
                }
                Err(error) => {
                    lost_before_sending = error.is_connect();
                    ApiError {
                        status: 0,
                        code: "CONNECTION_FAILED".to_string(),
                        message: crate::errors::error_chain(&error),
                    }
                }
            };

            if failure.is_invalid_session() && !renewed {
                debug!(%method, path = log_path, "session rejected, requesting a new access token");
                renewed = true;
                session = self.tokens.renew(session.generation).await?;
                continue;
            }
            // A write whose response was lost may have been applied; sending it again would
            // write twice, so the caller reads the records back instead.
            let outcome_unknown =
                failure.status == 0 && !lost_before_sending && !replay_safe(&method, path);
            if outcome_unknown {
                return Err(ConnectorError::Transport(format!(
                    "{method} {log_path}: {}; the CRM may have applied it, so it is not sent again",
                    failure.message
                )));
            }
            // After a 500, 502 or 504 a create may have been applied, so it is not sent again
            // and the caller looks the records up before creating them again.
            if creates_records(&method, path) && matches!(failure.status, 500 | 502 | 504) {
                return Err(ConnectorError::Transport(format!(
                    "{method} {log_path}: {}: {}; Salesforce may have applied it, so it is not \
                     sent again",
                    failure.code, failure.message
                )));
            }
            let transient = failure.status == 0 || failure.is_transient();
            if transient && attempt < self.max_retries {
                let delay =
                    retry_after.unwrap_or_else(|| backoff_delay(self.retry_base_delay, attempt));
                warn!(
                    %method, path = log_path, status = failure.status, code = %failure.code,
                    attempt = attempt + 1, ?delay, retry_after = retry_after.is_some(),
                    "Salesforce request failed, retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            if failure.status == 0 {
                return Err(ConnectorError::Transport(format!(
                    "{method} {log_path} failed after {attempt} retries: {}",
                    failure.message
                )));
            }
            debug!(%method, path = log_path, status = failure.status, code = %failure.code, "Salesforce request failed");
            if failure.status == 410 {
                return Err(ConnectorError::Rejected {
                    code: "INVALID_CONFIG".to_string(),
                    message: format!(
                        "{method} {log_path} returned HTTP 410 Gone, which Salesforce returns for \
                         a retired API version; set api_version to a supported version such as \
                         59.0 ({}: {})",
                        failure.code, failure.message
                    ),
                });
            }
            return Err(failure.into_connector_error());
        }
    }

    /// The server's clock as of the last response.
    pub fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.server_time.lock().ok().and_then(|t| *t)
    }

    fn record_usage(&self, headers: &HeaderMap) {
        if let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(leadscore_connector::http_date)
        {
            if let Ok(mut time) = self.server_time.lock() {
                *time = Some(date);
            }
        }
        let usage = headers
            .get_all("Sforce-Limit-Info")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(parse_limit_info);
        if let Some(usage) = usage {
            self.set_usage(usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_forms() {
        assert_eq!(
            parse_limit_info("api-usage=1234/15000"),
            Some(ApiUsage {
                used: 1234,
                max: 15000
            })
        );
        assert_eq!(
            parse_limit_info("api-usage=25/5000;per-app-api-usage=17/250(appName=Lead_Scoring)"),
            Some(ApiUsage {
                used: 25,
                max: 5000
            })
        );
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=X); api-usage=3/9"),
            Some(ApiUsage { used: 3, max: 9 })
        );
        assert_eq!(parse_limit_info("api-usage=lots/5000"), None);
        assert_eq!(parse_limit_info(""), None);
    }

    #[test]
    fn only_reads_are_replayed() {
        let data = "/services/data/v59.0";
        assert!(replay_safe(
            &Method::GET,
            &format!("{data}/query?q=SELECT+Id")
        ));
        assert!(replay_safe(
            &Method::POST,
            &format!("{data}/composite/sobjects/Account")
        ));
        assert!(replay_safe(&Method::POST, &format!("{data}/jobs/query")));
        assert!(!replay_safe(
            &Method::PATCH,
            &format!("{data}/composite/sobjects")
        ));
        assert!(!replay_safe(
            &Method::POST,
            &format!("{data}/composite/sobjects")
        ));
        assert!(!replay_safe(
            &Method::POST,
            &format!("{data}/sobjects/Task")
        ));
        assert!(!replay_safe(
            &Method::PATCH,
            &format!("{data}/jobs/query/750x")
        ));
    }

    #[test]
    fn creates_recognised() {
        let data = "/services/data/v59.0";
        assert!(creates_records(
            &Method::POST,
            &format!("{data}/composite/sobjects")
        ));
        assert!(creates_records(
            &Method::POST,
            &format!("{data}/sobjects/Task")
        ));
        assert!(!creates_records(
            &Method::PATCH,
            &format!("{data}/composite/sobjects")
        ));
        assert!(!creates_records(
            &Method::POST,
            &format!("{data}/composite/sobjects/Account")
        ));
        assert!(!creates_records(
            &Method::POST,
            &format!("{data}/jobs/query")
        ));
        assert!(!creates_records(
            &Method::GET,
            &format!("{data}/sobjects/Task")
        ));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        for attempt in 0..5 {
            let delay = backoff_delay(base, attempt);
            let ceiling = base * (1 << attempt);
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} > {ceiling:?}"
            );
            assert!(
                delay >= ceiling / 2,
                "attempt {attempt}: {delay:?} < {:?}",
                ceiling / 2
            );
        }
        assert!(backoff_delay(base, 40) <= MAX_BACKOFF);
        assert_eq!(backoff_delay(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn api_url_keeps_host() {
        let instance = Url::parse("https://acme.my.salesforce.com").unwrap();
        let url = api_url(&instance, "/services/data/v59.0/query/01g-200").unwrap();
        assert_eq!(
            url.as_str(),
            "https://acme.my.salesforce.com/services/data/v59.0/query/01g-200"
        );
        for bad in [
            "@evil.test/x",
            "//evil.test/x",
            "services/data",
            ".evil.test/x",
        ] {
            assert!(api_url(&instance, bad).is_err(), "{bad} was accepted");
        }
    }
}
