//! Policy rules that steer traffic into Raven's tables, without iptables, ipset or tc marks.
//!
//! Upstream marks packets (mangle + ipset, `fwmark 0x40`), which Calico's mangle ACCEPT rules
//! bypass (raven#136), which overwrites other components' mark bits, and which needs a tc
//! filter on raven0 to clear the mark so the VXLAN packet does not loop. We steer by the only
//! two facts that matter, and keep the tables exact so a lookup that misses falls through:
//!
//! | role    | priority | rule                              | table contents                           |
//! |---------|----------|-----------------------------------|------------------------------------------|
//! | member  | 9027     | `from all lookup 9027`            | routed remote prefixes via gateway VTEP  |
//! | gateway | 9026     | `iif <tunnel dev> lookup 9027`    | member subnets via member VTEP           |
//! | gateway | 9027     | `from all lookup 9028`            | routed remote prefixes dev `<tunnel>`   |
//! | solo    | 9027     | `from all lookup 9028`            | routed remote prefixes dev `<tunnel>`   |
//!
//! Priorities 9026–9027 are ours: after the local table (0) and the low-numbered rules CNIs
//! install (Calico 99, Cilium 9–100), before main (32766). The loop-freedom argument is in the
//! [`crate::plan`] module documentation.

/// Priority of the gateway's return-path rule (`iif <tunnel> lookup 9027`).
pub const RULE_PRIORITY_FROM_TUNNEL: u32 = 9026;
/// Priority of the rule that sends traffic for remote prefixes to Raven's table.
pub const RULE_PRIORITY_TO_REMOTE: u32 = 9027;

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// `from all`: every packet (the table holds only remote prefixes, so others fall through).
    All,
    /// `iif <device>`: packets that came out of the tunnel (decrypted traffic from other
    /// domains).
    IncomingInterface(String),
}

/// One IPv4 policy rule: `<priority>: <selector> lookup <table>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// Rule priority.
    pub priority: u32,
    /// Match.
    pub selector: Selector,
    /// Table looked up on a match.
    pub table: u32,
}
