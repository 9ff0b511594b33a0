//! Shared fixture: a small hand-made org, a running sandbox and an authenticated client.

use std::collections::BTreeMap;

use leadscore_sandbox::{RecordMap, RunningSandbox, Sandbox, SandboxHandle, SandboxOptions};
use serde_json::{json, Value};

pub const VERSION: &str = "v59.0";

pub const USER_ACTIVE: &str = "005000000000001AAA";
pub const USER_INACTIVE: &str = "005000000000002AAA";
pub const ACCOUNT_MERCY: &str = "001000000000001AAA";
pub const ACCOUNT_JUDE: &str = "001000000000002AAA";
pub const ACCOUNT_VALLEY: &str = "001000000000003AAA";
pub const CONTACT_NG: &str = "003000000000001AAA";
pub const CONTACT_ORTIZ: &str = "003000000000002AAA";
pub const CONTACT_PARK: &str = "003000000000003AAA";
pub const LEAD_QUINN: &str = "00Q000000000001AAA";
pub const LEAD_CONVERTED: &str = "00Q000000000002AAA";
pub const OPPORTUNITY_WON: &str = "006000000000001AAA";
pub const TASK_CONTACT: &str = "00T000000000001AAA";
pub const TASK_LEAD: &str = "00T000000000002AAA";

fn record(value: Value) -> RecordMap {
    match value {
        Value::Object(map) => map,
        other => panic!("fixture records must be JSON objects, got {other}"),
    }
}

/// Builds the small org most tests run against. Mercy and St. Jude share a SystemModstamp so that
/// ordering ties are visible; Valley has no owner and no rating.
pub fn small_org() -> BTreeMap<String, Vec<RecordMap>> {
    let mut org = BTreeMap::new();
    org.insert(
        "User".to_string(),
        vec![
            record(json!({"Id": USER_ACTIVE, "Name": "Ada Rep", "IsActive": true, "CreatedDate": "2023-01-01T00:00:00Z"})),
            record(json!({"Id": USER_INACTIVE, "Name": "Ben Gone", "IsActive": false, "CreatedDate": "2023-01-01T00:00:00Z"})),
        ],
    );
    org.insert(
        "Account".to_string(),
        vec![
            record(json!({
                "Id": ACCOUNT_MERCY, "Name": "Mercy General", "OwnerId": USER_ACTIVE, "Type": "Hospital",
                "CMS_Overall_Rating__c": 4.0, "BillingState": "NY",
                "CreatedDate": "2024-01-01T00:00:00Z", "SystemModstamp": "2024-05-01T12:00:00.000Z"
            })),
            record(json!({
                "Id": ACCOUNT_JUDE, "Name": "St. Jude", "OwnerId": USER_INACTIVE, "Type": "Hospital",
                "CMS_Overall_Rating__c": 2.0, "BillingState": "CA",
                "CreatedDate": "2024-01-02T00:00:00Z", "SystemModstamp": "2024-05-01T12:00:00.000+0000"
            })),
            record(json!({
                "Id": ACCOUNT_VALLEY, "Name": "Valley Clinic", "BillingState": "CA",
                "CreatedDate": "2024-05-02T08:00:00Z"
            })),
        ],
    );
    org.insert(
        "Contact".to_string(),
        vec![
            record(json!({"Id": CONTACT_NG, "AccountId": ACCOUNT_MERCY, "OwnerId": USER_ACTIVE, "LastName": "Ng", "Email": "ng@example.test", "CreatedDate": "2024-02-01T00:00:00Z"})),
            record(json!({"Id": CONTACT_ORTIZ, "LastName": "Ortiz", "CreatedDate": "2024-02-02T00:00:00Z"})),
            record(json!({"Id": CONTACT_PARK, "AccountId": ACCOUNT_JUDE, "LastName": "Park", "CreatedDate": "2024-02-03T00:00:00Z"})),
        ],
    );
    org.insert(
        "Lead".to_string(),
        vec![
            record(json!({"Id": LEAD_QUINN, "LastName": "Quinn", "Company": "Quinn Surgical", "Status": "Open - Not Contacted", "OwnerId": USER_ACTIVE, "CreatedDate": "2024-03-01T00:00:00Z"})),
            record(json!({"Id": LEAD_CONVERTED, "LastName": "Roe", "Company": "Roe Ortho", "Status": "Closed - Converted", "IsConverted": true, "CreatedDate": "2024-03-02T00:00:00Z"})),
        ],
    );
    org.insert(
        "Opportunity".to_string(),
        vec![record(json!({
            "Id": OPPORTUNITY_WON, "AccountId": ACCOUNT_MERCY, "OwnerId": USER_ACTIVE, "Name": "Mercy knees",
            "StageName": "Closed Won", "IsClosed": true, "IsWon": true, "Amount": 50000.0, "CloseDate": "2024-03-31",
            "CreatedDate": "2024-01-15T00:00:00Z"
        }))],
    );
    org.insert(
        "Task".to_string(),
        vec![
            record(json!({"Id": TASK_CONTACT, "WhoId": CONTACT_NG, "WhatId": OPPORTUNITY_WON, "Subject": "Demo", "Status": "Completed", "Priority": "Normal", "CreatedDate": "2024-03-10T00:00:00Z"})),
            record(json!({"Id": TASK_LEAD, "WhoId": LEAD_QUINN, "Subject": "Call", "Status": "Completed", "Priority": "Normal", "CreatedDate": "2024-03-11T00:00:00Z"})),
        ],
    );
    org
}

