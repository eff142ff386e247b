//! The node daemon: Gateway source → [`crate::plan`] → tunnel driver and data plane → node
//! state for `raven-cni` → per-pod route refresh, with metrics and health endpoints.
//!
//! - [`source`]: the standalone Gateway source (files in a directory, polled).
//! - [`kube_source`]: the Kubernetes Gateway source (watch) and the endpoint write-back
//!   ([`writeback`]: public key and public IP, [`public_ip`]: HTTP discovery).
//! - [`engine`]: one reconcile pass, with the tunnel, data plane and node-state sink behind
//!   traits so the pass is unit-tested with fakes.
//! - [`publish`]: the real node-state sink (atomic file, persisted generation, pod refresh).
//! - [`drivers`]: which data plane and tunnel driver this build runs.
//! - [`metrics`], [`health`], [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`status`]: `/status` and the `raven-node status` report.
//! - [`mtu`]: observing the underlay MTU.
//! - [`lease`]: the per-node health Lease raven-controller's election reads.
//! - [`proxy_front`], [`proxy_certs`]: the proxy's front side and, in Kubernetes mode, its
//!   certificates from the CSR API.
//! - [`run`]: the loop, signals, graceful stop and `cleanup`.

pub mod drivers;
pub mod engine;
pub mod events;
pub mod health;
pub mod http;
pub mod kube_source;
pub mod lease;
pub mod metrics;
pub mod mtu;
pub mod proxy_certs;
pub mod proxy_front;
pub mod public_ip;
pub mod publish;
pub mod run;
pub mod source;
pub mod status;
pub mod writeback;

pub use run::{Config, RunError, SourceConfig, cleanup, run};
