//! Tasks for owners: created with `POST /crm/v3/objects/tasks/batch/create` and inline
//! associations, found again by searching for a marker word in `hs_task_body`.
//!
//! Batch create results are not positional and carry no input reference, so each result is
//! matched to its input by its `hs_task_body`, which is unique because it ends with the alert
//! key. A batch that HubSpot rejects as a whole (400) created nothing, so it is split in halves
//! until the rejected input is alone and gets the error.

use std::collections::HashMap;

use chrono::{NaiveTime, SecondsFormat};
use leadscore_connector::{ConnectorError, NewTask, RecordError, TaskLookup, TaskPriority};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tracing::{debug, warn};

use crate::transport::CallKind;
use crate::{HubSpotConnector, MAX_BATCH};

/// HubSpot's default association type ids from a task (HUBSPOT_DEFINED).
const TASK_TO_CONTACT: u32 = 204;
const TASK_TO_COMPANY: u32 = 192;
const TASK_TO_DEAL: u32 = 216;

/// Filter groups per search request; HubSpot allows five.
const GROUPS_PER_SEARCH: usize = 5;

#[derive(Deserialize)]
struct CreatedWire {
    id: String,
    #[serde(default)]
    properties: HashMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct BatchCreateWire {
    #[serde(default)]
    results: Vec<CreatedWire>,
    #[serde(default)]
    errors: Vec<BatchErrorWire>,
}

#[derive(Deserialize)]
struct BatchErrorWire {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct SearchWire {
    #[serde(default)]
    results: Vec<CreatedWire>,
}

/// Returns the association type from a task to a record of the neutral `object`.
fn association_type(object: &str) -> Result<u32, String> {
    match object {
        "Account" => Ok(TASK_TO_COMPANY),
        "Contact" | "Lead" => Ok(TASK_TO_CONTACT),
        "Opportunity" => Ok(TASK_TO_DEAL),
        other => Err(format!(
            "a task can be associated with an Account, Contact, Lead or Opportunity, not with {other:?}"
        )),
    }
}

fn priority(priority: TaskPriority) -> &'static str {
    match priority {
        TaskPriority::High => "HIGH",
        TaskPriority::Normal => "MEDIUM",
        TaskPriority::Low => "LOW",
    }
}

fn invalid(message: String) -> RecordError {
    RecordError {
        code: "INVALID_TASK".to_string(),
        message,
        fields: Vec::new(),
        retryable: false,
    }
}

/// Builds the batch create input of one task, or the error that keeps it from being sent.
fn task_input(task: &NewTask) -> Result<Json, RecordError> {
    let type_id = association_type(&task.object).map_err(invalid)?;
    let numeric = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit());
    if !numeric(&task.record_id) {
        return Err(invalid(format!(
            "{:?} is not a HubSpot record id; the task was not sent",
            task.record_id
        )));
    }
    if !numeric(&task.owner_id) {
        return Err(invalid(format!(
            "owner {:?} is not a HubSpot owner id; the task was not sent",
            task.owner_id
        )));
    }
    // The due time is 09:00 UTC of the due date.
    let due = task
        .due
        .and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
        .and_utc()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    Ok(json!({
        "properties": {
            "hs_timestamp": due,
            "hs_task_subject": task.subject,
            "hs_task_body": task.body,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": priority(task.priority),
            "hs_task_type": "TODO",
            "hubspot_owner_id": task.owner_id,
        },
        "associations": [{
            "to": {"id": task.record_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }],
    }))
}

/// Returns true when `marker` appears in `text` as a whole word of letters and digits.
fn contains_word(text: &str, marker: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == marker)
}

