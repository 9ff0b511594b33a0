//! Score write-back: batch updates of at most 100 inputs, per-input results from 207
//! responses, and bisection of batches HubSpot rejects as a whole.

use std::collections::{BTreeMap, HashMap};

use leadscore_connector::{ConnectorError, RecordError, RecordUpdate, WriteOutcome};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, warn};

use crate::objects::Canonical;
use crate::transport::CallKind;
use crate::{HubSpotConnector, MAX_BATCH};

/// Batch error categories worth retrying later.
const TRANSIENT_CATEGORIES: &[&str] = &[
    "RATE_LIMIT",
    "RATE_LIMITS",
    "TIMEOUT",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
    "LOCKED",
];

/// One input ready to send: its position in the caller's slice, id and formatted properties.
#[derive(Clone, Debug)]
struct Input {
    index: usize,
    id: String,
    properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct BatchResultWire {
    id: String,
}

#[derive(Deserialize, Default)]
struct BatchErrorWire {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    context: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchResponseWire {
    #[serde(default)]
    results: Vec<BatchResultWire>,
    #[serde(default)]
    errors: Vec<BatchErrorWire>,
}

fn record_error(code: &str, message: String, fields: Vec<String>, retryable: bool) -> RecordError {
    RecordError {
        code: code.to_string(),
        message,
        fields,
        retryable,
    }
}

fn context_strings(context: &HashMap<String, serde_json::Value>, key: &str) -> Vec<String> {
    match context.get(key) {
        Some(serde_json::Value::Array(values)) => values
            .iter()
            .map(|value| match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(serde_json::Value::String(text)) => vec![text.clone()],
        _ => Vec::new(),
    }
}

pub(crate) async fn update(
    connector: &HubSpotConnector,
    updates: &[RecordUpdate],
) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; updates.len()];
    let mut by_type: BTreeMap<&'static str, Vec<Input>> = BTreeMap::new();
    for (index, update) in updates.iter().enumerate() {
        match prepare(connector, update).await? {
            Ok((object_type, properties)) => by_type.entry(object_type).or_default().push(Input {
                index,
                id: update.id.clone(),
                properties,
            }),
            Err(error) => {
                outcomes[index] = Some(WriteOutcome {
                    id: update.id.clone(),
                    result: Err(error),
                })
            }
        }
    }
    // NOTE: when a later batch fails as a whole (limit, auth, transport), the error is
    // returned and the outcomes of batches already written are lost. Rewriting the same values
    // is harmless, so callers can retry the whole call.
    for (object_type, inputs) in by_type {
        for batch in split_batches(inputs) {
            send_batch(connector, object_type, batch, &mut outcomes).await?;
        }
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| {
            outcome.ok_or_else(|| {
                ConnectorError::Payload(format!("update {index} received no result"))
            })
        })
        .collect()
}

/// Formats one update's values for its HubSpot object type, or explains why it cannot be sent.
async fn prepare(
    connector: &HubSpotConnector,
    update: &RecordUpdate,
) -> Result<
    Result<(&'static str, serde_json::Map<String, serde_json::Value>), RecordError>,
    ConnectorError,
> {
    let Some(canonical) = Canonical::parse(&update.object) else {
        return Ok(Err(record_error(
            "INVALID_TYPE",
            format!(
                "object {:?} is not one the HubSpot connector maps",
                update.object
            ),
            Vec::new(),
            false,
        )));
    };
    let Some(object_type) = canonical.writable_type() else {
        return Ok(Err(record_error(
            "INVALID_TYPE",
            format!(
                "{} records are read-only in HubSpot write-back; write to Account, Contact, Lead \
                 or Opportunity",
                canonical.name()
            ),
            Vec::new(),
            false,
        )));
    };
    if update.id.is_empty() || !update.id.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Err(record_error(
            "INVALID_ID",
            format!("{:?} is not a HubSpot record id (digits only)", update.id),
            Vec::new(),
            false,
        )));
    }
    let properties = connector.properties(object_type).await?;
    let mut formatted = serde_json::Map::new();
    for (field, value) in &update.fields {
        let name = canonical
            .field(field)
            .and_then(|field| field.property)
            .unwrap_or(field.as_str());
        let Some(property) = properties.iter().find(|property| property.name == name) else {
            return Ok(Err(record_error(
                "INVALID_FIELD",
                format!(
                    "{field} is not a property of HubSpot {object_type}; run `leadscore check \
                     --fix` to create the leadscore properties, or correct the field name"
                ),
                vec![field.clone()],
                false,
            )));
        };
        if property.read_only() || property.calculated {
            return Ok(Err(record_error(
                "READ_ONLY_VALUE",
                format!("{object_type} property {name} is read-only"),
                vec![field.clone()],
                false,
            )));
        }
        match property.format(value) {
            Ok(text) => {
                formatted.insert(name.to_string(), serde_json::Value::String(text));
            }
            Err(reason) => {
                return Ok(Err(record_error(
                    "INVALID_VALUE",
                    format!("{object_type} property {name}: {reason}"),
                    vec![field.clone()],
                    false,
                )))
            }
        }
    }
    Ok(Ok((object_type, formatted)))
}

