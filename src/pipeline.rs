//! The steps that talk to the CRM before training: `check` (credentials and mapping against
//! the org's metadata) and `pull` (incremental, page by page into the store).

use std::collections::BTreeMap;

use leadscore_connector::{
    ApiUsage, Connector, ConnectorError, Cursor, FieldKind, ObjectSchema, PullSpec,
};
use serde::Serialize;

use crate::config::Config;
use crate::features::fields;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the configuration does not match the org:\n{}", .0.join("\n"))]
    Mapping(Vec<String>),
    #[error("{0}")]
    Model(String),
}

/// The objects pulled, in the order they are pulled, with the fields the pipeline needs.
pub fn pull_specs(config: &Config) -> Vec<PullSpec> {
    // queryAll, because Salesforce's plain query skips archived tasks and events (activities
    // older than about a year) and deleted rows; deleted rows then leave the store.
    let spec = |object: &str, fields: &[&str]| PullSpec {
        object: object.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        include_deleted: true,
    };
    let mut account = spec(
        fields::ACCOUNT,
        &[
            "Name",
            "OwnerId",
            "Owner.IsActive",
            "ParentId",
            "CreatedDate",
        ],
    );
    for attribute in &config.features.attributes {
        if !account.fields.contains(&attribute.field) {
            account.fields.push(attribute.field.clone());
        }
    }
    let mut contact = spec(fields::CONTACT, &["AccountId", "OwnerId", "CreatedDate"]);
    contact.fields.push(config.features.role_field.clone());
    vec![
        spec(fields::USER, &["Name", "Email", "IsActive"]),
        account,
        contact,
        spec(
            fields::OPPORTUNITY,
            &[
                "AccountId",
                "OwnerId",
                "StageName",
                "IsClosed",
                "IsWon",
                "CloseDate",
                "CreatedDate",
            ],
        ),
        spec(
            fields::CONTACT_ROLE,
            &["OpportunityId", "ContactId", "Role", "CreatedDate"],
        ),
        spec(
            fields::TASK,
            &["WhoId", "WhatId", "Type", "ActivityDate", "CreatedDate"],
        ),
        spec(
            fields::EVENT,
            &["WhoId", "WhatId", "Type", "StartDateTime", "CreatedDate"],
        ),
    ]
}

/// What `check` found.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub api_usage: ApiUsage,
    /// Object name and the number of fields verified on it.
    pub objects: Vec<(String, usize)>,
    /// Maximum length of the reasons field, used to truncate reasons.
    pub reasons_max_len: Option<u32>,
}

/// Describes every object the configuration uses, caching each describe once.
struct Schemas<'c, C> {
    connector: &'c C,
    cache: BTreeMap<String, ObjectSchema>,
}

impl<'c, C: Connector> Schemas<'c, C> {
    async fn get(&mut self, object: &str) -> Result<&ObjectSchema, ConnectorError> {
        if !self.cache.contains_key(object) {
            let schema = self.connector.describe(object).await?;
            self.cache.insert(object.to_string(), schema);
        }
        Ok(&self.cache[object])
    }

    /// Resolves a possibly dotted field (`Owner.IsActive`) and returns a problem when the org
    /// does not have it.
    async fn resolve(
        &mut self,
        object: &str,
        path: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let mut current = object.to_string();
        let parts: Vec<&str> = path.split('.').collect();
        for (index, part) in parts.iter().enumerate() {
            let schema = self.get(&current).await?;
            let last = index + 1 == parts.len();
            if last {
                if schema.field(part).is_none() {
                    return Ok(Some(missing_field_message(schema, part, path)));
                }
                return Ok(None);
            }
            let reference = schema.fields.iter().find(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(part))
            });
            match reference.and_then(|f| f.reference_to.first()) {
                Some(target) => current = target.clone(),
                None => {
                    return Ok(Some(format!(
                        "{current} has no relationship named {part:?} (in {path:?})"
                    )))
                }
            }
        }
        Ok(None)
    }
}

fn missing_field_message(schema: &ObjectSchema, field: &str, path: &str) -> String {
    let lower = field.to_ascii_lowercase();
    let stem: String = lower.chars().take(4).collect();
    let similar: Vec<&str> = schema
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| name.to_ascii_lowercase().contains(&stem))
        .take(5)
        .collect();
    let hint = if similar.is_empty() {
        String::new()
    } else {
        format!("; similar fields: {}", similar.join(", "))
    };
    format!(
        "{} has no field {field:?} (in {path:?}); fix the field name in the config or create the field{hint}",
        schema.name
    )
}

