//! `leadscore check --fix`: creates the write-back fields the configuration names where the
//! CRM lacks them. On HubSpot these are custom properties in a `leadscore` group.

use leadscore_hubspot::{PropertyKind, PropertySetupReport, PropertySpec};
use serde::Serialize;

use crate::config::{Config, Level};
use crate::pipeline::PipelineError;
use crate::run::{AnyConnector, Crm};

/// The outcome of `--fix`.
#[derive(Debug, Default, Serialize)]
pub struct FixReport {
    /// Fields created, as `Object.field`.
    pub created: Vec<String>,
    /// Fields that were there already.
    pub existing: Vec<String>,
    /// Fields that exist with another type; they are left alone.
    pub mismatched: Vec<String>,
}

/// Returns the property specs of every configured level's write-back fields, named as the
/// CRM names them.
pub fn property_specs(config: &Config) -> Vec<PropertySpec> {
    let tiers: Vec<(String, String)> = config
        .tiers
        .labels
        .iter()
        .map(|t| (t.clone(), t.clone()))
        .collect();
    let mut specs = Vec::new();
    for &level in &config.scoring.levels {
        let object = level.object();
        let fields = config.writeback_for(level);
        // The CRM's own name, through the connector's field renaming.
        let crm_name = |name: &str| {
            config
                .field_map
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.to_string())
        };
        let spec = |name: &str, label: &str, kind: PropertyKind| PropertySpec {
            object: object.to_string(),
            name: crm_name(name),
            label: format!("Leadscore {label}"),
            kind,
            description: format!("{label} of this {level}, written by leadscore"),
        };
        specs.push(spec(&fields.score_field, "score", PropertyKind::Number));
        specs.push(spec(
            &fields.tier_field,
            "tier",
            PropertyKind::Enumeration(tiers.clone()),
        ));
        specs.push(spec(
            &fields.reasons_field,
            "reasons",
            PropertyKind::LongText,
        ));
        specs.push(spec(
            &fields.model_version_field,
            "model version",
            PropertyKind::Text,
        ));
        specs.push(spec(
            &fields.scored_at_field,
            "time scored",
            PropertyKind::DateTime,
        ));
        if level == Level::Lead && config.lead.sales_ready_score.is_some() {
            specs.push(spec(
                &config.lead.sales_ready_field,
                "sales-ready flag",
                PropertyKind::Checkbox,
            ));
        }
        specs.extend(feedback_specs(config, object));
    }
    specs
}

/// Returns the two properties reps flag a score with on `object`: an enumeration of
/// [`crate::feedback::FLAG_VALUES`] and a short comment. Unlike the write-back properties,
/// reps fill these in and leadscore only reads them.
fn feedback_specs(config: &Config, object: &str) -> Vec<PropertySpec> {
    let fields = crate::feedback::FeedbackFields::of(config);
    let map = crate::run::FieldMap::new(&config.field_map);
    let options: Vec<(String, String)> = crate::feedback::FLAG_VALUES
        .iter()
        .map(|value| (value.to_string(), value.to_string()))
        .collect();
    vec![
        PropertySpec {
            object: object.to_string(),
            name: map.crm(object, &fields.flag),
            label: "Leadscore feedback".to_string(),
            kind: PropertyKind::Enumeration(options),
            description: format!(
                "Set when this {}'s leadscore score looks wrong: {}",
                object.to_lowercase(),
                crate::feedback::FLAG_VALUES.join(", ")
            ),
        },
        PropertySpec {
            object: object.to_string(),
            name: map.crm(object, &fields.comment),
            label: "Leadscore feedback comment".to_string(),
            kind: PropertyKind::Text,
            description: "Why the leadscore score looks wrong, in a few words".to_string(),
        },
    ]
}

/// Creates the missing write-back fields. Salesforce custom fields are created in Setup (or
/// through the Metadata API), which this does not do yet.
pub async fn fix(connector: &AnyConnector, config: &Config) -> Result<FixReport, PipelineError> {
    match connector.crm() {
        Crm::HubSpot(hubspot) => {
            let PropertySetupReport {
                created,
                existing,
                mismatched,
                ..
            } = hubspot.ensure_properties(&property_specs(config)).await?;
            Ok(FixReport {
                created,
                existing,
                mismatched,
            })
        }
        // TODO: create Salesforce custom fields through the Tooling API's CustomField object.
        Crm::Salesforce(_) => Err(PipelineError::Config(
            "check --fix creates HubSpot properties only; create the Salesforce custom fields in Setup (check lists what is missing)".to_string(),
        )),
    }
}
