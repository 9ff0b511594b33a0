//! Connector behaviour against scripted HTTP responses on loopback: retries, HTML error bodies,
//! session renewal under concurrency, row-lock retries and malformed write results. These are
//! failures the sandbox does not inject, so a small axum server returns canned bodies.

#[path = "support/capture.rs"]
mod capture;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Router;
use leadscore_connector::{Connector, ConnectorError, RecordUpdate, Value};
use leadscore_salesforce::{SalesforceConfig, SalesforceConnector};
use secrecy::SecretString;
use serde_json::{json, Value as Json};
use url::Url;

/// One request the mock server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: String,
}

/// A scripted response: status, content type and body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn json_reply(status: u16, body: Json) -> Reply {
    Reply {
        status,
        content_type: "application/json;charset=UTF-8",
        body: body.to_string(),
    }
}

type Script = dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync;

struct MockServer {
    url: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MockServer {
    /// Starts a server on 127.0.0.1 that responds to each request with `script(request, earlier
    /// requests)`.
    async fn start(script: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static) -> MockServer {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        let app = Router::new().fallback(move |request: Request| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
                let request = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    authorization: parts
                        .headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let earlier = log.lock().unwrap().clone();
                let reply = script(&request, &earlier);
                log.lock().unwrap().push(request);
                Response::builder()
                    .status(StatusCode::from_u16(reply.status).unwrap())
                    .header(header::CONTENT_TYPE, reply.content_type)
                    .header("Sforce-Limit-Info", "api-usage=7/15000")
                    .body(Body::from(reply.body))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockServer {
            url: Url::parse(&format!("http://{address}")).unwrap(),
            seen,
        }
    }

    fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn connector(&self, max_retries: u32) -> SalesforceConnector {
        SalesforceConnector::new(SalesforceConfig {
            login_url: self.url.clone(),
            api_version: "59.0".to_string(),
            client_id: "mock-client".to_string(),
            client_secret: SecretString::from("mock-secret"),
            refresh_token: SecretString::from("mock-refresh"),
            page_size: None,
            timeout: Duration::from_secs(5),
            max_retries,
            retry_base_delay: Duration::from_millis(2),
            extra_ca_pem: None,
            allow_insecure_http: false,
            bulk_threshold: leadscore_salesforce::DEFAULT_BULK_THRESHOLD,
            bulk_objects: Vec::new(),
            bulk_poll_timeout: leadscore_salesforce::DEFAULT_BULK_POLL_TIMEOUT,
        })
        .unwrap()
    }
}

const TOKEN_PATH: &str = "/services/oauth2/token";
const LIMITS_PATH: &str = "/services/data/v59.0/limits";
const COLLECTION_PATH: &str = "/services/data/v59.0/composite/sobjects";

/// Builds a token response whose access token is `token-<n>` for the n-th token request.
fn token_reply(instance: &str, earlier: &[Seen]) -> Reply {
    let issued = earlier.iter().filter(|r| r.path == TOKEN_PATH).count() + 1;
    json_reply(
        200,
        json!({
            "access_token": format!("token-{issued}"),
            "instance_url": instance,
            "id": "https://login.example.test/id/00D000000000001/005000000000001",
            "token_type": "Bearer",
            "issued_at": "1717000000123",
            "signature": "c2lnbmF0dXJl"
        }),
    )
}

fn limits_reply() -> Reply {
    json_reply(
        200,
        json!({"DailyApiRequests": {"Max": 15000, "Remaining": 14990}}),
    )
}

fn count_before(earlier: &[Seen], path: &str) -> usize {
    earlier.iter().filter(|r| r.path == path).count()
}

/// Starts a server whose script needs its own base URL for `instance_url`.
async fn start_with_instance(
    script: impl Fn(&str, &Seen, &[Seen]) -> Reply + Send + Sync + 'static,
) -> MockServer {
    let instance: Arc<Mutex<String>> = Arc::default();
    let shared = instance.clone();
    let server = MockServer::start(move |request, earlier| {
        let base = shared.lock().unwrap().clone();
        script(&base, request, earlier)
    })
    .await;
    *instance.lock().unwrap() = server.url.as_str().trim_end_matches('/').to_string();
    server
}

#[tokio::test]
async fn html_500_retried_then_succeeds() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        LIMITS_PATH if count_before(earlier, LIMITS_PATH) == 0 => Reply {
            status: 500,
            content_type: "text/html",
            body: "<html><body>Internal Server Error</body></html>".to_string(),
        },
        LIMITS_PATH => limits_reply(),
        _ => json_reply(
            404,
            json!([{"message": "not found", "errorCode": "NOT_FOUND"}]),
        ),
    })
    .await;
    let connector = server.connector(3);

    let usage = connector.check().await.unwrap();

    assert_eq!(usage.used, 10);
    assert_eq!(usage.max, 15000);
    assert_eq!(server.requests(LIMITS_PATH).len(), 2);
}

