//! Preconditions of kernel-level tests: root, tools, binaries.
//!
//! A test that cannot run must fail and say why (team rule: no silent skip). `check_*` return
//! an error naming the missing piece and the command that provides it (for the demo and the
//! benchmark); `require_*` panic with the same message (for tests).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Debian reference CNI plugins (package `containernetworking-plugins`).
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// How to get everything the tests need on a fresh machine.
pub const SETUP_HINT: &str = "run the test suite with `sudo tests/run.sh` (it installs the Debian \
packages and builds the binaries)";

/// Fails unless the process runs as root (network namespaces, routes, bridges need it).
pub fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Ok(());
    }
    Err(Error::new(format!(
        "root is required (network namespaces, bridges and routes); effective uid is {euid}; \
         {SETUP_HINT}"
    )))
}

/// Panicking form of [`check_root`] for tests.
#[track_caller]
pub fn require_root() {
    check_root().unwrap_or_else(|e| panic!("{e}"));
}

/// The Debian package that provides a tool, for the panic message.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "ip" => "iproute2",
        "nft" => "nftables",
        "iptables" => "iptables",
        "go" => "golang-go",
        "iperf3" => "iperf3",
        "hyperfine" => "hyperfine",
        "tcpdump" => "tcpdump",
        "time" => "time",
        _ => "(unknown package)",
    }
}

/// Finds an executable on PATH or in the sbin directories root tools live in.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

/// Fails unless `tool` is installed; returns its path.
pub fn check_tool(tool: &str) -> Result<PathBuf> {
    find_tool(tool).ok_or_else(|| {
        Error::new(format!(
            "required tool `{tool}` is not installed (Debian package {}); {SETUP_HINT}",
            package_of(tool)
        ))
    })
}

/// Panicking form of [`check_tool`] for tests.
#[track_caller]
pub fn require_tool(tool: &str) -> PathBuf {
    check_tool(tool).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails unless Debian's reference plugins needed by the Flannel-equivalent chain exist.
pub fn check_debian_cni_plugins() -> Result<()> {
    for plugin in ["bridge", "host-local", "portmap"] {
        let p = Path::new(DEBIAN_CNI_DIR).join(plugin);
        if !is_executable(&p) {
            return Err(Error::new(format!(
                "{} is missing (Debian package containernetworking-plugins); {SETUP_HINT}",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Panicking form of [`check_debian_cni_plugins`] for tests.
#[track_caller]
pub fn require_debian_cni_plugins() {
    check_debian_cni_plugins().unwrap_or_else(|e| panic!("{e}"));
}

/// Whether `p` is a regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("raven-no-such-tool").is_none());
    }

    #[test]
    #[should_panic(expected = "raven-no-such-tool")]
    fn missing_tool_panics_with_name() {
        require_tool("raven-no-such-tool");
    }
}