/// Splits inputs into batches of at most `MAX_BATCH`, keeping the order and never putting
/// one id twice into a batch.
fn split_batches(inputs: Vec<Input>) -> Vec<Vec<Input>> {
    let mut batches: Vec<Vec<Input>> = Vec::new();
    for input in inputs {
        let slot = batches.iter().position(|batch| {
            batch.len() < MAX_BATCH && !batch.iter().any(|other| other.id == input.id)
        });
        // A repeated id goes to a batch after the one holding its earlier update, so the later
        // value is written last.
        let earliest = batches
            .iter()
            .rposition(|batch| batch.iter().any(|other| other.id == input.id))
            .map_or(0, |position| position + 1);
        match slot.filter(|slot| *slot >= earliest).or_else(|| {
            (earliest..batches.len()).find(|position| {
                batches[*position].len() < MAX_BATCH
                    && !batches[*position].iter().any(|other| other.id == input.id)
            })
        }) {
            Some(position) => batches[position].push(input),
            None => batches.push(vec![input]),
        }
    }
    batches
}

/// Sends one batch. A whole-batch 400 (HubSpot validates all inputs first) is bisected until
/// the inputs at fault are isolated and reported one by one.
async fn send_batch(
    connector: &HubSpotConnector,
    object_type: &str,
    batch: Vec<Input>,
    outcomes: &mut [Option<WriteOutcome>],
) -> Result<(), ConnectorError> {
    let path = format!("/crm/v3/objects/{object_type}/batch/update");
    let mut queue = vec![batch];
    while let Some(inputs) = queue.pop() {
        let body = json!({
            "inputs": inputs
                .iter()
                .map(|input| json!({"id": input.id, "properties": input.properties}))
                .collect::<Vec<_>>()
        });
        let response = connector
            .api
            .send_raw(Method::POST, &path, Some(&body), CallKind::Standard)
            .await?;
        match response {
            Ok((status, bytes)) => {
                let wire: BatchResponseWire = serde_json::from_slice(&bytes).map_err(|error| {
                    ConnectorError::Payload(format!(
                        "batch update of {object_type} returned a body this connector cannot \
                         read: {error}"
                    ))
                })?;
                apply_results(status, &inputs, wire, outcomes);
            }
            Err(error) if error.status == 400 && inputs.len() > 1 => {
                debug!(object_type, inputs = inputs.len(), category = %error.category, "batch rejected as a whole, splitting");
                let mut first = inputs;
                let second = first.split_off(first.len() / 2);
                // Popped in order: first half, then second half.
                queue.push(second);
                queue.push(first);
            }
            Err(error) if error.status == 400 || error.status == 404 => {
                for input in &inputs {
                    warn!(object_type, id = %input.id, category = %error.category, "update rejected");
                    outcomes[input.index] = Some(WriteOutcome {
                        id: input.id.clone(),
                        result: Err(record_error(
                            &error.category,
                            error.message.clone(),
                            input.properties.keys().cloned().collect(),
                            false,
                        )),
                    });
                }
            }
            Err(error) => return Err(error.into_connector_error()),
        }
    }
    Ok(())
}

/// Stores one outcome per input from a 200 or 207 body. `results` is not positional: inputs
/// are matched to results by id and to failures by `errors[].context.ids`.
fn apply_results(
    status: u16,
    inputs: &[Input],
    wire: BatchResponseWire,
    outcomes: &mut [Option<WriteOutcome>],
) {
    let succeeded: Vec<&str> = wire
        .results
        .iter()
        .map(|result| result.id.as_str())
        .collect();
    let mut failed: HashMap<String, RecordError> = HashMap::new();
    let mut unattributed = Vec::new();
    for error in &wire.errors {
        let category = error
            .category
            .clone()
            .unwrap_or_else(|| "UNKNOWN_ERROR".to_string());
        let message = error.message.clone().unwrap_or_default();
        let ids = context_strings(&error.context, "ids");
        let fields = context_strings(&error.context, "propertyName");
        let retryable = TRANSIENT_CATEGORIES.contains(&category.as_str());
        if ids.is_empty() {
            unattributed.push(format!("{category}: {message}"));
        }
        for id in ids {
            failed.entry(id).or_insert_with(|| {
                record_error(&category, message.clone(), fields.clone(), retryable)
            });
        }
    }
    let mut failures = 0;
    for input in inputs {
        let result = if let Some(error) = failed.get(&input.id) {
            Err(error.clone())
        } else if succeeded.contains(&input.id.as_str())
            || (status == 200 && wire.errors.is_empty())
        {
            Ok(())
        } else {
            Err(record_error(
                "NO_RESULT",
                if unattributed.is_empty() {
                    "HubSpot returned neither a result nor an error for this id".to_string()
                } else {
                    unattributed.join("; ")
                },
                Vec::new(),
                false,
            ))
        };
        if let Err(error) = &result {
            failures += 1;
            warn!(id = %input.id, code = %error.code, retryable = error.retryable, "record update failed");
        }
        outcomes[input.index] = Some(WriteOutcome {
            id: input.id.clone(),
            result,
        });
    }
    debug!(status, inputs = inputs.len(), failures, "batch update");
}

