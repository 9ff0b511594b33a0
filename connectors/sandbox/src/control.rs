//! The fault-injection endpoint that both sandboxes serve under `/__sandbox/`, for tests only.
//!
//! Tests script faults over HTTP. A fault fails the Nth (and next K) request that matches a
//! method and a path prefix, delays a response or cuts it mid-body. Other requests expire
//! access tokens, rotate the refresh token, lock rows, delete or merge records, change field
//! permissions and change the limits. The endpoint
//! also reports how many requests each method and path received, with their bodies. Control
//! requests are never authenticated, counted against API limits or logged as API requests.
//!
//! | Request | Effect |
//! | --- | --- |
//! | `POST /__sandbox/faults` | Adds a [`FaultSpec`]; returns `{"id": N}`. |
//! | `DELETE /__sandbox/faults` | Removes every fault. |
//! | `GET /__sandbox/requests` | `{"requests": [{"method", "path", "count", "bodies"}]}`, sorted by path and method. |
//! | `DELETE /__sandbox/requests` | Resets the request counts. |
//! | `POST /__sandbox/tokens/expire` | Expires every access token issued so far. |
//! | `POST /__sandbox/refresh-token/rotate` | The next refresh returns a new refresh token; the old one is then rejected. |
//! | `GET /__sandbox/refresh-token` | `{"refresh_token": "..."}`, the one the token endpoint accepts now. |
//! | `POST /__sandbox/locks` | `{"ids": [...], "times": N}`: the next N writes to each id fail as locked. |
//! | `POST /__sandbox/records/delete` | `{"object", "ids"}`: deletes (archives) the records. |
//! | `POST /__sandbox/records/merge` | `{"object", "primary", "merged", "new_id"}`: merges `merged` into `primary` and returns `{"id"}` of the survivor; `new_id` (HubSpot only) gives the survivor a new id. |
//! | `POST /__sandbox/fields/access` | `{"object", "field", "readable", "updateable"}`: sets the field-level security of a field (HubSpot: a property). |
//! | `POST /__sandbox/records/touch` | `{"object", "every", "offset", "edit"}` (Salesforce only): stamps every `every`-th row of the object from row `offset` on as edited now, for load tests; with `"edit": true` also changes one value of each (see `SandboxHandle::touch_records`); returns `{"touched": N}`. |
//! | `POST /__sandbox/clock` | `{"advance_secs": N}` (Salesforce only): moves the org's clock N seconds ahead for change stamps, creation times and the `Date` header, so a load test can model the hours between scheduled runs; returns `{"ahead_secs": total}`. |
//! | `POST /__sandbox/limits` | `{"daily_max", "daily_used", "ten_second_max", "window_ms", "search_per_second"}`, each optional. |

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

/// The path prefix of every control request.
pub(crate) const PREFIX: &str = "/__sandbox";

/// Request bodies kept per method and path; older ones are dropped, the count still grows.
const MAX_BODIES_PER_PATH: usize = 1_000;

/// Largest response body read back in order to cut it.
const MAX_CUT_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One scripted fault: which requests it hits and what happens to them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// HTTP method to match, any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix to match, for example `/services/data/v59.0/query`.
    pub path: String,
    /// The first matching request hit, counting from 1 when the fault is added.
    #[serde(default = "one")]
    pub nth: u64,
    /// How many matching requests in a row are hit, from the Nth on.
    #[serde(default = "one")]
    pub count: u64,
    /// Respond with this status instead of serving the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// Body of that response: a JSON value is sent as JSON, a string as it is.
    #[serde(default)]
    pub body: Option<Value>,
    /// Headers of that response, for example `{"Retry-After": "1"}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Wait this long before responding.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Send only this many bytes of the real response body, then drop the connection.
    #[serde(default)]
    pub cut_after_bytes: Option<usize>,
    /// Expire every access token just before the request is checked, so that it gets 401.
    #[serde(default)]
    pub expire_tokens: bool,
}

fn one() -> u64 {
    1
}

struct Fault {
    spec: FaultSpec,
    /// Matching requests seen since the fault was added.
    seen: u64,
}

/// Requests received on one method and path.
#[derive(Default)]
struct PathRequests {
    count: u64,
    bodies: Vec<String>,
}

