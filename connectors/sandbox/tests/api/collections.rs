//! sObject Collections create and retrieve.

use serde_json::{json, Value};

use crate::support::*;

fn collections_path() -> String {
    format!("/services/data/{VERSION}/composite/sobjects")
}

fn retrieve_path(object: &str) -> String {
    format!("/services/data/{VERSION}/composite/sobjects/{object}")
}

fn error_code(result: &Value) -> &str {
    result["errors"][0]["statusCode"]
        .as_str()
        .unwrap_or("<none>")
}

#[tokio::test]
async fn collection_create_mixed_results_in_order() {
    let fixture = Fixture::small().await;
    let handle = fixture.handle();
    let body = json!({
        "allOrNone": false,
        "records": [
            {"attributes": {"type": "Task"}, "Subject": "Call Mercy", "WhoId": CONTACT_NG, "OwnerId": USER_ACTIVE},
            {"attributes": {"type": "Task"}, "id": TASK_LEAD, "Subject": "Has an id"},
            {"attributes": {"type": "Task"}, "Subject": "Bad owner", "OwnerId": USER_INACTIVE},
            {"attributes": {"type": "Contact"}, "FirstName": "Ida", "LastName": "Lund", "AccountId": ACCOUNT_JUDE},
            {"attributes": {"type": "Lead"}, "LastName": "No Company"},
            {"attributes": {"type": "Contact"}, "LastName": "Vance", "Name": "Dr. Vance"},
            {"attributes": {"type": "Task"}, "Subject": "Default owner"},
        ]
    });
    let response = fixture.post_json(&collections_path(), &body).await;
    assert_eq!(response.status(), 200);
    let results: Value = response.json().await.unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 7);

    let expected_failures = [
        (1, "INVALID_FIELD"),
        (2, "INACTIVE_OWNER_OR_USER"),
        (4, "REQUIRED_FIELD_MISSING"),
        (5, "INVALID_FIELD_FOR_INSERT_UPDATE"),
    ];
    for (index, code) in expected_failures {
        let result = &results[index];
        assert_eq!(result["success"], false, "result {index}: {result}");
        assert_eq!(error_code(result), code, "result {index}: {result}");
        assert!(result.get("id").is_none(), "result {index}: {result}");
    }
    assert_eq!(results[5]["errors"][0]["fields"], json!(["Name"]));

    let created: Vec<&str> = [0, 3, 6]
        .iter()
        .map(|&index| {
            let result = &results[index];
            assert_eq!(result["success"], true, "result {index}: {result}");
            assert_eq!(result["errors"], json!([]), "result {index}");
            result["id"].as_str().expect("success carries the new id")
        })
        .collect();
    assert!(created[0].starts_with("00T"), "{}", created[0]);
    assert!(created[1].starts_with("003"), "{}", created[1]);
    assert!(created[2].starts_with("00T"), "{}", created[2]);
    assert_ne!(created[0], created[2], "every record gets its own id");

    let task = handle.record("Task", created[0]).expect("task was stored");
    assert_eq!(task["Subject"], "Call Mercy");
    assert_eq!(task["Status"], "Not Started", "Status gets its default");
    assert_eq!(task["Priority"], "Normal", "Priority gets its default");
    assert_eq!(task["CreatedDate"], task["SystemModstamp"]);
    let defaulted = handle.record("Task", created[2]).unwrap();
    assert!(
        defaulted["OwnerId"]
            .as_str()
            .is_some_and(|owner| owner.starts_with("005")),
        "the API user owns a task created without OwnerId: {defaulted:?}"
    );
    let page = fixture
        .query(&format!(
            "SELECT Name, Account.Name FROM Contact WHERE Id = '{}'",
            created[1]
        ))
        .await;
    assert_eq!(page["records"][0]["Name"], "Ida Lund");
    assert_eq!(page["records"][0]["Account"]["Name"], "St. Jude");

    assert_eq!(handle.records("Task").len(), 4, "two of four tasks created");
    assert_eq!(handle.records("Contact").len(), 4, "one of two contacts");
    assert_eq!(handle.records("Lead").len(), 2, "no lead created");
}

