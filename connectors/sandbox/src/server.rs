//! HTTP routes, authentication, API request accounting and query locators.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{RawQuery, Request, State as AxumState};
use axum::http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json as JsonBody, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value as Json};

use crate::query::{self, FieldPath};
use crate::retrieve::{self, RetrieveRequest};
use crate::store::Store;
use crate::write::{self, InjectedFailures, RequestError, SaveError};
use crate::{describe, LoggedRequest, SandboxOptions};

/// The largest request body the sandbox reads. A full collection of 200 records with long
/// text fields stays well below it.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Requests kept for [`crate::SandboxHandle::request_log`]; older entries are dropped.
const MAX_LOGGED_REQUESTS: usize = 100_000;
/// Open query locators kept at once; the oldest is dropped beyond this.
// NOTE: Salesforce documents no cap on open cursors since API 56.0; this one only bounds memory.
const MAX_CURSORS: usize = 10_000;
/// Fifteen-character ids of the sandbox org and of the API user every token acts as.
const ORG_ID: &str = "00DSb0000001Lsc";
pub(crate) const API_USER_ID: &str = "005Sb0000001Api";

/// A query result set that later pages are served from.
pub(crate) struct Cursor {
    table: usize,
    select: Vec<FieldPath>,
    rows: Vec<usize>,
    batch_size: usize,
    created: Instant,
}

/// Everything a request may change, behind one lock.
pub(crate) struct State {
    pub store: Store,
    /// Access token -> time of issue.
    pub tokens: HashMap<String, Instant>,
    pub refresh_token_revoked: bool,
    pub expire_after_requests: Option<u64>,
    pub api_used: u64,
    pub api_max: u64,
    pub cursors: HashMap<String, Cursor>,
    next_cursor: u64,
    pub injected_failures: InjectedFailures,
    pub log: VecDeque<LoggedRequest>,
    /// Bulk API 2.0 query jobs.
    pub bulk_jobs: crate::bulk::Jobs,
    /// Fields created through the Tooling API, whose access permission sets decide.
    pub created_fields: Vec<crate::tooling::CreatedField>,
}

/// State shared by the server and every [`crate::SandboxHandle`].
pub(crate) struct Shared {
    pub options: SandboxOptions,
    pub base_url: OnceLock<String>,
    state: Mutex<State>,
    /// Faults scripted through `/__sandbox/` and the request counts it reports.
    pub control: crate::control::Control,
}

impl Shared {
    pub(crate) fn new(store: Store, options: SandboxOptions) -> Shared {
        let state = State {
            store,
            tokens: HashMap::new(),
            refresh_token_revoked: false,
            expire_after_requests: None,
            api_used: 0,
            api_max: options.daily_request_limit,
            cursors: HashMap::new(),
            next_cursor: 1,
            injected_failures: HashMap::new(),
            log: VecDeque::new(),
            bulk_jobs: Default::default(),
            created_fields: Vec::new(),
        };
        Shared {
            options,
            base_url: OnceLock::new(),
            state: Mutex::new(state),
            control: Default::default(),
        }
    }

    /// Locks the state. A panic in another request cannot leave the data half-written in a
    /// way later requests would trip over, so a poisoned lock is used as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }
}

/// A REST error, sent as Salesforce sends it: a JSON array with one error object.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(status = self.status.as_u16(), code = %self.code, message = %self.message, "sandbox request rejected");
        let body = json!([{"message": self.message, "errorCode": self.code}]);
        (self.status, JsonBody(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        ApiError::bad_request(error.code, error.message)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the router for every supported path.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let data = "/services/data/{version}";
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/revoke", post(revoke))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route(data, get(resources))
        .route(&format!("{data}/"), get(resources))
        .route(&format!("{data}/limits"), get(limits))
        .route(&format!("{data}/limits/"), get(limits))
        .route(&format!("{data}/sobjects"), get(describe_global))
        .route(&format!("{data}/sobjects/"), get(describe_global))
        .route(
            &format!("{data}/sobjects/{{object}}"),
            get(object_info).post(create_record),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/describe"),
            get(describe_object),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/describe/"),
            get(describe_object),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{id}}"),
            get(get_record).patch(patch_record),
        )
        .route(&format!("{data}/query"), get(query))
        .route(&format!("{data}/query/"), get(query))
        .route(&format!("{data}/queryAll"), get(query_all))
        .route(&format!("{data}/queryAll/"), get(query_all))
        .route(&format!("{data}/query/{{locator}}"), get(next_page))
        .route(&format!("{data}/queryAll/{{locator}}"), get(next_page))
        .route(
            &format!("{data}/composite/sobjects"),
            patch(update_collection).post(create_collection),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}"),
            get(retrieve_by_query).post(retrieve_by_body),
        )
        .route(
            &format!("{data}/tooling/sobjects/CustomField"),
            post(create_custom_field),
        )
        .route(&format!("{data}/jobs/query"), post(crate::bulk::create_job))
        .route(
            &format!("{data}/jobs/query/{{job}}"),
            get(crate::bulk::job_info)
                .patch(crate::bulk::abort_job)
                .delete(crate::bulk::delete_job),
        )
        .route(
            &format!("{data}/jobs/query/{{job}}/results"),
            get(crate::bulk::results),
        )
        .nest(
            crate::control::PREFIX,
            crate::control::router(Arc::new(crate::SandboxHandle {
                shared: shared.clone(),
            })),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{method}' not allowed for this resource"),
            )
        })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Splits a request path into segments: `/services/data/v59.0/query` gives
