//! OAuth token grant, bearer checks, token expiry and routing errors.

use std::time::Duration;

use leadscore_sandbox::SandboxOptions;
use serde_json::Value;

use crate::support::{expect_error, small_org, Fixture, LEAD_QUINN, VERSION};

#[tokio::test]
async fn token_grant_has_salesforce_shape() {
    let fixture = Fixture::small().await;
    let options = fixture.sandbox.options().clone();
    let response = fixture
        .token_response(&[
            ("grant_type", "refresh_token"),
            ("client_id", &options.client_id),
            ("client_secret", &options.client_secret),
            ("refresh_token", &options.refresh_token),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("00D"), "{token}");
    assert!(token.contains('!'), "{token}");
    assert_eq!(body["instance_url"], fixture.sandbox.url());
    assert_eq!(body["token_type"], "Bearer");
    let issued_at = body["issued_at"].as_str().expect("issued_at is a string");
    assert!(issued_at.len() >= 13 && issued_at.bytes().all(|b| b.is_ascii_digit()));
    assert!(body["id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/id/00D", fixture.sandbox.url())));
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("expires_in").is_none());
    // The new token works and differs from the fixture's.
    assert_ne!(token, fixture.token);
    let limits = fixture
        .client
        .get(format!(
            "{}/services/data/{VERSION}/limits",
            fixture.sandbox.url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 200);
}

