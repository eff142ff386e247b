//! Address conflicts: which remote subnets must never be routed, and which local subnets
//! overlap each other.
//!
//! Node IPs (and sometimes pod CIDRs) of different domains overlap in real edge clusters: every
//! edge site uses 192.168.1.0/24. An address must belong to exactly one place, so a remote
//! subnet is excluded when it overlaps
//! - anything local: a subnet or the private IP of a node of the local domain (routing the
//!   latter into raven0 would swallow raven0's own VXLAN packets), a reserved range, a range
//!   the daemon protects (host networks, service CIDR);
//! - the public IP of a gateway we send tunnel packets to (the tunnel's own packets would loop);
//! - a subnet of another remote domain (the address would belong to two domains; both lose).
//!
//! Two subnets of different nodes of the local domain that overlap get no return route on the
//! gateway (which node would it go to?).
//!
//! Complexity: CIDR prefixes are laminar (two are disjoint or nested), so after one sort every
//! prefix's overlapping set is its chain of ancestors (at most 33 distinct lengths) plus its
//! descendants, which see it as an ancestor. One sweep with a stack of ancestors finds every
//! conflict in O(n log n); identical prefixes are grouped and summarised so that even thousands
//! of copies of one prefix stay linear.

use super::prefix::V4Prefix;

/// Who an address range belongs to. The order matters only for messages: when one prefix has
/// several owners, the first one in this order is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    /// The private IP of a local node (index into the local domain's nodes).
    LocalNode { node: u32 },
    /// A subnet of a local node.
    LocalSubnet { node: u32 },
    /// [`super::Options::protected_prefixes`] entry.
    Protected,
    /// A reserved range.
    Reserved,
    /// The public IP of a gateway (domain index).
    PublicIp { domain: u32 },
    /// A subnet of a remote node.
    Remote { domain: u32, node: u32 },
}

/// One range with its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub prefix: V4Prefix,
    pub owner: Owner,
}

/// Up to two distinct owners of a kind within a group of identical prefixes: enough to tell
/// whether "another" one exists for any given entry.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// First entry that blocks remote subnets (anything local or a public IP).
    blocker: Option<usize>,
    /// Up to two remote entries of distinct domains: `(domain, entry)`.
    remotes: [Option<(u32, usize)>; 2],
    /// Up to two local-subnet entries of distinct nodes: `(node, entry)`.
    locals: [Option<(u32, usize)>; 2],
}

impl Summary {
    fn add(&mut self, index: usize, owner: Owner) {
        match owner {
            Owner::Remote { domain, .. } => add_distinct(&mut self.remotes, domain, index),
            Owner::LocalSubnet { node } => {
                self.blocker = self.blocker.or(Some(index));
                add_distinct(&mut self.locals, node, index);
            }
            Owner::LocalNode { .. }
            | Owner::Protected
            | Owner::Reserved
            | Owner::PublicIp { .. } => {
                self.blocker = self.blocker.or(Some(index));
            }
        }
    }

    /// The entry that `owner` conflicts with among the summarised ones, if any.
    fn conflict(&self, owner: Owner) -> Option<usize> {
        let other = |slots: &[Option<(u32, usize)>; 2], me: u32| {
            slots
                .iter()
                .flatten()
                .find(|(key, _)| *key != me)
                .map(|&(_, index)| index)
        };
        match owner {
            Owner::Remote { domain, .. } => self.blocker.or_else(|| other(&self.remotes, domain)),
            Owner::LocalSubnet { node } => other(&self.locals, node),
            _ => None,
        }
    }
}

fn add_distinct(slots: &mut [Option<(u32, usize)>; 2], key: u32, index: usize) {
    match slots {
        [None, _] => slots[0] = Some((key, index)),
        [Some((first, _)), None] if *first != key => slots[1] = Some((key, index)),
        _ => {}
    }
}

/// A run of identical prefixes in sorted order.
struct Group {
    prefix: V4Prefix,
    /// Range in the sorted order.
    start: usize,
    end: usize,
    summary: Summary,
}

