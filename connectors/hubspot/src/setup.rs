//! `ensure_properties`: creates the `leadscore` property group and the write-back properties
//! a portal lacks, for `leadscore check --fix`.

use leadscore_connector::{ConnectorError, FieldKind};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::objects::Canonical;
use crate::transport::CallKind;
use crate::HubSpotConnector;

/// Name of the property group the write-back properties live in.
pub const GROUP_NAME: &str = "leadscore";
const GROUP_LABEL: &str = "Leadscore";

/// The type of a property to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    Number,
    /// A single-select enumeration with these (internal value, label) options.
    Enumeration(Vec<(String, String)>),
    /// Single-line text.
    Text,
    /// Multi-line text.
    LongText,
    DateTime,
    Date,
    /// A boolean checkbox.
    Checkbox,
}

impl PropertyKind {
    fn wire_types(&self) -> (&'static str, &'static str) {
        match self {
            PropertyKind::Number => ("number", "number"),
            PropertyKind::Enumeration(_) => ("enumeration", "select"),
            PropertyKind::Text => ("string", "text"),
            PropertyKind::LongText => ("string", "textarea"),
            PropertyKind::DateTime => ("datetime", "date"),
            PropertyKind::Date => ("date", "date"),
            PropertyKind::Checkbox => ("bool", "booleancheckbox"),
        }
    }

    fn field_kind(&self) -> FieldKind {
        match self {
            PropertyKind::Number => FieldKind::Number,
            PropertyKind::Enumeration(_) => FieldKind::Picklist,
            PropertyKind::Text => FieldKind::Text,
            PropertyKind::LongText => FieldKind::LongText,
            PropertyKind::DateTime => FieldKind::DateTime,
            PropertyKind::Date => FieldKind::Date,
            PropertyKind::Checkbox => FieldKind::Boolean,
        }
    }

    fn options(&self) -> Vec<(String, String)> {
        match self {
            PropertyKind::Enumeration(options) => options.clone(),
            PropertyKind::Checkbox => vec![
                ("true".to_string(), "Yes".to_string()),
                ("false".to_string(), "No".to_string()),
            ],
            _ => Vec::new(),
        }
    }
}

/// A custom property leadscore writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertySpec {
    /// `Account`, `Contact`, `Lead` or `Opportunity`, or a HubSpot object type
    /// (`companies`, `contacts`, `deals`).
    pub object: String,
    /// Internal name, for example `leadscore_score`.
    pub name: String,
    pub label: String,
    pub kind: PropertyKind,
    pub description: String,
}

impl PropertySpec {
    /// Returns the standard write-back properties of one object: score, tier (with `tiers`
    /// as options), reasons, model version, scored-at time, and with `sales_ready` the
    /// sales-ready checkbox.
    pub fn standard(object: &str, tiers: &[&str], sales_ready: bool) -> Vec<PropertySpec> {
        let spec = |name: &str, label: &str, kind: PropertyKind, description: &str| PropertySpec {
            object: object.to_string(),
            name: name.to_string(),
            label: label.to_string(),
            kind,
            description: description.to_string(),
        };
        let tiers = tiers
            .iter()
            .map(|tier| (tier.to_string(), tier.to_string()))
            .collect();
        let mut specs = vec![
            spec(
                "leadscore_score",
                "Leadscore score",
                PropertyKind::Number,
                "Predicted score from 0 to 100, written by leadscore",
            ),
            spec(
                "leadscore_tier",
                "Leadscore tier",
                PropertyKind::Enumeration(tiers),
                "Score tier, written by leadscore",
            ),
            spec(
                "leadscore_reasons",
                "Leadscore reasons",
                PropertyKind::LongText,
                "Main reasons behind the score, written by leadscore",
            ),
            spec(
                "leadscore_model_version",
                "Leadscore model version",
                PropertyKind::Text,
                "Version of the model that computed the score",
            ),
            spec(
                "leadscore_scored_at",
                "Leadscore scored at",
                PropertyKind::DateTime,
                "When leadscore last computed the score",
            ),
        ];
        if sales_ready {
            specs.push(spec(
                "leadscore_sales_ready",
                "Leadscore sales ready",
                PropertyKind::Checkbox,
                "True when the score reaches the sales-ready threshold",
            ));
        }
        specs
    }
}

/// The outcome of `ensure_properties`, with entries as `object_type.property`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertySetupReport {
    /// Object types whose `leadscore` group was created.
    pub groups_created: Vec<String>,
    pub created: Vec<String>,
    /// Properties that existed with the expected type.
    pub existing: Vec<String>,
    /// Properties that exist with another type or lack options, with what differs. They are
    /// left unchanged.
    pub mismatched: Vec<String>,
}

