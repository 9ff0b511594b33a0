//! Creates missing custom fields through the Tooling API and grants the API user access to
//! them through a permission set.
//!
//! A custom field created through the Tooling API's `CustomField` object is visible to no
//! profile until field-level security grants it. So after creating fields this module finds
//! or creates a permission set, adds a `FieldPermissions` record for each field the API user
//! cannot yet read (or write, where it must write), and assigns the set to the API user.
//! Creating fields needs the "Customize Application" permission, and assigning a permission
//! set needs "Assign Permission Sets" (included in "Manage Users").

use std::collections::BTreeMap;
use std::fmt;

use leadscore_connector::{ConnectorError, FieldKind, FieldSchema, ObjectSchema};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tracing::{debug, info};

use crate::transport::Paging;

/// Lines a long text field shows on a record page.
const LONG_TEXT_VISIBLE_LINES: u64 = 5;
/// Total digits and decimal places of a Number field.
const NUMBER_PRECISION: u64 = 18;
const NUMBER_SCALE: u64 = 2;

/// The type of a custom field to create, with the sizes Salesforce requires for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomFieldKind {
    Number,
    /// A picklist with these values; `restricted` rejects other values on save.
    Picklist {
        values: Vec<String>,
        restricted: bool,
    },
    /// Single-line text of at most `length` characters (255 at most).
    Text {
        length: u32,
    },
    /// Long text area of at most `length` characters (256 to 131,072).
    LongText {
        length: u32,
    },
    Date,
    DateTime,
    Checkbox,
}

/// The access the API user needs to a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    Read,
    ReadEdit,
}

/// One custom field that should exist on an object.
#[derive(Clone, Debug)]
pub struct CustomFieldSpec {
    pub object: String,
    /// API name, ending in `__c`.
    pub name: String,
    pub label: String,
    pub description: String,
    pub kind: CustomFieldKind,
    pub access: FieldAccess,
}

impl CustomFieldSpec {
    fn full_name(&self) -> String {
        format!("{}.{}", self.object, self.name)
    }

    /// Builds the Tooling API `CustomField` create body.
    fn create_body(&self) -> Json {
        let mut metadata = json!({
            "label": self.label,
            "description": self.description,
        });
        let extra = match &self.kind {
            CustomFieldKind::Number => json!({
                "type": "Number",
                "precision": NUMBER_PRECISION,
                "scale": NUMBER_SCALE,
            }),
            CustomFieldKind::Picklist { values, restricted } => {
                let values: Vec<Json> = values
                    .iter()
                    .map(|value| json!({"fullName": value, "label": value, "default": false}))
                    .collect();
                json!({
                    "type": "Picklist",
                    "valueSet": {
                        "restricted": restricted,
                        "valueSetDefinition": {"sorted": false, "value": values},
                    },
                })
            }
            CustomFieldKind::Text { length } => json!({"type": "Text", "length": length}),
            CustomFieldKind::LongText { length } => json!({
                "type": "LongTextArea",
                "length": length,
                "visibleLines": LONG_TEXT_VISIBLE_LINES,
            }),
            CustomFieldKind::Date => json!({"type": "Date"}),
            CustomFieldKind::DateTime => json!({"type": "DateTime"}),
            CustomFieldKind::Checkbox => json!({"type": "Checkbox", "defaultValue": "false"}),
        };
        if let (Json::Object(metadata), Json::Object(extra)) = (&mut metadata, extra) {
            metadata.extend(extra);
        }
        json!({"FullName": self.full_name(), "Metadata": metadata})
    }

