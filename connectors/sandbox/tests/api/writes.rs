//! sObject Collections update, single-record create and update, and their validation.

use chrono::{DateTime, TimeZone, Utc};
use leadscore_sandbox::SandboxHandle;
use serde_json::{json, Value};

use crate::support::*;

fn collections_path() -> String {
    format!("/services/data/{VERSION}/composite/sobjects")
}

fn stamp(handle: &SandboxHandle, object: &str, id: &str, field: &str) -> DateTime<Utc> {
    let record = handle.record(object, id).expect("record exists");
    let text = record[field].as_str().expect("stamp is a string");
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap()
        .with_timezone(&Utc)
}

fn error_code(result: &Value) -> &str {
    result["errors"][0]["statusCode"]
        .as_str()
        .unwrap_or("<none>")
}

#[tokio::test]
async fn collection_update_mixed_results_in_order() {
    let fixture = Fixture::small().await;
    let handle = fixture.handle();
    let old = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    handle
        .set_system_modstamp("Account", ACCOUNT_MERCY, old)
        .unwrap();
    handle.delete_record("Contact", CONTACT_PARK).unwrap();
    handle.fail_writes(
        CONTACT_ORTIZ,
        "UNABLE_TO_LOCK_ROW",
        "unable to obtain exclusive access to this record",
    );
    let long_version = "v".repeat(81);

    let body = json!({
        "allOrNone": false,
        "records": [
            {"attributes": {"type": "Account"}, "id": ACCOUNT_MERCY, "LS_Score__c": 87.5, "LS_Tier__c": "A", "LS_Reasons__c": "Volume up"},
            {"attributes": {"type": "Account"}, "id": ACCOUNT_JUDE, "LS_Tier__c": "Hot"},
            {"attributes": {"type": "Account"}, "id": "001000000000099AAA", "LS_Score__c": 1},
            {"attributes": {"type": "Account"}, "id": ACCOUNT_VALLEY, "CreatedDate": "2024-01-01T00:00:00Z"},
            {"attributes": {"type": "Account"}, "id": ACCOUNT_VALLEY, "LS_Model_Version__c": long_version},
            {"attributes": {"type": "Account"}, "id": ACCOUNT_VALLEY, "LS_Score__c": "high"},
            {"attributes": {"type": "Contact"}, "id": CONTACT_PARK, "LS_Score__c": 5},
            {"attributes": {"type": "Contact"}, "id": CONTACT_ORTIZ, "LS_Score__c": 5},
            {"attributes": {"type": "Contact"}, "id": CONTACT_NG, "Score__c": 5},
            {"attributes": {"type": "Lead"}, "id": LEAD_CONVERTED, "LS_Score__c": 5},
            {"attributes": {"type": "Contact"}, "id": CONTACT_NG, "LS_Score__c": 55, "LS_Tier__c": "B"},
        ]
    });
    let response = fixture.patch_json(&collections_path(), &body).await;
    assert_eq!(response.status(), 200);
    let results: Value = response.json().await.unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 11);

    assert_eq!(
        results[0],
        json!({"id": ACCOUNT_MERCY, "success": true, "errors": []})
    );
    let expected_failures = [
        (
            1,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("LS_Tier__c"),
        ),
        (2, "INVALID_CROSS_REFERENCE_KEY", None),
        (3, "INVALID_FIELD_FOR_INSERT_UPDATE", Some("CreatedDate")),
        (4, "STRING_TOO_LONG", Some("LS_Model_Version__c")),
        (5, "INVALID_TYPE_ON_FIELD_IN_RECORD", Some("LS_Score__c")),
        (6, "ENTITY_IS_DELETED", None),
        (7, "UNABLE_TO_LOCK_ROW", None),
        (8, "INVALID_FIELD", Some("Score__c")),
        (9, "CANNOT_UPDATE_CONVERTED_LEAD", None),
    ];
    for (index, code, field) in expected_failures {
        let result = &results[index];
        assert_eq!(result["success"], false, "result {index}: {result}");
        assert_eq!(error_code(result), code, "result {index}: {result}");
        if let Some(field) = field {
            assert_eq!(
                result["errors"][0]["fields"],
                json!([field]),
                "result {index}"
            );
        }
    }
    assert!(results[1]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("bad value for restricted picklist field: Hot"));
    assert_eq!(
        results[7]["errors"][0]["message"],
        "unable to obtain exclusive access to this record"
    );
    assert_eq!(results[10]["success"], true);

    let mercy = handle.record("Account", ACCOUNT_MERCY).unwrap();
    assert_eq!(mercy["LS_Score__c"], json!(87.5));
    assert_eq!(mercy["LS_Tier__c"], "A");
    let bumped = stamp(&handle, "Account", ACCOUNT_MERCY, "SystemModstamp");
    assert!(bumped > old, "successful write bumps SystemModstamp");
    assert!((Utc::now() - bumped).num_seconds() < 60);
    assert_eq!(
        bumped,
        stamp(&handle, "Account", ACCOUNT_MERCY, "LastModifiedDate")
    );
    assert_eq!(
        mercy["SystemModstamp"].as_str().unwrap().len(),
        "2024-05-01T12:00:03.000+0000".len()
    );

    let jude = handle.record("Account", ACCOUNT_JUDE).unwrap();
    assert!(jude["LS_Tier__c"].is_null(), "failed record is unchanged");
    assert_eq!(jude["SystemModstamp"], "2024-05-01T12:00:00.000+0000");
    let valley = handle.record("Account", ACCOUNT_VALLEY).unwrap();
    assert!(valley["LS_Score__c"].is_null());
    assert_eq!(
        handle.record("Contact", CONTACT_NG).unwrap()["LS_Tier__c"],
        "B"
    );
}

