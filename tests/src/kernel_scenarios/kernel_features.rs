//! The VM's kernel has what the kernel drivers need: a `wireguard` link, an `xfrm` interface
//! and an ESP state with AES-GCM in UDP encapsulation can be created (in a scratch namespace),
//! and the host kernel's missing features do not leak into the guest.

use super::{Ctx, Scenario};
use crate::error::Result;
use crate::netns::Netns;
use crate::xfrm::{self, argv};

/// Registration.
pub const SCENARIO: Scenario = Scenario {
    name: "kernel-features",
    about: "wireguard link, xfrm interface and an ESP-in-UDP AES-GCM state can be created",
    run,
};

fn run(_ctx: &mut Ctx) -> Result<()> {
    let ns = Netns::new("kfeat")?;
    ns.ip(&["link", "add", "wg-probe", "type", "wireguard"])?;
    ns.ip(&["link", "add", "xfrm-probe", "type", "xfrm", "if_id", "7"])?;
    ns.ip(&argv(&xfrm::state_add(
        "192.0.2.1",
        "192.0.2.2",
        0x100,
        1,
        None,
        true,
    )))?;
    Ok(())
}
