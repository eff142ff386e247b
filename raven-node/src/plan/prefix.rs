//! IPv4 prefix arithmetic for the planner: strict parsing, containment and exact merging.
//!
//! The data plane routes IPv4 only (raven0's VTEP scheme and upstream Raven are IPv4-only), so
//! prefixes are kept as `(network address as u32, length)` pairs: cheap to copy, totally ordered
//! and free of host bits by construction. Two CIDR prefixes are either disjoint or one contains
//! the other; [`crate::plan::conflicts`] relies on that.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

/// An IPv4 prefix without host bits. Ordered by network address, then by length, so that a
/// prefix sorts before every prefix it contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct V4Prefix {
    addr: u32,
    len: u8,
}

/// Why a string from a Gateway object is not a usable prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrefixProblem {
    /// The empty string (upstream's controller writes `[""]` for nodes without a podCIDR).
    Empty,
    /// Not `address/length`.
    Unparsable,
    /// Bits set after the prefix length, e.g. `10.244.1.5/24`.
    HostBitsSet,
    /// A valid IPv6 prefix; the tunnel data plane routes IPv4 only.
    Ipv6NotSupported,
}

impl fmt::Display for PrefixProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty",
            Self::Unparsable => "not an address/length CIDR",
            Self::HostBitsSet => "host bits set",
            Self::Ipv6NotSupported => "IPv6 is not routed by the tunnel",
        })
    }
}

impl V4Prefix {
    /// The prefix `addr/len`; `None` when `len > 32` or host bits are set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        let addr = u32::from(addr);
        (len <= 32 && addr & !mask(len) == 0).then_some(Self { addr, len })
    }

    /// The `/32` of one address.
    pub fn host(addr: Ipv4Addr) -> Self {
        Self {
            addr: u32::from(addr),
            len: 32,
        }
    }

    /// Network address.
    pub fn addr(self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    /// Prefix length.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// First address as an integer.
    pub fn first(self) -> u32 {
        self.addr
    }

    /// Last address as an integer.
    pub fn last(self) -> u32 {
        self.addr | !mask(self.len)
    }

    /// Whether `other` lies entirely inside `self` (a prefix contains itself).
    pub fn contains(self, other: V4Prefix) -> bool {
        self.len <= other.len && other.addr & mask(self.len) == self.addr
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(self, other: V4Prefix) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The prefix one bit shorter that contains `self`, if `self` is the lower half of it and
    /// `other` the upper half: the two can then be replaced by that parent.
    fn merge_with(self, upper: V4Prefix) -> Option<V4Prefix> {
        if self.len != upper.len || self.len == 0 {
            return None;
        }
        let bit = 1u32 << (32 - u32::from(self.len));
        (self.addr & bit == 0 && upper.addr == self.addr | bit).then(|| V4Prefix {
            addr: self.addr,
            len: self.len - 1,
        })
    }

    /// As an `ipnetwork` value for the output types.
    pub fn to_network(self) -> IpNetwork {
        IpNetwork::V4(
            Ipv4Network::new(self.addr(), self.len)
                .expect("V4Prefix keeps len <= 32 by construction"),
        )
    }
}

impl fmt::Display for V4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Parses a CIDR exactly as the data plane needs it: `a.b.c.d/len`, no host bits. Surrounding
/// whitespace is tolerated (hand-written Gateway files); a bare address is not a prefix.
pub fn parse_prefix(text: &str) -> Result<V4Prefix, PrefixProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PrefixProblem::Empty);
    }
    let (addr, len) = text.split_once('/').ok_or(PrefixProblem::Unparsable)?;
    let len: u8 = len.parse().map_err(|_| PrefixProblem::Unparsable)?;
    match addr
        .parse::<IpAddr>()
        .map_err(|_| PrefixProblem::Unparsable)?
    {
        IpAddr::V4(v4) if len <= 32 => V4Prefix::new(v4, len).ok_or(PrefixProblem::HostBitsSet),
        IpAddr::V6(_) if len <= 128 => Err(PrefixProblem::Ipv6NotSupported),
        _ => Err(PrefixProblem::Unparsable),
    }
}

/// Converts an `ipnetwork` value (from [`crate::plan::Options`]); `None` for IPv6, which never
/// conflicts with the IPv4-only routes. Host bits are masked off: a protected range given as
/// `10.0.0.1/8` protects `10.0.0.0/8`.
pub fn from_network(net: IpNetwork) -> Option<V4Prefix> {
    match net {
        IpNetwork::V4(v4) => V4Prefix::new(v4.network(), v4.prefix()),
        IpNetwork::V6(_) => None,
    }
}

