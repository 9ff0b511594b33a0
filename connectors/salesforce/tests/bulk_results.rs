//! Bulk API 2.0 responses that the sandbox never sends, served by a scripted server on
//! loopback: a page whose body contains fewer rows than its `Sforce-NumberOfRecords` header
//! counts, and a page of a job that matched no rows. It also rejects job creation as
//! Salesforce does once the org spent its daily Bulk allowance, or for an object that does
//! not support Bulk queries.

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

/// A results page of two rows, which matches its count.
const TWO_ROWS: ResultsPage = ResultsPage {
    number_of_records: "2",
    body: "\"Id\",\"SystemModstamp\",\"Company\"\n\
           \"00QA\",\"2024-05-01T10:00:00.000Z\",\"Line one\nline two\"\n\
           \"00QB\",\"2024-05-01T10:05:00.000Z\",\"\"\n",
};

/// What the server does: the one results page of its job, and the error that job creation
/// fails with instead, if any, as status and `[{errorCode, message}]` body.
#[derive(Clone)]
struct Script {
    page: ResultsPage,
    create_job_error: Option<(u16, &'static str, &'static str)>,
}

impl From<ResultsPage> for Script {
    fn from(page: ResultsPage) -> Self {
        Script {
            page,
            create_job_error: None,
        }
    }
}

