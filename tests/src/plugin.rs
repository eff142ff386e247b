//! Executing a CNI plugin binary directly, the way a runtime's exec layer does.
//!
//! Used where libcni would get in the way: the benchmark (time one plugin, not a chain) and
//! tests of the raw stdin/stdout contract (VERSION, undecodable input, unsupported versions).

use std::path::Path;
use std::process::Command;

use crate::cmd::{self, Output};
use crate::error::Result;

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct CniCall<'a> {
    /// `CNI_COMMAND`.
    pub command: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS`.
    pub args: &'a str,
    /// `CNI_PATH`.
    pub path: &'a str,
}

impl CniCall<'_> {
    /// A `Command` for `plugin` with a clean environment holding only the CNI variables.
    pub fn command(&self, plugin: &Path) -> Command {
        let mut c = Command::new(plugin);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_ARGS", self.args)
            .env("CNI_PATH", self.path);
        c
    }

    /// Runs `plugin` with `stdin`; the output whatever the exit status.
    pub fn run(&self, plugin: &Path, stdin: &[u8]) -> Result<Output> {
        cmd::run_command(self.command(plugin), Some(stdin))
    }
}
