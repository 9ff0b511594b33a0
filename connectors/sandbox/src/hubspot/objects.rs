//! CRM v3 object endpoints: list, get, create, update, archive, batch read, create and
//! update, and merge.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as JsonBody;
use serde_json::{json, Map, Value as Json};

use crate::hubspot::portal::{iso, now_ms, ObjectType, Portal, Record, RecordKey};
use crate::hubspot::properties::{normalize, InvalidProperty};
use crate::hubspot::server::{object_type, parse_body, query_pairs, HsError, HsResult, Shared};

/// Inputs allowed in one batch call.
pub(crate) const MAX_BATCH_INPUTS: usize = 100;
/// Records allowed in one list page.
const MAX_LIST_LIMIT: usize = 100;

/// Encodes a paging cursor. HubSpot's cursors are opaque base64 text; these encode the
/// position as decimal text.
pub(crate) fn encode_cursor(position: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = position.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(text: &str) -> Result<u64, HsError> {
    let invalid = || {
        HsError::validation(format!(
            "after '{text}' is not a valid paging cursor; pass the value of paging.next.after unchanged"
        ))
    };
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(invalid()),
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(invalid)
}

/// Properties to return: the requested names, or the object's defaults.
pub(crate) fn selection(object: ObjectType, requested: Vec<String>) -> Vec<String> {
    if requested.is_empty() {
        object
            .default_properties()
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        requested
    }
}

/// Renders a record in HubSpot's object shape. Requested properties the portal defines but
/// the record lacks are `null`; unknown names are left out, as HubSpot ignores them.
pub(crate) fn render(
    portal: &Portal,
    object: ObjectType,
    record: &Record,
    properties: &[String],
    associations: &[ObjectType],
) -> Json {
    let mut values = Map::new();
    let always = [
        "hs_object_id",
        object.created_property(),
        object.modified_property(),
    ];
    let names = always
        .iter()
        .copied()
        .chain(properties.iter().map(String::as_str));
    for name in names {
        if portal.is_hidden(object, name) {
            continue;
        }
        match record.properties.get(name) {
            Some(value) => {
                values.insert(name.to_string(), Json::String(value.clone()));
            }
            None if portal.property(object, name).is_some() => {
                values.insert(name.to_string(), Json::Null);
            }
            None => {}
        }
    }
    let mut body = json!({
        "id": record.id.to_string(),
        "properties": values,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
        "archived": record.archived_at.is_some(),
    });
    if let Some(at) = record.archived_at {
        body["archivedAt"] = Json::String(iso(at));
    }
    let mut inline = Map::new();
    for &to in associations {
        let mut results = Vec::new();
        for (target, types) in portal.associations_to((object, record.id), to) {
            for type_id in types {
                if let Some(kind) = portal.type_by_id(object, to, *type_id) {
                    results.push(json!({"id": target.to_string(), "type": kind.v3_name}));
                }
            }
        }
        if !results.is_empty() {
            // NOTE: inline associations are returned in full; HubSpot pages them.
            inline.insert(to.name().to_string(), json!({"results": results}));
        }
    }
    if !inline.is_empty() {
        body["associations"] = Json::Object(inline);
    }
    body
}

/// Query parameters shared by list and get.
struct ReadParams {
    properties: Vec<String>,
    associations: Vec<ObjectType>,
    archived: bool,
    limit: Option<String>,
    after: Option<String>,
    id_property: Option<String>,
}

fn read_params(query: Option<&str>) -> Result<ReadParams, HsError> {
    let mut params = ReadParams {
        properties: Vec::new(),
        associations: Vec::new(),
        archived: false,
        limit: None,
        after: None,
        id_property: None,
    };
    for (name, value) in query_pairs(query) {
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        match name.as_str() {
            "properties" => params.properties.extend(list()),
            "associations" => {
                for text in list() {
                    let to =
                        ObjectType::parse(&text).ok_or_else(|| HsError::unknown_object(&text))?;
                    params.associations.push(to);
                }
            }
            "archived" => params.archived = parse_flag("archived", &value)?,
            "limit" => params.limit = Some(value),
            "after" => params.after = Some(value),
            "idProperty" => params.id_property = Some(value),
            _ => {}
        }
    }
    Ok(params)
}

pub(crate) fn parse_flag(name: &str, value: &str) -> Result<bool, HsError> {
    // HubSpot's own Python client sends `archived=False`, and the API accepts it.
    match value {
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(HsError::validation(format!(
            "{name}={value} is invalid; use true or false"
        ))),
    }
}

/// Parses a `limit` parameter: `default` when absent, 400 outside 1..=max.
pub(crate) fn parse_limit(
    value: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, HsError> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(HsError::validation(format!(
            "limit={text} is invalid; use a whole number from 1 to {max}"
        ))),
    }
}

