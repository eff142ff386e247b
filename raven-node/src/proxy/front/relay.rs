//! One request through the front side: plan ([`super::head`]) → authenticate → locate →
//! authorize → dial → (TLS) → HTTP/1.1 to the target → stream the response back, or splice
//! both connections after a 101.
//!
//! What the target sees: the caller's method, origin-form path (`nodeName` removed), its
//! end-to-end headers, `Host: <node>:<port>`, and on TLS ports our own client certificate. The
//! caller's `Authorization` is removed when its bearer token authenticated the caller here
//! (the kubelet authorizes *us*, and a token must never travel to an arbitrary target port);
//! a certificate-authenticated caller's `Authorization` is not ours and passes unchanged.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::auth::{Attributes, Decision, UserInfo, falls_back_to_proxy, subresource_of, verb_of};
use super::head::{self, Context, Plan, Target};
use super::sniff::Verdicts;
use super::{FrontConfig, FrontError, FrontServices, ReloadingTargetTls, tls};
use crate::proxy::{DialError, ProxyStream};

/// Body type of both legs.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// What every request shares.
pub struct Shared {
    ctx: Context,
    services: FrontServices,
    tls_ports: BTreeSet<u16>,
    connector: Connector,
    dial_timeout: Duration,
}

/// Where the kubelet leg's TLS configuration comes from.
enum Connector {
    /// Fixed for the front's lifetime.
    Static(TlsConnector),
    /// Re-read from files; each dial takes the configuration current at that moment.
    Reloading(Arc<ReloadingTargetTls>),
}

impl Connector {
    /// `None` while the files were never loaded.
    fn current(&self) -> Option<TlsConnector> {
        match self {
            Connector::Static(c) => Some(c.clone()),
            Connector::Reloading(r) => r.current().map(TlsConnector::from),
        }
    }
}

impl Shared {
    /// Builds the shared state from the configuration; `target` is the reloading kubelet-leg
    /// material when `config.target_tls_files` is set.
    pub fn new(
        config: &FrontConfig,
        services: FrontServices,
        target: Option<Arc<ReloadingTargetTls>>,
    ) -> Result<Self, FrontError> {
        let connector = match target {
            Some(r) => Connector::Reloading(r),
            None => Connector::Static(TlsConnector::from(Arc::new(tls::client_config(
                &config.target_tls,
            )?))),
        };
        Ok(Self {
            ctx: Context {
                default_port: config.default_port,
                route_kubelet_paths_by_pod: services.pod_locator.is_some(),
                kubelet_port: config.kubelet_port,
            },
            services,
            tls_ports: config.target_tls.ports.clone(),
            connector,
            dial_timeout: config.dial_timeout,
        })
    }
}

/// What is known about the caller's connection.
#[derive(Debug)]
pub struct Conn {
    /// The verified client certificate's identity, if one was presented.
    pub cert_user: Option<UserInfo>,
    /// Caller address, for logs.
    pub peer: std::net::SocketAddr,
    /// Raw-head verdicts, one per request, in order.
    pub verdicts: Verdicts,
}

/// A refused or failed request.
struct Refusal {
    status: StatusCode,
    reason: String,
    route: &'static str,
    challenge: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>, route: &'static str) -> Self {
        Self {
            status,
            reason: reason.into(),
            route,
            challenge: false,
        }
    }

    fn response(self) -> Response<Body> {
        let mut resp = Response::new(text_body(format!("{}\n", self.reason)));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // The request body (if any) was not read: never reuse the connection after a refusal.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self.challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn text_body(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty_body() -> Body {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Serves one request; never fails at the hyper level (every error is a response).
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let verdict = conn.verdicts.lock().ok().and_then(|mut q| q.pop_front());
    let outcome = match verdict {
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "request head not recognised",
            "none",
        )),
        Some(v) => match v.problem {
            Some(p) => Err(Refusal::new(p.status, p.reason, "none")),
            None => serve(&shared, &conn, req).await.map(|(mut resp, route)| {
                // A 101 hands the connection over; anything else ends it when the scan stopped.
                if v.close_after && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                (resp, route)
            }),
        },
    };
    let (resp, route) = match outcome {
        Ok((resp, route)) => (resp, route),
        Err(refusal) => {
            tracing::debug!(peer = %conn.peer, status = %refusal.status, reason = %refusal.reason, "proxy front: refused");
            let route = refusal.route;
            (refusal.response(), route)
        }
    };
    shared
        .services
        .metrics
        .request(resp.status().as_u16(), route);
    Ok(resp)
}

