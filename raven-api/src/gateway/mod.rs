//! The `gateways.raven.openyurt.io` custom resource, wire-compatible with OpenYurt.
//!
//! - [`v1beta1`]: the storage (hub) version that controllers and agents use.
//! - [`v1alpha1`]: the older served version; [`conversion`] maps it to and from the hub without
//!   losing data.
//! - [`defaults`] and [`validation`]: the admission rules (upstream's webhook rules plus the
//!   checks upstream forgets).
//! - [`crd`]: the merged two-version CustomResourceDefinition written by the `crdgen` binary.
//!
//! Field types follow Go's encoding, not Rust taste: Go `int` is `i64` (so that any object the
//! API server accepts deserializes, and validation, not parsing, rejects nonsense), strings
//! that upstream leaves unchecked (`publicIP`, `natType`, `subnets`) stay strings, and
//! `omitempty` is mirrored field by field so that what we write reads back identically in Go.

pub mod conversion;
pub mod crd;
pub mod defaults;
mod enums;
mod root;
mod serde_util;
pub mod v1alpha1;
pub mod v1beta1;
pub mod validation;

pub use enums::{EndpointType, ExposeType};