#[derive(Deserialize)]
struct GroupsWire {
    results: Vec<GroupWire>,
}

#[derive(Deserialize)]
struct GroupWire {
    name: String,
}

fn object_type(object: &str) -> Result<&'static str, ConnectorError> {
    if let Some(object_type) = Canonical::parse(object).and_then(Canonical::writable_type) {
        return Ok(object_type);
    }
    ["companies", "contacts", "deals"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(object))
        .ok_or_else(|| ConnectorError::Rejected {
            code: "INVALID_TYPE".to_string(),
            message: format!(
                "property object {object:?} cannot hold leadscore properties; use Account, \
                 Contact, Lead or Opportunity"
            ),
        })
}

pub(crate) async fn ensure_properties(
    connector: &HubSpotConnector,
    specs: &[PropertySpec],
) -> Result<PropertySetupReport, ConnectorError> {
    let mut report = PropertySetupReport::default();
    let mut checked_groups: Vec<&str> = Vec::new();
    for spec in specs {
        let object_type = object_type(&spec.object)?;
        // Named the way the configuration and the `check` field table name it, with the
        // HubSpot object type beside it when the two differ (Account is stored on companies).
        let key = if spec.object == object_type {
            format!("{object_type}.{}", spec.name)
        } else {
            format!("{}.{} (HubSpot {object_type})", spec.object, spec.name)
        };
        if !checked_groups.contains(&object_type) {
            checked_groups.push(object_type);
            if ensure_group(connector, object_type).await? {
                report.groups_created.push(object_type.to_string());
            }
        }
        let properties = connector.properties(object_type).await?;
        if let Some(existing) = properties
            .iter()
            .find(|property| property.name == spec.name)
        {
            let mut problems = Vec::new();
            if existing.kind() != spec.kind.field_kind() {
                problems.push(format!(
                    "type {}/{} where {}/{} is expected",
                    existing.property_type,
                    existing.field_type,
                    spec.kind.wire_types().0,
                    spec.kind.wire_types().1
                ));
            }
            if let PropertyKind::Enumeration(options) = &spec.kind {
                let present = existing.option_values();
                let missing: Vec<&str> = options
                    .iter()
                    .map(|(value, _)| value.as_str())
                    .filter(|value| !present.iter().any(|known| known == value))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("options {} are missing", missing.join(", ")));
                }
            }
            if problems.is_empty() {
                report.existing.push(key);
            } else {
                // TODO: add missing enumeration options with a PATCH instead of reporting them.
                report
                    .mismatched
                    .push(format!("{key}: {}", problems.join("; ")));
            }
            continue;
        }
        let (property_type, field_type) = spec.kind.wire_types();
        let options: Vec<serde_json::Value> = spec
            .kind
            .options()
            .iter()
            .enumerate()
            .map(|(order, (value, label))| {
                json!({"value": value, "label": label, "displayOrder": order, "hidden": false})
            })
            .collect();
        let mut body = json!({
            "name": spec.name,
            "label": spec.label,
            "type": property_type,
            "fieldType": field_type,
            "groupName": GROUP_NAME,
            "description": spec.description,
        });
        if !options.is_empty() {
            body["options"] = serde_json::Value::Array(options);
        }
        let path = format!("/crm/v3/properties/{object_type}");
        match connector
            .api
            .send_raw(Method::POST, &path, Some(&body), CallKind::Standard)
            .await?
        {
            Ok(_) => {
                info!(property = %key, "created HubSpot property");
                report.created.push(key);
            }
            // Another process created it between the read and the create.
            Err(error) if error.status == 409 => report.existing.push(key),
            Err(error) => return Err(error.into_connector_error()),
        }
        connector.forget_properties(object_type);
    }
    Ok(report)
}

/// Creates the `leadscore` group of an object type when missing; returns true when created.
async fn ensure_group(
    connector: &HubSpotConnector,
    object_type: &str,
) -> Result<bool, ConnectorError> {
    let path = format!("/crm/v3/properties/{object_type}/groups");
    let groups: GroupsWire = connector
        .api
        .call(Method::GET, &path, None, CallKind::Standard)
        .await?;
    if groups.results.iter().any(|group| group.name == GROUP_NAME) {
        return Ok(false);
    }
    let body = json!({"name": GROUP_NAME, "label": GROUP_LABEL, "displayOrder": -1});
    match connector
        .api
        .send_raw(Method::POST, &path, Some(&body), CallKind::Standard)
        .await?
    {
        Ok(_) => {
            info!(
                object_type,
                group = GROUP_NAME,
                "created HubSpot property group"
            );
            Ok(true)
        }
        Err(error) if error.status == 409 => Ok(false),
        Err(error) => Err(error.into_connector_error()),
    }
}
