//! Record writes: sObject Collections create and update, single-record create and update,
//! with the per-field validation Salesforce applies.

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use crate::describe::{is_required, label, nillable};
use crate::schema::FieldType;
use crate::store::{default_value, value_from_json, Store, Value};

/// Maximum number of records in one sObject Collections request.
pub(crate) const MAX_COLLECTION_RECORDS: usize = 200;

/// One per-record save error.
#[derive(Clone, Debug)]
pub(crate) struct SaveError {
    pub status_code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl SaveError {
    fn new(status_code: &str, message: String, fields: Vec<String>) -> SaveError {
        SaveError {
            status_code: status_code.to_string(),
            message,
            fields,
        }
    }

    /// Renders the error as collection results carry it (`statusCode`).
    pub(crate) fn to_result_json(&self) -> Json {
        json!({"statusCode": self.status_code, "message": self.message, "fields": self.fields})
    }

    /// Renders the error as single-record endpoints return it (`errorCode`).
    pub(crate) fn to_rest_json(&self) -> Json {
        json!({"errorCode": self.status_code, "message": self.message, "fields": self.fields})
    }
}

/// A top-level request error: the whole request is rejected with HTTP 400.
#[derive(Debug)]
pub(crate) struct RequestError {
    pub code: &'static str,
    pub message: String,
}

/// Per-id failures injected by tests: id -> (statusCode, message).
pub(crate) type InjectedFailures = HashMap<String, (String, String)>;

/// Finds the row an update targets, or the error Salesforce gives for it.
fn target_row(
    store: &Store,
    table: usize,
    id: &str,
    injected: &InjectedFailures,
) -> Result<usize, SaveError> {
    let t = &store.tables[table];
    let Some(&row) = t.by_id.get(id) else {
        return Err(SaveError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            format!(
                "invalid cross reference id: no {} record has id {id}",
                t.def.name
            ),
            vec![],
        ));
    };
    if t.is_deleted(row) {
        return Err(SaveError::new(
            "ENTITY_IS_DELETED",
            "entity is deleted".into(),
            vec![],
        ));
    }
    if t.def.name == "Lead" {
        if let Some(column) = t.column("IsConverted") {
            if t.rows[row][column] == Value::Bool(true) {
                return Err(SaveError::new(
                    "CANNOT_UPDATE_CONVERTED_LEAD",
                    "cannot reference converted lead".into(),
                    vec![],
                ));
            }
        }
    }
    if let Some((code, message)) = injected.get(id) {
        return Err(SaveError::new(code, message.clone(), vec![]));
    }
    Ok(row)
}

/// Checks a reference value: the id must belong to a target object, exist and not be
/// deleted, and an owner must be an active user.
fn check_reference(store: &Store, table: usize, column: usize, id: &str) -> Option<SaveError> {
    let t = &store.tables[table];
    let field = t.field(column);
    let targets = field
        .relationship
        .as_ref()
        .map(|(_, to)| to.as_slice())
        .unwrap_or(&[]);
    let field_label = label(field.name);
    let fields = vec![field.name.to_string()];
    // The API user exists in the org without being among the seeded User records.
    let api_user = crate::store::with_case_suffix(crate::server::API_USER_ID);
    if targets.contains(&"User") && id == api_user {
        return None;
    }
    let target_table = store
        .table_for_id(id)
        .filter(|&i| targets.contains(&store.tables[i].def.name));
    let Some(target_table) = target_table else {
        return Some(SaveError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("{field_label}: id value of incorrect type: {id}"),
            fields,
        ));
    };
    let target = &store.tables[target_table];
    let Some(&row) = target.by_id.get(id) else {
        return Some(SaveError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            format!("{field_label}: invalid cross reference id: {id}"),
            fields,
        ));
    };
    if target.is_deleted(row) {
        return Some(SaveError::new(
            "ENTITY_IS_DELETED",
            format!("{field_label}: entity is deleted: {id}"),
            fields,
        ));
    }
    if field.name == "OwnerId" {
        let active = target.column("IsActive").map(|c| &target.rows[row][c]);
        if active == Some(&Value::Bool(false)) {
            return Some(SaveError::new(
                "INACTIVE_OWNER_OR_USER",
                format!(
                    "operation performed with inactive user [{id}] as owner of {}",
                    t.def.name.to_ascii_lowercase()
                ),
                fields,
            ));
        }
    }
    None
}

