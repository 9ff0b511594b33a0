//! The one place leadscore builds HTTP clients, and the rules every client follows: rustls
//! with certificate verification, timeouts, a user agent, no redirects, plain http only to
//! loopback hosts, capped response bodies and URLs shown without their query strings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use crate::ConnectorError;

/// The `User-Agent` of every request leadscore sends.
pub const USER_AGENT: &str = concat!("leadscore/", env!("CARGO_PKG_VERSION"));

/// Time allowed to open a TCP connection and finish the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Cap of one JSON response: a query or search page, a describe, a batch write result.
/// By estimate, a Salesforce page of 2,000 records with 300 fields of 30 bytes is 18 MB.
pub const JSON_BODY_CAP: u64 = 64 * 1024 * 1024;

/// Cap of one Bulk API 2.0 CSV results page. Pages are requested with at most 10,000 rows.
pub const BULK_PAGE_CAP: u64 = 256 * 1024 * 1024;

/// Cap of an OAuth token response, which contains a few short strings.
pub const TOKEN_BODY_CAP: u64 = 64 * 1024;

/// Largest request body leadscore sends. Write batches are at most 200 records (Salesforce)
/// or 100 records (HubSpot), far below it.
pub const REQUEST_BODY_CAP: usize = 16 * 1024 * 1024;

/// Settings of one HTTP client.
#[derive(Clone, Debug)]
pub struct ClientSettings<'a> {
    /// Overall time of one request, from connecting to the end of the body.
    pub timeout: Duration,
    /// Extra PEM certificates to trust besides the bundled web roots.
    pub extra_ca_pem: Option<&'a [u8]>,
    /// Allow plain http to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// The config key that sets `allow_insecure_http`, named in errors, such as
    /// `[connector] allow_insecure_http`.
    pub allow_key: &'a str,
}

/// Builds an HTTP client for requests to `urls`, rejecting a plain http URL to a host other
/// than loopback unless `settings.allow_insecure_http` is set.
///
/// Certificates are verified against the bundled web roots and `extra_ca_pem`. Redirects are
/// never followed, because a redirect would resend the bearer token or the signed body to
/// the address it names.
pub fn build_client(
    settings: &ClientSettings<'_>,
    urls: &[&Url],
) -> Result<reqwest::Client, ConnectorError> {
    for url in urls {
        check_no_credentials(url).map_err(invalid_config)?;
        check_plain_http(url, settings.allow_insecure_http, settings.allow_key)
            .map_err(invalid_config)?;
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .timeout(settings.timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(settings.timeout))
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(LoopbackPinningResolver));
    if let Some(pem) = settings.extra_ca_pem {
        for certificate in extra_root_certificates(pem)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|error| {
        ConnectorError::Transport(format!(
            "building the HTTP client failed: {}",
            crate::error_chain(&error)
        ))
    })
}

/// A resolver that resolves every name [`is_loopback_name`] accepts to 127.0.0.1 and ::1,
/// and sends other names to the system resolver.
///
/// Plain http is allowed to those names because they are loopback, but glibc matches
/// /etc/hosts only for the exact name `localhost` and sends `localhost.` or `api.localhost`
/// to DNS, whose answer could carry the bearer token off the machine unencrypted.
struct LoopbackPinningResolver;

impl reqwest::dns::Resolve for LoopbackPinningResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0 is replaced by the URL's port, or the scheme's default port.
            if is_loopback_name(&host) {
                let loopback = [
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                ];
                let addresses: reqwest::dns::Addrs = Box::new(loopback.into_iter());
                return Ok(addresses);
            }
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addresses: reqwest::dns::Addrs = Box::new(resolved.collect::<Vec<_>>().into_iter());
            Ok(addresses)
        })
    }
}

fn invalid_config(message: String) -> ConnectorError {
    ConnectorError::Rejected {
        code: "INVALID_CONFIG".to_string(),
        message,
    }
}

