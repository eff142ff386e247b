//! Validation of v1beta1 Gateways: upstream's validating-webhook rules plus the checks upstream
//! forgets.
//!
//! Upstream rules (`gateway_validation.go`), with clearer messages:
//! - `exposeType` is "", `LoadBalancer` or `PublicIP`;
//! - an exposed gateway has no endpoint with `underNAT: true`;
//! - `tunnelConfig.Replicas` is at most 1;
//! - a `proxyConfig.Replicas` above 1 needs at least that many proxy endpoints;
//! - all endpoints share `endpoints[0].underNAT`; a non-empty `publicIP` is an IP; `type` is
//!   `proxy` or `tunnel`; `nodeName` is not empty;
//! - on update, the name does not change.
//!
//! Added here (upstream accepts these and then misbehaves):
//! - negative `Replicas` (upstream elects *every* eligible endpoint);
//! - two endpoints with the same `(nodeName, type)` (upstream may elect both);
//! - `port`/`publicPort` outside 0..=65535;
//! - non-numeric or out-of-range items in `proxyHTTPPort`/`proxyHTTPSPort` (upstream skips them
//!   silently);
//! - a malformed `raven.openyurt.io/extra-allowed-source-cidrs` annotation (upstream copies the
//!   pieces unchecked into `status.nodes[].subnets`, where agents fail to parse them);
//! - the reserved conversion annotations on a v1beta1 object.
//!
//! All errors are collected, not just the first, like the API server's field errors.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{EndpointType, ExposeType, v1beta1};
use crate::wellknown::{
    ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS, ANNOTATION_V1BETA1_SPEC, ANNOTATION_V1BETA1_STATUS,
};

/// The class of a field error, named like Kubernetes' `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The value is malformed or out of range.
    Invalid,
    /// A required value is missing.
    Required,
    /// The value is not one of a fixed set.
    NotSupported,
    /// The value repeats an earlier one that must be unique.
    Duplicate,
    /// The field may not be set (or changed).
    Forbidden,
}

impl FieldErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
        }
    }
}

/// One rejected field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.endpoints[2].publicIP`.
    pub path: String,
    /// Error class.
    pub kind: FieldErrorKind,
    /// The offending value, rendered as JSON (`None` when it adds nothing, e.g. Required).
    pub value: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    /// Same shape as Kubernetes field errors: `path: Kind: value: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind.as_str())?;
        if let Some(v) = &self.value {
            write!(f, ": {v}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All field errors of one object; never empty when returned as an `Err`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

impl std::error::Error for ValidationErrors {}

/// Why an extra-allowed-source-CIDRs annotation value is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrListError {
    /// Zero-based position of the bad piece in the comma-separated list.
    pub index: usize,
    /// The piece as written.
    pub piece: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CidrListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {} ({:?}): {}", self.index, self.piece, self.reason)
    }
}

impl std::error::Error for CidrListError {}

/// Parses the `raven.openyurt.io/extra-allowed-source-cidrs` value: comma-separated CIDRs,
/// no spaces (upstream splits on `,` without trimming and agents parse each piece with Go's
/// `net.ParseCIDR`, so a space would reach them). The empty string is an empty list.
pub fn parse_extra_allowed_source_cidrs(value: &str) -> Result<Vec<IpNetwork>, CidrListError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .enumerate()
        .map(|(index, piece)| {
            let err = |reason: &str| CidrListError {
                index,
                piece: piece.to_owned(),
                reason: reason.to_owned(),
            };
            if piece.is_empty() {
                return Err(err("empty item (stray comma?)"));
            }
            if piece.trim() != piece {
                return Err(err("must not contain spaces"));
            }
            if !piece.contains('/') {
                return Err(err("must be a CIDR with a prefix length, e.g. 10.0.0.0/24"));
            }
            piece
                .parse::<IpNetwork>()
                .map_err(|e| err(&format!("not a valid CIDR: {e}")))
        })
        .collect()
}