    /// Returns why an existing field cannot hold this spec's values, or `None` when it can.
    /// A picklist must offer every value of the spec as an active value, because a restricted
    /// one rejects writes of another value and reps can only pick the values it offers.
    fn mismatch(&self, field: &FieldSchema) -> Option<String> {
        let kind = field.kind;
        let same_kind = match &self.kind {
            CustomFieldKind::Number => kind == FieldKind::Number,
            CustomFieldKind::Picklist { .. } => kind == FieldKind::Picklist,
            // A short text field still stores the value, which write-back shortens to fit.
            CustomFieldKind::Text { .. } | CustomFieldKind::LongText { .. } => {
                matches!(kind, FieldKind::Text | FieldKind::LongText)
            }
            CustomFieldKind::Date => kind == FieldKind::Date,
            CustomFieldKind::DateTime => kind == FieldKind::DateTime,
            CustomFieldKind::Checkbox => kind == FieldKind::Boolean,
        };
        if !same_kind {
            return Some(format!(
                "exists as {kind:?}, not as {}",
                kind_name(&self.kind)
            ));
        }
        let CustomFieldKind::Picklist { values, .. } = &self.kind else {
            return None;
        };
        let missing: Vec<&str> = values
            .iter()
            .filter(|value| !field.picklist_values.contains(value))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "exists as a picklist without the active values {}; add them to the field in Setup",
            missing.join(", ")
        ))
    }
}

/// The outcome of [`crate::SalesforceConnector::ensure_custom_fields`], each field named as
/// `Object.Field`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CustomFieldReport {
    /// Fields created through the Tooling API.
    pub created: Vec<String>,
    /// Fields that existed with a suitable type.
    pub existing: Vec<String>,
    /// Fields that exist with another type or without some picklist values, left unchanged,
    /// each with the reason.
    pub mismatched: Vec<String>,
    /// The permission set's API name and whether this run created it.
    pub permission_set: Option<PermissionSetChange>,
    /// Fields whose access this run granted through the permission set.
    pub granted: Vec<String>,
    /// Whether this run assigned the permission set to the API user.
    pub assigned: bool,
}

/// The permission set that grants the fields.
#[derive(Clone, Debug, Serialize)]
pub struct PermissionSetChange {
    pub name: String,
    pub created: bool,
}

impl fmt::Display for CustomFieldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        write!(f, "fields created: {}", list(&self.created))?;
        if let Some(set) = &self.permission_set {
            let verb = if set.created { "created" } else { "found" };
            write!(f, "; permission set {} {verb}", set.name)?;
        }
        write!(f, "; access granted to: {}", list(&self.granted))?;
        if self.assigned {
            write!(f, "; permission set assigned to the API user")?;
        }
        Ok(())
    }
}

/// A failure of `ensure_custom_fields`, with what was done before it.
#[derive(Debug)]
pub struct CustomFieldError {
    /// The step that failed, for example "creating Account.LS_Score__c".
    pub step: String,
    pub error: ConnectorError,
    /// The Salesforce permission the API user lacks, when the CRM rejected the step for that.
    pub missing_permission: Option<&'static str>,
    /// The changes made before the failure.
    pub done: CustomFieldReport,
}

impl fmt::Display for CustomFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.step, self.error)?;
        if let Some(permission) = self.missing_permission {
            write!(f, "; {permission}")?;
        }
        write!(f, ". Done before the failure: {}", self.done)
    }
}

impl std::error::Error for CustomFieldError {}

/// Returns the fix for a permission failure, or `None` when `error` is not one.
fn missing_permission(error: &ConnectorError, step: Step) -> Option<&'static str> {
    let ConnectorError::Rejected { code, .. } = error else {
        return None;
    };
    let denied = code.starts_with("INSUFFICIENT_ACCESS")
        || code == "INSUFFICIENT_PRIVILEGES"
        || code == "HTTP_403";
    if !denied {
        return None;
    }
    Some(match step {
        // Reading an object's describe needs only read access to the object.
        Step::Describe => return None,
        Step::CreateField => {
            "the API user needs the \"Customize Application\" permission to create custom fields, or create the fields in Setup"
        }
        Step::Grant => {
            "the API user needs the \"Manage Profiles and Permission Sets\" permission to grant field access, or grant read and edit access to the fields in Setup"
        }
        Step::Assign => {
            "the API user needs the \"Assign Permission Sets\" permission (part of \"Manage Users\"), or assign the permission set to the API user in Setup"
        }
    })
}