#[derive(Default)]
struct ControlState {
    faults: Vec<Fault>,
    requests: BTreeMap<(String, String), PathRequests>,
    /// Remaining locked writes per record id.
    locks: HashMap<String, u32>,
    rotate_refresh_token: bool,
    /// The refresh token that replaced the configured one, after a rotation.
    refresh_token: Option<String>,
}

/// Scripted faults and request counts of one sandbox.
#[derive(Default)]
pub(crate) struct Control {
    state: Mutex<ControlState>,
}

/// The gate's handling of one request, decided before the request is served.
#[derive(Default)]
pub(crate) struct Decision {
    pub expire_tokens: bool,
    pub delay: Option<Duration>,
    /// A scripted response that replaces serving the request.
    pub response: Option<Response>,
    pub cut_after_bytes: Option<usize>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // Counters and lists only; a panic elsewhere cannot leave them half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one API request and returns what the faults that match it do to it.
    pub(crate) fn decide(&self, method: &str, path: &str, body: &[u8]) -> Decision {
        let mut state = self.lock();
        let entry = state
            .requests
            .entry((path.to_string(), method.to_string()))
            .or_default();
        entry.count += 1;
        if entry.bodies.len() >= MAX_BODIES_PER_PATH {
            entry.bodies.remove(0);
        }
        entry
            .bodies
            .push(String::from_utf8_lossy(body).into_owned());

        let mut decision = Decision::default();
        for fault in &mut state.faults {
            let spec = &fault.spec;
            let method_matches = spec
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method));
            if !method_matches || !path.starts_with(&spec.path) {
                continue;
            }
            fault.seen += 1;
            if fault.seen < spec.nth || fault.seen >= spec.nth.saturating_add(spec.count) {
                continue;
            }
            decision.expire_tokens |= spec.expire_tokens;
            if let Some(ms) = spec.delay_ms {
                decision.delay =
                    Some(decision.delay.unwrap_or_default() + Duration::from_millis(ms));
            }
            if decision.response.is_none() {
                decision.response = spec.status.map(|status| scripted_response(spec, status));
            }
            decision.cut_after_bytes = decision.cut_after_bytes.or(spec.cut_after_bytes);
        }
        decision
    }

    /// Returns the ids in a write body (`records[].id` or `Id` for Salesforce collections,
    /// `inputs[].id` for HubSpot batches) that are locked, using up one locked write of each.
    pub(crate) fn take_locked_ids(&self, body: &Value) -> Vec<String> {
        let mut state = self.lock();
        if state.locks.is_empty() {
            return Vec::new();
        }
        let items = body
            .get("records")
            .or_else(|| body.get("inputs"))
            .and_then(Value::as_array);
        let ids = items.into_iter().flatten().filter_map(|item| {
            item.get("id")
                .or_else(|| item.get("Id"))
                .and_then(Value::as_str)
        });
        let mut locked = Vec::new();
        for id in ids {
            if let Some(left) = state.locks.get_mut(id) {
                if *left > 0 {
                    *left -= 1;
                    locked.push(id.to_string());
                }
            }
        }
        locked
    }

    /// Returns whether `presented` is the refresh token the token endpoint accepts now:
    /// `configured` until a rotation, the rotated one afterwards.
    pub(crate) fn refresh_token_valid(&self, presented: &str, configured: &str) -> bool {
        presented == self.current_refresh_token(configured)
    }

    /// Returns the refresh token the token endpoint accepts now.
    pub(crate) fn current_refresh_token(&self, configured: &str) -> String {
        self.lock()
            .refresh_token
            .clone()
            .unwrap_or_else(|| configured.to_string())
    }

    /// Rotates the refresh token when a rotation is pending, and returns the new one then.
    pub(crate) fn rotate_if_pending(&self) -> Option<String> {
        let mut state = self.lock();
        if !std::mem::take(&mut state.rotate_refresh_token) {
            return None;
        }
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let rotated = format!("rotated-{suffix}");
        state.refresh_token = Some(rotated.clone());
        Some(rotated)
    }
}

fn scripted_response(spec: &FaultSpec, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match &spec.body {
        None => status.into_response(),
        Some(Value::String(text)) => (status, text.clone()).into_response(),
        Some(json) => (status, Json(json.clone())).into_response(),
    };
    for (name, value) in &spec.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Sends only the first `keep` bytes of `response`'s body while announcing the full length,
/// so the server drops the connection when the body ends early and the client sees a
/// truncated response.
pub(crate) async fn cut(response: Response, keep: usize) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_CUT_BODY_BYTES).await.unwrap_or_default();
    let full = bytes.len();
    let part: Bytes = bytes.slice(..keep.min(full.saturating_sub(1)));
    if let Ok(length) = HeaderValue::from_str(&full.to_string()) {
        parts.headers.insert(CONTENT_LENGTH, length);
    }
    // The body fails after its first part, so the server aborts the connection. A plain
    // short body under a longer Content-Length trips an assertion inside hyper instead.
    let stream = CutBody { part: Some(part) };
    Response::from_parts(parts, Body::from_stream(stream))
}

