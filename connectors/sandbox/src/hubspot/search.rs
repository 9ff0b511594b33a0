//! `POST /crm/v3/objects/{object}/search`: filter groups, one sort, offset paging and the
//! 10,000-result cap.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json as JsonBody;
use serde_json::{json, Value as Json};

use crate::hubspot::objects::{render, selection};
use crate::hubspot::portal::{parse_time, ObjectType, Portal, Record};
use crate::hubspot::server::{object_type, parse_body, HsError, HsResult, Shared};

const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 10;
const MAX_FILTERS: usize = 25;
const MAX_LIMIT: usize = 200;
/// Results one query can page through; an `after` at or past it is rejected.
pub const RESULT_CAP: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text {
            "EQ" => Operator::Eq,
            "NEQ" => Operator::Neq,
            "LT" => Operator::Lt,
            "LTE" => Operator::Lte,
            "GT" => Operator::Gt,
            "GTE" => Operator::Gte,
            "BETWEEN" => Operator::Between,
            "IN" => Operator::In,
            "NOT_IN" => Operator::NotIn,
            "HAS_PROPERTY" => Operator::HasProperty,
            "NOT_HAS_PROPERTY" => Operator::NotHasProperty,
            "CONTAINS_TOKEN" => Operator::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Operator::NotContainsToken,
            _ => return None,
        })
    }
}

/// The comparison rule of a property's values.
#[derive(Clone, Copy, PartialEq)]
enum Comparison {
    Number,
    Time,
    Text,
}

/// A comparable property value.
#[derive(Clone, PartialEq, PartialOrd, Debug)]
enum Key {
    Number(f64),
    Text(String),
}

fn key(comparison: Comparison, text: &str) -> Option<Key> {
    match comparison {
        Comparison::Number => text.trim().parse::<f64>().ok().map(Key::Number),
        Comparison::Time => parse_time(text).map(|ms| Key::Number(ms as f64)),
        Comparison::Text => Some(Key::Text(text.to_lowercase())),
    }
}

struct Filter {
    property: String,
    comparison: Comparison,
    operator: Operator,
    values: Vec<Key>,
    tokens: Vec<String>,
}

fn comparison_of(
    portal: &Portal,
    object: ObjectType,
    property: &str,
) -> Result<Comparison, HsError> {
    let def = portal.property(object, property).ok_or_else(|| {
        HsError::validation(format!(
            "There was a problem with the request: property {property} does not exist on {}; check the name with GET /crm/v3/properties/{}",
            object.name(),
            object.name()
        ))
    })?;
    Ok(match def.kind.as_str() {
        "number" => Comparison::Number,
        "datetime" | "date" => Comparison::Time,
        _ => Comparison::Text,
    })
}

fn value_text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filter(portal: &Portal, object: ObjectType, raw: &Json) -> Result<Filter, HsError> {
    let property = raw
        .get("propertyName")
        .and_then(Json::as_str)
        .ok_or_else(|| HsError::validation(format!("filter {raw} needs a propertyName")))?
        .to_string();
    let operator_text = raw.get("operator").and_then(Json::as_str).unwrap_or("EQ");
    let operator = Operator::parse(operator_text).ok_or_else(|| {
        HsError::validation(format!(
            "operator {operator_text} is not supported; use EQ, NEQ, LT, LTE, GT, GTE, BETWEEN, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN or NOT_CONTAINS_TOKEN"
        ))
    })?;
    let comparison = comparison_of(portal, object, &property)?;
    let convert = |text: String| {
        key(comparison, &text).ok_or_else(|| {
            HsError::validation(format!(
                "filter value {text} of {property} is invalid; send a number, or for dates epoch milliseconds"
            ))
        })
    };
    let single = |field: &str| -> Result<String, HsError> {
        raw.get(field).and_then(value_text).ok_or_else(|| {
            HsError::validation(format!(
                "operator {operator_text} on {property} needs a {field}"
            ))
        })
    };
    let mut tokens = Vec::new();
    let values = match operator {
        Operator::HasProperty | Operator::NotHasProperty => Vec::new(),
        Operator::Between => vec![convert(single("value")?)?, convert(single("highValue")?)?],
        Operator::In | Operator::NotIn => {
            let list = raw.get("values").and_then(Json::as_array).ok_or_else(|| {
                HsError::validation(format!(
                    "operator {operator_text} on {property} needs a values array"
                ))
            })?;
            list.iter()
                .map(|v| {
                    value_text(v)
                        .ok_or_else(|| HsError::validation(format!("{v} is not a valid value")))
                })
                .map(|text| text.and_then(convert))
                .collect::<Result<_, _>>()?
        }
        Operator::ContainsToken | Operator::NotContainsToken => {
            tokens.push(single("value")?.to_lowercase());
            Vec::new()
        }
        _ => vec![convert(single("value")?)?],
    };
    Ok(Filter {
        property,
        comparison,
        operator,
        values,
        tokens,
    })
}

