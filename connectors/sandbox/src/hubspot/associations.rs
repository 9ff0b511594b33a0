//! Associations v4: one record's associations with paging, batch read and label definitions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json as JsonBody;
use serde_json::{json, Value as Json};

use crate::hubspot::objects::{
    batch_inputs, batch_response, decode_cursor, encode_cursor, parse_limit,
};
use crate::hubspot::portal::{now_ms, ObjectType, Portal};
use crate::hubspot::server::{object_type, parse_body, query_pairs, HsError, HsResult, Shared};

/// Associations per page of the single-record endpoint, by default and at most.
const DEFAULT_LIMIT: usize = 500;

fn type_json(portal: &Portal, from: ObjectType, to: ObjectType, type_id: u32) -> Json {
    match portal.type_by_id(from, to, type_id) {
        Some(kind) => json!({
            "category": if kind.user_defined { "USER_DEFINED" } else { "HUBSPOT_DEFINED" },
            "typeId": kind.type_id,
            "label": kind.label,
        }),
        None => json!({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}),
    }
}

/// Returns one page of a record's associations to `to`, starting at target id `start`, and
/// the next target id when more remain.
fn page(
    portal: &Portal,
    from: ObjectType,
    id: u64,
    to: ObjectType,
    start: u64,
    limit: usize,
) -> (Vec<Json>, Option<u64>) {
    let all = portal.associations_to((from, id), to);
    let mut rows: Vec<_> = all
        .into_iter()
        .filter(|(target, _)| *target >= start)
        .collect();
    let next = rows.get(limit).map(|(target, _)| *target);
    rows.truncate(limit);
    let results = rows
        .into_iter()
        .map(|(target, types)| {
            let types: Vec<Json> = types
                .iter()
                .map(|t| type_json(portal, from, to, *t))
                .collect();
            // `toObjectId` is a JSON number, as HubSpot sends it.
            json!({"toObjectId": target, "associationTypes": types})
        })
        .collect();
    (results, next)
}

/// `GET /crm/v4/objects/{from}/{id}/associations/{to}` with `limit` (at most 500) and `after`.
pub(crate) async fn list(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((from_name, id, to_name)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let from = object_type(&from_name)?;
    let to = object_type(&to_name)?;
    let pairs = query_pairs(query.as_deref());
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = parse_limit(param("limit"), DEFAULT_LIMIT, DEFAULT_LIMIT)?;
    let start = param("after").map(decode_cursor).transpose()?.unwrap_or(0);
    let state = shared.lock();
    let portal = &state.portal;
    let record_id = id
        .parse::<u64>()
        .ok()
        .map(|n| portal.resolve(from, n))
        .filter(|n| {
            portal
                .records(from)
                .get(n)
                .is_some_and(|r| r.archived_at.is_none())
        })
        .ok_or_else(|| {
            HsError::not_found(format!(
                "{} {id} does not exist or is archived",
                from.singular()
            ))
        })?;
    let (results, next) = page(portal, from, record_id, to, start, limit);
    let mut body = json!({"results": results});
    if let Some(next) = next {
        let after = encode_cursor(next);
        let link = format!(
            "{}/crm/v4/objects/{from_name}/{id}/associations/{to_name}?limit={limit}&after={after}",
            shared.base_url()
        );
        body["paging"] = json!({"next": {"after": after, "link": link}});
    }
    Ok((StatusCode::OK, JsonBody(body)).into_response())
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: ids without associations, or that do
/// not exist, come back as 207 errors listing them in `context.fromObjectId`.
pub(crate) async fn batch_read(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> HsResult {
    let started = now_ms();
    let from = object_type(&from)?;
    let to = object_type(&to)?;
    let body = parse_body(&body)?;
    // NOTE: HubSpot documents no input cap for this endpoint; the sandbox applies the
    // 100-input cap of the object batch endpoints.
    let inputs = batch_inputs(&body)?;
    let state = shared.lock();
    let portal = &state.portal;
    let page_size = shared.options.association_batch_page_size.max(1);
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let id_text = match input.get("id") {
            Some(Json::String(text)) => text.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err(HsError::validation(format!("input {input} needs an id"))),
        };
        let start = match input.get("after").and_then(Json::as_str) {
            Some(after) => decode_cursor(after)?,
            None => 0,
        };
        let record = id_text
            .parse::<u64>()
            .ok()
            .map(|n| portal.resolve(from, n))
            .filter(|n| {
                portal
                    .records(from)
                    .get(n)
                    .is_some_and(|r| r.archived_at.is_none())
            });
        let (to_rows, next) = match record {
            Some(id) => page(portal, from, id, to, start, page_size),
            None => (Vec::new(), None),
        };
        if to_rows.is_empty() {
            // NOTE: the exact category and context key of this error are unconfirmed.
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": format!("No {} is associated with {} {id_text}.", to.singular(), from.singular()),
                "context": {"fromObjectId": [id_text]},
                "errors": [],
                "links": {},
            }));
            continue;
        }
        let mut result = json!({"from": {"id": id_text}, "to": to_rows});
        if let Some(next) = next {
            result["paging"] = json!({"next": {"after": encode_cursor(next)}});
        }
        results.push(result);
    }
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

/// `GET /crm/v4/associations/{from}/{to}/labels`: the association types of one direction.
pub(crate) async fn labels(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((from, to)): Path<(String, String)>,
) -> HsResult {
    let from = object_type(&from)?;
    let to = object_type(&to)?;
    let state = shared.lock();
    let portal = &state.portal;
    let results: Vec<Json> = portal
        .association_types
        .iter()
        .filter(|t| t.from == from && t.to == to)
        .map(|t| type_json(portal, from, to, t.type_id))
        .collect();
    Ok((StatusCode::OK, JsonBody(json!({"results": results}))).into_response())
}
