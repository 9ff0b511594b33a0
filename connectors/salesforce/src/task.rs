//! Tasks for users: created with sObject Collections create, found again by a marker word in
//! their `Description` through SOQL.
//!
//! A task on an account sets `WhatId`, and a task on a contact or lead sets `WhoId` only,
//! because a lead task cannot also name an account or opportunity. `Description` is a long text area,
//! which SOQL cannot filter on, so the lookup selects the recent tasks of the records and
//! matches the marker locally.

use std::collections::HashMap;

use chrono::SecondsFormat;
use leadscore_connector::{ConnectorError, NewTask, RecordError, TaskLookup, TaskPriority};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tracing::debug;

use crate::transport::Paging;
use crate::write::{record_error, SaveErrorWire, SaveResultWire, MAX_BATCH};

/// Record ids per lookup query, which keeps the query URL well under Salesforce's limit.
const IDS_PER_QUERY: usize = 100;

/// The `Status` of a new task, from the standard picklist.
const OPEN_STATUS: &str = "Not Started";

#[derive(Deserialize)]
struct CreateResultWire {
    #[serde(default)]
    id: Option<String>,
    success: bool,
    #[serde(default)]
    errors: Vec<SaveErrorWire>,
}

#[derive(Deserialize)]
struct QueryPageWire {
    records: Vec<TaskRowWire>,
    #[serde(rename = "nextRecordsUrl", default)]
    next_records_url: Option<String>,
}

#[derive(Deserialize)]
struct TaskRowWire {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "WhatId", default)]
    what_id: Option<String>,
    #[serde(rename = "WhoId", default)]
    who_id: Option<String>,
    #[serde(rename = "Description", default)]
    description: Option<String>,
}

/// Returns the field that links a task to a record of `object`.
fn link_field(object: &str) -> Result<&'static str, String> {
    match object {
        "Account" | "Opportunity" => Ok("WhatId"),
        "Contact" | "Lead" => Ok("WhoId"),
        other => Err(format!(
            "a task can be attached to an Account, Opportunity, Contact or Lead, not to {other:?}"
        )),
    }
}

/// Returns true for a Salesforce record id: 15 or 18 letters and digits.
fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric())
}

fn priority(priority: TaskPriority) -> &'static str {
    match priority {
        TaskPriority::High => "High",
        TaskPriority::Normal => "Normal",
        TaskPriority::Low => "Low",
    }
}

/// Builds the collection record of one task, or the error that keeps it from being sent.
fn task_json(task: &NewTask) -> Result<Json, RecordError> {
    let invalid = |message: String| RecordError {
        code: "INVALID_TASK".to_string(),
        message,
        fields: Vec::new(),
        retryable: false,
    };
    let link = link_field(&task.object).map_err(invalid)?;
    if !is_record_id(&task.record_id) {
        return Err(invalid(format!(
            "{:?} is not a Salesforce record id; the task was not sent",
            task.record_id
        )));
    }
    if !is_record_id(&task.owner_id) {
        return Err(invalid(format!(
            "owner {:?} is not a Salesforce user id; the task was not sent",
            task.owner_id
        )));
    }
    let mut record = json!({
        "attributes": {"type": "Task"},
        "OwnerId": task.owner_id,
        "Subject": task.subject,
        "Description": task.body,
        "ActivityDate": task.due.format("%Y-%m-%d").to_string(),
        "Status": OPEN_STATUS,
        "Priority": priority(task.priority),
    });
    record[link] = Json::String(task.record_id.clone());
    Ok(record)
}

impl crate::SalesforceConnector {
    /// Creates tasks with `POST /composite/sobjects`, at most [`MAX_BATCH`] per request, and
    /// returns one result per task in the order given.
    pub(crate) async fn create_task_records(
        &self,
        tasks: &[NewTask],
    ) -> Result<Vec<Result<String, RecordError>>, ConnectorError> {
        let mut results: Vec<Option<Result<String, RecordError>>> = vec![None; tasks.len()];
        let mut sendable = Vec::with_capacity(tasks.len());
        for (index, task) in tasks.iter().enumerate() {
            match task_json(task) {
                Ok(json) => sendable.push((index, json)),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        let path = self.data_path("composite/sobjects");
        for batch in sendable.chunks(MAX_BATCH) {
            let records: Vec<Json> = batch.iter().map(|(_, json)| json.clone()).collect();
            let body = json!({"allOrNone": false, "records": records});
            let response = self
                .api
                .request(Method::POST, &path, Some(&body), Paging::None)
                .await?;
            let created: Vec<CreateResultWire> =
                serde_json::from_slice(&response).map_err(|error| {
                    ConnectorError::Payload(format!(
                        "sObject Collections create returned a body that is not an array of save results: {error}"
                    ))
                })?;
            if created.len() != batch.len() {
                return Err(ConnectorError::Payload(format!(
                    "sObject Collections create returned {} results for {} tasks, so the results \
                     cannot be matched to tasks",
                    created.len(),
                    batch.len()
                )));
            }
            for ((index, _), result) in batch.iter().zip(created) {
                results[*index] = Some(match (result.success, result.id) {
                    (true, Some(id)) => Ok(id),
                    (success, _) => Err(record_error(&SaveResultWire {
                        success,
                        errors: result.errors,
                    })),
                });
            }
            debug!(tasks = batch.len(), "created tasks");
        }
        results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.ok_or_else(|| {
                    ConnectorError::Payload(format!("task {index} received no result"))
                })
            })
            .collect()
    }