fn matches_token(value: &str, token: &str) -> bool {
    let value = value.to_lowercase();
    match token.strip_prefix('*').or_else(|| token.strip_suffix('*')) {
        Some(part) if token.starts_with('*') => value.split_whitespace().any(|w| w.ends_with(part)),
        Some(part) => value.split_whitespace().any(|w| w.starts_with(part)),
        None => {
            value
                .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
                .any(|w| w == token)
                || value == token
        }
    }
}

fn matches(filter: &Filter, record: &Record) -> bool {
    let raw = record
        .properties
        .get(&filter.property)
        .filter(|v| !v.is_empty());
    match filter.operator {
        Operator::HasProperty => return raw.is_some(),
        Operator::NotHasProperty => return raw.is_none(),
        _ => {}
    }
    // NOTE: NEQ, NOT_IN and NOT_CONTAINS_TOKEN match records without a value here;
    // HubSpot does not document how it treats empty values for these operators.
    let Some(raw) = raw else {
        return matches!(
            filter.operator,
            Operator::Neq | Operator::NotIn | Operator::NotContainsToken
        );
    };
    if let Some(token) = filter.tokens.first() {
        let found = matches_token(raw, token);
        return (filter.operator == Operator::ContainsToken) == found;
    }
    let Some(value) = key(filter.comparison, raw) else {
        return false;
    };
    let first = &filter.values[0];
    match filter.operator {
        Operator::Eq => value == *first,
        Operator::Neq => value != *first,
        Operator::Lt => value < *first,
        Operator::Lte => value <= *first,
        Operator::Gt => value > *first,
        Operator::Gte => value >= *first,
        Operator::Between => value >= *first && value <= filter.values[1],
        Operator::In => filter.values.contains(&value),
        Operator::NotIn => !filter.values.contains(&value),
        _ => false,
    }
}

/// Parses the first sort into (property, descending).
fn parse_sort(body: &Json) -> Result<Option<(String, bool)>, HsError> {
    let Some(sorts) = body.get("sorts").and_then(Json::as_array) else {
        return Ok(None);
    };
    // NOTE: only the first sort is honoured; HubSpot is reported to behave the same.
    let Some(sort) = sorts.first() else {
        return Ok(None);
    };
    match sort {
        Json::String(text) => Ok(Some(match text.strip_prefix('-') {
            Some(name) => (name.to_string(), true),
            None => (text.clone(), false),
        })),
        Json::Object(map) => {
            let name = map
                .get("propertyName")
                .and_then(Json::as_str)
                .ok_or_else(|| HsError::validation(format!("sort {sort} needs a propertyName")))?;
            let descending = match map.get("direction").and_then(Json::as_str) {
                None | Some("ASCENDING") => false,
                Some("DESCENDING") => true,
                Some(other) => {
                    return Err(HsError::validation(format!(
                        "sort direction {other} is invalid; use ASCENDING or DESCENDING"
                    )))
                }
            };
            Ok(Some((name.to_string(), descending)))
        }
        other => Err(HsError::validation(format!("sort {other} is invalid"))),
    }
}

