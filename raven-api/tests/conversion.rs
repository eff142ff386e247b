//! v1alpha1 ⇄ v1beta1 conversion: upstream's mapping where both versions can express the data,
//! and no loss on round trips (table tests and property tests).
#![cfg(feature = "kube")]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use proptest::prelude::*;
use raven_api::gateway::conversion::{ConversionError, convert_value, to_v1alpha1, to_v1beta1};
use raven_api::gateway::{EndpointType, ExposeType, v1alpha1, v1beta1};
use raven_api::wellknown::{ANNOTATION_V1BETA1_SPEC, ANNOTATION_V1BETA1_STATUS};
use serde_json::json;

const BETA: &str = "raven.openyurt.io/v1beta1";
const ALPHA: &str = "raven.openyurt.io/v1alpha1";

fn alpha_ep(node: &str, ip: &str) -> v1alpha1::Endpoint {
    v1alpha1::Endpoint {
        node_name: node.into(),
        public_ip: ip.into(),
        ..Default::default()
    }
}

fn beta_ep(node: &str, t: EndpointType, port: i64) -> v1beta1::Endpoint {
    v1beta1::Endpoint {
        node_name: node.into(),
        type_: t,
        port,
        ..Default::default()
    }
}

fn annotations(gw_meta: &ObjectMeta) -> Vec<&str> {
    gw_meta
        .annotations
        .iter()
        .flat_map(|a| a.keys().map(String::as_str))
        .collect()
}

#[test]
fn v1alpha1_to_v1beta1_follows_upstream() {
    let mut alpha = v1alpha1::Gateway::new(
        "gw",
        v1alpha1::GatewaySpec {
            node_selector: Some(LabelSelector::default()),
            endpoints: vec![
                v1alpha1::Endpoint {
                    under_nat: true,
                    config: BTreeMap::from([("publicKey".into(), "k".into())]),
                    ..alpha_ep("n1", "1.1.1.1")
                },
                v1alpha1::Endpoint {
                    under_nat: true,
                    ..alpha_ep("n2", "")
                },
            ],
            expose_type: ExposeType::LoadBalancer,
        },
    );
    alpha.status = Some(v1alpha1::GatewayStatus {
        nodes: vec![v1beta1::NodeInfo {
            node_name: "n1".into(),
            private_ip: "10.0.0.1".into(),
            subnets: vec!["10.244.0.0/24".into()],
        }],
        active_endpoint: Some(alpha_ep("n1", "1.1.1.1")),
    });
    let c = to_v1beta1(&alpha);
    assert!(c.warnings.is_empty());
    let beta = c.object;
    assert_eq!(beta.spec.proxy_config.replicas, 1);
    assert_eq!(beta.spec.tunnel_config.replicas, 1);
    assert_eq!(beta.spec.expose_type, ExposeType::LoadBalancer);
    assert_eq!(beta.spec.node_selector, Some(LabelSelector::default()));
    assert_eq!(
        beta.spec.endpoints,
        vec![
            v1beta1::Endpoint {
                public_ip: "1.1.1.1".into(),
                under_nat: true,
                config: BTreeMap::from([("publicKey".into(), "k".into())]),
                ..beta_ep("n1", EndpointType::Tunnel, 4500)
            },
            v1beta1::Endpoint {
                under_nat: true,
                ..beta_ep("n2", EndpointType::Tunnel, 4500)
            },
        ]
    );
    let status = beta.status.expect("status");
    assert_eq!(status.nodes, alpha.status.as_ref().expect("status").nodes);
    assert_eq!(
        status.active_endpoints,
        vec![v1beta1::Endpoint {
            public_ip: "1.1.1.1".into(),
            ..beta_ep("n1", EndpointType::Tunnel, 4500)
        }]
    );
    assert!(annotations(&beta.metadata).is_empty());
}

#[test]
fn v1beta1_in_the_v1alpha1_image_needs_no_annotation() {
    let beta = to_v1beta1(&v1alpha1::Gateway::new(
        "gw",
        v1alpha1::GatewaySpec {
            endpoints: vec![alpha_ep("n1", "2.2.2.2")],
            ..Default::default()
        },
    ))
    .object;
    let alpha = to_v1alpha1(&beta).object;
    assert!(annotations(&alpha.metadata).is_empty());
    assert_eq!(alpha.spec.endpoints, vec![alpha_ep("n1", "2.2.2.2")]);
}