#[tokio::test]
async fn persistent_5xx_becomes_transport() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => Reply {
            status: 503,
            content_type: "text/html",
            body: "<html><h1>Down for maintenance</h1></html>".to_string(),
        },
    })
    .await;
    let connector = server.connector(2);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::Transport(message) => {
            assert!(message.contains("HTTP 503"), "{message}");
            assert!(message.contains("Down for maintenance"), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(
        server.requests(LIMITS_PATH).len(),
        3,
        "one try and two retries"
    );
}

#[tokio::test]
async fn token_html_error_reports_status() {
    let server = MockServer::start(|_, _| Reply {
        status: 404,
        content_type: "text/html",
        body: "<html><title>Page not found</title></html>".to_string(),
    })
    .await;
    let connector = server.connector(1);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::Auth(message) => {
            assert!(message.contains("HTTP 404"), "{message}");
            assert!(message.contains("Page not found"), "{message}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(server.requests(TOKEN_PATH).len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn token_request_sends_credentials_in_body() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => limits_reply(),
    })
    .await;
    let connector = server.connector(0);

    connector.check().await.unwrap();

    let token_requests = server.requests(TOKEN_PATH);
    assert_eq!(token_requests.len(), 1);
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(token_requests[0].body.as_bytes())
            .into_owned()
            .collect();
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("refresh_token"));
    assert_eq!(get("refresh_token"), Some("mock-refresh"));
    assert_eq!(get("client_id"), Some("mock-client"));
    assert_eq!(get("client_secret"), Some("mock-secret"));
    let limits = server.requests(LIMITS_PATH);
    assert_eq!(limits[0].authorization.as_deref(), Some("Bearer token-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_share_one_refresh() {
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        if request.authorization.as_deref() == Some("Bearer token-1") {
            return json_reply(
                401,
                json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            );
        }
        let object = request.path.split('/').nth(5).unwrap_or("Unknown").to_string();
        json_reply(200, json!({"name": object, "fields": []}))
    })
    .await;
    let connector = Arc::new(server.connector(0));

    let objects = ["Account", "Contact", "Lead", "Opportunity", "Task"];
    let results = describe_concurrently(connector, &objects).await;

    for (object, result) in objects.iter().zip(&results) {
        let schema = result.as_ref().unwrap_or_else(|e| panic!("{object}: {e}"));
        assert_eq!(&schema.name, object);
    }
    assert_eq!(
        server.requests(TOKEN_PATH).len(),
        2,
        "one first token and one renewal for all five rejected calls"
    );
}

/// Describes several objects in concurrent tasks and returns the results in input order.
async fn describe_concurrently(
    connector: Arc<SalesforceConnector>,
    objects: &[&str],
) -> Vec<Result<leadscore_connector::ObjectSchema, ConnectorError>> {
    let tasks: Vec<_> = objects
        .iter()
        .map(|object| {
            let connector = connector.clone();
            let object = object.to_string();
            tokio::spawn(async move { connector.describe(&object).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("describe task panicked"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_use_single_token() {
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        let object = request
            .path
            .split('/')
            .nth(5)
            .unwrap_or("Unknown")
            .to_string();
        json_reply(200, json!({"name": object, "fields": []}))
    })
    .await;
    let connector = Arc::new(server.connector(0));

    let results = describe_concurrently(connector, &["Account", "Lead", "Task"]).await;

    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.requests(TOKEN_PATH).len(), 1);
}

#[tokio::test]
async fn second_401_is_auth_error() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => json_reply(
            401,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        ),
    })
    .await;
    let connector = server.connector(3);

    let error = connector.check().await.unwrap_err();

    assert!(matches!(error, ConnectorError::Auth(_)), "{error:?}");
    assert_eq!(server.requests(TOKEN_PATH).len(), 2);
    assert_eq!(server.requests(LIMITS_PATH).len(), 2);
}

