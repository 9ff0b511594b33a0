//! Bulk API 2.0 query jobs: create, poll, read CSV results by locator, abort and delete.
//!
//! A job evaluates its SOQL once, when it is created, with the same evaluator as the REST
//! `query` resource, and keeps the ordered row snapshot until it is deleted. Its state moves
//! one step per status request: `UploadComplete`, then `InProgress`, then `JobComplete` (or
//! `Failed` when the query was rejected), so clients must poll as they do against a real org.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::query::{self, FieldPath};
use crate::schema::FieldType;
use crate::server::Shared;
use crate::store::{format_datetime, with_case_suffix, Store, Value};

/// Jobs kept at once; the oldest is dropped beyond this, as real orgs delete old jobs.
const MAX_JOBS: usize = 1_000;

/// The life-cycle state of a job, with the names the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    fn api_name(self) -> &'static str {
        match self {
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

/// The evaluated result of a job whose query compiled.
struct Snapshot {
    table: usize,
    select: Vec<FieldPath>,
    rows: Vec<usize>,
}

/// One query job.
struct Job {
    id: String,
    operation: String,
    object: String,
    /// API version segment of the create request, such as `v59.0`.
    version: String,
    created: DateTime<Utc>,
    state: JobState,
    delimiter: (&'static str, char),
    line_ending: &'static str,
    /// The rows, or the message the job fails with once it leaves `InProgress`.
    result: Result<Snapshot, String>,
}

/// Every job of the org, oldest first.
#[derive(Default)]
pub(crate) struct Jobs {
    jobs: HashMap<String, Job>,
    order: VecDeque<String>,
    next: u64,
}

/// Sends an error as the REST API does: a JSON array with one error object.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::debug!(status = status.as_u16(), code, %message, "sandbox Bulk request rejected");
    let body = json!([{"errorCode": code, "message": message}]);
    (status, JsonBody(body)).into_response()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no query job with id {id}; create it with POST /jobs/query"),
    )
}

/// Splits a request path into segments, as `server::segments` does.
fn segments(uri: &Uri) -> Vec<&str> {
    uri.path().split('/').filter(|s| !s.is_empty()).collect()
}

fn delimiter(name: &str) -> Option<(&'static str, char)> {
    Some(match name {
        "COMMA" => ("COMMA", ','),
        "BACKQUOTE" => ("BACKQUOTE", '`'),
        "CARET" => ("CARET", '^'),
        "PIPE" => ("PIPE", '|'),
        "SEMICOLON" => ("SEMICOLON", ';'),
        "TAB" => ("TAB", '\t'),
        _ => return None,
    })
}

/// Returns the word after `FROM`, for the `object` of a job whose query did not compile.
fn from_object(soql: &str) -> String {
    let words: Vec<&str> = soql.split_whitespace().collect();
    words
        .iter()
        .position(|w| w.eq_ignore_ascii_case("FROM"))
        .and_then(|i| words.get(i + 1))
        .map(|w| w.to_string())
        .unwrap_or_default()
}

/// Compiles and runs the query, or returns the message the job fails with.
fn evaluate(store: &Store, soql: &str, include_deleted: bool) -> Result<Snapshot, String> {
    let compiled =
        query::compile(store, soql).map_err(|(message, code)| format!("{code}: {message}"))?;
    if let Some(compound) = compiled.select.iter().find(|p| query::is_compound(p)) {
        return Err(format!(
            "FeatureNotEnabled: Selecting compound data not supported in Bulk Query: {}; select its component fields instead",
            query::dotted_name(compound)
        ));
    }
    let rows = query::run(store, &compiled, include_deleted);
    Ok(Snapshot {
        table: compiled.table,
        select: compiled.select,
        rows,
    })
}

fn job_json(job: &Job, with_status: bool) -> Json {
    let stamp = format_datetime(&job.created);
    let mut body = json!({
        "id": job.id,
        "operation": job.operation,
        "object": job.object,
        "createdById": with_case_suffix(crate::server::API_USER_ID),
        "createdDate": stamp,
        "systemModstamp": stamp,
        "state": job.state.api_name(),
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": job.version.trim_start_matches('v').parse::<f64>().unwrap_or(0.0),
        "lineEnding": if job.line_ending == "\r\n" { "CRLF" } else { "LF" },
        "columnDelimiter": job.delimiter.0,
    });
    if with_status {
        if let Json::Object(map) = &mut body {
            let processed = match (&job.result, job.state) {
                (Ok(snapshot), JobState::JobComplete) => snapshot.rows.len(),
                _ => 0,
            };
            map.insert("jobType".into(), json!("V2Query"));
            map.insert("numberRecordsProcessed".into(), json!(processed));
            map.insert("retries".into(), json!(0));
            map.insert("totalProcessingTime".into(), json!(0));
            if let (JobState::Failed, Err(message)) = (job.state, &job.result) {
                map.insert("errorMessage".into(), json!(message));
            }
        }
    }
    body
}

