//! Which Gateways must be re-elected when a watched object changes (the enqueue rules).
//!
//! Upstream's rules (reference §3.2) plus the fix for its blind spot: a change of a member's
//! InternalIP or pod CIDRs changes `status.nodes` but upstream does not enqueue it (§3.9), so
//! agents route to stale subnets until something else happens. Nothing else about a Node
//! matters to the election, so other changes (heartbeats, unrelated labels) enqueue nothing.
//! A periodic full re-evaluation covers anything missed regardless.

use std::collections::{BTreeMap, BTreeSet};

use raven_api::wellknown::{CONFIG_ENABLE_L3_TUNNEL, CONFIG_ENABLE_L7_PROXY, LABEL_GATEWAY};

use crate::model::NodeView;

/// Gateways to re-elect after a Node event: `(None, Some)` is a create, `(Some, None)` a
/// delete, `(Some, Some)` an update.
pub fn gateways_for_node_event(old: Option<&NodeView>, new: Option<&NodeView>) -> BTreeSet<String> {
    let gw = |n: Option<&NodeView>| {
        n.and_then(|n| n.label(LABEL_GATEWAY))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (old_gw, new_gw) = (gw(old), gw(new));
    let relevant = match (old, new) {
        (Some(o), Some(n)) => {
            old_gw != new_gw
                || o.ready != n.ready
                || o.private_ip != n.private_ip
                || o.pod_cidrs != n.pod_cidrs
        }
        _ => true,
    };
    if !relevant {
        return BTreeSet::new();
    }
    old_gw.into_iter().chain(new_gw).collect()
}

/// Whether a `raven-cfg` event re-elects every Gateway: on create and delete always, on update
/// only when `enable-l7-proxy` or `enable-l3-tunnel` changed (other keys belong to vendors).
pub fn raven_cfg_event_reelects_all(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => [CONFIG_ENABLE_L7_PROXY, CONFIG_ENABLE_L3_TUNNEL]
            .iter()
            .any(|k| o.get(*k) != n.get(*k)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(gw: Option<&str>, ready: bool) -> NodeView {
        let mut v = NodeView {
            name: "node".into(),
            ready,
            ..Default::default()
        };
        if let Some(g) = gw {
            v.labels.insert(LABEL_GATEWAY.into(), g.into());
        }
        v
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Acceptance cases 28–31 (27, a non-Node object, cannot be expressed with typed events).
    #[test]
    fn node_event_table() {
        let unlabelled = n(None, true);
        let mock = n(Some("gw-mock"), true);
        let mock_new = n(Some("gw-mock-new"), true);
        let mock_down = n(Some("gw-mock"), false);
        let mut mock_ip = mock.clone();
        mock_ip.private_ip = Some("10.0.0.9".parse().expect("ip"));
        let mut mock_cidr = mock.clone();
        mock_cidr.pod_cidrs = vec!["fd00::/64".into()];
        let unlabelled_down = n(None, false);
        let mut mock_other = mock.clone();
        mock_other.labels.insert("team".into(), "a".into());
        type Case<'a> = (
            &'a str,
            Option<&'a NodeView>,
            Option<&'a NodeView>,
            BTreeSet<String>,
        );
        let cases: Vec<Case> = vec![
            ("28 create unlabelled", None, Some(&unlabelled), set(&[])),
            ("28 delete unlabelled", Some(&unlabelled), None, set(&[])),
            ("29 create labelled", None, Some(&mock), set(&["gw-mock"])),
            ("29 delete labelled", Some(&mock), None, set(&["gw-mock"])),
            (
                "30 label change",
                Some(&mock),
                Some(&mock_new),
                set(&["gw-mock", "gw-mock-new"]),
            ),
            (
                "31 ready flip",
                Some(&mock),
                Some(&mock_down),
                set(&["gw-mock"]),
            ),
            (
                "label added",
                Some(&unlabelled),
                Some(&mock),
                set(&["gw-mock"]),
            ),
            (
                "fix: address change",
                Some(&mock),
                Some(&mock_ip),
                set(&["gw-mock"]),
            ),
            (
                "fix: pod CIDR change",
                Some(&mock),
                Some(&mock_cidr),
                set(&["gw-mock"]),
            ),
            ("unrelated label", Some(&mock), Some(&mock_other), set(&[])),
            ("no change", Some(&mock), Some(&mock), set(&[])),
            (
                "ready flip unlabelled",
                Some(&unlabelled),
                Some(&unlabelled_down),
                set(&[]),
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(gateways_for_node_event(old, new), want, "{name}");
        }
    }

    /// Acceptance case 32 (ConfigMap handler; a non-ConfigMap cannot be expressed).
    #[test]
    fn raven_cfg_event_table() {
        let cm = |p: &str, t: &str, extra: &str| -> BTreeMap<String, String> {
            BTreeMap::from([
                (CONFIG_ENABLE_L7_PROXY.to_string(), p.to_string()),
                (CONFIG_ENABLE_L3_TUNNEL.to_string(), t.to_string()),
                ("acl-id".to_string(), extra.to_string()),
            ])
        };
        let base = cm("true", "true", "a");
        let cases = [
            ("create", None, Some(base.clone()), true),
            ("delete", Some(base.clone()), None, true),
            (
                "proxy changed",
                Some(base.clone()),
                Some(cm("false", "true", "a")),
                true,
            ),
            (
                "tunnel changed",
                Some(base.clone()),
                Some(cm("true", "false", "a")),
                true,
            ),
            (
                "vendor key changed",
                Some(base.clone()),
                Some(cm("true", "true", "b")),
                false,
            ),
            ("unchanged", Some(base.clone()), Some(base.clone()), false),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(
                raven_cfg_event_reelects_all(old.as_ref(), new.as_ref()),
                want,
                "{name}"
            );
        }
    }
}
