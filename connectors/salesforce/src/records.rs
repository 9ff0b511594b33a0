//! Conversion of `query` / `queryAll` result pages into CRM-neutral `Record`s.
//!
//! Each value is typed by the describe of the object it belongs to. Dotted parent fields
//! (`Account.Owner.IsActive`) are resolved by following each reference field's
//! `relationshipName` to the nested parent object, whose type comes from its
//! `attributes.type` (needed for polymorphic lookups such as `Task.What`) or from the field's
//! single `referenceTo` entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use leadscore_connector::{
    ConnectorError, Cursor, FieldKind, FieldSchema, ObjectSchema, Page, PullSpec, Record, Value,
};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// Describes already fetched, keyed by lower-case object name.
pub(crate) type SchemaSet = HashMap<String, Arc<ObjectSchema>>;

/// A failure to convert a page, which may be only a missing describe.
#[derive(Debug)]
pub(crate) enum ConvertError {
    /// The describe of this object is needed first; fetch it and convert again.
    NeedSchema(String),
    Failed(ConnectorError),
}

impl From<ConnectorError> for ConvertError {
    fn from(error: ConnectorError) -> Self {
        ConvertError::Failed(error)
    }
}

/// One page of a `query` response as sent on the wire.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryPageWire {
    pub total_size: Option<u64>,
    #[serde(default)]
    pub done: bool,
    pub next_records_url: Option<String>,
    pub records: Vec<Map<String, Json>>,
}

/// Parses a query response body.
pub(crate) fn parse_query_page(object: &str, body: &[u8]) -> Result<QueryPageWire, ConnectorError> {
    serde_json::from_slice(body).map_err(|error| {
        ConnectorError::Payload(format!(
            "query of {object} returned a body that is not a query result page: {error}"
        ))
    })
}

/// Converts a page, dropping records stamped before `cursor` (ties are kept; the caller drops
/// the copies it already has).
pub(crate) fn convert_page(
    spec: &PullSpec,
    cursor: Option<&Cursor>,
    wire: &QueryPageWire,
    schemas: &SchemaSet,
) -> Result<Page, ConvertError> {
    let mut records = Vec::with_capacity(wire.records.len());
    for raw in &wire.records {
        let record = convert_record(spec, raw, schemas)?;
        if cursor.is_none_or(|c| c.admits(record.modstamp)) {
            records.push(record);
        }
    }
    let next = if wire.done {
        None
    } else {
        match &wire.next_records_url {
            Some(url) => Some(url.clone()),
            None => {
                return Err(ConnectorError::Payload(format!(
                    "query of {} returned done=false without a nextRecordsUrl, so the remaining \
                     records cannot be fetched",
                    spec.object
                ))
                .into())
            }
        }
    };
    Ok(Page {
        records,
        next,
        total: wire.total_size,
        unordered: false,
    })
}

/// Converts one raw record of `spec.object`.
pub(crate) fn convert_record(
    spec: &PullSpec,
    raw: &Map<String, Json>,
    schemas: &SchemaSet,
) -> Result<Record, ConvertError> {
    let id = match raw.get("Id") {
        Some(Json::String(id)) if !id.is_empty() => id.clone(),
        other => {
            return Err(ConnectorError::Payload(format!(
                "a {} record has no usable Id (found {}); the query must select Id",
                spec.object,
                excerpt(other.unwrap_or(&Json::Null))
            ))
            .into())
        }
    };
    let modstamp = match raw.get("SystemModstamp") {
        Some(Json::String(text)) => parse_datetime(text),
        _ => None,
    }
    .ok_or_else(|| {
        payload_error(
            &spec.object,
            &id,
            "SystemModstamp",
            raw.get("SystemModstamp").unwrap_or(&Json::Null),
            "expected a datetime such as 2024-05-01T12:00:03.000+0000",
        )
    })?;
    let deleted = match raw.get("IsDeleted") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(deleted)) => *deleted,
        Some(other) => {
            return Err(payload_error(
                &spec.object,
                &id,
                "IsDeleted",
                other,
                "expected true or false",
            )
            .into())
        }
    };

    let mut fields = BTreeMap::new();
    for path in &spec.fields {
        let value = field_value(&spec.object, &id, raw, path, schemas)?;
        fields.insert(path.clone(), value);
    }
    Ok(Record {
        object: spec.object.clone(),
        id,
        modstamp,
        deleted,
        fields,
    })
}