/// `POST /jobs/query`: creates a query job from `{"operation", "query", "contentType",
/// "columnDelimiter", "lineEnding"}`.
pub(crate) async fn create_job(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let invalid = |message: String| error(StatusCode::BAD_REQUEST, "INVALIDJOB", message);
    let request: Json = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                format!("the request body is not valid JSON: {e}"),
            )
        }
    };
    let text = |key: &str| request.get(key).and_then(Json::as_str);
    let operation = text("operation").unwrap_or("");
    if operation != "query" && operation != "queryAll" {
        return invalid(format!(
            "operation {operation:?} is not supported; use \"query\" or \"queryAll\""
        ));
    }
    let Some(soql) = text("query").filter(|q| !q.trim().is_empty()) else {
        return invalid("the job has no query; send the SOQL text in \"query\"".to_string());
    };
    if let Some(content) = text("contentType").filter(|c| *c != "CSV") {
        return invalid(format!(
            "contentType {content:?} is not supported; use \"CSV\""
        ));
    }
    let Some(delimiter) = delimiter(text("columnDelimiter").unwrap_or("COMMA")) else {
        return invalid(format!(
            "columnDelimiter {:?} is not one of BACKQUOTE, CARET, COMMA, PIPE, SEMICOLON, TAB",
            text("columnDelimiter").unwrap_or("")
        ));
    };
    let line_ending = match text("lineEnding").unwrap_or("LF") {
        "LF" => "\n",
        "CRLF" => "\r\n",
        other => return invalid(format!("lineEnding {other:?} is not LF or CRLF")),
    };

    let version = segments(&uri).get(2).copied().unwrap_or("").to_string();
    let mut state = shared.lock();
    let result = evaluate(&state.store, soql, operation == "queryAll");
    let object = match &result {
        Ok(snapshot) => state.store.tables[snapshot.table].def.name.to_string(),
        Err(_) => from_object(soql),
    };
    let created = state.store.now();
    let jobs = &mut state.bulk_jobs;
    jobs.next += 1;
    let id = with_case_suffix(&format!("750Sb{:010}", jobs.next));
    let job = Job {
        id: id.clone(),
        operation: operation.to_string(),
        object,
        version,
        created,
        state: JobState::UploadComplete,
        delimiter,
        line_ending,
        result,
    };
    let body = job_json(&job, false);
    if jobs.order.len() >= MAX_JOBS {
        if let Some(oldest) = jobs.order.pop_front() {
            jobs.jobs.remove(&oldest);
        }
    }
    jobs.order.push_back(id.clone());
    jobs.jobs.insert(id, job);
    (StatusCode::OK, JsonBody(body)).into_response()
}

/// `GET /jobs/query/{id}`: returns the job and moves it one state along.
pub(crate) async fn job_info(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri) -> Response {
    let id = segments(&uri).get(5).copied().unwrap_or("").to_string();
    let mut state = shared.lock();
    let Some(job) = state.bulk_jobs.jobs.get_mut(&id) else {
        return not_found(&id);
    };
    let body = job_json(job, true);
    job.state = match (job.state, &job.result) {
        (JobState::UploadComplete, _) => JobState::InProgress,
        (JobState::InProgress, Ok(_)) => JobState::JobComplete,
        (JobState::InProgress, Err(_)) => JobState::Failed,
        (terminal, _) => terminal,
    };
    (StatusCode::OK, JsonBody(body)).into_response()
}

/// `PATCH /jobs/query/{id}` with `{"state": "Aborted"}`: aborts a job that is not finished.
pub(crate) async fn abort_job(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let id = segments(&uri).get(5).copied().unwrap_or("").to_string();
    let requested = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|json| json.get("state").and_then(Json::as_str).map(str::to_string));
    if requested.as_deref() != Some("Aborted") {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "a query job can only be changed to {\"state\": \"Aborted\"}",
        );
    }
    let mut state = shared.lock();
    let Some(job) = state.bulk_jobs.jobs.get_mut(&id) else {
        return not_found(&id);
    };
    if job.state.is_terminal() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            format!(
                "job {id} is already {} and cannot be aborted",
                job.state.api_name()
            ),
        );
    }
    job.state = JobState::Aborted;
    (StatusCode::OK, JsonBody(job_json(job, false))).into_response()
}

