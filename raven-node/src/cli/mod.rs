//! The command line: the subcommands and what each one takes (the flags of `run`/`cleanup`,
//! their conversion to the daemon's configuration and the small subcommands live in the
//! submodules).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) mod cni;
mod common;
mod proxy;
pub(crate) mod status;

use cni::{CniArgs, InstallArgs};
pub(crate) use common::{Common, config};
use status::OutputFormat;

/// Raven node daemon: cross-domain tunnels and per-pod routes for one node.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon until SIGTERM/SIGINT (the data plane stays in place on stop).
    Run(Common),
    /// Remove everything Raven owns on this node (tunnel, raven0, routes, rules, node state,
    /// per-pod routes) and nothing else.
    Cleanup(Common),
    /// Print this node's tunnel public key (creating the persisted key if needed), for
    /// `config.publicKey` of its Gateway endpoint in standalone mode.
    PublicKey {
        /// State directory holding the key.
        #[arg(long, env = "RAVEN_STATE_DIR", default_value = "/var/lib/raven")]
        state_dir: PathBuf,
    },
    /// Show what the running daemon does (role, tunnel peers, routes, pods, last apply);
    /// exits 1 when it is not healthy (not live or not ready), 2 when it cannot be reached.
    Status {
        /// The daemon's metrics address.
        #[arg(long, env = "RAVEN_METRICS_ADDR", default_value = "127.0.0.1:10265")]
        addr: SocketAddr,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Install the raven-cni binary and chain it after the node's CNI configuration
    /// (writes 05-raven.conflist derived from the first foreign one; idempotent).
    InstallCni(InstallArgs),
    /// Remove 05-raven.conflist: the runtime uses the untouched original chain again.
    UninstallCni {
        #[command(flatten)]
        cni: CniArgs,
        /// Also remove the raven-cni binary (by default it stays, so that DELs of pods added
        /// under our chain keep working).
        #[arg(long)]
        remove_binary: bool,
    },
}

/// Test helper: the configuration that `raven-node <argv>` gives, `argv` being a `run` or
/// `cleanup` command line without the program name; panics when clap rejects it or parses
/// it as another subcommand.
#[cfg(test)]
fn config_of(argv: &[&str]) -> Result<raven_node::daemon::Config, String> {
    let cli =
        Cli::try_parse_from(std::iter::once("raven-node").chain(argv.iter().copied())).unwrap();
    let c = match (&cli.command, argv.first().copied()) {
        (Command::Run(c), Some("run")) | (Command::Cleanup(c), Some("cleanup")) => c,
        (other, sub) => panic!("{sub:?} expected, got {other:?}"),
    };
    config(c)
}
