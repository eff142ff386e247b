//! Which plan warnings become Kubernetes Events on a Gateway (pure), so an operator sees a bad
//! Gateway or a conflicting prefix in `kubectl describe gateway`, not only in one node's log.
//!
//! Every node plans from all Gateways, so every node would see the same problem. To keep one
//! Event source per domain, only nodes that run a tunnel (a Gateway's active endpoint, or a
//! solo node) report warnings; other nodes report only what is about themselves (being listed
//! by several Gateways). Events are raised on transitions only (a warning that is new since
//! the previous pass); the engine owns that, and kube-runtime's recorder folds repeats of one
//! Event into a series.

use crate::plan::{PlanWarning, Role};

/// One Event to raise on a Gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayEvent {
    /// The Gateway the Event is attached to.
    pub gateway: String,
    /// PascalCase reason (`MissingPublicKey`).
    pub reason: String,
    /// The warning, as logged.
    pub message: String,
}

/// The Event for `warning` as seen by a node in `role`, or `None` when another node reports it.
pub fn event_for(warning: &PlanWarning, role: &Role) -> Option<GatewayEvent> {
    let about_me = matches!(warning, PlanWarning::NodeInSeveralGateways { .. });
    if !(role.runs_tunnel() || about_me) {
        return None;
    }
    Some(GatewayEvent {
        gateway: warning.gateway().to_owned(),
        reason: pascal_case(warning.kind()),
        message: warning.to_string(),
    })
}

/// `missing_public_key` → `MissingPublicKey`.
fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Role {
        Role::Gateway {
            gateway: "gw-a".into(),
        }
    }

    fn member() -> Role {
        Role::Member {
            gateway: "gw-a".into(),
            gateway_node: "n1".into(),
        }
    }

    #[test]
    fn who_reports_what() {
        let missing_key = PlanWarning::MissingPublicKey {
            gateway: "gw-b".into(),
            node: "b1".into(),
        };
        let several = PlanWarning::NodeInSeveralGateways {
            node: "n2".into(),
            chosen: "gw-a".into(),
            ignored: "gw-z".into(),
        };
        let solo = Role::Solo {
            gateway: "gw-s".into(),
        };
        let cases = [
            (
                "gateway node, remote problem",
                &missing_key,
                gateway(),
                true,
            ),
            ("solo node, remote problem", &missing_key, solo, true),
            ("member, remote problem", &missing_key, member(), false),
            ("member, about itself", &several, member(), true),
            (
                "unmanaged, remote problem",
                &missing_key,
                Role::Unmanaged,
                false,
            ),
        ];
        for (name, w, role, want) in cases {
            assert_eq!(event_for(w, &role).is_some(), want, "{name}");
        }
        let e = event_for(&missing_key, &gateway()).expect("event");
        assert_eq!(e.gateway, "gw-b");
        assert_eq!(e.reason, "MissingPublicKey");
        assert_eq!(e.message, missing_key.to_string());
        assert_eq!(
            event_for(&several, &member()).expect("event").gateway,
            "gw-a"
        );
    }

    #[test]
    fn reasons_are_pascal_case() {
        assert_eq!(pascal_case("no_active_endpoint"), "NoActiveEndpoint");
        assert_eq!(pascal_case("unreachable"), "Unreachable");
    }
}
