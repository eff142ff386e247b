//! The tunnel driver and data plane the daemon runs with.
//!
//! Until the netlink data plane and the userspace WireGuard driver are part of this build, the
//! stand-ins below do nothing and say so: a plan that needs kernel objects fails the pass with a
//! clear error (and `/readyz` reports it), a plan that needs none succeeds. They never pretend to
//! have programmed anything.

use std::path::Path;

use super::engine::{ApplyReport, Dataplane, PeerStats, Tunnel};
use super::run::Drivers;
use crate::plan::{NodePlan, Options, TunnelPlan};

/// Opens the drivers for this node.
pub fn open(_state_dir: &Path, _options: &Options) -> Result<Drivers, String> {
    Ok((Box::new(AbsentDataplane), Box::new(AbsentTunnel)))
}

/// Stand-in for the netlink data plane.
#[derive(Debug)]
pub struct AbsentDataplane;

impl Dataplane for AbsentDataplane {
    fn reconcile(&mut self, plan: &NodePlan) -> Result<ApplyReport, String> {
        if plan.vxlan.is_none() && plan.routes.is_empty() && plan.rules.is_empty() {
            Ok(ApplyReport::default())
        } else {
            Err(format!(
                "this build has no netlink data plane: raven0, {} route(s) and {} rule(s) were \
                 not programmed",
                plan.routes.len(),
                plan.rules.len()
            ))
        }
    }

    fn cleanup(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Stand-in for the tunnel driver.
#[derive(Debug)]
pub struct AbsentTunnel;

impl Tunnel for AbsentTunnel {
    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<(), String> {
        match plan {
            None => Ok(()),
            Some(p) => Err(format!(
                "this build has no tunnel driver: {} peer(s) on {} were not configured",
                p.peers.len(),
                p.device
            )),
        }
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        Vec::new()
    }

    fn cleanup(&mut self) -> Result<(), String> {
        Ok(())
    }
}