#[derive(Clone, Copy)]
enum Step {
    Describe,
    CreateField,
    Grant,
    Assign,
}

#[derive(Deserialize)]
struct QueryWire {
    records: Vec<Json>,
}

#[derive(Deserialize)]
struct CreatedWire {
    id: String,
}

/// A `FieldPermissions` record of the permission set.
struct Grant {
    id: String,
    read: bool,
    edit: bool,
}

impl crate::SalesforceConnector {
    /// Creates the fields of `specs` that are missing, then grants the API user the access
    /// each spec needs through the permission set named `permission_set` (created when
    /// missing, with the API name given) and assigns that set to the API user. A field that
    /// exists with another type or without some picklist values is left alone and reported.
    /// Running it again creates nothing.
    pub async fn ensure_custom_fields(
        &self,
        specs: &[CustomFieldSpec],
        permission_set: &str,
    ) -> Result<CustomFieldReport, CustomFieldError> {
        let mut report = CustomFieldReport::default();
        let result = self
            .ensure_custom_fields_into(specs, permission_set, &mut report)
            .await;
        // Describes cached before the fields existed would hide them from the next check.
        self.forget_schemas();
        match result {
            Ok(()) => Ok(report),
            Err((step, kind, error)) => Err(CustomFieldError {
                missing_permission: missing_permission(&error, kind),
                step,
                error,
                done: report,
            }),
        }
    }

    async fn ensure_custom_fields_into(
        &self,
        specs: &[CustomFieldSpec],
        permission_set: &str,
        report: &mut CustomFieldReport,
    ) -> Result<(), (String, Step, ConnectorError)> {
        let fail = |step: String, kind: Step| move |error| (step, kind, error);
        if !is_developer_name(permission_set) {
            return Err((
                "checking the permission set name".to_string(),
                Step::Grant,
                ConnectorError::Payload(format!(
                    "{permission_set:?} is not a valid permission set API name; use letters, digits and single underscores, starting with a letter"
                )),
            ));
        }
        let mut schemas: BTreeMap<String, ObjectSchema> = BTreeMap::new();
        for spec in specs {
            if !schemas.contains_key(&spec.object) {
                let step = format!("describing {}", spec.object);
                let schema = self
                    .describe_fresh(&spec.object)
                    .await
                    .map_err(fail(step, Step::Describe))?;
                schemas.insert(spec.object.clone(), schema);
            }
        }
        // Fields the API user needs access to that it does not have yet.
        let mut needs_grant: Vec<&CustomFieldSpec> = Vec::new();
        // Fields that exist but were hidden from describe, so their type is still unknown.
        let mut hidden: Vec<&CustomFieldSpec> = Vec::new();
        for spec in specs {
            let full_name = spec.full_name();
            let existing = schemas
                .get(&spec.object)
                .and_then(|schema| schema.field(&spec.name));
            match existing {
                Some(field) => match spec.mismatch(field) {
                    Some(reason) => report.mismatched.push(format!("{full_name} {reason}")),
                    None => {
                        report.existing.push(full_name);
                        if spec.access == FieldAccess::ReadEdit && !field.updateable {
                            needs_grant.push(spec);
                        }
                    }
                },
                None => {
                    let step = format!("creating {full_name}");
                    let created = self
                        .create_custom_field(spec)
                        .await
                        .map_err(fail(step, Step::CreateField))?;
                    if created {
                        info!(field = %full_name, "created custom field");
                        report.created.push(full_name);
                    } else {
                        // The field exists, but field-level security hides it from this user.
                        debug!(field = %full_name, "custom field exists but is hidden from the API user");
                        hidden.push(spec);
                    }
                    needs_grant.push(spec);
                }
            }
        }
        if needs_grant.is_empty() {
            return Ok(());
        }
        self.grant_access(&needs_grant, permission_set, report)
            .await?;
        self.check_revealed_fields(&hidden, report).await
    }

