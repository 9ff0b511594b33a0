//! Properties and property groups, owners, and deal pipelines.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as JsonBody;
use serde_json::{json, Value as Json};

use crate::hubspot::objects::{decode_cursor, encode_cursor, parse_flag, parse_limit};
use crate::hubspot::portal::{iso, now_ms, Owner, Pipeline, Portal, PropertyDef, PropertyGroup};
use crate::hubspot::properties::valid_pair;
use crate::hubspot::server::{object_type, parse_body, query_pairs, HsError, HsResult, Shared};

fn ok(body: Json) -> Response {
    (StatusCode::OK, JsonBody(body)).into_response()
}

fn render_property(portal: &Portal, def: &PropertyDef) -> Json {
    let options: Vec<Json> = if def.name == "hubspot_owner_id" {
        portal
            .owners
            .iter()
            .filter(|owner| !owner.archived)
            .enumerate()
            .map(|(order, owner)| {
                json!({"label": format!("{} {}", owner.first_name, owner.last_name), "value": owner.id.to_string(), "displayOrder": order, "hidden": false})
            })
            .collect()
    } else {
        def.options
            .iter()
            .enumerate()
            .map(|(order, (label, value))| json!({"label": label, "value": value, "displayOrder": order, "hidden": false}))
            .collect()
    };
    let mut body = json!({
        "name": def.name,
        "label": def.label,
        "type": def.kind,
        "fieldType": def.field_type,
        "groupName": def.group,
        "description": def.description,
        "options": options,
        "displayOrder": -1,
        "calculated": def.calculated,
        "externalOptions": def.name == "hubspot_owner_id",
        "hasUniqueValue": false,
        "hidden": false,
        "formField": false,
        "modificationMetadata": {
            "archivable": !def.hubspot_defined,
            "readOnlyDefinition": def.hubspot_defined,
            "readOnlyValue": def.read_only_value,
        },
        "createdAt": iso(def.created_at),
        "updatedAt": iso(def.created_at),
        "archived": false,
    });
    if def.hubspot_defined {
        body["hubspotDefined"] = Json::Bool(true);
    }
    body
}

/// `GET /crm/v3/properties/{object}`. With `archived=true` the list is empty, because the
/// sandbox never archives a property.
pub(crate) async fn list_properties(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let object = object_type(&object)?;
    let mut archived = false;
    for (name, value) in query_pairs(query.as_deref()) {
        if name == "archived" {
            archived = parse_flag("archived", &value)?;
        }
    }
    let state = shared.lock();
    let portal = &state.portal;
    let results: Vec<Json> = if archived {
        Vec::new()
    } else {
        portal.properties[object.index()]
            .values()
            .map(|def| render_property(portal, def))
            .collect()
    };
    Ok(ok(json!({"results": results})))
}

/// `GET /crm/v3/properties/{object}/{name}`.
pub(crate) async fn get_property(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, name)): Path<(String, String)>,
) -> HsResult {
    let object = object_type(&object)?;
    let state = shared.lock();
    let portal = &state.portal;
    let def = portal.property(object, &name).ok_or_else(|| {
        HsError::not_found(format!(
            "Property {name} does not exist on {}",
            object.name()
        ))
    })?;
    Ok(ok(render_property(portal, def)))
}

fn required_text(body: &Json, field: &str) -> Result<String, HsError> {
    body.get(field)
        .and_then(Json::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            HsError::validation(format!(
                "{field} is required and must be a non-empty string"
            ))
        })
}

fn conflict(message: String) -> HsError {
    HsError::new(StatusCode::CONFLICT, "CONFLICT", message)
}