/// Resolves one selected field, following parent relationships for dotted paths.
fn field_value(
    object: &str,
    id: &str,
    raw: &Map<String, Json>,
    path: &str,
    schemas: &SchemaSet,
) -> Result<Value, ConvertError> {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, relationships)) = segments.split_last() else {
        return Err(
            ConnectorError::Payload(format!("empty field name selected on {object}")).into(),
        );
    };
    let mut schema = lookup_schema(schemas, object)?;
    let mut current = raw;
    for relationship in relationships {
        let reference = schema
            .fields
            .iter()
            .find(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(relationship))
            })
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{path} on {object}: {} has no relationship named {relationship} in its \
                     describe; check the field path",
                    schema.name
                ))
            })?;
        let relationship_name = reference
            .relationship_name
            .as_deref()
            .unwrap_or(relationship);
        let nested = get_key(current, relationship_name)
            .ok_or_else(|| missing_key_error(object, id, path, relationship_name))?;
        let parent = match nested {
            Json::Null => return Ok(Value::Null),
            Json::Object(parent) => parent,
            other => {
                return Err(payload_error(
                    object,
                    id,
                    path,
                    other,
                    "expected a parent record object or null",
                )
                .into())
            }
        };
        let parent_type = parent_type(reference, parent).ok_or_else(|| {
            payload_error(
                object,
                id,
                path,
                nested,
                "the parent record has no attributes.type and the lookup can point at several objects",
            )
        })?;
        schema = lookup_schema(schemas, &parent_type)?;
        current = parent;
    }

    let field = schema.field(last).ok_or_else(|| {
        ConnectorError::Payload(format!(
            "{path} on {object}: {} has no field named {last} in its describe; check the field \
             name",
            schema.name
        ))
    })?;
    let raw_value = get_key(current, &field.name)
        .ok_or_else(|| missing_key_error(object, id, path, &field.name))?;
    convert_value(field, raw_value)
        .map_err(|reason| payload_error(object, id, path, raw_value, &reason).into())
}

/// Returns the parent's object type: `attributes.type`, else the lookup's only target.
fn parent_type(reference: &FieldSchema, parent: &Map<String, Json>) -> Option<String> {
    let from_attributes = parent
        .get("attributes")
        .and_then(|attributes| attributes.get("type"))
        .and_then(Json::as_str);
    match (from_attributes, reference.reference_to.as_slice()) {
        (Some(name), _) => Some(name.to_string()),
        (None, [only]) => Some(only.clone()),
        _ => None,
    }
}

fn lookup_schema(schemas: &SchemaSet, object: &str) -> Result<Arc<ObjectSchema>, ConvertError> {
    schemas
        .get(&object.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| ConvertError::NeedSchema(object.to_string()))
}

/// Finds a key by exact name, then case-insensitively (responses use the API name's case).
fn get_key<'a>(map: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// Converts one JSON value to the `Value` its field kind declares, or returns why it does not fit.
pub(crate) fn convert_value(field: &FieldSchema, raw: &Json) -> Result<Value, String> {
    if raw.is_null() {
        return Ok(Value::Null);
    }
    match field.kind {
        FieldKind::Id
        | FieldKind::Reference
        | FieldKind::Text
        | FieldKind::LongText
        | FieldKind::Picklist => match raw {
            Json::String(text) => Ok(Value::Text(text.clone())),
            _ => Err(format!("expected text for a {:?} field", field.kind)),
        },
        FieldKind::Boolean => raw
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "expected true or false for a boolean field".to_string()),
        FieldKind::Number => raw
            .as_f64()
            .map(Value::Number)
            .ok_or_else(|| "expected a JSON number for a number field".to_string()),
        FieldKind::Date => raw
            .as_str()
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
            .map(Value::Date)
            .ok_or_else(|| "expected a date such as 2024-05-01".to_string()),
        FieldKind::DateTime => raw
            .as_str()
            .and_then(parse_datetime)
            .map(Value::DateTime)
            .ok_or_else(|| "expected a datetime such as 2024-05-01T12:00:03.000+0000".to_string()),
        FieldKind::Other => match raw {
            Json::String(text) => Ok(Value::Text(text.clone())),
            Json::Bool(flag) => Ok(Value::Bool(*flag)),
            Json::Number(number) => number
                .as_f64()
                .map(Value::Number)
                .ok_or_else(|| "number out of range".to_string()),
            _ => Err(
                "compound values (addresses, geolocations) are not supported; select their \
                 component fields instead"
                    .to_string(),
            ),
        },
    }
}

