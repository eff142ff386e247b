//! `raven-controller`: the Raven control plane.
//!
//! Shape: observe → pure plan → apply. This library holds the pure planning core, which does no
//! I/O and is table-tested:
//! - [`model`]: the observed inputs (nodes, node pools, leases) reduced to what planning needs,
//!   and their extraction from Kubernetes objects;
//! - [`domains`]: which network domains exist, the Gateways that represent them and which nodes
//!   carry which `raven.openyurt.io/gateway` label;
//! - [`election`]: the active endpoints and member nodes written into a Gateway's status, with
//!   the "changed?" test and the transition events;
//! - [`triggers`]: which Gateways a Node or `raven-cfg` change re-elects;
//! - [`services`]: the public LoadBalancer Services/Endpoints and the internal proxy Service;
//! - [`dns`]: the `edge-tunnel-nodes` hosts ConfigMap.
//!
//! [`runtime`] is the kube-rs side: watch caches, leader election and the reconcile passes
//! that apply these plans.
//!
//! [`webhook`] serves the Gateway admission and conversion webhooks on every replica, with a
//! certificate it manages itself; [`csr`] approves and signs the proxy certificates of Raven's
//! signers.

pub mod bound_pod;
pub mod csr;
pub mod dns;
pub mod domains;
pub mod election;
pub mod model;
pub mod runtime;
pub mod services;
pub mod triggers;
pub mod webhook;