/// Reads `fields` of records by id with batch read, at most `MAX_BATCH` ids per request. Ids
/// HubSpot does not return (archived or unknown) are left out. A merged-away id may come back
/// as the surviving record, under the survivor's id.
pub(crate) async fn fetch(
    connector: &HubSpotConnector,
    object: &str,
    ids: &[String],
    fields: &[String],
) -> Result<Vec<leadscore_connector::Record>, ConnectorError> {
    let Some(canonical) = Canonical::parse(object) else {
        return Err(ConnectorError::Rejected {
            code: "INVALID_TYPE".to_string(),
            message: format!("object {object:?} is not one the HubSpot connector maps"),
        });
    };
    let Some(object_type) = canonical.writable_type() else {
        return Err(ConnectorError::Rejected {
            code: "INVALID_TYPE".to_string(),
            message: format!(
                "{} records cannot be read by id; read Account, Contact, Lead or Opportunity",
                canonical.name()
            ),
        });
    };
    let properties = connector.properties(object_type).await?;
    // Each requested field with its property name and kind; unknown properties read as null.
    let selected: Vec<(String, String, Option<leadscore_connector::FieldKind>)> = fields
        .iter()
        .map(|field| {
            let name = canonical
                .field(field)
                .and_then(|field| field.property)
                .unwrap_or(field.as_str())
                .to_string();
            let kind = properties
                .iter()
                .find(|property| property.name == name)
                .map(|property| property.kind());
            (field.clone(), name, kind)
        })
        .collect();
    let stamp = crate::objects::modstamp_property(object_type);
    let mut names: Vec<&str> = selected.iter().map(|(_, name, _)| name.as_str()).collect();
    names.push(stamp);
    let path = format!("/crm/v3/objects/{object_type}/batch/read");
    let mut records = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_BATCH) {
        let body = json!({
            "properties": names,
            "propertiesWithHistory": [],
            "inputs": chunk.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        });
        let page: crate::wire::ObjectPageWire = connector
            .api
            .call(Method::POST, &path, Some(&body), CallKind::Standard)
            .await?;
        for wire in page.results {
            let mut values = BTreeMap::new();
            for (field, name, kind) in &selected {
                let value = match (wire.property(name), kind) {
                    (Some(text), Some(kind)) => crate::props::parse_value(*kind, text)
                        .unwrap_or_else(|error| {
                            crate::props::report_invalid(&wire.id, name, &error);
                            leadscore_connector::Value::Null
                        }),
                    (Some(text), None) => leadscore_connector::Value::Text(text.to_string()),
                    (None, _) => leadscore_connector::Value::Null,
                };
                values.insert(field.clone(), value);
            }
            records.push(leadscore_connector::Record {
                object: object.to_string(),
                id: wire.id.clone(),
                modstamp: wire.modstamp(object_type)?,
                deleted: wire.archived,
                fields: values,
            });
        }
    }
    debug!(
        object_type,
        requested = ids.len(),
        found = records.len(),
        "batch read"
    );
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(index: usize, id: &str) -> Input {
        Input {
            index,
            id: id.to_string(),
            properties: serde_json::Map::new(),
        }
    }

    #[test]
    fn batches_never_repeat_an_id() {
        let mut inputs: Vec<Input> = (0..150).map(|i| input(i, &i.to_string())).collect();
        inputs.push(input(150, "3"));
        inputs.push(input(151, "3"));
        let batches = split_batches(inputs);
        for batch in &batches {
            assert!(batch.len() <= MAX_BATCH);
            let mut ids: Vec<&str> = batch.iter().map(|input| input.id.as_str()).collect();
            ids.sort();
            let before = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), before, "an id repeats within a batch");
        }
        let positions: Vec<usize> = batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| batch.iter().any(|input| input.id == "3"))
            .map(|(position, _)| position)
            .collect();
        assert_eq!(positions.len(), 3);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 152);
    }
}