async fn serve(
    shared: &Shared,
    conn: &Conn,
    mut req: Request<Incoming>,
) -> Result<(Response<Body>, &'static str), Refusal> {
    let metrics = &shared.services.metrics;
    let plan = head::plan(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        &shared.ctx,
    )
    .map_err(|r| Refusal::new(r.status, r.reason, "none"))?;
    let route = plan.kind.label();
    let (user, token_consumed) = authenticate(shared, conn, &plan, route).await?;
    let node = match locate(shared, &plan, route).await {
        Ok(node) => node,
        // Whether a pod exists is for callers who may reach nodes: one who may not gets the
        // same 403 for a missing pod as for an existing one (the check is for every node,
        // since a missing pod has none).
        Err(missing) if missing.status == StatusCode::NOT_FOUND => {
            let (method, path) = (req.method(), req.uri().path());
            authorize(shared, &user, "", &plan, method, path, route).await?;
            return Err(missing);
        }
        Err(e) => return Err(e),
    };
    authorize(
        shared,
        &user,
        &node,
        &plan,
        req.method(),
        req.uri().path(),
        route,
    )
    .await?;

    let stream = dial(shared, &node, plan.port, route).await?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Body>(TokioIo::new(stream))
        .await
        .map_err(|e| {
            late_dial_refusal(&e, &shared.services.metrics, route).unwrap_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("target {node}:{}: {e}", plan.port),
                    route,
                )
            })
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "proxy front: target connection ended");
        }
    });

    let front_upgrade = plan.upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = plan.headers.clone();
    if token_consumed {
        headers.remove(header::AUTHORIZATION);
    }
    let host = HeaderValue::from_str(&format!("{node}:{}", plan.port))
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad node name", route))?;
    headers.insert(header::HOST, host);
    let out_body = if let Some(proto) = &plan.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
        empty_body()
    } else {
        counted(body, shared, "to_target")
    };
    let mut out = Request::new(out_body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = plan
        .path_and_query
        .parse()
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad request target", route))?;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;

    let mut resp = sender.send_request(out).await.map_err(|e| {
        late_dial_refusal(&e, &shared.services.metrics, route).unwrap_or_else(|| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!("target {node}:{} failed: {e}", plan.port),
                route,
            )
        })
    })?;
    let headers = head::response_headers(resp.status(), resp.headers(), plan.upgrade.as_ref())
        .map_err(|r| {
            Refusal::new(
                r.status,
                format!("target {node}:{}: {}", plan.port, r.reason),
                route,
            )
        })?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(front_upgrade) = front_upgrade
    {
        let back_upgrade = hyper::upgrade::on(&mut resp);
        let metrics = metrics.clone();
        let target = format!("{node}:{}", plan.port);
        tokio::spawn(async move {
            let (front, back) = match tokio::try_join!(front_upgrade, back_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, %target, "proxy front: upgrade failed");
                    return;
                }
            };
            metrics.upgrades.inc();
            metrics.upgrades_active.inc();
            let (mut front, mut back) = (TokioIo::new(front), TokioIo::new(back));
            match tokio::io::copy_bidirectional(&mut front, &mut back).await {
                Ok((up, down)) => {
                    metrics.add_bytes("to_target", up);
                    metrics.add_bytes("from_target", down);
                }
                Err(e) => {
                    tracing::debug!(error = %e, %target, "proxy front: upgraded stream ended")
                }
            }
            metrics.upgrades_active.dec();
        });
        let mut switched = Response::new(empty_body());
        *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switched.headers_mut() = headers;
        return Ok((switched, route));
    }

    let status = resp.status();
    let mut relayed = Response::new(counted(resp.into_body(), shared, "from_target"));
    *relayed.status_mut() = status;
    *relayed.headers_mut() = headers;
    Ok((relayed, route))
}

/// Counts data frames as they pass; frames are forwarded one by one (no buffering).
fn counted(body: Incoming, shared: &Shared, direction: &'static str) -> Body {
    let metrics = shared.services.metrics.clone();
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            metrics.add_bytes(direction, data.len() as u64);
        }
        frame
    })
    .boxed_unsync()
}

/// The caller's identity, and whether its bearer token was used for it.
async fn authenticate(
    shared: &Shared,
    conn: &Conn,
    plan: &Plan,
    route: &'static str,
) -> Result<(UserInfo, bool), Refusal> {
    let metrics = &shared.services.metrics;
    if let Some(user) = &conn.cert_user {
        return Ok((user.clone(), false));
    }
    let unauthorized = |reason: &str| Refusal {
        challenge: true,
        ..Refusal::new(StatusCode::UNAUTHORIZED, reason, route)
    };
    let Some(token) = &plan.bearer else {
        metrics.auth_failure("no_credentials");
        return Err(unauthorized(
            "authentication required: a client certificate from the configured CA or a bearer token",
        ));
    };
    let Some(authn) = &shared.services.authenticator else {
        metrics.auth_failure("bad_token");
        return Err(unauthorized(
            "bearer tokens are not accepted by this server",
        ));
    };
    match authn.authenticate(token).await {
        Ok(Some(user)) => Ok((user, true)),
        Ok(None) => {
            metrics.auth_failure("bad_token");
            Err(unauthorized("invalid bearer token"))
        }
        Err(e) => {
            metrics.auth_failure("backend_unavailable");
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                route,
            ))
        }
    }
}

