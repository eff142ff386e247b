//! `raven-controller`: the control plane (Deployment).
//!
//! Not implemented yet: it will divide nodes into network domains, write one Gateway per domain
//! and elect active endpoints. Today it only answers `--help` and `--version`, and refuses to run.

use clap::Parser;

/// Raven controller: network domains, Gateways and gateway election.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Kubeconfig to use instead of the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let _args = Args::parse();
    eprintln!("raven-controller: the controller is not implemented in this build (see issue 5)");
    std::process::ExitCode::from(2)
}