/// `["services", "data", "v59.0", "query"]`.
fn segments(uri: &Uri) -> Vec<String> {
    uri.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The API version segment of a versioned REST path, such as `v59.0`.
fn version_of(uri: &Uri) -> String {
    segments(uri).get(2).cloned().unwrap_or_default()
}

/// Returns whether a path segment names a served API version: `v31.0` through `v62.0`.
fn is_valid_version(version: &str) -> bool {
    let Some(major) = version
        .strip_prefix('v')
        .and_then(|number| number.strip_suffix(".0"))
    else {
        return false;
    };
    // Comparing the text with the number it parses to rejects signs and leading zeros.
    match major.parse::<u32>() {
        Ok(number) => number.to_string() == major && API_VERSIONS.contains(&number),
        Err(_) => false,
    }
}

/// Logs every request, and for versioned REST paths checks the bearer token, counts the
/// request against the daily limit and adds the `Sforce-Limit-Info` header.
async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    // Control requests bypass authentication, limits, faults and the request log.
    if request.uri().path().starts_with(crate::control::PREFIX) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let response = match to_bytes(body, MAX_BODY_BYTES).await {
        Err(_) => {
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_ENTITY_TOO_LARGE",
                format!("request body exceeds {MAX_BODY_BYTES} bytes or could not be read"),
            );
            (Bytes::new(), error.into_response())
        }
        Ok(bytes) => {
            let mut decision = shared.control.decide(&method, &path, &bytes);
            let target = crate::SandboxHandle {
                shared: shared.clone(),
            };
            let scripted = crate::control::before(&target, &mut decision).await;
            let request = Request::from_parts(parts, Body::from(bytes.clone()));
            let segments = segments(request.uri());
            let is_rest = segments.len() >= 2 && segments[0] == "services" && segments[1] == "data";
            let response = if let Some(scripted) = scripted {
                scripted
            } else if segments.len() >= 3 && is_rest {
                match admit(&shared, authorization.as_deref()) {
                    Err(error) => error.into_response(),
                    Ok(()) if !is_valid_version(&segments[2]) => {
                        ApiError::not_found().into_response()
                    }
                    Ok(()) => next.run(request).await,
                }
            } else {
                next.run(request).await
            };
            let response = match decision.cut_after_bytes {
                Some(keep) => crate::control::cut(response, keep).await,
                None => response,
            };
            (bytes, response)
        }
    };
    let (body, mut response) = response;
    set_json_charset(&mut response);
    if path.starts_with("/services/data") {
        let state = shared.lock();
        let usage = format!("api-usage={}/{}", state.api_used, state.api_max);
        if let Ok(value) = HeaderValue::from_str(&usage) {
            response.headers_mut().insert("Sforce-Limit-Info", value);
        }
    }

    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "sandbox request");
    let mut state = shared.lock();
    // An org whose clock was moved ahead sends that clock in `Date`, which clients read as
    // the server's time.
    if state.store.clock_ahead() != chrono::Duration::zero() {
        let date = state.store.now().format("%a, %d %b %Y %H:%M:%S GMT");
        if let Ok(value) = HeaderValue::from_str(&date.to_string()) {
            response.headers_mut().insert(DATE, value);
        }
    }
    if state.log.len() >= MAX_LOGGED_REQUESTS {
        state.log.pop_front();
    }
    state.log.push_back(LoggedRequest {
        method,
        path,
        query,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    response
}

/// Labels a JSON body `application/json;charset=UTF-8`, the content type Salesforce sends.
fn set_json_charset(response: &mut Response) {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/json");
    if is_json {
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
    }
}

/// Checks the bearer token and the daily request budget, and counts the request.
fn admit(shared: &Shared, authorization: Option<&str>) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        )
    };
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("OAuth "))
        })
        .map(str::trim)
        .ok_or_else(invalid)?;
    let mut state = shared.lock();
    let issued = *state.tokens.get(token).ok_or_else(invalid)?;
    if issued.elapsed() >= shared.options.token_ttl {
        state.tokens.remove(token);
        return Err(invalid());
    }
    match state.expire_after_requests {
        Some(0) => {
            state.tokens.clear();
            state.expire_after_requests = None;
            return Err(invalid());
        }
        Some(n) => state.expire_after_requests = Some(n - 1),
        None => {}
    }
    if state.api_used >= state.api_max {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ));
    }
    state.api_used += 1;
    Ok(())
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        JsonBody(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /services/oauth2/token`: the refresh_token grant.
async fn token(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let form = form_fields(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let options = &shared.options;
    if field("grant_type") != "refresh_token" {
        return oauth_error("unsupported_grant_type", "grant type not supported");
    }
    if field("client_id") != options.client_id {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if field("client_secret") != options.client_secret {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    let mut state = shared.lock();
    let refresh_token_valid = shared
        .control
        .refresh_token_valid(field("refresh_token"), &options.refresh_token);
    if !refresh_token_valid || state.refresh_token_revoked {
        return oauth_error("invalid_grant", "expired access/refresh token");
    }
    let secret: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(56)
        .map(char::from)
        .collect();
    let access_token = format!("{ORG_ID}!AQ{secret}");
    state.tokens.insert(access_token.clone(), Instant::now());
    drop(state);

    let base = shared.base_url();
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    // NOTE: no `signature` field, because an HMAC-SHA256 would need a crypto dependency.
    let mut body = json!({
        "access_token": access_token,
        "instance_url": base,
        "id": format!("{base}/id/{}/{}", crate::store::with_case_suffix(ORG_ID), crate::store::with_case_suffix(API_USER_ID)),
        "token_type": "Bearer",
        "issued_at": issued_at,
        "scope": "api refresh_token",
    });
    // With refresh token rotation on, the response carries the new refresh token.
    if let Some(rotated) = shared.control.rotate_if_pending() {
        body["refresh_token"] = Json::String(rotated);
    }
    (StatusCode::OK, JsonBody(body)).into_response()
}

/// `POST /services/oauth2/revoke`: revoking the refresh token also revokes every access token.
async fn revoke(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let form = form_fields(&body);
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let mut state = shared.lock();
    if token == shared.options.refresh_token && !state.refresh_token_revoked {
        state.refresh_token_revoked = true;
        state.tokens.clear();
    } else if state.tokens.remove(token).is_none() {
        return oauth_error("invalid_token", "invalid token");
    }
    StatusCode::OK.into_response()
}

/// Major REST API versions the sandbox serves, from Summer '14 (31.0) to Winter '25 (62.0).
/// Every other version gets 404 `NOT_FOUND`.
const API_VERSIONS: std::ops::RangeInclusive<u32> = 31..=62;

/// Returns the Salesforce release name of a major API version: three releases a year, Spring,
/// Summer and Winter, where Winter '15 (32.0) shipped in late 2014.
fn release_name(major: u32) -> String {
    let since_summer_14 = major.saturating_sub(31);
    let season = ["Summer", "Winter", "Spring"][(since_summer_14 % 3) as usize];
    let year = 14 + since_summer_14.div_ceil(3);
    format!("{season} '{year:02}")
}

/// `GET /services/data/`: every served version, oldest first.
async fn versions() -> Response {
    let list: Vec<Json> = API_VERSIONS
        .map(|major| {
            let version = format!("{major}.0");
            json!({
                "label": release_name(major),
                "url": format!("/services/data/v{version}"),
                "version": version,
            })
        })
        .collect();
    JsonBody(Json::Array(list)).into_response()
}

async fn resources(uri: Uri) -> Response {
    let base = format!("/services/data/{}", version_of(&uri));
    JsonBody(json!({
        "sobjects": format!("{base}/sobjects"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "limits": format!("{base}/limits"),
        "composite": format!("{base}/composite"),
    }))
    .into_response()
}

async fn limits(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let (used, max) = {
        let state = shared.lock();
        (state.api_used, state.api_max)
    };
    let fixed = |max: u64| json!({"Max": max, "Remaining": max});
    JsonBody(json!({
        "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
        "DailyBulkApiBatches": fixed(15_000),
        "DailyBulkV2QueryJobs": fixed(10_000),
        "DailyBulkV2QueryFileStorageMB": fixed(976_562),
        "DataStorageMB": fixed(1_024),
        "SingleEmail": fixed(5_000),
    }))
    .into_response()
}

async fn describe_global(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri) -> Response {
    let state = shared.lock();
    let objects: Vec<_> = state
        .store
        .tables
        .iter()
        .map(|t| &t.def)
        .filter(|def| state.store.is_visible(def.name))
        .collect();
    JsonBody(describe::describe_global(&objects, &version_of(&uri))).into_response()
}

async fn object_info(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri) -> ApiResult {
    let state = shared.lock();
    let object = segments(&uri).get(4).cloned().unwrap_or_default();
    let table = state
        .store
        .table_by_name(&object)
        .ok_or_else(ApiError::not_found)?;
    let summary = describe::object_summary(&table.def, &version_of(&uri));
    Ok(JsonBody(json!({"objectDescribe": summary, "recentItems": []})).into_response())
}

async fn describe_object(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri) -> ApiResult {
    let state = shared.lock();
    let object = segments(&uri).get(4).cloned().unwrap_or_default();
    let table = state
        .store
        .table_by_name(&object)
        .ok_or_else(ApiError::not_found)?;
    let visible = table.visible_def();
    Ok(JsonBody(describe::describe_object(&visible, &version_of(&uri))).into_response())
}

fn parse_json(body: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "JSON_PARSER_ERROR",
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

fn save_errors_response(errors: &[SaveError]) -> Response {
    let body: Vec<Json> = errors.iter().map(SaveError::to_rest_json).collect();
    (StatusCode::BAD_REQUEST, JsonBody(Json::Array(body))).into_response()
}

/// `POST /sobjects/{Object}`: creates one record.
async fn create_record(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let object = segments(&uri).get(4).cloned().unwrap_or_default();
    let body = parse_json(&body)?;
    let mut state = shared.lock();
    let table = state
        .store
        .table_index(&object)
        .ok_or_else(ApiError::not_found)?;
    let owner = crate::store::with_case_suffix(API_USER_ID);
    let created = write::create_record(&mut state.store, table, &body, &owner);
    crate::tooling::refresh_access(&mut state, &owner);
    match created {
        Ok(id) => Ok((
            StatusCode::CREATED,
            JsonBody(json!({"id": id, "success": true, "errors": []})),
        )
            .into_response()),
        Err(errors) => Ok(save_errors_response(&errors)),
    }
}

/// `POST /tooling/sobjects/CustomField`: creates a custom field, hidden from the API user
/// until a permission set assigned to it grants the field.
async fn create_custom_field(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = parse_json(&body)?;
    let mut state = shared.lock();
    match crate::tooling::create_custom_field(&mut state, &body) {
        Ok(id) => Ok((
            StatusCode::CREATED,
            JsonBody(crate::tooling::created_json(&id)),
        )
            .into_response()),
        Err(error) => {
            tracing::debug!(code = %error.status_code, message = %error.message, "custom field create rejected");
            Ok(save_errors_response(&[error]))
        }
    }
}

/// Finds the row of `/sobjects/{Object}/{id}`, or returns the 404 error Salesforce sends.
fn record_row(store: &Store, uri: &Uri) -> Result<(usize, usize, String), ApiError> {
    let parts = segments(uri);
    let object = parts.get(4).cloned().unwrap_or_default();
    let id = parts.get(5).cloned().unwrap_or_default();
    let table = store.table_index(&object).ok_or_else(ApiError::not_found)?;
    let row = *store.tables[table]
        .by_id
        .get(&id)
        .ok_or_else(ApiError::not_found)?;
    if store.tables[table].is_deleted(row) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
        ));
    }
    Ok((table, row, id))
}

/// `GET /sobjects/{Object}/{id}`, with an optional `fields` list.
async fn get_record(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let state = shared.lock();
    let (table, row, _) = record_row(&state.store, &uri)?;
    let t = &state.store.tables[table];
    let requested = raw
        .as_deref()
        .map(|q| form_fields(q.as_bytes()))
        .and_then(|f| f.get("fields").cloned());
    let columns: Vec<usize> = match requested {
        None => (0..t.def.fields.len()).collect(),
        Some(list) => {
            retrieve::field_columns(t, list.split(',').map(str::trim).filter(|n| !n.is_empty()))
                .map_err(ApiError::from)?
        }
    };
    let record = retrieve::render_record(t, row, &columns, &version_of(&uri));
    Ok(JsonBody(record).into_response())
}

/// `PATCH /sobjects/{Object}/{id}`: updates one record, 204 on success.
async fn patch_record(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let body = parse_json(&body)?;
    let mut state = shared.lock();
    let (table, _, id) = record_row(&state.store, &uri)?;
    let state = &mut *state;
    let updated = write::update_record(
        &mut state.store,
        table,
        &id,
        &body,
        &state.injected_failures,
    );
    crate::tooling::refresh_access(state, &crate::store::with_case_suffix(API_USER_ID));
    match updated {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(errors) => Ok(save_errors_response(&errors)),
    }
}

/// `PATCH /composite/sobjects`: sObject Collections update.
async fn update_collection(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = parse_json(&body)?;
    // Rows locked through the control endpoint fail as Salesforce fails contended rows.
    let locked = shared.control.take_locked_ids(&body);
    let mut state = shared.lock();
    let state = &mut *state;
    let mut injected = state.injected_failures.clone();
    for id in locked {
        let message = "unable to obtain exclusive access to this record".to_string();
        injected.insert(id, ("UNABLE_TO_LOCK_ROW".to_string(), message));
    }
    let results = write::update_collection(&mut state.store, &body, &injected)?;
    crate::tooling::refresh_access(state, &crate::store::with_case_suffix(API_USER_ID));
    Ok(JsonBody(results).into_response())
}

/// `POST /composite/sobjects`: sObject Collections create, HTTP 200 even when records fail.
async fn create_collection(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = parse_json(&body)?;
    let owner = crate::store::with_case_suffix(API_USER_ID);
    let mut state = shared.lock();
    let results = write::create_collection(&mut state.store, &body, &owner)?;
    crate::tooling::refresh_access(&mut state, &owner);
    Ok(JsonBody(results).into_response())
}

/// `GET /composite/sobjects/{Object}?ids=...&fields=...`: sObject Collections retrieve.
async fn retrieve_by_query(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let params = form_fields(raw.as_deref().unwrap_or("").as_bytes());
    let request = RetrieveRequest::from_query(&params)?;
    retrieve_records(&shared, &uri, &request)
}

/// `POST /composite/sobjects/{Object}` with `{"ids": [...], "fields": [...]}`: sObject
/// Collections retrieve for id lists too long for a URL.
async fn retrieve_by_body(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let request = RetrieveRequest::from_json(&parse_json(&body)?)?;
    retrieve_records(&shared, &uri, &request)
}

fn retrieve_records(shared: &Shared, uri: &Uri, request: &RetrieveRequest) -> ApiResult {
    let object = segments(uri).get(5).cloned().unwrap_or_default();
    let state = shared.lock();
    let table = state
        .store
        .table_index(&object)
        .ok_or_else(ApiError::not_found)?;
    let records = retrieve::retrieve(&state.store, table, request, &version_of(uri))?;
    Ok(JsonBody(records).into_response())
}

/// Reads the page size from `Sforce-Query-Options: batchSize=N`, clamped to 200..2000 as
/// Salesforce does and never above the sandbox's `page_size`.
fn batch_size(headers: &HeaderMap, page_size: usize) -> Result<Option<usize>, ApiError> {
    let Some(header) = headers.get("Sforce-Query-Options") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(header.as_bytes());
    for option in text.split(',') {
        let Some((name, value)) = option.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("batchSize") {
            // NOTE: the error code Salesforce uses for a non-numeric batchSize is unverified.
            let requested: usize = value.trim().parse().map_err(|_| {
                ApiError::bad_request(
                    "INVALID_HEADER_TYPE",
                    format!("Sforce-Query-Options batchSize must be a whole number from 200 to 2000, got '{}'", value.trim()),
                )
            })?;
            return Ok(Some(requested.clamp(200, 2000).min(page_size.max(1))));
        }
    }
    Ok(None)
}

async fn query(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    run_query(&shared, &uri, &headers, raw.as_deref(), false)
}

async fn query_all(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    run_query(&shared, &uri, &headers, raw.as_deref(), true)
}

/// Evaluates a query once, keeps the ordered row snapshot behind a locator when it spans
/// several pages, and returns the first page.
fn run_query(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    raw: Option<&str>,
    include_deleted: bool,
) -> ApiResult {
    let soql = raw
        .map(|q| form_fields(q.as_bytes()))
        .and_then(|f| f.get("q").cloned())
        .ok_or_else(|| {
            ApiError::bad_request(
                "MALFORMED_QUERY",
                "missing query parameter q: send the SOQL statement as ?q=",
            )
        })?;
    let batch = batch_size(headers, shared.options.page_size)?
        .unwrap_or(shared.options.page_size.clamp(1, 2000));
    let version = version_of(uri);

    let mut state = shared.lock();
    let compiled = query::compile(&state.store, &soql)
        .map_err(|(message, code)| ApiError::bad_request(code, message))?;
    let rows = query::run(&state.store, &compiled, include_deleted);
    tracing::debug!(
        rows = rows.len(),
        include_deleted,
        "sandbox query evaluated"
    );
    let cursor = Cursor {
        table: compiled.table,
        select: compiled.select,
        rows,
        batch_size: batch,
        created: Instant::now(),
    };
    let page = render_page(&state.store, &cursor, 0, batch, &version);
    if cursor.rows.len() > batch {
        let id = new_cursor_id(&mut state);
        store_cursor(&mut state, id.clone(), cursor, shared.options.locator_ttl);
        return Ok(page_response(
            page,
            Some(format!("/services/data/{version}/query/{id}-{batch}")),
        ));
    }
    Ok(page_response(page, None))
}

fn new_cursor_id(state: &mut State) -> String {
    let sequence = state.next_cursor;
    state.next_cursor += 1;
    format!("01gSb{sequence:010}")
}

fn store_cursor(state: &mut State, id: String, cursor: Cursor, ttl: std::time::Duration) {
    state.cursors.retain(|_, c| c.created.elapsed() < ttl);
    if state.cursors.len() >= MAX_CURSORS {
        let oldest = state
            .cursors
            .iter()
            .min_by_key(|(_, c)| c.created)
            .map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            state.cursors.remove(&oldest);
        }
    }
    state.cursors.insert(id, cursor);
}

/// One page of results: (totalSize, records, offset after the page).
struct RenderedPage {
    total: usize,
    records: Vec<Json>,
}

fn render_page(
    store: &Store,
    cursor: &Cursor,
    offset: usize,
    batch: usize,
    version: &str,
) -> RenderedPage {
    let end = (offset + batch).min(cursor.rows.len());
    let records = cursor.rows[offset..end]
        .iter()
        .map(|&row| query::render_row(store, &cursor.select, cursor.table, row, version))
        .collect();
    RenderedPage {
        total: cursor.rows.len(),
        records,
    }
}

fn page_response(page: RenderedPage, next: Option<String>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("totalSize".into(), json!(page.total));
    body.insert("done".into(), json!(next.is_none()));
    if let Some(next) = next {
        body.insert("nextRecordsUrl".into(), json!(next));
    }
    body.insert("records".into(), Json::Array(page.records));
    JsonBody(Json::Object(body)).into_response()
}

/// `GET /query/{cursorId}-{offset}`: the next page of an earlier query or queryAll.
async fn next_page(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let locator = segments(&uri).get(4).cloned().unwrap_or_default();
    let invalid = || {
        ApiError::bad_request(
            "INVALID_QUERY_LOCATOR",
            format!("invalid query locator: {locator}"),
        )
    };
    let (cursor_id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let version = version_of(&uri);
    let requested = batch_size(&headers, shared.options.page_size)?;

    let mut state = shared.lock();
    let expired = state
        .cursors
        .get(cursor_id)
        .is_some_and(|c| c.created.elapsed() >= shared.options.locator_ttl);
    if expired {
        state.cursors.remove(cursor_id);
    }
    let cursor = state.cursors.get(cursor_id).ok_or_else(invalid)?;
    if offset == 0 || offset >= cursor.rows.len() {
        return Err(invalid());
    }
    let batch = requested.unwrap_or(cursor.batch_size);
    let page = render_page(&state.store, cursor, offset, batch, &version);
    let end = offset + batch;
    let next = (end < cursor.rows.len())
        .then(|| format!("/services/data/{version}/query/{cursor_id}-{end}"));
    Ok(page_response(page, next))
}
