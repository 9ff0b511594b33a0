//! Parsing of HubSpot error bodies and their mapping to `ConnectorError`.
//!
//! HubSpot reports errors as `{status, message, correlationId, category}`, with `errors[]`,
//! `context` and, on 429 responses, `policyName` and `errorType` as optional extras. Proxies
//! and outages respond with HTML or nothing, which is reported with the status and an excerpt.

use std::time::Duration;

use leadscore_connector::ConnectorError;
use serde::Deserialize;

/// Maximum number of characters of a non-JSON body quoted in an error message.
const EXCERPT_CHARS: usize = 200;

/// The exact message of a 429 from the per-second search limit.
pub(crate) const SECONDLY_MESSAGE: &str = "You have reached your secondly limit.";

/// One failed HubSpot call: the HTTP status and the error its body describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status, or 0 when no response arrived.
    pub status: u16,
    /// `category` (or `errorType`), or `HTTP_<status>` when the body had none.
    pub category: String,
    pub message: String,
    /// `policyName` of a 429 (`DAILY`, `TEN_SECONDLY_ROLLING`, `SECONDLY`).
    pub policy: Option<String>,
    pub correlation_id: Option<String>,
    /// The wait the response's `Retry-After` header asked for, uncapped. The transport sets
    /// it; a parsed body alone leaves it `None`.
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorWire {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorDetailWire>,
    /// Extra details; a 403 names the scopes the call needs in `requiredScopes`.
    #[serde(default)]
    context: Option<serde_json::Value>,
    /// OAuth token endpoint form.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorDetailWire {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    context: Option<serde_json::Value>,
}