    /// Describes the objects of `hidden` again now that the permission set grants them, and
    /// reports each field as existing, or as mismatched when its type or values do not fit.
    async fn check_revealed_fields(
        &self,
        hidden: &[&CustomFieldSpec],
        report: &mut CustomFieldReport,
    ) -> Result<(), (String, Step, ConnectorError)> {
        let mut schemas: BTreeMap<String, ObjectSchema> = BTreeMap::new();
        for spec in hidden {
            if !schemas.contains_key(&spec.object) {
                let step = format!("describing {} after granting access", spec.object);
                let schema = self
                    .describe_fresh(&spec.object)
                    .await
                    .map_err(|error| (step, Step::Describe, error))?;
                schemas.insert(spec.object.clone(), schema);
            }
            let full_name = spec.full_name();
            let field = schemas
                .get(&spec.object)
                .and_then(|schema| schema.field(&spec.name));
            // NOTE: a field still hidden after the grant is counted as existing, because its
            // type cannot be read.
            match field.and_then(|field| spec.mismatch(field)) {
                Some(reason) => report.mismatched.push(format!("{full_name} {reason}")),
                None => report.existing.push(full_name),
            }
        }
        Ok(())
    }

    /// Finds or creates the permission set, creates or widens a `FieldPermissions` record for
    /// each field, and assigns the set to the API user.
    async fn grant_access(
        &self,
        specs: &[&CustomFieldSpec],
        permission_set: &str,
        report: &mut CustomFieldReport,
    ) -> Result<(), (String, Step, ConnectorError)> {
        let fail = |step: String, kind: Step| move |error| (step, kind, error);
        let step = format!("finding or creating the permission set {permission_set}");
        let (set_id, created) = self
            .permission_set_id(permission_set)
            .await
            .map_err(fail(step, Step::Grant))?;
        report.permission_set = Some(PermissionSetChange {
            name: permission_set.to_string(),
            created,
        });
        let step = format!("reading the field permissions of {permission_set}");
        let grants = self
            .field_grants(&set_id)
            .await
            .map_err(fail(step, Step::Grant))?;
        for spec in specs {
            let full_name = spec.full_name();
            let edit = spec.access == FieldAccess::ReadEdit;
            let step = format!("granting access to {full_name}");
            match grants.get(&full_name.to_ascii_lowercase()) {
                Some(grant) if grant.read && (grant.edit || !edit) => continue,
                Some(grant) => {
                    let path = self.data_path(&format!("sobjects/FieldPermissions/{}", grant.id));
                    let body =
                        json!({"PermissionsRead": true, "PermissionsEdit": edit || grant.edit});
                    self.api
                        .request(Method::PATCH, &path, Some(&body), Paging::None)
                        .await
                        .map_err(fail(step, Step::Grant))?;
                }
                None => {
                    let path = self.data_path("sobjects/FieldPermissions");
                    let body = json!({
                        "ParentId": set_id,
                        "SobjectType": spec.object,
                        "Field": full_name,
                        "PermissionsRead": true,
                        "PermissionsEdit": edit,
                    });
                    self.api
                        .request(Method::POST, &path, Some(&body), Paging::None)
                        .await
                        .map_err(fail(step, Step::Grant))?;
                }
            }
            info!(field = %full_name, edit, permission_set, "granted field access");
            report.granted.push(full_name);
        }
        let step = format!("assigning {permission_set} to the API user");
        report.assigned = self
            .assign_permission_set(&set_id)
            .await
            .map_err(fail(step, Step::Assign))?;
        Ok(())
    }