/// `DELETE /jobs/query/{id}`: removes the job and its results.
pub(crate) async fn delete_job(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri) -> Response {
    let id = segments(&uri).get(5).copied().unwrap_or("").to_string();
    let mut state = shared.lock();
    if state.bulk_jobs.jobs.remove(&id).is_none() {
        return not_found(&id);
    }
    state.bulk_jobs.order.retain(|j| *j != id);
    StatusCode::NO_CONTENT.into_response()
}

/// Parses the `maxRecords` and `locator` parameters into (page size, offset).
fn page_parameters(
    raw: Option<&str>,
    cap: usize,
) -> Result<(usize, usize), (StatusCode, &'static str, String)> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let size = match params.get("maxRecords") {
        None => cap,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n.min(cap),
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER",
                    format!("maxRecords must be a whole number above 0, got {text:?}"),
                ))
            }
        },
    };
    let offset = match params.get("locator").map(String::as_str) {
        None | Some("") => 0,
        Some(locator) => decode_locator(locator).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "INVALID_LOCATOR",
                format!("locator {locator:?} was not issued for this job"),
            )
        })?,
    };
    Ok((size.max(1), offset))
}

/// Encodes a row offset as a locator. Locators are opaque to clients, and the sandbox's are
/// the offset in hexadecimal.
fn encode_locator(offset: usize) -> String {
    format!("{offset:08X}")
}

fn decode_locator(locator: &str) -> Option<usize> {
    usize::from_str_radix(locator, 16).ok()
}

/// `GET /jobs/query/{id}/results?maxRecords=&locator=`: one page of CSV results.
pub(crate) async fn results(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let parts = segments(&uri);
    let id = parts.get(5).copied().unwrap_or("").to_string();
    let version = parts.get(2).copied().unwrap_or("");
    let (size, offset) = match page_parameters(raw.as_deref(), shared.options.bulk_page_size) {
        Ok(parameters) => parameters,
        Err((status, code, message)) => return error(status, code, message),
    };

    let state = shared.lock();
    let Some(job) = state.bulk_jobs.jobs.get(&id) else {
        return not_found(&id);
    };
    if job.version != version {
        return error(
            StatusCode::CONFLICT,
            "INVALIDJOB",
            format!(
                "job {id} was created with API {}; read its results with the same version",
                job.version
            ),
        );
    }
    let snapshot = match (&job.result, job.state) {
        (Ok(snapshot), JobState::JobComplete) => snapshot,
        _ => {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "JOB_NOT_COMPLETE",
                format!(
                    "job {id} is {}; results are available once it is JobComplete",
                    job.state.api_name()
                ),
            )
        }
    };
    if offset > snapshot.rows.len() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_LOCATOR",
            format!(
                "locator {} is past the end of the results",
                encode_locator(offset)
            ),
        );
    }

    let end = (offset + size).min(snapshot.rows.len());
    let csv = render_csv(&state.store, job, snapshot, offset..end);
    let locator = if end < snapshot.rows.len() {
        encode_locator(end)
    } else {
        "null".to_string()
    };

    let mut response = (StatusCode::OK, csv).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=UTF-8"),
    );
    headers.insert("Sforce-NumberOfRecords", HeaderValue::from(end - offset));
    if let Ok(value) = HeaderValue::from_str(&locator) {
        headers.insert("Sforce-Locator", value);
    }
    response
}

/// Renders rows as Bulk CSV: a header row of dotted field names in SELECT order, every value
/// in double quotes with embedded quotes doubled, and null as an empty value.
fn render_csv(
    store: &Store,
    job: &Job,
    snapshot: &Snapshot,
    rows: std::ops::Range<usize>,
) -> String {
    let separator = job.delimiter.1.to_string();
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let mut out = String::new();
    let header: Vec<String> = snapshot
        .select
        .iter()
        .map(|path| quote(&query::dotted_name(path)))
        .collect();
    out.push_str(&header.join(&separator));
    out.push_str(job.line_ending);
    for &row in &snapshot.rows[rows] {
        let cells: Vec<String> = snapshot
            .select
            .iter()
            .map(|path| {
                let value = query::path_value(store, path, snapshot.table, row);
                quote(&csv_text(&value, query::field_type(path)))
            })
            .collect();
        out.push_str(&cells.join(&separator));
        out.push_str(job.line_ending);
    }
    out
}

/// Formats a value as Bulk results do: `true`/`false`, ISO 8601 datetimes with `Z`, and
/// the empty string for null.
fn csv_text(value: &Value, field_type: FieldType) -> String {
    match value {
        Value::Null => String::new(),
        Value::Text(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(n) if field_type == FieldType::Int => format!("{}", n.round() as i64),
        Value::Number(n) => n.to_string(),
        Value::Date(date) => date.format("%Y-%m-%d").to_string(),
        Value::DateTime(at) => at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    }
}