fn lead_update(id: &str) -> RecordUpdate {
    RecordUpdate {
        object: "Lead".to_string(),
        id: id.to_string(),
        fields: [("LS_Score__c".to_string(), Value::Number(50.0))].into(),
    }
}

/// Returns the ids of the records in a collection request body.
fn body_ids(body: &str) -> Vec<String> {
    let json: Json = serde_json::from_str(body).unwrap();
    json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn locked_row_reported_not_resent() {
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        let first_attempt = count_before(earlier, COLLECTION_PATH) == 0;
        let results: Vec<Json> = body_ids(&request.body)
            .iter()
            .map(|id| {
                if first_attempt && id == "00Q000000000002" {
                    json!({"success": false, "errors": [
                        {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access", "fields": []}]})
                } else {
                    json!({"id": id, "success": true, "errors": []})
                }
            })
            .collect();
        json_reply(200, Json::Array(results))
    })
    .await;
    let connector = server.connector(3);
    let updates: Vec<_> = ["00Q000000000001", "00Q000000000002", "00Q000000000003"]
        .iter()
        .map(|id| lead_update(id))
        .collect();

    let outcomes = connector.update(&updates).await.unwrap();

    // The connector sends each update once; resending locked rows is the write-back's job.
    assert_eq!(outcomes.len(), 3);
    for (outcome, update) in outcomes.iter().zip(&updates) {
        assert_eq!(outcome.id, update.id);
    }
    assert_eq!(outcomes[0].result, Ok(()));
    assert_eq!(outcomes[2].result, Ok(()));
    let locked = outcomes[1].result.clone().unwrap_err();
    assert_eq!(locked.code, "UNABLE_TO_LOCK_ROW");
    assert!(locked.retryable);
    let requests = server.requests(COLLECTION_PATH);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "PATCH");
}

#[tokio::test]
async fn rows_still_locked_are_retryable() {
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        let results: Vec<Json> = body_ids(&request.body)
            .iter()
            .map(|_| {
                json!({"success": false, "errors": [
                    {"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access", "fields": []}]})
            })
            .collect();
        json_reply(200, Json::Array(results))
    })
    .await;
    let connector = server.connector(2);

    let outcomes = connector
        .update(&[lead_update("00Q000000000001")])
        .await
        .unwrap();

    let error = outcomes[0].result.clone().unwrap_err();
    assert_eq!(error.code, "UNABLE_TO_LOCK_ROW");
    assert!(error.retryable);
    assert_eq!(
        server.requests(COLLECTION_PATH).len(),
        1,
        "sent once; the write-back decides whether to send it again"
    );
}

#[tokio::test]
async fn short_result_array_is_payload() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => json_reply(
            200,
            json!([{"id": "00Q000000000001", "success": true, "errors": []}]),
        ),
    })
    .await;
    let connector = server.connector(0);
    let updates = [
        lead_update("00Q000000000001"),
        lead_update("00Q000000000002"),
    ];

    let error = connector.update(&updates).await.unwrap_err();

    assert!(
        matches!(&error, ConnectorError::Payload(m) if m.contains("1 results for 2 records")),
        "{error:?}"
    );
}

