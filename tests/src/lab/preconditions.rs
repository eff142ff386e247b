//! What the lab needs on this machine (root, tools, the binaries under test, TUN) and where
//! the `raven-node` binary is.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{paths, require};

/// Checks everything the lab needs; the error names the missing piece and the fix.
pub fn check_preconditions() -> Result<()> {
    require::check_root()?;
    for tool in ["ip", "nft", "sysctl"] {
        require::check_tool(tool)?;
    }
    require::check_debian_cni_plugins()?;
    paths::find_cnitool()?;
    paths::find_raven_cni()?;
    find_raven_node()?;
    if !Path::new("/dev/net/tun").exists() {
        return Err(Error::new(
            "/dev/net/tun is missing: the userspace WireGuard driver needs TUN",
        ));
    }
    Ok(())
}

/// The `raven-node` binary: `RAVEN_NODE_BIN`, else the newer of the release and debug builds.
pub fn find_raven_node() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAVEN_NODE_BIN") {
        let p = PathBuf::from(p);
        return if require::is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::new(format!(
                "RAVEN_NODE_BIN={} is not executable",
                p.display()
            )))
        };
    }
    let candidates =
        ["release", "debug"].map(|profile| paths::target_dir().join(profile).join("raven-node"));
    candidates
        .iter()
        .filter(|p| require::is_executable(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .cloned()
        .ok_or_else(|| {
            Error::new(format!(
                "{} is missing: build it with `cargo build -p raven-node` (or set RAVEN_NODE_BIN)",
                candidates[1].display()
            ))
        })
}
