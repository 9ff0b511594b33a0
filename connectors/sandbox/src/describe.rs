//! Field and object metadata in the shape of the REST `describe` and `describeGlobal` calls.

use serde_json::{json, Value as Json};

use crate::schema::{FieldDef, FieldType, ObjectDef};

/// Returns a display label for a field derived from its API name, as an admin would name it:
/// `BillingCity` becomes "Billing City", `LS_Tier__c` "LS Tier", `OwnerId` "Owner ID".
pub(crate) fn label(api_name: &str) -> String {
    let base = api_name.strip_suffix("__c").unwrap_or(api_name);
    let (base, id_suffix) = match base.strip_suffix("Id") {
        Some(stem) if !stem.is_empty() && !base.contains('_') => (stem, true),
        _ => (base, false),
    };
    let mut words: Vec<String> = Vec::new();
    for part in base.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<char> = part.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            // Split before an upper-case letter that starts a new word: "BillingCity", but
            // keep runs such as "CMS" or "LS" together.
            let starts_word = i > 0
                && c.is_ascii_uppercase()
                && (chars[i - 1].is_ascii_lowercase()
                    || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
                        && chars[i - 1].is_ascii_uppercase());
            if starts_word && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.push(c);
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    if id_suffix {
        words.push("ID".to_string());
    }
    words.join(" ")
}

/// Returns whether Salesforce requires a value in the field when a record is saved. The list
/// contains the standard required fields of the modelled objects. Custom fields are optional.
pub(crate) fn is_required(object: &str, field: &str) -> bool {
    const REQUIRED: &[(&str, &str)] = &[
        ("User", "Name"),
        ("Account", "Name"),
        ("Contact", "LastName"),
        ("Lead", "LastName"),
        ("Lead", "Company"),
        ("Lead", "Status"),
        ("Opportunity", "Name"),
        ("Opportunity", "StageName"),
        ("Opportunity", "CloseDate"),
        ("OpportunityContactRole", "OpportunityId"),
        ("OpportunityContactRole", "ContactId"),
        ("Task", "Status"),
        ("Task", "Priority"),
        ("PermissionSet", "Name"),
        ("PermissionSet", "Label"),
        ("FieldPermissions", "ParentId"),
        ("FieldPermissions", "SobjectType"),
        ("FieldPermissions", "Field"),
        ("PermissionSetAssignment", "PermissionSetId"),
        ("PermissionSetAssignment", "AssigneeId"),
    ];
    field == "OwnerId" || REQUIRED.contains(&(object, field))
}

/// Returns whether a field accepts null. Checkboxes, system fields and required fields do not.
pub(crate) fn nillable(object: &ObjectDef, field: &FieldDef) -> bool {
    let system = matches!(
        field.name,
        "Id" | "IsDeleted" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp"
    );
    field.field_type != FieldType::Boolean && !system && !is_required(object.name, field.name)
}

/// Returns whether the API may set the field on insert, which is true of every updateable field.
fn createable(field: &FieldDef) -> bool {
    field.updateable
}

fn precision_and_scale(field_type: FieldType) -> (u32, u32, u32) {
    // (precision, scale, digits) as describe reports them for the default field sizes.
    match field_type {
        FieldType::Double | FieldType::Currency => (18, 2, 0),
        FieldType::Int => (0, 0, 9),
        _ => (0, 0, 0),
    }
}

fn soap_type(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::Id | FieldType::Reference => "tns:ID",
        FieldType::Boolean => "xsd:boolean",
        FieldType::Double | FieldType::Currency => "xsd:double",
        FieldType::Int => "xsd:int",
        FieldType::Date => "xsd:date",
        FieldType::Datetime => "xsd:dateTime",
        FieldType::Address => "urn:address",
        _ => "xsd:string",
    }
}

