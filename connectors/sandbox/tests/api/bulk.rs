//! Bulk API 2.0 query jobs: life cycle, CSV results, locators, failures and limits.

use leadscore_sandbox::SandboxOptions;
use serde_json::{json, Value};

use crate::support::*;

impl Fixture {
    async fn create_job(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!(
                "{}/services/data/{VERSION}/jobs/query",
                self.sandbox.url()
            ))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("job request completes")
    }

    /// Creates a job and polls it until it leaves the running states; returns its id and the
    /// final status body.
    async fn finished_job(&self, body: &Value) -> (String, Value) {
        let created = self.create_job(body).await;
        assert_eq!(created.status(), 200);
        let created: Value = created.json().await.expect("job body is JSON");
        let id = created["id"].as_str().expect("job id").to_string();
        assert_eq!(created["state"], "UploadComplete");
        for _ in 0..5 {
            let status: Value = self
                .get(&format!("/services/data/{VERSION}/jobs/query/{id}"))
                .await
                .json()
                .await
                .expect("status body is JSON");
            let state = status["state"].as_str().unwrap_or("").to_string();
            if !matches!(state.as_str(), "UploadComplete" | "InProgress") {
                return (id, status);
            }
        }
        panic!("job {id} did not finish after five polls");
    }

    async fn results(&self, id: &str, parameters: &str) -> reqwest::Response {
        self.get(&format!(
            "/services/data/{VERSION}/jobs/query/{id}/results{parameters}"
        ))
        .await
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("response has no {name} header"))
        .to_string()
}

#[tokio::test]
async fn job_moves_through_states() {
    let fixture = Fixture::small().await;
    let created = fixture
        .create_job(&json!({"operation": "query", "query": "SELECT Id FROM Account"}))
        .await;
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("750"), "{id}");
    assert_eq!(id.len(), 18);
    assert_eq!(created["object"], "Account");
    assert_eq!(created["contentType"], "CSV");

    let path = format!("/services/data/{VERSION}/jobs/query/{id}");
    let mut states = Vec::new();
    for _ in 0..3 {
        let status: Value = fixture.get(&path).await.json().await.unwrap();
        states.push(status["state"].as_str().unwrap().to_string());
    }
    assert_eq!(states, ["UploadComplete", "InProgress", "JobComplete"]);
    let done: Value = fixture.get(&path).await.json().await.unwrap();
    assert_eq!(done["numberRecordsProcessed"], 3);
    assert_eq!(done["jobType"], "V2Query");
}

#[tokio::test]
async fn results_before_completion_are_412() {
    let fixture = Fixture::small().await;
    let created: Value = fixture
        .create_job(&json!({"operation": "query", "query": "SELECT Id FROM Account"}))
        .await
        .json()
        .await
        .unwrap();
    let response = fixture.results(created["id"].as_str().unwrap(), "").await;
    assert_eq!(response.status(), 412);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "JOB_NOT_COMPLETE");
}

#[tokio::test]
async fn csv_quotes_orders_and_nulls() {
    let fixture = Fixture::small().await;
    fixture
        .handle()
        .update_record(
            "Account",
            ACCOUNT_MERCY,
            serde_json::from_value(json!({"Name": "Mercy \"General\", North\nCampus"})).unwrap(),
        )
        .unwrap();
    let (id, status) = fixture
        .finished_job(&json!({
            "operation": "query",
            "query": "SELECT Id, Name, Owner.IsActive, CMS_Overall_Rating__c FROM Account ORDER BY Id",
            "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"
        }))
        .await;
    assert_eq!(status["state"], "JobComplete");
    let response = fixture.results(&id, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "Sforce-Locator"), "null");
    assert_eq!(header(&response, "Sforce-NumberOfRecords"), "3");
    assert!(header(&response, "Sforce-Limit-Info").starts_with("api-usage="));
    let text = response.text().await.unwrap();
    let expected = format!(
        "\"Id\",\"Name\",\"Owner.IsActive\",\"CMS_Overall_Rating__c\"\n\
         \"{ACCOUNT_MERCY}\",\"Mercy \"\"General\"\", North\nCampus\",\"true\",\"4\"\n\
         \"{ACCOUNT_JUDE}\",\"St. Jude\",\"false\",\"2\"\n\
         \"{ACCOUNT_VALLEY}\",\"Valley Clinic\",\"\",\"\"\n"
    );
    assert_eq!(text, expected);
}