fn json_response(status: StatusCode, body: Json) -> Response {
    (status, JsonBody(body)).into_response()
}

/// `GET /crm/v3/objects/{object}`: records by id, `limit` at most 100.
pub(crate) async fn list(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let object_name = object;
    let object = object_type(&object_name)?;
    let params = read_params(query.as_deref())?;
    // NOTE: HubSpot documents 100 as the maximum page size; whether it rejects or clamps a
    // larger limit is not documented, and the sandbox rejects it.
    let limit = parse_limit(params.limit.as_deref(), 10, MAX_LIST_LIMIT)?;
    let start = match params.after.as_deref() {
        Some(after) => decode_cursor(after)?,
        None => 0,
    };
    let properties = selection(object, params.properties);
    let state = shared.lock();
    let portal = &state.portal;
    let mut page: Vec<&Record> = portal
        .records(object)
        .range(start..)
        .map(|(_, record)| record)
        .filter(|record| record.archived_at.is_some() == params.archived)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| page[limit].id);
    page.truncate(limit);
    let results: Vec<Json> = page
        .iter()
        .map(|record| render(portal, object, record, &properties, &params.associations))
        .collect();
    let mut body = json!({"results": results});
    if let Some(next) = next {
        let after = encode_cursor(next);
        let link = format!(
            "{}/crm/v3/objects/{object_name}?after={after}",
            shared.base_url()
        );
        body["paging"] = json!({"next": {"after": after, "link": link}});
    }
    Ok(json_response(StatusCode::OK, body))
}

fn not_found(object: ObjectType, id: &str) -> HsError {
    HsError::not_found(format!(
        "Object not found. {} {id} does not exist, or was archived; check the id and the object type",
        object.singular()
    ))
}

/// Finds a record by id (or by a unique property), following merges.
fn find_record<'a>(
    portal: &'a Portal,
    object: ObjectType,
    id: &str,
    id_property: Option<&str>,
    archived: bool,
) -> Option<&'a Record> {
    let records = portal.records(object);
    let record = match id_property.filter(|p| *p != "hs_object_id") {
        Some(property) => records.values().find(|record| {
            record
                .properties
                .get(property)
                .is_some_and(|value| value.eq_ignore_ascii_case(id))
        }),
        None => {
            let id = id.parse::<u64>().ok()?;
            records.get(&portal.resolve(object, id))
        }
    }?;
    (record.archived_at.is_some() == archived).then_some(record)
}

/// `GET /crm/v3/objects/{object}/{id}`. An id absorbed by a merge returns the survivor.
pub(crate) async fn get_one(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let object = object_type(&object)?;
    let params = read_params(query.as_deref())?;
    let properties = selection(object, params.properties);
    let state = shared.lock();
    let portal = &state.portal;
    let record = find_record(
        portal,
        object,
        &id,
        params.id_property.as_deref(),
        params.archived,
    )
    .ok_or_else(|| not_found(object, &id))?;
    let body = render(portal, object, record, &properties, &params.associations);
    Ok(json_response(StatusCode::OK, body))
}