/// Validates a Gateway on create (and, through [`validate_update`], on update).
pub fn validate(gw: &v1beta1::Gateway) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    validate_metadata(gw, &mut errs);
    validate_expose_and_replicas(&gw.spec, &mut errs);
    validate_proxy_ports(&gw.spec.proxy_config, &mut errs);
    validate_endpoints(&gw.spec, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

/// Validates an update: the new object must be valid and keep its name. The old object is not
/// validated, so an invalid stored Gateway can be fixed (upstream #2649).
pub fn validate_update(
    old: &v1beta1::Gateway,
    new: &v1beta1::Gateway,
) -> Result<(), ValidationErrors> {
    let mut errs = match validate(new) {
        Ok(()) => Vec::new(),
        Err(ValidationErrors(errs)) => errs,
    };
    if old.metadata.name != new.metadata.name {
        errs.push(FieldError {
            path: "metadata.name".into(),
            kind: FieldErrorKind::Forbidden,
            value: Some(json_str(new.name())),
            message: format!("the gateway name cannot change (was {:?})", old.name()),
        });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

fn validate_metadata(gw: &v1beta1::Gateway, errs: &mut Vec<FieldError>) {
    let Some(annotations) = &gw.metadata.annotations else {
        return;
    };
    if let Some(value) = annotations.get(ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS)
        && let Err(e) = parse_extra_allowed_source_cidrs(value)
    {
        errs.push(FieldError {
            path: format!("metadata.annotations[{ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS}]"),
            kind: FieldErrorKind::Invalid,
            value: Some(json_str(value)),
            message: format!("must be comma-separated CIDRs without spaces: {e}"),
        });
    }
    for key in [ANNOTATION_V1BETA1_SPEC, ANNOTATION_V1BETA1_STATUS] {
        if annotations.contains_key(key) {
            errs.push(FieldError {
                path: format!("metadata.annotations[{key}]"),
                kind: FieldErrorKind::Forbidden,
                value: None,
                message: "reserved for v1alpha1 conversion; must not be set on a v1beta1 Gateway"
                    .into(),
            });
        }
    }
}

fn validate_expose_and_replicas(spec: &v1beta1::GatewaySpec, errs: &mut Vec<FieldError>) {
    if let ExposeType::Unknown(s) = &spec.expose_type {
        errs.push(FieldError {
            path: "spec.exposeType".into(),
            kind: FieldErrorKind::NotSupported,
            value: Some(json_str(s)),
            message: r#"supported values: "" (not exposed), "LoadBalancer", "PublicIP""#.into(),
        });
    }
    if spec.expose_type.is_exposed() {
        for (i, ep) in spec.endpoints.iter().enumerate() {
            if ep.under_nat {
                errs.push(FieldError {
                    path: format!("spec.endpoints[{i}].underNAT"),
                    kind: FieldErrorKind::Invalid,
                    value: Some("true".into()),
                    message: format!(
                        "must be false: the gateway is exposed (exposeType {}), so other domains \
                         connect to its endpoints directly",
                        spec.expose_type
                    ),
                });
            }
        }
    }

    let tunnel = spec.tunnel_config.replicas;
    if tunnel < 0 {
        errs.push(negative_replicas("spec.tunnelConfig.Replicas", tunnel));
    } else if tunnel > 1 {
        errs.push(FieldError {
            path: "spec.tunnelConfig.Replicas".into(),
            kind: FieldErrorKind::Invalid,
            value: Some(tunnel.to_string()),
            message: "must be 0 or 1: a gateway has at most one active tunnel endpoint".into(),
        });
    }

    let proxy = spec.proxy_config.replicas;
    if proxy < 0 {
        errs.push(negative_replicas("spec.proxyConfig.Replicas", proxy));
    } else if proxy > 1 {
        let available = spec.endpoints_of(EndpointType::Proxy).count();
        if usize::try_from(proxy).map_or(true, |p| p > available) {
            errs.push(FieldError {
                path: "spec.endpoints".into(),
                kind: FieldErrorKind::Invalid,
                value: Some(proxy.to_string()),
                message: format!(
                    "only {available} proxy endpoint(s) for proxyConfig.Replicas {proxy}: add \
                     proxy endpoints or lower the replicas"
                ),
            });
        }
    }
}

fn negative_replicas(path: &str, value: i64) -> FieldError {
    FieldError {
        path: path.into(),
        kind: FieldErrorKind::Invalid,
        value: Some(value.to_string()),
        message: "must not be negative".into(),
    }
}

fn validate_proxy_ports(cfg: &v1beta1::ProxyConfiguration, errs: &mut Vec<FieldError>) {
    for (path, list) in [
        ("spec.proxyConfig.proxyHTTPPort", &cfg.proxy_http_port),
        ("spec.proxyConfig.proxyHTTPSPort", &cfg.proxy_https_port),
    ] {
        // Same tokenisation as the upstream controller: split on ',', trim, skip empty items.
        let bad: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty() && p.parse::<u16>().map_or(true, |n| n == 0))
            .collect();
        if !bad.is_empty() {
            errs.push(FieldError {
                path: path.into(),
                kind: FieldErrorKind::Invalid,
                value: Some(json_str(list)),
                message: format!(
                    "must be a comma-separated list of ports 1-65535; bad item(s): {}",
                    bad.join(", ")
                ),
            });
        }
    }
}

fn validate_endpoints(spec: &v1beta1::GatewaySpec, errs: &mut Vec<FieldError>) {
    let Some(first) = spec.endpoints.first() else {
        return;
    };
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let at = |field: &str| format!("spec.endpoints[{i}].{field}");
        if ep.under_nat != first.under_nat {
            errs.push(FieldError {
                path: at("underNAT"),
                kind: FieldErrorKind::Invalid,
                value: Some(ep.under_nat.to_string()),
                message: format!(
                    "must be the same in all endpoints of a gateway (endpoints[0] has {})",
                    first.under_nat
                ),
            });
        }
        if !ep.public_ip.is_empty() && ep.public_ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError {
                path: at("publicIP"),
                kind: FieldErrorKind::Invalid,
                value: Some(json_str(&ep.public_ip)),
                message: "must be an IPv4 or IPv6 address, or empty".into(),
            });
        }
        if let EndpointType::Unknown(t) = &ep.type_ {
            errs.push(FieldError {
                path: at("type"),
                kind: FieldErrorKind::NotSupported,
                value: Some(json_str(t)),
                message: r#"supported values: "proxy", "tunnel""#.into(),
            });
        }
        if ep.node_name.is_empty() {
            errs.push(FieldError {
                path: at("nodeName"),
                kind: FieldErrorKind::Required,
                value: None,
                message: "the node hosting the endpoint must be named".into(),
            });
        }
        for (field, value) in [("port", ep.port), ("publicPort", ep.public_port)] {
            if !(0..=65535).contains(&value) {
                errs.push(FieldError {
                    path: at(field),
                    kind: FieldErrorKind::Invalid,
                    value: Some(value.to_string()),
                    message: "must be a port number 1-65535, or 0 for the default".into(),
                });
            }
        }
        if let Some(j) = spec.endpoints[..i].iter().position(|e| e.key() == ep.key()) {
            errs.push(FieldError {
                path: format!("spec.endpoints[{i}]"),
                kind: FieldErrorKind::Duplicate,
                value: Some(json_str(&format!("{}/{}", ep.node_name, ep.type_))),
                message: format!(
                    "spec.endpoints[{j}] already declares a {} endpoint on node {:?}; \
                     each (nodeName, type) may appear once",
                    ep.type_, ep.node_name
                ),
            });
        }
    }
}

