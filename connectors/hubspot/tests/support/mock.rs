//! A small scripted HubSpot portal on loopback for connector tests. It serves OAuth tokens
//! that expire on demand, properties, pipelines, owners, and search with the 10,000-result
//! cap. It also lists archived records, pages v4 association batch reads per id, handles
//! batch reads and updates with 207 failures, and returns injected 429s.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};
use url::Url;

/// Results past this offset of one search fail, as in HubSpot.
pub const SEARCH_CAP: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Object {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub archived: bool,
}

/// One association: target id and its (type id, label) pairs.
#[derive(Clone, Debug)]
pub struct Link {
    pub to: u64,
    pub types: Vec<(i64, Option<String>)>,
}

/// A scripted reply for the next request whose path starts with a prefix. A `body` that is a
/// JSON string is sent as that text with `Content-Type: text/html`, as a proxy page would be.
#[derive(Clone, Debug)]
pub struct Injected {
    pub path_prefix: String,
    pub status: u16,
    pub body: Json,
    pub retry_after: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
    pub at: std::time::Instant,
}

#[derive(Default)]
pub struct State {
    pub objects: HashMap<String, Vec<Object>>,
    /// Properties per object type, as the properties API lists them.
    pub properties: HashMap<String, Vec<Json>>,
    pub groups: HashMap<String, Vec<String>>,
    pub pipelines: Json,
    pub owners: Vec<Json>,
    /// Associations by (from type, to type) and source id.
    pub links: HashMap<(String, String), BTreeMap<u64, Vec<Link>>>,
    /// Targets per page of an association batch read.
    pub association_page: usize,
    /// Ids whose updates fail with OBJECT_NOT_FOUND in a 207.
    pub missing_ids: Vec<u64>,
    /// Ids whose updates fail the whole batch with a 400 VALIDATION_ERROR.
    pub invalid_ids: Vec<u64>,
    pub injected: VecDeque<Injected>,
    /// Valid access tokens. A test adds its private-app token here.
    pub valid_tokens: Vec<String>,
    pub issued_tokens: u64,
    /// Expire every access token once this many API calls were served with it.
    pub expire_after_calls: Option<u64>,
    pub calls_with_current_token: u64,
    pub seen: Vec<Seen>,
    pub daily_used: u64,
    /// Maximum results per search page, whatever the request's `limit`, below the usual 200.
    pub search_page_cap: Option<usize>,
    /// Number of searches without `after` that get an empty page whose `paging.next.after`
    /// leads to the results. Later searches get their results at once.
    pub empty_first_pages: usize,
}

#[derive(Clone)]
pub struct MockPortal {
    pub url: Url,
    pub state: Arc<Mutex<State>>,
}

fn reply(status: u16, body: Json) -> (u16, Json, Option<String>) {
    (status, body, None)
}

fn error(status: u16, category: &str, message: &str) -> (u16, Json, Option<String>) {
    reply(
        status,
        json!({"status": "error", "message": message, "correlationId": "00000000-0000-4000-8000-000000000000", "category": category}),
    )
}

/// Returns the sortable number of a value: an id, a number, or a datetime in epoch ms.
fn sort_key(text: &str) -> Option<f64> {
    if let Ok(number) = text.parse::<f64>() {
        return Some(number);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc).timestamp_millis() as f64)
}

fn property_of(object: &Object, name: &str) -> Option<String> {
    if name == "hs_object_id" {
        return Some(object.id.to_string());
    }
    object.properties.get(name).cloned()
}

fn object_json(object: &Object, requested: &[String]) -> Json {
    let mut properties = serde_json::Map::new();
    for name in requested {
        properties.insert(
            name.clone(),
            property_of(object, name).map_or(Json::Null, Json::String),
        );
    }
    properties.insert("hs_object_id".into(), Json::String(object.id.to_string()));
    let modified = object
        .properties
        .get("lastmodifieddate")
        .or(object.properties.get("hs_lastmodifieddate"))
        .cloned()
        .unwrap_or_else(|| "2024-01-01T00:00:00Z".to_string());
    let mut value = json!({
        "id": object.id.to_string(),
        "properties": properties,
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": modified,
        "archived": object.archived,
    });
    if object.archived {
        value["archivedAt"] = Json::String(modified);
    }
    value
}

