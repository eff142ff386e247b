//! The request-head validation and routing layer of the front side: pure, no I/O.
//!
//! hyper (httparse underneath) has already tokenised the head: it rejects obs-fold, bad header
//! names, control characters in values and differing duplicate `Content-Length`s. This layer
//! refuses what hyper tolerates but a proxy must not forward (RFC 9112 §6.1, §11.2):
//! `Content-Length` together with `Transfer-Encoding`, any transfer coding other than a single
//! `chunked`, repeated framing or `Host` headers, absolute-form targets naming another
//! authority than `Host`, bodies on upgrade requests and `h2c` upgrades. It then decides where
//! the request goes ([`Route`]) and which headers the target sees ([`Plan::headers`]).
//!
//! hyper also *hides* one smuggling shape: with `Transfer-Encoding` present it drops every
//! `Content-Length` from the parsed headers (and closes the connection afterwards). So
//! [`scan_raw_head`] reads each raw request head a second time, with the same tokenizer
//! (httparse), before hyper sees it, and counts the framing headers as they were sent.
//!
//! The module depends on `std`, `http` and `httparse` only, so the fuzz crate (`raven-node/fuzz`) compiles
//! it on its own with sanitizers instead of the whole daemon.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// What the listener knows about where the request came in.
#[derive(Clone, Debug)]
pub struct Context {
    /// Port used when `Host` carries none (`?nodeName=` scrapes and kubelet paths).
    pub default_port: u16,
    /// Kubelet streaming paths are routed by their Pod (a `PodLocator` is configured); `Host`
    /// is then ignored for them, as the API server may send its own.
    pub route_kubelet_paths_by_pod: bool,
    /// Port of the kubelet, used for requests routed by Pod.
    pub kubelet_port: u16,
}

/// Which rule routed the request (a bounded metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// `Host: <node>:<port>`.
    Host,
    /// `?nodeName=<node>` (Prometheus through the proxy Service).
    NodeQuery,
    /// `containerLogs`, `exec`, `attach`, `portForward`.
    KubeletPath,
}

impl RouteKind {
    /// The metrics label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::NodeQuery => "node_query",
            Self::KubeletPath => "kubelet_path",
        }
    }
}

/// Where the request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A node by name.
    Node(String),
    /// The node running this Pod (resolved by the `PodLocator`).
    Pod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
    },
}

/// The accepted request: route and the head to send to the target.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Node or Pod to reach.
    pub target: Target,
    /// Port on the node.
    pub port: u16,
    /// Rule that matched.
    pub kind: RouteKind,
    /// Origin-form target to send (`nodeName` removed from the query).
    pub path_and_query: String,
    /// The `Upgrade` value when the caller asked for a protocol switch.
    pub upgrade: Option<HeaderValue>,
    /// End-to-end headers to forward: hop-by-hop, framing, `Host`, `Expect` and internal
    /// (`X-Raven-*`, upstream's `X-Tunnel-*`, `Forward-Mode`) headers removed. `Authorization`
    /// is still here; the relay drops it when the bearer token was ours ([`Plan::bearer`]).
    pub headers: HeaderMap,
    /// The bearer token of `Authorization: Bearer <token>`, if any.
    pub bearer: Option<String>,
}

/// A refused request: status and a one-line reason for the text body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason.
    pub reason: String,
}

impl Rejection {
    /// A 400 with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.reason)
    }
}

/// Largest request head accepted by the raw scan (hyper's default buffer is larger; a kubelet
/// request head is a few hundred bytes).
pub const MAX_RAW_HEAD: usize = 64 * 1024;
/// Most headers in one request head.
pub const MAX_HEADERS: usize = 100;

/// The raw scan of one request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawHead {
    /// More bytes are needed.
    Partial,
    /// A whole head of `len` bytes (leading empty lines included).
    Complete {
        /// Length of the head in the input.
        len: usize,
        /// What the raw bytes show that hyper's parsed view would hide, if anything.
        problem: Option<Rejection>,
        /// A body or a protocol switch follows: the raw scan cannot follow the connection
        /// beyond it, so the connection is closed after this request's response.
        ends_scan: bool,
    },
    /// Not a request head (hyper refuses it too) or too large.
    Invalid(Rejection),
}