#[tokio::test]
async fn large_update_split_into_batches() {
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        let results: Vec<Json> = body_ids(&request.body)
            .iter()
            .map(|id| json!({"id": id, "success": true, "errors": []}))
            .collect();
        json_reply(200, Json::Array(results))
    })
    .await;
    let connector = server.connector(0);
    let updates: Vec<_> = (0..450)
        .map(|i| lead_update(&format!("00Q{i:012}")))
        .collect();

    let outcomes = connector.update(&updates).await.unwrap();

    assert_eq!(connector.max_batch(), 200);
    assert_eq!(outcomes.len(), 450);
    assert!(outcomes
        .iter()
        .zip(&updates)
        .all(|(o, u)| o.id == u.id && o.result.is_ok()));
    let sizes: Vec<usize> = server
        .requests(COLLECTION_PATH)
        .iter()
        .map(|r| body_ids(&r.body).len())
        .collect();
    assert_eq!(sizes, vec![200, 200, 50]);
}

#[tokio::test]
async fn foreign_next_url_rejected() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => limits_reply(),
    })
    .await;
    let connector = server.connector(0);
    let spec = leadscore_connector::PullSpec {
        object: "Lead".to_string(),
        fields: vec![],
        include_deleted: false,
    };

    let error = connector
        .pull_next(&spec, None, "@evil.example.test/steal")
        .await
        .unwrap_err();

    assert!(matches!(error, ConnectorError::Payload(_)), "{error:?}");
    assert_eq!(
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path != TOKEN_PATH)
            .count(),
        0
    );
}

#[tokio::test]
async fn instance_url_with_credentials_rejected() {
    let log = capture::global_log();
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            // A hostile or misconfigured CRM names an instance URL with user info.
            let with_credentials = base.replace("http://", "http://leak-user:hunter2-password@");
            return token_reply(&with_credentials, earlier);
        }
        limits_reply()
    })
    .await;
    let connector = server.connector(1);

    let error = connector
        .check()
        .await
        .expect_err("an instance_url with credentials is rejected");

    let message = error.to_string();
    assert!(matches!(error, ConnectorError::Payload(_)), "{error:?}");
    assert!(message.contains("instance_url"), "{message}");
    assert!(!message.contains("hunter2-password"), "{message}");
    assert!(server.requests(LIMITS_PATH).is_empty(), "no request to it");
    let text = log.text();
    assert!(!text.contains("hunter2-password"), "log: {text}");
}