/// Checks the `properties` object of a write and returns the values as stored, or the 400
/// `VALIDATION_ERROR` that lists every invalid value.
pub(crate) fn validate_properties(
    portal: &Portal,
    object: ObjectType,
    properties: Option<&Json>,
) -> Result<Vec<(String, String)>, HsError> {
    let map = match properties {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Object(map)) => map,
        Some(other) => {
            return Err(HsError::validation(format!(
                "properties must be an object of property name to string value, not {other}"
            )))
        }
    };
    let mut values = Vec::new();
    let mut invalid: Vec<InvalidProperty> = Vec::new();
    for (name, value) in map {
        let text = match value {
            Json::String(text) => text.clone(),
            Json::Number(number) => number.to_string(),
            Json::Bool(flag) => flag.to_string(),
            Json::Null => String::new(),
            other => {
                invalid.push(InvalidProperty {
                    name: name.clone(),
                    message: format!("{other} is not a valid value; send a string"),
                    code: "INVALID_VALUE",
                });
                continue;
            }
        };
        match normalize(portal, object, name, &text) {
            Ok(value) => values.push((name.clone(), value)),
            Err(error) => invalid.push(error),
        }
    }
    if invalid.is_empty() {
        return Ok(values);
    }
    let summary: Vec<Json> = invalid
        .iter()
        .map(|e| json!({"isValid": false, "message": e.message, "error": e.code, "name": e.name}))
        .collect();
    let mut error = HsError::validation(format!(
        "Property values were not valid: {}",
        Json::Array(summary)
    ));
    error.errors = invalid
        .iter()
        .map(|e| json!({"message": e.message, "code": e.code, "context": {"propertyName": [e.name]}}))
        .collect();
    Err(error)
}

/// Writes validated values to a record and stamps its modification time.
pub(crate) fn apply(
    portal: &mut Portal,
    object: ObjectType,
    id: u64,
    values: &[(String, String)],
    at: i64,
) {
    let stages: HashMap<String, (bool, bool)> = portal
        .pipelines
        .iter()
        .flat_map(|p| p.stages.iter())
        .map(|s| {
            (
                s.id.clone(),
                (s.is_closed, s.is_closed && s.probability >= 1.0),
            )
        })
        .collect();
    if let Some(record) = portal.records_mut(object).get_mut(&id) {
        for (name, value) in values {
            if value.is_empty() {
                record.properties.remove(name);
            } else {
                record.properties.insert(name.clone(), value.clone());
            }
            if object == ObjectType::Deals && name == "dealstage" {
                let (closed, won) = stages.get(value).copied().unwrap_or((false, false));
                record
                    .properties
                    .insert("hs_is_closed".into(), closed.to_string());
                record
                    .properties
                    .insert("hs_is_closed_won".into(), won.to_string());
            }
        }
    }
    portal.touch(object, id, at);
}

/// `PATCH /crm/v3/objects/{object}/{id}`.
pub(crate) async fn update_one(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let mut state = shared.lock();
    let record_id = find_record(&state.portal, object, &id, None, false)
        .map(|r| r.id)
        .ok_or_else(|| not_found(object, &id))?;
    let values = validate_properties(&state.portal, object, body.get("properties"))?;
    apply(&mut state.portal, object, record_id, &values, now_ms());
    let portal = &state.portal;
    let record = &portal.records(object)[&record_id];
    let names: Vec<String> = values.into_iter().map(|(name, _)| name).collect();
    Ok(json_response(
        StatusCode::OK,
        render(portal, object, record, &names, &[]),
    ))
}

