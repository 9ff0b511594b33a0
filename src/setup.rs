//! `leadscore check --fix`: creates the write-back fields the configuration names where the
//! CRM lacks them. On HubSpot these are custom properties in a `leadscore` group. On
//! Salesforce they are custom fields created through the Tooling API, which a permission set
//! then grants to the API user.

use leadscore_hubspot::{PropertyKind, PropertySetupReport, PropertySpec};
use leadscore_salesforce::{CustomFieldKind, CustomFieldReport, CustomFieldSpec, FieldAccess};
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
    /// Fields that exist with another type or without some picklist or enumeration values,
    /// with the reason. They are left alone.
    pub mismatched: Vec<String>,
    /// Salesforce: the permission set that grants the API user the fields, and whether this
    /// run created it. `None` when no field needed access granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_set: Option<PermissionSetOutcome>,
    /// Salesforce: fields this run granted the API user access to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<String>,
    /// Salesforce: whether this run assigned the permission set to the API user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub assigned: bool,
}

/// The permission set `--fix` used on Salesforce.
#[derive(Debug, Serialize)]
pub struct PermissionSetOutcome {
    pub name: String,
    pub created: bool,
}

/// API name of the permission set that grants leadscore's custom fields on Salesforce.
pub const PERMISSION_SET: &str = "Leadscore_Fields";

/// Length of the Salesforce text fields `--fix` creates: the model version and the feedback
/// comment.
const TEXT_LENGTH: u32 = 255;
/// Length of the Salesforce long text field `--fix` creates for the reasons.
const LONG_TEXT_LENGTH: u32 = 32_768;

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

/// Returns the Salesforce custom fields of every configured level: the write-back fields,
/// which the API user must read and edit, and the feedback fields, which reps edit and the
/// API user only reads.
pub fn custom_field_specs(config: &Config) -> Vec<CustomFieldSpec> {
    let feedback: Vec<(String, String)> = config
        .scoring
        .levels
        .iter()
        .flat_map(|level| feedback_specs(config, level.object()))
        .map(|spec| (spec.object, spec.name))
        .collect();
    property_specs(config)
        .into_iter()
        .map(|spec| {
            let read_only = feedback.contains(&(spec.object.clone(), spec.name.clone()));
            let kind = match spec.kind {
                PropertyKind::Number => CustomFieldKind::Number,
                PropertyKind::Enumeration(options) => CustomFieldKind::Picklist {
                    values: options.into_iter().map(|(value, _)| value).collect(),
                    restricted: true,
                },
                PropertyKind::Text => CustomFieldKind::Text {
                    length: TEXT_LENGTH,
                },
                PropertyKind::LongText => CustomFieldKind::LongText {
                    length: LONG_TEXT_LENGTH,
                },
                PropertyKind::DateTime => CustomFieldKind::DateTime,
                PropertyKind::Date => CustomFieldKind::Date,
                PropertyKind::Checkbox => CustomFieldKind::Checkbox,
            };
            CustomFieldSpec {
                object: spec.object,
                name: spec.name,
                label: spec.label,
                description: spec.description,
                kind,
                access: if read_only {
                    FieldAccess::Read
                } else {
                    FieldAccess::ReadEdit
                },
            }
        })
        .collect()
}

/// Creates the missing write-back and feedback fields, and on Salesforce grants the API user
/// access to them through the [`PERMISSION_SET`] permission set.
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
                ..FixReport::default()
            })
        }
        Crm::Salesforce(salesforce) => {
            let report = salesforce
                .ensure_custom_fields(&custom_field_specs(config), PERMISSION_SET)
                .await
                .map_err(|error| PipelineError::Setup(format!("check --fix: {error}")))?;
            Ok(fix_report(report))
        }
    }
}

fn fix_report(report: CustomFieldReport) -> FixReport {
    FixReport {
        created: report.created,
        existing: report.existing,
        mismatched: report.mismatched,
        permission_set: report.permission_set.map(|set| PermissionSetOutcome {
            name: set.name,
            created: set.created,
        }),
        granted: report.granted,
        assigned: report.assigned,
    }
}
