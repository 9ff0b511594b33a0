//! The Tooling API's `CustomField` create and the field-level security that permission sets
//! grant on the fields it creates.
//!
//! A field created through `POST /tooling/sobjects/CustomField` starts hidden from the API
//! user, as from an integration user whose profile grants no access to new fields. Describe,
//! queries and writes show it only once a `FieldPermissions` record grants it through a
//! permission set assigned to that user. Read access comes from `PermissionsRead`, write
//! access from `PermissionsEdit`. Fields of the seeded schema keep the access they start with.

use serde_json::{json, Map, Value as Json};

use crate::schema::{FieldDef, FieldType};
use crate::server::State;
use crate::store::{with_case_suffix, Store, Value};
use crate::write::SaveError;

/// Maximum length of a custom field's developer name, without the `__c` suffix.
const MAX_DEVELOPER_NAME: usize = 40;
/// Maximum `length` of a Text field.
const MAX_TEXT_LENGTH: u64 = 255;
/// Minimum and maximum `length` of a LongTextArea field.
const LONG_TEXT_LENGTHS: std::ops::RangeInclusive<u64> = 256..=131_072;
/// Maximum `precision` (total digits) of a Number field.
const MAX_PRECISION: u64 = 18;

/// A field created through the Tooling API: its object's table and its column there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreatedField {
    pub table: usize,
    pub column: usize,
}

/// Creates the custom field a `CustomField` create body describes, hidden from the API
/// user, and returns the new `CustomField` id.
// NOTE: the error codes and messages for an invalid FullName or Metadata follow the Metadata
// API's deploy messages. The exact REST wording of the Tooling API is unverified.
pub(crate) fn create_custom_field(state: &mut State, body: &Json) -> Result<String, SaveError> {
    let Json::Object(body) = body else {
        return Err(error(
            "JSON_PARSER_ERROR",
            "the request body must be a JSON object with FullName and Metadata".into(),
            &[],
        ));
    };
    let full_name = required_text(body, "FullName")?;
    let (object, name) = split_full_name(full_name)?;

    let table = state.store.table_index(object).ok_or_else(|| {
        error(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("FullName: there is no object named {object} for {full_name}"),
            &["FullName"],
        )
    })?;
    let t = &state.store.tables[table];
    if t.any_column(name).is_some() {
        return Err(error(
            "DUPLICATE_DEVELOPER_NAME",
            format!("There is already a field named {name} on {}.", t.def.name),
            &["FullName"],
        ));
    }
    let metadata = match body.get("Metadata") {
        Some(Json::Object(metadata)) => metadata,
        _ => {
            return Err(error(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [Metadata]".into(),
                &["Metadata"],
            ))
        }
    };

    let field = field_from_metadata(name, metadata)?;
    let column = state.store.tables[table].add_field(field, false);
    state.created_fields.push(CreatedField { table, column });
    let sequence = state.created_fields.len();
    Ok(with_case_suffix(&format!("00NSb{sequence:0>10}")))
}

fn error(code: &str, message: String, fields: &[&str]) -> SaveError {
    SaveError {
        status_code: code.to_string(),
        message,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn required_text<'a>(map: &'a Map<String, Json>, key: &str) -> Result<&'a str, SaveError> {
    match map.get(key) {
        Some(Json::String(text)) if !text.trim().is_empty() => Ok(text),
        _ => Err(error(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{key}]"),
            &[key],
        )),
    }
}

/// Splits `Account.LS_Score__c` into the object and a valid custom field name.
fn split_full_name(full_name: &str) -> Result<(&str, &str), SaveError> {
    let invalid = |reason: &str| {
        error(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("FullName: {full_name} is not a valid custom field name: {reason}"),
            &["FullName"],
        )
    };
    let Some((object, name)) = full_name.split_once('.') else {
        return Err(invalid("it must be Object.Field__c"));
    };
    let Some(developer_name) = name.strip_suffix("__c") else {
        return Err(invalid("a custom field name ends in __c"));
    };
    let starts_with_letter = developer_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    let valid_characters = developer_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if object.is_empty()
        || !starts_with_letter
        || !valid_characters
        || developer_name.contains("__")
        || developer_name.ends_with('_')
    {
        return Err(invalid(
            "the name must begin with a letter, contain only letters, digits and single underscores, and not end with an underscore",
        ));
    }
    if developer_name.len() > MAX_DEVELOPER_NAME {
        return Err(invalid(&format!(
            "the name before __c is longer than {MAX_DEVELOPER_NAME} characters"
        )));
    }
    Ok((object, name))
}

