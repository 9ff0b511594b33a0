//! Bulk API 2.0 result pages that the sandbox never sends, served by a scripted server on
//! loopback: a page whose body contains fewer rows than its `Sforce-NumberOfRecords` header
//! counts, and a page of a job that matched no rows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use leadscore_connector::{Connector, ConnectorError, PullSpec};
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

const DATA: &str = "/services/data/v59.0";
const JOB: &str = "750Aa00000Jq9rSIAR";

/// The results page the server sends: `Sforce-NumberOfRecords` and the CSV body.
#[derive(Clone)]
struct ResultsPage {
    number_of_records: &'static str,
    body: &'static str,
}

/// Starts a server on 127.0.0.1 that serves a token, a Lead describe, one query job and
/// `page` as its only results page. Returns its URL and the paths it was asked for.
async fn start(page: ResultsPage) -> (Url, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let base: Arc<Mutex<String>> = Arc::default();
    let log = seen.clone();
    let instance = base.clone();
    let app = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        let instance = instance.lock().unwrap().clone();
        let page = page.clone();
        async move {
            let path = request.uri().path().to_string();
            log.lock().unwrap().push(path.clone());
            reply(&instance, &path, &page)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    *base.lock().unwrap() = format!("http://{address}");
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (Url::parse(&format!("http://{address}")).unwrap(), seen)
}

fn reply(instance: &str, path: &str, page: &ResultsPage) -> Response {
    let json_response = |body: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json;charset=UTF-8")],
            body.to_string(),
        )
            .into_response()
    };
    match path {
        "/services/oauth2/token" => json_response(json!({
            "access_token": "token-1",
            "instance_url": instance,
            "id": "https://login.example.test/id/00D000000000001/005000000000001",
            "token_type": "Bearer",
            "issued_at": "1717000000123"
        })),
        p if p == format!("{DATA}/sobjects/Lead/describe") => json_response(json!({
            "name": "Lead",
            "fields": [
                {"name": "Id", "type": "id"},
                {"name": "SystemModstamp", "type": "datetime"},
                {"name": "Company", "type": "string", "length": 255}
            ]
        })),
        p if p == format!("{DATA}/jobs/query") => {
            json_response(json!({"id": JOB, "state": "UploadComplete"}))
        }
        p if p == format!("{DATA}/jobs/query/{JOB}") => {
            json_response(json!({"id": JOB, "state": "JobComplete", "numberRecordsProcessed": 3}))
        }
        p if p == format!("{DATA}/jobs/query/{JOB}/results") => {
            let mut response = (StatusCode::OK, page.body).into_response();
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("text/csv"));
            headers.insert(
                HeaderName::from_static("sforce-numberofrecords"),
                HeaderValue::from_static(page.number_of_records),
            );
            headers.insert(
                HeaderName::from_static("sforce-locator"),
                HeaderValue::from_static("null"),
            );
            response
        }
        _ => (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            json!([{"message": format!("no route {path}"), "errorCode": "NOT_FOUND"}]).to_string(),
        )
            .into_response(),
    }
}

fn connector(url: &Url) -> SalesforceConnector {
    SalesforceConnector::new(SalesforceConfig {
        login_url: url.clone(),
        api_version: "59.0".to_string(),
        client_id: "mock-client".to_string(),
        client_secret: SecretString::from("mock-secret"),
        refresh_token: SecretString::from("mock-refresh"),
        page_size: None,
        timeout: Duration::from_secs(5),
        max_retries: 0,
        retry_base_delay: Duration::from_millis(2),
        extra_ca_pem: None,
        allow_insecure_http: false,
        bulk_threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
        bulk_objects: vec!["Lead".to_string()],
        bulk_poll_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn lead_spec() -> PullSpec {
    PullSpec {
        object: "Lead".to_string(),
        fields: vec!["Company".to_string()],
        include_deleted: false,
    }
}

/// A proxy that cuts a body at a row boundary leaves valid CSV, so only the row count in
/// the header shows that a record is missing.
#[tokio::test]
async fn page_shorter_than_its_count_rejected() {
    let (url, _) = start(ResultsPage {
        number_of_records: "3",
        body: "\"Id\",\"SystemModstamp\",\"Company\"\n\
               \"00QA\",\"2024-05-01T10:00:00.000Z\",\"Mercy\"\n\
               \"00QB\",\"2024-05-01T10:05:00.000Z\",\"St. Luke\"\n",
    })
    .await;

    let error = connector(&url)
        .pull_first(&lead_spec(), None)
        .await
        .unwrap_err();

    match error {
        ConnectorError::Payload(message) => {
            assert!(message.contains(JOB), "{message}");
            assert!(message.contains("Sforce-NumberOfRecords 3"), "{message}");
            assert!(message.contains("2 rows"), "{message}");
        }
        other => panic!("expected Payload, got {other:?}"),
    }
}

#[tokio::test]
async fn page_matching_its_count_accepted() {
    let (url, _) = start(ResultsPage {
        number_of_records: "2",
        body: "\"Id\",\"SystemModstamp\",\"Company\"\n\
               \"00QA\",\"2024-05-01T10:00:00.000Z\",\"Line one\nline two\"\n\
               \"00QB\",\"2024-05-01T10:05:00.000Z\",\"\"\n",
    })
    .await;

    let page = connector(&url)
        .pull_first(&lead_spec(), None)
        .await
        .unwrap();

    assert_eq!(page.records.len(), 2);
    assert!(page.next.is_none());
}

/// A job that matched nothing may return a results page without even a header row.
#[tokio::test]
async fn empty_page_of_empty_job_accepted() {
    let (url, seen) = start(ResultsPage {
        number_of_records: "0",
        body: "",
    })
    .await;

    let page = connector(&url)
        .pull_first(&lead_spec(), None)
        .await
        .unwrap();

    assert!(page.records.is_empty());
    assert!(page.next.is_none());
    let results = format!("{DATA}/jobs/query/{JOB}/results");
    let reads = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| **p == results)
        .count();
    assert_eq!(reads, 1);
}
