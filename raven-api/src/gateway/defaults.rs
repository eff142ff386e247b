//! Defaulting of v1beta1 Gateways: upstream's mutating-webhook rules (`SetDefaultsGateway`).
//!
//! 1. `spec.nodeSelector.matchLabels["raven.openyurt.io/gateway"] = <name>`, merged into any
//!    existing selector (other labels and `matchExpressions` are kept).
//! 2. An endpoint with `port: 0` gets its type's default port: proxy 10262, tunnel 4500
//!    (endpoints of an unknown type keep 0; validation rejects them).
//!
//! Like upstream we do not default `Replicas`: a v1beta1 Gateway without `proxyConfig` or
//! `tunnelConfig` elects nothing of that type (the JSON cannot tell `{"Replicas":0}` from an
//! absent block, and changing it would change what existing Gateways do).
//!
//! Only the v1beta1 rules exist: with the webhook's `matchPolicy: Equivalent`, v1alpha1
//! requests reach it converted to v1beta1, as upstream registers it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::v1beta1;
use crate::wellknown::LABEL_GATEWAY;

/// Applies the defaults in place. Returns whether anything changed, so a webhook can skip an
/// empty patch. Idempotent.
pub fn default_gateway(gw: &mut v1beta1::Gateway) -> bool {
    let name = gw.metadata.name.clone().unwrap_or_default();
    let mut changed = false;

    let selector = gw.spec.node_selector.get_or_insert_with(|| {
        changed = true;
        LabelSelector::default()
    });
    let labels = selector.match_labels.get_or_insert_with(Default::default);
    if labels.get(LABEL_GATEWAY) != Some(&name) {
        labels.insert(LABEL_GATEWAY.to_owned(), name);
        changed = true;
    }

    for ep in &mut gw.spec.endpoints {
        if ep.port == 0
            && let Some(port) = ep.type_.default_port()
        {
            ep.port = i64::from(port);
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gateway::EndpointType;
    use crate::gateway::v1beta1::{Endpoint, Gateway, GatewaySpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ep(t: &str, port: i64) -> Endpoint {
        Endpoint {
            node_name: "n1".into(),
            type_: EndpointType::from(t),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn node_selector_table() {
        let expr = LabelSelectorRequirement {
            key: "k".into(),
            operator: "Exists".into(),
            values: None,
        };
        // (case, input selector, expected selector)
        let cases: Vec<(&str, Option<LabelSelector>, LabelSelector)> = vec![
            (
                "nil selector",
                None,
                LabelSelector {
                    match_labels: Some(labels(&[(LABEL_GATEWAY, "gw-a")])),
                    match_expressions: None,
                },
            ),
            (
                "empty selector (nil matchLabels)",
                Some(LabelSelector::default()),
                LabelSelector {
                    match_labels: Some(labels(&[(LABEL_GATEWAY, "gw-a")])),
                    match_expressions: None,
                },
            ),
            (
                "existing labels are merged",
                Some(LabelSelector {
                    match_labels: Some(labels(&[("existing", "label")])),
                    match_expressions: Some(vec![expr.clone()]),
                }),
                LabelSelector {
                    match_labels: Some(labels(&[("existing", "label"), (LABEL_GATEWAY, "gw-a")])),
                    match_expressions: Some(vec![expr.clone()]),
                },
            ),
            (
                "a wrong gateway label is overwritten",
                Some(LabelSelector {
                    match_labels: Some(labels(&[(LABEL_GATEWAY, "other")])),
                    match_expressions: None,
                }),
                LabelSelector {
                    match_labels: Some(labels(&[(LABEL_GATEWAY, "gw-a")])),
                    match_expressions: None,
                },
            ),
        ];
        for (case, input, want) in cases {
            let mut gw = Gateway::new(
                "gw-a",
                GatewaySpec {
                    node_selector: input,
                    ..Default::default()
                },
            );
            assert!(default_gateway(&mut gw), "{case}: should report a change");
            assert_eq!(gw.spec.node_selector, Some(want), "{case}");
            assert!(
                !default_gateway(&mut gw),
                "{case}: second run must be a no-op"
            );
        }
    }

    #[test]
    fn endpoint_ports_table() {
        // (type, port in, port out)
        let cases = [
            ("proxy", 0, 10262),
            ("tunnel", 0, 4500),
            ("proxy", 8080, 8080),
            ("tunnel", 4501, 4501),
            ("vpn", 0, 0),
            ("", 0, 0),
        ];
        for (t, port, want) in cases {
            let mut gw = Gateway::new(
                "gw",
                GatewaySpec {
                    endpoints: vec![ep(t, port)],
                    ..Default::default()
                },
            );
            default_gateway(&mut gw);
            assert_eq!(gw.spec.endpoints[0].port, want, "type {t:?} port {port}");
        }
    }

    #[test]
    fn already_defaulted_reports_no_change() {
        let mut gw = Gateway::new(
            "gw",
            GatewaySpec {
                node_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[(LABEL_GATEWAY, "gw")])),
                    match_expressions: None,
                }),
                endpoints: vec![ep("proxy", 10262), ep("tunnel", 4500)],
                ..Default::default()
            },
        );
        let before = gw.clone();
        assert!(!default_gateway(&mut gw));
        assert_eq!(gw, before);
    }
}
