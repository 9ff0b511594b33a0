//! Tooling API `CustomField` create and the permission sets that grant the new fields.

use leadscore_sandbox::SandboxOptions;
use serde_json::{json, Value};

use crate::support::*;

/// The API user's id as the token response's identity URL names it.
const API_USER: &str = "005Sb0000001ApiIAE";

fn tooling_path() -> String {
    format!("/services/data/{VERSION}/tooling/sobjects/CustomField")
}

fn sobject_path(object: &str) -> String {
    format!("/services/data/{VERSION}/sobjects/{object}")
}

fn score_field() -> Value {
    json!({
        "FullName": "Account.LS_Score__c",
        "Metadata": {"label": "Leadscore score", "type": "Number", "precision": 18, "scale": 2},
    })
}

async fn bare() -> Fixture {
    let options = SandboxOptions {
        bare: true,
        ..SandboxOptions::default()
    };
    Fixture::start(small_org(), options).await
}

async fn describe_names(fixture: &Fixture, object: &str) -> Vec<String> {
    let body: Value = fixture
        .get(&format!("{}/describe", sobject_path(object)))
        .await
        .json()
        .await
        .expect("describe is JSON");
    body["fields"]
        .as_array()
        .expect("fields array")
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect()
}

async fn create_id(fixture: &Fixture, object: &str, body: Value) -> String {
    let response = fixture.post_json(&sobject_path(object), &body).await;
    let status = response.status();
    let created: Value = response.json().await.expect("create body is JSON");
    assert_eq!(status, 201, "create {object} failed: {created}");
    created["id"].as_str().expect("new id").to_string()
}

#[tokio::test]
async fn bare_org_lacks_leadscore_fields() {
    let fixture = bare().await;
    let names = describe_names(&fixture, "Account").await;
    assert!(names.iter().any(|n| n == "Name"));
    for field in leadscore_sandbox::schema::LEADSCORE_FIELDS {
        assert!(!names.iter().any(|n| n == field), "{field} in {names:?}");
    }
    let full = Fixture::small().await;
    let names = describe_names(&full, "Account").await;
    assert!(names.iter().any(|n| n == "LS_Score__c"));
}

#[tokio::test]
async fn custom_field_create_returns_id() {
    let fixture = bare().await;
    let response = fixture.post_json(&tooling_path(), &score_field()).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["success"], true);
    assert_eq!(body["errors"], json!([]));
    let id = body["id"].as_str().expect("id");
    assert!(id.starts_with("00N"), "{id}");
    assert_eq!(id.len(), 18);
}