/// Builds the field a `Metadata` object describes: label, type and the sizes that type needs.
fn field_from_metadata(name: &str, metadata: &Map<String, Json>) -> Result<FieldDef, SaveError> {
    required_text(metadata, "label").map_err(|_| {
        error(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Label]".into(),
            &["Label"],
        )
    })?;
    let kind = required_text(metadata, "type").map_err(|_| {
        error(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Type]".into(),
            &["Type"],
        )
    })?;
    let mut field = FieldDef {
        name: leak(name),
        field_type: FieldType::String,
        updateable: false,
        length: 0,
        picklist: Vec::new(),
        restricted: false,
        relationship: None,
    };
    match kind {
        "Number" => {
            let precision = size(metadata, kind, "precision", 1..=MAX_PRECISION)?;
            size(metadata, kind, "scale", 0..=precision)?;
            field.field_type = FieldType::Double;
        }
        "Text" => {
            field.length = size(metadata, kind, "length", 1..=MAX_TEXT_LENGTH)? as u32;
        }
        "LongTextArea" => {
            field.field_type = FieldType::Textarea;
            field.length = size(metadata, kind, "length", LONG_TEXT_LENGTHS)? as u32;
            size(metadata, kind, "visibleLines", 2..=50)?;
        }
        "DateTime" => field.field_type = FieldType::Datetime,
        "Date" => field.field_type = FieldType::Date,
        "Checkbox" => {
            field.field_type = FieldType::Boolean;
            let default = metadata.get("defaultValue");
            let valid = matches!(default, Some(Json::Bool(_)))
                || matches!(default, Some(Json::String(s)) if s == "true" || s == "false");
            if !valid {
                return Err(error(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Must specify 'defaultValue' (true or false) for a CustomField of type Checkbox".into(),
                    &["defaultValue"],
                ));
            }
        }
        "Picklist" => {
            field.field_type = FieldType::Picklist;
            field.length = 255;
            let (values, restricted) = picklist_values(metadata)?;
            field.picklist = values.into_iter().map(|v| (leak(&v), true)).collect();
            field.restricted = restricted;
        }
        other => {
            return Err(error(
                "FIELD_INTEGRITY_EXCEPTION",
                format!("type: the sandbox does not model custom fields of type {other}; use Number, Text, LongTextArea, Picklist, Checkbox, Date or DateTime"),
                &["type"],
            ))
        }
    }
    Ok(field)
}

/// Reads a whole-number size such as `length` and checks it lies in `allowed`.
fn size(
    metadata: &Map<String, Json>,
    kind: &str,
    key: &str,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<u64, SaveError> {
    let Some(value) = metadata.get(key).filter(|v| !v.is_null()) else {
        return Err(error(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("Must specify '{key}' for a CustomField of type {kind}"),
            &[key],
        ));
    };
    match value.as_u64() {
        Some(n) if allowed.contains(&n) => Ok(n),
        _ => Err(error(
            "FIELD_INTEGRITY_EXCEPTION",
            format!(
                "{key}: {value} is invalid for a CustomField of type {kind}; it must be a whole number from {} to {}",
                allowed.start(),
                allowed.end()
            ),
            &[key],
        )),
    }
}

/// Reads the values of `valueSet.valueSetDefinition.value` and `valueSet.restricted`.
fn picklist_values(metadata: &Map<String, Json>) -> Result<(Vec<String>, bool), SaveError> {
    let value_set = metadata.get("valueSet");
    let values = value_set
        .and_then(|set| set.pointer("/valueSetDefinition/value"))
        .and_then(Json::as_array);
    let names: Option<Vec<String>> = values.map(|values| {
        values
            .iter()
            .filter_map(|value| value.get("fullName").and_then(Json::as_str))
            .map(str::to_string)
            .collect()
    });
    match names {
        Some(names) if !names.is_empty() && Some(names.len()) == values.map(Vec::len) => {
            let restricted = value_set
                .and_then(|set| set.get("restricted"))
                .and_then(Json::as_bool)
                .unwrap_or(false);
            Ok((names, restricted))
        }
        _ => Err(error(
            "FIELD_INTEGRITY_EXCEPTION",
            "Must specify 'valueSet' with at least one value, each with a fullName, for a CustomField of type Picklist".into(),
            &["valueSet"],
        )),
    }
}

/// Gives a created field's name the `'static` lifetime the schema types use.
// NOTE: this leaks one string per created field and picklist value. Each name can be created
// once per sandbox, so the total is bounded by what tests create.
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}