/// Returns the scopes a `context` object lists under `requiredScopes`.
fn required_scopes(context: Option<&serde_json::Value>) -> Vec<String> {
    context
        .and_then(|c| c.get("requiredScopes"))
        .and_then(serde_json::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses an error response body of any shape HubSpot or a proxy in front of it sends.
pub(crate) fn parse_error_body(status: u16, body: &[u8]) -> ApiError {
    if let Ok(wire) = serde_json::from_slice::<ErrorWire>(body) {
        let category = wire.category.or(wire.error_type).or(wire.error.clone());
        let mut message = wire
            .message
            .or(wire.error_description)
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut scopes = required_scopes(wire.context.as_ref());
        for detail in &wire.errors {
            if let Some(text) = &detail.message {
                if !message.contains(text.as_str()) {
                    message.push_str(&format!("; {}", text.trim()));
                }
            }
            for scope in required_scopes(detail.context.as_ref()) {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        if !scopes.is_empty() {
            message.push_str(&format!(" (required scopes: {})", scopes.join(", ")));
        }
        if category.is_some() || !message.is_empty() {
            return ApiError {
                status,
                category: category.unwrap_or_else(|| format!("HTTP_{status}")),
                message,
                policy: wire.policy_name,
                correlation_id: wire.correlation_id,
                retry_after: None,
            };
        }
    }
    ApiError {
        status,
        category: format!("HTTP_{status}"),
        message: describe_unparsed_body(status, body),
        policy: None,
        correlation_id: None,
        retry_after: None,
    }
}

/// Describes a body that is not a known error shape: the status and a whitespace-collapsed
/// excerpt of at most `EXCERPT_CHARS` characters.
pub(crate) fn describe_unparsed_body(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return format!("HTTP {status} with an empty body");
    }
    let mut excerpt: String = collapsed.chars().take(EXCERPT_CHARS).collect();
    if collapsed.chars().count() > EXCERPT_CHARS {
        excerpt.push_str("...");
    }
    format!("HTTP {status} with an unexpected body: {excerpt}")
}

/// The kind of a 429, which decides how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateLimitKind {
    /// The per-account daily allowance: waiting seconds does not help.
    Daily,
    /// The per-second search limit.
    Secondly,
    /// The ten-second rolling burst limit, or a 429 that names no policy.
    Burst,
}

impl ApiError {
    /// Builds the error for a request that got no response.
    pub fn connection(message: String) -> Self {
        ApiError {
            status: 0,
            category: "CONNECTION_FAILED".to_string(),
            message,
            policy: None,
            correlation_id: None,
            retry_after: None,
        }
    }

    /// True for server errors, connection failures, 423 and 477, which a retry can fix.
    /// HubSpot returns 502 and 504 when it hits internal processing limits, 423 while it syncs
    /// a large volume of writes, and 477 while it moves the portal between data-hosting
    /// locations.
    pub fn is_transient(&self) -> bool {
        self.status == 0 || self.status >= 500 || self.is_locked() || self.is_migrating()
    }

    /// True for 423 Locked. HubSpot documents that the lock lasts 2 seconds.
    pub fn is_locked(&self) -> bool {
        self.status == 423
    }

    /// True for 477 Migration in Progress, whose `Retry-After` can ask for up to a day.
    pub fn is_migrating(&self) -> bool {
        self.status == 477
    }

    /// True for a 401 that a new OAuth access token can fix.
    pub fn is_expired_token(&self) -> bool {
        self.status == 401
    }

    /// Returns the kind of rate limit a 429 reports, or `None` for other statuses.
    pub fn rate_limit(&self) -> Option<RateLimitKind> {
        if self.status != 429 {
            return None;
        }
        let policy = self.policy.as_deref().unwrap_or("");
        if policy.eq_ignore_ascii_case("DAILY") {
            Some(RateLimitKind::Daily)
        } else if policy.eq_ignore_ascii_case("SECONDLY") || self.message == SECONDLY_MESSAGE {
            Some(RateLimitKind::Secondly)
        } else {
            Some(RateLimitKind::Burst)
        }
    }

    /// Maps a failure that will not be retried (any more) to the connector's error kinds.
    pub fn into_connector_error(self) -> ConnectorError {
        let correlation = self
            .correlation_id
            .as_deref()
            .map(|id| format!(" (correlationId {id})"))
            .unwrap_or_default();
        match (self.status, self.category.as_str()) {
            (401, _) => ConnectorError::Auth(format!(
                "{}: {}{correlation}. Check that the HubSpot access token or OAuth refresh \
                 token is current and belongs to this portal",
                self.category, self.message
            )),
            (403, _) => ConnectorError::Auth(format!(
                "{}: {}{correlation}. Grant the app the CRM object and schema read and write \
                 scopes for contacts, companies and deals, and crm.objects.owners.read",
                self.category, self.message
            )),
            (429, _) => ConnectorError::LimitExceeded(format!(
                "{} {}: {}{correlation}",
                self.policy.as_deref().unwrap_or("RATE_LIMIT"),
                self.category,
                self.message
            )),
            (477, _) => ConnectorError::Transport(format!(
                "HTTP 477 Migration in Progress: HubSpot is moving this portal between \
                 data-hosting locations and {}; run leadscore again once it has finished. \
                 {}: {}{correlation}",
                match self.retry_after {
                    Some(wait) => format!("requests a wait of {} s", wait.as_secs()),
                    None => "sent no Retry-After".to_string(),
                },
                self.category,
                self.message
            )),
            (status, _) if status == 0 || status >= 500 || status == 423 => {
                ConnectorError::Transport(format!(
                    "{}: {}{correlation}",
                    self.category, self.message
                ))
            }
            _ => ConnectorError::Rejected {
                code: self.category,
                message: format!("{}{correlation}", self.message),
            },
        }
    }
}

pub(crate) use leadscore_connector::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubspot_error_body_fields() {
        let body = br#"{"status":"error","message":"Property values were not valid",
            "correlationId":"0b4e","category":"VALIDATION_ERROR",
            "errors":[{"message":"hot2 was not one of the allowed options","code":"INVALID_OPTION"}]}"#;
        let error = parse_error_body(400, body);
        assert_eq!(error.category, "VALIDATION_ERROR");
        assert_eq!(
            error.message,
            "Property values were not valid; hot2 was not one of the allowed options"
        );
        assert_eq!(error.correlation_id.as_deref(), Some("0b4e"));
        match error.into_connector_error() {
            ConnectorError::Rejected { code, message } => {
                assert_eq!(code, "VALIDATION_ERROR");
                assert!(message.contains("correlationId 0b4e"), "{message}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[test]
    fn rate_limit_kinds() {
        let daily = parse_error_body(
            429,
            br#"{"status":"error","message":"daily","errorType":"RATE_LIMIT","policyName":"DAILY"}"#,
        );
        assert_eq!(daily.rate_limit(), Some(RateLimitKind::Daily));
        assert_eq!(daily.category, "RATE_LIMIT");
        let secondly = parse_error_body(
            429,
            br#"{"status":"error","message":"You have reached your secondly limit.","category":"RATE_LIMITS"}"#,
        );
        assert_eq!(secondly.rate_limit(), Some(RateLimitKind::Secondly));
        let burst = parse_error_body(429, b"");
        assert_eq!(burst.rate_limit(), Some(RateLimitKind::Burst));
        assert_eq!(parse_error_body(400, b"{}").rate_limit(), None);
    }

    #[test]
    fn html_body_gets_status_and_excerpt() {
        let body = format!(
            "<html>\n<body> Bad   gateway {}</body></html>",
            "x".repeat(500)
        );
        let error = parse_error_body(502, body.as_bytes());
        assert_eq!(error.category, "HTTP_502");
        assert!(error
            .message
            .starts_with("HTTP 502 with an unexpected body: <html> <body> Bad gateway"));
        assert!(error.message.ends_with("..."));
        assert!(error.is_transient());
    }
}
