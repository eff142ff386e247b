//! The automatic tunnel driver choice: `raven-node run --tunnel-driver auto` in a fresh
//! namespace reports the driver it picked in `/metrics`; it must be the kernel's WireGuard
//! exactly when the kernel can create a `wireguard` link. In the VM that is
//! `wireguard-kernel`; on the CI host (no WireGuard module) `tests/tests/driver_choice.rs`
//! expects `wireguard-userspace` through the same helper.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Ctx, Scenario};
use crate::error::{Context, Error, Result};
use crate::netns::Netns;

/// Registration.
pub const SCENARIO: Scenario = Scenario {
    name: "wg-kernel-driver-auto",
    about: "--tunnel-driver auto picks wireguard-kernel on a kernel with WireGuard",
    run,
};

fn run(_ctx: &mut Ctx) -> Result<()> {
    let choice = observe_auto_choice()?;
    if !choice.kernel_has_wireguard {
        return Err(Error::new(
            "this kernel cannot create a wireguard link; the VM should have the module loaded",
        ));
    }
    if choice.driver != "wireguard-kernel" {
        return Err(Error::new(format!(
            "auto picked {} on a kernel with WireGuard",
            choice.driver
        )));
    }
    Ok(())
}

/// What `auto` picked and what the kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoChoice {
    /// The `driver` label of `raven_node_tunnel_driver_info`.
    pub driver: String,
    /// Whether `ip link add type wireguard` works here.
    pub kernel_has_wireguard: bool,
}

/// Starts `raven-node run --tunnel-driver auto` in a scratch namespace with an empty Gateway
/// directory, reads its driver metric, stops it, and probes the kernel independently.
pub fn observe_auto_choice() -> Result<AutoChoice> {
    crate::require::check_root()?;
    let raven_node = crate::lab::find_raven_node()?;
    let ns = Netns::new("auto")?;
    let kernel_has_wireguard = ns
        .ip(&["link", "add", "wg-probe", "type", "wireguard"])
        .is_ok();
    let _ = ns.ip(&["link", "del", "wg-probe"]);
    let dir = tempfile::tempdir().context(|| "temp dir".to_string())?;
    std::fs::create_dir_all(dir.path().join("gateways")).context(|| "mkdir".to_string())?;
    let log = std::fs::File::create(dir.path().join("log")).context(|| "log".to_string())?;
    let err = log.try_clone().context(|| "log".to_string())?;
    let mut child = ns
        .command(
            &crate::lab::run_args(&raven_node, "auto-probe", dir.path(), "cni")
                .iter()
                .map(String::as_str)
                .chain(["--underlay-mtu", "1500", "--tunnel-driver", "auto"])
                .collect::<Vec<_>>(),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .context(|| "starting raven-node".to_string())?;
    let start = Instant::now();
    let mut driver = None;
    while start.elapsed() < Duration::from_secs(30) && driver.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let out = ns.exec_output(&["curl", "-s", "-m", "2", "http://127.0.0.1:10265/metrics"])?;
        driver = out
            .stdout
            .lines()
            .find(|l| l.starts_with("raven_node_tunnel_driver_info{") && l.ends_with(" 1"))
            .and_then(|l| l.split("driver=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
    }
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let driver = driver.ok_or_else(|| {
        Error::new(format!(
            "raven-node never reported raven_node_tunnel_driver_info; its log:\n{log}"
        ))
    })?;
    if !log.contains("tunnel driver chosen") {
        return Err(Error::new(format!("the choice is not in the log:\n{log}")));
    }
    // Cleanup of what the probe daemon may have created (nothing without Gateways).
    Ok(AutoChoice {
        driver,
        kernel_has_wireguard,
    })
}
