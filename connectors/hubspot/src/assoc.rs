//! Associations v4 batch reads, with per-id paging and one entry per associated record.

use std::collections::HashMap;

use leadscore_connector::ConnectorError;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use crate::transport::{Api, CallKind};
use crate::wire::{compare_ids, id_from_string_or_number, PagingWire};

/// Inputs per batch read, matching the 100-input limit of CRM batch calls.
const BATCH_INPUTS: usize = 100;

/// One associated record with every association type it is linked by.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Target {
    pub id: String,
    pub type_ids: Vec<i64>,
    /// Non-empty labels, in the order HubSpot listed them.
    pub labels: Vec<String>,
}

impl Target {
    pub fn has_label(&self, wanted: &str) -> bool {
        self.labels
            .iter()
            .any(|label| label.eq_ignore_ascii_case(wanted))
    }
}

/// Associated records per source id, each list sorted by target id.
pub(crate) type Associations = HashMap<String, Vec<Target>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeWire {
    #[serde(default)]
    type_id: i64,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToWire {
    #[serde(deserialize_with = "id_from_string_or_number")]
    to_object_id: String,
    #[serde(default)]
    association_types: Vec<TypeWire>,
}

#[derive(Deserialize)]
struct FromWire {
    #[serde(deserialize_with = "id_from_string_or_number")]
    id: String,
}

#[derive(Deserialize)]
struct ResultWire {
    from: FromWire,
    #[serde(default)]
    to: Vec<ToWire>,
    #[serde(default)]
    paging: Option<PagingWire>,
}

#[derive(Deserialize)]
struct BatchWire {
    #[serde(default)]
    results: Vec<ResultWire>,
}

/// Reads the associations from `from_type` records `ids` to `to_type`, following each id's
/// paging until its list is complete. A target listed under several labels, or on several
/// pages, appears once with all its labels. Ids without associations are absent.
pub(crate) async fn read(
    api: &Api,
    from_type: &str,
    to_type: &str,
    ids: &[String],
) -> Result<Associations, ConnectorError> {
    let path = format!("/crm/v4/associations/{from_type}/{to_type}/batch/read");
    let mut found: Associations = HashMap::new();
    let mut pending: Vec<(String, Option<String>)> =
        ids.iter().map(|id| (id.clone(), None)).collect();
    pending.dedup();
    let mut requests = 0;
    while !pending.is_empty() {
        let mut next_round = Vec::new();
        for chunk in pending.chunks(BATCH_INPUTS) {
            let inputs: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(id, after)| match after {
                    Some(after) => json!({"id": id, "after": after}),
                    None => json!({"id": id}),
                })
                .collect();
            let body = json!({ "inputs": inputs });
            let batch: BatchWire = api
                .call(Method::POST, &path, Some(&body), CallKind::Standard)
                .await?;
            requests += 1;
            for result in batch.results {
                let targets = found.entry(result.from.id.clone()).or_default();
                for to in result.to {
                    merge_target(targets, to);
                }
                if let Some(after) = PagingWire::after(&result.paging) {
                    next_round.push((result.from.id, Some(after)));
                }
            }
        }
        pending = next_round;
    }
    for targets in found.values_mut() {
        targets.sort_by(|a, b| compare_ids(&a.id, &b.id));
    }
    debug!(
        from_type,
        to_type,
        ids = ids.len(),
        requests,
        "read associations"
    );
    Ok(found)
}

fn merge_target(targets: &mut Vec<Target>, to: ToWire) {
    let index = match targets.iter().position(|t| t.id == to.to_object_id) {
        Some(index) => index,
        None => {
            targets.push(Target {
                id: to.to_object_id.clone(),
                ..Target::default()
            });
            targets.len() - 1
        }
    };
    let target = &mut targets[index];
    for kind in to.association_types {
        if !target.type_ids.contains(&kind.type_id) {
            target.type_ids.push(kind.type_id);
        }
        if let Some(label) = kind.label.filter(|label| !label.trim().is_empty()) {
            if !target.labels.contains(&label) {
                target.labels.push(label);
            }
        }
    }
}
