//! Checks a pull makes against the org's metadata before it reads any record: mapped fields
//! that were deleted, renamed or hidden by field-level security, and the currency fields
//! and `CurrencyType` rates of a multi-currency org.

use std::collections::BTreeMap;

use leadscore_connector::{Connector, ConnectorError, PullSpec};

use crate::config::sync::MissingFieldAction;
use crate::config::Config;
use crate::features::fields;
use crate::pipeline::{PipelineError, Schemas};
use crate::store::{Store, StoreError};

/// The field that names the currency of a record's amounts.
pub const CURRENCY_FIELD: &str = "CurrencyIsoCode";
/// The Salesforce object listing a multi-currency org's currencies and conversion rates.
pub const CURRENCY_TYPE: &str = "CurrencyType";

/// Returns the attribute fields of each object that `[sync] on_missing_field = "drop"` may
/// leave out: the configured `[[features.*]]` fields. Fields the pipeline itself needs
/// (AccountId, IsWon, the write-back fields, ...) always stop the run.
pub fn droppable_fields(config: &Config) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (object, attributes) in [
        (fields::ACCOUNT, &config.features.attributes),
        (fields::CONTACT, &config.features.contact_attributes),
        (fields::LEAD, &config.features.lead_attributes),
    ] {
        out.insert(object, attributes.iter().map(|a| a.field.clone()).collect());
    }
    out
}

/// Returns true when `field` of `object` is one the configured levels write scores to.
fn is_writeback_field(config: &Config, object: &str, field: &str) -> bool {
    config.scoring.levels.iter().any(|&level| {
        let writeback = config.writeback_for(level);
        level.object() == object
            && [
                &writeback.score_field,
                &writeback.tier_field,
                &writeback.reasons_field,
                &writeback.model_version_field,
                &writeback.scored_at_field,
            ]
            .iter()
            .any(|name| name.as_str() == field)
            || level == crate::level::Level::Lead
                && object == level.object()
                && config.lead.sales_ready_field == field
    })
}

/// Describes every object of the pull and returns the specs to pull. Mapped fields the org
/// does not offer are reported by name (stop) or removed with a warning (drop). The currency
/// field is added where the org has one, and `CurrencyType` is pulled when the org lists
/// currencies. The dropped fields are recorded in the store, so training leaves their
/// features out.
pub async fn prepare_specs<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    specs: Vec<PullSpec>,
) -> Result<Vec<PullSpec>, PipelineError> {
    let mut schemas = Schemas::new(connector);
    let droppable = droppable_fields(config);
    let action = config.sync.on_missing_field;
    let mut problems = Vec::new();
    let mut dropped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut prepared = Vec::with_capacity(specs.len() + 1);
    for mut spec in specs {
        let mut present = Vec::with_capacity(spec.fields.len());
        for field in std::mem::take(&mut spec.fields) {
            let problem = match schemas.resolve(&spec.object, &field).await? {
                Ok(_) => {
                    present.push(field);
                    continue;
                }
                Err(problem) => problem,
            };
            let may_drop = droppable
                .get(spec.object.as_str())
                .is_some_and(|list| list.contains(&field));
            if action == MissingFieldAction::Drop && may_drop {
                tracing::warn!(object = %spec.object, %field, %problem, "a mapped field is missing or hidden from this user; its feature is left out of the pull and of training");
                dropped.entry(spec.object.clone()).or_default().push(field);
            } else if is_writeback_field(config, &spec.object, &field) {
                problems.push(format!(
                    "{problem} (a field leadscore writes scores to: create it on {}, with `leadscore check --fix` where the CRM allows, and grant the integration user read and edit access)",
                    spec.object
                ));
                present.push(field);
            } else {
                let hint = if may_drop {
                    "; or set [sync] on_missing_field = \"drop\" to train without it"
                } else {
                    ""
                };
                problems.push(format!(
                    "{problem} (a deleted or renamed field, or one hidden by field-level security: grant the integration user read access){hint}"
                ));
                present.push(field);
            }
        }
        spec.fields = present;
        let currency_object = spec.object == fields::OPPORTUNITY || spec.object == fields::ACCOUNT;
        if currency_object && !spec.fields.iter().any(|f| f == CURRENCY_FIELD) {
            let has_currency = schemas
                .get(&spec.object)
                .await?
                .field(CURRENCY_FIELD)
                .is_some();
            if has_currency {
                spec.fields.push(CURRENCY_FIELD.to_string());
            }
        }
        prepared.push(spec);
    }
    if !problems.is_empty() {
        return Err(PipelineError::Mapping(problems));
    }
    match connector.describe(CURRENCY_TYPE).await {
        Ok(schema) => {
            let rate_fields = ["IsoCode", "ConversionRate", "IsCorporate"];
            if rate_fields.iter().all(|name| schema.field(name).is_some()) {
                prepared.push(PullSpec {
                    object: CURRENCY_TYPE.to_string(),
                    fields: rate_fields.map(str::to_string).to_vec(),
                    include_deleted: false,
                });
            }
        }
        // A single-currency org (and HubSpot) has no CurrencyType object.
        Err(ConnectorError::Rejected { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    store.set_dropped_fields(&dropped)?;
    Ok(prepared)
}

/// Returns the configuration training and scoring work with: the one given, without the
/// `[[features.*]]` entries whose fields the last pull dropped as missing from the org.
pub fn effective_config(store: &Store, config: &Config) -> Result<Config, StoreError> {
    let dropped = store.dropped_fields()?;
    let mut config = config.clone();
    if dropped.is_empty() {
        return Ok(config);
    }
    for (object, attributes) in [
        (fields::ACCOUNT, &mut config.features.attributes),
        (fields::CONTACT, &mut config.features.contact_attributes),
        (fields::LEAD, &mut config.features.lead_attributes),
    ] {
        if let Some(list) = dropped.get(object) {
            attributes.retain(|attribute| !list.contains(&attribute.field));
        }
    }
    Ok(config)
}

/// The fields a pull dropped, kept with the records they were dropped from.
impl Store {
    /// Records the fields the last pull left out because the org does not offer them.
    pub fn set_dropped_fields(
        &self,
        dropped: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        self.put_meta_json("dropped_fields", dropped)
    }

    /// Returns the fields the last pull left out, by object.
    pub fn dropped_fields(&self) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        Ok(self.meta_json("dropped_fields")?.unwrap_or_default())
    }
}
