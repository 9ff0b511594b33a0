//! Parsing of Salesforce error bodies and their mapping to `ConnectorError`.
//!
//! REST calls report errors as a JSON array of `{message, errorCode}`; the token endpoint uses
//! the OAuth form `{error, error_description}`. Proxies and outages respond with HTML or nothing,
//! which is reported with the HTTP status and a short excerpt of the body.

use leadscore_connector::ConnectorError;
use serde::Deserialize;

/// Maximum number of characters of a non-JSON body quoted in an error message.
const EXCERPT_CHARS: usize = 200;

/// One error from a REST error body, with the HTTP status it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    /// `errorCode` (or OAuth `error`), or `HTTP_<status>` when the body had none.
    pub code: String,
    pub message: String,
}

#[derive(Deserialize)]
struct RestErrorWire {
    #[serde(rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct OAuthErrorWire {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Parses an error response body of any shape Salesforce or a proxy in front of it sends.
pub(crate) fn parse_error_body(status: u16, body: &[u8]) -> ApiError {
    if let Ok(errors) = serde_json::from_slice::<Vec<RestErrorWire>>(body) {
        if let Some((first, rest)) = errors.split_first() {
            let mut message = first.message.trim().to_string();
            for other in rest {
                message.push_str(&format!("; {}: {}", other.error_code, other.message.trim()));
            }
            return ApiError {
                status,
                code: first.error_code.clone(),
                message,
            };
        }
    }
    if let Ok(error) = serde_json::from_slice::<RestErrorWire>(body) {
        return ApiError {
            status,
            code: error.error_code,
            message: error.message.trim().to_string(),
        };
    }
    if let Ok(error) = serde_json::from_slice::<OAuthErrorWire>(body) {
        return ApiError {
            status,
            code: error.error,
            message: error.error_description.unwrap_or_default(),
        };
    }
    ApiError {
        status,
        code: format!("HTTP_{status}"),
        message: describe_unparsed_body(status, body),
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

impl ApiError {
    /// True for whole-request failures the transport retries: server errors and 429 from a
    /// proxy or gateway in front of the org. Row-lock contention (`UNABLE_TO_LOCK_ROW`) is not
    /// among them, because the write-back resends locked records itself and a second retry
    /// layer here would multiply the sends.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || self.status == 429 || self.is_concurrent_limit()
    }

    /// True for a 403 `REQUEST_LIMIT_EXCEEDED` about requests open at the same time, such as
    /// `ConcurrentPerOrgLongTxn Limit exceeded.` Salesforce sends the same code for the spent
    /// daily allocation (`TotalRequests Limit exceeded.`), so only the message
    /// distinguishes them. The concurrent limit clears as soon as the other requests finish.
    pub fn is_concurrent_limit(&self) -> bool {
        self.status == 403
            && self.code == "REQUEST_LIMIT_EXCEEDED"
            && self.message.to_ascii_lowercase().contains("concurrent")
    }

    /// True for the 401 `INVALID_SESSION_ID` that an expired or revoked access token causes.
    pub fn is_invalid_session(&self) -> bool {
        self.status == 401 && self.code == "INVALID_SESSION_ID"
    }

    /// Maps a failure that will not be retried (any more) to the connector's error kinds.
    pub fn into_connector_error(self) -> ConnectorError {
        match (self.status, self.code.as_str()) {
            (401, _) => ConnectorError::Auth(format!(
                "{}: {} (the access token was refreshed and still rejected; check that the \
                 connected app user has API access)",
                self.code, self.message
            )),
            (403, "REQUEST_LIMIT_EXCEEDED") if self.is_concurrent_limit() => {
                ConnectorError::Transport(format!(
                    "{}: {} (too many long-running requests were open in the org at once, and \
                     retries did not clear it; run again when other integrations have finished)",
                    self.code, self.message
                ))
            }
            (403, "REQUEST_LIMIT_EXCEEDED") => ConnectorError::LimitExceeded(format!(
                "{}: {} (wait until the org's 24-hour API allocation has capacity again)",
                self.code, self.message
            )),
            (400, "INVALID_QUERY_LOCATOR") => ConnectorError::LocatorExpired(self.message),
            (_, "UNABLE_TO_LOCK_ROW") => {
                ConnectorError::Transport(format!("{}: {}", self.code, self.message))
            }
            (status, _) if status >= 500 || status == 429 => {
                ConnectorError::Transport(format!("{}: {}", self.code, self.message))
            }
            _ => ConnectorError::Rejected {
                code: self.code,
                message: self.message,
            },
        }
    }
}

pub(crate) use leadscore_connector::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_error_array_first_code() {
        let body =
            br#"[{"message":"No such column 'Foo' on entity 'Lead'","errorCode":"INVALID_FIELD"}]"#;
        let error = parse_error_body(400, body);
        assert_eq!(error.code, "INVALID_FIELD");
        assert_eq!(error.message, "No such column 'Foo' on entity 'Lead'");
        assert_eq!(error.status, 400);
    }

    #[test]
    fn rest_error_array_joins_others() {
        let body = br#"[{"message":"a","errorCode":"ONE"},{"message":"b","errorCode":"TWO"}]"#;
        let error = parse_error_body(400, body);
        assert_eq!(error.code, "ONE");
        assert_eq!(error.message, "a; TWO: b");
    }

    #[test]
    fn oauth_error_body() {
        let body = br#"{"error":"invalid_grant","error_description":"authentication failure"}"#;
        let error = parse_error_body(400, body);
        assert_eq!(error.code, "invalid_grant");
        assert_eq!(error.message, "authentication failure");
    }

    #[test]
    fn html_body_gets_status_and_excerpt() {
        let body = format!(
            "<html>\n<body>  Service   down {}</body></html>",
            "x".repeat(500)
        );
        let error = parse_error_body(502, body.as_bytes());
        assert_eq!(error.code, "HTTP_502");
        assert!(error
            .message
            .starts_with("HTTP 502 with an unexpected body: <html> <body> Service down"));
        assert!(error.message.ends_with("..."));
        assert!(
            error.message.len() < 300,
            "excerpt too long: {}",
            error.message.len()
        );
    }

    #[test]
    fn empty_body_named_empty() {
        let error = parse_error_body(500, b"");
        assert_eq!(error.message, "HTTP 500 with an empty body");
        assert!(error.is_transient());
    }

    #[test]
    fn empty_array_is_unparsed() {
        let error = parse_error_body(400, b"[]");
        assert_eq!(error.code, "HTTP_400");
    }

    #[test]
    fn mapping_to_connector_errors() {
        let limit = parse_error_body(403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#);
        assert!(!limit.is_transient());
        assert!(matches!(
            limit.into_connector_error(),
            ConnectorError::LimitExceeded(_)
        ));

        let concurrent = parse_error_body(
            403,
            br#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(concurrent.is_transient());
        assert!(matches!(
            concurrent.into_connector_error(),
            ConnectorError::Transport(_)
        ));

        let locator = parse_error_body(
            400,
            br#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#,
        );
        assert!(matches!(
            locator.into_connector_error(),
            ConnectorError::LocatorExpired(_)
        ));

        let rejected =
            parse_error_body(400, br#"[{"message":"bad","errorCode":"MALFORMED_QUERY"}]"#);
        match rejected.into_connector_error() {
            ConnectorError::Rejected { code, message } => {
                assert_eq!(code, "MALFORMED_QUERY");
                assert_eq!(message, "bad");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }

        let session = parse_error_body(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert!(session.is_invalid_session());
        assert!(matches!(
            session.into_connector_error(),
            ConnectorError::Auth(_)
        ));

        let unavailable = parse_error_body(
            503,
            br#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#,
        );
        assert!(unavailable.is_transient());
        assert!(matches!(
            unavailable.into_connector_error(),
            ConnectorError::Transport(_)
        ));
    }
}