/// The smallest list of prefixes covering exactly the union of `prefixes`, sorted. This is the
/// unique minimal CIDR decomposition of the union, hence the same set upstream's `MergeCIDRs`
/// yields; IKE traffic selectors built from it match an upstream peer's.
pub fn merge(mut prefixes: Vec<V4Prefix>) -> Vec<V4Prefix> {
    prefixes.sort_unstable();
    let mut out: Vec<V4Prefix> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        // Sorted by (address, length): anything overlapping an earlier prefix is inside the last
        // one kept, because kept prefixes are disjoint and ascending.
        if out.last().is_some_and(|last| last.contains(p)) {
            continue;
        }
        out.push(p);
        while out.len() >= 2 {
            let (lower, upper) = (out[out.len() - 2], out[out.len() - 1]);
            match lower.merge_with(upper) {
                Some(parent) => {
                    out.truncate(out.len() - 2);
                    out.push(parent);
                }
                None => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> V4Prefix {
        parse_prefix(s).unwrap()
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(p("10.244.1.0/24").to_string(), "10.244.1.0/24");
        assert_eq!(p(" 0.0.0.0/0 ").prefix_len(), 0);
        let bad: &[(&str, PrefixProblem)] = &[
            ("", PrefixProblem::Empty),
            ("   ", PrefixProblem::Empty),
            ("10.244.1.0", PrefixProblem::Unparsable),
            ("10.244.1.0/33", PrefixProblem::Unparsable),
            ("10.244.1.0/-1", PrefixProblem::Unparsable),
            ("10.244.1/24", PrefixProblem::Unparsable),
            ("garbage/24", PrefixProblem::Unparsable),
            ("10.244.1.5/24", PrefixProblem::HostBitsSet),
            ("fd00::/64", PrefixProblem::Ipv6NotSupported),
            ("fd00::/129", PrefixProblem::Unparsable),
        ];
        for (text, problem) in bad {
            assert_eq!(parse_prefix(text), Err(*problem), "{text:?}");
        }
    }

    #[test]
    fn containment_and_overlap() {
        assert!(p("10.0.0.0/8").contains(p("10.1.0.0/16")));
        assert!(!p("10.1.0.0/16").contains(p("10.0.0.0/8")));
        assert!(p("10.1.0.0/16").overlaps(p("10.0.0.0/8")));
        assert!(!p("10.1.0.0/16").overlaps(p("10.2.0.0/16")));
        assert!(p("0.0.0.0/0").contains(p("255.255.255.255/32")));
        assert_eq!(
            p("10.0.0.0/8").last(),
            u32::from(Ipv4Addr::new(10, 255, 255, 255))
        );
    }

    #[test]
    fn merges_exactly() {
        let merged = merge(vec![
            p("10.244.1.0/24"),
            p("10.244.0.0/24"),
            p("10.244.3.0/24"),
            p("10.244.2.0/24"),
            p("10.244.2.128/25"),
            p("10.245.0.0/24"),
            p("10.244.0.0/24"),
        ]);
        let text: Vec<_> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["10.244.0.0/22", "10.245.0.0/24"]);
        // Not siblings: 10.244.1.0/24 and 10.244.2.0/24 must stay apart.
        let text: Vec<_> = merge(vec![p("10.244.1.0/24"), p("10.244.2.0/24")])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text, ["10.244.1.0/24", "10.244.2.0/24"]);
        assert!(merge(Vec::new()).is_empty());
    }

    #[test]
    fn merge_covers_exactly_the_union() {
        // Exhaustive check over a small universe: the /28s of 10.0.0.0/24 and a few bigger
        // blocks, against a bitmap of the addresses covered.
        let inputs = [
            "10.0.0.0/28",
            "10.0.0.16/28",
            "10.0.0.48/28",
            "10.0.0.64/26",
            "10.0.0.128/27",
            "10.0.0.160/27",
            "10.0.0.192/28",
        ];
        let prefixes: Vec<_> = inputs.iter().map(|s| p(s)).collect();
        let merged = merge(prefixes.clone());
        for host in 0..=255u8 {
            let a = V4Prefix::host(Ipv4Addr::new(10, 0, 0, host));
            let before = prefixes.iter().any(|q| q.contains(a));
            let after = merged.iter().filter(|q| q.contains(a)).count();
            assert_eq!(usize::from(before), after, "address .{host}");
        }
        assert_eq!(merged.len(), 5, "{merged:?}");
    }
}
