//! Namespace and link plumbing: `ip`/`sysctl` in a namespace, veth pairs, bridge switches.

use crate::cmd;
use crate::error::Result;
use crate::netns::Netns;

/// `ip <args>` in `ns`.
pub(super) fn ip(ns: &Netns, args: &[&str]) -> Result<()> {
    ns.ip(args).map(|_| ())
}

/// Sets sysctl `kv` (`key=value`) in `ns`.
pub(super) fn sysctl(ns: &Netns, kv: &str) -> Result<()> {
    ns.exec(&["sysctl", "-q", "-w", kv]).map(|_| ())
}

/// Connects `a:a_if` with `b:b_if` by a veth pair.
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    cmd::run_ok(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .map(|_| ())
}

/// A switch namespace with bridge `br0`.
pub(super) fn switch(tag: &str) -> Result<Netns> {
    let ns = Netns::new(tag)?;
    ip(&ns, &["link", "add", "br0", "type", "bridge"])?;
    ip(&ns, &["link", "set", "br0", "up"])?;
    Ok(ns)
}

/// Plugs `ns:ifname` into switch `sw` (port `port`), with `addr`, up.
pub(super) fn plug(sw: &Netns, port: &str, ns: &Netns, ifname: &str, addr: &str) -> Result<()> {
    veth(ns, ifname, sw, port)?;
    ip(sw, &["link", "set", port, "master", "br0", "up"])?;
    ip(ns, &["addr", "add", addr, "dev", ifname])?;
    ip(ns, &["link", "set", ifname, "up"])
}