/// The node name to dial.
async fn locate(shared: &Shared, plan: &Plan, route: &'static str) -> Result<String, Refusal> {
    match &plan.target {
        Target::Node(node) => Ok(node.clone()),
        Target::Pod { namespace, pod } => {
            let Some(locator) = &shared.services.pod_locator else {
                return Err(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no pod locator",
                    route,
                ));
            };
            match locator.node_of(namespace, pod).await {
                Ok(Some(node)) => {
                    head::check_node_name(&node)
                        .map_err(|r| Refusal::new(r.status, r.reason, route))?;
                    Ok(node)
                }
                Ok(None) => Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("pod {namespace}/{pod} not found or not scheduled"),
                    route,
                )),
                Err(e) => Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.to_string(),
                    route,
                )),
            }
        }
    }
}

/// Kubelet-style authorization; without an authenticator, certificate callers are trusted
/// (the CA is the API server's kubelet-client CA).
async fn authorize(
    shared: &Shared,
    user: &UserInfo,
    node: &str,
    plan: &Plan,
    method: &http::Method,
    path: &str,
    route: &'static str,
) -> Result<(), Refusal> {
    let Some(authz) = &shared.services.authenticator else {
        return Ok(());
    };
    let metrics = &shared.services.metrics;
    let mut attrs = Attributes {
        user: user.clone(),
        verb: verb_of(method),
        node: node.to_owned(),
        subresource: subresource_of(path),
        port: plan.port,
        path: path.to_owned(),
    };
    loop {
        match authz.authorize(&attrs).await {
            Ok(Decision::Allow) => return Ok(()),
            Ok(Decision::Deny(why)) => {
                if falls_back_to_proxy(attrs.subresource) {
                    attrs.subresource = "proxy";
                    continue;
                }
                metrics.auth_failure("forbidden");
                let sub = subresource_of(path);
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "user {:?} may not {} nodes/{sub} of node {node}: {why}",
                        user.name, attrs.verb
                    ),
                    route,
                ));
            }
            Err(e) => {
                metrics.auth_failure("backend_unavailable");
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.to_string(),
                    route,
                ));
            }
        }
    }
}

/// The status a dial failure is answered with, and its metrics label.
fn dial_status(e: &DialError) -> (StatusCode, &'static str) {
    match e {
        DialError::UnknownNode(_) => (StatusCode::NOT_FOUND, "unknown_node"),
        DialError::PortNotAllowed { .. } => (StatusCode::FORBIDDEN, "port_not_allowed"),
        DialError::NoTunnel { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_tunnel"),
        DialError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        DialError::Failed { .. } => (StatusCode::BAD_GATEWAY, "failed"),
    }
}

/// An early stream's refused dial (`DialError` inside an I/O or hyper error of the target
/// leg) answered like a dial refused up front, with the same status and metric.
fn late_dial_refusal(
    e: &(dyn std::error::Error + 'static),
    metrics: &super::FrontMetrics,
    route: &'static str,
) -> Option<Refusal> {
    DialError::in_chain(e).map(|d| dial_refusal(d, metrics, route))
}

/// A refused dial as the answer to the caller, counted by kind.
fn dial_refusal(d: &DialError, metrics: &super::FrontMetrics, route: &'static str) -> Refusal {
    let (status, kind) = dial_status(d);
    metrics.dial_error(kind);
    Refusal::new(status, d.to_string(), route)
}

/// Opens the stream (and TLS when the port asks for it), bounded by the dial timeout.
async fn dial(
    shared: &Shared,
    node: &str,
    port: u16,
    route: &'static str,
) -> Result<ProxyStream, Refusal> {
    let metrics = &shared.services.metrics;
    let target = format!("{node}:{port}");
    let tls = shared.tls_ports.contains(&port) || shared.services.dialer.is_https_port(node, port);
    let connector = match tls {
        false => None,
        true => Some(shared.connector.current().ok_or_else(|| {
            metrics.dial_error("tls");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("TLS to {target}: the kubelet CA and client certificate files are not loaded yet"),
                route,
            )
        })?),
    };
    let work = async {
        let stream = (shared.services.dialer.dial(node, port).await)
            .map_err(|e| dial_refusal(&e, metrics, route))?;
        let Some(connector) = connector else {
            return Ok(stream);
        };
        let name = ServerName::try_from(node.to_owned())
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad node name", route))?;
        let tls = connector.connect(name, stream).await.map_err(|e| {
            late_dial_refusal(&e, metrics, route).unwrap_or_else(|| {
                metrics.dial_error("tls");
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("TLS to {target}: {e}"),
                    route,
                )
            })
        })?;
        Ok(Box::new(tls) as ProxyStream)
    };
    match tokio::time::timeout(shared.dial_timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            metrics.dial_error("timeout");
            Err(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("dialing {target} timed out"),
                route,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_map_to_statuses() {
        let t = || "n:1".to_owned();
        for (e, status) in [
            (DialError::UnknownNode("n".into()), 404),
            (
                DialError::PortNotAllowed {
                    node: "n".into(),
                    port: 1,
                },
                403,
            ),
            (
                DialError::NoTunnel {
                    node: "n".into(),
                    gateway: "g".into(),
                },
                503,
            ),
            (DialError::Timeout { target: t() }, 504),
            (
                DialError::Failed {
                    target: t(),
                    reason: "x".into(),
                },
                502,
            ),
        ] {
            assert_eq!(dial_status(&e).0.as_u16(), status, "{e}");
        }
    }
}