/// Scans the start of `buf` for one request head.
pub fn scan_raw_head(buf: &[u8]) -> RawHead {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RAW_HEAD => {
            return RawHead::Invalid(Rejection {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "request head too large".into(),
            });
        }
        Ok(httparse::Status::Partial) => return RawHead::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return RawHead::Invalid(Rejection {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "too many headers".into(),
            });
        }
        Err(e) => {
            return RawHead::Invalid(Rejection::bad_request(format!(
                "malformed request head: {e}"
            )));
        }
    };
    let (mut cl, mut te, mut upgrade, mut chunked_only) = (0usize, 0usize, false, true);
    let mut nonzero_cl = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl += 1;
            nonzero_cl |= h.value.iter().any(|&b| b != b'0');
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te += 1;
            chunked_only &= h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let problem = if cl > 0 && te > 0 {
        Some(Rejection::bad_request(
            "both Content-Length and Transfer-Encoding: refused (request smuggling)",
        ))
    } else if cl > 1 {
        Some(Rejection::bad_request("repeated Content-Length"))
    } else if te > 1 {
        Some(Rejection::bad_request("repeated Transfer-Encoding"))
    } else if te == 1 && !chunked_only {
        Some(Rejection {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "only Transfer-Encoding: chunked is accepted".into(),
        })
    } else {
        None
    };
    let ends_scan =
        problem.is_some() || te > 0 || nonzero_cl || upgrade || req.method == Some("CONNECT");
    RawHead::Complete {
        len,
        problem,
        ends_scan,
    }
}

/// Kubelet streaming endpoints routed by Pod (`/portForward/{ns}/{pod}` has only two
/// arguments: upstream's five-part check misclassified it, raven#178).
const KUBELET_PATHS: [(&str, usize, usize); 4] = [
    // (first segment, min arguments, max arguments) after the first segment
    ("containerLogs", 3, 3),
    ("exec", 3, 4),
    ("attach", 3, 4),
    ("portForward", 2, 3),
];

/// Headers meaningful for one connection only (RFC 9110 §7.6.1) plus framing, which hyper
/// regenerates.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True for headers that steer the proxy and must never reach a target or be honoured from
/// a caller: ours (`X-Raven-*`) and upstream's (`X-Tunnel-*`, `Forward-Mode`). Underscores
/// count as dashes, so `X_Raven_...` cannot slip through a CGI-style normaliser downstream.
pub fn is_internal_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n.starts_with("x-raven-") || n.starts_with("x-tunnel-") || n == "forward-mode"
}

/// Validates the head and plans the route.
pub fn plan(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    ctx: &Context,
) -> Result<Plan, Rejection> {
    if method == Method::CONNECT {
        return Err(Rejection {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: "CONNECT is not supported; address the target as Host: <node>:<port>".into(),
        });
    }
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Err(Rejection::bad_request(
            "only HTTP/1.0 and HTTP/1.1 are served",
        ));
    }
    check_header_syntax(headers)?;
    check_framing(headers)?;
    let host = single_host(headers)?;
    check_absolute_form(uri, &host)?;

    let path = uri.path();
    if !path.starts_with('/') {
        return Err(Rejection::bad_request(
            "request target must be an absolute path",
        ));
    }
    check_path(path)?;
    let upgrade = upgrade_of(headers)?;
    if upgrade.is_some() && version != Version::HTTP_11 {
        return Err(Rejection::bad_request("protocol upgrades need HTTP/1.1"));
    }
    if upgrade.is_some() && has_body(headers) {
        return Err(Rejection::bad_request(
            "an upgrade request cannot carry a body",
        ));
    }

    let (node_query, rest_query) = split_node_name(uri.query())?;
    let kubelet = kubelet_pod(path);
    let (target, port, kind) = match (kubelet, node_query) {
        (Some((ns, pod)), _) if ctx.route_kubelet_paths_by_pod => (
            Target::Pod { namespace: ns, pod },
            ctx.kubelet_port,
            RouteKind::KubeletPath,
        ),
        (kubelet, Some(node)) => {
            check_node_name(&node)?;
            let port = split_host_port(&host)?.1.unwrap_or(ctx.default_port);
            let kind = if kubelet.is_some() {
                RouteKind::KubeletPath
            } else {
                RouteKind::NodeQuery
            };
            (Target::Node(node), port, kind)
        }
        (kubelet, None) => {
            let (name, port) = split_host_port(&host)?;
            check_node_name(&name)?;
            let kind = if kubelet.is_some() {
                RouteKind::KubeletPath
            } else {
                RouteKind::Host
            };
            (Target::Node(name), port.unwrap_or(ctx.default_port), kind)
        }
    };
    if port == 0 {
        return Err(Rejection::bad_request("port 0 is not a valid target"));
    }

    let mut path_and_query = path.to_owned();
    if let Some(q) = rest_query.filter(|q| !q.is_empty()) {
        path_and_query.push('?');
        path_and_query.push_str(&q);
    }
    let bearer = bearer_of(headers);
    Ok(Plan {
        target,
        port,
        kind,
        path_and_query,
        upgrade,
        headers: forwardable(headers),
        bearer,
    })
}