#[tokio::test]
async fn locators_page_through_results() {
    let options = SandboxOptions {
        bulk_page_size: 2,
        ..SandboxOptions::default()
    };
    let fixture = Fixture::start(small_org(), options).await;
    let (id, _) = fixture
        .finished_job(&json!({
            "operation": "query",
            "query": "SELECT Id FROM Contact ORDER BY Id",
            "lineEnding": "CRLF", "columnDelimiter": "PIPE"
        }))
        .await;
    let first = fixture.results(&id, "?maxRecords=100").await;
    assert_eq!(header(&first, "Sforce-NumberOfRecords"), "2");
    let locator = header(&first, "Sforce-Locator");
    assert_ne!(locator, "null");
    let text = first.text().await.unwrap();
    assert_eq!(
        text,
        format!("\"Id\"\r\n\"{CONTACT_NG}\"\r\n\"{CONTACT_ORTIZ}\"\r\n")
    );

    let second = fixture
        .results(&id, &format!("?maxRecords=100&locator={locator}"))
        .await;
    assert_eq!(header(&second, "Sforce-NumberOfRecords"), "1");
    assert_eq!(header(&second, "Sforce-Locator"), "null");
    assert_eq!(
        second.text().await.unwrap(),
        format!("\"Id\"\r\n\"{CONTACT_PARK}\"\r\n")
    );

    // Locators stay valid and can be read again.
    let again = fixture.results(&id, &format!("?locator={locator}")).await;
    assert_eq!(header(&again, "Sforce-NumberOfRecords"), "1");
}

#[tokio::test]
async fn query_all_includes_deleted_rows() {
    let fixture = Fixture::small().await;
    fixture
        .handle()
        .delete_record("Contact", CONTACT_PARK)
        .unwrap();
    for (operation, expected) in [("query", 2), ("queryAll", 3)] {
        let (id, status) = fixture
            .finished_job(
                &json!({"operation": operation, "query": "SELECT Id, IsDeleted FROM Contact"}),
            )
            .await;
        assert_eq!(status["numberRecordsProcessed"], expected, "{operation}");
        let response = fixture.results(&id, "").await;
        assert_eq!(
            header(&response, "Sforce-NumberOfRecords"),
            expected.to_string()
        );
    }
}

#[tokio::test]
async fn rejected_soql_fails_the_job() {
    let fixture = Fixture::small().await;
    let (id, status) = fixture
        .finished_job(&json!({"operation": "query", "query": "SELECT Id, Nope__c FROM Account"}))
        .await;
    assert_eq!(status["state"], "Failed");
    let message = status["errorMessage"].as_str().unwrap();
    assert!(message.contains("Nope__c"), "{message}");
    assert_eq!(fixture.results(&id, "").await.status(), 412);
}