/// A string as a JSON literal (quoted and escaped), the way Kubernetes prints values.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gateway::v1beta1::{
        Endpoint, Gateway, GatewaySpec, ProxyConfiguration, TunnelConfiguration,
    };

    /// Upstream's base valid Gateway: LoadBalancer, one proxy endpoint on node1 with a public
    /// IP, not under NAT, proxy and tunnel Replicas 1.
    fn base() -> Gateway {
        Gateway::new(
            "gw-test",
            GatewaySpec {
                expose_type: ExposeType::LoadBalancer,
                proxy_config: ProxyConfiguration {
                    replicas: 1,
                    ..Default::default()
                },
                tunnel_config: TunnelConfiguration { replicas: 1 },
                endpoints: vec![endpoint("node1", "proxy")],
                ..Default::default()
            },
        )
    }

    fn endpoint(node: &str, t: &str) -> Endpoint {
        Endpoint {
            node_name: node.into(),
            type_: EndpointType::from(t),
            public_ip: "192.168.1.1".into(),
            ..Default::default()
        }
    }

    fn annotate(gw: &mut Gateway, key: &str, value: &str) {
        gw.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
    }

    type Mutation = fn(&mut Gateway);

    /// (case, mutation of the base object, expected errors as "path|kind|message fragment").
    fn cases() -> Vec<(&'static str, Mutation, Vec<&'static str>)> {
        vec![
            ("valid base", |_| {}, vec![]),
            (
                "invalid exposeType",
                |g| g.spec.expose_type = ExposeType::from("InvalidExposeType"),
                vec![r#"spec.exposeType|NotSupported|"LoadBalancer", "PublicIP""#],
            ),
            (
                "exposed gateway under NAT",
                |g| g.spec.endpoints[0].under_nat = true,
                vec!["spec.endpoints[0].underNAT|Invalid|the gateway is exposed"],
            ),
            (
                "PublicIP gateway under NAT",
                |g| {
                    g.spec.expose_type = ExposeType::PublicIP;
                    g.spec.endpoints[0].under_nat = true;
                },
                vec!["spec.endpoints[0].underNAT|Invalid|exposeType PublicIP"],
            ),
            (
                "unexposed gateway under NAT is fine",
                |g| {
                    g.spec.expose_type = ExposeType::NotExposed;
                    g.spec.endpoints[0].under_nat = true;
                },
                vec![],
            ),
            (
                "tunnel replicas 2",
                |g| g.spec.tunnel_config.replicas = 2,
                vec!["spec.tunnelConfig.Replicas|Invalid|at most one active tunnel"],
            ),
            (
                "proxy replicas 2 with one proxy endpoint",
                |g| g.spec.proxy_config.replicas = 2,
                vec!["spec.endpoints|Invalid|only 1 proxy endpoint(s) for proxyConfig.Replicas 2"],
            ),
            (
                "proxy replicas 2 with two proxy endpoints",
                |g| {
                    g.spec.proxy_config.replicas = 2;
                    g.spec.endpoints.push(endpoint("node2", "proxy"));
                },
                vec![],
            ),
            (
                "proxy replicas 1 without proxy endpoints is allowed (upstream)",
                |g| g.spec.endpoints[0].type_ = EndpointType::Tunnel,
                vec![],
            ),
            (
                "both replicas 2: two errors, none about exposeType",
                |g| {
                    g.spec.tunnel_config.replicas = 2;
                    g.spec.proxy_config.replicas = 2;
                },
                vec![
                    "spec.tunnelConfig.Replicas|Invalid|2",
                    "spec.endpoints|Invalid|2",
                ],
            ),
            (
                "invalid publicIP",
                |g| g.spec.endpoints[0].public_ip = "invalid-ip".into(),
                vec![r#"spec.endpoints[0].publicIP|Invalid|"invalid-ip""#],
            ),
            (
                "IPv6 publicIP",
                |g| g.spec.endpoints[0].public_ip = "2001:db8::1".into(),
                vec![],
            ),
            (
                "empty nodeName",
                |g| g.spec.endpoints[0].node_name = String::new(),
                vec!["spec.endpoints[0].nodeName|Required|must be named"],
            ),
            (
                "mixed underNAT",
                |g| {
                    g.spec.expose_type = ExposeType::NotExposed;
                    g.spec.endpoints[0].under_nat = true;
                    g.spec.endpoints.push(endpoint("node2", "tunnel"));
                },
                vec!["spec.endpoints[1].underNAT|Invalid|endpoints[0] has true"],
            ),
            (
                "unknown endpoint type",
                |g| g.spec.endpoints[0].type_ = EndpointType::from("vpn"),
                vec![r#"spec.endpoints[0].type|NotSupported|"vpn""#],
            ),
            (
                "empty endpoint type",
                |g| g.spec.endpoints[0].type_ = EndpointType::from(""),
                vec![r#"spec.endpoints[0].type|NotSupported|"""#],
            ),
            (
                "negative tunnel replicas",
                |g| g.spec.tunnel_config.replicas = -1,
                vec!["spec.tunnelConfig.Replicas|Invalid|-1: must not be negative"],
            ),
            (
                "negative proxy replicas",
                |g| g.spec.proxy_config.replicas = -3,
                vec!["spec.proxyConfig.Replicas|Invalid|-3: must not be negative"],
            ),
            (
                "duplicate (node, type)",
                |g| g.spec.endpoints.push(endpoint("node1", "proxy")),
                vec![r#"spec.endpoints[1]|Duplicate|"node1/proxy": spec.endpoints[0] already"#],
            ),
            (
                "same node, different types is fine",
                |g| g.spec.endpoints.push(endpoint("node1", "tunnel")),
                vec![],
            ),
            (
                "port out of range",
                |g| g.spec.endpoints[0].port = 70000,
                vec!["spec.endpoints[0].port|Invalid|70000"],
            ),
            (
                "negative publicPort",
                |g| g.spec.endpoints[0].public_port = -1,
                vec!["spec.endpoints[0].publicPort|Invalid|-1"],
            ),
            (
                "proxy ports with spaces and empty items are fine",
                |g| g.spec.proxy_config.proxy_http_port = "10255, 9100,".into(),
                vec![],
            ),
            (
                "bad proxy ports",
                |g| g.spec.proxy_config.proxy_https_port = "10250,abc,0,70000".into(),
                vec!["spec.proxyConfig.proxyHTTPSPort|Invalid|bad item(s): abc, 0, 70000"],
            ),
            (
                "valid extra CIDRs",
                |g| {
                    annotate(
                        g,
                        ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS,
                        "1.1.1.1/32,10.0.0.0/8,fd00::/64",
                    )
                },
                vec![],
            ),
            (
                "empty extra CIDRs annotation",
                |g| annotate(g, ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS, ""),
                vec![],
            ),
            (
                "extra CIDR without prefix",
                |g| {
                    annotate(
                        g,
                        ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS,
                        "1.1.1.1/32,2.2.2.2",
                    )
                },
                vec!["extra-allowed-source-cidrs]|Invalid|item 1 (\"2.2.2.2\"): must be a CIDR"],
            ),
            (
                "extra CIDR with a space",
                |g| {
                    annotate(
                        g,
                        ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS,
                        "1.1.1.1/32, 2.2.2.2/32",
                    )
                },
                vec!["extra-allowed-source-cidrs]|Invalid|must not contain spaces"],
            ),
            (
                "extra CIDR garbage",
                |g| annotate(g, ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS, "10.0.0.0/33"),
                vec!["extra-allowed-source-cidrs]|Invalid|not a valid CIDR"],
            ),
            (
                "reserved conversion annotation",
                |g| annotate(g, ANNOTATION_V1BETA1_SPEC, "{}"),
                vec!["v1beta1-spec]|Forbidden|reserved"],
            ),
        ]
    }

    fn kind_name(k: FieldErrorKind) -> &'static str {
        match k {
            FieldErrorKind::Invalid => "Invalid",
            FieldErrorKind::Required => "Required",
            FieldErrorKind::NotSupported => "NotSupported",
            FieldErrorKind::Duplicate => "Duplicate",
            FieldErrorKind::Forbidden => "Forbidden",
        }
    }

    #[test]
    fn validation_table() {
        for (case, mutate, want) in cases() {
            let mut gw = base();
            mutate(&mut gw);
            let got = match validate(&gw) {
                Ok(()) => Vec::new(),
                Err(ValidationErrors(errs)) => {
                    assert!(!errs.is_empty(), "{case}: Err with no errors");
                    errs
                }
            };
            assert_eq!(got.len(), want.len(), "{case}: got {got:#?}");
            for (err, want) in got.iter().zip(&want) {
                let mut parts = want.splitn(3, '|');
                let (path, kind, fragment) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                assert!(
                    err.path.ends_with(path),
                    "{case}: path {} vs {path}",
                    err.path
                );
                assert_eq!(kind_name(err.kind), kind, "{case}: {err}");
                assert!(
                    err.to_string().contains(fragment),
                    "{case}: {err:?} should contain {fragment:?}"
                );
            }
            assert!(
                !got.iter()
                    .any(|e| e.to_string().contains("\"LoadBalancer\": ")),
                "{case}: no error should quote the exposeType as its value"
            );
        }
    }

    #[test]
    fn update_rules() {
        let old = base();
        assert_eq!(validate_update(&old, &old), Ok(()));

        let mut renamed = base();
        renamed.metadata.name = Some("other".into());
        let errs = validate_update(&old, &renamed).expect_err("rename must fail");
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].path, "metadata.name");
        assert!(errs.to_string().contains("cannot change"), "{errs}");

        // An invalid stored object can be fixed.
        let mut invalid_old = base();
        invalid_old.spec.tunnel_config.replicas = 5;
        assert_eq!(validate_update(&invalid_old, &old), Ok(()));

        // An invalid new object is rejected.
        assert!(validate_update(&old, &invalid_old).is_err());
    }

    #[test]
    fn errors_render_like_kubernetes_field_errors() {
        let mut gw = base();
        gw.spec.endpoints[0].public_ip = "x".into();
        gw.spec.endpoints[0].node_name = String::new();
        let errs = validate(&gw).expect_err("invalid");
        assert_eq!(
            errs.to_string(),
            "[spec.endpoints[0].publicIP: Invalid value: \"x\": must be an IPv4 or IPv6 \
             address, or empty, spec.endpoints[0].nodeName: Required value: the node hosting \
             the endpoint must be named]"
        );
    }

    #[test]
    fn extra_cidrs_parse_table() {
        let ok = parse_extra_allowed_source_cidrs("1.1.1.1/32,10.244.0.0/16").expect("valid");
        assert_eq!(
            ok.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["1.1.1.1/32", "10.244.0.0/16"]
        );
        assert_eq!(parse_extra_allowed_source_cidrs(""), Ok(vec![]));
        for (input, index, fragment) in [
            (",1.1.1.1/32", 0, "empty item"),
            ("1.1.1.1/32,", 1, "empty item"),
            ("1.1.1.1/32,,2.2.2.2/32", 1, "empty item"),
            (" 1.1.1.1/32", 0, "spaces"),
            ("1.1.1.1", 0, "prefix length"),
            ("a.b.c.d/8", 0, "not a valid CIDR"),
            ("10.0.0.0/40", 0, "not a valid CIDR"),
        ] {
            let err = parse_extra_allowed_source_cidrs(input).expect_err(input);
            assert_eq!(err.index, index, "{input}");
            assert!(err.to_string().contains(fragment), "{input}: {err}");
        }
    }
}