/// Header names and values hyper accepts but we do not forward.
fn check_header_syntax(headers: &HeaderMap) -> Result<(), Rejection> {
    for (name, value) in headers {
        // Control characters other than HTAB (httparse already refuses CR and LF).
        if value
            .as_bytes()
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(Rejection::bad_request(format!(
                "control character in header {name}"
            )));
        }
    }
    Ok(())
}

/// Authorization maps the path to a subresource by prefix (`/metrics/...` → `metrics`), so the
/// path must mean to the target exactly what it means to us: no dot segments, empty segments,
/// backslashes or percent-encoded `.`, `/` or `\` that a target could normalise into another
/// endpoint (`/metrics/../exec/...`).
fn check_path(path: &str) -> Result<(), Rejection> {
    let lower = path.to_ascii_lowercase();
    let bad = path.contains('\\')
        || path.contains("//")
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        || path.split('/').any(|seg| seg == "." || seg == "..");
    if bad {
        return Err(Rejection::bad_request(
            "path with dot segments, empty segments or encoded separators refused",
        ));
    }
    Ok(())
}

/// One way to frame the body, stated once.
fn check_framing(headers: &HeaderMap) -> Result<(), Rejection> {
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !cl.is_empty() && !te.is_empty() {
        return Err(Rejection::bad_request(
            "both Content-Length and Transfer-Encoding: refused (request smuggling)",
        ));
    }
    if cl.len() > 1 {
        return Err(Rejection::bad_request("repeated Content-Length"));
    }
    if let Some(v) = cl.first()
        && (v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit) || v.len() > 19)
    {
        return Err(Rejection::bad_request(
            "Content-Length must be one decimal number",
        ));
    }
    if te.len() > 1 {
        return Err(Rejection::bad_request("repeated Transfer-Encoding"));
    }
    if let Some(v) = te.first()
        && !v.as_bytes().eq_ignore_ascii_case(b"chunked")
    {
        return Err(Rejection {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "only Transfer-Encoding: chunked is accepted".into(),
        });
    }
    Ok(())
}

/// True when the request announces a body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|&b| b != b'0'))
}

/// The one `Host` header, lower-cased.
fn single_host(headers: &HeaderMap) -> Result<String, Rejection> {
    let mut all = headers.get_all(header::HOST).iter();
    let Some(first) = all.next() else {
        return Err(Rejection::bad_request(
            "missing Host: address the target as Host: <node>:<port>",
        ));
    };
    if all.next().is_some() {
        return Err(Rejection::bad_request("repeated Host header"));
    }
    let host = first
        .to_str()
        .map_err(|_| Rejection::bad_request("Host is not ASCII"))?;
    if host.is_empty() {
        return Err(Rejection::bad_request("empty Host"));
    }
    Ok(host.to_ascii_lowercase())
}

/// An absolute-form target must name the same authority as `Host` (RFC 9112 §3.2.2 lets a
/// server ignore `Host` there; we refuse the disagreement instead of picking one).
fn check_absolute_form(uri: &Uri, host: &str) -> Result<(), Rejection> {
    if uri.path() == "*" {
        return Err(Rejection::bad_request("asterisk-form is not served"));
    }
    let Some(authority) = uri.authority() else {
        if uri.scheme().is_some() {
            return Err(Rejection::bad_request(
                "absolute-form target without authority",
            ));
        }
        return Ok(());
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(Rejection::bad_request(
            "absolute-form target with a foreign scheme",
        ));
    }
    if authority.as_str().contains('@') {
        return Err(Rejection::bad_request("userinfo in the request target"));
    }
    if !authority.as_str().eq_ignore_ascii_case(host) {
        return Err(Rejection::bad_request(format!(
            "absolute-form target {authority} does not match Host {host}"
        )));
    }
    Ok(())
}

