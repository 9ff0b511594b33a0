//! Pulls through Bulk API 2.0 query jobs, and the expansion of compound fields.
//!
//! A Bulk pull creates one `query` or `queryAll` job with the same SOQL as a REST pull
//! (ordered by `SystemModstamp, Id`), polls it until `JobComplete`, then reads the CSV
//! results page by page, following `Sforce-Locator` until it is the literal `null`. Each
//! value is typed by the describe of the object it belongs to and converted exactly as a REST
//! value is, so a record pulled by Bulk equals the same record pulled by REST. Every request
//! goes through the connector's one authenticated send path, so session renewal, retries and
//! the API budget apply to the job, its polls and its result pages alike. A job that
//! Salesforce rejects for a Bulk-only limit is pulled over REST instead (see
//! [`bulk_job_rejected`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadscore_connector::{
    ConnectorError, Cursor, FieldKind, FieldSchema, ObjectSchema, Page, PullSpec, Record, Value,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tracing::{debug, warn};

use crate::csv_stream::{CsvDecoder, CsvRow};
use crate::records::{self, ConvertError, SchemaSet};
use crate::transport::Paging;
use crate::SalesforceConnector;

/// Rows requested per results page (`maxRecords`). A page becomes one `Page` held in memory
/// and stored in one transaction, so this bounds memory per page at the cost of one request
/// per 10,000 rows, five times fewer than REST's 2,000-row pages.
pub const BULK_PAGE_SIZE: u32 = 10_000;

/// Prefix of a `Page::next` token that continues a Bulk job. REST tokens start with `/`.
const TOKEN_PREFIX: &str = "bulk2:";

/// First and largest sleep between two polls of a job's state.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(100);
const MAX_POLL_DELAY: Duration = Duration::from_secs(2);

/// Compound field name (lower case) -> its component field names, per object.
pub(crate) type Compounds = HashMap<String, Vec<String>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobWire {
    id: String,
    state: String,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    number_records_processed: Option<u64>,
}

#[derive(Deserialize)]
struct DescribeWire {
    fields: Vec<CompoundWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompoundWire {
    name: String,
    #[serde(default)]
    compound_field_name: Option<String>,
}

/// Reads which fields of a describe body are components of a compound field
/// (`compoundFieldName`), such as `BillingCity` of `BillingAddress`.
pub(crate) fn parse_compounds(body: &[u8]) -> Compounds {
    let Ok(wire) = serde_json::from_slice::<DescribeWire>(body) else {
        return Compounds::new();
    };
    let mut compounds = Compounds::new();
    for field in wire.fields {
        if let Some(compound) = field.compound_field_name.filter(|c| !c.is_empty()) {
            compounds
                .entry(compound.to_ascii_lowercase())
                .or_default()
                .push(field.name);
        }
    }
    compounds
}

/// Replaces each compound field of `fields` with its components, keeping the order and
/// dropping case-insensitive duplicates. Bulk API 2.0 rejects compound fields, so both REST
/// and Bulk pulls select the components and give records the same fields.
// NOTE: only compound fields of the pulled object are expanded. A dotted parent path such as
// `Account.BillingAddress` is selected as written, so REST returns it and Bulk rejects it.
pub(crate) fn expand_compounds(fields: &[String], compounds: &Compounds) -> Vec<String> {
    let mut expanded: Vec<String> = Vec::with_capacity(fields.len());
    let push = |name: &str, expanded: &mut Vec<String>| {
        if !expanded.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            expanded.push(name.to_string());
        }
    };
    for field in fields {
        match compounds.get(&field.to_ascii_lowercase()) {
            Some(components) => {
                for component in components {
                    push(component, &mut expanded);
                }
            }
            None => push(field, &mut expanded),
        }
    }
    expanded
}

/// The position of a Bulk pull between two pages, carried in `Page::next`.
pub(crate) struct BulkToken {
    job: String,
    total: Option<u64>,
    locator: String,
}

/// Builds the `next` token of a Bulk pull: job id, total row count and results locator.
fn encode_token(job: &str, total: Option<u64>, locator: &str) -> String {
    let total = total.map(|t| t.to_string()).unwrap_or_default();
    format!("{TOKEN_PREFIX}{job}:{total}:{locator}")
}

