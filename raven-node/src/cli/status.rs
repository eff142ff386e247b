//! `status`: asks the running daemon for its report and prints it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use raven_node::daemon::status;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table for people.
    Table,
    /// The daemon's JSON report.
    Json,
}

/// `status`: fetch, print, exit by health.
pub(crate) fn show(addr: SocketAddr, output: OutputFormat) -> ExitCode {
    // The DaemonSet's RAVEN_METRICS_ADDR is a listen address (0.0.0.0): ask loopback then.
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let report = match status::fetch(addr, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raven-node: {e}");
            return ExitCode::from(2);
        }
    };
    match output {
        OutputFormat::Table => print!("{}", status::render_table(&report)),
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("raven-node: encoding the report: {e}");
                return ExitCode::from(2);
            }
        },
    }
    if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