    /// Creates one field; returns false when Salesforce reports it exists already.
    async fn create_custom_field(&self, spec: &CustomFieldSpec) -> Result<bool, ConnectorError> {
        let path = self.data_path("tooling/sobjects/CustomField");
        let body = spec.create_body();
        match self
            .api
            .request(Method::POST, &path, Some(&body), Paging::None)
            .await
        {
            Ok(_) => Ok(true),
            Err(ConnectorError::Rejected { code, .. }) if code == "DUPLICATE_DEVELOPER_NAME" => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Describes `object` without the cache, so fields created since are seen.
    async fn describe_fresh(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        crate::soql::validate_object_name(object)?;
        let path = self.data_path(&format!("sobjects/{object}/describe"));
        let body = self
            .api
            .request(Method::GET, &path, None, Paging::None)
            .await?;
        crate::describe::parse_describe(object, &body)
    }

    /// Runs a SOQL query expected to return one page and returns its records.
    async fn query_records(&self, soql: &str) -> Result<Vec<Json>, ConnectorError> {
        let path = crate::soql::query_path(&self.api_version, soql, false);
        let body = self
            .api
            .request(Method::GET, &path, None, Paging::None)
            .await?;
        let wire: QueryWire = serde_json::from_slice(&body).map_err(|error| {
            ConnectorError::Payload(format!(
                "the query {soql:?} returned no records list: {error}"
            ))
        })?;
        Ok(wire.records)
    }

    /// Returns the id of the permission set with API name `name`, creating it when missing,
    /// and whether it was created.
    async fn permission_set_id(&self, name: &str) -> Result<(String, bool), ConnectorError> {
        let records = self
            .query_records(&format!(
                "SELECT Id FROM PermissionSet WHERE Name = '{name}'"
            ))
            .await?;
        if let Some(id) = records.first().and_then(record_id) {
            return Ok((id, false));
        }
        let path = self.data_path("sobjects/PermissionSet");
        let body = json!({
            "Name": name,
            "Label": name.replace('_', " "),
            "Description": "Read and edit access to the custom fields leadscore writes, and read access to the fields reps flag scores with. Created by leadscore check --fix.",
        });
        let response = self
            .api
            .request(Method::POST, &path, Some(&body), Paging::None)
            .await?;
        let created: CreatedWire = serde_json::from_slice(&response).map_err(|error| {
            ConnectorError::Payload(format!(
                "creating the permission set {name} returned no id: {error}"
            ))
        })?;
        info!(permission_set = name, "created permission set");
        Ok((created.id, true))
    }

    /// Returns the permission set's field permissions keyed by lower-case `Object.Field`.
    async fn field_grants(&self, set_id: &str) -> Result<BTreeMap<String, Grant>, ConnectorError> {
        let set_id = checked_id(set_id)?;
        let records = self
            .query_records(&format!(
                "SELECT Id, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions WHERE ParentId = '{set_id}'"
            ))
            .await?;
        let mut grants = BTreeMap::new();
        for record in records {
            let (Some(id), Some(field)) = (record_id(&record), record["Field"].as_str()) else {
                continue;
            };
            grants.insert(
                field.to_ascii_lowercase(),
                Grant {
                    id,
                    read: record["PermissionsRead"].as_bool().unwrap_or(false),
                    edit: record["PermissionsEdit"].as_bool().unwrap_or(false),
                },
            );
        }
        Ok(grants)
    }

    /// Assigns the permission set to the API user unless it is already; returns whether this
    /// call assigned it.
    async fn assign_permission_set(&self, set_id: &str) -> Result<bool, ConnectorError> {
        let set_id = checked_id(set_id)?;
        let session = self.api.tokens.session().await?;
        let user = session.user_id.ok_or_else(|| {
            ConnectorError::Payload(
                "the token response named no user (its id URL is missing), so the permission set cannot be assigned; assign it to the API user in Setup".to_string(),
            )
        })?;
        let user = checked_id(&user)?;
        let records = self
            .query_records(&format!(
                "SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = '{set_id}' AND AssigneeId = '{user}'"
            ))
            .await?;
        if !records.is_empty() {
            return Ok(false);
        }
        let path = self.data_path("sobjects/PermissionSetAssignment");
        let body = json!({"PermissionSetId": set_id, "AssigneeId": user});
        self.api
            .request(Method::POST, &path, Some(&body), Paging::None)
            .await?;
        info!(user = %user, "assigned the permission set to the API user");
        Ok(true)
    }
}

fn record_id(record: &Json) -> Option<String> {
    record["Id"].as_str().map(str::to_string)
}

/// Returns `id` when it is a Salesforce id, so it can go into a SOQL literal.
fn checked_id(id: &str) -> Result<&str, ConnectorError> {
    if matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(ConnectorError::Payload(format!(
            "{id:?} is not a Salesforce id"
        )))
    }
}

/// Returns whether `name` is a valid API name: a letter, then letters, digits and single
/// underscores, not ending in an underscore.
fn is_developer_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
        && name.len() <= 80
}