/// The protocol asked for, when `Connection` lists `upgrade` and `Upgrade` is present.
fn upgrade_of(headers: &HeaderMap) -> Result<Option<HeaderValue>, Rejection> {
    let wants = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    let mut values = headers.get_all(header::UPGRADE).iter();
    let (Some(value), true) = (values.next(), wants) else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::bad_request("repeated Upgrade header"));
    }
    let text = value
        .to_str()
        .map_err(|_| Rejection::bad_request("Upgrade is not ASCII"))?;
    if text
        .split(',')
        .any(|p| p.trim().to_ascii_lowercase().starts_with("h2c"))
    {
        return Err(Rejection::bad_request("h2c upgrades are not relayed"));
    }
    Ok(Some(value.clone()))
}

/// Tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Splits `nodeName=` out of the query: (node, the rest of the query unchanged).
fn split_node_name(query: Option<&str>) -> Result<(Option<String>, Option<String>), Rejection> {
    let Some(query) = query else {
        return Ok((None, None));
    };
    let mut node = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("nodeName", value)) => {
                if node.is_some() {
                    return Err(Rejection::bad_request("repeated nodeName parameter"));
                }
                // Node names never need escaping; a percent sign is a disguise.
                if value.contains('%') || value.contains('+') {
                    return Err(Rejection::bad_request("nodeName must not be escaped"));
                }
                node = Some(value.to_ascii_lowercase());
            }
            _ if pair == "nodeName" => {
                return Err(Rejection::bad_request("empty nodeName parameter"));
            }
            _ => rest.push(pair),
        }
    }
    Ok((node, Some(rest.join("&"))))
}

/// `(namespace, pod)` for a well-formed kubelet streaming path.
fn kubelet_pod(path: &str) -> Option<(String, String)> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let first = parts.next()?;
    let args: Vec<&str> = parts.collect();
    let (_, min, max) = KUBELET_PATHS.iter().find(|(p, _, _)| *p == first)?;
    if args.len() < *min || args.len() > *max || args.iter().any(|a| a.is_empty()) {
        return None;
    }
    Some((args[0].to_owned(), args[1].to_owned()))
}

/// `host[:port]` → (host, port). Bracketed IPv6 is split correctly (and later refused).
fn split_host_port(host: &str) -> Result<(String, Option<u16>), Rejection> {
    let bad_port = || Rejection::bad_request(format!("bad port in Host {host}"));
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| Rejection::bad_request(format!("bad Host {host}")))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .and_then(parse_port)
                    .ok_or_else(bad_port)?,
            ),
        };
        return Ok((format!("[{addr}]"), port));
    }
    match host.rsplit_once(':') {
        Some((name, _)) if name.contains(':') => Ok((host.to_owned(), None)),
        Some((name, port)) => Ok((
            name.to_owned(),
            Some(parse_port(port).ok_or_else(bad_port)?),
        )),
        None => Ok((host.to_owned(), None)),
    }
}

/// A decimal port, no sign, no leading junk.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// True for IPv4/IPv6 literals (bracketed or not).
fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok() || bare.parse::<Ipv6Addr>().is_ok()
}

/// Node names are DNS subdomains (RFC 1123): lower-case alphanumerics, `-` and `.`, at most
/// 253 characters, labels of at most 63 that start and end alphanumeric. IP literals are
/// refused: node IPs of different domains may be the same.
pub fn check_node_name(name: &str) -> Result<(), Rejection> {
    if is_ip_literal(name) {
        return Err(Rejection::bad_request(format!(
            "IP-literal host {name} refused: address nodes by name (Host: <nodeName>:<port>)"
        )));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(Rejection::bad_request(format!(
            "{name:?} is not a node name"
        )))
    }
}

