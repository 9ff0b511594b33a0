//! HTTPS for the sandboxes: a throwaway certificate authority made at start, a server
//! certificate for the loopback names signed by it, and an `axum::serve` listener that runs the
//! TLS handshake before handing connections to any router.
//!
//! The CA's private key lives only in memory, long enough to sign the server certificate. The
//! CA certificate is written as PEM to a fresh temporary directory, so that clients can trust
//! it through `requests` `verify=`, `REQUESTS_CA_BUNDLE` or reqwest `add_root_certificate`.
//! Dropping the [`CaFile`] removes that directory.

use std::future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Days, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Time a client gets to finish the TLS handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections that finished the handshake but are not yet taken by the HTTP server.
const READY_QUEUE: usize = 64;
/// Validity of both certificates, counted from the day before the sandbox starts so that a
/// client whose clock is a little behind still accepts them.
const VALIDITY_DAYS: u64 = 365;
/// File name of the CA certificate inside the temporary directory.
const CA_FILE_NAME: &str = "sandbox-ca.pem";

/// The CA certificate of one TLS sandbox, as PEM text and as a file that lives as long as this
/// value.
#[derive(Debug)]
pub(crate) struct CaFile {
    pem: String,
    path: PathBuf,
    // Removes the directory and the file when dropped.
    _dir: tempfile::TempDir,
}

impl CaFile {
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds a loopback address for HTTPS and makes the certificates for it.
///
/// The server certificate names `localhost`, `127.0.0.1`, `::1` and the bound IP address.
/// Rejects a non-loopback `addr` with `InvalidInput`, because the sandboxes serve loopback only
/// and the certificate would not match another address anyway.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<(TlsListener, CaFile)> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TLS sandbox address {addr} is not a loopback address; \
                 bind to 127.0.0.1 (port 0 picks a free port)"
            ),
        ));
    }
    let (server_config, ca_pem) = make_certificates(addr.ip())?;
    let ca_file = write_ca_file(ca_pem)?;
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let accept_task = tokio::spawn(accept_loop(listener, acceptor, ready_tx));
    let listener = TlsListener {
        local_addr,
        ready,
        accept_task,
    };
    Ok((listener, ca_file))
}

/// An `axum::serve` listener that yields connections after a completed TLS handshake.
///
/// A background task accepts TCP connections and runs each handshake in its own task, so a
/// slow or broken client never delays the others. Dropping the listener stops that task.
pub(crate) struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            None => {
                // The accept loop only ends when it panics; the listener itself keeps the
                // sender side alive otherwise. Serve nothing more rather than spin.
                tracing::error!(addr = %self.local_addr, "TLS accept loop stopped; the sandbox accepts no more connections");
                future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and starts a handshake task for each.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE or ECONNABORTED. Waiting a second keeps the log and the CPU
                // quiet until file descriptors are free again.
                tracing::warn!(%error, "accepting a TLS sandbox connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // A send error means the server has shut down; the connection just closes.
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake with a sandbox client failed");
                }
                Err(_) => {
                    tracing::debug!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake with a sandbox client timed out");
                }
            }
        });
    }
}

/// Makes a fresh CA and a server certificate signed by it, and returns the rustls server
/// configuration and the CA certificate as PEM.
fn make_certificates(bound_ip: IpAddr) -> io::Result<(ServerConfig, String)> {
    let validity = validity_window()?;

    let ca_key = KeyPair::generate().map_err(certificate_error)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "leadscore sandbox CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "leadscore sandbox");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params, validity);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(certificate_error)?;

    let server_key = KeyPair::generate().map_err(certificate_error)?;
    let mut server_params = CertificateParams::default();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let mut names = vec![
        SanType::DnsName("localhost".try_into().map_err(certificate_error)?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
    ];
    if !names.contains(&SanType::IpAddress(bound_ip)) {
        names.push(SanType::IpAddress(bound_ip));
    }
    server_params.subject_alt_names = names;
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // OpenSSL's strict verification (the default of Python 3.13's ssl module) requires the
    // authority key identifier on certificates that are not self-signed.
    server_params.use_authority_key_identifier_extension = true;
    set_validity(&mut server_params, validity);
    let server_cert = server_params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(certificate_error)?;

    let chain: Vec<CertificateDer<'static>> =
        vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_config_error)?;
    // The sandboxes' axum build speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, ca_cert.pem()))
}

/// Returns the first and last day of the certificates' validity: from yesterday until
/// [`VALIDITY_DAYS`] after that.
fn validity_window() -> io::Result<(NaiveDate, NaiveDate)> {
    let today = Utc::now().date_naive();
    let start = today.checked_sub_days(Days::new(1));
    let end = start.and_then(|day| day.checked_add_days(Days::new(VALIDITY_DAYS)));
    match (start, end) {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err(io::Error::other(format!(
            "the certificate validity around {today} is out of the supported date range"
        ))),
    }
}

fn set_validity(params: &mut CertificateParams, (start, end): (NaiveDate, NaiveDate)) {
    // chrono keeps month and day in 1..=12 and 1..=31, so the casts cannot truncate.
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
}