fn kind_name(kind: &CustomFieldKind) -> &'static str {
    match kind {
        CustomFieldKind::Number => "a number",
        CustomFieldKind::Picklist { .. } => "a picklist",
        CustomFieldKind::Text { .. } => "text",
        CustomFieldKind::LongText { .. } => "long text",
        CustomFieldKind::Date => "a date",
        CustomFieldKind::DateTime => "a date/time",
        CustomFieldKind::Checkbox => "a checkbox",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: CustomFieldKind) -> CustomFieldSpec {
        CustomFieldSpec {
            object: "Account".to_string(),
            name: "LS_Test__c".to_string(),
            label: "Leadscore test".to_string(),
            description: "test field".to_string(),
            kind,
            access: FieldAccess::ReadEdit,
        }
    }

    #[test]
    fn picklist_body_has_value_set() {
        let body = spec(CustomFieldKind::Picklist {
            values: vec!["A".to_string(), "B".to_string()],
            restricted: true,
        })
        .create_body();
        assert_eq!(body["FullName"], "Account.LS_Test__c");
        assert_eq!(body["Metadata"]["type"], "Picklist");
        assert_eq!(body["Metadata"]["label"], "Leadscore test");
        assert_eq!(body["Metadata"]["valueSet"]["restricted"], true);
        let values = &body["Metadata"]["valueSet"]["valueSetDefinition"]["value"];
        assert_eq!(values[1]["fullName"], "B");
    }

    #[test]
    fn sized_types_carry_their_sizes() {
        let number = spec(CustomFieldKind::Number).create_body();
        assert_eq!(number["Metadata"]["precision"], NUMBER_PRECISION);
        assert_eq!(number["Metadata"]["scale"], NUMBER_SCALE);
        let long = spec(CustomFieldKind::LongText { length: 32_768 }).create_body();
        assert_eq!(long["Metadata"]["type"], "LongTextArea");
        assert_eq!(long["Metadata"]["length"], 32_768);
        assert_eq!(long["Metadata"]["visibleLines"], LONG_TEXT_VISIBLE_LINES);
        let checkbox = spec(CustomFieldKind::Checkbox).create_body();
        assert_eq!(checkbox["Metadata"]["defaultValue"], "false");
    }

    #[test]
    fn permission_errors_name_the_permission() {
        let denied = ConnectorError::Rejected {
            code: "INSUFFICIENT_ACCESS_OR_READONLY".to_string(),
            message: "insufficient access rights".to_string(),
        };
        let fix = missing_permission(&denied, Step::CreateField).unwrap_or_default();
        assert!(fix.contains("Customize Application"), "{fix}");
        let fix = missing_permission(&denied, Step::Assign).unwrap_or_default();
        assert!(fix.contains("Manage Users"), "{fix}");
        let other = ConnectorError::Rejected {
            code: "INVALID_FIELD".to_string(),
            message: "no such column".to_string(),
        };
        assert_eq!(missing_permission(&other, Step::CreateField), None);
    }

    #[test]
    fn developer_names_are_checked() {
        assert!(is_developer_name("Leadscore_Fields"));
        assert!(!is_developer_name("Leadscore Fields"));
        assert!(!is_developer_name("x' OR Name != '"));
        assert!(!is_developer_name("_Fields"));
    }
}