fn describe_field(object: &ObjectDef, field: &FieldDef) -> Json {
    let (precision, scale, digits) = precision_and_scale(field.field_type);
    // Compound fields can be selected but not filtered, sorted or grouped, like long text.
    let long_text = (field.field_type == FieldType::Textarea && field.length > 255)
        || field.field_type == FieldType::Address;
    let compound_name = crate::schema::compound_of(object, field.name).map(|c| c.name);
    let picklist: Vec<Json> = field
        .picklist
        .iter()
        .map(|(value, active)| {
            json!({
                "active": active,
                "defaultValue": false,
                "label": value,
                "validFor": null,
                "value": value,
            })
        })
        .collect();
    let (reference_to, relationship_name) = match &field.relationship {
        Some((name, targets)) => (json!(targets), json!(name)),
        None => (json!([]), Json::Null),
    };
    let text_like = matches!(
        field.field_type,
        FieldType::String | FieldType::Textarea | FieldType::Picklist | FieldType::Email
    );
    json!({
        "name": field.name,
        "label": label(field.name),
        "type": field.field_type.api_name(),
        "soapType": soap_type(field.field_type),
        "custom": field.name.ends_with("__c"),
        "updateable": field.updateable,
        "createable": createable(field),
        "nillable": nillable(object, field),
        "defaultedOnCreate": matches!(field.name, "Id" | "IsDeleted" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp" | "OwnerId")
            || field.field_type == FieldType::Boolean,
        "calculated": false,
        "externalId": false,
        "unique": false,
        "idLookup": field.name == "Id",
        "filterable": !long_text,
        "sortable": !long_text,
        "groupable": !long_text && field.field_type != FieldType::Double,
        "length": field.length,
        "byteLength": if text_like || field.field_type == FieldType::Id || field.field_type == FieldType::Reference { field.length * 3 } else { 0 },
        "precision": precision,
        "scale": scale,
        "digits": digits,
        "picklistValues": picklist,
        "restrictedPicklist": field.restricted,
        "referenceTo": reference_to,
        "relationshipName": relationship_name,
        "compoundFieldName": compound_name,
        "polymorphicForeignKey": field.relationship.as_ref().is_some_and(|(_, t)| t.len() > 1),
    })
}

fn object_urls(object: &ObjectDef, version: &str) -> Json {
    let base = format!("/services/data/{version}/sobjects/{}", object.name);
    json!({
        "sobject": base,
        "describe": format!("{base}/describe"),
        "rowTemplate": format!("{base}/{{ID}}"),
    })
}

/// Builds the object-level attributes shared by `describeGlobal` entries and `describe`.
pub(crate) fn object_summary(object: &ObjectDef, version: &str) -> Json {
    json!({
        "name": object.name,
        "label": label(object.name),
        "labelPlural": format!("{}s", label(object.name)),
        "keyPrefix": object.key_prefix,
        "custom": false,
        "queryable": true,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "replicateable": true,
        "retrieveable": true,
        "searchable": true,
        "urls": object_urls(object, version),
    })
}

/// Builds the body of `GET /sobjects/{Object}/describe`.
pub(crate) fn describe_object(object: &ObjectDef, version: &str) -> Json {
    let mut body = object_summary(object, version);
    if let Json::Object(map) = &mut body {
        let fields: Vec<Json> = object
            .fields
            .iter()
            .map(|f| describe_field(object, f))
            .collect();
        map.insert("fields".into(), Json::Array(fields));
        // NOTE: child relationships are not modelled, because the sandbox rejects child
        // subqueries; the list is always empty.
        map.insert("childRelationships".into(), json!([]));
    }
    body
}

/// Builds the body of `GET /sobjects/` (describeGlobal).
pub(crate) fn describe_global(objects: &[&ObjectDef], version: &str) -> Json {
    let sobjects: Vec<Json> = objects.iter().map(|o| object_summary(o, version)).collect();
    json!({
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": sobjects,
    })
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels_from_api_names() {
        assert_eq!(label("BillingCity"), "Billing City");
        assert_eq!(label("LS_Tier__c"), "LS Tier");
        assert_eq!(label("OwnerId"), "Owner ID");
        assert_eq!(label("CMS_Overall_Rating__c"), "CMS Overall Rating");
        assert_eq!(label("Id"), "Id");
        assert_eq!(label("SystemModstamp"), "System Modstamp");
    }
}
