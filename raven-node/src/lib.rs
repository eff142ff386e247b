//! `raven-node` library: the node daemon's parts, pure ones unit-testable.
//!
//! [`plan`] turns all Gateway objects plus "I am node N" into the exact network state node N
//! must have. [`daemon`] observes the Gateways, plans, applies the difference and publishes the
//! node state for `raven-cni`.

pub mod daemon;
pub mod dataplane;
pub mod plan;
pub mod proxy;
pub mod tunnel;
