//! Apply: bring one attachment's routes to what the node state asks for.
//!
//! The only code that writes routes. It observes the pod's main table, plans with the pure
//! [`crate::routes`] functions and sends exactly the changes the plan lists.

use std::fs::File;

use raven_api::nodestate::NodeState;

use crate::error::{CniError, Result, code};
use crate::netlink::RouteSocket;
use crate::netns;
use crate::result::PodAddress;
use crate::routes::{self, DesiredRoute, RoutePlan};

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The routes that are now in place.
    pub installed: Vec<DesiredRoute>,
    /// The plan that was applied (empty when nothing changed).
    pub plan: RoutePlan,
}

/// A socket in the pod's namespace plus the index of the attachment's interface.
#[derive(Debug)]
pub struct PodLink {
    socket: RouteSocket,
    oif: u32,
}

impl PodLink {
    /// Opens the pod's namespace and finds `ifname` in it; `Ok(None)` if the interface is gone.
    pub fn open(ns: &File, ifname: &str) -> Result<Option<Self>> {
        let mut socket = netns::open_route_socket(ns)?;
        let oif = socket
            .link_index(ifname)
            .map_err(|e| netlink_error(&format!("look up {ifname}"), &e))?;
        Ok(oif.map(|oif| Self { socket, oif }))
    }

    /// Computes the plan for `state` without changing anything (CHECK).
    pub fn plan(
        &mut self,
        state: Option<&NodeState>,
        pod: &[PodAddress],
    ) -> Result<(Vec<DesiredRoute>, RoutePlan)> {
        let (desired, mut skipped) = routes::desired_routes(state, pod);
        let observed = self
            .socket
            .main_routes()
            .map_err(|e| netlink_error("dump routes", &e))?;
        let mut plan = routes::plan_routes(&desired, &observed, self.oif);
        skipped.append(&mut plan.skipped);
        plan.skipped = skipped;
        Ok((desired, plan))
    }

    /// Makes the kernel match `state`; idempotent, and a rerun after a crash converges.
    pub fn sync(&mut self, state: Option<&NodeState>, pod: &[PodAddress]) -> Result<SyncReport> {
        let (desired, plan) = self.plan(state, pod)?;
        for stale in &plan.delete {
            self.socket
                .delete_route(stale)
                .map_err(|e| netlink_error(&format!("delete route {}", stale.dst), &e))?;
        }
        for route in &plan.replace {
            self.socket.replace_route(route, self.oif).map_err(|e| {
                netlink_error(
                    &format!("replace route {} via {}", route.dst, route.gateway),
                    &e,
                )
            })?;
        }
        let installed = desired
            .into_iter()
            .filter(|d| {
                !plan
                    .skipped
                    .iter()
                    .any(|s| matches!(s, routes::Skipped::ForeignRoute(r) if r.dst == d.dst))
            })
            .collect();
        Ok(SyncReport { installed, plan })
    }

    /// Removes every route of ours on this interface (DEL).
    pub fn remove_all(&mut self) -> Result<usize> {
        let observed = self
            .socket
            .main_routes()
            .map_err(|e| netlink_error("dump routes", &e))?;
        let owned = routes::owned_routes(&observed, self.oif);
        for route in &owned {
            self.socket
                .delete_route(route)
                .map_err(|e| netlink_error(&format!("delete route {}", route.dst), &e))?;
        }
        Ok(owned.len())
    }
}

fn netlink_error(what: &str, e: &std::io::Error) -> CniError {
    CniError::new(code::NETLINK, format!("netlink: {what}"), e.to_string())
}
