//! HTTP routing, bearer-token checks, scopes, rate limits, the request log, HubSpot's error
//! bodies and the OAuth v1 token endpoints.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Request, State as AxumState};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json as JsonBody, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value as Json};

use crate::hubspot::portal::{ObjectType, Portal, RecordKey};
use crate::hubspot::{associations, meta, objects, search, HubSpotOptions};
use crate::LoggedRequest;

const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const MAX_LOGGED_REQUESTS: usize = 100_000;

/// Every scope the sandbox checks. A token has all of them except the withheld ones.
pub(crate) const ALL_SCOPES: [&str; 17] = [
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.objects.owners.read",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.schemas.companies.read",
    "crm.schemas.companies.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
    "crm.objects.leads.read",
    "crm.objects.leads.write",
    "crm.lists.read",
];

/// An OAuth access token the token endpoint issued.
pub(crate) struct AccessToken {
    pub expires_at: Instant,
}

/// The app a request counts against, because rate limits apply per app.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum App {
    Private,
    OAuth,
}

/// Rate-limit settings and the request times inside the current windows.
pub(crate) struct Limits {
    pub private_ten_second: u32,
    pub oauth_ten_second: u32,
    pub window: Duration,
    pub daily: u64,
    pub daily_used: u64,
    pub search_per_second: u32,
    pub recent: HashMap<App, VecDeque<Instant>>,
    pub recent_searches: HashMap<App, VecDeque<Instant>>,
}

/// Everything a request may change, behind one lock.
pub(crate) struct State {
    pub portal: Portal,
    pub tokens: HashMap<String, AccessToken>,
    pub private_token: String,
    pub refresh_token_revoked: bool,
    pub used_codes: HashSet<String>,
    pub limits: Limits,
    pub failing_updates: HashSet<RecordKey>,
    pub log: VecDeque<LoggedRequest>,
    pub request_count: u64,
}

/// State shared by the server and every [`crate::hubspot::HubSpotHandle`].
pub(crate) struct Shared {
    pub options: HubSpotOptions,
    pub base_url: OnceLock<String>,
    state: Mutex<State>,
    /// Faults scripted through `/__sandbox/` and the request counts it reports.
    pub control: crate::control::Control,
}

impl Shared {
    pub(crate) fn new(portal: Portal, options: HubSpotOptions) -> Shared {
        let limits = Limits {
            private_ten_second: options.private_app_ten_second_limit,
            oauth_ten_second: options.oauth_ten_second_limit,
            window: Duration::from_secs(10),
            daily: options.daily_limit,
            daily_used: 0,
            search_per_second: options.search_per_second_limit,
            recent: HashMap::new(),
            recent_searches: HashMap::new(),
        };
        let state = State {
            portal,
            tokens: HashMap::new(),
            private_token: options.private_app_token.clone(),
            refresh_token_revoked: false,
            used_codes: HashSet::new(),
            limits,
            failing_updates: HashSet::new(),
            log: VecDeque::new(),
            request_count: 0,
        };
        Shared {
            options,
            base_url: OnceLock::new(),
            state: Mutex::new(state),
            control: Default::default(),
        }
    }

    /// Locks the state. A poisoned lock is used as it is, because no handler leaves the
    /// portal half-written when it panics.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }

    /// Returns the scopes every token of this portal has.
    pub(crate) fn granted_scopes(&self) -> Vec<&'static str> {
        ALL_SCOPES
            .iter()
            .copied()
            .filter(|scope| !self.options.withheld_scopes.iter().any(|w| w == scope))
            .collect()
    }
}