/// `Authorization: Bearer <token>` → token.
fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The headers the target may see.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = connection_tokens(headers)
        .map(str::to_ascii_lowercase)
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || named.iter().any(|t| t == n)
            || is_internal_header(n)
            || name == header::HOST
            || name == header::EXPECT
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Checks a target's response head and returns the headers to pass to the caller.
///
/// `upgrade` is what the caller asked for. A redirect answering an upgrade is refused (the
/// caller would follow it with its credentials to a place we did not authorise), and so is a
/// 101 nobody asked for.
pub fn response_headers(
    status: StatusCode,
    headers: &HeaderMap,
    upgrade: Option<&HeaderValue>,
) -> Result<HeaderMap, Rejection> {
    let bad_gateway = |reason: &str| Rejection {
        status: StatusCode::BAD_GATEWAY,
        reason: reason.into(),
    };
    if upgrade.is_some() && status.is_redirection() {
        return Err(bad_gateway(
            "the target answered the upgrade with a redirect: refused",
        ));
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_none() {
        return Err(bad_gateway(
            "the target switched protocols without being asked",
        ));
    }
    let mut out = forwardable(headers);
    // hyper frames the body itself; a stale length would conflict with chunked framing.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        out.remove(header::CONTENT_LENGTH);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let switched = headers
            .get(header::UPGRADE)
            .cloned()
            .ok_or_else(|| bad_gateway("101 without an Upgrade header"))?;
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        out.insert(header::UPGRADE, switched);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    fn ctx() -> Context {
        Context {
            default_port: 10250,
            route_kubelet_paths_by_pod: false,
            kubelet_port: 10250,
        }
    }

    fn run(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Plan, Rejection> {
        run_ctx(method, target, headers, &ctx())
    }

    fn run_ctx(
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        ctx: &Context,
    ) -> Result<Plan, Rejection> {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        plan(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &target.parse().unwrap(),
            Version::HTTP_11,
            &map,
            ctx,
        )
    }

    #[test]
    fn host_routes_by_node_and_port() {
        let p = run("GET", "/metrics/cadvisor", &[("host", "Edge-1:9100")]).unwrap();
        assert_eq!(p.target, Target::Node("edge-1".into()));
        assert_eq!((p.port, p.kind), (9100, RouteKind::Host));
        assert_eq!(p.path_and_query, "/metrics/cadvisor");
        let p = run("GET", "/pods", &[("host", "edge-1")]).unwrap();
        assert_eq!(p.port, 10250);
    }

    #[test]
    fn node_name_query_wins_and_is_removed() {
        let p = run(
            "GET",
            "/metrics?a=1&nodeName=edge-2&b=2",
            &[("host", "10.96.0.10:9100")],
        )
        .unwrap();
        assert_eq!(p.target, Target::Node("edge-2".into()));
        assert_eq!((p.port, p.kind), (9100, RouteKind::NodeQuery));
        assert_eq!(p.path_and_query, "/metrics?a=1&b=2");
        let p = run("GET", "/metrics?nodeName=edge-2", &[("host", "svc")]).unwrap();
        assert_eq!((p.port, p.path_and_query.as_str()), (10250, "/metrics"));
    }

    #[test]
    fn refusals() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
        let cases: &[Case] = &[
            ("GET", "/", &[("host", "10.0.0.1:10250")], 400),
            ("GET", "/metrics/../exec/ns/p/c", &[("host", "a:1")], 400),
            ("GET", "/metrics/%2E%2E/pods", &[("host", "a:1")], 400),
            ("GET", "/metrics%2fx", &[("host", "a:1")], 400),
            ("GET", "/a//pods", &[("host", "a:1")], 400),
            ("GET", "/metrics/./x", &[("host", "a:1")], 400),
            ("GET", "/", &[("host", "[fe80::1]:10250")], 400),
            ("GET", "/", &[], 400),
            ("GET", "/", &[("host", "a:1"), ("host", "b:1")], 400),
            ("GET", "/", &[("host", "a:99999")], 400),
            ("GET", "/", &[("host", "a:0")], 400),
            ("GET", "/", &[("host", "UPPER_case:1")], 400),
            ("GET", "/m?nodeName=10.1.1.1", &[("host", "svc:1")], 400),
            ("GET", "/m?nodeName=a&nodeName=b", &[("host", "svc:1")], 400),
            ("GET", "/m?nodeName=a%2eb", &[("host", "svc:1")], 400),
            ("GET", "http://evil:1/", &[("host", "edge:1")], 400),
            ("GET", "http://u@edge:1/", &[("host", "edge:1")], 400),
            ("CONNECT", "edge:1", &[("host", "edge:1")], 405),
            (
                "POST",
                "/",
                &[
                    ("host", "edge:1"),
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked"),
                ],
                400,
            ),
            (
                "POST",
                "/",
                &[("host", "edge:1"), ("transfer-encoding", "gzip, chunked")],
                501,
            ),
            (
                "POST",
                "/",
                &[
                    ("host", "edge:1"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                400,
            ),
            (
                "POST",
                "/",
                &[
                    ("host", "edge:1"),
                    ("content-length", "1"),
                    ("content-length", "1"),
                ],
                400,
            ),
            (
                "POST",
                "/",
                &[("host", "edge:1"), ("content-length", "+1")],
                400,
            ),
            (
                "GET",
                "/",
                &[
                    ("host", "edge:1"),
                    ("connection", "upgrade"),
                    ("upgrade", "h2c"),
                ],
                400,
            ),
            (
                "POST",
                "/exec/ns/p/c",
                &[
                    ("host", "edge:1"),
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("content-length", "3"),
                ],
                400,
            ),
        ];
        for (method, target, headers, status) in cases {
            let r = run(method, target, headers);
            assert_eq!(
                r.as_ref().map_err(|e| e.status.as_u16()).err(),
                Some(*status),
                "{method} {target} {headers:?}: {r:?}"
            );
        }
    }

    #[test]
    fn absolute_form_matching_host_is_accepted() {
        let p = run("GET", "https://edge:10250/pods", &[("host", "EDGE:10250")]).unwrap();
        assert_eq!(p.target, Target::Node("edge".into()));
        assert_eq!(p.path_and_query, "/pods");
    }

    #[test]
    fn kubelet_paths() {
        let by_pod = Context {
            route_kubelet_paths_by_pod: true,
            kubelet_port: 10250,
            default_port: 10250,
        };
        for (path, ok) in [
            ("/portForward/ns/pod", true),
            ("/portForward/ns/pod/uid", true),
            ("/containerLogs/ns/pod/c", true),
            ("/exec/ns/pod/c", true),
            ("/exec/ns/pod/uid/c", true),
            ("/attach/ns/pod/c", true),
            ("/exec/ns/pod", false),
            ("/logs/ns/pod/c", false),
        ] {
            let p = run_ctx("GET", path, &[("host", "apiserver:6443")], &by_pod).unwrap();
            let routed_by_pod = p.target
                == Target::Pod {
                    namespace: "ns".into(),
                    pod: "pod".into(),
                };
            assert_eq!(routed_by_pod, ok, "{path}");
            // Without a Pod locator they route by Host, still tagged as kubelet paths.
            let p = run("GET", path, &[("host", "edge:10250")]).unwrap();
            assert_eq!(p.kind == RouteKind::KubeletPath, ok, "{path}");
            assert_eq!(p.target, Target::Node("edge".into()));
        }
        assert!(run("GET", "/containerLogs/ns//c", &[("host", "edge:1")]).is_err());
    }

    #[test]
    fn strips_hop_by_hop_and_internal_headers() {
        let p = run(
            "GET",
            "/exec/ns/p/c",
            &[
                ("host", "edge:10250"),
                ("connection", "Upgrade, X-Drop"),
                ("upgrade", "websocket"),
                ("x-drop", "1"),
                ("keep-alive", "1"),
                ("x-raven-node", "other"),
                ("X_Raven_Node", "other"),
                ("x-tunnel-proxy-host", "gw:1"),
                ("forward-mode", "Local"),
                ("proxy-authorization", "Basic x"),
                ("authorization", "Bearer tok"),
                ("sec-websocket-key", "k"),
            ],
        )
        .unwrap();
        let names: Vec<&str> = p.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["authorization", "sec-websocket-key"]);
        assert_eq!(p.upgrade, Some(HeaderValue::from_static("websocket")));
        assert_eq!(p.bearer.as_deref(), Some("tok"));
    }

    #[test]
    fn upgrade_responses() {
        let ws = HeaderValue::from_static("websocket");
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, HeaderValue::from_static("http://x/"));
        let r = response_headers(StatusCode::FOUND, &h, Some(&ws));
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_GATEWAY);
        assert!(response_headers(StatusCode::FOUND, &h, None).is_ok());
        let r = response_headers(StatusCode::SWITCHING_PROTOCOLS, &h, None);
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_GATEWAY);
        h.insert(header::UPGRADE, ws.clone());
        h.insert("x-raven-secret", HeaderValue::from_static("1"));
        let out = response_headers(StatusCode::SWITCHING_PROTOCOLS, &h, Some(&ws)).unwrap();
        assert_eq!(out.get(header::UPGRADE), Some(&ws));
        assert!(!out.contains_key("x-raven-secret"));
    }

    #[test]
    fn node_names() {
        for ok in ["a", "edge-1", "node.example.com", "0abc"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a..b",
            "a_b",
            "127.0.0.1",
            "::1",
            "[::1]",
        ] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
