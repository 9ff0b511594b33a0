//! OAuth 2.0 refresh-token grant against the Salesforce token endpoint, and the shared session.
//!
//! Salesforce token responses carry no `expires_in`, so a session is used until an API call
//! returns 401 `INVALID_SESSION_ID`. All callers share one session behind a tokio mutex, and a
//! renewal only runs when the failing session is still the current one, so concurrent 401s
//! cause a single token request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use leadscore_connector::ConnectorError;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, ExtraTokenFields, RefreshToken, RequestTokenError,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{debug, warn};
use url::Url;

use crate::errors::describe_unparsed_body;
use crate::transport::backoff_delay;

/// The fields Salesforce adds to a standard OAuth token response.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct SalesforceTokenFields {
    /// Base URL for every REST call of this session.
    instance_url: String,
    /// Identity URL, `{login host}/id/{org id}/{user id}`.
    #[serde(default)]
    id: Option<String>,
    /// Milliseconds since the Unix epoch, as a string.
    #[serde(default)]
    issued_at: Option<String>,
    /// Base64 HMAC-SHA256 of `id` and `issued_at`, keyed with the client secret.
    // NOTE: not verified, because that needs an HMAC dependency. TLS to the login host is
    // what authenticates the response.
    #[serde(default)]
    signature: Option<String>,
}

impl ExtraTokenFields for SalesforceTokenFields {}

type SalesforceTokenResponse = StandardTokenResponse<SalesforceTokenFields, BasicTokenType>;

type TokenClient = oauth2::Client<
    BasicErrorResponse,
    SalesforceTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// An access token and the instance it is valid for.
#[derive(Clone)]
pub(crate) struct Session {
    pub access_token: SecretString,
    pub instance_url: Url,
    /// The id of the user the token acts as: the last segment of the identity URL, when the
    /// token response has one.
    pub user_id: Option<String>,
    /// Increases with every token request, so a caller can tell whether the session it saw fail
    /// has already been replaced.
    pub generation: u64,
}

struct TokenState {
    session: Option<Session>,
    refresh_token: SecretString,
    generation: u64,
}

/// Transport failure of the token request, reported to oauth2 as its HTTP client error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TokenHttpError(String);

/// The HTTP client handed to oauth2. It keeps the status and body of the last response, so that
/// failures oauth2 reports without them (HTML pages, empty bodies) can still be described and
/// classified.
struct RecordingClient<'a> {
    http: &'a reqwest::Client,
    last_response: StdMutex<Option<(u16, Vec<u8>)>>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for RecordingClient<'_> {
    type Error = TokenHttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, TokenHttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|error| TokenHttpError(crate::errors::error_chain(&error)))?;
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|error| TokenHttpError(crate::errors::error_chain(&error)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = leadscore_connector::http::read_capped(
                response,
                leadscore_connector::http::TOKEN_BODY_CAP,
                "token response",
            )
            .await
            .map_err(|error| TokenHttpError(error.to_string()))?;
            if let Ok(mut last) = self.last_response.lock() {
                *last = Some((status.as_u16(), body.clone()));
            }
            let mut builder = oauth2::http::Response::builder().status(status);
            for (name, value) in headers.iter() {
                builder = builder.header(name, value);
            }
            builder
                .body(body)
                .map_err(|error| TokenHttpError(crate::errors::error_chain(&error)))
        })
    }
}

/// The failure of one token request.
enum TokenFailure {
    /// Connection errors and 5xx responses, worth retrying.
    Transient(String),
    Fatal(ConnectorError),
}

