//! Requests to host names that the http module treats as loopback must reach loopback, even
//! where the system resolver would send the name to DNS.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use leadscore_connector::http::{build_client, ClientSettings};
use url::Url;

/// Starts a server on 127.0.0.1 that responds to each of `requests` connections with 200 and the
/// body `loopback`. Returns its port.
fn start_loopback_server(requests: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nloopback",
            );
        }
    });
    port
}

#[tokio::test]
async fn loopback_names_resolve_to_loopback() {
    let hosts = ["localhost.", "api.localhost", "API.LOCALHOST."];
    let port = start_loopback_server(hosts.len());
    for host in hosts {
        let url = Url::parse(&format!("http://{host}:{port}/ping")).expect("valid URL");
        let settings = ClientSettings {
            timeout: Duration::from_secs(5),
            extra_ca_pem: None,
            allow_insecure_http: false,
            allow_key: "[connector] allow_insecure_http",
        };
        let client = build_client(&settings, &[&url]).expect("loopback http accepted");
        let response = client.get(url.clone()).send().await;
        let response = response.unwrap_or_else(|error| panic!("{host}: {error:?}"));
        assert_eq!(response.status(), 200, "{host}");
        let body = response.text().await.expect("body");
        assert_eq!(body, "loopback", "{host}");
    }
}