impl HubSpotConnector {
    /// Creates tasks in batches of at most [`MAX_BATCH`] and returns one result per task in
    /// the order given.
    pub(crate) async fn create_task_records(
        &self,
        tasks: &[NewTask],
    ) -> Result<Vec<Result<String, RecordError>>, ConnectorError> {
        let mut results: Vec<Option<Result<String, RecordError>>> = vec![None; tasks.len()];
        let mut sendable = Vec::with_capacity(tasks.len());
        for (index, task) in tasks.iter().enumerate() {
            match task_input(task) {
                Ok(input) => sendable.push((index, input)),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        let mut queue: Vec<Vec<(usize, Json)>> = sendable
            .chunks(MAX_BATCH)
            .rev()
            .map(<[_]>::to_vec)
            .collect();
        while let Some(batch) = queue.pop() {
            let body =
                json!({"inputs": batch.iter().map(|(_, input)| input.clone()).collect::<Vec<_>>()});
            let response = self
                .api
                .send_raw(
                    Method::POST,
                    "/crm/v3/objects/tasks/batch/create",
                    Some(&body),
                    CallKind::Standard,
                )
                .await?;
            match response {
                Ok((_, bytes)) => {
                    let wire: BatchCreateWire = serde_json::from_slice(&bytes).map_err(|error| {
                        ConnectorError::Payload(format!(
                            "batch create of tasks returned a body this connector cannot read: {error}"
                        ))
                    })?;
                    match_created(tasks, &batch, wire, &mut results);
                }
                Err(error) if error.status == 400 && batch.len() > 1 => {
                    debug!(inputs = batch.len(), category = %error.category, "task batch rejected as a whole, splitting");
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    queue.push(second);
                    queue.push(first);
                }
                Err(error) if error.status == 400 => {
                    for (index, _) in &batch {
                        warn!(record = %tasks[*index].record_id, category = %error.category, "task rejected");
                        results[*index] = Some(Err(RecordError {
                            code: error.category.clone(),
                            message: error.message.clone(),
                            fields: Vec::new(),
                            retryable: false,
                        }));
                    }
                }
                Err(error) => return Err(error.into_connector_error()),
            }
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

    /// Finds, per lookup, a task whose `hs_task_body` contains the marker, with CRM search.
    // NOTE: HubSpot indexes new records for search with a delay of seconds, so a task created
    // moments before the lookup may not be found yet and would be created again.
    pub(crate) async fn find_task_records(
        &self,
        lookups: &[TaskLookup],
    ) -> Result<Vec<Option<String>>, ConnectorError> {
        let mut found: Vec<Option<String>> = vec![None; lookups.len()];
        for (chunk_index, chunk) in lookups.chunks(GROUPS_PER_SEARCH).enumerate() {
            let groups: Vec<Json> = chunk
                .iter()
                .map(|lookup| {
                    json!({"filters": [{
                        "propertyName": "hs_task_body",
                        "operator": "CONTAINS_TOKEN",
                        "value": lookup.marker,
                    }]})
                })
                .collect();
            let body = json!({
                "filterGroups": groups,
                "properties": ["hs_task_body"],
                "limit": 100,
            });
            let wire: SearchWire = self
                .api
                .call(
                    Method::POST,
                    "/crm/v3/objects/tasks/search",
                    Some(&body),
                    CallKind::Search,
                )
                .await?;
            for (offset, lookup) in chunk.iter().enumerate() {
                found[chunk_index * GROUPS_PER_SEARCH + offset] = wire
                    .results
                    .iter()
                    .find(|task| {
                        task.properties
                            .get("hs_task_body")
                            .and_then(Option::as_deref)
                            .is_some_and(|text| contains_word(text, &lookup.marker))
                    })
                    .map(|task| task.id.clone());
            }
        }
        Ok(found)
    }
}

/// Stores the result of each input of a 201 or 207 batch: a created task whose body equals
/// the input's, or the batch's first error for inputs without one.
fn match_created(
    tasks: &[NewTask],
    batch: &[(usize, Json)],
    wire: BatchCreateWire,
    results: &mut [Option<Result<String, RecordError>>],
) {
    let mut by_body: HashMap<String, String> = HashMap::new();
    for created in wire.results {
        if let Some(Some(text)) = created.properties.get("hs_task_body") {
            by_body.insert(text.clone(), created.id);
        }
    }
    let error = wire.errors.first().map(|error| RecordError {
        code: error
            .category
            .clone()
            .unwrap_or_else(|| "UNKNOWN_ERROR".to_string()),
        message: error.message.clone().unwrap_or_default(),
        fields: Vec::new(),
        retryable: false,
    });
    for (index, _) in batch {
        results[*index] = Some(match by_body.remove(&tasks[*index].body) {
            Some(id) => Ok(id),
            None => Err(error.clone().unwrap_or_else(|| RecordError {
                code: "UNMATCHED_RESULT".to_string(),
                message: "HubSpot returned no created task with this task's body; the task may \
                          exist, so it is reported as failed rather than sent again"
                    .to_string(),
                fields: Vec::new(),
                retryable: false,
            })),
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn task(object: &str) -> NewTask {
        NewTask {
            object: object.to_string(),
            record_id: "5001".to_string(),
            owner_id: "41629779".to_string(),
            subject: "[leadscore] Mercy: score 84".to_string(),
            body: "Alert key: ls01".to_string(),
            due: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            priority: TaskPriority::High,
        }
    }

    #[test]
    fn company_task_input() {
        let input = task_input(&task("Account")).unwrap();
        assert_eq!(
            input["properties"]["hs_timestamp"],
            "2026-12-05T09:00:00.000Z"
        );
        assert_eq!(input["properties"]["hs_task_status"], "NOT_STARTED");
        assert_eq!(input["properties"]["hs_task_priority"], "HIGH");
        assert_eq!(input["properties"]["hubspot_owner_id"], "41629779");
        assert_eq!(input["associations"][0]["to"]["id"], "5001");
        assert_eq!(
            input["associations"][0]["types"][0]["associationTypeId"],
            TASK_TO_COMPANY
        );
    }

    #[test]
    fn contact_and_lead_use_contact_association() {
        for object in ["Contact", "Lead"] {
            let input = task_input(&task(object)).unwrap();
            assert_eq!(
                input["associations"][0]["types"][0]["associationTypeId"],
                TASK_TO_CONTACT
            );
        }
    }

    #[test]
    fn bad_owner_is_not_sent() {
        let mut bad = task("Account");
        bad.owner_id = "005ABC".to_string();
        assert_eq!(task_input(&bad).unwrap_err().code, "INVALID_TASK");
    }
}