/// Writes the CA certificate to `sandbox-ca.pem` in a new temporary directory.
fn write_ca_file(pem: String) -> io::Result<CaFile> {
    let dir = tempfile::Builder::new()
        .prefix("leadscore-sandbox-tls-")
        .tempdir()?;
    let path = dir.path().join(CA_FILE_NAME);
    std::fs::write(&path, pem.as_bytes()).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!(
                "writing the sandbox CA certificate to {} failed: {error}",
                path.display()
            ),
        )
    })?;
    Ok(CaFile {
        pem,
        path,
        _dir: dir,
    })
}

fn certificate_error(error: rcgen::Error) -> io::Error {
    io::Error::other(format!(
        "generating the sandbox TLS certificates failed: {error}"
    ))
}

fn tls_config_error(error: rustls::Error) -> io::Error {
    io::Error::other(format!(
        "building the sandbox TLS configuration failed: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::routing::get;
    use axum::Router;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::{Sandbox, SandboxOptions};

    fn client_trusting(pem: &str) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM parses");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client builds")
    }

    fn token_form(options: &SandboxOptions) -> String {
        format!(
            "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            options.client_id, options.client_secret, options.refresh_token
        )
    }

    async fn start_sandbox() -> crate::RunningSandbox {
        let sandbox = Sandbox::new(BTreeMap::new(), SandboxOptions::default()).expect("empty org");
        sandbox
            .serve_tls("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("TLS sandbox starts")
    }

    #[tokio::test]
    async fn token_over_https_names_https_instance() {
        let running = start_sandbox().await;
        let url = running.url();
        assert!(url.starts_with("https://127.0.0.1:"), "url {url}");
        let pem = running.ca_pem().expect("TLS sandbox has a CA").to_string();
        let client = client_trusting(&pem);

        let response = client
            .post(format!("{url}/services/oauth2/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(token_form(running.options()))
            .send()
            .await
            .expect("token request succeeds over TLS");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON token response");
        assert_eq!(body["instance_url"], serde_json::Value::from(url.clone()));
        running.shutdown().await;
    }

    #[tokio::test]
    async fn certificate_names_localhost() {
        let running = start_sandbox().await;
        let port = running.url().rsplit(':').next().expect("port").to_string();
        let client = client_trusting(running.ca_pem().expect("CA"));
        let response = client
            .get(format!("https://localhost:{port}/services/data/"))
            .send()
            .await
            .expect("localhost matches the certificate");
        assert_eq!(response.status(), 200);
        running.shutdown().await;
    }

    #[tokio::test]
    async fn ca_file_holds_pem_until_shutdown() {
        let running = start_sandbox().await;
        let path = running
            .ca_cert_path()
            .expect("TLS sandbox has a CA file")
            .to_path_buf();
        let dir = path
            .parent()
            .expect("CA file has a directory")
            .to_path_buf();
        let on_disk = std::fs::read_to_string(&path).expect("CA file is readable");
        assert!(
            on_disk.starts_with("-----BEGIN CERTIFICATE-----"),
            "{on_disk}"
        );
        assert_eq!(Some(on_disk.as_str()), running.ca_pem());
        assert!(
            !on_disk.contains("PRIVATE KEY"),
            "the CA key must stay in memory"
        );

        running.shutdown().await;
        assert!(!path.exists(), "{} still exists", path.display());
        assert!(!dir.exists(), "{} still exists", dir.display());
    }

    #[tokio::test]
    async fn untrusted_client_is_rejected() {
        let first = start_sandbox().await;
        let second = start_sandbox().await;
        assert_ne!(
            first.ca_pem(),
            second.ca_pem(),
            "each sandbox makes its own CA"
        );

        // Trusting only the second sandbox's CA must fail against the first sandbox.
        let client = client_trusting(second.ca_pem().expect("CA"));
        let result = client
            .get(format!("{}/services/data/", first.url()))
            .send()
            .await;
        assert!(result.is_err(), "a foreign CA was accepted: {result:?}");

        let plain = reqwest::Client::new()
            .get(format!("{}/services/data/", first.url()))
            .send()
            .await;
        assert!(
            plain.is_err(),
            "the public roots accepted the sandbox: {plain:?}"
        );
        first.shutdown().await;
        second.shutdown().await;
    }

    #[tokio::test]
    async fn non_loopback_address_is_rejected() {
        let sandbox = Sandbox::new(BTreeMap::new(), SandboxOptions::default()).expect("empty org");
        let error = sandbox
            .serve_tls("0.0.0.0:0".parse().expect("address"))
            .await
            .err()
            .expect("0.0.0.0 is rejected");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("0.0.0.0:0"), "{error}");
    }

    #[tokio::test]
    async fn stalled_handshake_blocks_nobody() {
        let router = Router::new().route("/", get(|| async { "hello" }));
        let (listener, ca) = bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("binds");
        let addr = axum::serve::Listener::local_addr(&listener).expect("address");
        let server = tokio::spawn(async move { axum::serve(listener, router).await });

        // A client that connects and sends half a ClientHello, then nothing.
        let mut stalled = TcpStream::connect(addr).await.expect("connects");
        stalled
            .write_all(&[0x16, 0x03, 0x01])
            .await
            .expect("writes");

        let client = client_trusting(ca.pem());
        let body = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .get(format!("https://127.0.0.1:{}/", addr.port()))
                .send(),
        )
        .await
        .expect("a stalled handshake delayed another client")
        .expect("request succeeds")
        .text()
        .await
        .expect("body");
        assert_eq!(body, "hello");
        server.abort();
    }
}
