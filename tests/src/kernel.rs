//! Reading kernel state as JSON (`ip -j`), parsed into small typed views.
//!
//! `-N` keeps route protocols numeric, so our protocol number reads the same whatever
//! `/etc/iproute2/rt_protos` says. Unknown fields are ignored; absent ones become `None`.

use serde::Deserialize;

use crate::cmd;
use crate::error::{Context, Result};
use crate::netns::Netns;

/// One route as `ip -N -j route show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// Destination prefix, or `default`.
    pub dst: String,
    /// Next hop, if any.
    pub gateway: Option<String>,
    /// Output device.
    pub dev: Option<String>,
    /// Route protocol as a decimal string; absent for `boot` (3).
    pub protocol: Option<String>,
    /// Scope as a decimal string; absent for universe.
    pub scope: Option<String>,
    /// Route metrics such as mtu and advmss.
    #[serde(default)]
    pub metrics: Vec<RouteMetrics>,
}

/// The metrics object of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteMetrics {
    /// Path MTU carried on the route.
    pub mtu: Option<u32>,
    /// Advertised MSS carried on the route.
    pub advmss: Option<u32>,
}

impl Route {
    /// The route protocol number (3 = boot when absent, as iproute2 omits it).
    pub fn protocol_number(&self) -> Option<u32> {
        match &self.protocol {
            Some(p) => p.parse().ok(),
            None => Some(3),
        }
    }

    /// The route's mtu metric.
    pub fn mtu(&self) -> Option<u32> {
        self.metrics.iter().find_map(|m| m.mtu)
    }

    /// The route's advmss metric.
    pub fn advmss(&self) -> Option<u32> {
        self.metrics.iter().find_map(|m| m.advmss)
    }
}

/// One link as `ip -d -j link show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub ifname: String,
    /// MTU.
    pub mtu: u32,
    /// Bridge or bond the link is enslaved to.
    pub master: Option<String>,
    /// Link details (kind).
    pub linkinfo: Option<LinkInfo>,
}

/// The `linkinfo` object of a link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkInfo {
    /// Link kind: `veth`, `bridge`, ...
    pub info_kind: Option<String>,
}

impl Link {
    /// The link kind, if the kernel reported one.
    pub fn kind(&self) -> Option<&str> {
        self.linkinfo.as_ref()?.info_kind.as_deref()
    }
}

/// Parses `ip -j route` output.
pub fn parse_routes(json: &str) -> Result<Vec<Route>> {
    parse_array(json).context(|| "parsing `ip -j route` output".to_string())
}

/// Parses `ip -j link` output.
pub fn parse_links(json: &str) -> Result<Vec<Link>> {
    parse_array(json).context(|| "parsing `ip -j link` output".to_string())
}

/// iproute2 prints nothing at all (not `[]`) for some empty dumps.
fn parse_array<T: for<'de> Deserialize<'de>>(json: &str) -> serde_json::Result<Vec<T>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json)
}

/// Routes of one family (`"-4"` or `"-6"`) in the main table of `ns`.
pub fn routes(ns: &Netns, family: &str) -> Result<Vec<Route>> {
    let out = cmd::run_ok(&[
        "ip",
        "-N",
        "-j",
        family,
        "-n",
        ns.name(),
        "route",
        "show",
        "table",
        "main",
    ])?;
    parse_routes(&out)
}

/// Links of `ns` with details.
pub fn links(ns: &Netns) -> Result<Vec<Link>> {
    let out = cmd::run_ok(&["ip", "-d", "-j", "-n", ns.name(), "link", "show"])?;
    parse_links(&out)
}

/// Names of the veth links in `ns`.
pub fn veths(ns: &Netns) -> Result<Vec<String>> {
    Ok(links(ns)?
        .into_iter()
        .filter(|l| l.kind() == Some("veth"))
        .map(|l| l.ifname)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_with_metrics_and_protocol() {
        let json = r#"[{"dst":"10.244.1.0/24","dev":"d0","protocol":"2","scope":"253",
            "prefsrc":"10.244.1.2","flags":[]},
            {"dst":"10.245.0.0/24","gateway":"10.244.1.1","dev":"d0","protocol":"82","flags":[],
            "metrics":[{"mtu":1400,"advmss":1360}]},
            {"dst":"default","gateway":"10.244.1.1","dev":"d0","flags":[]}]"#;
        let routes = parse_routes(json).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[1].protocol_number(), Some(82));
        assert_eq!(routes[1].mtu(), Some(1400));
        assert_eq!(routes[1].advmss(), Some(1360));
        assert_eq!(routes[1].gateway.as_deref(), Some("10.244.1.1"));
        assert_eq!(routes[0].mtu(), None);
        assert_eq!(routes[2].protocol_number(), Some(3));
    }

    #[test]
    fn parses_links_and_kinds() {
        let json = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"flags":[]},
            {"ifindex":3,"ifname":"veth1","mtu":1450,"master":"cni0",
             "linkinfo":{"info_kind":"veth"}}]"#;
        let links = parse_links(json).unwrap();
        assert_eq!(links[0].kind(), None);
        assert_eq!(links[1].kind(), Some("veth"));
        assert_eq!(links[1].master.as_deref(), Some("cni0"));
    }

    #[test]
    fn empty_output_is_empty_list_and_garbage_is_error() {
        assert!(parse_routes("").unwrap().is_empty());
        assert!(parse_routes("not json").is_err());
    }
}