/// Generates a random id in UUID form, for `correlationId` and `requestId`.
pub(crate) fn correlation_id() -> String {
    let mut rng = rand::thread_rng();
    let hex: String = (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The fields of an error response in HubSpot's shape.
#[derive(Debug)]
pub(crate) struct ErrorBody {
    pub status: StatusCode,
    pub category: &'static str,
    pub message: String,
    pub sub_category: Option<String>,
    pub errors: Vec<Json>,
    pub context: Option<Json>,
}

/// An error response in HubSpot's shape: `status`, `message`, `correlationId`, `category`.
/// Boxed, so that `Result<_, HsError>` stays small.
#[derive(Debug)]
pub(crate) struct HsError(Box<ErrorBody>);

impl std::ops::Deref for HsError {
    type Target = ErrorBody;

    fn deref(&self) -> &ErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for HsError {
    fn deref_mut(&mut self) -> &mut ErrorBody {
        &mut self.0
    }
}

impl HsError {
    pub(crate) fn new(
        status: StatusCode,
        category: &'static str,
        message: impl Into<String>,
    ) -> HsError {
        HsError(Box::new(ErrorBody {
            status,
            category,
            message: message.into(),
            sub_category: None,
            errors: Vec::new(),
            context: None,
        }))
    }

    pub(crate) fn validation(message: impl Into<String>) -> HsError {
        HsError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> HsError {
        HsError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    pub(crate) fn unknown_object(text: &str) -> HsError {
        let names: Vec<&str> = ObjectType::ALL.iter().map(|o| o.name()).collect();
        HsError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!(
                "Unable to infer object type from: {text}; the sandbox serves {}",
                names.join(", ")
            ),
        )
    }
}

impl IntoResponse for HsError {
    fn into_response(self) -> Response {
        let error = *self.0;
        tracing::debug!(status = error.status.as_u16(), category = error.category, message = %error.message, "HubSpot sandbox request rejected");
        let mut body = json!({
            "status": "error",
            "message": error.message,
            "correlationId": correlation_id(),
            "category": error.category,
        });
        if let Some(sub) = error.sub_category {
            body["subCategory"] = Json::String(sub);
        }
        if !error.errors.is_empty() {
            body["errors"] = Json::Array(error.errors);
        }
        if let Some(context) = error.context {
            body["context"] = context;
        }
        (error.status, JsonBody(body)).into_response()
    }
}

pub(crate) type HsResult = Result<Response, HsError>;

/// Builds the router for every supported path.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth/v1/token", post(token))
        .route("/oauth/v1/access-tokens/{token}", get(access_token_info))
        .route(
            "/oauth/v1/refresh-tokens/{token}",
            delete(delete_refresh_token),
        )
        .route(
            "/crm/v3/objects/{object}",
            get(objects::list).post(objects::create_one),
        )
        .route("/crm/v3/objects/{object}/search", post(search::search))
        .route("/crm/v3/objects/{object}/merge", post(objects::merge))
        .route(
            "/crm/v3/objects/{object}/batch/read",
            post(objects::batch_read),
        )
        .route(
            "/crm/v3/objects/{object}/batch/create",
            post(objects::batch_create),
        )
        .route(
            "/crm/v3/objects/{object}/batch/update",
            post(objects::batch_update),
        )
        .route(
            "/crm/v3/objects/{object}/{id}",
            get(objects::get_one)
                .patch(objects::update_one)
                .delete(objects::archive_one),
        )
        .route(
            "/crm/v4/objects/{from}/{id}/associations/{to}",
            get(associations::list),
        )
        .route(
            "/crm/v4/associations/{from}/{to}/batch/read",
            post(associations::batch_read),
        )
        .route(
            "/crm/v4/associations/{from}/{to}/labels",
            get(associations::labels),
        )
        .route(
            "/crm/v3/properties/{object}",
            get(meta::list_properties).post(meta::create_property),
        )
        .route(
            "/crm/v3/properties/{object}/groups",
            get(meta::list_groups).post(meta::create_group),
        )
        .route(
            "/crm/v3/properties/{object}/{name}",
            get(meta::get_property),
        )
        .route("/crm/v3/owners", get(meta::list_owners))
        .route("/crm/v3/owners/", get(meta::list_owners))
        .route("/crm/v3/owners/{id}", get(meta::get_owner))
        .route("/crm/v3/pipelines/{object}", get(meta::list_pipelines))
        .route("/crm/v3/pipelines/{object}/{id}", get(meta::get_pipeline))
        .route(
            "/crm/v3/pipelines/{object}/{id}/stages",
            get(meta::list_stages),
        )
        .nest(
            crate::control::PREFIX,
            crate::control::router(Arc::new(crate::hubspot::HubSpotHandle {
                shared: shared.clone(),
            })),
        )
        .fallback(|| async {
            HsError::new(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "resource not found",
            )
        })
        .method_not_allowed_fallback(|method: Method| async move {
            HsError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "VALIDATION_ERROR",
                format!("HTTP method {method} is not supported by this resource"),
            )
        })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Returns the scope a request needs, or `None` for paths without one.
fn required_scope(method: &Method, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let family = |segment: Option<&&str>| {
        segment
            .and_then(|s| ObjectType::parse(s))
            .map(|o| o.scope_family())
    };
    match segments.as_slice() {
        ["crm", "v3", "objects", object, rest @ ..] => {
            let family = family(Some(object))?;
            let read = *method == Method::GET || matches!(rest, ["search"] | ["batch", "read"]);
            let access = if read { "read" } else { "write" };
            Some(format!("crm.objects.{family}.{access}"))
        }
        ["crm", "v4", "objects", from, ..] | ["crm", "v4", "associations", from, ..] => {
            Some(format!("crm.objects.{}.read", family(Some(from))?))
        }
        ["crm", "v3", "properties", object, ..] => {
            let access = if *method == Method::GET {
                "read"
            } else {
                "write"
            };
            Some(format!("crm.schemas.{}.{access}", family(Some(object))?))
        }
        ["crm", "v3", "owners", ..] => Some("crm.objects.owners.read".into()),
        ["crm", "v3", "pipelines", ..] => Some("crm.objects.deals.read".into()),
        _ => None,
    }
}

/// Logs every request and, for CRM paths, checks the token, the scope and the rate limits,
/// and adds the rate-limit headers.
async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    // Control requests bypass authentication, limits, faults and the request log.
    if request.uri().path().starts_with(crate::control::PREFIX) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (bytes, response) = match to_bytes(body, MAX_BODY_BYTES).await {
        Err(_) => {
            let error = HsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "VALIDATION_ERROR",
                format!("request body exceeds {MAX_BODY_BYTES} bytes or could not be read"),
            );
            (Bytes::new(), error.into_response())
        }
        Ok(bytes) => {
            let mut decision = shared.control.decide(method.as_str(), &path, &bytes);
            let target = crate::hubspot::HubSpotHandle {
                shared: shared.clone(),
            };
            let scripted = crate::control::before(&target, &mut decision).await;
            let request = Request::from_parts(parts, Body::from(bytes.clone()));
            let response = if let Some(scripted) = scripted {
                scripted
            } else if let Some(locked) = locked_write(&shared, &method, &path, &bytes) {
                locked
            } else if path.starts_with("/crm/") {
                let is_search = method == Method::POST && path.ends_with("/search");
                match admit(&shared, authorization.as_deref(), &method, &path, is_search) {
                    Err(error) => *error,
                    Ok(headers) => {
                        let mut response = next.run(request).await;
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value);
                        }
                        response
                    }
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
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "HubSpot sandbox request");
    let mut state = shared.lock();
    state.request_count += 1;
    if state.log.len() >= MAX_LOGGED_REQUESTS {
        state.log.pop_front();
    }
    state.log.push_back(LoggedRequest {
        method: method.to_string(),
        path,
        query,
        authorization,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        status,
    });
    response
}

/// Returns a 502 for a write that names a record locked through the control endpoint.
/// HubSpot has no row locks; a 502 is the retryable failure it sends when it hits internal
/// processing limits.
fn locked_write(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Option<Response> {
    let is_write = *method == Method::POST && path.ends_with("/batch/update");
    let body: Json = serde_json::from_slice(body).ok().filter(|_| is_write)?;
    let locked = shared.control.take_locked_ids(&body);
    if locked.is_empty() {
        return None;
    }
    let error = HsError::new(
        StatusCode::BAD_GATEWAY,
        "INTERNAL_ERROR",
        format!("records {} are busy; try again", locked.join(", ")),
    );
    Some(error.into_response())
}

type Headers = Vec<(HeaderName, HeaderValue)>;

fn header(name: &'static str, value: impl ToString) -> Option<(HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(&value.to_string()).ok()?;
    Some((HeaderName::from_static(name), value))
}

fn unauthorized(category: &'static str, message: String) -> Response {
    HsError::new(StatusCode::UNAUTHORIZED, category, message).into_response()
}

fn rate_limited(
    policy: &str,
    message: &str,
    retry_after: Option<u64>,
    headers: Headers,
) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "requestId": correlation_id(),
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, JsonBody(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    if let Some(seconds) = retry_after {
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
    }
    response
}

/// Checks the bearer token, the scope and the rate limits, and counts the request. Returns
/// the rate-limit headers to add, or the error response.
fn admit(
    shared: &Shared,
    authorization: Option<&str>,
    method: &Method,
    path: &str,
    is_search: bool,
) -> Result<Headers, Box<Response>> {
    let missing = || {
        unauthorized(
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 access tokens and private app access tokens in the Authorization: Bearer header.".to_string(),
        )
    };
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Box::new(missing()))?;
    let now = Instant::now();
    let state = shared.lock();
    let app = if token == state.private_token {
        App::Private
    } else if let Some(issued) = state.tokens.get(token) {
        if issued.expires_at <= now {
            let minutes = now.duration_since(issued.expires_at).as_secs() / 60;
            return Err(Box::new(unauthorized(
                "EXPIRED_AUTHENTICATION",
                format!("The OAuth token used to make this call expired {minutes} minute(s) ago."),
            )));
        }
        App::OAuth
    } else {
        return Err(Box::new(missing()));
    };
    drop(state);

    if let Some(scope) = required_scope(method, path) {
        if shared.options.withheld_scopes.contains(&scope) {
            let mut error = HsError::new(
                StatusCode::FORBIDDEN,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
            );
            error.errors = vec![json!({
                "message": "One or more of the following scopes are required.",
                "context": {"requiredScopes": [scope]},
            })];
            error.context = Some(json!({"requiredScopes": [scope]}));
            return Err(Box::new(error.into_response()));
        }
    }

    let mut state = shared.lock();
    let limits = &mut state.limits;
    let max = match app {
        App::Private => limits.private_ten_second,
        App::OAuth => limits.oauth_ten_second,
    };
    let window = limits.window;
    let recent = limits.recent.entry(app).or_default();
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        recent.pop_front();
    }
    let used = recent.len() as u64;
    let oldest = recent.front().copied();
    let mut headers: Headers = Vec::new();
    if !is_search {
        // NOTE: HubSpot historically sent no Daily headers on OAuth calls; the sandbox
        // sends them only to private apps.
        if app == App::Private {
            let remaining = limits.daily.saturating_sub(limits.daily_used + 1);
            headers.extend(header("x-hubspot-ratelimit-daily", limits.daily));
            headers.extend(header("x-hubspot-ratelimit-daily-remaining", remaining));
        }
        let remaining = u64::from(max).saturating_sub(used + 1);
        headers.extend(header(
            "x-hubspot-ratelimit-interval-milliseconds",
            window.as_millis(),
        ));
        headers.extend(header("x-hubspot-ratelimit-max", max));
        headers.extend(header("x-hubspot-ratelimit-remaining", remaining));
        let secondly = (max / 10).max(1);
        headers.extend(header("x-hubspot-ratelimit-secondly", secondly));
        headers.extend(header(
            "x-hubspot-ratelimit-secondly-remaining",
            u64::from(secondly).saturating_sub(1),
        ));
    }
    if limits.daily_used >= limits.daily {
        return Err(Box::new(rate_limited(
            "DAILY",
            "You have reached your daily limit.",
            None,
            headers,
        )));
    }
    if used >= u64::from(max) {
        let wait = oldest
            .map(|t| window.saturating_sub(now.duration_since(t)))
            .unwrap_or(window);
        // NOTE: HubSpot does not document Retry-After; the sandbox sends it on the burst
        // and search limits, rounded up to whole seconds.
        let seconds = wait.as_millis().div_ceil(1000) as u64;
        return Err(Box::new(rate_limited(
            "TEN_SECONDLY_ROLLING",
            "You have reached your ten_secondly_rolling limit.",
            Some(seconds.max(1)),
            headers,
        )));
    }
    if is_search {
        let per_second = limits.search_per_second;
        let searches = limits.recent_searches.entry(app).or_default();
        while searches
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            searches.pop_front();
        }
        if searches.len() as u64 >= u64::from(per_second) {
            return Err(Box::new(rate_limited(
                "SECONDLY",
                "You have reached your secondly limit.",
                Some(1),
                Vec::new(),
            )));
        }
        searches.push_back(now);
    }
    limits.recent.entry(app).or_default().push_back(now);
    limits.daily_used += 1;
    Ok(headers)
}

