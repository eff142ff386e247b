//! Serde and schema helpers that reproduce Go `encoding/json` behaviour.
//!
//! Go writes a nil slice or map without `omitempty` as `null`, and an `int` as a JSON integer
//! with no size. These helpers read `null` as empty and describe Go ints the way controller-gen
//! does (`type: integer`, no `format`), so the generated CRD matches OpenYurt's.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// Reads `null` (Go's nil slice/map) as the empty value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `omitempty` for Go ints.
pub(crate) fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `omitempty` for Go bools.
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// Schema of a Go `int`: controller-gen emits `type: integer` without a format.
pub(crate) fn go_int(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}