fn matches(object: &Object, filter: &Json) -> bool {
    let name = filter["propertyName"].as_str().unwrap_or_default();
    let operator = filter["operator"].as_str().unwrap_or_default();
    let actual = property_of(object, name);
    if operator == "HAS_PROPERTY" {
        return actual.is_some_and(|value| !value.is_empty());
    }
    let Some(actual) = actual.as_deref().and_then(sort_key) else {
        return false;
    };
    let Some(wanted) = filter["value"].as_str().and_then(sort_key) else {
        return false;
    };
    match operator {
        "EQ" => actual == wanted,
        "GT" => actual > wanted,
        "GTE" => actual >= wanted,
        "LT" => actual < wanted,
        "LTE" => actual <= wanted,
        _ => false,
    }
}

impl State {
    fn search(&mut self, object_type: &str, body: &Json) -> (u16, Json, Option<String>) {
        if self.empty_first_pages > 0 && body.get("after").is_none() {
            self.empty_first_pages -= 1;
            let total = self.objects.get(object_type).map_or(0, Vec::len);
            return reply(
                200,
                json!({"total": total, "results": [], "paging": {"next": {"after": "0"}}}),
            );
        }
        let objects = self.objects.get(object_type).cloned().unwrap_or_default();
        let filters: Vec<Json> = body["filterGroups"][0]["filters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut hits: Vec<Object> = objects
            .into_iter()
            .filter(|object| !object.archived && filters.iter().all(|f| matches(object, f)))
            .collect();
        let sort = body["sorts"][0]["propertyName"]
            .as_str()
            .unwrap_or("hs_object_id")
            .to_string();
        // Ties keep a scrambled order, as a search index may return them.
        hits.sort_by(|a, b| {
            let x = property_of(a, &sort)
                .as_deref()
                .and_then(sort_key)
                .unwrap_or(0.0);
            let y = property_of(b, &sort)
                .as_deref()
                .and_then(sort_key)
                .unwrap_or(0.0);
            x.total_cmp(&y)
                .then((a.id % 7).cmp(&(b.id % 7)))
                .then(b.id.cmp(&a.id))
        });
        let limit = body["limit"].as_u64().unwrap_or(10).min(200) as usize;
        let limit = self.search_page_cap.map_or(limit, |cap| limit.min(cap));
        let offset: usize = body["after"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        if offset + limit > SEARCH_CAP {
            return error(
                400,
                "VALIDATION_ERROR",
                "paging past 10000 results is not allowed",
            );
        }
        let requested: Vec<String> = body["properties"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let page: Vec<Json> = hits
            .iter()
            .skip(offset)
            .take(limit)
            .map(|object| object_json(object, &requested))
            .collect();
        let mut response = json!({"total": hits.len(), "results": page});
        if offset + limit < hits.len() {
            response["paging"] = json!({"next": {"after": (offset + limit).to_string()}});
        }
        reply(200, response)
    }

    fn list(
        &self,
        object_type: &str,
        query: &HashMap<String, String>,
    ) -> (u16, Json, Option<String>) {
        let archived = query.get("archived").map(String::as_str) == Some("true");
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10);
        let offset: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
        let requested: Vec<String> = query
            .get("properties")
            .map(|names| names.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut objects: Vec<Object> = self
            .objects
            .get(object_type)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|object| object.archived == archived)
            .collect();
        objects.sort_by_key(|object| object.id);
        let page: Vec<Json> = objects
            .iter()
            .skip(offset)
            .take(limit)
            .map(|object| object_json(object, &requested))
            .collect();
        let mut response = json!({"results": page});
        if offset + limit < objects.len() {
            response["paging"] = json!({"next": {"after": (offset + limit).to_string()}});
        }
        reply(200, response)
    }

    fn associations(&self, from: &str, to: &str, body: &Json) -> (u16, Json, Option<String>) {
        let links = self.links.get(&(from.to_string(), to.to_string()));
        let page_size = self.association_page.max(1);
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in body["inputs"].as_array().cloned().unwrap_or_default() {
            let id: u64 = input["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or(0);
            let offset: usize = input["after"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let Some(targets) = links.and_then(|links| links.get(&id)) else {
                errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": "no associations", "context": {"fromObjectId": [id.to_string()]}}));
                continue;
            };
            let to_json: Vec<Json> = targets
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|link| {
                    json!({"toObjectId": link.to, "associationTypes": link.types.iter().map(|(type_id, label)| json!({
                        "category": if label.is_some() { "USER_DEFINED" } else { "HUBSPOT_DEFINED" },
                        "typeId": type_id, "label": label})).collect::<Vec<_>>()})
                })
                .collect();
            let mut result = json!({"from": {"id": id.to_string()}, "to": to_json});
            if offset + page_size < targets.len() {
                result["paging"] = json!({"next": {"after": (offset + page_size).to_string()}});
            }
            results.push(result);
        }
        let status = if errors.is_empty() { 200 } else { 207 };
        reply(
            status,
            json!({"status": "COMPLETE", "results": results, "errors": errors,
            "startedAt": "2024-05-02T08:00:00.000Z", "completedAt": "2024-05-02T08:00:00.090Z"}),
        )
    }

    fn property(&self, object_type: &str, name: &str) -> Option<Json> {
        self.properties
            .get(object_type)?
            .iter()
            .find(|property| property["name"] == name)
            .cloned()
    }

    /// Checks a written value the way HubSpot validates it.
    fn validate(&self, object_type: &str, name: &str, value: &str) -> Result<(), String> {
        let property = self
            .property(object_type, name)
            .ok_or_else(|| format!("Property {name} does not exist"))?;
        if value.is_empty() {
            return Ok(());
        }
        match property["type"].as_str().unwrap_or_default() {
            "number" => value
                .parse::<f64>()
                .map(|_| ())
                .map_err(|_| format!("{value} is not a number")),
            "bool" => matches!(value, "true" | "false")
                .then_some(())
                .ok_or(format!("{value} is not a boolean")),
            "enumeration" => property["options"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|option| option["value"] == value)
                .then_some(())
                .ok_or(format!("{value} was not one of the allowed options")),
            "date" => value
                .parse::<i64>()
                .ok()
                .filter(|ms| ms % 86_400_000 == 0)
                .map(|_| ())
                .ok_or(format!("{value} is not midnight UTC in epoch milliseconds")),
            "datetime" => sort_key(value)
                .map(|_| ())
                .ok_or(format!("{value} is not a datetime")),
            _ => Ok(()),
        }
    }

    fn batch_update(&mut self, object_type: &str, body: &Json) -> (u16, Json, Option<String>) {
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        if inputs.len() > 100 {
            return error(400, "VALIDATION_ERROR", "at most 100 inputs");
        }
        let mut ids = Vec::new();
        for input in &inputs {
            let id: u64 = input["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or(0);
            if ids.contains(&id) {
                return error(
                    400,
                    "VALIDATION_ERROR",
                    &format!("Duplicate id {id} in batch"),
                );
            }
            ids.push(id);
            if self.invalid_ids.contains(&id) {
                return error(
                    400,
                    "VALIDATION_ERROR",
                    &format!("Property values were not valid for {id}"),
                );
            }
            for (name, value) in input["properties"].as_object().cloned().unwrap_or_default() {
                if let Err(message) =
                    self.validate(object_type, &name, value.as_str().unwrap_or_default())
                {
                    return error(400, "VALIDATION_ERROR", &message);
                }
            }
        }
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for (input, id) in inputs.iter().zip(ids) {
            let Some(object) = self
                .objects
                .get_mut(object_type)
                .and_then(|objects| objects.iter_mut().find(|o| o.id == id && !o.archived))
                .filter(|_| !self.missing_ids.contains(&id))
            else {
                missing.push(id.to_string());
                continue;
            };
            for (name, value) in input["properties"].as_object().cloned().unwrap_or_default() {
                object
                    .properties
                    .insert(name, value.as_str().unwrap_or_default().to_string());
            }
            results.push(
                json!({"id": id.to_string(), "properties": {}, "createdAt": "2024-01-01T00:00:00Z",
                "updatedAt": "2024-05-02T08:00:00Z", "archived": false}),
            );
        }
        let mut response = json!({"status": "COMPLETE", "results": results,
            "startedAt": "2024-05-02T08:00:00.000Z", "completedAt": "2024-05-02T08:00:00.250Z"});
        if missing.is_empty() {
            return reply(200, response);
        }
        response["numErrors"] = json!(1);
        response["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist.",
            "context": {"ids": missing}, "errors": [], "links": {}}]);
        reply(207, response)
    }

    fn batch_read(&self, object_type: &str, body: &Json) -> (u16, Json, Option<String>) {
        let requested: Vec<String> = body["properties"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let objects = self.objects.get(object_type).cloned().unwrap_or_default();
        let results: Vec<Json> = body["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|input| {
                let id: u64 = input["id"].as_str()?.parse().ok()?;
                objects
                    .iter()
                    .find(|o| o.id == id)
                    .map(|o| object_json(o, &requested))
            })
            .collect();
        reply(
            200,
            json!({"status": "COMPLETE", "results": results,
            "startedAt": "2024-05-02T08:00:00.000Z", "completedAt": "2024-05-02T08:00:00.250Z"}),
        )
    }

    fn route(
        &mut self,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        body: &Json,
    ) -> (u16, Json, Option<String>) {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["crm", "v3", "properties", object_type]) => reply(
                200,
                json!({"results": self.properties.get(*object_type).cloned().unwrap_or_default()}),
            ),
            ("GET", ["crm", "v3", "properties", object_type, "groups"]) => {
                let groups: Vec<Json> = self
                    .groups
                    .get(*object_type)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|name| json!({"name": name, "label": name}))
                    .collect();
                reply(200, json!({"results": groups}))
            }
            ("POST", ["crm", "v3", "properties", object_type, "groups"]) => {
                let name = body["name"].as_str().unwrap_or_default().to_string();
                self.groups
                    .entry(object_type.to_string())
                    .or_default()
                    .push(name);
                reply(201, body.clone())
            }
            ("POST", ["crm", "v3", "properties", object_type]) => {
                let name = body["name"].as_str().unwrap_or_default();
                if self.property(object_type, name).is_some() {
                    return error(409, "CONFLICT", "property exists");
                }
                self.properties
                    .entry(object_type.to_string())
                    .or_default()
                    .push(body.clone());
                reply(201, body.clone())
            }
            ("GET", ["crm", "v3", "pipelines", "deals"]) => reply(200, self.pipelines.clone()),
            ("GET", ["crm", "v3", "owners"]) => {
                let archived = query.get("archived").map(String::as_str) == Some("true");
                let owners: Vec<Json> = self
                    .owners
                    .iter()
                    .filter(|o| o["archived"] == archived)
                    .cloned()
                    .collect();
                reply(200, json!({"results": owners}))
            }
            ("POST", ["crm", "v3", "objects", object_type, "search"]) => {
                self.search(object_type, body)
            }
            ("POST", ["crm", "v3", "objects", object_type, "batch", "update"]) => {
                self.batch_update(object_type, body)
            }
            ("POST", ["crm", "v3", "objects", object_type, "batch", "read"]) => {
                self.batch_read(object_type, body)
            }
            ("GET", ["crm", "v3", "objects", object_type]) => self.list(object_type, query),
            ("POST", ["crm", "v4", "associations", from, to, "batch", "read"]) => {
                self.associations(from, to, body)
            }
            _ => error(
                404,
                "OBJECT_NOT_FOUND",
                &format!("no route for {method} {path}"),
            ),
        }
    }
}

