//! A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`.
//!
//! Three read-only GET endpoints scraped every few seconds do not justify an async HTTP stack:
//! one thread accepts, reads the request head (bounded size, bounded time), answers and closes
//! the connection. A slow or malicious client can delay a scrape by at most the read timeout;
//! it can never block the reconcile loop, which shares nothing with this thread but the
//! metrics (atomics) and the health state (a short mutex).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::health::Health;
use super::metrics::Metrics;

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server answers with.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The loop's health.
    pub health: Health,
    /// Longest loop silence that still counts as live.
    pub max_silence: Duration,
    /// This node's name (for `/status`).
    pub node: String,
    /// raven-cni's data directory, whose pod records `/status` counts.
    pub cni_data_dir: Option<PathBuf>,
}

/// One response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

impl Endpoints {
    /// Routes one request (method and path, query ignored).
    pub fn respond(&self, method: &str, target: &str) -> Response {
        let path = target.split('?').next().unwrap_or_default();
        if method != "GET" && method != "HEAD" {
            return Response::text(405, "only GET and HEAD\n".to_owned());
        }
        match path {
            "/metrics" => Response {
                status: 200,
                content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body: self.metrics.encode(),
            },
            "/healthz" | "/livez" => match self.health.live(self.max_silence) {
                Ok(()) => Response::text(200, "ok\n".to_owned()),
                Err(e) => Response::text(503, format!("{e}\n")),
            },
            "/readyz" => match self.health.ready() {
                Ok(()) => Response::text(200, "ok\n".to_owned()),
                Err(e) => Response::text(503, format!("{e}\n")),
            },
            "/status" => {
                let pods = self
                    .cni_data_dir
                    .as_deref()
                    .and_then(super::status::count_records);
                let live = self.health.live(self.max_silence);
                let report = super::status::report(
                    &self.node,
                    &self.health.lock(),
                    live,
                    std::time::SystemTime::now(),
                    pods,
                );
                Response {
                    status: 200,
                    content_type: "application/json",
                    body: serde_json::to_string(&report)
                        .expect("the status report serializes (plain fields)"),
                }
            }
            _ => Response::text(
                404,
                "not found; try /metrics, /healthz, /readyz, /status\n".to_owned(),
            ),
        }
    }

    fn serve_one(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                return write_response(
                    &mut stream,
                    &Response::text(431, "request head too large\n".to_owned()),
                    false,
                );
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return write_response(
                &mut stream,
                &Response::text(400, "bad request\n".to_owned()),
                false,
            );
        };
        let response = self.respond(method, target);
        write_response(&mut stream, &response, method == "HEAD")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn write_response(stream: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head_only {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}

/// Binds `addr` and serves on a background thread; returns the bound address (port 0 picks
/// one, for tests).
pub fn spawn(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("raven-http".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = endpoints.serve_one(s) {
                            tracing::debug!("http client: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("http accept: {e}"),
                }
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::default();
        let addr = spawn(
            "127.0.0.1:0".parse().unwrap(),
            Endpoints {
                metrics: metrics.clone(),
                health: health.clone(),
                max_silence: Duration::from_secs(10),
                node: "n1".to_owned(),
                cni_data_dir: None,
            },
        )
        .unwrap();
        let (status, body) = get(addr, "/healthz");
        assert_eq!(status, 503);
        assert!(body.contains("not completed"), "{body}");
        let (status, body) = get(addr, "/readyz");
        assert_eq!(status, 503);
        assert!(body.contains("no apply"), "{body}");
        {
            let mut h = health.lock();
            h.heartbeat = Some(Instant::now());
            h.last_apply = Some(Ok(()));
        }
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
        assert_eq!(get(addr, "/readyz?verbose"), (200, "ok\n".to_owned()));
        metrics.error("publish");
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(
            body.contains("raven_node_errors_total{kind=\"publish\"} 1"),
            "{body}"
        );
        let (status, body) = get(addr, "/status");
        assert_eq!(status, 200);
        let report: super::super::status::StatusReport = serde_json::from_str(&body).unwrap();
        assert_eq!(report.node, "n1");
        assert!(report.healthy, "{body}");
        assert_eq!(get(addr, "/nope").0, 404);
        // Garbage and an oversized head get an answer, not a hang or a crash.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&vec![b'a'; MAX_HEAD + 10]).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        let e = Endpoints {
            metrics,
            health,
            max_silence: Duration::from_secs(1),
            node: "n1".to_owned(),
            cni_data_dir: None,
        };
        assert_eq!(e.respond("POST", "/metrics").status, 405);
    }
}
