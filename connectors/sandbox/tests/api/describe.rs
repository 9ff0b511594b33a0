//! describeGlobal, describe, version list, resource map, limits and the request budget.

use leadscore_sandbox::schema;
use serde_json::{json, Value};

use crate::support::{expect_error, Fixture, VERSION};

fn field<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("describe has no field {name}"))
}

#[tokio::test]
async fn describe_global_lists_schema_objects() {
    let fixture = Fixture::small().await;
    let response = fixture
        .get(&format!("/services/data/{VERSION}/sobjects/"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let listed = body["sobjects"].as_array().unwrap();
    for object in schema::objects() {
        let entry = listed
            .iter()
            .find(|o| o["name"] == object.name)
            .unwrap_or_else(|| panic!("{} missing from describeGlobal", object.name));
        assert_eq!(entry["keyPrefix"], object.key_prefix);
        assert_eq!(entry["queryable"], true);
        assert_eq!(
            entry["urls"]["describe"],
            format!("/services/data/{VERSION}/sobjects/{}/describe", object.name)
        );
    }
    assert_eq!(listed.len(), schema::objects().len());
}

#[tokio::test]
async fn describe_reports_field_metadata() {
    let fixture = Fixture::small().await;
    let response = fixture
        .get(&format!(
            "/services/data/{VERSION}/sobjects/Account/describe"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Account");
    let account = schema::objects()
        .into_iter()
        .find(|o| o.name == "Account")
        .unwrap();
    assert_eq!(
        body["fields"].as_array().unwrap().len(),
        account.fields.len()
    );
    for f in body["fields"].as_array().unwrap() {
        for key in [
            "name",
            "label",
            "type",
            "updateable",
            "createable",
            "nillable",
            "custom",
            "length",
            "precision",
            "scale",
            "picklistValues",
            "restrictedPicklist",
            "referenceTo",
            "relationshipName",
        ] {
            assert!(f.get(key).is_some(), "field {} lacks {key}", f["name"]);
        }
    }

    let tier = field(&body, "LS_Tier__c");
    assert_eq!(tier["type"], "picklist");
    assert_eq!(tier["custom"], true);
    assert_eq!(tier["restrictedPicklist"], true);
    let values = tier["picklistValues"].as_array().unwrap();
    let hot = values
        .iter()
        .find(|v| v["value"] == "Hot")
        .expect("inactive value listed");
    assert_eq!(hot["active"], false);
    assert!(hot["validFor"].is_null());
    let a = values.iter().find(|v| v["value"] == "A").unwrap();
    assert_eq!(a["active"], true);
    assert_eq!(a["defaultValue"], false);

    let owner = field(&body, "OwnerId");
    assert_eq!(owner["type"], "reference");
    assert_eq!(owner["referenceTo"], serde_json::json!(["User"]));
    assert_eq!(owner["relationshipName"], "Owner");
    assert_eq!(owner["nillable"], false);

    let id = field(&body, "Id");
    assert_eq!(id["updateable"], false);
    assert_eq!(id["createable"], false);

    let model = field(&body, "LS_Model_Version__c");
    assert_eq!(model["length"], 80);
    assert_eq!(model["nillable"], true);
    let score = field(&body, "LS_Score__c");
    assert_eq!(score["type"], "double");
    assert_eq!(score["updateable"], true);
}

#[tokio::test]
async fn describe_unknown_object_is_404() {
    let fixture = Fixture::small().await;
    let response = fixture
        .get(&format!(
            "/services/data/{VERSION}/sobjects/Widget__c/describe"
        ))
        .await;
    expect_error(response, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn versions_and_resources() {
    let fixture = Fixture::small().await;
    let versions: Value = fixture
        .client
        .get(format!("{}/services/data/", fixture.sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(versions
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == "59.0" && v["url"] == "/services/data/v59.0"));
    let resources: Value = fixture
        .get("/services/data/v61.0/")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resources["query"], "/services/data/v61.0/query");
    assert_eq!(resources["sobjects"], "/services/data/v61.0/sobjects");
}

#[tokio::test]
async fn limits_track_requests_and_budget() {
    let fixture = Fixture::small().await;
    let handle = fixture.handle();
    let response = fixture
        .get(&format!("/services/data/{VERSION}/limits"))
        .await;
    assert_eq!(response.status(), 200);
    let header = response.headers()["sforce-limit-info"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    let (used, max) = handle.api_usage();
    assert_eq!(used, 1, "the limits call itself counts");
    assert_eq!(header, format!("api-usage={used}/{max}"));
    assert_eq!(body["DailyApiRequests"]["Max"], max);
    assert_eq!(body["DailyApiRequests"]["Remaining"], max - used);
    assert!(body["DailyBulkV2QueryJobs"]["Max"].is_u64());

    handle.set_daily_limit(3);
    assert_eq!(
        fixture
            .get(&format!("/services/data/{VERSION}/sobjects/"))
            .await
            .status(),
        200
    );
    assert_eq!(
        fixture
            .get(&format!("/services/data/{VERSION}/sobjects/"))
            .await
            .status(),
        200
    );
    let refused = fixture
        .get(&format!("/services/data/{VERSION}/sobjects/"))
        .await;
    assert_eq!(refused.headers()["sforce-limit-info"], "api-usage=3/3");
    let message = expect_error(refused, 403, "REQUEST_LIMIT_EXCEEDED").await;
    assert_eq!(message, "TotalRequests Limit exceeded.");
    assert_eq!(handle.api_usage(), (3, 3), "refused calls do not count");
}

#[tokio::test]
async fn person_name_in_describe() {
    let fixture = Fixture::small().await;
    for object in ["Contact", "Lead"] {
        let body: Value = fixture
            .get(&format!(
                "/services/data/{VERSION}/sobjects/{object}/describe"
            ))
            .await
            .json()
            .await
            .unwrap();
        let name = field(&body, "Name");
        assert_eq!(name["type"], "string", "{object}");
        assert_eq!(name["updateable"], false, "{object}");
        assert_eq!(name["createable"], false, "{object}");
        assert_eq!(name["length"], 121, "{object}");
        assert_eq!(field(&body, "LastName")["updateable"], true, "{object}");
    }
}

#[tokio::test]
async fn versions_list_is_31_to_62() {
    let fixture = Fixture::small().await;
    let versions: Value = fixture
        .client
        .get(format!("{}/services/data/", fixture.sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (31..=62).map(|major| format!("{major}.0")).collect();
    assert_eq!(listed, expected);
    assert_eq!(
        versions[0],
        json!({"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"})
    );
    assert_eq!(versions[19]["label"], "Winter '21", "50.0");
    assert_eq!(versions[31]["label"], "Winter '25", "62.0");
}

#[tokio::test]
async fn unserved_versions_get_404() {
    let fixture = Fixture::small().await;
    for version in ["v31.0", "v50.0", "v62.0"] {
        let response = fixture
            .get(&format!("/services/data/{version}/limits"))
            .await;
        assert_eq!(response.status(), 200, "{version}");
    }
    for version in [
        "v30.0",
        "v63.0",
        "v20.0",
        "v59.1",
        "v059.0",
        "v59",
        "v+59.0",
        "v99999999999.0",
    ] {
        let response = fixture
            .get(&format!("/services/data/{version}/limits"))
            .await;
        assert_eq!(response.status(), 404, "{version}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
            "{version}"
        );
    }
    let query = fixture
        .get("/services/data/v63.0/query?q=SELECT+Id+FROM+Account")
        .await;
    expect_error(query, 404, "NOT_FOUND").await;
}