#[tokio::test]
async fn collection_create_all_or_none_rolls_back() {
    let fixture = Fixture::small().await;
    let body = json!({
        "allOrNone": true,
        "records": [
            {"attributes": {"type": "Task"}, "Subject": "Good"},
            {"attributes": {"type": "Task"}, "Subject": "Bad", "Priority": 3},
            {"attributes": {"type": "Task"}, "Subject": "Also good"},
        ]
    });
    let response = fixture.post_json(&collections_path(), &body).await;
    assert_eq!(response.status(), 200);
    let results: Value = response.json().await.unwrap();
    assert_eq!(results.as_array().unwrap().len(), 3);
    assert_eq!(results[0]["success"], false);
    assert_eq!(error_code(&results[0]), "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(results[1]["success"], false);
    assert_eq!(error_code(&results[1]), "INVALID_TYPE_ON_FIELD_IN_RECORD");
    assert_eq!(results[2]["success"], false);
    assert_eq!(error_code(&results[2]), "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(
        fixture.handle().records("Task").len(),
        2,
        "no task was created"
    );
}

#[tokio::test]
async fn malformed_collection_create_gets_400() {
    let fixture = Fixture::small().await;
    let records: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Task"}, "Subject": format!("Task {i}")}))
        .collect();
    let too_many = fixture
        .post_json(&collections_path(), &json!({"records": records}))
        .await;
    let message = expect_error(too_many, 400, "EXCEEDED_ID_LIMIT").await;
    assert!(message.contains("200"), "{message}");

    let no_type = fixture
        .post_json(
            &collections_path(),
            &json!({"records": [{"attributes": {"type": "Task"}, "Subject": "ok"}, {"Subject": "x"}]}),
        )
        .await;
    expect_error(no_type, 400, "INVALID_TYPE").await;

    let bad_flag = fixture
        .post_json(
            &collections_path(),
            &json!({"allOrNone": "yes", "records": []}),
        )
        .await;
    expect_error(bad_flag, 400, "JSON_PARSER_ERROR").await;
    assert_eq!(
        fixture.handle().records("Task").len(),
        2,
        "no task was created"
    );

    let records: Vec<Value> = (0..200)
        .map(|i| json!({"attributes": {"type": "Task"}, "Subject": format!("Task {i}")}))
        .collect();
    let full = fixture
        .post_json(&collections_path(), &json!({"records": records}))
        .await;
    assert_eq!(full.status(), 200, "200 records are allowed");
    assert_eq!(fixture.handle().records("Task").len(), 202);
}

#[tokio::test]
async fn retrieve_get_returns_records_in_id_order() {
    let fixture = Fixture::small().await;
    fixture
        .handle()
        .delete_record("Contact", CONTACT_PARK)
        .unwrap();
    let ids = [
        CONTACT_ORTIZ,
        "003000000000099AAA",
        CONTACT_NG,
        ACCOUNT_MERCY,
        CONTACT_PARK,
        CONTACT_ORTIZ,
    ];
    let response = fixture
        .get(&format!(
            "{}?ids={}&fields=id,name,Email,AccountId",
            retrieve_path("Contact"),
            ids.join(",")
        ))
        .await;
    assert_eq!(response.status(), 200);
    let records: Value = response.json().await.unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), ids.len(), "one entry per requested id");

    assert_eq!(records[0]["Id"], CONTACT_ORTIZ);
    assert_eq!(records[0]["Name"], "Ortiz");
    assert!(records[1].is_null(), "unknown id gives null");
    assert_eq!(records[2]["Id"], CONTACT_NG);
    assert_eq!(records[2]["Email"], "ng@example.test");
    assert_eq!(records[2]["AccountId"], ACCOUNT_MERCY);
    assert!(records[3].is_null(), "id of another object gives null");
    assert!(records[4].is_null(), "deleted record gives null");
    assert_eq!(records[5], records[0], "a repeated id repeats its record");

    let ng = records[2].as_object().unwrap();
    let mut keys: Vec<&str> = ng.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["AccountId", "Email", "Id", "Name", "attributes"]);
    assert_eq!(ng["attributes"]["type"], "Contact");
    assert_eq!(
        ng["attributes"]["url"],
        format!("/services/data/{VERSION}/sobjects/Contact/{CONTACT_NG}")
    );
}