fn oauth_error(status: &str, message: &str) -> Response {
    // NOTE: the `status` codes of token errors (BAD_CLIENT_ID and so on) follow observed
    // HubSpot responses; HubSpot's spec only promises `status` and `message`.
    let body = json!({
        "status": status,
        "message": message,
        "correlationId": correlation_id(),
        "requestId": correlation_id(),
    });
    (StatusCode::BAD_REQUEST, JsonBody(body)).into_response()
}

/// `POST /oauth/v1/token`: the `authorization_code` and `refresh_token` grants.
async fn token(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let options = &shared.options;
    let grant = field("grant_type");
    if grant != "authorization_code" && grant != "refresh_token" {
        return oauth_error(
            "BAD_GRANT_TYPE",
            &format!(
                "grant_type '{grant}' is not supported; use authorization_code or refresh_token"
            ),
        );
    }
    if field("client_id") != options.client_id {
        return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if field("client_secret") != options.client_secret {
        return oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    let mut state = shared.lock();
    if grant == "authorization_code" {
        if field("redirect_uri") != options.redirect_uri {
            return oauth_error(
                "BAD_REDIRECT_URI",
                "redirect_uri does not match the one of the authorization request",
            );
        }
        let code = field("code");
        if code != options.authorization_code || state.used_codes.contains(code) {
            return oauth_error("BAD_AUTH_CODE", "missing, unknown or already used code");
        }
        state.used_codes.insert(code.to_string());
        state.refresh_token_revoked = false;
    } else if !shared
        .control
        .refresh_token_valid(field("refresh_token"), &options.refresh_token)
        || state.refresh_token_revoked
    {
        return oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    // HubSpot access tokens vary in length, up to about 300 characters.
    let length = rand::thread_rng().gen_range(120..260);
    let secret: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect();
    let access_token = format!("CL-sandbox-{secret}");
    let ttl = options.access_token_ttl;
    state.tokens.insert(
        access_token.clone(),
        AccessToken {
            expires_at: Instant::now() + ttl,
        },
    );
    drop(state);
    // A rotation scripted through the control endpoint replaces the refresh token here.
    let refresh_token = shared
        .control
        .rotate_if_pending()
        .unwrap_or_else(|| shared.control.current_refresh_token(&options.refresh_token));
    let body = json!({
        "token_type": "bearer",
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": ttl.as_secs(),
    });
    (StatusCode::OK, JsonBody(body)).into_response()
}

/// `GET /oauth/v1/access-tokens/{token}`: metadata of an access token.
async fn access_token_info(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let state = shared.lock();
    let Some(issued) = state.tokens.get(&token) else {
        return HsError::not_found("access token not found").into_response();
    };
    let remaining = issued.expires_at.saturating_duration_since(Instant::now());
    let body = json!({
        "token": token,
        "hub_id": shared.options.portal_id,
        "app_id": 1_000_001,
        "user_id": 9_100_001,
        "scopes": shared.granted_scopes(),
        "token_type": "access",
        "expires_in": remaining.as_secs(),
    });
    (StatusCode::OK, JsonBody(body)).into_response()
}

/// `DELETE /oauth/v1/refresh-tokens/{token}`: revokes the refresh token. Access tokens
/// already issued stay valid until they expire.
async fn delete_refresh_token(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let mut state = shared.lock();
    if token != shared.options.refresh_token || state.refresh_token_revoked {
        return HsError::not_found("refresh token not found").into_response();
    }
    state.refresh_token_revoked = true;
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a request body as JSON, or returns a 400 that names the problem.
pub(crate) fn parse_body(body: &Bytes) -> Result<Json, HsError> {
    serde_json::from_slice(body).map_err(|error| {
        HsError::validation(format!(
            "Invalid input JSON on line {}, column {}: {error}; send a JSON object",
            error.line(),
            error.column()
        ))
    })
}

/// Parses the `{object}` path segment.
pub(crate) fn object_type(text: &str) -> Result<ObjectType, HsError> {
    ObjectType::parse(text).ok_or_else(|| HsError::unknown_object(text))
}

/// Parses a raw query string into (name, value) pairs; names may repeat.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}
