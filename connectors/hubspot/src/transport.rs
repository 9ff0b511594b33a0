//! Authenticated HubSpot calls with token renewal, client-side rate limiting, retries and
//! daily-usage tracking.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leadscore_connector::limits::{backoff_with_jitter, ApiBudget, MAX_RETRY_AFTER};
use leadscore_connector::{ApiUsage, ConnectorError};
use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::ExposeSecret;
use tokio::sync::Mutex as AsyncMutex;
use tracing::{debug, info, warn};
use url::Url;

use crate::auth::{RetryPolicy, TokenSource};
use crate::errors::{
    describe_unparsed_body, error_chain, parse_error_body, ApiError, RateLimitKind,
};
use leadscore_connector::http::BodyError;

/// Upper bound of one backoff delay.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// Shortest wait after a 423 Locked, which HubSpot documents as a 2-second lock.
const LOCKED_WAIT: Duration = Duration::from_secs(2);

/// Burst allowance assumed until a response reports `X-HubSpot-RateLimit-Max`: 100 calls per
/// ten seconds, the smallest private-app tier.
const DEFAULT_BURST_MAX: u32 = 100;
const DEFAULT_BURST_WINDOW: Duration = Duration::from_secs(10);

/// Added to the ten-second window the client keeps. The client counts a call when it starts and
/// HubSpot when it arrives, so without it a call started just after the client's window
/// moved on could arrive inside HubSpot's.
const WINDOW_PADDING: Duration = Duration::from_millis(200);

/// The same allowance for the one-second search window, smaller so that searches keep most
/// of their rate (an estimate: enough on loopback and across a network hop).
const SEARCH_WINDOW_PADDING: Duration = Duration::from_millis(100);

/// Returns the delay before retry number `attempt` (counting from 0): `base * 2^attempt`,
/// capped at `MAX_BACKOFF`, with jitter over its upper half.
pub(crate) fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    backoff_with_jitter(base, attempt, MAX_BACKOFF)
}

/// A sliding-window limiter: at most `max` calls start within any `window`.
struct Window {
    max: u32,
    window: Duration,
    started: VecDeque<Instant>,
}

impl Window {
    fn new(max: u32, window: Duration) -> Self {
        Window {
            max: max.max(1),
            window,
            started: VecDeque::new(),
        }
    }

    /// Returns how long to wait before the next call may start, or `None` and records the
    /// call when it may start now.
    fn admit(&mut self, now: Instant) -> Option<Duration> {
        while let Some(first) = self.started.front() {
            if now.duration_since(*first) >= self.window {
                self.started.pop_front();
            } else {
                break;
            }
        }
        if (self.started.len() as u32) < self.max {
            self.started.push_back(now);
            return None;
        }
        let first = *self.started.front()?;
        Some(self.window.saturating_sub(now.duration_since(first)))
    }
}

/// The limits a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Every call except search.
    Standard,
    /// CRM search, which has its own per-second limit on top of the burst window.
    Search,
}

/// Settings of the client-side limiter and 429 handling.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateSettings {
    /// Share of the reported burst allowance the client uses, leaving the rest to other apps
    /// and to clock skew.
    pub burst_share: f64,
    pub search_per_second: u32,
    /// Wait after a burst (`TEN_SECONDLY_ROLLING`) 429 without `Retry-After`, times the attempt.
    pub burst_backoff: Duration,
    /// Wait after a search (`SECONDLY`) 429 without `Retry-After`, times the attempt.
    pub secondly_backoff: Duration,
}

/// A HubSpot API client: base URL, tokens, limiter and the last reported daily usage.
pub(crate) struct Api {
    http: reqwest::Client,
    base_url: Url,
    pub(crate) tokens: TokenSource,
    /// This run's share of the portal's daily calls; `None` sends without a limit.
    pub(crate) budget: Option<ApiBudget>,
    retries: RetryPolicy,
    rate: RateSettings,
    burst: AsyncMutex<Window>,
    search: AsyncMutex<Window>,
    usage: Mutex<Option<ApiUsage>>,
    /// The `Date` of the last response.
    server_time: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Api {
    pub fn new(
        http: reqwest::Client,
        base_url: Url,
        tokens: TokenSource,
        retries: RetryPolicy,
        rate: RateSettings,
    ) -> Self {
        let burst_max = scaled(DEFAULT_BURST_MAX, rate.burst_share);
        Api {
            http,
            base_url,
            tokens,
            budget: None,
            retries,
            rate,
            burst: AsyncMutex::new(Window::new(
                burst_max,
                DEFAULT_BURST_WINDOW + WINDOW_PADDING,
            )),
            // Padded like the burst window: the client counts a search when it starts and
            // HubSpot when it arrives, and an unpadded window met SECONDLY 429s.
            search: AsyncMutex::new(Window::new(
                rate.search_per_second,
                Duration::from_secs(1) + SEARCH_WINDOW_PADDING,
            )),
            usage: Mutex::new(None),
            server_time: Mutex::new(None),
        }
    }

    /// Returns the daily usage from the last `X-HubSpot-RateLimit-Daily*` headers seen.
    pub fn usage(&self) -> Option<ApiUsage> {
        self.usage.lock().ok().and_then(|usage| *usage)
    }

    /// The server's clock as of the last response.
    pub fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.server_time.lock().ok().and_then(|t| *t)
    }