#[test]
fn v1beta1_only_data_is_stashed_and_restored() {
    let mut beta = v1beta1::Gateway::new(
        "gw",
        v1beta1::GatewaySpec {
            proxy_config: v1beta1::ProxyConfiguration {
                replicas: 2,
                proxy_http_port: "80".into(),
                proxy_https_port: "443".into(),
            },
            tunnel_config: v1beta1::TunnelConfiguration { replicas: 1 },
            endpoints: vec![
                beta_ep("a", EndpointType::Proxy, 10262),
                v1beta1::Endpoint {
                    nat_type: "Symmetric NAT".into(),
                    public_port: 40000,
                    ..beta_ep("a", EndpointType::Tunnel, 4501)
                },
            ],
            ..Default::default()
        },
    );
    beta.status = Some(v1beta1::GatewayStatus {
        nodes: vec![],
        active_endpoints: vec![
            beta_ep("a", EndpointType::Proxy, 10262),
            beta_ep("a", EndpointType::Tunnel, 4501),
        ],
    });
    beta.metadata.annotations = Some(BTreeMap::from([("user".into(), "kept".into())]));

    let alpha = to_v1alpha1(&beta).object;
    assert_eq!(
        annotations(&alpha.metadata),
        vec![ANNOTATION_V1BETA1_SPEC, ANNOTATION_V1BETA1_STATUS, "user"]
    );
    // Upstream's projection: every endpoint, whatever its type.
    assert_eq!(
        alpha.spec.endpoints,
        vec![alpha_ep("a", ""), alpha_ep("a", "")]
    );
    // Ours: the tunnel endpoint, not activeEndpoints[0] (a proxy).
    let active = alpha
        .status
        .as_ref()
        .and_then(|s| s.active_endpoint.as_ref());
    assert_eq!(active, Some(&alpha_ep("a", "")));

    let back = to_v1beta1(&alpha);
    assert!(back.warnings.is_empty());
    assert_eq!(back.object, beta);
}

#[test]
fn edits_made_through_v1alpha1_win_and_keep_v1beta1_details() {
    let cloud: v1beta1::Gateway =
        serde_json::from_str(include_str!("fixtures/go/v1beta1-gw-cloud.json")).expect("fixture");
    let mut alpha = to_v1alpha1(&cloud).object;
    // A v1alpha1 client: changes cloud-1's first entry, drops cloud-2, adds a new node.
    alpha.spec.endpoints[0].public_ip = "47.100.10.99".into();
    alpha.spec.endpoints.remove(2);
    alpha
        .spec
        .endpoints
        .push(alpha_ep("cloud-9", "47.100.10.19"));
    alpha.spec.expose_type = ExposeType::LoadBalancer;

    let beta = to_v1beta1(&alpha).object;
    let mut want = cloud.spec.clone();
    want.endpoints[0].public_ip = "47.100.10.99".into();
    want.endpoints.remove(2);
    want.endpoints.push(v1beta1::Endpoint {
        public_ip: "47.100.10.19".into(),
        ..beta_ep("cloud-9", EndpointType::Tunnel, 4500)
    });
    want.expose_type = ExposeType::LoadBalancer;
    assert_eq!(beta.spec, want);
    assert!(
        annotations(&beta.metadata)
            .iter()
            .all(|k| !k.contains("v1beta1-"))
    );
}

#[test]
fn unreadable_stash_falls_back_to_upstream_mapping_with_a_warning() {
    let mut alpha = v1alpha1::Gateway::new(
        "gw",
        v1alpha1::GatewaySpec {
            endpoints: vec![alpha_ep("n", "")],
            ..Default::default()
        },
    );
    alpha.status = Some(v1alpha1::GatewayStatus::default());
    alpha.metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_V1BETA1_SPEC.into(), "{not json".into()),
        (
            ANNOTATION_V1BETA1_STATUS.into(),
            r#"{"activeEndpoints": 5}"#.into(),
        ),
    ]));
    let c = to_v1beta1(&alpha);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains(ANNOTATION_V1BETA1_SPEC));
    assert_eq!(
        c.object.spec.endpoints,
        vec![beta_ep("n", EndpointType::Tunnel, 4500)]
    );
    assert_eq!(c.object.metadata.annotations, None);
}

#[test]
fn reserved_annotations_on_v1beta1_are_not_carried_over() {
    let mut beta = to_v1beta1(&v1alpha1::Gateway::new("gw", Default::default())).object;
    beta.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_V1BETA1_SPEC.into(),
        r#"{"tunnelConfig":{"Replicas":0}}"#.into(),
    )]));
    let alpha = to_v1alpha1(&beta).object;
    assert_eq!(alpha.metadata.annotations, None);
}