/// Validates one field assignment and returns the value to store.
fn validate_field(
    store: &Store,
    table: usize,
    name: &str,
    json: &Json,
    creating: bool,
) -> Result<(usize, Value), SaveError> {
    let t = &store.tables[table];
    let Some(column) = t.column(name) else {
        return Err(SaveError::new(
            "INVALID_FIELD",
            format!("No such column '{name}' on sobject of type {}", t.def.name),
            vec![name.to_string()],
        ));
    };
    let field = t.field(column);
    let fields = vec![field.name.to_string()];
    let field_label = label(field.name);
    if !field.updateable {
        let verb = if creating { "create" } else { "update" };
        return Err(SaveError::new(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            format!(
                "Unable to {verb} fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                field.name
            ),
            fields,
        ));
    }
    let mut value = value_from_json(field, json).map_err(|expected| {
        SaveError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{field_label}: value not of required type: {json} (expected {expected})"),
            fields.clone(),
        )
    })?;
    if value == Value::Null && field.field_type == FieldType::Boolean {
        // Salesforce stores a cleared checkbox as false.
        value = Value::Bool(false);
    }
    if value == Value::Null && !nillable(&t.def, field) {
        return Err(SaveError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", field.name),
            fields,
        ));
    }
    if let Value::Text(text) = &value {
        let length = text.chars().count();
        if field.length > 0 && length > field.length as usize {
            let preview: String = text.chars().take(40).collect();
            return Err(SaveError::new(
                "STRING_TOO_LONG",
                format!(
                    "{field_label}: data value too large: {preview}... (max length={}, got {length})",
                    field.length
                ),
                fields,
            ));
        }
        if field.restricted
            && !field
                .picklist
                .iter()
                .any(|(v, active)| *active && v == text)
        {
            return Err(SaveError::new(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!("{field_label}: bad value for restricted picklist field: {text}"),
                fields,
            ));
        }
        if field.field_type == FieldType::Email && !looks_like_email(text) {
            return Err(SaveError::new(
                "INVALID_EMAIL_ADDRESS",
                format!("{field_label}: invalid email address: {text}"),
                fields,
            ));
        }
        if field.field_type == FieldType::Reference {
            if let Some(error) = check_reference(store, table, column, text) {
                return Err(error);
            }
        }
    }
    Ok((column, value))
}

fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

/// Validates every field of `fields` except the id and `attributes`, collecting all errors.
fn validate_fields(
    store: &Store,
    table: usize,
    fields: &Map<String, Json>,
    creating: bool,
) -> Result<Vec<(usize, Value)>, Vec<SaveError>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (name, json) in fields {
        if name == "attributes" || (!creating && name.eq_ignore_ascii_case("id")) {
            continue;
        }
        match validate_field(store, table, name, json, creating) {
            Ok(assignment) => values.push(assignment),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Writes validated values to an existing row, rebuilds a derived `Name` and bumps the stamps.
fn apply(store: &mut Store, table: usize, row: usize, values: Vec<(usize, Value)>) {
    let now = store.now();
    let t = &mut store.tables[table];
    for (column, value) in values {
        t.rows[row][column] = value;
    }
    t.refresh_full_name(row);
    t.touch(row, now);
}

/// A record of a collection update that passed validation.
struct PlannedUpdate {
    table: usize,
    row: usize,
    id: String,
    values: Vec<(usize, Value)>,
}

/// A record of a create request that passed validation: the full row, without id or stamps.
struct PlannedCreate {
    table: usize,
    row: Vec<Value>,
}

/// The envelope of an sObject Collections create or update request.
struct CollectionRequest<'a> {
    all_or_none: bool,
    records: &'a [Json],
}

/// Checks the `allOrNone` flag, the `records` array and the 200-record limit.
fn parse_collection(body: &Json) -> Result<CollectionRequest<'_>, RequestError> {
    let Json::Object(request) = body else {
        return Err(RequestError {
            code: "JSON_PARSER_ERROR",
            message: "the request body must be a JSON object with a \"records\" array".into(),
        });
    };
    let all_or_none = match request.get("allOrNone") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            return Err(RequestError {
                code: "JSON_PARSER_ERROR",
                message: format!("allOrNone must be true or false, got {other}"),
            })
        }
    };
    let Some(Json::Array(records)) = request.get("records") else {
        return Err(RequestError {
            code: "JSON_PARSER_ERROR",
            message: "the request body needs a \"records\" array".into(),
        });
    };
    if records.len() > MAX_COLLECTION_RECORDS {
        return Err(RequestError {
            code: "EXCEEDED_ID_LIMIT",
            message: format!(
                "record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call (got {})",
                records.len()
            ),
        });
    }
    Ok(CollectionRequest {
        all_or_none,
        records,
    })
}

