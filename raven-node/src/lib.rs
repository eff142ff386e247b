//! `raven-node` library: the node daemon's parts, pure ones unit-testable.
//!
//! [`plan`] turns all Gateway objects plus "I am node N" into the exact network state node N
//! must have. [`daemon`] observes the Gateways, plans, applies the difference and publishes the
//! node state for `raven-cni`. [`cni_install`] chains `raven-cni` into the runtime's CNI
//! configuration (the init container's `install-cni`, re-run by the daemon).

pub mod cni_install;
pub mod daemon;
pub mod dataplane;
pub mod memory;
pub mod plan;
pub mod proxy;
pub mod tunnel;
