//! The outgoing webhook: JSON bodies signed with HMAC-SHA256, retried with backoff.
//!
//! Every POST carries `X-Leadscore-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
//! bytes under the key in the configured environment variable, and `X-Leadscore-Timestamp`,
//! the send time in Unix seconds. A receiver recomputes the HMAC over the raw body it read and
//! compares in constant time ([`verify`] does that). Connection failures, timeouts, 429 and
//! 5xx responses are retried with exponential backoff (or after `Retry-After`); any other
//! non-2xx status fails at once, because resending the same body cannot change the response.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tracing::{info, warn};
use url::Url;

use crate::config::alerts::WebhookConfig;

/// Header with the body's signature, `sha256=<lower-case hex>`.
pub const SIGNATURE_HEADER: &str = "X-Leadscore-Signature";
/// Header with the send time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Leadscore-Timestamp";

/// Maximum wait between two attempts, also when `Retry-After` requests a longer one.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// A configured webhook endpoint with its signing key.
#[derive(Clone)]
pub struct Webhook {
    url: Url,
    client: reqwest::Client,
    secret: SecretString,
    timeout: Duration,
    max_attempts: u32,
    retry_base_delay: Duration,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &redacted(&self.url))
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// A failed webhook delivery.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The signing key could not be read from the environment.
    #[error("{0}")]
    Secret(String),
    /// The URL or the HTTP client settings are invalid.
    #[error("webhook: {0}")]
    Config(String),
    /// The receiver responded with a status that retrying does not change.
    #[error("webhook {url} rejected the event with HTTP {status}; check the receiver's logs and the shared secret")]
    Rejected { url: String, status: u16 },
    /// Every attempt failed with a retryable problem.
    #[error("webhook {url} failed after {attempts} attempts: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
}

/// A delivered event: the receiver's status and the attempts it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub status: u16,
    pub attempts: u32,
}

impl Webhook {
    /// Builds the webhook of `[webhook]`, reading the key from the environment variable it names.
    pub fn from_config(config: &WebhookConfig) -> Result<Webhook, WebhookError> {
        let name = &config.secret_env;
        let secret = match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => SecretString::from(value.trim().to_string()),
            Ok(_) => {
                return Err(WebhookError::Secret(format!(
                    "environment variable {name} ([webhook] secret_env) is empty; set it to the shared signing key"
                )))
            }
            Err(_) => {
                return Err(WebhookError::Secret(format!(
                    "environment variable {name} ([webhook] secret_env) is not set or not UTF-8; export {name}=... with the shared signing key"
                )))
            }
        };
        let client = leadscore_connector::http::build_client(
            &leadscore_connector::http::ClientSettings {
                timeout: config.timeout,
                extra_ca_pem: None,
                allow_insecure_http: config.allow_insecure_http,
                allow_key: "[webhook] allow_insecure_http",
            },
            &[&config.url],
        )
        .map_err(|error| match error {
            leadscore_connector::ConnectorError::Rejected { message, .. } => {
                WebhookError::Config(message)
            }
            other => WebhookError::Config(other.to_string()),
        })?;
        Ok(Webhook {
            url: config.url.clone(),
            client,
            secret,
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
            retry_base_delay: Duration::from_millis(500),
        })
    }

    /// Sets the first backoff delay, which doubles with each retry (500 ms by default).
    pub fn with_retry_base_delay(mut self, delay: Duration) -> Webhook {
        self.retry_base_delay = delay;
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// Returns the signature header value of `body`: `sha256=` and the hex HMAC-SHA256.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", to_hex(&mac.finalize().into_bytes()))
}

/// Checks a signature header value against `body` in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = from_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Posts `event` as JSON, signed, retrying connection errors, timeouts, 429 and 5xx.
pub async fn send(webhook: &Webhook, event: &serde_json::Value) -> Result<Delivery, WebhookError> {
    // Serialising a `serde_json::Value` cannot fail.
    let body = serde_json::to_vec(event).unwrap_or_default();
    let signature = sign(webhook.secret.expose_secret().as_bytes(), &body);
    let url = redacted(&webhook.url);
    // The client verifies certificates and follows no redirect, so the signed body only
    // goes to the configured address.
    let client = &webhook.client;
    let mut last = String::new();
    for attempt in 1..=webhook.max_attempts {
        let timestamp = Utc::now().timestamp().to_string();
        let outcome = tokio::time::timeout(
            webhook.timeout,
            post_once(client, &webhook.url, &body, &signature, &timestamp),
        )
        .await;
        let retry_after = match outcome {
            Ok(Ok(response)) if (200..300).contains(&response.status) => {
                info!(%url, status = response.status, attempt, "webhook delivered");
                return Ok(Delivery {
                    status: response.status,
                    attempts: attempt,
                });
            }
            Ok(Ok(response)) if response.status == 429 || response.status >= 500 => {
                last = format!("HTTP {}", response.status);
                response.retry_after
            }
            Ok(Ok(response)) => {
                warn!(%url, status = response.status, "webhook rejected the event");
                return Err(WebhookError::Rejected {
                    url,
                    status: response.status,
                });
            }
            Ok(Err(error)) => {
                last = error;
                None
            }
            Err(_) => {
                last = format!("timed out after {:?}", webhook.timeout);
                None
            }
        };
        if attempt == webhook.max_attempts {
            break;
        }
        let backoff = webhook
            .retry_base_delay
            .saturating_mul(1 << (attempt - 1).min(16));
        let delay = retry_after.unwrap_or(backoff).min(MAX_RETRY_DELAY);
        warn!(%url, attempt, error = %last, ?delay, "webhook attempt failed, retrying");
        tokio::time::sleep(delay).await;
    }
    warn!(%url, attempts = webhook.max_attempts, error = %last, "webhook delivery failed");
    Err(WebhookError::Exhausted {
        url,
        attempts: webhook.max_attempts,
        last,
    })
}

/// The parts of a response the retry policy reads.
struct Response {
    status: u16,
    retry_after: Option<Duration>,
}

/// Sends one POST and reads the status and `Retry-After` of the response. The body is never
/// read, so a receiver cannot make leadscore hold a large one in memory.
async fn post_once(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    signature: &str,
    timestamp: &str,
) -> Result<Response, String> {
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|error| {
            format!(
                "sending to {} failed: {}",
                redacted(url),
                leadscore_connector::error_chain(&error)
            )
        })?;
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(Response {
        status: response.status().as_u16(),
        retry_after,
    })
}

/// Returns the URL without its query string, which may carry a token.
fn redacted(url: &Url) -> String {
    leadscore_connector::http::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let header = sign(b"key", b"{\"a\":1}");
        assert!(header.starts_with("sha256="), "{header}");
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert!(verify(b"key", b"{\"a\":1}", &header));
        assert!(!verify(b"other key", b"{\"a\":1}", &header));
        assert!(!verify(b"key", b"{\"a\":2}", &header));
        assert!(!verify(b"key", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        let header = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            header,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