/// Parses every certificate of a PEM bundle, rejecting text that contains none.
fn extra_root_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, ConnectorError> {
    let invalid = |problem: String| {
        invalid_config(format!(
            "the extra CA file {problem}; give a PEM file with -----BEGIN CERTIFICATE----- blocks"
        ))
    };
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|error| invalid(format!("is not valid PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid("contains no certificate".to_string()));
    }
    Ok(certificates)
}

/// Serialises a JSON request body, rejecting one larger than [`REQUEST_BODY_CAP`]. `method`
/// and `path` (without its query) name the request in the error.
pub fn encode_request_body(
    body: &serde_json::Value,
    method: &reqwest::Method,
    path: &str,
) -> Result<Vec<u8>, ConnectorError> {
    // Serialising a `serde_json::Value` cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    if bytes.len() > REQUEST_BODY_CAP {
        return Err(ConnectorError::Rejected {
            code: "REQUEST_TOO_LARGE".to_string(),
            message: format!(
                "the body of {method} {path} is {} bytes, above the cap of {REQUEST_BODY_CAP} \
                 bytes; send fewer records per request",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// Returns true for `localhost` and the loopback addresses 127.0.0.0/8 and ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => is_loopback_name(name),
        Some(Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

/// Returns true for `localhost` and names under it, in any case and with or without a
/// trailing dot. Every client from [`build_client`] resolves these names to loopback itself.
fn is_loopback_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Rejects a URL that is neither https nor http to a loopback host, unless
/// `allow_insecure_http` is set. `allow_key` names the config key that sets the flag.
pub fn check_plain_http(
    url: &Url,
    allow_insecure_http: bool,
    allow_key: &str,
) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{} uses plain http to a host that is not loopback, so credentials and data would \
             cross the network unencrypted; use https://, or set {allow_key} = true if a \
             trusted proxy on the way adds TLS",
            redact_url(url)
        )),
        other => Err(format!(
            "{} has the scheme {other:?}; use an https:// URL",
            redact_url(url)
        )),
    }
}

/// Rejects a URL with a user name or password in it. reqwest would send them as Basic
/// authentication on every request, and any log line that shows the URL would show them.
pub fn check_no_credentials(url: &Url) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(format!(
        "{} contains a user name or password; remove the user info before the host, because \
         leadscore authenticates with OAuth tokens or API keys only",
        redact_url(url)
    ))
}

/// Returns the URL without its query string, fragment and user info, which may carry
/// tokens: the form every log line and error message uses.
pub fn redact_url(url: &Url) -> String {
    let mut redacted = url.clone();
    redacted.set_query(None);
    redacted.set_fragment(None);
    // Both fail only for URLs that cannot have user info, which then have none to remove.
    let _ = redacted.set_username("");
    let _ = redacted.set_password(None);
    redacted.to_string()
}

/// Returns true when a successful response carries an HTML page: a non-blank body with a
/// `text/html` content type, or whose first non-blank byte is `<`. The JSON and CSV endpoints
/// leadscore calls return no HTML on success, so such a page comes from a proxy, firewall or
/// sign-in page. An empty body, such as that of a 204, is never a page.
pub fn is_html_page(content_type: Option<&str>, body: &[u8]) -> bool {
    let Some(first) = body.iter().find(|byte| !byte.is_ascii_whitespace()) else {
        return false;
    };
    let html_type = content_type.is_some_and(|value| {
        value
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/html")
    });
    html_type || *first == b'<'
}

/// A response body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than its cap; retrying cannot help.
    #[error("{0}")]
    TooLarge(String),
    /// The connection failed while the body was read.
    #[error("{0}")]
    Read(String),
}