#[tokio::test]
async fn all_or_none_rolls_back() {
    let fixture = Fixture::small().await;
    let handle = fixture.handle();
    let before = handle.record("Account", ACCOUNT_MERCY).unwrap();
    let body = json!({
        "allOrNone": true,
        "records": [
            {"attributes": {"type": "Account"}, "id": ACCOUNT_MERCY, "LS_Score__c": 90},
            {"attributes": {"type": "Account"}, "id": ACCOUNT_JUDE, "LS_Tier__c": "Z"},
        ]
    });
    let response = fixture.patch_json(&collections_path(), &body).await;
    assert_eq!(response.status(), 200);
    let results: Value = response.json().await.unwrap();
    assert_eq!(results[0]["success"], false);
    assert_eq!(error_code(&results[0]), "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(results[1]["success"], false);
    assert_eq!(
        error_code(&results[1]),
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(
        handle.record("Account", ACCOUNT_MERCY).unwrap(),
        before,
        "nothing was written"
    );
}

#[tokio::test]
async fn malformed_collection_requests_get_400() {
    let fixture = Fixture::small().await;
    let records: Vec<Value> = (0..201)
        .map(|_| json!({"attributes": {"type": "Account"}, "id": ACCOUNT_MERCY, "LS_Score__c": 1}))
        .collect();
    let too_many = fixture
        .patch_json(&collections_path(), &json!({"records": records}))
        .await;
    let message = expect_error(too_many, 400, "EXCEEDED_ID_LIMIT").await;
    assert!(message.contains("200"), "{message}");

    let bad_json = fixture
        .client
        .patch(format!("{}{}", fixture.sandbox.url(), collections_path()))
        .bearer_auth(&fixture.token)
        .header("content-type", "application/json")
        .body("{\"records\": [")
        .send()
        .await
        .unwrap();
    expect_error(bad_json, 400, "JSON_PARSER_ERROR").await;

    let no_type = fixture
        .patch_json(
            &collections_path(),
            &json!({"records": [{"id": ACCOUNT_MERCY, "LS_Score__c": 1}]}),
        )
        .await;
    expect_error(no_type, 400, "INVALID_TYPE").await;
    assert!(fixture.handle().record("Account", ACCOUNT_MERCY).unwrap()["LS_Score__c"].is_null());
}

#[tokio::test]
async fn task_create_returns_201() {
    let fixture = Fixture::small().await;
    let path = format!("/services/data/{VERSION}/sobjects/Task");
    let body = json!({
        "Subject": "Call Mercy about the knee tray",
        "WhoId": CONTACT_NG,
        "WhatId": ACCOUNT_MERCY,
        "OwnerId": USER_ACTIVE,
        "ActivityDate": "2024-06-01",
        "Priority": "High",
    });
    let response = fixture.post_json(&path, &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("00T"), "{id}");
    assert_eq!(id.len(), 18, "{id}");

    let page = fixture
        .query(&format!("SELECT Id, Subject, Status, Priority, Who.LastName, ActivityDate FROM Task WHERE Id = '{id}'"))
        .await;
    let record = &page["records"][0];
    assert_eq!(record["Subject"], "Call Mercy about the knee tray");
    assert_eq!(record["Status"], "Not Started", "Status gets its default");
    assert_eq!(record["Priority"], "High");
    assert_eq!(record["Who"]["LastName"], "Ng");
    assert_eq!(record["ActivityDate"], "2024-06-01");
    let stored = fixture.handle().record("Task", id).unwrap();
    assert_eq!(stored["IsDeleted"], false);
    assert_eq!(stored["CreatedDate"], stored["SystemModstamp"]);
}

#[tokio::test]
async fn task_create_validates_references() {
    let fixture = Fixture::small().await;
    let path = format!("/services/data/{VERSION}/sobjects/Task");
    let cases = [
        (
            json!({"Subject": "x", "OwnerId": USER_INACTIVE}),
            "INACTIVE_OWNER_OR_USER",
        ),
        (
            json!({"Subject": "x", "WhatId": CONTACT_NG}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"Subject": "x", "WhoId": "003000000000099AAA"}),
            "INVALID_CROSS_REFERENCE_KEY",
        ),
        (
            json!({"Subject": "x", "Type": 7}),
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ),
        (
            json!({"Subject": "x", "IsDeleted": true}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (json!({"Subject": "x", "Nope__c": 1}), "INVALID_FIELD"),
    ];
    for (body, code) in cases {
        let response = fixture.post_json(&path, &body).await;
        expect_error(response, 400, code).await;
    }
    assert_eq!(
        fixture.handle().records("Task").len(),
        2,
        "no task was created"
    );
}

#[tokio::test]
async fn single_record_patch_and_get() {
    let fixture = Fixture::small().await;
    let path = format!("/services/data/{VERSION}/sobjects/Lead/{LEAD_QUINN}");
    let response = fixture
        .patch_json(&path, &json!({"LS_Score__c": 12.5, "LS_Tier__c": "D"}))
        .await;
    assert_eq!(response.status(), 204);
    let record: Value = fixture
        .get(&format!("{path}?fields=Id,LS_Score__c,LS_Tier__c"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["LS_Score__c"], json!(12.5));
    assert_eq!(record["LS_Tier__c"], "D");
    assert_eq!(record["attributes"]["type"], "Lead");
    assert!(
        record.get("LastName").is_none(),
        "only requested fields are returned"
    );

    let bad = fixture
        .patch_json(&path, &json!({"LS_Tier__c": "Hot"}))
        .await;
    expect_error(bad, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST").await;
    let missing = fixture
        .get(&format!(
            "/services/data/{VERSION}/sobjects/Lead/00Q000000000099AAA"
        ))
        .await;
    expect_error(missing, 404, "NOT_FOUND").await;
}

fn full_name(handle: &SandboxHandle, object: &str, id: &str) -> Value {
    handle.record(object, id).expect("record exists")["Name"].clone()
}

#[tokio::test]
async fn person_name_follows_first_and_last() {
    let mut org = small_org();
    org.get_mut("Lead").unwrap().push(
        serde_json::from_value(json!({
            "Id": "00Q000000000003AAA", "FirstName": "Mae", "LastName": "Quill",
            "Name": "Stale Name", "Company": "Quill Spine", "Status": "Open - Not Contacted"
        }))
        .unwrap(),
    );
    let fixture = Fixture::start(org, Default::default()).await;
    let handle = fixture.handle();
    assert_eq!(
        full_name(&handle, "Lead", "00Q000000000003AAA"),
        "Mae Quill",
        "loading replaces a given Name"
    );
    assert_eq!(full_name(&handle, "Contact", CONTACT_NG), "Ng");

    handle
        .update_record(
            "Contact",
            CONTACT_NG,
            serde_json::from_value(json!({"FirstName": "Lin"})).unwrap(),
        )
        .unwrap();
    assert_eq!(full_name(&handle, "Contact", CONTACT_NG), "Lin Ng");
    let page = fixture
        .query(&format!(
            "SELECT Name FROM Contact WHERE Name = 'Lin Ng' AND Id = '{CONTACT_NG}'"
        ))
        .await;
    assert_eq!(page["records"][0]["Name"], "Lin Ng");

    let path = format!("/services/data/{VERSION}/sobjects/Contact/{CONTACT_NG}");
    let response = fixture
        .patch_json(&path, &json!({"LastName": "Ng-Park"}))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(full_name(&handle, "Contact", CONTACT_NG), "Lin Ng-Park");

    let body = json!({"records": [
        {"attributes": {"type": "Contact"}, "id": CONTACT_NG, "FirstName": null},
        {"attributes": {"type": "Lead"}, "id": LEAD_QUINN, "FirstName": "Ria"},
    ]});
    let results: Value = fixture
        .patch_json(&collections_path(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(results[0]["success"], true, "{results}");
    assert_eq!(results[1]["success"], true, "{results}");
    assert_eq!(full_name(&handle, "Contact", CONTACT_NG), "Ng-Park");
    assert_eq!(full_name(&handle, "Lead", LEAD_QUINN), "Ria Quinn");

    let created = fixture
        .post_json(
            &format!("/services/data/{VERSION}/sobjects/Contact"),
            &json!({"FirstName": "Oli", "LastName": "Shaw"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(full_name(&handle, "Contact", id), "Oli Shaw");
}

#[tokio::test]
async fn person_name_is_read_only() {
    let fixture = Fixture::small().await;
    let handle = fixture.handle();
    let path = format!("/services/data/{VERSION}/sobjects/Contact/{CONTACT_NG}");
    let response = fixture.patch_json(&path, &json!({"Name": "Dr. Ng"})).await;
    let message = expect_error(response, 400, "INVALID_FIELD_FOR_INSERT_UPDATE").await;
    assert!(message.contains("Name"), "{message}");

    let body = json!({"records": [
        {"attributes": {"type": "Lead"}, "id": LEAD_QUINN, "name": "Q"},
    ]});
    let results: Value = fixture
        .patch_json(&collections_path(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(results[0]["success"], false);
    assert_eq!(error_code(&results[0]), "INVALID_FIELD_FOR_INSERT_UPDATE");
    assert_eq!(results[0]["errors"][0]["fields"], json!(["Name"]));

    let direct = handle.update_record(
        "Contact",
        CONTACT_NG,
        serde_json::from_value(json!({"Name": "Dr. Ng"})).unwrap(),
    );
    let error = direct
        .expect_err("the handle rejects a direct Name")
        .to_string();
    assert!(error.contains("FirstName and LastName"), "{error}");
    assert_eq!(full_name(&handle, "Contact", CONTACT_NG), "Ng");
    assert_eq!(full_name(&handle, "Lead", LEAD_QUINN), "Quinn");

    // Account keeps its own writable Name.
    let account = format!("/services/data/{VERSION}/sobjects/Account/{ACCOUNT_VALLEY}");
    let response = fixture
        .patch_json(&account, &json!({"Name": "Valley Health"}))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        full_name(&handle, "Account", ACCOUNT_VALLEY),
        "Valley Health"
    );
}