/// Authenticates and verifies that every configured field exists and every write-back field
/// is updateable. All problems are reported together.
pub async fn check<C: Connector>(
    connector: &C,
    config: &Config,
) -> Result<CheckReport, PipelineError> {
    let api_usage = connector.check().await?;
    let mut schemas = Schemas {
        connector,
        cache: BTreeMap::new(),
    };
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    for spec in pull_specs(config) {
        for field in &spec.fields {
            if let Some(problem) = schemas.resolve(&spec.object, field).await? {
                problems.push(problem);
            }
        }
        objects.push((spec.object.clone(), spec.fields.len()));
    }

    let account = schemas.get(fields::ACCOUNT).await?.clone();
    let writeback = &config.writeback;
    let expected = [
        ("score_field", &writeback.score_field, FieldKind::Number),
        ("tier_field", &writeback.tier_field, FieldKind::Picklist),
        (
            "reasons_field",
            &writeback.reasons_field,
            FieldKind::LongText,
        ),
        (
            "model_version_field",
            &writeback.model_version_field,
            FieldKind::Text,
        ),
        (
            "scored_at_field",
            &writeback.scored_at_field,
            FieldKind::DateTime,
        ),
    ];
    let mut reasons_max_len = None;
    for (key, name, kind) in expected {
        let Some(field) = account.field(name) else {
            problems.push(format!(
                "[writeback] {key}: Account has no field {name:?}; create the custom field or fix the name"
            ));
            continue;
        };
        if !field.updateable {
            problems.push(format!(
                "[writeback] {key}: Account.{name} is not updateable by this user; grant field-level edit access"
            ));
        }
        let text_ok = matches!(
            field.kind,
            FieldKind::Text | FieldKind::LongText | FieldKind::Picklist
        );
        let kind_ok = match kind {
            FieldKind::LongText | FieldKind::Text | FieldKind::Picklist => text_ok,
            other => field.kind == other,
        };
        if !kind_ok {
            problems.push(format!(
                "[writeback] {key}: Account.{name} is a {:?} field, expected {kind:?}",
                field.kind
            ));
        }
        if key == "reasons_field" {
            reasons_max_len = field.length;
        }
        if key == "tier_field" && field.restricted_picklist {
            for label in &config.tiers.labels {
                if !field.picklist_values.contains(label) {
                    problems.push(format!(
                        "[tiers] labels: {label:?} is not an active value of the restricted picklist Account.{name} (active values: {}); change the label or add the value",
                        field.picklist_values.join(", ")
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(PipelineError::Mapping(problems));
    }
    Ok(CheckReport {
        api_usage,
        objects,
        reasons_max_len,
    })
}

/// Records pulled for one object.
#[derive(Debug, Serialize)]
pub struct ObjectPull {
    pub object: String,
    pub pulled: usize,
    pub stored: usize,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub objects: Vec<ObjectPull>,
    pub pulled: usize,
}

/// How many times a pull restarts from the stored cursor after its query locator expired.
const LOCATOR_RESTARTS: usize = 3;

/// Pulls every object incrementally. Each page is stored together with the cursor it moves
/// to, so an interrupted pull resumes after the last stored page.
pub async fn pull<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
) -> Result<PullReport, PipelineError> {
    let mut objects = Vec::new();
    for spec in pull_specs(config) {
        let pulled = pull_object(connector, store, &spec).await?;
        let stored = store.record_count(&spec.object)?;
        tracing::info!(object = %spec.object, pulled, stored, "pulled");
        objects.push(ObjectPull {
            object: spec.object.clone(),
            pulled,
            stored,
        });
    }
    let pulled = objects.iter().map(|o| o.pulled).sum();
    Ok(PullReport { objects, pulled })
}

async fn pull_object<C: Connector>(
    connector: &C,
    store: &Store,
    spec: &PullSpec,
) -> Result<usize, PipelineError> {
    let mut pulled = 0;
    let mut restarts = 0;
    loop {
        let start = store.cursor(&spec.object)?;
        match pull_pages(connector, store, spec, start.as_ref(), &mut pulled).await {
            Err(PipelineError::Connector(ConnectorError::LocatorExpired(message)))
                if restarts < LOCATOR_RESTARTS =>
            {
                restarts += 1;
                tracing::warn!(object = %spec.object, restarts, %message, "query locator expired; restarting from the stored cursor");
            }
            other => return other.map(|()| pulled),
        }
    }
}

async fn pull_pages<C: Connector>(
    connector: &C,
    store: &Store,
    spec: &PullSpec,
    start: Option<&Cursor>,
    pulled: &mut usize,
) -> Result<(), PipelineError> {
    let mut page = connector.pull_first(spec, start).await?;
    loop {
        // NOTE: a record edited while a pull is paging can come back with its new stamp and
        // move the cursor past a concurrent edit that the query's snapshot did not include.
        // Records at exactly the starting stamp are fetched again on purpose (a record that
        // committed later with a tied stamp must not be lost); the ones already stored at
        // that stamp are dropped here.
        if let Some(start) = start {
            let mut kept = Vec::with_capacity(page.records.len());
            for record in page.records.drain(..) {
                let tied = record.modstamp == start.modstamp;
                if tied && store.stored_modstamp(&spec.object, &record.id)? == Some(record.modstamp)
                {
                    continue;
                }
                kept.push(record);
            }
            page.records = kept;
        }
        if let Some(last) = page.records.last() {
            let cursor = Cursor {
                modstamp: last.modstamp,
                id: last.id.clone(),
            };
            store.save_page(&spec.object, &page.records, &cursor)?;
            *pulled += page.records.len();
        }
        match page.next.take() {
            Some(next) => page = connector.pull_next(spec, start, &next).await?,
            None => return Ok(()),
        }
    }
}