/// Issues and renews access tokens with the refresh-token grant.
pub(crate) struct TokenSource {
    /// Saves a rotated refresh token before the session it came with is used.
    pub(crate) sink: Option<crate::RefreshTokenSink>,
    /// Accept an `instance_url` with plain http to a host other than loopback.
    pub(crate) allow_insecure_http: bool,
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    state: Mutex<TokenState>,
    max_retries: u32,
    retry_base_delay: Duration,
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        token_url: Url,
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
        max_retries: u32,
        retry_base_delay: Duration,
    ) -> Self {
        TokenSource {
            allow_insecure_http: false,
            sink: None,
            http,
            token_url,
            client_id,
            client_secret,
            state: Mutex::new(TokenState {
                session: None,
                refresh_token,
                generation: 0,
            }),
            max_retries,
            retry_base_delay,
        }
    }

    /// Returns the current session, requesting a token first when there is none.
    pub async fn session(&self) -> Result<Session, ConnectorError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session {
            return Ok(session.clone());
        }
        self.refresh_locked(&mut state).await
    }

    /// Replaces the session of generation `stale` after an API call rejected it. When another
    /// caller has already replaced it, returns the newer session without a token request.
    pub async fn renew(&self, stale: u64) -> Result<Session, ConnectorError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session {
            if session.generation != stale {
                return Ok(session.clone());
            }
        }
        state.session = None;
        self.refresh_locked(&mut state).await
    }

    /// Requests a token, retrying transient failures with backoff. The caller holds the lock,
    /// which is what keeps concurrent callers from sending their own token requests.
    async fn refresh_locked(&self, state: &mut TokenState) -> Result<Session, ConnectorError> {
        let mut attempt = 0;
        loop {
            match self.request_token(state).await {
                Ok(session) => return Ok(session),
                Err(TokenFailure::Fatal(error)) => return Err(error),
                Err(TokenFailure::Transient(message)) if attempt < self.max_retries => {
                    let delay = backoff_delay(self.retry_base_delay, attempt);
                    warn!(attempt = attempt + 1, ?delay, error = %message, "token request failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(TokenFailure::Transient(message)) => {
                    return Err(ConnectorError::Transport(format!(
                        "token request to {} failed after {} retries: {message}",
                        leadscore_connector::http::redact_url(&self.token_url),
                        self.max_retries
                    )))
                }
            }
        }
    }

    async fn request_token(&self, state: &mut TokenState) -> Result<Session, TokenFailure> {
        let client: TokenClient = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.client_secret.expose_secret().to_string(),
            ))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        let refresh_token = RefreshToken::new(state.refresh_token.expose_secret().to_string());

        let http_client = RecordingClient {
            http: &self.http,
            last_response: StdMutex::new(None),
        };
        let result = client
            .exchange_refresh_token(&refresh_token)
            .request_async(&http_client)
            .await;
        let last_response = http_client
            .last_response
            .lock()
            .ok()
            .and_then(|mut last| last.take());
        let response = result.map_err(|error| self.classify(error, last_response))?;

        let instance_url = parse_instance_url(
            &response.extra_fields().instance_url,
            self.allow_insecure_http,
        )
        .map_err(TokenFailure::Fatal)?;
        if let Some(rotated) = response.refresh_token() {
            let rotated = SecretString::from(rotated.secret().clone());
            // With rotation on, the old refresh token stops working now, so the new one is
            // saved before the session is used. A run that cannot save it stops here.
            let saved = self.sink.as_ref().map(|sink| sink(&rotated));
            state.refresh_token = rotated;
            if let Some(Err(message)) = saved {
                return Err(TokenFailure::Fatal(ConnectorError::Auth(format!(
                    "Salesforce rotated the refresh token, and saving the new one failed: \
                     {message}. The old refresh token no longer works; fix the refresh token \
                     file's folder permissions and authorize the connected app again"
                ))));
            }
            debug!(
                saved = saved.is_some(),
                "token response carried a new refresh token, which replaces the old one"
            );
        }
        state.generation += 1;
        let session = Session {
            access_token: SecretString::from(response.access_token().secret().clone()),
            instance_url,
            user_id: response.extra_fields().id.as_deref().and_then(user_id_of),
            generation: state.generation,
        };
        debug!(
            instance_url = %session.instance_url,
            generation = session.generation,
            "obtained Salesforce access token"
        );
        state.session = Some(session.clone());
        Ok(session)
    }

    /// Sorts a failed token request into transient and fatal failures.
    fn classify(
        &self,
        error: RequestTokenError<TokenHttpError, BasicErrorResponse>,
        last_response: Option<(u16, Vec<u8>)>,
    ) -> TokenFailure {
        let status = last_response.as_ref().map(|(status, _)| *status);
        let unparsed = || match &last_response {
            Some((status, body)) => describe_unparsed_body(*status, body),
            None => "no response".to_string(),
        };
        match error {
            RequestTokenError::Request(error) => {
                TokenFailure::Transient(crate::errors::error_chain(&error))
            }
            _ if status.is_some_and(|status| status >= 500) => TokenFailure::Transient(unparsed()),
            RequestTokenError::ServerResponse(response) => {
                let code = response.error().as_ref().to_string();
                let description = response.error_description().cloned().unwrap_or_default();
                TokenFailure::Fatal(ConnectorError::Auth(format!(
                    "Salesforce token request was rejected: {code}: {description}. Check the \
                     Salesforce client id, client secret and refresh token (the environment \
                     variables, and the file refresh_token_file names when it is set), and \
                     that the login URL {} belongs to the org that issued them",
                    self.login_origin()
                )))
            }
            RequestTokenError::Parse(error, _) if status == Some(200) => {
                TokenFailure::Fatal(ConnectorError::Payload(format!(
                    "token response from {} is not a Salesforce token response: {error}",
                    leadscore_connector::http::redact_url(&self.token_url)
                )))
            }
            RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
                TokenFailure::Fatal(ConnectorError::Auth(format!(
                    "Salesforce token request to {} failed: {}. Check that the login URL points \
                     at a Salesforce login host",
                    leadscore_connector::http::redact_url(&self.token_url),
                    unparsed()
                )))
            }
        }
    }

    fn login_origin(&self) -> String {
        self.token_url.origin().ascii_serialization()
    }
}