#[tokio::test]
async fn token_errors_name_the_bad_credential() {
    let fixture = Fixture::small().await;
    let options = fixture.sandbox.options().clone();
    let cases = [
        (
            "password",
            options.client_id.as_str(),
            options.client_secret.as_str(),
            options.refresh_token.as_str(),
            "unsupported_grant_type",
        ),
        (
            "refresh_token",
            "wrong-id",
            options.client_secret.as_str(),
            options.refresh_token.as_str(),
            "invalid_client_id",
        ),
        (
            "refresh_token",
            options.client_id.as_str(),
            "wrong-secret",
            options.refresh_token.as_str(),
            "invalid_client",
        ),
        (
            "refresh_token",
            options.client_id.as_str(),
            options.client_secret.as_str(),
            "wrong-refresh",
            "invalid_grant",
        ),
    ];
    for (grant, client_id, secret, refresh, expected) in cases {
        let response = fixture
            .token_response(&[
                ("grant_type", grant),
                ("client_id", client_id),
                ("client_secret", secret),
                ("refresh_token", refresh),
            ])
            .await;
        assert_eq!(response.status(), 400, "case {expected}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], expected);
        assert!(body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
    }
}

#[tokio::test]
async fn missing_or_unknown_token_gets_401() {
    let fixture = Fixture::small().await;
    let url = format!(
        "{}/services/data/{VERSION}/sobjects/",
        fixture.sandbox.url()
    );
    let missing = fixture.client.get(&url).send().await.unwrap();
    let message = expect_error(missing, 401, "INVALID_SESSION_ID").await;
    assert_eq!(message, "Session expired or invalid");
    let unknown = fixture
        .client
        .get(&url)
        .bearer_auth("00Dnope!nope")
        .send()
        .await
        .unwrap();
    expect_error(unknown, 401, "INVALID_SESSION_ID").await;
}

#[tokio::test]
async fn expired_tokens_get_401_until_refresh() {
    let mut fixture = Fixture::small().await;
    let path = format!("/services/data/{VERSION}/limits");
    assert_eq!(fixture.get(&path).await.status(), 200);
    fixture.handle().expire_access_tokens();
    expect_error(fixture.get(&path).await, 401, "INVALID_SESSION_ID").await;
    fixture.token = fixture.new_token().await;
    assert_eq!(fixture.get(&path).await.status(), 200);
}

#[tokio::test]
async fn tokens_expire_after_n_requests() {
    let mut fixture = Fixture::small().await;
    let path = format!("/services/data/{VERSION}/limits");
    fixture.handle().expire_tokens_after_requests(2);
    assert_eq!(fixture.get(&path).await.status(), 200);
    assert_eq!(fixture.get(&path).await.status(), 200);
    expect_error(fixture.get(&path).await, 401, "INVALID_SESSION_ID").await;
    fixture.token = fixture.new_token().await;
    assert_eq!(fixture.get(&path).await.status(), 200);
}

#[tokio::test]
async fn token_ttl_expires_tokens() {
    let options = SandboxOptions {
        token_ttl: Duration::from_millis(300),
        ..SandboxOptions::default()
    };
    let fixture = Fixture::start(small_org(), options).await;
    let path = format!("/services/data/{VERSION}/limits");
    assert_eq!(fixture.get(&path).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_error(fixture.get(&path).await, 401, "INVALID_SESSION_ID").await;
}

#[tokio::test]
async fn revoking_refresh_token_kills_access_tokens() {
    let fixture = Fixture::small().await;
    let refresh = fixture.sandbox.options().refresh_token.clone();
    let response = fixture
        .client
        .post(format!("{}/services/oauth2/revoke", fixture.sandbox.url()))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    expect_error(
        fixture
            .get(&format!("/services/data/{VERSION}/limits"))
            .await,
        401,
        "INVALID_SESSION_ID",
    )
    .await;
    let options = fixture.sandbox.options().clone();
    let again = fixture
        .token_response(&[
            ("grant_type", "refresh_token"),
            ("client_id", &options.client_id),
            ("client_secret", &options.client_secret),
            ("refresh_token", &options.refresh_token),
        ])
        .await;
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let fixture = Fixture::small().await;
    let unknown = fixture
        .get(&format!("/services/data/{VERSION}/nothing/here"))
        .await;
    assert!(unknown.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let message = expect_error(unknown, 404, "NOT_FOUND").await;
    assert_eq!(message, "The requested resource does not exist");
    expect_error(fixture.get("/somewhere/else").await, 404, "NOT_FOUND").await;
    expect_error(
        fixture.get("/services/data/latest/limits").await,
        404,
        "NOT_FOUND",
    )
    .await;
    let wrong_method = fixture
        .client
        .delete(format!(
            "{}/services/data/{VERSION}/limits",
            fixture.sandbox.url()
        ))
        .bearer_auth(&fixture.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert!(body[0]["errorCode"].is_string());
}

#[tokio::test]
async fn request_log_records_auth_and_query() {
    let fixture = Fixture::small().await;
    fixture.query("SELECT Id FROM Account").await;
    let log = fixture.handle().request_log();
    let last = log.last().expect("requests were logged");
    assert_eq!(last.method, "GET");
    assert_eq!(last.path, format!("/services/data/{VERSION}/query"));
    assert!(last
        .query
        .as_deref()
        .is_some_and(|q| q.starts_with("q=SELECT")));
    assert_eq!(
        last.authorization.as_deref(),
        Some(format!("Bearer {}", fixture.token).as_str())
    );
    assert_eq!(last.status, 200);
    let token_request = log
        .iter()
        .find(|r| r.path == "/services/oauth2/token")
        .expect("token request logged");
    assert!(token_request.body.contains("grant_type=refresh_token"));
}

#[tokio::test]
async fn json_responses_carry_charset() {
    let fixture = Fixture::small().await;
    let url = fixture.sandbox.url();
    let options = fixture.sandbox.options().clone();
    let token = fixture
        .token_response(&[
            ("grant_type", "refresh_token"),
            ("client_id", &options.client_id),
            ("client_secret", &options.client_secret),
            ("refresh_token", &options.refresh_token),
        ])
        .await;
    let bad_grant = fixture.token_response(&[("grant_type", "password")]).await;
    let unauthenticated = fixture
        .client
        .get(format!("{url}/services/data/{VERSION}/limits"))
        .send()
        .await
        .unwrap();
    let versions = fixture
        .client
        .get(format!("{url}/services/data/"))
        .send()
        .await
        .unwrap();
    let wrong_method = fixture
        .client
        .delete(format!("{url}/services/data/{VERSION}/limits"))
        .bearer_auth(&fixture.token)
        .send()
        .await
        .unwrap();
    let responses = [
        ("token", token),
        ("token error", bad_grant),
        ("401", unauthenticated),
        ("versions", versions),
        ("405", wrong_method),
        (
            "query",
            fixture
                .query_raw("query", "SELECT Id FROM Account", None)
                .await,
        ),
        (
            "describe",
            fixture
                .get(&format!("/services/data/{VERSION}/sobjects/Lead/describe"))
                .await,
        ),
        (
            "404",
            fixture
                .get(&format!("/services/data/{VERSION}/nothing"))
                .await,
        ),
        (
            "collection update",
            fixture
                .patch_json(
                    &format!("/services/data/{VERSION}/composite/sobjects"),
                    &serde_json::json!({"records": []}),
                )
                .await,
        ),
    ];
    for (name, response) in responses {
        assert_eq!(
            response.headers()["content-type"],
            "application/json;charset=UTF-8",
            "{name}"
        );
        let body: Result<Value, _> = response.json().await;
        assert!(body.is_ok(), "{name} body is JSON");
    }

    let no_content = fixture
        .patch_json(
            &format!("/services/data/{VERSION}/sobjects/Lead/{LEAD_QUINN}"),
            &serde_json::json!({"LS_Score__c": 1}),
        )
        .await;
    assert_eq!(no_content.status(), 204);
    assert!(no_content.headers().get("content-type").is_none());
}