    /// Ensures a token exists, requesting one when needed.
    pub async fn authenticate(&self) -> Result<(), ConnectorError> {
        self.tokens
            .token(&self.http, &self.retries)
            .await
            .map(|_| ())
    }

    /// Sends a JSON call and parses the 2xx body as `T`.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        kind: CallKind,
    ) -> Result<T, ConnectorError> {
        let (_, bytes) = self.send(method.clone(), path, body, kind).await?;
        serde_json::from_slice(&bytes).map_err(|error| {
            let path = path.split('?').next().unwrap_or(path);
            ConnectorError::Payload(format!(
                "{method} {path} returned a body this connector cannot read: {error}"
            ))
        })
    }

    /// Sends one call and returns the status and body of its 2xx response. Non-2xx responses
    /// that are not retried come back as `Err(ApiError)` through `send_raw`; this maps them to
    /// `ConnectorError`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        kind: CallKind,
    ) -> Result<(u16, Vec<u8>), ConnectorError> {
        match self.send_raw(method, path, body, kind).await? {
            Ok(response) => Ok(response),
            Err(error) => Err(error.into_connector_error()),
        }
    }

    /// Sends one call. A 401 renews an OAuth token and repeats the call once. Connection
    /// errors and 5xx responses are retried after `Retry-After` or with jittered exponential
    /// backoff, and 429s (except the daily limit) after `Retry-After` or the policy's
    /// backoff, up to `max_retries` times. A 500, 502 or 504 to a create, which may have been
    /// applied, is a `Transport` error at once. Every attempt counts against the run's API
    /// budget, and a spent budget returns `BudgetSpent` before anything is sent. Returns
    /// `Ok(Err(..))` for a final non-2xx response, so callers can inspect it. A 2xx response
    /// that carries an HTML page is a `Payload` error, because a proxy sent it.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        kind: CallKind,
    ) -> Result<Result<(u16, Vec<u8>), ApiError>, ConnectorError> {
        let log_path = path.split('?').next().unwrap_or(path);
        let url = self.url(path)?;
        let body = body
            .map(|json| leadscore_connector::http::encode_request_body(json, &method, log_path))
            .transpose()?;
        let mut token = self.tokens.token(&self.http, &self.retries).await?;
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            if let Some(budget) = &self.budget {
                budget.admit()?;
            }
            self.wait_for_slot(kind).await;
            let mut builder = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret.expose_secret());
            if let Some(body) = &body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let mut lost_before_sending = false;
            let (mut failure, retry_after) = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string);
                    self.record_headers(response.headers(), kind).await;
                    let retry_after = parse_retry_after(response.headers());
                    let read = leadscore_connector::http::read_capped(
                        response,
                        leadscore_connector::http::JSON_BODY_CAP,
                        "response",
                    )
                    .await;
                    match read {
                        Ok(bytes) => {
                            debug!(%method, path = log_path, status, bytes = bytes.len(), "HubSpot response");
                            let html = leadscore_connector::http::is_html_page(
                                content_type.as_deref(),
                                &bytes,
                            );
                            if (200..300).contains(&status) && html {
                                return Err(ConnectorError::Payload(format!(
                                    "{method} {log_path} returned {}; an HTML page came back in \
                                     place of the API's response, which usually means a proxy, \
                                     firewall or sign-in page answered in place of HubSpot. Check \
                                     base_url and any proxy between leadscore and HubSpot",
                                    describe_unparsed_body(status, &bytes)
                                )));
                            }
                            if (200..300).contains(&status) {
                                return Ok(Ok((status, bytes)));
                            }
                            (parse_error_body(status, &bytes), retry_after)
                        }
                        Err(BodyError::TooLarge(message)) => {
                            return Err(ConnectorError::Payload(message));
                        }
                        Err(BodyError::Read(message)) => (ApiError::connection(message), None),
                    }
                }
                Err(error) => {
                    lost_before_sending = error.is_connect();
                    (ApiError::connection(error_chain(&error)), None)
                }
            };
            // A write whose response was lost may have been applied; sending it again would
            // write twice, so the caller reads the records back instead.
            if failure.status == 0 && !lost_before_sending && !replay_safe(&method, path) {
                return Err(ConnectorError::Transport(format!(
                    "{method} {log_path}: {}; HubSpot may have applied it, so it is not sent again",
                    failure.message
                )));
            }

            if failure.is_expired_token() && !renewed && self.tokens.can_renew() {
                debug!(%method, path = log_path, category = %failure.category, "access token rejected, renewing");
                renewed = true;
                token = self
                    .tokens
                    .renew(token.generation, &self.http, &self.retries)
                    .await?;
                continue;
            }
            // HubSpot returns 502 and 504 when a call hits its processing time limit, and the
            // call may still complete, so a create is not sent again after them or a 500.
            if creates_records(&method, path) && matches!(failure.status, 500 | 502 | 504) {
                return Err(ConnectorError::Transport(format!(
                    "{method} {log_path}: HTTP {} {}: {}; HubSpot may have applied it, so it is \
                     not sent again",
                    failure.status, failure.category, failure.message
                )));
            }
            failure.retry_after = retry_after;
            let retry_after = retry_after.map(|wait| wait.min(MAX_RETRY_AFTER));
            let delay = match failure.rate_limit() {
                Some(RateLimitKind::Daily) => None,
                Some(RateLimitKind::Secondly) => Some(
                    retry_after.unwrap_or(self.rate.secondly_backoff.saturating_mul(attempt + 1)),
                ),
                Some(RateLimitKind::Burst) => {
                    Some(retry_after.unwrap_or(self.rate.burst_backoff.saturating_mul(attempt + 1)))
                }
                // A migration can last a day, so a wait past the cap, or no wait given, ends
                // the call.
                None if failure.is_migrating() => retry_after.filter(|_| {
                    failure
                        .retry_after
                        .is_some_and(|wait| wait <= MAX_RETRY_AFTER)
                }),
                None if failure.is_locked() => Some(
                    retry_after
                        .unwrap_or_else(|| backoff_delay(self.retries.base_delay, attempt))
                        .max(LOCKED_WAIT),
                ),
                None if failure.is_transient() => Some(
                    retry_after.unwrap_or_else(|| backoff_delay(self.retries.base_delay, attempt)),
                ),
                None => None,
            };
            match delay {
                Some(delay) if attempt < self.retries.max_retries => {
                    warn!(
                        %method, path = log_path, status = failure.status,
                        category = %failure.category, policy = ?failure.policy,
                        correlation_id = ?failure.correlation_id,
                        attempt = attempt + 1, ?delay, "HubSpot request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                _ => {
                    debug!(
                        %method, path = log_path, status = failure.status,
                        category = %failure.category, correlation_id = ?failure.correlation_id,
                        retries = attempt, "HubSpot request failed"
                    );
                    if failure.status == 0 {
                        return Err(ConnectorError::Transport(format!(
                            "{method} {log_path} failed after {attempt} retries: {}",
                            failure.message
                        )));
                    }
                    return Ok(Err(failure));
                }
            }
        }
    }

    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(ConnectorError::Payload(format!(
                "API path {path:?} is not an absolute path on the HubSpot API host"
            )));
        }
        let base = self.base_url.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path}")).map_err(|error| {
            ConnectorError::Payload(format!(
                "API path {path:?} does not form a valid URL: {error}"
            ))
        })?;
        if url.origin() != self.base_url.origin() {
            return Err(ConnectorError::Payload(format!(
                "API path {path:?} points away from {}",
                self.base_url
            )));
        }
        Ok(url)
    }

    /// Waits until the burst window, and for search the per-second window, admit one call.
    async fn wait_for_slot(&self, kind: CallKind) {
        loop {
            let wait = {
                let now = Instant::now();
                let mut burst = self.burst.lock().await;
                match burst.admit(now) {
                    Some(wait) => Some(wait),
                    None if kind == CallKind::Search => {
                        let wait = self.search.lock().await.admit(now);
                        if wait.is_some() {
                            // Give the burst slot back: this call has not started.
                            burst.started.pop_back();
                        }
                        wait
                    }
                    None => None,
                }
            };
            match wait {
                None => return,
                Some(wait) => {
                    debug!(
                        ?wait,
                        search = kind == CallKind::Search,
                        "client-side rate limit reached, waiting"
                    );
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    /// Reads the `X-HubSpot-RateLimit-*` headers: the burst allowance resizes the limiter,
    /// and the daily pair becomes the reported usage. Every header is optional.
    async fn record_headers(&self, headers: &HeaderMap, kind: CallKind) {
        if let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(leadscore_connector::http_date)
        {
            if let Ok(mut time) = self.server_time.lock() {
                *time = Some(date);
            }
        }
        let number = |name: &str| -> Option<u64> {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse().ok())
        };
        if let (Some(daily), Some(remaining)) = (
            number("x-hubspot-ratelimit-daily"),
            number("x-hubspot-ratelimit-daily-remaining"),
        ) {
            let usage = ApiUsage {
                used: daily.saturating_sub(remaining),
                max: daily,
            };
            if let Ok(mut last) = self.usage.lock() {
                *last = Some(usage);
            }
            if let Some(allowed) = self.budget.as_ref().and_then(|b| b.observe(usage)) {
                info!(
                    allowed,
                    remaining_today = remaining,
                    "API budget of this run set from the portal's daily limit headers"
                );
            }
        } else if kind == CallKind::Standard {
            // Search responses never carry the daily headers, so only a standard call without
            // them shows that the portal does not send them.
            if let Some(allowed) = self.budget.as_ref().and_then(ApiBudget::observe_missing) {
                info!(
                    allowed,
                    "API budget of this run set from the configured daily allowance, because \
                     HubSpot sent no daily limit headers"
                );
            }
        }
        if let Some(max) = number("x-hubspot-ratelimit-max") {
            let interval = number("x-hubspot-ratelimit-interval-milliseconds")
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_BURST_WINDOW)
                + WINDOW_PADDING;
            let mut burst = self.burst.lock().await;
            burst.max = scaled(max.min(u32::MAX as u64) as u32, self.rate.burst_share);
            burst.window = interval;
        }
    }
}

fn scaled(max: u32, share: f64) -> u32 {
    ((max as f64 * share).floor() as u32).max(1)
}

/// Returns true when `method` to `path` creates records: a batch create, or `POST` to
/// `/crm/v3/objects/{objectType}`. Sending a create twice makes two records.
fn creates_records(method: &Method, path: &str) -> bool {
    if *method != Method::POST {
        return false;
    }
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if path.ends_with("/batch/create") {
        return true;
    }
    path.strip_prefix("/crm/v3/objects/")
        .is_some_and(|object_type| !object_type.is_empty() && !object_type.contains('/'))
}

/// Returns true when sending `method` to `path` twice has the effect of sending it once:
/// reads, searches and batch reads. Creates, updates, merges and archives are not.
fn replay_safe(method: &Method, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    match *method {
        Method::GET | Method::HEAD => true,
        Method::POST => path.ends_with("/search") || path.ends_with("/batch/read"),
        _ => false,
    }
}

/// Parses `Retry-After`, in seconds or as an HTTP date, uncapped. The caller caps the wait
/// it sits out at [`MAX_RETRY_AFTER`].
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?;
    leadscore_connector::limits::parse_retry_after_uncapped(text, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_max_then_waits() {
        let mut window = Window::new(2, Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(window.admit(start), None);
        assert_eq!(window.admit(start), None);
        let wait = window.admit(start + Duration::from_millis(300));
        assert_eq!(wait, Some(Duration::from_millis(700)));
        assert_eq!(window.admit(start + Duration::from_secs(1)), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        assert!(backoff_delay(base, 0) <= base);
        assert!(backoff_delay(base, 0) >= base / 2);
        assert!(backoff_delay(base, 3) <= base * 8);
        assert!(backoff_delay(base, 3) >= base * 4);
        assert!(backoff_delay(base, 40) <= MAX_BACKOFF);
        assert!(backoff_delay(base, 40) >= MAX_BACKOFF / 2);
    }

    #[test]
    fn only_reads_are_replayed() {
        assert!(replay_safe(
            &Method::GET,
            "/crm/v3/objects/contacts?limit=100"
        ));
        assert!(replay_safe(&Method::POST, "/crm/v3/objects/deals/search"));
        assert!(replay_safe(
            &Method::POST,
            "/crm/v3/objects/companies/batch/read"
        ));
        assert!(!replay_safe(
            &Method::POST,
            "/crm/v3/objects/companies/batch/update"
        ));
        assert!(!replay_safe(&Method::POST, "/crm/v3/objects/tasks"));
        assert!(!replay_safe(&Method::PATCH, "/crm/v3/objects/companies/42"));
    }

    #[test]
    fn creates_recognised() {
        assert!(creates_records(
            &Method::POST,
            "/crm/v3/objects/tasks/batch/create"
        ));
        assert!(creates_records(&Method::POST, "/crm/v3/objects/tasks"));
        assert!(!creates_records(
            &Method::POST,
            "/crm/v3/objects/tasks/search"
        ));
        assert!(!creates_records(
            &Method::POST,
            "/crm/v3/objects/companies/batch/update"
        ));
        assert!(!creates_records(
            &Method::PATCH,
            "/crm/v3/objects/companies/42"
        ));
        assert!(!creates_records(&Method::GET, "/crm/v3/objects/tasks"));
    }

    #[test]
    fn retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), None);
    }
}
