//! Contracts shared by the three Raven programs.
//!
//! The default build has no heavy dependencies so that the short-lived `raven-cni` binary can use
//! it: it holds the node-state file that `raven-node` publishes for `raven-cni` and the wire
//! names shared with OpenYurt ([`wellknown`]). The `kube` feature adds the Gateway custom
//! resource ([`gateway`]) for `raven-node` and `raven-controller`.

#[cfg(feature = "kube")]
pub mod gateway;
pub mod nodestate;
pub mod wellknown;
