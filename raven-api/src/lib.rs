//! Contracts shared by the three Raven programs.
//!
//! The default build has no heavy dependencies so that the short-lived `raven-cni` binary can use
//! it: it holds the node-state file that `raven-node` publishes for `raven-cni`.

pub mod nodestate;
