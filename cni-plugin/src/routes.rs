//! Pure planning of one pod's Raven routes: desired set, diff against what the kernel has.
//!
//! Ownership rule: a route is ours when it carries [`RAVEN_ROUTE_PROTOCOL`] and leaves through
//! this attachment's interface. We only ever replace or delete routes that are ours; a foreign
//! route for the same destination wins and ours is skipped (and reported).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use raven_api::nodestate::{NodeState, RAVEN_ROUTE_PROTOCOL};

use crate::result::PodAddress;

/// A route we want in the pod's main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredRoute {
    /// Remote-domain prefix.
    pub dst: IpNetwork,
    /// The pod's gateway for that family.
    pub gateway: IpAddr,
    /// Tunnel path MTU.
    pub mtu: u32,
    /// Advertised MSS matching `mtu`.
    pub advmss: u32,
}

/// A route found in the pod's main table (any owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedRoute {
    /// Destination prefix.
    pub dst: IpNetwork,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Outgoing interface index, if any.
    pub oif: Option<u32>,
    /// Route protocol (who installed it).
    pub protocol: u8,
    /// Route priority (metric), needed to delete exactly this route.
    pub priority: Option<u32>,
    /// `mtu` metric, if set.
    pub mtu: Option<u32>,
    /// `advmss` metric, if set.
    pub advmss: Option<u32>,
}

impl ObservedRoute {
    fn is_ours_on(&self, oif: u32) -> bool {
        self.protocol == RAVEN_ROUTE_PROTOCOL && self.oif == Some(oif)
    }

    fn matches(&self, want: &DesiredRoute) -> bool {
        self.gateway == Some(want.gateway)
            && self.mtu == Some(want.mtu)
            && self.advmss == Some(want.advmss)
    }
}

/// Why a desired route was not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Another owner already routes this destination.
    ForeignRoute(DesiredRoute),
    /// The prefix overlaps the pod's own subnet; routing it away would cut local traffic.
    OverlapsPodSubnet(IpNetwork),
    /// The pod has an address of this family but no gateway to route through.
    NoGateway(IpNetwork),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForeignRoute(r) => write!(f, "{} is already routed by another owner", r.dst),
            Self::OverlapsPodSubnet(p) => write!(f, "{p} overlaps the pod's own subnet"),
            Self::NoGateway(p) => write!(f, "{p}: the pod has no gateway of this family"),
        }
    }
}

/// The changes that bring one attachment's routes to the desired set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Routes to create or replace (missing, or different gateway/MTU).
    pub replace: Vec<DesiredRoute>,
    /// Our routes that are no longer wanted.
    pub delete: Vec<ObservedRoute>,
    /// Desired routes we must not install, with the reason.
    pub skipped: Vec<Skipped>,
}

impl RoutePlan {
    /// True when the kernel already matches.
    pub fn is_noop(&self) -> bool {
        self.replace.is_empty() && self.delete.is_empty()
    }
}

/// The routes one pod should have for a node state (none when there is no state yet).
pub fn desired_routes(
    state: Option<&NodeState>,
    pod: &[PodAddress],
) -> (Vec<DesiredRoute>, Vec<Skipped>) {
    let Some(state) = state else {
        return (Vec::new(), Vec::new());
    };
    let mut want = BTreeMap::new();
    let mut skipped = Vec::new();
    for prefix in &state.remote_prefixes {
        let same_family: Vec<&PodAddress> = pod
            .iter()
            .filter(|a| a.address.is_ipv4() == prefix.is_ipv4())
            .collect();
        if same_family.is_empty() {
            continue;
        }
        if same_family.iter().any(|a| overlaps(&a.address, prefix)) {
            skipped.push(Skipped::OverlapsPodSubnet(*prefix));
            continue;
        }
        let Some(gateway) = same_family.iter().find_map(|a| a.gateway) else {
            skipped.push(Skipped::NoGateway(*prefix));
            continue;
        };
        let advmss = state.advmss(prefix.is_ipv4());
        want.insert(
            *prefix,
            DesiredRoute {
                dst: *prefix,
                gateway,
                mtu: state.mtu,
                advmss,
            },
        );
    }
    (want.into_values().collect(), skipped)
}

/// Two prefixes overlap when either contains the other's network address.
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Diffs the desired routes against the main table, for the interface with index `oif`.
pub fn plan_routes(desired: &[DesiredRoute], observed: &[ObservedRoute], oif: u32) -> RoutePlan {
    let mut plan = RoutePlan::default();
    for want in desired {
        let same_dst: Vec<&ObservedRoute> = observed.iter().filter(|o| o.dst == want.dst).collect();
        if same_dst.iter().any(|o| !o.is_ours_on(oif)) {
            plan.skipped.push(Skipped::ForeignRoute(*want));
            continue;
        }
        if !same_dst.iter().any(|o| o.matches(want)) {
            plan.replace.push(*want);
        }
    }
    plan.delete = observed
        .iter()
        .filter(|o| o.is_ours_on(oif) && !desired.iter().any(|d| d.dst == o.dst))
        .copied()
        .collect();
    plan
}

