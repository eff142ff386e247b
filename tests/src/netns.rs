//! Named network namespaces (`ip netns`) that delete themselves.
//!
//! Names carry the process id and a per-process counter so tests running in parallel, in one
//! process or several, never collide. The namespace is removed on drop; a test that wants to
//! simulate "the runtime already deleted the netns" calls [`Netns::delete`] and keeps the path.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cmd::{self, Output};
use crate::error::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Directory where `ip netns` bind-mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace owned by this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `rvt-<tag>-<pid>-<n>` with its loopback up.
    pub fn new(tag: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("rvt-{tag}-{}-{n}", std::process::id());
        cmd::run_ok(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        cmd::run_ok(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name, as `ip -n` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, as `CNI_NETNS` takes it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// The path as a string (netns names are ASCII).
    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// Whether the namespace still exists.
    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// A `Command` that runs argv inside the namespace (`ip netns exec`).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// Runs argv inside the namespace; returns the output whatever the exit status.
    pub fn exec_output(&self, argv: &[&str]) -> Result<Output> {
        cmd::run_command(self.command(argv), None)
    }

    /// Runs argv inside the namespace and requires success; returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        Ok(self.exec_output(argv)?.into_ok()?.stdout)
    }

    /// Runs `ip -n <ns> <args>` and requires success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["ip", "-n", self.name.as_str()];
        argv.extend_from_slice(args);
        cmd::run_ok(&argv)
    }

    /// Runs `f` on a new thread that entered this namespace, so the sockets `f` opens (netlink
    /// included) live in it; a panic in `f` propagates to the caller.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        use std::os::fd::AsRawFd;
        let path = self.path();
        let handle = std::thread::spawn(move || -> Result<T> {
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::new(format!("opening {}: {e}", path.display())))?;
            // SAFETY: setns(2) on a valid namespace fd, for this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(Error::new(format!("setns {}: {e}", path.display())));
            }
            Ok(f())
        });
        handle
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Deletes the namespace now (idempotent); the value keeps its name and path.
    pub fn delete(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        cmd::run_ok(&["ip", "netns", "del", &self.name]).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!(
                "cleanup: {}",
                Error::new(format!("netns {}: {e}", self.name))
            );
        }
    }
}
