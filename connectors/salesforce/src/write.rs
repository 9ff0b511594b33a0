//! sObject Collections update bodies and results.
//!
//! `PATCH /composite/sobjects` takes at most 200 records, each with `attributes.type` and `id`,
//! and returns one result per input in input order, with HTTP 200 even when records fail.
//! Failed results may lack `id`, so results are matched to inputs by position only.

use chrono::SecondsFormat;
use leadscore_connector::{ConnectorError, RecordError, RecordUpdate, Value};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// Maximum number of records in one sObject Collections request.
pub(crate) const MAX_BATCH: usize = 200;

/// The per-record error code of row-lock contention, which a later attempt usually clears.
pub(crate) const UNABLE_TO_LOCK_ROW: &str = "UNABLE_TO_LOCK_ROW";

#[derive(Debug, Deserialize)]
pub(crate) struct SaveResultWire {
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<SaveErrorWire>,
}

/// A per-record error. The REST reference names the code `statusCode`; jsforce's type names it
/// `errorCode`, so both are accepted.
#[derive(Debug, Deserialize)]
pub(crate) struct SaveErrorWire {
    #[serde(rename = "statusCode", alias = "errorCode")]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Converts a `Value` to the JSON Salesforce accepts for writes: dates as `YYYY-MM-DD`,
/// datetimes as UTC with milliseconds and `Z`, null as `null`.
pub(crate) fn value_to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Number(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .ok_or_else(|| format!("number {number} is not finite and cannot be written"))?,
        Value::Text(text) => Json::String(text.clone()),
        Value::Date(date) => Json::String(date.format("%Y-%m-%d").to_string()),
        Value::DateTime(time) => Json::String(time.to_rfc3339_opts(SecondsFormat::Millis, true)),
    })
}

/// Builds the JSON record of one update, or the error that keeps it from being sent.
pub(crate) fn record_json(update: &RecordUpdate) -> Result<Json, RecordError> {
    let local_error = |code: &str, message: String, fields: Vec<String>| RecordError {
        code: code.to_string(),
        message,
        fields,
        retryable: false,
    };
    if crate::soql::validate_object_name(&update.object).is_err() {
        return Err(local_error(
            "INVALID_TYPE",
            format!(
                "object name {:?} is not a Salesforce API name; the record was not sent",
                update.object
            ),
            Vec::new(),
        ));
    }
    if update.id.trim().is_empty() {
        return Err(local_error(
            "MISSING_ID",
            format!(
                "an update of {} has an empty record id; the record was not sent",
                update.object
            ),
            Vec::new(),
        ));
    }
    let mut record = Map::new();
    record.insert("attributes".to_string(), json!({ "type": update.object }));
    record.insert("id".to_string(), Json::String(update.id.clone()));
    for (name, value) in &update.fields {
        if name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("attributes") {
            return Err(local_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!("field {name:?} cannot be written; remove it from the update"),
                vec![name.clone()],
            ));
        }
        let json = value_to_json(value).map_err(|reason| {
            local_error(
                "INVALID_VALUE",
                format!(
                    "{} {} field {name}: {reason}; the record was not sent",
                    update.object, update.id
                ),
                vec![name.clone()],
            )
        })?;
        record.insert(name.clone(), json);
    }
    Ok(Json::Object(record))
}

/// Builds the request body for a batch of already converted records.
pub(crate) fn request_body(records: &[Json]) -> Json {
    json!({ "allOrNone": false, "records": records })
}

/// Parses the results of a collection update, which must hold exactly `expected` entries.
pub(crate) fn parse_results(
    body: &[u8],
    expected: usize,
) -> Result<Vec<SaveResultWire>, ConnectorError> {
    let results: Vec<SaveResultWire> = serde_json::from_slice(body).map_err(|error| {
        ConnectorError::Payload(format!(
            "sObject Collections update returned a body that is not an array of save results: {error}"
        ))
    })?;
    if results.len() != expected {
        return Err(ConnectorError::Payload(format!(
            "sObject Collections update returned {} results for {expected} records, so the \
             results cannot be matched to records; none of this batch is reported as written",
            results.len()
        )));
    }
    Ok(results)
}