/// `DELETE /crm/v3/objects/{object}/{id}`: archives the record.
pub(crate) async fn archive_one(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
) -> HsResult {
    let object = object_type(&object)?;
    let mut state = shared.lock();
    let record_id = find_record(&state.portal, object, &id, None, false)
        .map(|r| r.id)
        .ok_or_else(|| not_found(object, &id))?;
    archive(&mut state.portal, object, record_id, now_ms());
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Archives a record: it leaves lists and search, and `archived=true` returns it.
pub(crate) fn archive(portal: &mut Portal, object: ObjectType, id: u64, at: i64) {
    if let Some(record) = portal.records_mut(object).get_mut(&id) {
        record.archived_at = Some(at);
    }
    portal.touch(object, id, at);
}

/// Parses the `associations` of a create input into (target, type id) pairs.
fn create_associations(
    portal: &Portal,
    object: ObjectType,
    input: &Json,
) -> Result<Vec<(RecordKey, u32)>, HsError> {
    let mut pairs = Vec::new();
    let Some(list) = input.get("associations").and_then(Json::as_array) else {
        return Ok(pairs);
    };
    for association in list {
        let to_id = association
            .pointer("/to/id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                HsError::validation(format!(
                    "association {association} needs to.id, a record id"
                ))
            })?;
        let types = association
            .get("types")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for kind in types {
            let type_id = kind
                .get("associationTypeId")
                .and_then(Json::as_u64)
                .ok_or_else(|| {
                    HsError::validation(format!(
                        "association type {kind} needs a numeric associationTypeId"
                    ))
                })?;
            let def = portal
                .association_types
                .iter()
                .find(|t| t.from == object && u64::from(t.type_id) == type_id)
                .ok_or_else(|| {
                    HsError::validation(format!(
                        "associationTypeId {type_id} is not an association type from {}",
                        object.name()
                    ))
                })?;
            let exists = portal
                .records(def.to)
                .get(&to_id)
                .is_some_and(|r| r.archived_at.is_none());
            if !exists {
                return Err(HsError::validation(format!(
                    "association target {} {to_id} does not exist",
                    def.to.singular()
                )));
            }
            pairs.push(((def.to, to_id), def.type_id));
        }
    }
    Ok(pairs)
}

/// Rejects a new task without `hs_timestamp`, its due time, which HubSpot requires.
fn require_task_timestamp(object: ObjectType, values: &[(String, String)]) -> Result<(), HsError> {
    let has_timestamp = values
        .iter()
        .any(|(name, value)| name == "hs_timestamp" && !value.is_empty());
    if object == ObjectType::Tasks && !has_timestamp {
        return Err(HsError::validation(
            "hs_timestamp is required for a task; send the due time as epoch milliseconds or an ISO 8601 UTC string",
        ));
    }
    Ok(())
}

/// Creates one record from a create input; the caller validated it.
fn create_record(
    portal: &mut Portal,
    object: ObjectType,
    values: Vec<(String, String)>,
    links: Vec<(RecordKey, u32)>,
) -> u64 {
    let now = now_ms();
    let properties: HashMap<String, String> =
        values.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let id = portal.insert(object, properties, now, now);
    for (target, type_id) in links {
        portal.associate((object, id), target, type_id);
    }
    id
}

/// `POST /crm/v3/objects/{object}`: creates one record (201).
pub(crate) async fn create_one(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let mut state = shared.lock();
    let values = validate_properties(&state.portal, object, body.get("properties"))?;
    require_task_timestamp(object, &values)?;
    let links = create_associations(&state.portal, object, &body)?;
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    let id = create_record(&mut state.portal, object, values, links);
    let portal = &state.portal;
    let record = &portal.records(object)[&id];
    Ok(json_response(
        StatusCode::CREATED,
        render(portal, object, record, &names, &[]),
    ))
}

/// Returns the `inputs` array of a batch body, checking its size.
pub(crate) fn batch_inputs(body: &Json) -> Result<&Vec<Json>, HsError> {
    let inputs = body
        .get("inputs")
        .and_then(Json::as_array)
        .ok_or_else(|| HsError::validation("the body needs an inputs array"))?;
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(HsError::validation(format!(
            "{} inputs were sent, but a batch takes at most {MAX_BATCH_INPUTS}; split it",
            inputs.len()
        )));
    }
    Ok(inputs)
}

fn input_id(input: &Json) -> Result<String, HsError> {
    match input.get("id") {
        Some(Json::String(id)) => Ok(id.clone()),
        Some(Json::Number(n)) => Ok(n.to_string()),
        _ => Err(HsError::validation(format!("input {input} needs an id"))),
    }
}

/// Builds a batch response: 200 (or `ok_status`) when every input succeeded, else 207 with
/// the errors.
pub(crate) fn batch_response(
    ok_status: StatusCode,
    started: i64,
    results: Vec<Json>,
    errors: Vec<Json>,
) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso(started),
        "completedAt": iso(now_ms()),
    });
    let status = if errors.is_empty() {
        ok_status
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Json::Array(errors);
        StatusCode::MULTI_STATUS
    };
    json_response(status, body)
}

