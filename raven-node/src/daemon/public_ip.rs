//! Public IP discovery over HTTP(S), for active endpoints of Gateways that are not exposed
//! through a LoadBalancer and whose `publicIP` nobody filled in.
//!
//! Upstream asks six hard-coded third-party services with no timeout (one hung request stalls
//! its only worker). Here the operator chooses the URLs (`--public-ip-url`, repeatable; none
//! by default, so a node never calls out to the internet unless told to), every request has a
//! timeout, the answer is bounded to [`MAX_ANSWER`] bytes, and the first URL that answers with
//! an address wins. Plain text (`203.0.113.7\n`, what ifconfig.me/icanhazip-style services
//! return) and JSON with an `ip` field are understood.

use std::net::IpAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest answer read.
pub const MAX_ANSWER: usize = 1024;

/// Extracts the address from an answer body (pure).
pub fn parse_answer(body: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    json.get("ip")?.as_str()?.trim().parse().ok()
}

/// Asks each URL in turn (each bounded by `timeout`); the first address wins.
pub async fn discover(urls: &[String], timeout: Duration) -> Result<IpAddr, String> {
    if urls.is_empty() {
        return Err("no --public-ip-url configured".to_owned());
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("loading the system CA roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut problems = Vec::new();
    for url in urls {
        match tokio::time::timeout(timeout, ask(&client, url)).await {
            Ok(Ok(ip)) => return Ok(ip),
            Ok(Err(e)) => problems.push(format!("{url}: {e}")),
            Err(_) => problems.push(format!("{url}: no answer within {timeout:?}")),
        }
    }
    Err(problems.join("; "))
}

async fn ask<C>(client: &Client<C, Empty<Bytes>>, url: &str) -> Result<IpAddr, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let request = hyper::Request::get(url)
        .header(hyper::header::USER_AGENT, "raven-node")
        .body(Empty::new())
        .map_err(|e| format!("bad URL: {e}"))?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    parse_answer(&body).ok_or_else(|| {
        format!(
            "the answer is not an IP address: {:?}",
            String::from_utf8_lossy(&body)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        let cases: [(&[u8], Option<IpAddr>); 7] = [
            (b"203.0.113.7\n", ip("203.0.113.7")),
            (b"  2001:db8::1 ", ip("2001:db8::1")),
            (
                br#"{"ip": "198.51.100.2", "city": "x"}"#,
                ip("198.51.100.2"),
            ),
            (b"<html>nope</html>", None),
            (br#"{"address": "198.51.100.2"}"#, None),
            (b"", None),
            (b"\xff\xfe", None),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_answer(body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn no_urls_is_a_clear_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let e = rt
            .block_on(discover(&[], Duration::from_secs(1)))
            .expect_err("nothing to ask");
        assert!(e.contains("--public-ip-url"), "{e}");
    }

    #[test]
    fn a_local_http_answer_is_used_and_a_dead_url_is_skipped() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\n192.0.2.77\r\n",
                );
            }
        });
        // A closed port first: refused, then the working one.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_port = dead.local_addr().expect("addr").port();
        drop(dead);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let urls = vec![
            format!("http://127.0.0.1:{dead_port}/"),
            format!("http://127.0.0.1:{port}/ip"),
        ];
        let got = rt
            .block_on(discover(&urls, Duration::from_secs(5)))
            .expect("discovered");
        assert_eq!(got, "192.0.2.77".parse::<IpAddr>().expect("ip"));
    }
}
