//! Access tokens: a private app's static token, or OAuth 2.0 access tokens renewed with the
//! refresh-token grant.
//!
//! OAuth access tokens carry `expires_in` (usually 1800 seconds) and are renewed shortly before
//! they run out. A 401 renews once more, because a token can also be revoked early. All callers
//! share one token behind a tokio mutex, and a renewal runs only when the rejected token is
//! still the current one, so concurrent 401s cause a single token request.

use std::time::{Duration, Instant};

use leadscore_connector::ConnectorError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::{debug, warn};
use url::Url;

use crate::errors::{describe_unparsed_body, error_chain, parse_error_body};
use crate::transport::backoff_delay;

/// Renew an OAuth token this long before HubSpot's stated expiry, at most.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A token to send as `Authorization: Bearer`, with the generation that issued it.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub secret: SecretString,
    /// Increases with every token request, so a caller can tell whether the token it saw fail
    /// has already been replaced. Always 0 for a private-app token.
    pub generation: u64,
}

pub(crate) struct OAuthState {
    token: Option<(AccessToken, Instant)>,
    refresh_token: SecretString,
    generation: u64,
}

/// OAuth client settings.
pub(crate) struct OAuthClient {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Saves a new refresh token from a token response before its access token is used.
    pub sink: Option<crate::RefreshTokenSink>,
}

/// The source of access tokens.
pub(crate) enum TokenSource {
    Static(SecretString),
    OAuth {
        client: Box<OAuthClient>,
        state: Box<Mutex<OAuthState>>,
    },
}

/// Token response, in snake_case as the OAuth spec names the fields, or camelCase as one of
/// HubSpot's generated reference pages renders them.
#[derive(Deserialize)]
struct TokenWire {
    #[serde(alias = "accessToken")]
    access_token: String,
    #[serde(default, alias = "refreshToken")]
    refresh_token: Option<String>,
    #[serde(default, alias = "expiresIn")]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn oauth(client: OAuthClient, refresh_token: SecretString) -> Self {
        TokenSource::OAuth {
            client: Box::new(client),
            state: Box::new(Mutex::new(OAuthState {
                token: None,
                refresh_token,
                generation: 0,
            })),
        }
    }

    /// Sets the callback that saves a rotated refresh token; private-app tokens have none.
    pub fn set_sink(&mut self, sink: crate::RefreshTokenSink) {
        if let TokenSource::OAuth { client, .. } = self {
            client.sink = Some(sink);
        }
    }

    pub fn can_renew(&self) -> bool {
        matches!(self, TokenSource::OAuth { .. })
    }

    /// Returns a token that is valid for at least the renewal margin, requesting one first
    /// when there is none or the current one is about to expire.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        retries: &RetryPolicy,
    ) -> Result<AccessToken, ConnectorError> {
        match self {
            TokenSource::Static(secret) => Ok(AccessToken {
                secret: secret.clone(),
                generation: 0,
            }),
            TokenSource::OAuth { client, state } => {
                let mut state = state.lock().await;
                if let Some((token, renew_at)) = &state.token {
                    if Instant::now() < *renew_at {
                        return Ok(token.clone());
                    }
                    debug!(
                        generation = token.generation,
                        "OAuth access token is about to expire, renewing"
                    );
                }
                refresh_locked(client, &mut state, http, retries).await
            }
        }
    }

    /// Replaces the token of generation `stale` after HubSpot rejected it. When another caller
    /// has already replaced it, returns the newer token without a token request.
    pub async fn renew(
        &self,
        stale: u64,
        http: &reqwest::Client,
        retries: &RetryPolicy,
    ) -> Result<AccessToken, ConnectorError> {
        match self {
            TokenSource::Static(_) => Err(ConnectorError::Auth(
                "HubSpot rejected the private app access token; create a new token in the \
                 private app's settings and update the configuration"
                    .to_string(),
            )),
            TokenSource::OAuth { client, state } => {
                let mut state = state.lock().await;
                if let Some((token, _)) = &state.token {
                    if token.generation != stale {
                        return Ok(token.clone());
                    }
                }
                state.token = None;
                refresh_locked(client, &mut state, http, retries).await
            }
        }
    }
}

/// Retry settings shared by API calls and token requests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
}