/// `POST /crm/v3/objects/{object}/search`.
pub(crate) async fn search(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let limit = match body.get("limit") {
        None | Some(Json::Null) => 10,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                return Err(HsError::validation(format!(
                    "limit {value} is invalid; use a whole number from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let offset = match body.get("after") {
        None | Some(Json::Null) => 0,
        Some(value) => value_text(value)
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or_else(|| {
                HsError::validation(format!(
                    "after {value} is invalid; pass paging.next.after unchanged"
                ))
            })?,
    };
    if offset >= RESULT_CAP {
        return Err(HsError::validation(format!(
            "after {offset} is past the search limit: a search returns at most {RESULT_CAP} results; narrow the filters, for example with GTE on the last modified date seen"
        )));
    }
    let groups = body
        .get("filterGroups")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if groups.len() > MAX_GROUPS {
        return Err(HsError::validation(format!(
            "{} filter groups were sent; a search allows at most {MAX_GROUPS}",
            groups.len()
        )));
    }
    let mut total_filters = 0;
    let state = shared.lock();
    let portal = &state.portal;
    let mut parsed: Vec<Vec<Filter>> = Vec::new();
    for group in &groups {
        let filters = group
            .get("filters")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if filters.len() > MAX_FILTERS_PER_GROUP {
            return Err(HsError::validation(format!(
                "a filter group has {} filters; a group allows at most {MAX_FILTERS_PER_GROUP}",
                filters.len()
            )));
        }
        total_filters += filters.len();
        parsed.push(
            filters
                .iter()
                .map(|f| parse_filter(portal, object, f))
                .collect::<Result<_, _>>()?,
        );
    }
    if total_filters > MAX_FILTERS {
        return Err(HsError::validation(format!(
            "{total_filters} filters were sent; a search allows at most {MAX_FILTERS} in all groups"
        )));
    }
    let sort = parse_sort(&body)?;
    let sort_comparison = match &sort {
        Some((name, _)) => Some(comparison_of(portal, object, name)?),
        None => None,
    };
    let requested: Vec<String> = body
        .get("properties")
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let properties = selection(object, requested);

    // NOTE: writes show in search at once, while HubSpot indexes them with a delay of a few
    // seconds, so a client's overlap window is not exercised here.
    let mut hits: Vec<&Record> = portal
        .records(object)
        .values()
        .filter(|record| record.archived_at.is_none())
        .filter(|record| {
            parsed.is_empty()
                || parsed
                    .iter()
                    .any(|group| group.iter().all(|f| matches(f, record)))
        })
        .collect();
    if let (Some((name, descending)), Some(comparison)) = (&sort, sort_comparison) {
        let mut keyed: Vec<(Option<Key>, &Record)> = hits
            .into_iter()
            .map(|record| {
                (
                    record.properties.get(name).and_then(|v| key(comparison, v)),
                    record,
                )
            })
            .collect();
        keyed.sort_by(|(a, ra), (b, rb)| {
            let order = match (a, b) {
                (Some(a), Some(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            let order = if *descending { order.reverse() } else { order };
            order.then(ra.id.cmp(&rb.id))
        });
        hits = keyed.into_iter().map(|(_, record)| record).collect();
    }
    let total = hits.len();
    let end = (offset + limit).min(total);
    let results: Vec<Json> = hits
        .get(offset..end)
        .unwrap_or(&[])
        .iter()
        .map(|record| render(portal, object, record, &properties, &[]))
        .collect();
    let mut body = json!({"total": total, "results": results});
    if end < total {
        body["paging"] = json!({"next": {"after": end.to_string()}});
    }
    Ok((StatusCode::OK, JsonBody(body)).into_response())
}