/// Starts a server on 127.0.0.1 that serves a token, a Lead describe, a REST query page of
/// three leads, and one query job with the script's results page. Returns its URL and the
/// paths it received.
async fn start(script: impl Into<Script>) -> (Url, Arc<Mutex<Vec<String>>>) {
    let script = script.into();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let base: Arc<Mutex<String>> = Arc::default();
    let log = seen.clone();
    let instance = base.clone();
    let app = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        let instance = instance.lock().unwrap().clone();
        let script = script.clone();
        async move {
            // Every API version is served alike, and logged as 59.0.
            let path = request
                .uri()
                .path()
                .replacen("/services/data/v46.0", DATA, 1);
            log.lock().unwrap().push(path.clone());
            reply(&instance, &path, &script)
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

fn reply(instance: &str, path: &str, script: &Script) -> Response {
    let page = &script.page;
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
        p if p == format!("{DATA}/query") => json_response(json!({
            "totalSize": 3,
            "done": false,
            "nextRecordsUrl": format!("{DATA}/query/01gA-2"),
            "records": [
                {"attributes": {"type": "Lead"}, "Id": "00QA",
                 "SystemModstamp": "2024-05-01T10:00:00.000+0000", "Company": "Mercy"},
                {"attributes": {"type": "Lead"}, "Id": "00QB",
                 "SystemModstamp": "2024-05-01T10:05:00.000+0000", "Company": "St. Luke"}
            ]
        })),
        p if p == format!("{DATA}/query/01gA-2") => json_response(json!({
            "totalSize": 3,
            "done": true,
            "records": [
                {"attributes": {"type": "Lead"}, "Id": "00QC",
                 "SystemModstamp": "2024-05-01T10:09:00.000+0000", "Company": "Grace"}
            ]
        })),
        p if p == format!("{DATA}/jobs/query") => match script.create_job_error {
            Some((status, code, message)) => (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json;charset=UTF-8")],
                json!([{"errorCode": code, "message": message}]).to_string(),
            )
                .into_response(),
            None => json_response(json!({"id": JOB, "state": "UploadComplete"})),
        },
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
    connector_with(url, &["Lead"], leadscore_salesforce::DEFAULT_BULK_THRESHOLD)
}

fn connector_with(url: &Url, bulk_objects: &[&str], bulk_threshold: u64) -> SalesforceConnector {
    connector_at_version(url, "59.0", bulk_objects, bulk_threshold)
}

fn connector_at_version(
    url: &Url,
    api_version: &str,
    bulk_objects: &[&str],
    bulk_threshold: u64,
) -> SalesforceConnector {
    SalesforceConnector::new(SalesforceConfig {
        login_url: url.clone(),
        api_version: api_version.to_string(),
        client_id: "mock-client".to_string(),
        client_secret: SecretString::from("mock-secret"),
        refresh_token: SecretString::from("mock-refresh"),
        page_size: None,
        timeout: Duration::from_secs(5),
        max_retries: 0,
        retry_base_delay: Duration::from_millis(2),
        extra_ca_pem: None,
        allow_insecure_http: false,
        bulk_threshold,
        bulk_objects: bulk_objects.iter().map(|o| o.to_string()).collect(),
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
    let (url, _) = start(TWO_ROWS).await;

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

/// Salesforce rejects job creation with these errors once the org has created 10,000 query
/// jobs or stored 1 TB of results in 24 hours, and for objects that Bulk API 2.0 cannot query.
/// The REST API still works in each case.
const BULK_REJECTIONS: [(u16, &str, &str); 3] = [
    (
        400,
        "LIMIT_EXCEEDED",
        "Max bulk v2 query jobs (10000) per 24 hrs has been reached (10021)",
    ),
    (
        400,
        "LIMIT_EXCEEDED",
        "Max bulk v2 query result size stored (1000000000) kb per 24 hrs has been exceeded",
    ),
    (
        400,
        "INVALIDENTITY",
        "Lead is not supported by the Bulk API",
    ),
];

fn paths_to(seen: &Arc<Mutex<Vec<String>>>, path: &str) -> usize {
    seen.lock().unwrap().iter().filter(|p| *p == path).count()
}

#[tokio::test]
async fn forced_bulk_rejected_pulls_over_rest() {
    for rejection in BULK_REJECTIONS {
        let (url, seen) = start(Script {
            page: TWO_ROWS,
            create_job_error: Some(rejection),
        })
        .await;
        let connector = connector(&url);

        let first = connector.pull_first(&lead_spec(), None).await;

        let first = first.unwrap_or_else(|error| panic!("{}: {error}", rejection.2));
        assert_eq!(first.records.len(), 2, "{}", rejection.2);
        let next = first.next.expect("the REST pull has a second page");
        let second = connector
            .pull_next(&lead_spec(), None, &next)
            .await
            .unwrap();
        assert_eq!(second.records.len(), 1);
        assert!(second.next.is_none());
        assert_eq!(paths_to(&seen, &format!("{DATA}/jobs/query")), 1);
        assert_eq!(paths_to(&seen, &format!("{DATA}/query")), 1);
    }
}

#[tokio::test]
async fn bulk_switch_rejected_keeps_rest_page() {
    let (url, seen) = start(Script {
        page: TWO_ROWS,
        create_job_error: Some(BULK_REJECTIONS[0]),
    })
    .await;
    let connector = connector_with(&url, &[], 1);

    let first = connector.pull_first(&lead_spec(), None).await.unwrap();

    assert_eq!(first.records.len(), 2);
    assert!(first.next.is_some());
    assert_eq!(paths_to(&seen, &format!("{DATA}/jobs/query")), 1);
    assert_eq!(paths_to(&seen, &format!("{DATA}/query")), 1);
}

#[tokio::test]
async fn other_job_errors_still_fail() {
    let (url, _) = start(Script {
        page: TWO_ROWS,
        create_job_error: Some((400, "INVALIDJOB", "Unable to parse the query")),
    })
    .await;

    let error = connector(&url)
        .pull_first(&lead_spec(), None)
        .await
        .unwrap_err();

    match error {
        ConnectorError::Rejected { code, .. } => assert_eq!(code, "INVALIDJOB"),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

/// Bulk API 2.0 query jobs exist from API 47.0, so an older configured version keeps a large
/// pull on REST instead of asking for a job that does not exist.
#[tokio::test]
async fn bulk_switch_skipped_before_version_47() {
    let (url, seen) = start(TWO_ROWS).await;
    let connector = connector_at_version(&url, "46.0", &[], 1);

    let first = connector.pull_first(&lead_spec(), None).await.unwrap();

    assert_eq!(first.records.len(), 2);
    assert!(first.next.is_some());
    assert_eq!(paths_to(&seen, &format!("{DATA}/jobs/query")), 0);
}