/// Parses a Salesforce datetime: `2024-05-01T12:00:03.000+0000`, or RFC 3339 with `Z` or `+00:00`.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn payload_error(
    object: &str,
    id: &str,
    field: &str,
    value: &Json,
    reason: &str,
) -> ConnectorError {
    ConnectorError::Payload(format!(
        "{object} {id}: field {field} has value {} that does not fit its declared type: {reason}",
        excerpt(value)
    ))
}

fn missing_key_error(object: &str, id: &str, path: &str, key: &str) -> ConnectorError {
    ConnectorError::Payload(format!(
        "{object} {id}: the response has no {key} key for selected field {path}"
    ))
}

/// Returns the value as compact JSON, shortened to at most 80 characters.
fn excerpt(value: &Json) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let short: String = text.chars().take(80).collect();
        format!("{short}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn field(name: &str, kind: FieldKind) -> FieldSchema {
        FieldSchema {
            name: name.to_string(),
            kind,
            updateable: false,
            picklist_values: Vec::new(),
            restricted_picklist: false,
            length: None,
            relationship_name: None,
            reference_to: Vec::new(),
        }
    }

    fn reference(name: &str, relationship: &str, to: &[&str]) -> FieldSchema {
        FieldSchema {
            relationship_name: Some(relationship.to_string()),
            reference_to: to.iter().map(|t| t.to_string()).collect(),
            ..field(name, FieldKind::Reference)
        }
    }

    fn schemas() -> SchemaSet {
        let task = ObjectSchema {
            name: "Task".to_string(),
            fields: vec![
                field("Id", FieldKind::Id),
                field("SystemModstamp", FieldKind::DateTime),
                field("IsDeleted", FieldKind::Boolean),
                field("ActivityDate", FieldKind::Date),
                field("Subject", FieldKind::Text),
                reference("WhatId", "What", &["Account", "Opportunity"]),
                reference("OwnerId", "Owner", &["User"]),
            ],
        };
        let account = ObjectSchema {
            name: "Account".to_string(),
            fields: vec![
                field("Name", FieldKind::Text),
                field("CMS_Overall_Rating__c", FieldKind::Number),
                reference("OwnerId", "Owner", &["User"]),
            ],
        };
        let opportunity = ObjectSchema {
            name: "Opportunity".to_string(),
            fields: vec![
                field("Name", FieldKind::Text),
                field("Amount", FieldKind::Number),
            ],
        };
        let user = ObjectSchema {
            name: "User".to_string(),
            fields: vec![field("IsActive", FieldKind::Boolean)],
        };
        [task, account, opportunity, user]
            .into_iter()
            .map(|s| (s.name.to_ascii_lowercase(), Arc::new(s)))
            .collect()
    }

    fn spec(fields: &[&str]) -> PullSpec {
        PullSpec {
            object: "Task".to_string(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            include_deleted: true,
        }
    }

    fn raw(value: Json) -> Map<String, Json> {
        match value {
            Json::Object(map) => map,
            _ => unreachable!("test records are objects"),
        }
    }

    fn unwrap_failed(result: Result<Record, ConvertError>) -> String {
        match result {
            Err(ConvertError::Failed(ConnectorError::Payload(message))) => message,
            other => panic!("expected a Payload error, got {other:?}"),
        }
    }

    #[test]
    fn datetime_formats_parse() {
        let expected = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap();
        assert_eq!(
            parse_datetime("2024-05-01T12:00:03.000+0000"),
            Some(expected)
        );
        assert_eq!(parse_datetime("2024-05-01T12:00:03Z"), Some(expected));
        assert_eq!(parse_datetime("2024-05-01T12:00:03.000Z"), Some(expected));
        assert_eq!(
            parse_datetime("2024-05-01T14:00:03.000+0200"),
            Some(expected)
        );
        assert_eq!(parse_datetime("2024-05-01T14:00:03+02:00"), Some(expected));
        assert_eq!(parse_datetime("2024-05-01"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn record_with_polymorphic_parent() {
        let record = raw(json!({
            "attributes": {"type": "Task", "url": "/services/data/v59.0/sobjects/Task/00T1"},
            "Id": "00T1",
            "SystemModstamp": "2024-05-01T12:00:03.000+0000",
            "IsDeleted": true,
            "ActivityDate": "2024-04-30",
            "Subject": "Demo",
            "What": {"attributes": {"type": "Opportunity"}, "Name": "Knee implants", "Amount": 125000.5},
            "Owner": {"attributes": {"type": "User"}, "IsActive": false}
        }));
        let converted = convert_record(
            &spec(&[
                "Subject",
                "ActivityDate",
                "What.Name",
                "Owner.IsActive",
                "Id",
            ]),
            &record,
            &schemas(),
        )
        .unwrap();
        assert_eq!(converted.id, "00T1");
        assert!(converted.deleted);
        assert_eq!(
            converted.modstamp,
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap()
        );
        assert_eq!(converted.get("Subject"), &Value::Text("Demo".into()));
        assert_eq!(
            converted.get("ActivityDate"),
            &Value::Date(NaiveDate::from_ymd_opt(2024, 4, 30).unwrap())
        );
        assert_eq!(
            converted.get("What.Name"),
            &Value::Text("Knee implants".into())
        );
        assert_eq!(converted.get("Owner.IsActive"), &Value::Bool(false));
        assert_eq!(converted.get("Id"), &Value::Text("00T1".into()));
        assert_eq!(converted.fields.len(), 5);
    }

    #[test]
    fn null_parent_gives_null_values() {
        let record = raw(json!({
            "Id": "00T2", "SystemModstamp": "2024-05-01T12:00:03Z", "What": null
        }));
        let converted = convert_record(&spec(&["What.Name"]), &record, &schemas()).unwrap();
        assert_eq!(converted.get("What.Name"), &Value::Null);
        assert!(converted.fields.contains_key("What.Name"));
        assert!(!converted.deleted);
    }

    #[test]
    fn nested_null_parent_gives_null_not_text() {
        let record = raw(json!({
            "Id": "00T2", "SystemModstamp": "2024-05-01T12:00:03Z",
            "What": {"attributes": {"type": "Account"}, "Name": "Mercy", "Owner": null}
        }));
        let converted = convert_record(
            &spec(&["What.Owner.IsActive", "What.Name"]),
            &record,
            &schemas(),
        )
        .unwrap();
        assert_eq!(converted.get("What.Owner.IsActive"), &Value::Null);
        assert_eq!(converted.get("What.Name"), &Value::Text("Mercy".into()));
        let top_null = raw(json!({
            "Id": "00T3", "SystemModstamp": "2024-05-01T12:00:03Z", "What": null
        }));
        let converted =
            convert_record(&spec(&["What.Owner.IsActive"]), &top_null, &schemas()).unwrap();
        assert_eq!(converted.get("What.Owner.IsActive"), &Value::Null);
    }

    #[test]
    fn two_level_parent_path() {
        let record = raw(json!({
            "Id": "00T3", "SystemModstamp": "2024-05-01T12:00:03Z",
            "What": {"attributes": {"type": "Account"}, "Name": "Mercy",
                     "Owner": {"IsActive": true}}
        }));
        let converted =
            convert_record(&spec(&["What.Owner.IsActive"]), &record, &schemas()).unwrap();
        assert_eq!(converted.get("What.Owner.IsActive"), &Value::Bool(true));
    }

    #[test]
    fn unknown_parent_type_requests_schema() {
        let record = raw(json!({
            "Id": "00T4", "SystemModstamp": "2024-05-01T12:00:03Z",
            "What": {"attributes": {"type": "Campaign"}, "Name": "Spring"}
        }));
        match convert_record(&spec(&["What.Name"]), &record, &schemas()) {
            Err(ConvertError::NeedSchema(name)) => assert_eq!(name, "Campaign"),
            other => panic!("expected NeedSchema, got {other:?}"),
        }
    }

    #[test]
    fn polymorphic_parent_without_type_fails() {
        let record = raw(json!({
            "Id": "00T5", "SystemModstamp": "2024-05-01T12:00:03Z",
            "What": {"Name": "Spring"}
        }));
        let message = unwrap_failed(convert_record(&spec(&["What.Name"]), &record, &schemas()));
        assert!(message.contains("attributes.type"), "{message}");
    }

    #[test]
    fn wrong_type_names_object_id_field_value() {
        let record = raw(json!({
            "Id": "00T6", "SystemModstamp": "2024-05-01T12:00:03Z",
            "What": {"attributes": {"type": "Opportunity"}, "Name": "X", "Amount": "lots"}
        }));
        let message = unwrap_failed(convert_record(&spec(&["What.Amount"]), &record, &schemas()));
        assert!(message.contains("Task 00T6"), "{message}");
        assert!(message.contains("What.Amount"), "{message}");
        assert!(message.contains("\"lots\""), "{message}");

        let bad_date = raw(json!({
            "Id": "00T7", "SystemModstamp": "2024-05-01T12:00:03Z", "ActivityDate": "30/04/2024"
        }));
        let message = unwrap_failed(convert_record(
            &spec(&["ActivityDate"]),
            &bad_date,
            &schemas(),
        ));
        assert!(message.contains("30/04/2024"), "{message}");

        let bad_stamp = raw(json!({"Id": "00T8", "SystemModstamp": "soon"}));
        let message = unwrap_failed(convert_record(&spec(&[]), &bad_stamp, &schemas()));
        assert!(message.contains("SystemModstamp"), "{message}");
        assert!(message.contains("soon"), "{message}");
    }

    #[test]
    fn missing_selected_key_fails() {
        let record = raw(json!({"Id": "00T9", "SystemModstamp": "2024-05-01T12:00:03Z"}));
        let message = unwrap_failed(convert_record(&spec(&["Subject"]), &record, &schemas()));
        assert!(message.contains("no Subject key"), "{message}");
    }

    #[test]
    fn key_case_follows_api_name() {
        let record =
            raw(json!({"Id": "00TA", "SystemModstamp": "2024-05-01T12:00:03Z", "Subject": "Hi"}));
        let converted = convert_record(&spec(&["subject"]), &record, &schemas()).unwrap();
        assert_eq!(converted.get("subject"), &Value::Text("Hi".into()));
    }

    #[test]
    fn page_drops_records_before_cursor() {
        let wire: QueryPageWire = serde_json::from_value(json!({
            "totalSize": 4, "done": false, "nextRecordsUrl": "/services/data/v59.0/query/01g-2",
            "records": [
                {"Id": "00T1", "SystemModstamp": "2024-05-01T12:00:02.500+0000"},
                {"Id": "00T1", "SystemModstamp": "2024-05-01T12:00:03.000+0000"},
                {"Id": "00T2", "SystemModstamp": "2024-05-01T12:00:03.000+0000"},
                {"Id": "00T3", "SystemModstamp": "2024-05-01T12:00:03.000+0000"}
            ]
        }))
        .unwrap();
        let cursor = Cursor {
            modstamp: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap(),
            id: "00T2".to_string(),
        };

        let page = convert_page(&spec(&[]), Some(&cursor), &wire, &schemas()).unwrap();

        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["00T1", "00T2", "00T3"],
            "ties with the cursor stamp are kept"
        );
        assert_eq!(page.total, Some(4));
        assert_eq!(
            page.next.as_deref(),
            Some("/services/data/v59.0/query/01g-2")
        );
    }

    #[test]
    fn page_not_done_without_next_fails() {
        let wire: QueryPageWire =
            serde_json::from_value(json!({"totalSize": 1, "done": false, "records": []})).unwrap();
        assert!(matches!(
            convert_page(&spec(&[]), None, &wire, &schemas()),
            Err(ConvertError::Failed(ConnectorError::Payload(_)))
        ));
    }
}
