//! Response caps and timeouts of the shared HTTP client, against raw HTTP servers on
//! 127.0.0.1 that send exactly the bytes each case needs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use leadscore_connector::http::{build_client, read_capped, BodyError, ClientSettings};
use url::Url;

/// Starts a server on 127.0.0.1 that reads one request and passes the connection to
/// `respond`. Returns the URL of the server with a token in its query.
fn serve_once(respond: impl FnOnce(TcpStream) + Send + 'static) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        respond(stream);
    });
    Url::parse(&format!("http://127.0.0.1:{port}/data?token=secret-value")).expect("valid URL")
}

async fn fetch(url: &Url, timeout: Duration, cap: u64) -> Result<Vec<u8>, String> {
    let settings = ClientSettings {
        timeout,
        extra_ca_pem: None,
        allow_insecure_http: false,
        allow_key: "[connector] allow_insecure_http",
    };
    let client = build_client(&settings, &[url]).expect("client");
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|error| format!("send: {error}"))?;
    read_capped(response, cap, "test response")
        .await
        .map_err(|error| match error {
            BodyError::TooLarge(message) => format!("too large: {message}"),
            BodyError::Read(message) => format!("read: {message}"),
        })
}

fn chunked(stream: &mut TcpStream, chunks: &[&[u8]]) {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        .expect("head");
    for chunk in chunks {
        write!(stream, "{:x}\r\n", chunk.len()).expect("chunk size");
        stream.write_all(chunk).expect("chunk");
        stream.write_all(b"\r\n").expect("chunk end");
    }
    stream.write_all(b"0\r\n\r\n").expect("last chunk");
}

#[tokio::test]
async fn body_at_cap_accepted() {
    let url = serve_once(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789");
    });
    let body = fetch(&url, Duration::from_secs(5), 10).await.expect("body");
    assert_eq!(body, b"0123456789");

    let url = serve_once(|mut stream| chunked(&mut stream, &[b"01234", b"56789"]));
    let body = fetch(&url, Duration::from_secs(5), 10).await.expect("body");
    assert_eq!(body, b"0123456789");
}

#[tokio::test]
async fn body_over_cap_rejected() {
    let url = serve_once(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n0123456789A");
    });
    let error = fetch(&url, Duration::from_secs(5), 10)
        .await
        .expect_err("declared length over the cap");
    assert!(error.starts_with("too large"), "{error}");
    assert!(error.contains("Content-Length 11"), "{error}");
    assert!(!error.contains("secret-value"), "{error}");

    let url = serve_once(|mut stream| chunked(&mut stream, &[b"01234", b"56789", b"A"]));
    let error = fetch(&url, Duration::from_secs(5), 10)
        .await
        .expect_err("chunked body over the cap");
    assert!(error.starts_with("too large"), "{error}");
    assert!(!error.contains("secret-value"), "{error}");
}

#[tokio::test]
async fn endless_chunked_body_times_out() {
    let url = serve_once(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        // One byte every 100 ms, for longer than the client's timeout.
        for _ in 0..100 {
            if stream.write_all(b"1\r\nx\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = std::time::Instant::now();
    let error = fetch(&url, Duration::from_secs(1), 1024 * 1024)
        .await
        .expect_err("an endless body times out");
    assert!(error.starts_with("read"), "{error}");
    assert!(error.contains("timed out"), "{error}");
    assert!(!error.contains("secret-value"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
