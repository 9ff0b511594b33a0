//! `describe`: the canonical fields of an object, followed by the HubSpot properties of its
//! source object types under their own names.

use leadscore_connector::{ConnectorError, FieldKind, FieldSchema, ObjectSchema};

use crate::objects::Canonical;
use crate::HubSpotConnector;

/// Returns the `Rejected` error for an object this connector does not serve.
pub(crate) fn unknown_object(object: &str) -> ConnectorError {
    let names: Vec<&str> = Canonical::ALL.iter().map(|object| object.name()).collect();
    ConnectorError::Rejected {
        code: "INVALID_TYPE".to_string(),
        message: format!(
            "object {object:?} is not one the HubSpot connector maps; use one of: {}",
            names.join(", ")
        ),
    }
}

pub(crate) async fn describe(
    connector: &HubSpotConnector,
    object: &str,
) -> Result<ObjectSchema, ConnectorError> {
    let canonical = Canonical::parse(object).ok_or_else(|| unknown_object(object))?;
    let mut fields = vec![FieldSchema {
        name: "Id".to_string(),
        kind: FieldKind::Id,
        updateable: false,
        picklist_values: Vec::new(),
        restricted_picklist: false,
        length: None,
        relationship_name: None,
        reference_to: Vec::new(),
    }];

    let mut properties = Vec::new();
    for source in canonical.sources() {
        for property in connector.properties(source.object_type).await?.iter() {
            if !properties
                .iter()
                .any(|known: &crate::props::Property| known.name == property.name)
            {
                properties.push(property.clone());
            }
        }
    }
    if canonical == Canonical::Lead {
        connector.conversion_stages().await?;
    }
    let stage_labels = if canonical == Canonical::Opportunity {
        let stages = connector.stages().await?;
        let mut labels: Vec<String> = stages.values().map(|stage| stage.label.clone()).collect();
        labels.sort();
        labels.dedup();
        labels
    } else {
        Vec::new()
    };

    for field in canonical.fields() {
        let property = field
            .property
            .and_then(|name| properties.iter().find(|property| property.name == name));
        let picklist_values = match (canonical, field.name) {
            (Canonical::Opportunity, "StageName") => stage_labels.clone(),
            (Canonical::Task, "Type") => canonical
                .sources()
                .iter()
                .map(|source| source.activity_type.to_string())
                .collect(),
            (Canonical::Event, "Type") => vec!["Meeting".to_string()],
            _ => property
                .filter(|property| property.kind() == FieldKind::Picklist)
                .map(|property| property.option_values())
                .unwrap_or_default(),
        };
        let (relationship_name, reference_to) = match field.reference {
            Some((relationship, target)) => {
                (Some(relationship.to_string()), vec![target.to_string()])
            }
            None => (None, Vec::new()),
        };
        fields.push(FieldSchema {
            name: field.name.to_string(),
            kind: field.kind,
            // Canonical fields are read-only, so scores go to the portal's own properties.
            updateable: false,
            restricted_picklist: field.kind == FieldKind::Picklist,
            picklist_values,
            length: None,
            relationship_name,
            reference_to,
        });
    }
    for property in &properties {
        if !fields.iter().any(|field| field.name == property.name) {
            fields.push(property.schema());
        }
    }
    Ok(ObjectSchema {
        name: canonical.name().to_string(),
        fields,
    })
}
