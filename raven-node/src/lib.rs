//! `raven-node` library: the parts of the node daemon that are pure and unit-testable.
//!
//! [`plan`] turns all Gateway objects plus "I am node N" into the exact network state node N
//! must have. The daemon (issue 4) observes the kernel, plans, and applies the difference.

pub mod plan;
pub mod tunnel;