/// For every entry: the index of an entry it conflicts with, if any. Only remote subnets
/// (excluded) and local subnets (overlapping another local node) ever get one.
pub(crate) fn resolve(entries: &[Entry]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| (entries[i].prefix, entries[i].owner, i));
    let mut hit: Vec<Option<usize>> = vec![None; entries.len()];
    let mut stack: Vec<Group> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let prefix = entries[order[start]].prefix;
        let mut end = start;
        let mut summary = Summary::default();
        while end < order.len() && entries[order[end]].prefix == prefix {
            summary.add(order[end], entries[order[end]].owner);
            end += 1;
        }
        let group = Group {
            prefix,
            start,
            end,
            summary,
        };
        while stack.last().is_some_and(|a| !a.prefix.contains(prefix)) {
            stack.pop();
        }
        mark(&order[start..end], &group.summary, entries, &mut hit);
        // Nearest ancestor first: the most specific counterpart makes the clearest message.
        for ancestor in stack.iter().rev() {
            mark(&order[start..end], &ancestor.summary, entries, &mut hit);
            mark(
                &order[ancestor.start..ancestor.end],
                &group.summary,
                entries,
                &mut hit,
            );
        }
        stack.push(group);
        start = end;
    }
    hit
}

/// Records, for each of `members` without a conflict yet, its conflict with `against`.
fn mark(members: &[usize], against: &Summary, entries: &[Entry], hit: &mut [Option<usize>]) {
    for &m in members {
        if hit[m].is_none() {
            hit[m] = against.conflict(entries[m].owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::prefix::parse_prefix;
    use super::*;

    fn e(prefix: &str, owner: Owner) -> Entry {
        Entry {
            prefix: parse_prefix(prefix).unwrap(),
            owner,
        }
    }

    fn remote(domain: u32) -> Owner {
        Owner::Remote { domain, node: 0 }
    }

    #[test]
    fn remote_overlapping_local_is_excluded_either_way_round() {
        let entries = [
            e("10.244.0.0/16", Owner::LocalSubnet { node: 0 }),
            e("10.244.5.0/24", remote(1)), // inside a local subnet
            e("10.0.0.0/8", remote(2)),    // contains a local subnet
            e("11.245.0.0/24", remote(3)), // elsewhere: fine
            e("192.168.1.10/32", Owner::LocalNode { node: 0 }),
            e("192.168.1.0/24", remote(4)), // contains a local node IP
        ];
        let hit = resolve(&entries);
        assert_eq!(hit, [None, Some(0), Some(0), None, None, Some(4)]);
    }

    #[test]
    fn remote_remote_overlap_excludes_both_but_not_within_one_domain() {
        let entries = [
            e("10.1.0.0/24", remote(1)),
            e("10.1.0.0/24", remote(2)),
            e("10.2.0.0/16", remote(3)),
            e("10.2.1.0/24", remote(3)), // same domain: no conflict
            e("10.3.0.0/16", remote(4)),
            e("10.3.7.0/24", remote(5)),
        ];
        let hit = resolve(&entries);
        assert_eq!(hit, [Some(1), Some(0), None, None, Some(5), Some(4)]);
    }

    #[test]
    fn local_overlaps_between_nodes() {
        let entries = [
            e("10.244.1.0/24", Owner::LocalSubnet { node: 1 }),
            e("10.244.1.0/25", Owner::LocalSubnet { node: 2 }),
            e("10.244.2.0/24", Owner::LocalSubnet { node: 3 }),
            e("10.244.2.0/25", Owner::LocalSubnet { node: 3 }),
        ];
        assert_eq!(resolve(&entries), [Some(1), Some(0), None, None]);
    }

    #[test]
    fn public_ips_block_and_many_copies_stay_linear() {
        let mut entries = vec![e("5.6.7.8/32", Owner::PublicIp { domain: 9 })];
        entries.push(e("5.6.0.0/16", remote(2)));
        // 20k copies of one prefix from one domain, plus one from another domain.
        for _ in 0..20_000 {
            entries.push(e("10.9.0.0/24", remote(7)));
        }
        entries.push(e("10.9.0.0/25", remote(8)));
        let hit = resolve(&entries);
        assert_eq!(hit[0], None);
        assert_eq!(hit[1], Some(0));
        assert!(hit[2..].iter().all(Option::is_some));
    }

    #[test]
    fn disjoint_siblings_do_not_conflict() {
        let entries = [
            e("10.0.0.0/8", Owner::Reserved),
            e("11.0.0.0/24", remote(1)),
            e("11.0.1.0/24", remote(2)),
            e("9.255.255.255/32", remote(3)),
        ];
        assert_eq!(resolve(&entries), [None, None, None, None]);
    }
}