/// Turns a failed save result into a `RecordError`, joining multiple errors into one.
pub(crate) fn record_error(result: &SaveResultWire) -> RecordError {
    let Some(first) = result.errors.first() else {
        return RecordError {
            code: "UNKNOWN_ERROR".to_string(),
            message: "Salesforce reported the record as failed without an error".to_string(),
            fields: Vec::new(),
            retryable: false,
        };
    };
    let mut message = first.message.clone();
    let mut fields = first.fields.clone();
    for other in &result.errors[1..] {
        message.push_str(&format!("; {}: {}", other.code, other.message));
        for field in &other.fields {
            if !fields.contains(field) {
                fields.push(field.clone());
            }
        }
    }
    RecordError {
        code: first.code.clone(),
        message,
        fields,
        retryable: is_lock_failure(result),
    }
}

/// True when a failed result is row-lock contention.
pub(crate) fn is_lock_failure(result: &SaveResultWire) -> bool {
    !result.success
        && result
            .errors
            .iter()
            .any(|error| error.code == UNABLE_TO_LOCK_ROW)
}

/// Maximum number of ids in one sObject Collections retrieve request (`POST` form).
pub(crate) const MAX_RETRIEVE_IDS: usize = 2000;

/// Builds the body of `POST /composite/sobjects/{Object}`. `Id` and `SystemModstamp` are
/// always selected, because a `Record` needs both.
pub(crate) fn retrieve_body(ids: &[String], fields: &[String]) -> Json {
    let mut selected = vec!["Id".to_string(), "SystemModstamp".to_string()];
    for field in fields {
        if !selected.iter().any(|s| s.eq_ignore_ascii_case(field)) {
            selected.push(field.clone());
        }
    }
    json!({ "ids": ids, "fields": selected })
}

/// Parses a retrieve response: one entry per requested id, `null` for an id the org does not
/// have (or has deleted).
pub(crate) fn parse_retrieved(
    object: &str,
    body: &[u8],
) -> Result<Vec<Map<String, Json>>, ConnectorError> {
    let entries: Vec<Option<Map<String, Json>>> =
        serde_json::from_slice(body).map_err(|error| {
            ConnectorError::Payload(format!(
                "sObject Collections retrieve of {object} returned a body that is not an array of \
             records: {error}"
            ))
        })?;
    Ok(entries.into_iter().flatten().collect())
}