/// An `io::Write` that appends to a shared buffer, for capturing tracing output.
#[tokio::test]
async fn trace_output_has_no_secrets() {
    let log = capture::global_log();
    let server = start_with_instance(|base, request, earlier| {
        if request.path == TOKEN_PATH {
            return token_reply(base, earlier);
        }
        if request.authorization.as_deref() == Some("Bearer token-1") {
            return json_reply(
                401,
                json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            );
        }
        if request.path == COLLECTION_PATH {
            return json_reply(200, json!([{"success": false, "errors": [
                {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]}]));
        }
        limits_reply()
    })
    .await;
    let connector = server.connector(1);

    connector.check().await.unwrap();
    connector
        .update(&[lead_update("00Q000000000001")])
        .await
        .unwrap();
    let debug_text = format!("{connector:?}");

    let text = log.text();
    assert!(
        text.contains("obtained Salesforce access token"),
        "nothing captured: {text}"
    );
    assert!(text.contains("session rejected"), "{text}");
    for secret in [
        "mock-secret",
        "mock-refresh",
        "token-1",
        "token-2",
        "Bearer",
    ] {
        assert!(!text.contains(secret), "log contains {secret}: {text}");
        assert!(
            !debug_text.contains(secret),
            "Debug contains {secret}: {debug_text}"
        );
    }
}

/// Builds the 403 that Salesforce returns for a request limit, with `message` naming the limit.
fn request_limit_reply(message: &str) -> Reply {
    json_reply(
        403,
        json!([{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
    )
}

/// Salesforce uses REQUEST_LIMIT_EXCEEDED both for the spent daily allocation and for too many
/// long-running requests open at once. Only the message distinguishes them, and the second
/// clears within seconds.
#[tokio::test]
async fn concurrent_request_limit_retried() {
    for message in [
        "ConcurrentPerOrgLongTxn Limit exceeded.",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    ] {
        let server =
            start_with_instance(move |base, request, earlier| match request.path.as_str() {
                TOKEN_PATH => token_reply(base, earlier),
                LIMITS_PATH if count_before(earlier, LIMITS_PATH) < 2 => {
                    request_limit_reply(message)
                }
                _ => limits_reply(),
            })
            .await;
        let connector = server.connector(3);

        let usage = connector.check().await;

        assert!(usage.is_ok(), "{message}: {usage:?}");
        assert_eq!(server.requests(LIMITS_PATH).len(), 3, "{message}");
    }
}

#[tokio::test]
async fn persistent_concurrent_limit_is_transport() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => request_limit_reply("ConcurrentPerOrgLongTxn Limit exceeded."),
    })
    .await;
    let connector = server.connector(2);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::Transport(message) => {
            assert!(message.contains("ConcurrentPerOrgLongTxn"), "{message}");
            assert!(message.contains("at once"), "{message}");
            assert!(!message.contains("24-hour"), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(
        server.requests(LIMITS_PATH).len(),
        3,
        "one try, two retries"
    );
}

#[tokio::test]
async fn daily_request_limit_not_retried() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => request_limit_reply("TotalRequests Limit exceeded."),
    })
    .await;
    let connector = server.connector(3);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::LimitExceeded(message) => {
            assert!(message.contains("TotalRequests"), "{message}");
            assert!(message.contains("24-hour"), "{message}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert_eq!(server.requests(LIMITS_PATH).len(), 1);
}

/// A proxy or captive portal between leadscore and Salesforce can return its own HTML page
/// with a 200 status. The error then shows the page instead of a JSON parser position.
#[tokio::test]
async fn html_page_with_200_named() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: "<html><body><h1>Access blocked by the web filter</h1></body></html>".to_string(),
        },
    })
    .await;
    let connector = server.connector(2);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::Payload(message) => {
            assert!(message.contains("HTTP 200"), "{message}");
            assert!(
                message.contains("Access blocked by the web filter"),
                "{message}"
            );
            assert!(message.contains("proxy"), "{message}");
        }
        other => panic!("expected Payload, got {other:?}"),
    }
    assert_eq!(server.requests(LIMITS_PATH).len(), 1, "not retried");
}

/// Salesforce returns 410 Gone to every REST call to a retired API version. The error
/// names the setting to change instead of a bare status.
#[tokio::test]
async fn retired_api_version_named() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => Reply {
            status: 410,
            content_type: "text/html",
            body: String::new(),
        },
    })
    .await;
    let connector = server.connector(2);

    let error = connector.check().await.unwrap_err();

    match error {
        ConnectorError::Rejected { code, message } => {
            assert_eq!(code, "INVALID_CONFIG");
            assert!(message.contains("410"), "{message}");
            assert!(message.contains("api_version"), "{message}");
            assert!(message.contains("59.0"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.requests(LIMITS_PATH).len(), 1, "not retried");
}

/// A 502 or 504 from a gateway in front of Salesforce, or a 500, can follow a create that was
/// applied. Sending it again could give the owner the task twice, so the error goes back to
/// the caller, which looks the tasks up before it creates them again.
#[tokio::test]
async fn task_create_not_resent_after_502() {
    let server = start_with_instance(|base, request, earlier| match request.path.as_str() {
        TOKEN_PATH => token_reply(base, earlier),
        _ => Reply {
            status: 502,
            content_type: "text/html",
            body: "<html><body>Bad gateway</body></html>".to_string(),
        },
    })
    .await;
    let connector = server.connector(3);
    let task = leadscore_connector::NewTask {
        object: "Lead".to_string(),
        record_id: "00Q000000000001AAA".to_string(),
        owner_id: "005000000000001AAA".to_string(),
        subject: "Call back".to_string(),
        body: "Score rose to 91. marker7".to_string(),
        due: chrono::NaiveDate::from_ymd_opt(2024, 5, 3).unwrap(),
        priority: leadscore_connector::TaskPriority::High,
    };

    let error = connector.create_tasks(&[task]).await.unwrap_err();

    match error {
        ConnectorError::Transport(message) => {
            assert!(message.contains("502"), "{message}");
            assert!(message.contains("not sent again"), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(server.requests(COLLECTION_PATH).len(), 1);
}