/// Parses a token from [`encode_token`]: `None` when `next` is not a Bulk token.
pub(crate) fn decode_token(next: &str) -> Option<Result<BulkToken, ConnectorError>> {
    let rest = next.strip_prefix(TOKEN_PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let parsed = match (parts.next(), parts.next(), parts.next()) {
        (Some(job), Some(total), Some(locator))
            if !job.is_empty()
                && job.chars().all(|c| c.is_ascii_alphanumeric())
                && !locator.is_empty() =>
        {
            Ok(BulkToken {
                job: job.to_string(),
                total: total.parse().ok(),
                locator: locator.to_string(),
            })
        }
        _ => Err(ConnectorError::Payload(format!(
            "paging token {next:?} is not a Bulk API 2.0 token of the form bulk2:JOB:TOTAL:LOCATOR"
        ))),
    };
    Some(parsed)
}

/// Returns true when Salesforce rejected a new Bulk API 2.0 query job for a reason the REST
/// API does not share. The org may have spent its 24-hour allowance of query jobs or of stored
/// results (400 `LIMIT_EXCEEDED`), or the object may not support Bulk queries.
pub(crate) fn bulk_job_rejected(error: &ConnectorError) -> bool {
    match error {
        ConnectorError::Rejected { code, message } => {
            code == "LIMIT_EXCEEDED" || message.contains("not supported by the Bulk API")
        }
        _ => false,
    }
}

/// Returns the header value as text, or an error naming the missing header.
fn header_text(
    headers: &reqwest::header::HeaderMap,
    name: &str,
    job: &str,
) -> Result<String, ConnectorError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            ConnectorError::Payload(format!(
                "results of Bulk API 2.0 job {job} came without a {name} header"
            ))
        })
}

/// Decodes a results body in 16 KiB chunks. The body arrives whole, because the shared send
/// path reads it before returning so that it can retry a body cut off mid-way.
// NOTE: a page is buffered once as bytes and once as records, so memory grows with
// BULK_PAGE_SIZE. Decoding straight from the socket would need a streaming send path.
fn decode_csv(body: &[u8], job: &str) -> Result<Vec<CsvRow>, ConnectorError> {
    let mut decoder = CsvDecoder::new(b',');
    let mut rows = Vec::new();
    let invalid = |error: crate::csv_stream::CsvError| {
        ConnectorError::Payload(format!(
            "results of Bulk API 2.0 job {job} are not valid CSV: {error}"
        ))
    };
    for chunk in body.chunks(16 * 1024) {
        decoder.feed(chunk, &mut rows).map_err(invalid)?;
    }
    decoder.finish(&mut rows).map_err(invalid)?;
    Ok(rows)
}

/// Converts a CSV value to the JSON a REST response carries for a field of this kind, so
/// that [`records::convert_value`] types both alike.
fn rest_json(field: &FieldSchema, text: Option<&str>) -> Result<Json, String> {
    let Some(text) = text else {
        return Ok(Json::Null);
    };
    match field.kind {
        FieldKind::Boolean => match text {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err("expected true or false for a boolean field".to_string()),
        },
        FieldKind::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| "expected a number for a number field".to_string()),
        _ => Ok(Json::String(text.to_string())),
    }
}

/// Finds the field a dotted path ends at by following relationships through the describes.
/// Through a polymorphic lookup every target that has the field must give it the same kind,
/// because a CSV row does not say which object the parent is.
fn path_schema(schemas: &SchemaSet, object: &str, path: &str) -> Result<FieldSchema, ConvertError> {
    let lookup = |name: &str| -> Result<Arc<ObjectSchema>, ConvertError> {
        schemas
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| ConvertError::NeedSchema(name.to_string()))
    };
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, relationships)) = segments.split_last() else {
        return Err(
            ConnectorError::Payload(format!("empty field name selected on {object}")).into(),
        );
    };
    let mut current = vec![lookup(object)?];
    for relationship in relationships {
        let mut next = Vec::new();
        for schema in &current {
            let Some(reference) = schema.fields.iter().find(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(relationship))
            }) else {
                continue;
            };
            for target in &reference.reference_to {
                next.push(lookup(target)?);
            }
        }
        if next.is_empty() {
            return Err(ConnectorError::Payload(format!(
                "{path} on {object}: no relationship named {relationship} in the describes; \
                 check the field path"
            ))
            .into());
        }
        current = next;
    }
    let candidates: Vec<&FieldSchema> = current.iter().filter_map(|s| s.field(last)).collect();
    let Some(first) = candidates.first() else {
        return Err(ConnectorError::Payload(format!(
            "{path} on {object}: no field named {last} in the describe; check the field name"
        ))
        .into());
    };
    if candidates.iter().any(|c| c.kind != first.kind) {
        return Err(ConnectorError::Payload(format!(
            "{path} on {object}: {last} has different types on the objects the lookup can \
             point at, so a Bulk CSV value cannot be typed; pull {object} over REST"
        ))
        .into());
    }
    Ok((*first).clone())
}