/// Rejects a new `PermissionSet`, `FieldPermissions` or `PermissionSetAssignment` record that
/// Salesforce would reject: a `Field` that names no field, edit without read, or a duplicate
/// of a stored record.
// NOTE: two duplicates in one collection create, and an update that leaves edit without
// read, are not rejected.
pub(crate) fn check_permission_record(
    store: &Store,
    table: usize,
    values: &[(usize, Value)],
) -> Result<(), Vec<SaveError>> {
    let t = &store.tables[table];
    let text_of = |name: &str| {
        let column = t.column(name)?;
        values
            .iter()
            .find(|(c, _)| *c == column)
            .and_then(|(_, value)| value.as_text().map(str::to_string))
    };
    let flag_of = |name: &str| {
        t.column(name).is_some_and(|column| {
            values
                .iter()
                .any(|(c, value)| *c == column && *value == Value::Bool(true))
        })
    };
    match t.def.name {
        "FieldPermissions" => {
            let field = text_of("Field").unwrap_or_default();
            if !field_exists(store, &field) {
                return Err(vec![error(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!("Field: bad value for restricted picklist field: {field}"),
                    &["Field"],
                )]);
            }
            if flag_of("PermissionsEdit") && !flag_of("PermissionsRead") {
                return Err(vec![error(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Permission Edit depends on permission(s): Read".into(),
                    &["PermissionsRead"],
                )]);
            }
            let parent = text_of("ParentId").unwrap_or_default();
            if has_row(store, table, &[("ParentId", &parent), ("Field", &field)]) {
                return Err(vec![error(
                    "DUPLICATE_VALUE",
                    format!("duplicate value found: the permission set {parent} already has field permissions for {field}"),
                    &[],
                )]);
            }
        }
        "PermissionSetAssignment" => {
            let set = text_of("PermissionSetId").unwrap_or_default();
            let user = text_of("AssigneeId").unwrap_or_default();
            if has_row(
                store,
                table,
                &[("PermissionSetId", &set), ("AssigneeId", &user)],
            ) {
                return Err(vec![error(
                    "DUPLICATE_VALUE",
                    format!("Duplicate PermissionSetAssignment. Assignee: {user}; Permission Set: {set}"),
                    &[],
                )]);
            }
        }
        "PermissionSet" => {
            let name = text_of("Name").unwrap_or_default();
            if has_row(store, table, &[("Name", &name)]) {
                return Err(vec![error(
                    "DUPLICATE_DEVELOPER_NAME",
                    format!("The permission set API name {name} is already in use"),
                    &["Name"],
                )]);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Returns whether `Object.Field` names a field of the org, hidden or not.
fn field_exists(store: &Store, full_name: &str) -> bool {
    let Some((object, field)) = full_name.split_once('.') else {
        return false;
    };
    store
        .table_by_name(object)
        .is_some_and(|t| t.any_column(field).is_some())
}

/// Returns whether a live row of `table` has every (field, text) pair, ignoring ASCII case.
fn has_row(store: &Store, table: usize, pairs: &[(&str, &str)]) -> bool {
    let t = &store.tables[table];
    let columns: Option<Vec<usize>> = pairs.iter().map(|(name, _)| t.column(name)).collect();
    let Some(columns) = columns else {
        return false;
    };
    (0..t.rows.len()).any(|row| {
        !t.is_deleted(row)
            && columns.iter().zip(pairs).all(|(&column, (_, expected))| {
                t.rows[row][column]
                    .as_text()
                    .is_some_and(|text| text.eq_ignore_ascii_case(expected))
            })
    })
}

/// Recomputes the API user's access to every field created through the Tooling API from the
/// field permissions of the permission sets assigned to `user`. This replaces any access
/// [`crate::SandboxHandle::set_field_access`] gave such a field.
pub(crate) fn refresh_access(state: &mut State, user: &str) {
    if state.created_fields.is_empty() {
        return;
    }
    let store = &mut state.store;
    let assigned = column_values(
        store,
        "PermissionSetAssignment",
        &["AssigneeId", "PermissionSetId"],
    )
    .into_iter()
    .filter(|row| row[0].as_text() == Some(user))
    .filter_map(|row| row[1].as_text().map(str::to_string))
    .collect::<Vec<String>>();
    let grants = column_values(
        store,
        "FieldPermissions",
        &["ParentId", "Field", "PermissionsRead", "PermissionsEdit"],
    );
    for created in &state.created_fields {
        let t = &store.tables[created.table];
        let name = t.def.fields[created.column].name;
        let full_name = format!("{}.{name}", t.def.name);
        let (mut read, mut edit) = (false, false);
        for grant in &grants {
            let applies = grant[0]
                .as_text()
                .is_some_and(|set| assigned.iter().any(|a| a == set))
                && grant[1]
                    .as_text()
                    .is_some_and(|field| field.eq_ignore_ascii_case(&full_name));
            if applies {
                read |= grant[2] == Value::Bool(true);
                edit |= grant[3] == Value::Bool(true);
            }
        }
        store.tables[created.table].set_access(name, read, read && edit);
    }
}

/// Returns the given columns of every live row of `object`.
fn column_values(store: &Store, object: &str, names: &[&str]) -> Vec<Vec<Value>> {
    let Some(t) = store.table_by_name(object) else {
        return Vec::new();
    };
    let columns: Option<Vec<usize>> = names.iter().map(|name| t.column(name)).collect();
    let Some(columns) = columns else {
        return Vec::new();
    };
    (0..t.rows.len())
        .filter(|&row| !t.is_deleted(row))
        .map(|row| columns.iter().map(|&c| t.rows[row][c].clone()).collect())
        .collect()
}

/// Renders a successful create as the Tooling API does.
pub(crate) fn created_json(id: &str) -> Json {
    json!({"id": id, "success": true, "errors": [], "warnings": [], "infos": []})
}
