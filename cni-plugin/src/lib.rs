//! `raven-cni`: the chained CNI meta-plugin that gives pods routes toward other network domains.
//!
//! Placed after Flannel (and usually portmap) in a conflist. ADD installs, inside the pod's
//! namespace, one route per remote-domain prefix via the pod's gateway with the tunnel MTU, and
//! records the attachment so that DEL works without prevResult and raven-node can refresh every
//! pod when domains change. The library is also used by raven-node for that refresh.

pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod netlink;
pub mod netns;
pub mod record;
pub mod refresh;
pub mod result;
pub mod routes;
pub mod sync;
pub mod version;

use serde_json::json;

use crate::config::PluginConfig;
use crate::env::{Command, Env};
use crate::error::CniError;

/// What one invocation prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success; print this (possibly empty) text on stdout.
    Success(String),
    /// Failure; print the error JSON on stdout and exit non-zero.
    Failure(String),
}

/// Runs one invocation: parses the environment and stdin, dispatches, renders the output.
pub fn run(env: &Env, stdin: &[u8]) -> Outcome {
    let command = match env.command() {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(e.to_json(None)),
    };
    if command == Command::Version {
        return Outcome::Success(version_json(stdin));
    }
    let conf = match PluginConfig::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(e.to_json(config::requested_version(stdin).as_deref())),
    };
    let result = match command {
        Command::Add => commands::add::run(&conf, env).map(|v| v.to_string()),
        Command::Del => commands::del::run(&conf, env).map(|()| String::new()),
        Command::Check => commands::check::run(&conf, env).map(|()| String::new()),
        Command::Gc => commands::gc::run(&conf).map(|()| String::new()),
        Command::Status => commands::status::run(&conf).map(|()| String::new()),
        Command::Version => unreachable_version(),
    };
    match result {
        Ok(out) => Outcome::Success(out),
        Err(e) => Outcome::Failure(e.to_json(Some(&conf.raw_version))),
    }
}

fn unreachable_version() -> Result<String, CniError> {
    Err(CniError::new(
        error::code::INVALID_ENV,
        "VERSION handled earlier",
        "",
    ))
}

/// VERSION: echoes the requested version (the spec says so; Go's skel does not) when valid.
fn version_json(stdin: &[u8]) -> String {
    let requested = config::requested_version(stdin).unwrap_or_else(|| "1.1.0".into());
    json!({"cniVersion": requested, "supportedVersions": version::SUPPORTED}).to_string()
}