/// Converts the rows of one results page (header row first) into records.
fn convert_rows(
    spec: &PullSpec,
    cursor: Option<&Cursor>,
    rows: &[CsvRow],
    schemas: &SchemaSet,
    job: &str,
) -> Result<Vec<Record>, ConvertError> {
    let Some((header, data)) = rows.split_first() else {
        return Err(ConnectorError::Payload(format!(
            "results of Bulk API 2.0 job {job} have no header row"
        ))
        .into());
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                ConvertError::from(ConnectorError::Payload(format!(
                    "results of Bulk API 2.0 job {job} have no {name} column"
                )))
            })
    };
    let id_column = column("Id")?;
    let modstamp_column = column("SystemModstamp")?;
    let deleted_column = if spec.include_deleted {
        Some(column("IsDeleted")?)
    } else {
        None
    };
    let mut fields = Vec::with_capacity(spec.fields.len());
    for path in &spec.fields {
        fields.push((
            path,
            column(path)?,
            path_schema(schemas, &spec.object, path)?,
        ));
    }

    let mut records = Vec::with_capacity(data.len());
    for row in data {
        if row.len() != header.len() {
            return Err(ConnectorError::Payload(format!(
                "results of Bulk API 2.0 job {job}: a row has {} values for {} columns",
                row.len(),
                header.len()
            ))
            .into());
        }
        let id = row[id_column].clone().ok_or_else(|| {
            ConnectorError::Payload(format!(
                "results of Bulk API 2.0 job {job}: a {} row has no Id",
                spec.object
            ))
        })?;
        let stamp_text = row[modstamp_column].as_deref().unwrap_or("");
        let modstamp = records::parse_datetime(stamp_text).ok_or_else(|| {
            ConnectorError::Payload(format!(
                "{} {id}: SystemModstamp {stamp_text:?} is not a datetime such as \
                 2024-05-01T12:00:03.000Z",
                spec.object
            ))
        })?;
        let deleted = match deleted_column.map(|c| row[c].as_deref()) {
            None | Some(None) | Some(Some("false")) => false,
            Some(Some("true")) => true,
            Some(Some(other)) => {
                return Err(ConnectorError::Payload(format!(
                    "{} {id}: IsDeleted {other:?} is not true or false",
                    spec.object
                ))
                .into())
            }
        };
        if cursor.is_some_and(|c| !c.admits(modstamp)) {
            continue;
        }
        let mut values = std::collections::BTreeMap::new();
        for (path, index, schema) in &fields {
            let text = row[*index].as_deref();
            let value: Value = rest_json(schema, text)
                .and_then(|json| records::convert_value(schema, &json))
                .map_err(|reason| {
                    ConnectorError::Payload(format!(
                        "{} {id}: field {path} has value {:?} that does not fit its declared \
                         type: {reason}",
                        spec.object,
                        text.unwrap_or("")
                    ))
                })?;
            values.insert((*path).clone(), value);
        }
        records.push(Record {
            object: spec.object.clone(),
            id,
            modstamp,
            deleted,
            fields: values,
        });
    }
    Ok(records)
}