#[tokio::test]
async fn compound_field_fails_bulk_but_not_rest() {
    let fixture = Fixture::small().await;
    fixture
        .handle()
        .update_record(
            "Account",
            ACCOUNT_MERCY,
            serde_json::from_value(json!({"BillingStreet": "1 Main St", "BillingCity": "Albany"}))
                .unwrap(),
        )
        .unwrap();
    let rest = fixture
        .query(&format!(
            "SELECT BillingAddress FROM Account WHERE Id = '{ACCOUNT_MERCY}'"
        ))
        .await;
    let address = &rest["records"][0]["BillingAddress"];
    assert_eq!(address["street"], "1 Main St");
    assert_eq!(address["city"], "Albany");
    assert_eq!(address["state"], "NY");
    assert!(address["postalCode"].is_null());
    let valley = fixture
        .query(&format!(
            "SELECT BillingAddress FROM Account WHERE Id = '{ACCOUNT_VALLEY}'"
        ))
        .await;
    assert_eq!(valley["records"][0]["BillingAddress"]["state"], "CA");

    let (_, status) = fixture
        .finished_job(
            &json!({"operation": "query", "query": "SELECT Id, BillingAddress FROM Account"}),
        )
        .await;
    assert_eq!(status["state"], "Failed");
    let message = status["errorMessage"].as_str().unwrap();
    assert!(message.contains("compound"), "{message}");
    assert!(message.contains("BillingAddress"), "{message}");
}

#[tokio::test]
async fn describe_names_compound_components() {
    let fixture = Fixture::small().await;
    let describe: Value = fixture
        .get(&format!(
            "/services/data/{VERSION}/sobjects/Account/describe"
        ))
        .await
        .json()
        .await
        .unwrap();
    let fields = describe["fields"].as_array().unwrap();
    let find = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("describe has no {name}"))
    };
    assert_eq!(find("BillingAddress")["type"], "address");
    assert_eq!(find("BillingAddress")["updateable"], false);
    for component in [
        "BillingStreet",
        "BillingCity",
        "BillingState",
        "BillingPostalCode",
        "BillingCountry",
    ] {
        assert_eq!(find(component)["compoundFieldName"], "BillingAddress");
    }
    assert!(find("Name")["compoundFieldName"].is_null());
}

#[tokio::test]
async fn abort_delete_and_version_checks() {
    let fixture = Fixture::small().await;
    let created: Value = fixture
        .create_job(&json!({"operation": "query", "query": "SELECT Id FROM Lead"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let path = format!("/services/data/{VERSION}/jobs/query/{id}");
    let aborted = fixture
        .patch_json(&path, &json!({"state": "Aborted"}))
        .await;
    assert_eq!(aborted.status(), 200);
    let status: Value = fixture.get(&path).await.json().await.unwrap();
    assert_eq!(status["state"], "Aborted");

    let (done, _) = fixture
        .finished_job(&json!({"operation": "query", "query": "SELECT Id FROM Lead"}))
        .await;
    let other_version = fixture
        .get(&format!("/services/data/v58.0/jobs/query/{done}/results"))
        .await;
    assert_eq!(other_version.status(), 409);

    let deleted = fixture
        .client
        .delete(format!("{}{path}", fixture.sandbox.url()))
        .bearer_auth(&fixture.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(fixture.get(&path).await.status(), 404);
}

#[tokio::test]
async fn bad_job_requests_are_rejected() {
    let fixture = Fixture::small().await;
    for body in [
        json!({"operation": "upsert", "query": "SELECT Id FROM Lead"}),
        json!({"operation": "query"}),
        json!({"operation": "query", "query": "SELECT Id FROM Lead", "contentType": "JSON"}),
        json!({"operation": "query", "query": "SELECT Id FROM Lead", "columnDelimiter": "SPACE"}),
        json!({"operation": "query", "query": "SELECT Id FROM Lead", "lineEnding": "CR"}),
    ] {
        let response = fixture.create_job(&body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
}

#[tokio::test]
async fn bulk_calls_count_against_the_limit() {
    let fixture = Fixture::small().await;
    let (before, _) = fixture.handle().api_usage();
    let (id, _) = fixture
        .finished_job(&json!({"operation": "query", "query": "SELECT Id FROM Lead"}))
        .await;
    fixture.results(&id, "").await;
    let (after, _) = fixture.handle().api_usage();
    // One create, three polls and one results page.
    assert_eq!(after - before, 5);
}