/// `POST /crm/v3/properties/{object}`: 201 with the property, 409 when the name exists.
pub(crate) async fn create_property(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let name = required_text(&body, "name")?;
    let label = required_text(&body, "label")?;
    let kind = required_text(&body, "type")?;
    let field_type = required_text(&body, "fieldType")?;
    let group = required_text(&body, "groupName")?;
    let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(HsError::validation(format!(
            "property name {name} is invalid; use lower-case letters, digits and underscores, starting with a letter"
        )));
    }
    if !valid_pair(&kind, &field_type) {
        return Err(HsError::validation(format!(
            "type {kind} cannot have fieldType {field_type}; for example number/number, string/text, string/textarea, enumeration/select, datetime/date, bool/booleancheckbox"
        )));
    }
    let mut options = Vec::new();
    if let Some(list) = body.get("options").and_then(Json::as_array) {
        for option in list {
            let label = option.get("label").and_then(Json::as_str);
            let value = option.get("value").and_then(Json::as_str);
            match (label, value) {
                (Some(label), Some(value)) => options.push((label.to_string(), value.to_string())),
                _ => {
                    return Err(HsError::validation(format!(
                        "option {option} needs a label and a value"
                    )))
                }
            }
        }
    }
    if kind == "enumeration" && options.is_empty() {
        return Err(HsError::validation(format!(
            "enumeration property {name} needs options, each with a label and a value"
        )));
    }
    let mut state = shared.lock();
    let portal = &mut state.portal;
    if portal.property(object, &name).is_some() {
        return Err(conflict(format!(
            "A property named '{name}' already exists on {}",
            object.name()
        )));
    }
    if !portal.groups[object.index()]
        .iter()
        .any(|g| g.name == group)
    {
        return Err(HsError::validation(format!(
            "property group {group} does not exist on {}; create it with POST /crm/v3/properties/{}/groups",
            object.name(),
            object.name()
        )));
    }
    let def = PropertyDef {
        name: name.clone(),
        label,
        kind,
        field_type,
        group,
        description: body
            .get("description")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        options,
        hubspot_defined: false,
        read_only_value: false,
        calculated: false,
        created_at: now_ms(),
    };
    let rendered = render_property(portal, &def);
    portal.properties[object.index()].insert(name, def);
    Ok((StatusCode::CREATED, JsonBody(rendered)).into_response())
}

fn render_group(group: &PropertyGroup) -> Json {
    json!({"name": group.name, "label": group.label, "displayOrder": group.display_order, "archived": false})
}

/// `GET /crm/v3/properties/{object}/groups`.
pub(crate) async fn list_groups(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
) -> HsResult {
    let object = object_type(&object)?;
    let state = shared.lock();
    let results: Vec<Json> = state.portal.groups[object.index()]
        .iter()
        .map(render_group)
        .collect();
    Ok(ok(json!({"results": results})))
}