#[test]
fn convert_value_errors_and_identity() {
    let alpha = json!({"apiVersion": ALPHA, "kind": "Gateway", "metadata": {"name": "g"},
                       "spec": {"endpoints": []}});
    let same = convert_value(&alpha, ALPHA).expect("identity");
    assert_eq!(same.object, alpha);

    let err = convert_value(&alpha, "raven.openyurt.io/v2").expect_err("bad target");
    assert!(matches!(err, ConversionError::UnsupportedApiVersion(_)));
    assert!(err.to_string().contains("raven.openyurt.io/v2"), "{err}");

    let err = convert_value(&json!({"kind": "Gateway"}), BETA).expect_err("no apiVersion");
    assert!(matches!(err, ConversionError::UnsupportedApiVersion(_)));

    let bad = json!({"apiVersion": ALPHA, "spec": {"endpoints": [{"nodeName": 3}]}});
    let err = convert_value(&bad, BETA).expect_err("malformed");
    assert!(
        err.to_string()
            .contains("not a valid raven.openyurt.io/v1alpha1 Gateway"),
        "{err}"
    );

    let converted = convert_value(&alpha, BETA).expect("convert");
    assert_eq!(converted.object["apiVersion"], BETA);
    assert_eq!(
        converted.object["spec"]["tunnelConfig"],
        json!({"Replicas": 1})
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("")].prop_map(str::to_owned)
}

fn small_string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9.:/ ]{1,8}"]
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![Just("publicKey"), Just("enable-l3-tunnel"), Just("x")].prop_map(str::to_owned),
        small_string(),
        0..3,
    )
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0_i64), Just(4500), Just(10262), Just(-1), any::<i64>()]
}

fn endpoint_type() -> impl Strategy<Value = EndpointType> {
    prop_oneof![Just("proxy"), Just("tunnel"), Just(""), Just("vpn")].prop_map(EndpointType::from)
}

fn expose_type() -> impl Strategy<Value = ExposeType> {
    prop_oneof![
        Just(""),
        Just("LoadBalancer"),
        Just("PublicIP"),
        Just("Other")
    ]
    .prop_map(ExposeType::from)
}

fn beta_endpoint() -> impl Strategy<Value = v1beta1::Endpoint> {
    (
        node_name(),
        small_string(),
        int(),
        any::<bool>(),
        small_string(),
        endpoint_type(),
        int(),
        string_map(),
    )
        .prop_map(
            |(node_name, public_ip, public_port, under_nat, nat_type, type_, port, config)| {
                v1beta1::Endpoint {
                    node_name,
                    public_ip,
                    public_port,
                    under_nat,
                    nat_type,
                    type_,
                    port,
                    config,
                }
            },
        )
}

fn alpha_endpoint() -> impl Strategy<Value = v1alpha1::Endpoint> {
    (node_name(), any::<bool>(), small_string(), string_map()).prop_map(
        |(node_name, under_nat, public_ip, config)| v1alpha1::Endpoint {
            node_name,
            under_nat,
            public_ip,
            config,
        },
    )
}

fn node_info() -> impl Strategy<Value = v1beta1::NodeInfo> {
    (
        node_name(),
        small_string(),
        prop::collection::vec(small_string(), 0..3),
    )
        .prop_map(|(node_name, private_ip, subnets)| v1beta1::NodeInfo {
            node_name,
            private_ip,
            subnets,
        })
}

fn selector() -> impl Strategy<Value = Option<LabelSelector>> {
    prop::option::of(
        prop::option::of(string_map()).prop_map(|match_labels| LabelSelector {
            match_labels,
            match_expressions: None,
        }),
    )
}

/// `None` or a non-empty map without the reserved keys (`Some({})` and `None` are the same
/// object on the wire, and conversion normalises to `None`).
fn user_annotations() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    prop::option::of(prop::collection::btree_map(
        prop_oneof![
            Just("user/a"),
            Just("raven.openyurt.io/extra-allowed-source-cidrs")
        ]
        .prop_map(str::to_owned),
        small_string(),
        1..3,
    ))
}