    /// Finds, per lookup, a task on the record created after `created_after` whose
    /// `Description` contains the marker.
    pub(crate) async fn find_task_records(
        &self,
        lookups: &[TaskLookup],
    ) -> Result<Vec<Option<String>>, ConnectorError> {
        let mut found: Vec<Option<String>> = vec![None; lookups.len()];
        let mut by_field: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (index, lookup) in lookups.iter().enumerate() {
            let link = link_field(&lookup.object).map_err(|message| ConnectorError::Rejected {
                code: "INVALID_TASK".to_string(),
                message,
            })?;
            if is_record_id(&lookup.record_id) {
                by_field.entry(link).or_default().push(index);
            }
        }
        for (field, indexes) in by_field {
            for chunk in indexes.chunks(IDS_PER_QUERY) {
                let since = chunk
                    .iter()
                    .map(|&index| lookups[index].created_after)
                    .min()
                    .unwrap_or_default();
                let ids: Vec<String> = chunk
                    .iter()
                    .map(|&index| format!("'{}'", lookups[index].record_id))
                    .collect();
                let soql = format!(
                    "SELECT Id, WhatId, WhoId, Description FROM Task WHERE {field} IN ({}) \
                     AND CreatedDate >= {} ORDER BY Id",
                    ids.join(", "),
                    since.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
                let rows = self.query_tasks(&soql).await?;
                for &index in chunk {
                    let lookup = &lookups[index];
                    found[index] = rows
                        .iter()
                        .filter(|row| {
                            let linked = if field == "WhatId" {
                                &row.what_id
                            } else {
                                &row.who_id
                            };
                            linked.as_deref() == Some(lookup.record_id.as_str())
                        })
                        .find(|row| {
                            row.description
                                .as_deref()
                                .is_some_and(|text| contains_word(text, &lookup.marker))
                        })
                        .map(|row| row.id.clone());
                }
            }
        }
        Ok(found)
    }

    /// Runs a Task query and reads every page.
    async fn query_tasks(&self, soql: &str) -> Result<Vec<TaskRowWire>, ConnectorError> {
        let mut path = crate::soql::query_path(&self.api_version, soql, false);
        let mut rows = Vec::new();
        loop {
            let body = self
                .api
                .request(Method::GET, &path, None, Paging::Query)
                .await?;
            let page: QueryPageWire = serde_json::from_slice(&body).map_err(|error| {
                ConnectorError::Payload(format!(
                    "the Task query returned a body that is not a query page: {error}"
                ))
            })?;
            rows.extend(page.records);
            match page.next_records_url {
                Some(next) => path = next,
                None => return Ok(rows),
            }
        }
    }
}

/// Returns true when `marker` appears in `text` as a whole word of letters and digits.
fn contains_word(text: &str, marker: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == marker)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn task(object: &str) -> NewTask {
        NewTask {
            object: object.to_string(),
            record_id: "001000000000001AAA".to_string(),
            owner_id: "005000000000001AAA".to_string(),
            subject: "[leadscore] Mercy: score 84".to_string(),
            body: "Alert key: ls01".to_string(),
            due: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            priority: TaskPriority::High,
        }
    }

    #[test]
    fn account_task_sets_what_id() {
        let json = task_json(&task("Account")).unwrap();
        assert_eq!(json["WhatId"], "001000000000001AAA");
        assert!(json.get("WhoId").is_none());
        assert_eq!(json["Status"], "Not Started");
        assert_eq!(json["Priority"], "High");
        assert_eq!(json["ActivityDate"], "2026-12-05");
        assert_eq!(json["attributes"]["type"], "Task");
    }

    #[test]
    fn lead_task_sets_who_id_only() {
        let json = task_json(&task("Lead")).unwrap();
        assert_eq!(json["WhoId"], "001000000000001AAA");
        assert!(json.get("WhatId").is_none());
    }

    #[test]
    fn bad_ids_are_not_sent() {
        let mut bad = task("Account");
        bad.record_id = "001' OR Id != '".to_string();
        assert_eq!(task_json(&bad).unwrap_err().code, "INVALID_TASK");
        assert!(task_json(&task("Case")).is_err());
    }

    #[test]
    fn marker_matches_whole_words() {
        assert!(contains_word("text\nAlert key: ls01", "ls01"));
        assert!(!contains_word("Alert key: ls012", "ls01"));
    }
}