/// A running sandbox with a client and a fresh access token.
pub struct Fixture {
    pub sandbox: RunningSandbox,
    pub client: reqwest::Client,
    pub token: String,
}

impl Fixture {
    pub async fn start(
        records: BTreeMap<String, Vec<RecordMap>>,
        options: SandboxOptions,
    ) -> Fixture {
        let sandbox = Sandbox::new(records, options)
            .expect("fixture records are valid")
            .serve("127.0.0.1:0".parse().expect("loopback address"))
            .await
            .expect("sandbox binds a loopback port");
        let client = reqwest::Client::new();
        let mut fixture = Fixture {
            sandbox,
            client,
            token: String::new(),
        };
        fixture.token = fixture.new_token().await;
        fixture
    }

    pub async fn small() -> Fixture {
        Fixture::start(small_org(), SandboxOptions::default()).await
    }

    pub fn handle(&self) -> SandboxHandle {
        self.sandbox.handle()
    }

    /// Runs the refresh_token grant with the sandbox's own credentials.
    pub async fn token_response(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/services/oauth2/token", self.sandbox.url()))
            .form(form)
            .send()
            .await
            .expect("token request completes")
    }

    pub async fn new_token(&self) -> String {
        let options = self.sandbox.options().clone();
        let response = self
            .token_response(&[
                ("grant_type", "refresh_token"),
                ("client_id", &options.client_id),
                ("client_secret", &options.client_secret),
                ("refresh_token", &options.refresh_token),
            ])
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("token body is JSON");
        body["access_token"]
            .as_str()
            .expect("access_token is a string")
            .to_string()
    }

    /// Sends an authenticated GET to a path under the instance URL.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.sandbox.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request completes")
    }

    /// Runs a query (or queryAll) with the SOQL properly URL-encoded.
    pub async fn query_raw(
        &self,
        resource: &str,
        soql: &str,
        batch_size: Option<usize>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .get(format!(
                "{}/services/data/{VERSION}/{resource}",
                self.sandbox.url()
            ))
            .query(&[("q", soql)])
            .bearer_auth(&self.token);
        if let Some(size) = batch_size {
            request = request.header("Sforce-Query-Options", format!("batchSize={size}"));
        }
        request.send().await.expect("query request completes")
    }

    /// Runs a query expected to succeed and returns its first page.
    pub async fn query(&self, soql: &str) -> Value {
        let response = self.query_raw("query", soql, None).await;
        let status = response.status();
        let body: Value = response.json().await.expect("query body is JSON");
        assert_eq!(status, 200, "query {soql} failed: {body}");
        body
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(format!("{}{path}", self.sandbox.url()))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("PATCH completes")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.sandbox.url()))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("POST completes")
    }
}

/// Returns the ids of a page's records in order.
pub fn ids(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .expect("records is an array")
        .iter()
        .map(|r| r["Id"].as_str().expect("record has an Id").to_string())
        .collect()
}

/// Asserts that a REST error response has this status and errorCode, and returns its message.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("error body is JSON");
    let first = &body[0];
    assert_eq!(first["errorCode"], code, "unexpected body {body}");
    first["message"].as_str().unwrap_or_default().to_string()
}