/// Parses the `instance_url` of a token response, which must be an http or https URL
/// without user info.
fn parse_instance_url(text: &str, allow_insecure_http: bool) -> Result<Url, ConnectorError> {
    let url = Url::parse(text).map_err(|error| {
        ConnectorError::Payload(format!(
            "token response has an invalid instance_url ({error}); it starts {:?}",
            unparsed_prefix(text)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConnectorError::Payload(format!(
            "token response has instance_url {:?}, which is not an http or https URL",
            leadscore_connector::http::redact_url(&url)
        )));
    }
    leadscore_connector::http::check_no_credentials(&url).map_err(|message| {
        ConnectorError::Payload(format!("token response instance_url: {message}"))
    })?;
    leadscore_connector::http::check_plain_http(
        &url,
        allow_insecure_http,
        "[connector] allow_insecure_http",
    )
    .map_err(|message| {
        ConnectorError::Payload(format!("token response instance_url: {message}"))
    })?;
    Ok(url)
}

/// Returns the first 60 characters of an instance_url that does not parse, without the
/// query, the fragment and the user info before an `@`, so no credential reaches an error.
fn unparsed_prefix(text: &str) -> String {
    let end = text.find(['?', '#']).unwrap_or(text.len());
    let head = &text[..end];
    let redacted = match (head.rfind('@'), head.find("://")) {
        (Some(at), Some(scheme_end)) if scheme_end < at => {
            format!("{}://...{}", &head[..scheme_end], &head[at..])
        }
        (Some(at), _) => format!("...{}", &head[at..]),
        (None, _) => head.to_string(),
    };
    redacted.chars().take(60).collect()
}

/// Returns the user id at the end of an identity URL such as
/// `https://login.salesforce.com/id/00Dxx0000001gPL/005xx000001Sv6A`.
fn user_id_of(identity_url: &str) -> Option<String> {
    let id = identity_url.trim_end_matches('/').rsplit('/').next()?;
    let valid = matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_url_must_be_http() {
        assert!(parse_instance_url("https://acme.my.salesforce.com", false).is_ok());
        assert!(parse_instance_url("http://127.0.0.1:8080", false).is_ok());
        assert!(parse_instance_url("http://acme.my.salesforce.com", false).is_err());
        assert!(parse_instance_url("http://acme.my.salesforce.com", true).is_ok());
        assert!(parse_instance_url("file:///etc/passwd", true).is_err());
        assert!(parse_instance_url("not a url", false).is_err());
    }

    #[test]
    fn instance_url_errors_hide_user_info_and_query() {
        for text in [
            "ftp://admin:hunter2@acme.my.salesforce.com/?sid=hunter2",
            "https://admin:hunter2@[bad host/?sid=hunter2",
        ] {
            let error = parse_instance_url(text, false).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(error.contains("instance_url"), "{error}");
        }
    }

    #[test]
    fn user_id_comes_from_identity_url() {
        let url = "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS";
        assert_eq!(user_id_of(url).as_deref(), Some("005xx000001Sv6AAAS"));
        assert_eq!(user_id_of("https://login.salesforce.com/id/00D/005"), None);
        assert_eq!(user_id_of(""), None);
    }

    #[test]
    fn token_response_with_salesforce_fields_parses() {
        let body = r#"{"access_token":"00D!abc","signature":"c2ln","scope":"api refresh_token",
            "instance_url":"https://acme.my.salesforce.com","id":"https://login.salesforce.com/id/00D/005",
            "token_type":"Bearer","issued_at":"1717000000123"}"#;
        let response: SalesforceTokenResponse = serde_json::from_str(body).unwrap();
        assert_eq!(response.access_token().secret(), "00D!abc");
        assert_eq!(
            response.extra_fields().instance_url,
            "https://acme.my.salesforce.com"
        );
        assert_eq!(
            response.extra_fields().issued_at.as_deref(),
            Some("1717000000123")
        );
        assert!(response.expires_in().is_none());
        assert!(response.refresh_token().is_none());
    }
}