/// `POST /crm/v3/properties/{object}/groups`: 201, or 409 when the name exists.
pub(crate) async fn create_group(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> HsResult {
    let object = object_type(&object)?;
    let body = parse_body(&body)?;
    let name = required_text(&body, "name")?;
    let label = required_text(&body, "label")?;
    let display_order = body
        .get("displayOrder")
        .and_then(Json::as_i64)
        .unwrap_or(-1);
    let mut state = shared.lock();
    let groups = &mut state.portal.groups[object.index()];
    if groups.iter().any(|g| g.name == name) {
        return Err(conflict(format!(
            "A property group named '{name}' already exists on {}",
            object.name()
        )));
    }
    let group = PropertyGroup {
        name,
        label,
        display_order,
    };
    let rendered = render_group(&group);
    groups.push(group);
    Ok((StatusCode::CREATED, JsonBody(rendered)).into_response())
}

fn render_owner(owner: &Owner) -> Json {
    json!({
        "id": owner.id.to_string(),
        "email": owner.email,
        "firstName": owner.first_name,
        "lastName": owner.last_name,
        "userId": if owner.archived { Json::Null } else { json!(owner.user_id) },
        "userIdIncludingInactive": owner.user_id,
        "type": "PERSON",
        "createdAt": iso(owner.created_at),
        "updatedAt": iso(owner.updated_at),
        "archived": owner.archived,
        "teams": [],
    })
}

/// `GET /crm/v3/owners` with `limit` (default 100, at most 500), `after`, `archived` and
/// `email`. `archived=true` returns only archived owners.
pub(crate) async fn list_owners(
    AxumState(shared): AxumState<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let pairs = query_pairs(query.as_deref());
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = parse_limit(param("limit"), 100, 500)?;
    let start = param("after").map(decode_cursor).transpose()?.unwrap_or(0) as usize;
    let archived = param("archived")
        .map(|v| parse_flag("archived", v))
        .transpose()?
        .unwrap_or(false);
    let email = param("email");
    let state = shared.lock();
    let matching: Vec<&Owner> = state
        .portal
        .owners
        .iter()
        .filter(|owner| owner.archived == archived)
        .filter(|owner| email.is_none_or(|email| owner.email.eq_ignore_ascii_case(email)))
        .collect();
    let end = (start + limit).min(matching.len());
    let results: Vec<Json> = matching
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .map(|o| render_owner(o))
        .collect();
    let mut body = json!({"results": results});
    if end < matching.len() {
        body["paging"] = json!({"next": {"after": encode_cursor(end as u64)}});
    }
    Ok(ok(body))
}

/// `GET /crm/v3/owners/{id}`; an archived owner needs `archived=true`.
pub(crate) async fn get_owner(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> HsResult {
    let mut archived = false;
    for (name, value) in query_pairs(query.as_deref()) {
        if name == "archived" {
            archived = parse_flag("archived", &value)?;
        }
    }
    let state = shared.lock();
    let owner = state
        .portal
        .owners
        .iter()
        .find(|owner| owner.id.to_string() == id && owner.archived == archived)
        .ok_or_else(|| HsError::not_found(format!("owner {id} not found (archived={archived})")))?;
    Ok(ok(render_owner(owner)))
}

fn render_pipeline(pipeline: &Pipeline) -> Json {
    let stages: Vec<Json> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(order, stage)| {
            json!({
                "id": stage.id,
                "label": stage.label,
                "displayOrder": order,
                "metadata": {"isClosed": stage.is_closed.to_string(), "probability": format!("{:.1}", stage.probability)},
                "archived": false,
                "createdAt": iso(pipeline.created_at),
                "updatedAt": iso(pipeline.created_at),
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            })
        })
        .collect();
    json!({
        "id": pipeline.id,
        "label": pipeline.label,
        "displayOrder": 0,
        "archived": false,
        "createdAt": iso(pipeline.created_at),
        "updatedAt": iso(pipeline.created_at),
        "stages": stages,
    })
}

fn deal_pipelines(object: &str) -> Result<(), HsError> {
    if object == "deals" || object == "0-3" {
        Ok(())
    } else {
        Err(HsError::not_found(format!(
            "the sandbox has pipelines for deals only, not {object}"
        )))
    }
}

/// `GET /crm/v3/pipelines/deals`.
pub(crate) async fn list_pipelines(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(object): Path<String>,
) -> HsResult {
    deal_pipelines(&object)?;
    let state = shared.lock();
    let results: Vec<Json> = state.portal.pipelines.iter().map(render_pipeline).collect();
    Ok(ok(json!({"results": results})))
}

fn find_pipeline<'a>(portal: &'a Portal, id: &str) -> Result<&'a Pipeline, HsError> {
    portal
        .pipelines
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| HsError::not_found(format!("pipeline {id} does not exist")))
}

/// `GET /crm/v3/pipelines/deals/{id}`.
pub(crate) async fn get_pipeline(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
) -> HsResult {
    deal_pipelines(&object)?;
    let state = shared.lock();
    Ok(ok(render_pipeline(find_pipeline(&state.portal, &id)?)))
}

/// `GET /crm/v3/pipelines/deals/{id}/stages`.
pub(crate) async fn list_stages(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
) -> HsResult {
    deal_pipelines(&object)?;
    let state = shared.lock();
    let pipeline = render_pipeline(find_pipeline(&state.portal, &id)?);
    Ok(ok(json!({"results": pipeline["stages"]})))
}
