//! `raven-node`: the per-node daemon (DaemonSet).
//!
//! Not implemented yet: it will reconcile raven0, routes, rules and gateway tunnels from Gateway
//! objects and publish the node state read by `raven-cni`. Today it only answers `--help` and
//! `--version`, and refuses to run so that nobody mistakes it for a working daemon.

use clap::Parser;

/// Raven node daemon: cross-domain tunnels, per-pod routes and the L7 proxy for one node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Name of this node (the DaemonSet sets it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
}

fn main() -> std::process::ExitCode {
    let _args = Args::parse();
    eprintln!("raven-node: the data plane is not implemented in this build (see issue 4)");
    std::process::ExitCode::from(2)
}
