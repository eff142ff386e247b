//! Test harness shared by the end-to-end tests, the benchmark and the demo.
//!
//! Everything here drives real kernel objects: network namespaces made with `ip netns`, the
//! Debian reference CNI plugins, the real libcni through our Go driver `raven-cnitool`, and the
//! `raven-cni` release binary. Preconditions that are not met (not root, a tool or binary
//! missing) make the caller panic with the reason and the fix; nothing is silently skipped.

pub mod chain;
pub mod cluster_signer;
pub mod cmd;
pub mod cni_env;
pub mod controller_process;
pub mod csr_cluster;
pub mod error;
pub mod kernel;
pub mod kernel_scenarios;
pub mod kube;
pub mod lab;
pub mod manifests;
pub mod netns;
pub mod nodestate;
pub mod paths;
pub mod plugin;
pub mod require;
pub mod stats;
pub mod vm;
pub mod xfrm;

pub use cni_env::{CniEnv, CniEnvBuilder, CniOutput, Pod};
pub use error::{Context, Error, Result};
pub use netns::Netns;
pub use require::require_root;