/// Our routes on `oif`, for DEL: all of them go.
pub fn owned_routes(observed: &[ObservedRoute], oif: u32) -> Vec<ObservedRoute> {
    observed
        .iter()
        .filter(|o| o.is_ours_on(oif))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(prefixes: &[&str], mtu: u32) -> NodeState {
        NodeState {
            schema: 1,
            generation: 1,
            node_name: String::new(),
            remote_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            mtu,
            updated_at: 0,
        }
    }

    fn pod() -> Vec<PodAddress> {
        vec![PodAddress {
            address: "10.244.1.2/24".parse().unwrap(),
            gateway: Some("10.244.1.1".parse().unwrap()),
        }]
    }

    fn route(dst: &str, mtu: u32) -> DesiredRoute {
        DesiredRoute {
            dst: dst.parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            mtu,
            advmss: mtu - 40,
        }
    }

    fn seen(dst: &str, proto: u8, oif: u32, mtu: Option<u32>) -> ObservedRoute {
        ObservedRoute {
            dst: dst.parse().unwrap(),
            gateway: Some("10.244.1.1".parse().unwrap()),
            oif: Some(oif),
            protocol: proto,
            priority: None,
            mtu,
            advmss: mtu.map(|m| m - 40),
        }
    }

    #[test]
    fn desired_set_per_family_and_sorted() {
        let s = state(&["10.30.0.0/24", "10.20.0.0/24", "fd00:20::/64"], 1400);
        let (want, skipped) = desired_routes(Some(&s), &pod());
        assert_eq!(
            want,
            vec![route("10.20.0.0/24", 1400), route("10.30.0.0/24", 1400)]
        );
        assert!(
            skipped.is_empty(),
            "no v6 address means no v6 route, silently"
        );
        assert_eq!(desired_routes(None, &pod()).0, vec![]);
    }

    #[test]
    fn desired_set_skips_overlap_and_missing_gateway() {
        let s = state(&["10.244.0.0/16", "10.20.0.0/24"], 1400);
        let (want, skipped) = desired_routes(Some(&s), &pod());
        assert_eq!(want, vec![route("10.20.0.0/24", 1400)]);
        assert_eq!(
            skipped,
            vec![Skipped::OverlapsPodSubnet("10.244.0.0/16".parse().unwrap())]
        );
        let no_gw = vec![PodAddress {
            address: "10.244.1.2/24".parse().unwrap(),
            gateway: None,
        }];
        let (want, skipped) = desired_routes(Some(&state(&["10.20.0.0/24"], 1400)), &no_gw);
        assert!(want.is_empty());
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn plan_table() {
        let a = route("10.20.0.0/24", 1400);
        let b = route("10.30.0.0/24", 1400);
        let p = RAVEN_ROUTE_PROTOCOL;
        struct Case {
            name: &'static str,
            observed: Vec<ObservedRoute>,
            replace: Vec<DesiredRoute>,
            delete: usize,
            skipped: usize,
        }
        let cases = vec![
            Case {
                name: "empty table",
                observed: vec![],
                replace: vec![a, b],
                delete: 0,
                skipped: 0,
            },
            Case {
                name: "already converged",
                observed: vec![
                    seen("10.20.0.0/24", p, 3, Some(1400)),
                    seen("10.30.0.0/24", p, 3, Some(1400)),
                ],
                replace: vec![],
                delete: 0,
                skipped: 0,
            },
            Case {
                name: "mtu changed",
                observed: vec![
                    seen("10.20.0.0/24", p, 3, Some(1450)),
                    seen("10.30.0.0/24", p, 3, Some(1400)),
                ],
                replace: vec![a],
                delete: 0,
                skipped: 0,
            },
            Case {
                name: "stale route of ours",
                observed: vec![seen("10.99.0.0/24", p, 3, Some(1400))],
                replace: vec![a, b],
                delete: 1,
                skipped: 0,
            },
            Case {
                name: "foreign route wins",
                observed: vec![seen("10.20.0.0/24", 4, 3, None)],
                replace: vec![b],
                delete: 0,
                skipped: 1,
            },
            Case {
                name: "ours on another interface is not ours here",
                observed: vec![seen("10.99.0.0/24", p, 7, Some(1400))],
                replace: vec![a, b],
                delete: 0,
                skipped: 0,
            },
        ];
        for c in cases {
            let plan = plan_routes(&[a, b], &c.observed, 3);
            assert_eq!(plan.replace, c.replace, "{}", c.name);
            assert_eq!(plan.delete.len(), c.delete, "{}", c.name);
            assert_eq!(plan.skipped.len(), c.skipped, "{}", c.name);
        }
    }

    #[test]
    fn owned_routes_filters_by_protocol_and_interface() {
        let observed = [
            seen("10.20.0.0/24", RAVEN_ROUTE_PROTOCOL, 3, Some(1400)),
            seen("10.21.0.0/24", 4, 3, None),
            seen("10.22.0.0/24", RAVEN_ROUTE_PROTOCOL, 9, Some(1400)),
        ];
        let owned = owned_routes(&observed, 3);
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].dst, "10.20.0.0/24".parse::<IpNetwork>().unwrap());
    }
}
