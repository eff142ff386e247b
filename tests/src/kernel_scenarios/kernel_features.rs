//! The VM's kernel has what the kernel drivers need: a `wireguard` link, an `xfrm` interface
//! and an ESP state with AES-GCM in UDP encapsulation can be created (in a scratch namespace),
//! and the host kernel's missing features do not leak into the guest.

use super::{Ctx, Scenario};
use crate::error::Result;
use crate::netns::Netns;

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
    ns.ip(&[
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "spi",
        "0x100",
        "reqid",
        "1",
        "mode",
        "tunnel",
        "aead",
        "rfc4106(gcm(aes))",
        "0x0102030405060708090a0b0c0d0e0f1011121314",
        "128",
        "encap",
        "espinudp",
        "4500",
        "4500",
        "0.0.0.0",
    ])?;
    Ok(())
}