fn string_list(body: &Json, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /crm/v3/objects/{object}/batch/read`: missing ids give 207 with `OBJECT_NOT_FOUND`.
pub(crate) async fn batch_read(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> HsResult {
    let started = now_ms();
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let params = read_params(query.as_deref())?;
    let inputs = batch_inputs(&body)?;
    let properties = selection(object, string_list(&body, "properties"));
    let id_property = body.get("idProperty").and_then(Json::as_str);
    let state = shared.lock();
    let portal = &state.portal;
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let id = input_id(input)?;
        match find_record(portal, object, &id, id_property, params.archived) {
            Some(record) => results.push(render(portal, object, record, &properties, &[])),
            None => missing.push(id),
        }
    }
    let errors = not_found_errors(object, missing, "get");
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

fn not_found_errors(object: ObjectType, ids: Vec<String>, verb: &str) -> Vec<Json> {
    if ids.is_empty() {
        return Vec::new();
    }
    vec![json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!(
            "Could not {verb} some {} objects, they may be deleted or not exist. Check that ids are valid.",
            object.upper()
        ),
        "context": {"ids": ids},
        "errors": [],
        "links": {},
    })]
}

/// `POST /crm/v3/objects/{object}/batch/create`: 201, or 400 when any input is invalid.
pub(crate) async fn batch_create(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let started = now_ms();
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let inputs = batch_inputs(&body)?;
    let mut state = shared.lock();
    let mut prepared = Vec::new();
    for input in inputs {
        let values = validate_properties(&state.portal, object, input.get("properties"))?;
        require_task_timestamp(object, &values)?;
        let links = create_associations(&state.portal, object, input)?;
        prepared.push((values, links));
    }
    let mut results = Vec::new();
    for (values, links) in prepared {
        let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
        let id = create_record(&mut state.portal, object, values, links);
        let portal = &state.portal;
        results.push(render(
            portal,
            object,
            &portal.records(object)[&id],
            &names,
            &[],
        ));
    }
    Ok(batch_response(
        StatusCode::CREATED,
        started,
        results,
        Vec::new(),
    ))
}

/// `POST /crm/v3/objects/{object}/batch/update`: 200, or 207 with per-input errors for
/// missing ids and ids the test handle made fail. An invalid value fails the whole batch
/// with 400, as HubSpot does.
pub(crate) async fn batch_update(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let started = now_ms();
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let inputs = batch_inputs(&body)?;
    let mut state = shared.lock();
    let mut seen = HashSet::new();
    let mut prepared = Vec::new();
    for input in inputs {
        let id = input_id(input)?;
        if !seen.insert(id.clone()) {
            return Err(HsError::validation(format!(
                "Duplicate IDs found in batch input: [{id}]. IDs must be unique"
            )));
        }
        let values = validate_properties(&state.portal, object, input.get("properties"))?;
        prepared.push((id, values));
    }
    let now = now_ms();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    for (id, values) in prepared {
        let Some(record_id) = find_record(&state.portal, object, &id, None, false).map(|r| r.id)
        else {
            missing.push(id);
            continue;
        };
        if state.failing_updates.contains(&(object, record_id)) {
            errors.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!("{} {id} could not be updated because the sandbox handle marked it to fail", object.singular()),
                "context": {"ids": [id]},
                "errors": [],
                "links": {},
            }));
            continue;
        }
        apply(&mut state.portal, object, record_id, &values, now);
        let names: Vec<String> = values.into_iter().map(|(n, _)| n).collect();
        let portal = &state.portal;
        results.push(render(
            portal,
            object,
            &portal.records(object)[&record_id],
            &names,
            &[],
        ));
    }
    errors.extend(not_found_errors(object, missing, "update"));
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

/// Merges `merged` into `primary`: the survivor keeps its id, gains the absorbed record's
/// associations and the values it lacks, and lists the absorbed id in
/// `hs_merged_object_ids`. The absorbed record disappears; reading its id returns the
/// survivor.
// NOTE: one third-party tool reports that HubSpot gives the merged result a new id; here the
// primary id survives, as in HubSpot's own merge example.
pub(crate) fn merge_records(
    portal: &mut Portal,
    object: ObjectType,
    primary: u64,
    merged: u64,
) -> Result<u64, String> {
    let primary = portal.resolve(object, primary);
    let merged = portal.resolve(object, merged);
    if primary == merged {
        return Err(format!(
            "cannot merge {} {primary} into itself",
            object.singular()
        ));
    }
    let live = |id: u64| {
        portal
            .records(object)
            .get(&id)
            .is_some_and(|r| r.archived_at.is_none())
    };
    for id in [primary, merged] {
        if !live(id) {
            return Err(format!(
                "{} {id} does not exist or is archived",
                object.singular()
            ));
        }
    }
    let Some(absorbed) = portal.records_mut(object).remove(&merged) else {
        return Err(format!("{} {merged} does not exist", object.singular()));
    };
    if let Some(survivor) = portal.records_mut(object).get_mut(&primary) {
        for (name, value) in &absorbed.properties {
            if name != "hs_object_id" && name != "hs_merged_object_ids" {
                survivor
                    .properties
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        let mut ids: Vec<String> = survivor
            .properties
            .get("hs_merged_object_ids")
            .map(|list| list.split(';').map(str::to_string).collect())
            .unwrap_or_default();
        if let Some(earlier) = absorbed.properties.get("hs_merged_object_ids") {
            ids.extend(earlier.split(';').map(str::to_string));
        }
        ids.push(merged.to_string());
        survivor
            .properties
            .insert("hs_merged_object_ids".into(), ids.join(";"));
    }
    let from = (object, merged);
    if let Some(targets) = portal.associations.remove(&from) {
        for (target, types) in targets {
            if let Some(back) = portal.associations.get_mut(&target) {
                back.remove(&from);
            }
            if target == (object, primary) {
                continue;
            }
            for type_id in types {
                portal.associate((object, primary), target, type_id);
            }
        }
    }
    portal.merged_into.insert(from, primary);
    portal.touch(object, primary, now_ms());
    Ok(primary)
}

/// Gives a surviving record a new id, as some portals do after a merge: the old id joins
/// `hs_merged_object_ids`, resolves to the new id, and the associations move with the record.
/// Returns the new id.
pub(crate) fn renumber_survivor(portal: &mut Portal, object: ObjectType, old: u64, at: i64) -> u64 {
    let Some(mut record) = portal.records_mut(object).remove(&old) else {
        return old;
    };
    let new = portal.next_id(object);
    record.id = new;
    record
        .properties
        .insert("hs_object_id".into(), new.to_string());
    let mut ids: Vec<String> = record
        .properties
        .get("hs_merged_object_ids")
        .map(|list| list.split(';').map(str::to_string).collect())
        .unwrap_or_default();
    ids.push(old.to_string());
    record
        .properties
        .insert("hs_merged_object_ids".into(), ids.join(";"));
    portal.records_mut(object).insert(new, record);
    let from = (object, old);
    if let Some(targets) = portal.associations.remove(&from) {
        for (target, types) in targets {
            if let Some(back) = portal.associations.get_mut(&target) {
                if let Some(back_types) = back.remove(&from) {
                    back.insert((object, new), back_types);
                }
            }
            portal
                .associations
                .entry((object, new))
                .or_default()
                .insert(target, types);
        }
    }
    for key in portal.id_map.values_mut() {
        if *key == from {
            *key = (object, new);
        }
    }
    portal.merged_into.insert(from, new);
    portal.touch(object, new, at);
    new
}

/// `POST /crm/v3/objects/{object}/merge` with `primaryObjectId` and `objectIdToMerge`.
pub(crate) async fn merge(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let id = |field: &str| -> Result<u64, HsError> {
        body.get(field)
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                HsError::validation(format!("{field} must be a record id, such as \"51\""))
            })
    };
    let (primary, merged) = (id("primaryObjectId")?, id("objectIdToMerge")?);
    let mut state = shared.lock();
    let survivor =
        merge_records(&mut state.portal, object, primary, merged).map_err(HsError::validation)?;
    let portal = &state.portal;
    let record = &portal.records(object)[&survivor];
    let names = vec!["hs_merged_object_ids".to_string()];
    Ok(json_response(
        StatusCode::OK,
        render(portal, object, record, &names, &[]),
    ))
}