/// A body stream that yields one chunk and then an error.
struct CutBody {
    part: Option<Bytes>,
}

impl futures_core::Stream for CutBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(Some(match self.part.take() {
            Some(part) => Ok(part),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "response cut by a scripted fault",
            )),
        }))
    }
}

/// Applies a decision's delay and token expiry, and returns the scripted response if any.
pub(crate) async fn before(target: &dyn Target, decision: &mut Decision) -> Option<Response> {
    if decision.expire_tokens {
        target.expire_tokens();
    }
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    decision.response.take()
}

/// The sandbox-specific operations the control endpoint drives.
pub(crate) trait Target: Send + Sync + 'static {
    fn control(&self) -> &Control;
    fn expire_tokens(&self);
    fn delete_record(&self, object: &str, id: &str) -> Result<(), String>;
    fn merge_records(&self, merge: &MergeSpec) -> Result<String, String>;
    fn set_field_access(&self, access: &FieldAccessSpec) -> Result<(), String>;
    fn set_limits(&self, limits: &LimitsSpec) -> Result<(), String>;
    /// Stamps rows as edited now and returns how many; see [`TouchSpec`].
    fn touch_records(&self, touch: &TouchSpec) -> Result<u64, String> {
        Err(format!(
            "records/touch is served by the Salesforce sandbox only, not for {}",
            touch.object
        ))
    }
    /// Moves the org's clock ahead and returns its lead in seconds; see [`ClockSpec`].
    fn advance_clock(&self, _clock: &ClockSpec) -> Result<i64, String> {
        Err("clock is served by the Salesforce sandbox only".to_string())
    }
}

/// Seconds to move the org's clock ahead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClockSpec {
    pub advance_secs: u64,
}

/// Rows to stamp as edited: rows `offset`, `offset + every`, ... of `object` in insertion
/// order, deleted rows included.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TouchSpec {
    pub object: String,
    pub every: u64,
    #[serde(default)]
    pub offset: u64,
    /// Also change one value of each row a model reads; see `SandboxHandle::touch_records`.
    #[serde(default)]
    pub edit: bool,
}

/// New limits; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    pub daily_max: Option<u64>,
    pub daily_used: Option<u64>,
    pub ten_second_max: Option<u32>,
    pub window_ms: Option<u64>,
    pub search_per_second: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocksSpec {
    ids: Vec<String>,
    #[serde(default = "one_u32")]
    times: u32,
}