/// Parses the `attributes.type` and `id` of one collection record.
fn collection_target(
    store: &Store,
    index: usize,
    record: &Json,
) -> Result<(usize, Option<String>), RequestError> {
    let Json::Object(map) = record else {
        return Err(RequestError {
            code: "JSON_PARSER_ERROR",
            message: format!("records[{index}] must be a JSON object"),
        });
    };
    let object = map
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Json::as_str)
        .ok_or_else(|| RequestError {
            code: "INVALID_TYPE",
            message: format!("records[{index}] has no attributes.type; set it to the object name, such as \"Account\""),
        })?;
    let table = store.table_index(object).ok_or_else(|| RequestError {
        code: "INVALID_TYPE",
        message: format!("records[{index}]: sObject type '{object}' is not supported"),
    })?;
    let id = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("id"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string);
    Ok((table, id))
}

/// Commits the validated records of a collection request in request order and returns one
/// result per record. `commit` writes one planned record and returns its id. With
/// `all_or_none`, one failed record makes every other record fail with
/// `ALL_OR_NONE_OPERATION_ROLLED_BACK`, and nothing is written.
fn commit_collection<P>(
    store: &mut Store,
    all_or_none: bool,
    plans: Vec<Result<P, Vec<SaveError>>>,
    mut commit: impl FnMut(&mut Store, P) -> String,
) -> Json {
    let any_failed = plans.iter().any(Result::is_err);
    let mut results = Vec::with_capacity(plans.len());
    for (index, plan) in plans.into_iter().enumerate() {
        let result = match plan {
            Err(errors) => {
                for error in &errors {
                    tracing::debug!(index, code = %error.status_code, message = %error.message, "collection record failed");
                }
                failure(&errors)
            }
            Ok(_) if all_or_none && any_failed => failure(&[SaveError::new(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header".into(),
                vec![],
            )]),
            Ok(planned) => {
                let id = commit(store, planned);
                json!({"id": id, "success": true, "errors": []})
            }
        };
        results.push(result);
    }
    Json::Array(results)
}

/// Runs a `PATCH /composite/sobjects` request and returns the per-record results in request
/// order. With `allOrNone` any failure leaves every record unchanged.
pub(crate) fn update_collection(
    store: &mut Store,
    body: &Json,
    injected: &InjectedFailures,
) -> Result<Json, RequestError> {
    let request = parse_collection(body)?;
    let mut plans: Vec<Result<PlannedUpdate, Vec<SaveError>>> =
        Vec::with_capacity(request.records.len());
    for (index, record) in request.records.iter().enumerate() {
        let (table, id) = collection_target(store, index, record)?;
        let Some(id) = id else {
            plans.push(Err(vec![SaveError::new(
                "MISSING_ARGUMENT",
                "Id not specified in an update call".into(),
                vec![],
            )]));
            continue;
        };
        let row = match target_row(store, table, &id, injected) {
            Ok(row) => row,
            Err(error) => {
                plans.push(Err(vec![error]));
                continue;
            }
        };
        let fields = record.as_object().cloned().unwrap_or_default();
        plans.push(
            validate_fields(store, table, &fields, false).map(|values| PlannedUpdate {
                table,
                row,
                id,
                values,
            }),
        );
    }
    Ok(commit_collection(
        store,
        request.all_or_none,
        plans,
        |store, update| {
            apply(store, update.table, update.row, update.values);
            update.id
        },
    ))
}

/// Runs a `POST /composite/sobjects` request and returns the per-record results in request
/// order, each success with the new id. A record that carries an `id` fails. With
/// `allOrNone` any failure creates nothing. `default_owner` is as for [`create_record`].
// NOTE: Salesforce processes at most 10 chunks of consecutive same-type records per call;
// the sandbox does not enforce that limit.
pub(crate) fn create_collection(
    store: &mut Store,
    body: &Json,
    default_owner: &str,
) -> Result<Json, RequestError> {
    let request = parse_collection(body)?;
    let mut plans: Vec<Result<PlannedCreate, Vec<SaveError>>> =
        Vec::with_capacity(request.records.len());
    for (index, record) in request.records.iter().enumerate() {
        let (table, _) = collection_target(store, index, record)?;
        let fields = record.as_object().cloned().unwrap_or_default();
        if fields.keys().any(|k| k.eq_ignore_ascii_case("id")) {
            // NOTE: the code and message are those of an Apex insert with an Id; the exact
            // collection error is unverified.
            plans.push(Err(vec![SaveError::new(
                "INVALID_FIELD",
                "cannot specify Id in an insert call".into(),
                vec!["Id".to_string()],
            )]));
            continue;
        }
        plans.push(
            plan_create(store, table, &fields, default_owner)
                .map(|row| PlannedCreate { table, row }),
        );
    }
    Ok(commit_collection(
        store,
        request.all_or_none,
        plans,
        |store, create| insert_created(store, create.table, create.row),
    ))
}