/// Reads a response body of at most `cap` bytes. A larger body fails without being read to
/// the end, with an error naming the URL (without its query) and the cap. `kind` names the
/// body in the error, for example "token response".
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    kind: &str,
) -> Result<Vec<u8>, BodyError> {
    let url = redact_url(response.url());
    let too_large = |size: String| {
        BodyError::TooLarge(format!(
            "the {kind} from {url} is larger than the cap of {cap} bytes ({size}); the \
             request failed and nothing from it was stored"
        ))
    };
    if let Some(length) = response.content_length() {
        if length > cap {
            return Err(too_large(format!("Content-Length {length}")));
        }
    }
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|error| {
            BodyError::Read(format!(
                "reading the {kind} from {url} failed: {}",
                crate::error_chain(&error)
            ))
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large(format!("more than {cap} bytes sent")));
        }
        body.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("valid URL")
    }

    #[test]
    fn loopback_hosts_recognised() {
        for text in [
            "http://127.0.0.1:8580/",
            "http://127.5.6.7/",
            "http://[::1]:80/",
            "http://localhost:1/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert!(is_loopback(&url(text)), "{text}");
        }
        for text in [
            "http://10.0.0.1/",
            "http://localhost.example.com/",
            "http://[::2]/",
            "http://128.0.0.1/",
        ] {
            assert!(!is_loopback(&url(text)), "{text}");
        }
    }

    #[test]
    fn plain_http_rules() {
        let key = "[connector] allow_insecure_http";
        assert!(check_plain_http(&url("https://login.salesforce.com"), false, key).is_ok());
        assert!(check_plain_http(&url("http://127.0.0.1:8580"), false, key).is_ok());
        assert!(check_plain_http(&url("http://crm.example.com"), true, key).is_ok());
        let error = check_plain_http(&url("http://crm.example.com/x?t=1"), false, key)
            .expect_err("plain http to another host");
        assert!(error.contains("http://crm.example.com/x"), "{error}");
        assert!(!error.contains("t=1"), "{error}");
        assert!(error.contains(key), "{error}");
        let error = check_plain_http(&url("ftp://crm.example.com"), true, key)
            .expect_err("ftp is never accepted");
        assert!(error.contains("\"ftp\""), "{error}");
    }

    #[test]
    fn credentials_in_url_rejected() {
        assert!(check_no_credentials(&url("https://host.example/path")).is_ok());
        for text in [
            "https://user:secret-pw@host.example/",
            "https://user@host.example/",
            "http://:secret-pw@127.0.0.1:8080/",
        ] {
            let error = check_no_credentials(&url(text)).expect_err(text);
            assert!(error.contains("user name or password"), "{error}");
            assert!(!error.contains("secret-pw"), "{error}");
            assert!(!error.contains("user@"), "{error}");
        }
    }

    #[test]
    fn html_pages_recognised() {
        assert!(is_html_page(Some("text/html; charset=utf-8"), b"blocked"));
        assert!(is_html_page(Some("TEXT/HTML"), b"blocked"));
        assert!(!is_html_page(Some("text/html"), b""));
        assert!(!is_html_page(Some("text/html"), b"  \n"));
        assert!(is_html_page(None, b"\n  <!DOCTYPE html><html></html>"));
        assert!(is_html_page(Some("application/json"), b"<html></html>"));
        assert!(!is_html_page(Some("application/json"), b"{\"a\": 1}"));
        assert!(!is_html_page(Some("text/csv"), b"\"Id\"\n\"001\"\n"));
        assert!(!is_html_page(None, b""));
    }

    #[test]
    fn redaction_drops_query_and_user_info() {
        let shown = redact_url(&url("https://user:pw@host.example/path?token=abc#frag"));
        assert_eq!(shown, "https://host.example/path");
    }

    #[test]
    fn client_rejects_remote_plain_http() {
        let settings = ClientSettings {
            timeout: Duration::from_secs(5),
            extra_ca_pem: None,
            allow_insecure_http: false,
            allow_key: "[connector] allow_insecure_http",
        };
        let remote = url("http://crm.example.com/");
        let error = build_client(&settings, &[&remote]).expect_err("remote http rejected");
        assert!(error.to_string().contains("allow_insecure_http"), "{error}");
        let local = url("http://127.0.0.1:9/");
        assert!(build_client(&settings, &[&local]).is_ok());
        let allowed = ClientSettings {
            allow_insecure_http: true,
            ..settings
        };
        assert!(build_client(&allowed, &[&remote]).is_ok());
    }

    #[test]
    fn client_rejects_pem_without_certificates() {
        let settings = ClientSettings {
            timeout: Duration::from_secs(5),
            extra_ca_pem: Some(b"no certificate here"),
            allow_insecure_http: false,
            allow_key: "[connector] allow_insecure_http",
        };
        let error = build_client(&settings, &[]).expect_err("empty PEM rejected");
        assert!(
            error.to_string().contains("contains no certificate"),
            "{error}"
        );
    }
}