impl crate::SalesforceConnector {
    /// Reads records by id with sObject Collections retrieve, in requests of at most
    /// [`MAX_RETRIEVE_IDS`] ids. Ids the org does not return are left out.
    pub(crate) async fn fetch_records(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
        crate::soql::validate_object_name(object)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.describe_cached(object).await?;
        let path = self.data_path(&format!("composite/sobjects/{object}"));
        let spec = leadscore_connector::PullSpec {
            object: object.to_string(),
            fields: fields.to_vec(),
            include_deleted: false,
        };
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_RETRIEVE_IDS) {
            let body = retrieve_body(chunk, fields);
            let response = self
                .api
                .request(
                    reqwest::Method::POST,
                    &path,
                    Some(&body),
                    crate::transport::Paging::None,
                )
                .await?;
            let schemas = self.cached_schemas();
            for raw in parse_retrieved(object, &response)? {
                match crate::records::convert_record(&spec, &raw, &schemas) {
                    Ok(record) => records.push(record),
                    Err(crate::records::ConvertError::Failed(error)) => return Err(error),
                    Err(crate::records::ConvertError::NeedSchema(other)) => {
                        return Err(ConnectorError::Payload(format!(
                            "retrieve of {object} needs the describe of {other}; read only \
                             fields of {object} itself"
                        )))
                    }
                }
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use std::collections::BTreeMap;

    fn update(fields: Vec<(&str, Value)>) -> RecordUpdate {
        RecordUpdate {
            object: "Lead".to_string(),
            id: "00Q1".to_string(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn values_to_json() {
        assert_eq!(value_to_json(&Value::Null).unwrap(), Json::Null);
        assert_eq!(value_to_json(&Value::Number(87.5)).unwrap(), json!(87.5));
        assert_eq!(
            value_to_json(&Value::Date(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap())).unwrap(),
            json!("2024-05-01")
        );
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap();
        assert_eq!(
            value_to_json(&Value::DateTime(time)).unwrap(),
            json!("2024-05-01T12:00:03.000Z")
        );
        assert!(value_to_json(&Value::Number(f64::NAN)).is_err());
    }

    #[test]
    fn record_json_has_type_and_id() {
        let json = record_json(&update(vec![
            ("LS_Score__c", Value::Number(42.0)),
            ("LS_Tier__c", Value::Text("B".into())),
            ("LS_Reasons__c", Value::Null),
        ]))
        .unwrap();
        assert_eq!(
            json,
            json!({"attributes": {"type": "Lead"}, "id": "00Q1", "LS_Score__c": 42.0,
                   "LS_Tier__c": "B", "LS_Reasons__c": null})
        );
    }

    #[test]
    fn record_json_rejects_bad_input() {
        let error = record_json(&update(vec![("Id", Value::Text("x".into()))])).unwrap_err();
        assert_eq!(error.fields, vec!["Id"]);
        let error =
            record_json(&update(vec![("LS_Score__c", Value::Number(f64::INFINITY))])).unwrap_err();
        assert_eq!(error.code, "INVALID_VALUE");
        assert!(error.message.contains("LS_Score__c"), "{}", error.message);
        let mut no_id = update(vec![]);
        no_id.id = String::new();
        assert_eq!(record_json(&no_id).unwrap_err().code, "MISSING_ID");
    }

    #[test]
    fn results_accept_both_error_keys() {
        let body = br#"[
            {"id": "00Q1", "success": true, "errors": []},
            {"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]},
            {"success": false, "errors": [{"errorCode": "STRING_TOO_LONG", "message": "too long", "fields": ["LS_Reasons__c"]},
                                          {"statusCode": "OTHER", "message": "x", "fields": ["Title"]}]}
        ]"#;
        let results = parse_results(body, 3).unwrap();
        assert!(results[0].success);
        let locked = record_error(&results[1]);
        assert_eq!(locked.code, "UNABLE_TO_LOCK_ROW");
        assert!(locked.retryable);
        let long = record_error(&results[2]);
        assert_eq!(long.code, "STRING_TOO_LONG");
        assert_eq!(long.message, "too long; OTHER: x");
        assert_eq!(long.fields, vec!["LS_Reasons__c", "Title"]);
        assert!(!long.retryable);
    }

    #[test]
    fn retrieve_body_selects_id_and_stamp() {
        let body = retrieve_body(
            &["001A".to_string()],
            &["LS_Score__c".to_string(), "id".to_string()],
        );
        assert_eq!(
            body,
            json!({"ids": ["001A"], "fields": ["Id", "SystemModstamp", "LS_Score__c"]})
        );
        let found = parse_retrieved("Account", br#"[{"Id": "001A"}, null]"#).unwrap();
        assert_eq!(found.len(), 1);
        assert!(parse_retrieved("Account", b"{}").is_err());
    }

    #[test]
    fn results_of_wrong_length_fail() {
        let body = br#"[{"id": "00Q1", "success": true, "errors": []}]"#;
        assert!(matches!(
            parse_results(body, 2),
            Err(ConnectorError::Payload(_))
        ));
        assert!(matches!(
            parse_results(b"{}", 1),
            Err(ConnectorError::Payload(_))
        ));
    }
}