fn failure(errors: &[SaveError]) -> Json {
    let errors: Vec<Json> = errors.iter().map(SaveError::to_result_json).collect();
    json!({"success": false, "errors": errors})
}

/// Creates one record from a `POST /sobjects/{Object}` body and returns its new id.
/// `default_owner` becomes `OwnerId` when the body has none, as the API user owns what it
/// creates.
pub(crate) fn create_record(
    store: &mut Store,
    table: usize,
    body: &Json,
    default_owner: &str,
) -> Result<String, Vec<SaveError>> {
    let Json::Object(fields) = body else {
        return Err(vec![SaveError::new(
            "JSON_PARSER_ERROR",
            "the request body must be a JSON object of field values".into(),
            vec![],
        )]);
    };
    let row = plan_create(store, table, fields, default_owner)?;
    Ok(insert_created(store, table, row))
}

/// Validates the fields of a new record and builds its row with the defaults Salesforce
/// fills in (owner, Task and Lead status, Task priority), without id or stamps.
fn plan_create(
    store: &Store,
    table: usize,
    fields: &Map<String, Json>,
    default_owner: &str,
) -> Result<Vec<Value>, Vec<SaveError>> {
    let values = validate_fields(store, table, fields, true)?;
    check_lead_activity(store, table, &values)?;
    crate::tooling::check_permission_record(store, table, &values)?;
    let t = &store.tables[table];
    let mut row: Vec<Value> = t.def.fields.iter().map(default_value).collect();
    for (column, value) in values {
        row[column] = value;
    }
    let defaults: [(&str, &str); 3] = [
        ("OwnerId", default_owner),
        (
            "Status",
            if t.def.name == "Lead" {
                "Open - Not Contacted"
            } else {
                "Not Started"
            },
        ),
        ("Priority", "Normal"),
    ];
    for (name, default) in defaults {
        if let Some(column) = t.column(name) {
            if row[column] == Value::Null && is_required(t.def.name, name) {
                row[column] = Value::Text(default.to_string());
            }
        }
    }
    let missing: Vec<String> = t
        .def
        .fields
        .iter()
        .zip(&row)
        .filter(|(field, value)| {
            **value == Value::Null && field.updateable && !nillable(&t.def, field)
        })
        .map(|(field, _)| field.name.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(vec![SaveError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        )]);
    }
    Ok(row)
}

/// Rejects a new task or event whose `WhoId` is a lead and that also sets `WhatId`: an
/// activity on a lead cannot name an account or opportunity.
// NOTE: the error code is the one commonly reported for this case; Salesforce does not
// document it.
fn check_lead_activity(
    store: &Store,
    table: usize,
    values: &[(usize, Value)],
) -> Result<(), Vec<SaveError>> {
    let t = &store.tables[table];
    if !matches!(t.def.name, "Task" | "Event") {
        return Ok(());
    }
    let value_of = |name: &str| {
        let column = t.column(name)?;
        values
            .iter()
            .find(|(c, _)| *c == column)
            .and_then(|(_, value)| match value {
                Value::Text(text) => Some(text.clone()),
                _ => None,
            })
    };
    let who_is_lead = value_of("WhoId")
        .and_then(|id| store.table_for_id(&id))
        .is_some_and(|i| store.tables[i].def.name == "Lead");
    if who_is_lead && value_of("WhatId").is_some() {
        return Err(vec![SaveError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            "Related To ID: id value of incorrect type: a task or event on a lead cannot also be related to another record"
                .into(),
            vec!["WhatId".to_string()],
        )]);
    }
    Ok(())
}

/// Gives a planned row a new id and creation stamps, stores it and returns the id.
fn insert_created(store: &mut Store, table: usize, mut row: Vec<Value>) -> String {
    let id = store.new_id(table);
    let now = store.now();
    let t = &store.tables[table];
    row[t.id_col] = Value::Text(id.clone());
    row[t.deleted_col] = Value::Bool(false);
    row[t.created_col] = Value::DateTime(now);
    row[t.last_modified_col] = Value::DateTime(now);
    row[t.modstamp_col] = Value::DateTime(now);
    store.insert(table, row);
    id
}

/// Updates one record from a `PATCH /sobjects/{Object}/{id}` body.
pub(crate) fn update_record(
    store: &mut Store,
    table: usize,
    id: &str,
    body: &Json,
    injected: &InjectedFailures,
) -> Result<(), Vec<SaveError>> {
    let Json::Object(fields) = body else {
        return Err(vec![SaveError::new(
            "JSON_PARSER_ERROR",
            "the request body must be a JSON object of field values".into(),
            vec![],
        )]);
    };
    let row = target_row(store, table, id, injected).map_err(|e| vec![e])?;
    let values = validate_fields(store, table, fields, false)?;
    apply(store, table, row, values);
    Ok(())
}