fn one_u32() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSpec {
    object: String,
    ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeSpec {
    object: String,
    primary: String,
    merged: String,
    #[serde(default)]
    new_id: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldAccessSpec {
    object: String,
    field: String,
    readable: bool,
    updateable: bool,
}

type Shared = Arc<dyn Target>;

/// Builds the `/__sandbox` routes, to be nested into a sandbox's router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(target: Shared) -> Router<S> {
    Router::new()
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/requests", get(list_requests).delete(reset_requests))
        .route("/tokens/expire", post(expire_tokens))
        .route("/refresh-token/rotate", post(rotate_refresh_token))
        .route("/refresh-token", get(refresh_token))
        .route("/locks", post(lock_rows))
        .route("/records/delete", post(delete_records))
        .route("/records/merge", post(merge_records))
        .route("/records/touch", post(touch_records))
        .route("/clock", post(advance_clock))
        .route("/fields/access", post(set_field_access))
        .route("/limits", post(set_limits))
        .fallback(|| async {
            bad_request(format!(
                "unknown control path; the sandbox serves {PREFIX}/faults, /requests, \
                 /tokens/expire, /refresh-token, /refresh-token/rotate, /locks, \
                 /records/delete, /records/merge, /records/touch, /fields/access and /limits"
            ))
        })
        .with_state(target)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

/// Parses a control body, or returns the message of a 400 that names the problem.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("invalid control request body: {error}"))
}

async fn add_fault(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    if spec.nth == 0 || spec.count == 0 {
        return bad_request("nth and count start at 1".to_string());
    }
    if !spec.path.starts_with('/') {
        return bad_request(format!(
            "path {:?} must be an absolute path prefix such as /crm/v3",
            spec.path
        ));
    }
    tracing::debug!(?spec, "sandbox fault added");
    let mut state = target.control().lock();
    state.faults.push(Fault { spec, seen: 0 });
    let id = state.faults.len();
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn clear_faults(State(target): State<Shared>) -> Response {
    target.control().lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn list_requests(State(target): State<Shared>) -> Response {
    let state = target.control().lock();
    let requests: Vec<Value> = state
        .requests
        .iter()
        .map(|((path, method), seen)| {
            json!({"method": method, "path": path, "count": seen.count, "bodies": seen.bodies})
        })
        .collect();
    Json(json!({"requests": requests})).into_response()
}

async fn reset_requests(State(target): State<Shared>) -> Response {
    target.control().lock().requests.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn expire_tokens(State(target): State<Shared>) -> Response {
    target.expire_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn rotate_refresh_token(State(target): State<Shared>) -> Response {
    target.control().lock().rotate_refresh_token = true;
    StatusCode::NO_CONTENT.into_response()
}

async fn refresh_token(State(target): State<Shared>) -> Response {
    // The sandbox's own test credential, not a real secret.
    let current = target.control().lock().refresh_token.clone();
    Json(json!({"refresh_token": current})).into_response()
}

async fn lock_rows(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: LocksSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    let mut state = target.control().lock();
    for id in spec.ids {
        state.locks.insert(id, spec.times);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_records(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: DeleteSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    for id in &spec.ids {
        if let Err(message) = target.delete_record(&spec.object, id) {
            return bad_request(message);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn merge_records(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: MergeSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    match target.merge_records(&spec) {
        Ok(id) => Json(json!({"id": id})).into_response(),
        Err(message) => bad_request(message),
    }
}

async fn touch_records(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: TouchSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    if spec.every == 0 {
        return bad_request("every must be at least 1 (1 stamps every row)".to_string());
    }
    match target.touch_records(&spec) {
        Ok(touched) => Json(json!({"touched": touched})).into_response(),
        Err(message) => bad_request(message),
    }
}

async fn advance_clock(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: ClockSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    match target.advance_clock(&spec) {
        Ok(ahead) => Json(json!({"ahead_secs": ahead})).into_response(),
        Err(message) => bad_request(message),
    }
}

async fn set_field_access(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: FieldAccessSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    match target.set_field_access(&spec) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => bad_request(message),
    }
}

async fn set_limits(State(target): State<Shared>, body: Bytes) -> Response {
    let spec: LimitsSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(message) => return bad_request(message),
    };
    match target.set_limits(&spec) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => bad_request(message),
    }
}

impl Target for crate::SandboxHandle {
    fn control(&self) -> &Control {
        &self.shared.control
    }

    fn expire_tokens(&self) {
        self.expire_access_tokens();
    }

    fn delete_record(&self, object: &str, id: &str) -> Result<(), String> {
        crate::SandboxHandle::delete_record(self, object, id).map_err(|error| error.to_string())
    }

    fn merge_records(&self, merge: &MergeSpec) -> Result<String, String> {
        if merge.new_id {
            return Err(
                "new_id applies to HubSpot only; a Salesforce merge keeps the survivor's id"
                    .to_string(),
            );
        }
        crate::SandboxHandle::merge_records(self, &merge.object, &merge.primary, &[&merge.merged])
            .map_err(|error| error.to_string())?;
        Ok(merge.primary.clone())
    }

    fn touch_records(&self, touch: &TouchSpec) -> Result<u64, String> {
        crate::SandboxHandle::touch_records(
            self,
            &touch.object,
            touch.every,
            touch.offset,
            touch.edit,
        )
        .map_err(|error| error.to_string())
    }

    fn advance_clock(&self, clock: &ClockSpec) -> Result<i64, String> {
        crate::SandboxHandle::advance_clock(self, clock.advance_secs)
            .map(|ahead| ahead.num_seconds())
    }

    fn set_field_access(&self, access: &FieldAccessSpec) -> Result<(), String> {
        crate::SandboxHandle::set_field_access(
            self,
            &access.object,
            &access.field,
            access.readable,
            access.updateable,
        )
        .map_err(|error| error.to_string())
    }

    fn set_limits(&self, limits: &LimitsSpec) -> Result<(), String> {
        if limits.ten_second_max.is_some()
            || limits.window_ms.is_some()
            || limits.search_per_second.is_some()
        {
            return Err(
                "the Salesforce sandbox has only a daily limit; set daily_max or daily_used"
                    .to_string(),
            );
        }
        let mut state = self.shared.lock();
        if let Some(max) = limits.daily_max {
            state.api_max = max;
        }
        if let Some(used) = limits.daily_used {
            state.api_used = used;
        }
        Ok(())
    }
}

impl Target for crate::hubspot::HubSpotHandle {
    fn control(&self) -> &Control {
        self.control_state()
    }

    fn expire_tokens(&self) {
        self.expire_access_tokens();
    }

    fn delete_record(&self, object: &str, id: &str) -> Result<(), String> {
        let object = hubspot_object(object)?;
        self.archive(object, id).map_err(|error| error.to_string())
    }

    fn merge_records(&self, merge: &MergeSpec) -> Result<String, String> {
        let object = hubspot_object(&merge.object)?;
        let merged = if merge.new_id {
            self.merge_with_new_id(object, &merge.primary, &merge.merged)
        } else {
            self.merge(object, &merge.primary, &merge.merged)
        };
        merged.map_err(|error| error.to_string())
    }

    fn set_field_access(&self, access: &FieldAccessSpec) -> Result<(), String> {
        let object = hubspot_object(&access.object)?;
        crate::hubspot::HubSpotHandle::set_field_access(
            self,
            object,
            &access.field,
            access.readable,
            access.updateable,
        )
        .map_err(|error| error.to_string())
    }

    fn set_limits(&self, limits: &LimitsSpec) -> Result<(), String> {
        if let Some(max) = limits.daily_max {
            self.set_daily_limit(max);
        }
        if let Some(used) = limits.daily_used {
            self.set_daily_used(used);
        }
        if let Some(max) = limits.ten_second_max {
            let window = Duration::from_millis(limits.window_ms.unwrap_or(10_000));
            self.set_ten_second_limit(max, window);
        } else if limits.window_ms.is_some() {
            return Err("window_ms needs ten_second_max beside it".to_string());
        }
        if let Some(max) = limits.search_per_second {
            self.set_search_per_second_limit(max);
        }
        Ok(())
    }
}

fn hubspot_object(name: &str) -> Result<crate::hubspot::ObjectType, String> {
    crate::hubspot::ObjectType::parse(name).ok_or_else(|| {
        let names: Vec<&str> = crate::hubspot::ObjectType::ALL
            .iter()
            .map(|o| o.name())
            .collect();
        format!(
            "unknown HubSpot object {name:?}; use one of {}",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> FaultSpec {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fault_hits_nth_and_next() {
        let control = Control::default();
        control.lock().faults.push(Fault {
            spec: spec(r#"{"method":"GET","path":"/a","nth":2,"count":2,"status":503}"#),
            seen: 0,
        });
        let hits: Vec<bool> = (0..5)
            .map(|_| control.decide("GET", "/a/b", b"").response.is_some())
            .collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert!(control.decide("POST", "/a", b"").response.is_none());
        assert!(control.decide("GET", "/b", b"").response.is_none());
        let state = control.lock();
        let get = &state.requests[&("/a/b".to_string(), "GET".to_string())];
        assert_eq!(get.count, 5);
    }

    #[test]
    fn locks_are_used_up() {
        let control = Control::default();
        control.lock().locks.insert("001A".to_string(), 2);
        let body = json!({"records": [{"id": "001A"}, {"Id": "001B"}]});
        assert_eq!(control.take_locked_ids(&body), ["001A"]);
        assert_eq!(control.take_locked_ids(&body), ["001A"]);
        assert!(control.take_locked_ids(&body).is_empty());
    }

    #[test]
    fn rotation_replaces_refresh_token_once() {
        let control = Control::default();
        assert!(control.refresh_token_valid("old", "old"));
        assert_eq!(control.rotate_if_pending(), None);
        control.lock().rotate_refresh_token = true;
        let rotated = control.rotate_if_pending().unwrap();
        assert!(!control.refresh_token_valid("old", "old"));
        assert!(control.refresh_token_valid(&rotated, "old"));
        assert_eq!(control.rotate_if_pending(), None);
    }
}