#[tokio::test]
async fn custom_field_rejects_invalid_requests() {
    let fixture = bare().await;
    let cases = [
        (
            json!({"FullName": "Account.LS Score__c", "Metadata": {"label": "x", "type": "Number", "precision": 18, "scale": 2}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Account.LS_Score", "Metadata": {"label": "x", "type": "Number", "precision": 18, "scale": 2}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Nowhere.LS_Score__c", "Metadata": {"label": "x", "type": "Number", "precision": 18, "scale": 2}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"Metadata": {"label": "x", "type": "Number", "precision": 18, "scale": 2}}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            json!({"FullName": "Account.LS_Score__c"}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            json!({"FullName": "Account.LS_Comment__c", "Metadata": {"label": "x", "type": "Text"}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Account.LS_Reasons__c", "Metadata": {"label": "x", "type": "LongTextArea", "length": 32768}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Account.LS_Tier__c", "Metadata": {"label": "x", "type": "Picklist"}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Account.LS_Flag__c", "Metadata": {"label": "x", "type": "Checkbox"}}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"FullName": "Account.LS_Score__c", "Metadata": {"type": "Number", "precision": 18, "scale": 2}}),
            "REQUIRED_FIELD_MISSING",
        ),
    ];
    for (body, code) in cases {
        let response = fixture.post_json(&tooling_path(), &body).await;
        let message = expect_error(response, 400, code).await;
        assert!(!message.is_empty(), "{body}");
    }
    // None of the rejected requests created a field.
    let response = fixture.post_json(&tooling_path(), &score_field()).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn custom_field_duplicate_is_rejected() {
    let fixture = bare().await;
    let first = fixture.post_json(&tooling_path(), &score_field()).await;
    assert_eq!(first.status(), 201);
    let again = fixture.post_json(&tooling_path(), &score_field()).await;
    let message = expect_error(again, 400, "DUPLICATE_DEVELOPER_NAME").await;
    assert!(message.contains("LS_Score__c"), "{message}");
    // A field of the seeded schema is a duplicate too.
    let seeded = json!({
        "FullName": "Account.Hospital_Type__c",
        "Metadata": {"label": "Type", "type": "Text", "length": 80},
    });
    let response = fixture.post_json(&tooling_path(), &seeded).await;
    expect_error(response, 400, "DUPLICATE_DEVELOPER_NAME").await;
}

#[tokio::test]
async fn new_field_hidden_until_granted() {
    let fixture = bare().await;
    let created = fixture.post_json(&tooling_path(), &score_field()).await;
    assert_eq!(created.status(), 201);
    assert!(!describe_names(&fixture, "Account")
        .await
        .contains(&"LS_Score__c".to_string()));
    let hidden = fixture
        .query_raw("query", "SELECT Id, LS_Score__c FROM Account", None)
        .await;
    expect_error(hidden, 400, "INVALID_FIELD").await;

    let set = create_id(
        &fixture,
        "PermissionSet",
        json!({"Name": "Leadscore_Fields", "Label": "Leadscore Fields"}),
    )
    .await;
    assert!(set.starts_with("0PS"), "{set}");
    let grant = create_id(
        &fixture,
        "FieldPermissions",
        json!({"ParentId": set, "SobjectType": "Account", "Field": "Account.LS_Score__c",
               "PermissionsRead": true, "PermissionsEdit": false}),
    )
    .await;
    // Granted to a permission set that is not assigned yet: still hidden.
    assert!(!describe_names(&fixture, "Account")
        .await
        .contains(&"LS_Score__c".to_string()));

    create_id(
        &fixture,
        "PermissionSetAssignment",
        json!({"PermissionSetId": set, "AssigneeId": API_USER}),
    )
    .await;
    assert!(describe_names(&fixture, "Account")
        .await
        .contains(&"LS_Score__c".to_string()));
    let page = fixture
        .query("SELECT Id, LS_Score__c FROM Account WHERE LS_Score__c = null")
        .await;
    assert_eq!(page["totalSize"], 3);
    // Read access only: writes fail until edit is granted.
    let write_path = format!("{}/{ACCOUNT_MERCY}", sobject_path("Account"));
    let denied = fixture
        .patch_json(&write_path, &json!({"LS_Score__c": 81.5}))
        .await;
    assert_eq!(denied.status(), 400);

    let widen = fixture
        .patch_json(
            &format!("{}/{grant}", sobject_path("FieldPermissions")),
            &json!({"PermissionsEdit": true}),
        )
        .await;
    assert_eq!(widen.status(), 204);
    let written = fixture
        .patch_json(&write_path, &json!({"LS_Score__c": 81.5}))
        .await;
    assert_eq!(written.status(), 204);
    let record = fixture
        .handle()
        .record("Account", ACCOUNT_MERCY)
        .expect("record");
    assert_eq!(record["LS_Score__c"], 81.5);
}

#[tokio::test]
async fn permission_records_are_validated() {
    let fixture = bare().await;
    let set = create_id(
        &fixture,
        "PermissionSet",
        json!({"Name": "Leadscore_Fields", "Label": "Leadscore Fields"}),
    )
    .await;
    let response = fixture
        .post_json(
            &sobject_path("PermissionSet"),
            &json!({"Name": "Leadscore_Fields", "Label": "Again"}),
        )
        .await;
    expect_error(response, 400, "DUPLICATE_DEVELOPER_NAME").await;

    let unknown_field = json!({"ParentId": set, "SobjectType": "Account",
        "Field": "Account.LS_Nothing__c", "PermissionsRead": true});
    let response = fixture
        .post_json(&sobject_path("FieldPermissions"), &unknown_field)
        .await;
    expect_error(response, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST").await;

    let edit_only = json!({"ParentId": set, "SobjectType": "Account",
        "Field": "Account.Name", "PermissionsEdit": true});
    let response = fixture
        .post_json(&sobject_path("FieldPermissions"), &edit_only)
        .await;
    expect_error(response, 400, "FIELD_INTEGRITY_EXCEPTION").await;

    let assignment = json!({"PermissionSetId": set, "AssigneeId": API_USER});
    create_id(&fixture, "PermissionSetAssignment", assignment.clone()).await;
    let response = fixture
        .post_json(&sobject_path("PermissionSetAssignment"), &assignment)
        .await;
    expect_error(response, 400, "DUPLICATE_VALUE").await;
}