impl SalesforceConnector {
    /// Creates the query job for `spec`, waits for it and returns its first results page.
    pub(crate) async fn bulk_pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ConnectorError> {
        let soql = crate::soql::build_bulk_query(spec, cursor)?;
        let operation = if spec.include_deleted {
            "queryAll"
        } else {
            "query"
        };
        let request = json!({
            "operation": operation,
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let body = self
            .api
            .request(
                Method::POST,
                &self.data_path("jobs/query"),
                Some(&request),
                Paging::None,
            )
            .await?;
        let job = parse_job(&body)?;
        debug!(object = %spec.object, job = %job.id, operation, %soql, "created Bulk API 2.0 query job");
        let total = self.wait_for_job(&spec.object, &job.id).await?;
        self.bulk_page(spec, cursor, &job.id, total, None).await
    }

    /// Returns the results page of a Bulk pull that `next` points at.
    pub(crate) async fn bulk_pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        token: BulkToken,
    ) -> Result<Page, ConnectorError> {
        let BulkToken {
            job,
            total,
            locator,
        } = token;
        self.bulk_page(spec, cursor, &job, total, Some(&locator))
            .await
    }

    /// Polls the job with growing sleeps capped at 2 s until it is `JobComplete`, and returns
    /// its row count. `Failed` and `Aborted` jobs and the configured timeout are errors.
    async fn wait_for_job(&self, object: &str, job: &str) -> Result<Option<u64>, ConnectorError> {
        let path = self.data_path(&format!("jobs/query/{job}"));
        let started = Instant::now();
        let mut delay = FIRST_POLL_DELAY;
        let mut polls = 0u32;
        loop {
            let body = self
                .api
                .request(Method::GET, &path, None, Paging::None)
                .await?;
            polls += 1;
            let status = parse_job(&body)?;
            match status.state.as_str() {
                "JobComplete" => {
                    debug!(object, job, polls, rows = ?status.number_records_processed, "Bulk API 2.0 job complete");
                    return Ok(status.number_records_processed);
                }
                "Failed" | "Aborted" => {
                    let message = status
                        .error_message
                        .unwrap_or_else(|| "no errorMessage given".to_string());
                    return Err(ConnectorError::Rejected {
                        code: "BULK_JOB_FAILED".to_string(),
                        message: format!(
                            "Bulk API 2.0 query job {job} for {object} ended {}: {message}",
                            status.state
                        ),
                    });
                }
                _ => {}
            }
            if started.elapsed() + delay > self.bulk_poll_timeout {
                // A job left running keeps counting against the org's concurrent and daily
                // Bulk query limits, and the next pull creates a new one anyway.
                let aborted = match self.abort_job(job).await {
                    Ok(()) => "it was aborted".to_string(),
                    Err(err) => {
                        warn!(object, job, error = %err, "aborting a timed-out Bulk API 2.0 query job failed");
                        format!("aborting it failed ({err}), so it may still run")
                    }
                };
                return Err(ConnectorError::Transport(format!(
                    "Bulk API 2.0 query job {job} for {object} is still {} after {:?} and \
                     {polls} polls, and {aborted}; raise bulk_timeout_secs or pull {object} over REST",
                    status.state, self.bulk_poll_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Asks Salesforce to abort the query job `job`.
    async fn abort_job(&self, job: &str) -> Result<(), ConnectorError> {
        let path = self.data_path(&format!("jobs/query/{job}"));
        self.api
            .request(
                Method::PATCH,
                &path,
                Some(&json!({"state": "Aborted"})),
                Paging::None,
            )
            .await
            .map(drop)
    }

    /// Reads one results page (the first when `locator` is `None`), checks its row count
    /// against the `Sforce-NumberOfRecords` header when the page has one, and converts it.
    async fn bulk_page(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        job: &str,
        total: Option<u64>,
        locator: Option<&str>,
    ) -> Result<Page, ConnectorError> {
        let mut path = self.data_path(&format!(
            "jobs/query/{job}/results?maxRecords={BULK_PAGE_SIZE}"
        ));
        if let Some(locator) = locator {
            let encoded: String =
                url::form_urlencoded::byte_serialize(locator.as_bytes()).collect();
            path.push_str(&format!("&locator={encoded}"));
        }
        let (headers, body) = self
            .api
            .exchange(Method::GET, &path, None, Paging::None, Some("text/csv"))
            .await?;
        let next_locator = header_text(&headers, "Sforce-Locator", job)?;
        let rows = decode_csv(&body, job)?;
        let received = rows.len().saturating_sub(1) as u64;
        let counted = headers
            .get("Sforce-NumberOfRecords")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if counted.is_some_and(|counted| counted != received) {
            return Err(ConnectorError::Payload(format!(
                "results of Bulk API 2.0 job {job} for {}: the page contains {received} rows, but \
                 its header says Sforce-NumberOfRecords {}, so the body was cut short or \
                 altered on the way; nothing from the page was returned, so run the pull again",
                spec.object,
                counted.unwrap_or_default()
            )));
        }

        self.describe_cached(&spec.object).await?;
        let mut described = Vec::new();
        let records = loop {
            // A job that matched no rows may send an empty body without a header row.
            if rows.is_empty() && counted == Some(0) {
                break Vec::new();
            }
            match convert_rows(spec, cursor, &rows, &self.cached_schemas(), job) {
                Ok(records) => break records,
                Err(ConvertError::Failed(error)) => return Err(error),
                Err(ConvertError::NeedSchema(object)) => {
                    if described.contains(&object) {
                        return Err(ConnectorError::Payload(format!(
                            "describe of {object} did not return a schema named {object}"
                        )));
                    }
                    self.describe_cached(&object).await?;
                    described.push(object);
                }
            }
        };
        let next = (next_locator != "null" && !next_locator.is_empty())
            .then(|| encode_token(job, total, &next_locator));
        debug!(
            object = %spec.object,
            job,
            received = rows.len().saturating_sub(1),
            returned = records.len(),
            last_page = next.is_none(),
            "converted Bulk API 2.0 results page"
        );
        Ok(Page {
            records,
            next,
            total,
            unordered: true,
        })
    }
}

fn parse_job(body: &[u8]) -> Result<JobWire, ConnectorError> {
    serde_json::from_slice(body).map_err(|error| {
        ConnectorError::Payload(format!(
            "a Bulk API 2.0 job request returned a body that is not a job: {error}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = encode_token("750Sb0000000001AAA", Some(25), "0000000A");
        let decoded = decode_token(&token).unwrap().unwrap();
        assert_eq!(decoded.job, "750Sb0000000001AAA");
        assert_eq!(decoded.total, Some(25));
        assert_eq!(decoded.locator, "0000000A");
        assert!(decode_token("/services/data/v59.0/query/01g-2000").is_none());
        assert!(decode_token("bulk2:bad job:1:x").unwrap().is_err());
    }

    #[test]
    fn rejections_that_rest_avoids() {
        let rejected = |code: &str, message: &str| ConnectorError::Rejected {
            code: code.to_string(),
            message: message.to_string(),
        };
        assert!(bulk_job_rejected(&rejected(
            "LIMIT_EXCEEDED",
            "Max bulk v2 query jobs (10000) per 24 hrs has been reached (10021)"
        )));
        assert!(bulk_job_rejected(&rejected(
            "INVALIDENTITY",
            "Lead is not supported by the Bulk API"
        )));
        assert!(!bulk_job_rejected(&rejected(
            "INVALIDJOB",
            "Unable to parse the query"
        )));
        assert!(!bulk_job_rejected(&ConnectorError::LimitExceeded(
            "TotalRequests Limit exceeded.".to_string()
        )));
    }

    #[test]
    fn compounds_expand_in_place() {
        let describe = br#"{"fields": [
            {"name": "Name"},
            {"name": "BillingStreet", "compoundFieldName": "BillingAddress"},
            {"name": "BillingCity", "compoundFieldName": "BillingAddress"},
            {"name": "BillingAddress", "compoundFieldName": null}
        ]}"#;
        let compounds = parse_compounds(describe);
        let fields: Vec<String> = ["Name", "billingaddress", "BillingCity"]
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            expand_compounds(&fields, &compounds),
            vec!["Name", "BillingStreet", "BillingCity"]
        );
    }

    #[test]
    fn csv_values_type_like_rest() {
        let number = FieldSchema {
            name: "Amount".to_string(),
            kind: FieldKind::Number,
            updateable: false,
            picklist_values: Vec::new(),
            restricted_picklist: false,
            length: None,
            relationship_name: None,
            reference_to: Vec::new(),
        };
        assert_eq!(rest_json(&number, Some("12000.5")).unwrap(), json!(12000.5));
        assert_eq!(rest_json(&number, None).unwrap(), Json::Null);
        assert!(rest_json(&number, Some("lots")).is_err());
        let flag = FieldSchema {
            kind: FieldKind::Boolean,
            ..number.clone()
        };
        assert_eq!(rest_json(&flag, Some("true")).unwrap(), json!(true));
        assert!(rest_json(&flag, Some("yes")).is_err());
    }
}