#[tokio::test]
async fn retrieve_post_matches_get() {
    let fixture = Fixture::small().await;
    let ids = [LEAD_CONVERTED, "00Q000000000099AAA", LEAD_QUINN];
    let by_query: Value = fixture
        .get(&format!(
            "{}?ids={}&fields=Id,Company,Status",
            retrieve_path("Lead"),
            ids.join(",")
        ))
        .await
        .json()
        .await
        .unwrap();
    let response = fixture
        .post_json(
            &retrieve_path("Lead"),
            &json!({"ids": ids, "fields": ["Id", "Company", "Status"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let by_body: Value = response.json().await.unwrap();
    assert_eq!(by_body, by_query);
    assert_eq!(by_body[0]["Company"], "Roe Ortho");
    assert!(by_body[1].is_null());
    assert_eq!(by_body[2]["Status"], "Open - Not Contacted");

    let ids = vec![LEAD_QUINN; 2000];
    let response = fixture
        .post_json(
            &retrieve_path("Lead"),
            &json!({"ids": ids, "fields": ["Id"]}),
        )
        .await;
    assert_eq!(response.status(), 200, "2000 ids are allowed");
    let records: Value = response.json().await.unwrap();
    assert_eq!(records.as_array().unwrap().len(), 2000);
}

#[tokio::test]
async fn retrieve_rejects_bad_requests() {
    let fixture = Fixture::small().await;
    let unknown_field = fixture
        .get(&format!(
            "{}?ids={LEAD_QUINN}&fields=Id,Score__c",
            retrieve_path("Lead")
        ))
        .await;
    let message = expect_error(unknown_field, 400, "INVALID_FIELD").await;
    assert!(message.contains("Score__c"), "{message}");

    let unknown_field = fixture
        .post_json(
            &retrieve_path("Lead"),
            &json!({"ids": [LEAD_QUINN], "fields": ["Id", "Account.Name"]}),
        )
        .await;
    expect_error(unknown_field, 400, "INVALID_FIELD").await;

    let ids = vec![LEAD_QUINN; 2001];
    let too_many = fixture
        .post_json(
            &retrieve_path("Lead"),
            &json!({"ids": ids, "fields": ["Id"]}),
        )
        .await;
    let message = expect_error(too_many, 400, "EXCEEDED_ID_LIMIT").await;
    assert!(message.contains("2000"), "{message}");

    let no_fields = fixture
        .get(&format!("{}?ids={LEAD_QUINN}", retrieve_path("Lead")))
        .await;
    expect_error(no_fields, 400, "MISSING_ARGUMENT").await;
    let no_ids = fixture
        .post_json(&retrieve_path("Lead"), &json!({"fields": ["Id"]}))
        .await;
    expect_error(no_ids, 400, "MISSING_ARGUMENT").await;
    let not_strings = fixture
        .post_json(
            &retrieve_path("Lead"),
            &json!({"ids": [1, 2], "fields": ["Id"]}),
        )
        .await;
    expect_error(not_strings, 400, "JSON_PARSER_ERROR").await;

    let unknown_object = fixture
        .get(&format!(
            "{}?ids={LEAD_QUINN}&fields=Id",
            retrieve_path("Widget__c")
        ))
        .await;
    expect_error(unknown_object, 404, "NOT_FOUND").await;
}
