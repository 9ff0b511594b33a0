//! The sObject `describe` response and its mapping to the CRM-neutral `ObjectSchema`.

use leadscore_connector::{ConnectorError, FieldKind, FieldSchema, ObjectSchema};
use serde::Deserialize;

/// Text fields longer than this are long text (Salesforce reports long and rich text areas as
/// `textarea` with a larger `length`).
const MAX_SHORT_TEXT_LENGTH: u32 = 255;

#[derive(Deserialize)]
struct DescribeWire {
    name: String,
    fields: Vec<FieldWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldWire {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default)]
    updateable: bool,
    #[serde(default)]
    length: Option<u32>,
    #[serde(default)]
    picklist_values: Option<Vec<PicklistValueWire>>,
    #[serde(default)]
    restricted_picklist: bool,
    #[serde(default)]
    relationship_name: Option<String>,
    #[serde(default)]
    reference_to: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct PicklistValueWire {
    value: String,
    #[serde(default)]
    active: bool,
}

/// Maps a Salesforce field `type` (and `length` for text areas) to a `FieldKind`.
pub(crate) fn field_kind(field_type: &str, length: Option<u32>) -> FieldKind {
    match field_type {
        "id" => FieldKind::Id,
        "reference" => FieldKind::Reference,
        "string" | "email" | "phone" | "url" => FieldKind::Text,
        "textarea" if length.unwrap_or(0) > MAX_SHORT_TEXT_LENGTH => FieldKind::LongText,
        "textarea" => FieldKind::Text,
        "picklist" => FieldKind::Picklist,
        "boolean" => FieldKind::Boolean,
        "double" | "currency" | "percent" | "int" | "long" => FieldKind::Number,
        "date" => FieldKind::Date,
        "datetime" => FieldKind::DateTime,
        _ => FieldKind::Other,
    }
}

/// Parses a describe response body into an `ObjectSchema`.
pub(crate) fn parse_describe(object: &str, body: &[u8]) -> Result<ObjectSchema, ConnectorError> {
    let wire: DescribeWire = serde_json::from_slice(body).map_err(|error| {
        ConnectorError::Payload(format!(
            "describe of {object} returned a body that is not an sObject describe result: {error}"
        ))
    })?;
    let fields = wire.fields.into_iter().map(field_schema).collect();
    Ok(ObjectSchema {
        name: wire.name,
        fields,
    })
}

fn field_schema(wire: FieldWire) -> FieldSchema {
    let kind = field_kind(&wire.field_type, wire.length);
    let picklist_values = wire
        .picklist_values
        .unwrap_or_default()
        .into_iter()
        .filter(|value| value.active)
        .map(|value| value.value)
        .collect();
    let has_length = matches!(
        kind,
        FieldKind::Text | FieldKind::LongText | FieldKind::Picklist
    );
    FieldSchema {
        name: wire.name,
        kind,
        updateable: wire.updateable,
        picklist_values,
        restricted_picklist: wire.restricted_picklist,
        length: wire.length.filter(|length| has_length && *length > 0),
        relationship_name: wire.relationship_name.filter(|name| !name.is_empty()),
        reference_to: wire.reference_to.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAD_DESCRIBE: &str = r#"{
      "name": "Lead",
      "fields": [
        {"name": "Id", "type": "id", "updateable": false, "length": 18, "picklistValues": [],
         "restrictedPicklist": false, "referenceTo": [], "relationshipName": null},
        {"name": "LS_Tier__c", "type": "picklist", "updateable": true, "length": 255,
         "restrictedPicklist": true, "referenceTo": [], "relationshipName": null,
         "picklistValues": [
           {"active": true, "value": "A", "label": "A"},
           {"active": false, "value": "Hot", "label": "Hot (old)"},
           {"active": true, "value": "B", "label": "B"}]},
        {"name": "LS_Score__c", "type": "double", "updateable": true, "length": 0,
         "picklistValues": []},
        {"name": "LS_Reasons__c", "type": "textarea", "updateable": true, "length": 32768},
        {"name": "Description", "type": "textarea", "updateable": true, "length": 255},
        {"name": "OwnerId", "type": "reference", "updateable": true, "length": 18,
         "referenceTo": ["Group", "User"], "relationshipName": "Owner"},
        {"name": "Website", "type": "url", "length": 255},
        {"name": "BillingAddress", "type": "address"},
        {"name": "ConvertedDate", "type": "date"},
        {"name": "SystemModstamp", "type": "datetime"}
      ]
    }"#;

    #[test]
    fn describe_maps_kinds_and_picklists() {
        let schema = parse_describe("Lead", LEAD_DESCRIBE.as_bytes()).unwrap();
        assert_eq!(schema.name, "Lead");
        let kind = |name: &str| schema.field(name).unwrap().kind;
        assert_eq!(kind("Id"), FieldKind::Id);
        assert_eq!(kind("LS_Tier__c"), FieldKind::Picklist);
        assert_eq!(kind("LS_Score__c"), FieldKind::Number);
        assert_eq!(kind("LS_Reasons__c"), FieldKind::LongText);
        assert_eq!(kind("Description"), FieldKind::Text);
        assert_eq!(kind("OwnerId"), FieldKind::Reference);
        assert_eq!(kind("Website"), FieldKind::Text);
        assert_eq!(kind("BillingAddress"), FieldKind::Other);
        assert_eq!(kind("ConvertedDate"), FieldKind::Date);
        assert_eq!(kind("SystemModstamp"), FieldKind::DateTime);

        let tier = schema.field("ls_tier__c").unwrap();
        assert_eq!(tier.picklist_values, vec!["A", "B"]);
        assert!(tier.restricted_picklist);
        assert!(tier.updateable);
        assert_eq!(tier.length, Some(255));

        let owner = schema.field("OwnerId").unwrap();
        assert_eq!(owner.relationship_name.as_deref(), Some("Owner"));
        assert_eq!(owner.reference_to, vec!["Group", "User"]);
        assert_eq!(owner.length, None);

        assert_eq!(schema.field("LS_Score__c").unwrap().length, None);
        assert!(!schema.field("Id").unwrap().updateable);
    }

    #[test]
    fn number_types_map_to_number() {
        for field_type in ["double", "currency", "percent", "int"] {
            assert_eq!(
                field_kind(field_type, Some(0)),
                FieldKind::Number,
                "{field_type}"
            );
        }
        for field_type in ["string", "email", "phone", "url"] {
            assert_eq!(
                field_kind(field_type, Some(80)),
                FieldKind::Text,
                "{field_type}"
            );
        }
    }

    #[test]
    fn malformed_describe_is_payload_error() {
        let error = parse_describe("Lead", b"{\"name\": \"Lead\"}").unwrap_err();
        match error {
            ConnectorError::Payload(message) => {
                assert!(message.contains("describe of Lead"), "{message}");
                assert!(message.contains("fields"), "{message}");
            }
            other => panic!("expected Payload, got {other:?}"),
        }
    }
}