/// Requests a token, retrying transient failures. The caller holds the state lock, which is
/// what keeps concurrent callers from sending their own token requests.
async fn refresh_locked(
    client: &OAuthClient,
    state: &mut OAuthState,
    http: &reqwest::Client,
    retries: &RetryPolicy,
) -> Result<AccessToken, ConnectorError> {
    let mut attempt = 0;
    loop {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client.client_id.as_str()),
            ("client_secret", client.client_secret.expose_secret()),
            ("refresh_token", state.refresh_token.expose_secret()),
        ];
        let failure = match http.post(client.token_url.clone()).form(&form).send().await {
            Err(error) => format!("connection failed: {}", error_chain(&error)),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = leadscore_connector::http::read_capped(
                    response,
                    leadscore_connector::http::TOKEN_BODY_CAP,
                    "token response",
                )
                .await
                .map_err(|error| ConnectorError::Transport(error.to_string()))?;
                if (200..300).contains(&status) {
                    return store_token(client, state, &body);
                }
                if status < 500 {
                    let error = parse_error_body(status, &body);
                    return Err(ConnectorError::Auth(format!(
                        "HubSpot token request to {} was rejected: {}: {}. Check the OAuth \
                         client id, client secret and refresh token, and that the app is still \
                         installed in the portal",
                        leadscore_connector::http::redact_url(&client.token_url),
                        error.category,
                        error.message
                    )));
                }
                describe_unparsed_body(status, &body)
            }
        };
        if attempt >= retries.max_retries {
            return Err(ConnectorError::Transport(format!(
                "token request to {} failed after {attempt} retries: {failure}",
                leadscore_connector::http::redact_url(&client.token_url)
            )));
        }
        let delay = backoff_delay(retries.base_delay, attempt);
        warn!(attempt = attempt + 1, ?delay, error = %failure, "token request failed, retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn store_token(
    client: &OAuthClient,
    state: &mut OAuthState,
    body: &[u8],
) -> Result<AccessToken, ConnectorError> {
    let wire: TokenWire = serde_json::from_slice(body).map_err(|error| {
        ConnectorError::Payload(format!(
            "token response from {} is not an OAuth token response: {error}",
            leadscore_connector::http::redact_url(&client.token_url)
        ))
    })?;
    if wire.access_token.is_empty() {
        return Err(ConnectorError::Payload(format!(
            "token response from {} has an empty access_token",
            leadscore_connector::http::redact_url(&client.token_url)
        )));
    }
    if let Some(rotated) = wire.refresh_token.filter(|token| !token.is_empty()) {
        // HubSpot normally returns the same refresh token again; only a changed one is saved.
        if rotated != state.refresh_token.expose_secret() {
            let rotated = SecretString::from(rotated);
            let saved = client.sink.as_ref().map(|sink| sink(&rotated));
            state.refresh_token = rotated;
            if let Some(Err(message)) = saved {
                return Err(ConnectorError::Auth(format!(
                    "HubSpot issued a new refresh token, and saving it failed: {message}. Fix \
                     the refresh token file's folder permissions; if the old refresh token no \
                     longer works, install the app again"
                )));
            }
            debug!(
                saved = saved.is_some(),
                "token response carried a new refresh token, which replaces the old one"
            );
        }
    }
    let lifetime = Duration::from_secs(wire.expires_in.unwrap_or(1800));
    // Renew a tenth of the lifetime early for short-lived tokens, and at most a minute early.
    let margin = RENEW_MARGIN.min(lifetime / 10);
    let renew_at = Instant::now() + lifetime.saturating_sub(margin);
    state.generation += 1;
    let token = AccessToken {
        secret: SecretString::from(wire.access_token),
        generation: state.generation,
    };
    debug!(
        generation = token.generation,
        expires_in_seconds = lifetime.as_secs(),
        "obtained HubSpot access token"
    );
    state.token = Some((token.clone(), renew_at));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_save_of_rotated_token_reads_cleanly() {
        let client = OAuthClient {
            token_url: Url::parse("https://api.hubapi.example/oauth/v1/token").unwrap(),
            client_id: "client-1".to_string(),
            client_secret: SecretString::from("client-secret-7"),
            sink: Some(std::sync::Arc::new(|_: &SecretString| {
                Err("permission denied".to_string())
            })),
        };
        let mut state = OAuthState {
            token: None,
            refresh_token: SecretString::from("refresh-old"),
            generation: 0,
        };
        let body = br#"{"access_token":"a1","refresh_token":"refresh-new","expires_in":1800}"#;

        let Err(error) = store_token(&client, &mut state, body) else {
            panic!("a failed save of the rotated token must fail the token request");
        };

        let message = error.to_string();
        assert!(
            message.contains("permission denied. Fix the refresh token"),
            "{message}"
        );
        assert!(!message.contains("  "), "a run of spaces in {message:?}");
        assert!(!message.contains("refresh-new"), "{message}");
    }

    #[test]
    fn token_response_in_both_casings() {
        let snake: TokenWire = serde_json::from_str(
            r#"{"token_type":"bearer","access_token":"a1","refresh_token":"r1","expires_in":1800}"#,
        )
        .unwrap();
        assert_eq!(snake.access_token, "a1");
        assert_eq!(snake.expires_in, Some(1800));
        let camel: TokenWire =
            serde_json::from_str(r#"{"accessToken":"a2","refreshToken":"r2","expiresIn":60}"#)
                .unwrap();
        assert_eq!(camel.access_token, "a2");
        assert_eq!(camel.refresh_token.as_deref(), Some("r2"));
        assert_eq!(camel.expires_in, Some(60));
    }
}