fn beta_gateway() -> impl Strategy<Value = v1beta1::Gateway> {
    let spec = (
        selector(),
        (int(), small_string(), small_string()),
        int(),
        prop::collection::vec(beta_endpoint(), 0..5),
        expose_type(),
    )
        .prop_map(
            |(node_selector, (pr, http, https), tr, endpoints, expose_type)| v1beta1::GatewaySpec {
                node_selector,
                proxy_config: v1beta1::ProxyConfiguration {
                    replicas: pr,
                    proxy_http_port: http,
                    proxy_https_port: https,
                },
                tunnel_config: v1beta1::TunnelConfiguration { replicas: tr },
                endpoints,
                expose_type,
            },
        );
    let status = prop::option::of(
        (
            prop::collection::vec(node_info(), 0..3),
            prop::collection::vec(beta_endpoint(), 0..4),
        )
            .prop_map(|(nodes, active_endpoints)| v1beta1::GatewayStatus {
                nodes,
                active_endpoints,
            }),
    );
    (spec, status, user_annotations()).prop_map(|(spec, status, annotations)| {
        let mut gw = v1beta1::Gateway::new("gw", spec);
        gw.status = status;
        gw.metadata.annotations = annotations;
        gw
    })
}

fn alpha_gateway() -> impl Strategy<Value = v1alpha1::Gateway> {
    let spec = (
        selector(),
        prop::collection::vec(alpha_endpoint(), 0..5),
        expose_type(),
    )
        .prop_map(
            |(node_selector, endpoints, expose_type)| v1alpha1::GatewaySpec {
                node_selector,
                endpoints,
                expose_type,
            },
        );
    let status = prop::option::of(
        (
            prop::collection::vec(node_info(), 0..3),
            prop::option::of(alpha_endpoint()),
        )
            .prop_map(|(nodes, active_endpoint)| v1alpha1::GatewayStatus {
                nodes,
                active_endpoint,
            }),
    );
    (spec, status, user_annotations()).prop_map(|(spec, status, annotations)| {
        let mut gw = v1alpha1::Gateway::new("gw", spec);
        gw.status = status;
        gw.metadata.annotations = annotations;
        gw
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v1beta1_survives_a_trip_through_v1alpha1(beta in beta_gateway()) {
        let alpha = to_v1alpha1(&beta);
        prop_assert!(alpha.warnings.is_empty());
        let back = to_v1beta1(&alpha.object);
        prop_assert!(back.warnings.is_empty());
        prop_assert_eq!(&back.object, &beta);
    }

    #[test]
    fn v1beta1_survives_a_trip_through_stored_v1alpha1_json(beta in beta_gateway()) {
        // What the API server does: JSON in, JSON out, possibly stored in between.
        let json = serde_json::to_value(&beta).expect("serialize");
        let alpha = convert_value(&json, ALPHA).expect("to v1alpha1").object;
        let stored: serde_json::Value =
            serde_json::from_str(&alpha.to_string()).expect("reparse");
        let back = convert_value(&stored, BETA).expect("to v1beta1").object;
        prop_assert_eq!(back, json);
    }

    #[test]
    fn v1alpha1_survives_a_trip_through_v1beta1(alpha in alpha_gateway()) {
        let beta = to_v1beta1(&alpha);
        prop_assert!(beta.warnings.is_empty());
        let back = to_v1alpha1(&beta.object);
        prop_assert_eq!(&back.object, &alpha);
    }

    #[test]
    fn v1alpha1_edits_reach_v1beta1(beta in beta_gateway(), ip in "[0-9.]{1,15}", flip in any::<bool>()) {
        let mut alpha = to_v1alpha1(&beta).object;
        for ep in &mut alpha.spec.endpoints {
            ep.public_ip = ip.clone();
            if flip {
                ep.under_nat = !ep.under_nat;
            }
        }
        let back = to_v1beta1(&alpha).object;
        let mut want = beta.spec.clone();
        for ep in &mut want.endpoints {
            ep.public_ip = ip.clone();
            if flip {
                ep.under_nat = !ep.under_nat;
            }
        }
        prop_assert_eq!(back.spec, want);
        prop_assert_eq!(back.status, beta.status);
    }

    #[test]
    fn v1alpha1_projection_is_upstreams(beta in beta_gateway()) {
        let alpha = to_v1alpha1(&beta).object;
        prop_assert_eq!(alpha.spec.endpoints.len(), beta.spec.endpoints.len());
        for (a, b) in alpha.spec.endpoints.iter().zip(&beta.spec.endpoints) {
            prop_assert_eq!(&a.node_name, &b.node_name);
            prop_assert_eq!(&a.public_ip, &b.public_ip);
            prop_assert_eq!(a.under_nat, b.under_nat);
            prop_assert_eq!(&a.config, &b.config);
        }
        prop_assert_eq!(&alpha.spec.expose_type, &beta.spec.expose_type);
        prop_assert_eq!(&alpha.spec.node_selector, &beta.spec.node_selector);
    }
}
