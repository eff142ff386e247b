//! `raven-node`: the per-node daemon (DaemonSet, or a plain process in standalone mode).
//!
//! `raven-node run` reconciles the node from Gateway objects and publishes the node state read
//! by `raven-cni`; `raven-node cleanup` removes everything Raven owns on the node. Every flag
//! has an environment variable so a DaemonSet can configure it without a command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Logs to stderr through `filter` (tracing env-filter syntax; an invalid one falls back to
/// `info`), in colour only on a terminal.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    raven_node::memory::tune_allocator();
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Run(c) | Command::Cleanup(c) => c,
        Command::InstallCni(args) => return cli::cni::install(args),
        Command::Status { addr, output } => return cli::status::show(*addr, *output),
        Command::UninstallCni { cni, remove_binary } => {
            return cli::cni::uninstall(cni, *remove_binary);
        }
        Command::PublicKey { state_dir } => {
            return match raven_node::daemon::drivers::public_key(state_dir) {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raven-node: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    init_logging(&common.log);
    let config = match cli::config(common) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raven-node: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(_) => raven_node::daemon::run(config),
        Command::Cleanup(_) => raven_node::daemon::cleanup(&config),
        Command::PublicKey { .. }
        | Command::InstallCni(_)
        | Command::UninstallCni { .. }
        | Command::Status { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