impl MockPortal {
    pub async fn start() -> MockPortal {
        let state: Arc<Mutex<State>> = Arc::new(Mutex::new(State {
            association_page: 500,
            ..State::default()
        }));
        let shared = state.clone();
        let app = Router::new().fallback(move |request: Request| {
            let state = shared.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let path = parts.uri.path().to_string();
                let raw_query = parts.uri.query().unwrap_or_default().to_string();
                let query: HashMap<String, String> =
                    url::form_urlencoded::parse(raw_query.as_bytes())
                        .into_owned()
                        .collect();
                let authorization = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut state = state.lock().unwrap();
                let (status, json, retry_after) = if path == "/oauth/v1/token" {
                    let form: HashMap<String, String> =
                        url::form_urlencoded::parse(text.as_bytes())
                            .into_owned()
                            .collect();
                    if form.get("refresh_token").map(String::as_str) != Some("refresh-secret-9") {
                        error(400, "BAD_REFRESH_TOKEN", "missing or unknown refresh token")
                    } else {
                        state.issued_tokens += 1;
                        let token = format!("access-secret-{}", state.issued_tokens);
                        state.valid_tokens = vec![token.clone()];
                        state.calls_with_current_token = 0;
                        reply(
                            200,
                            json!({"token_type": "bearer", "access_token": token,
                            "refresh_token": "refresh-secret-9", "expires_in": 1800}),
                        )
                    }
                } else {
                    let token = authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    if !state.valid_tokens.iter().any(|valid| valid == token) {
                        error(
                            401,
                            "EXPIRED_AUTHENTICATION",
                            "The OAuth token used to make this call expired 1 minute(s) ago.",
                        )
                    } else if let Some(position) = state
                        .injected
                        .iter()
                        .position(|i| path.starts_with(&i.path_prefix))
                    {
                        let injected = state.injected.remove(position).unwrap();
                        (injected.status, injected.body, injected.retry_after)
                    } else {
                        state.calls_with_current_token += 1;
                        if state.expire_after_calls == Some(state.calls_with_current_token)
                            && state.issued_tokens > 0
                        {
                            state.valid_tokens.clear();
                        }
                        state.daily_used += 1;
                        let body: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                        state.route(parts.method.as_str(), &path, &query, &body)
                    }
                };
                state.seen.push(Seen {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    query: raw_query,
                    authorization,
                    body: text,
                    status,
                    at: std::time::Instant::now(),
                });
                let (content_type, body) = match json {
                    Json::String(page) => ("text/html; charset=utf-8", page),
                    other => ("application/json;charset=utf-8", other.to_string()),
                };
                let mut response = Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header(header::CONTENT_TYPE, content_type);
                if !path.ends_with("/search") {
                    response = response
                        .header("X-HubSpot-RateLimit-Daily", "250000")
                        .header(
                            "X-HubSpot-RateLimit-Daily-Remaining",
                            (250_000 - state.daily_used).to_string(),
                        )
                        .header("X-HubSpot-RateLimit-Max", "190")
                        .header("X-HubSpot-RateLimit-Remaining", "180")
                        .header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000");
                }
                if let Some(retry_after) = retry_after {
                    response = response.header("Retry-After", retry_after);
                }
                response.body(Body::from(body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockPortal {
            url: Url::parse(&format!("http://{address}")).unwrap(),
            state,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.with(|state| state.seen.clone())
    }
}

/// Builds a property as the properties API lists it.
pub fn property(
    name: &str,
    property_type: &str,
    field_type: &str,
    options: &[&str],
    read_only: bool,
) -> Json {
    json!({
        "name": name, "label": name, "type": property_type, "fieldType": field_type,
        "groupName": "contactinformation",
        "options": options.iter().enumerate().map(|(order, value)| json!({"label": value.to_uppercase(), "value": value, "displayOrder": order, "hidden": false})).collect::<Vec<_>>(),
        "calculated": false,
        "modificationMetadata": {"archivable": true, "readOnlyDefinition": read_only, "readOnlyValue": read_only},
    })
}

/// Formats a time as HubSpot does, ISO 8601 with milliseconds.
pub fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
