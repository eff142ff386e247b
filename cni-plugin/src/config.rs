//! The network configuration on stdin: the runtime's keys, ours, and nothing else.
//!
//! Keys the spec reserves or defines are accepted and ignored; our own keys are typed; any other
//! key is an "unsupported field" (code 2) naming it, so a typo in a conflist is caught on the
//! first pod instead of silently falling back to a default.

use std::collections::BTreeSet;
use std::path::PathBuf;

use raven_api::nodestate::{DEFAULT_CNI_DATA_DIR, DEFAULT_NODE_STATE_FILE};
use serde_json::{Map, Value};

use crate::error::{CniError, Result, code};
use crate::version::SpecVersion;

/// Plugin type name, as used in a conflist.
pub const PLUGIN_TYPE: &str = "raven-cni";

/// Default for [`PluginConfig::node_state_max_age_secs`]: raven-node refreshes the file every
/// minute, so five missed refreshes mean the daemon is gone.
pub const DEFAULT_NODE_STATE_MAX_AGE_SECS: u64 = 300;

/// Keys the spec or runtimes put in a plugin's config; accepted and not interpreted.
const RUNTIME_KEYS: [&str; 12] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "prevResult",
    "runtimeConfig",
    "capabilities",
    "args",
    "dns",
    "ipam",
    "ipMasq",
    "disableCheck",
];

/// Keys that belong to this plugin.
const OWN_KEYS: [&str; 4] = [
    "nodeStateFile",
    "dataDir",
    "requireNodeDaemon",
    "nodeStateMaxAgeSeconds",
];

/// Parsed configuration of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Raw `cniVersion` as given (echoed in errors even if unsupported).
    pub raw_version: String,
    /// The network (conflist) name.
    pub network: String,
    /// Where raven-node publishes the node state.
    pub node_state_file: PathBuf,
    /// Where attachment records live.
    pub data_dir: PathBuf,
    /// STATUS fails (code 50) when the node state is missing or stale.
    pub require_node_daemon: bool,
    /// Age after which STATUS considers the node state stale.
    pub node_state_max_age_secs: u64,
    /// The previous plugin's result, untouched.
    pub prev_result: Option<Value>,
    /// Every top-level key except `prevResult`, for GC's attachment lists.
    pub extra: Map<String, Value>,
}

impl PluginConfig {
    /// The spec version; code 1 when unsupported.
    pub fn version(&self) -> Result<SpecVersion> {
        SpecVersion::parse(&self.raw_version)
    }

    /// Parses stdin. `VERSION` has its own, laxer parser ([`requested_version`]).
    pub fn parse(stdin: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                "failed to decode network configuration",
                e.to_string(),
            )
        })?;
        let Value::Object(mut obj) = value else {
            return Err(CniError::new(
                code::DECODE,
                "network configuration must be a JSON object",
                "",
            ));
        };
        reject_unknown_keys(&obj)?;
        let raw_version = required_str(&obj, "cniVersion")?;
        let network = required_str(&obj, "name")?;
        crate::env::validate_container_id(&network)
            .map_err(|_| CniError::config(format!("invalid network name {network:?}")))?;
        if let Some(t) = obj.get("type").and_then(Value::as_str)
            && t != PLUGIN_TYPE
        {
            return Err(CniError::config(format!(
                "plugin type is {t:?}, expected {PLUGIN_TYPE:?}"
            )));
        }
        let prev_result = match obj.remove("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(_) => {
                return Err(CniError::new(
                    code::DECODE,
                    "prevResult must be a JSON object",
                    "",
                ));
            }
        };
        Ok(Self {
            node_state_file: opt_path(&obj, "nodeStateFile")?
                .unwrap_or_else(|| DEFAULT_NODE_STATE_FILE.into()),
            data_dir: opt_path(&obj, "dataDir")?.unwrap_or_else(|| DEFAULT_CNI_DATA_DIR.into()),
            require_node_daemon: opt_bool(&obj, "requireNodeDaemon")?.unwrap_or(false),
            node_state_max_age_secs: opt_u64(&obj, "nodeStateMaxAgeSeconds")?
                .unwrap_or(DEFAULT_NODE_STATE_MAX_AGE_SECS),
            raw_version,
            network,
            prev_result,
            extra: obj,
        })
    }
}

/// The `cniVersion` a VERSION request carries, if any (VERSION must answer even for odd input).
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn reject_unknown_keys(obj: &Map<String, Value>) -> Result<()> {
    let known: BTreeSet<&str> = RUNTIME_KEYS
        .iter()
        .chain(OWN_KEYS.iter())
        .copied()
        .collect();
    let unknown: Vec<&String> = obj
        .keys()
        .filter(|k| {
            !known.contains(k.as_str()) && !k.starts_with("cni.dev/") && !is_list_level_key(k)
        })
        .collect();
    if let Some(first) = unknown.first() {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("unsupported field {first:?} in raven-cni configuration"),
            format!(
                "value {}; known plugin keys are {OWN_KEYS:?}",
                obj[first.as_str()]
            ),
        ));
    }
    Ok(())
}

/// Keys of the list level that some runtimes copy into each plugin's config.
fn is_list_level_key(key: &str) -> bool {
    matches!(key, "disableGC" | "loadOnlyInlinedPlugins")
}

fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None if key == "name" => {
            Err(CniError::config("missing network name"))
        }
        None | Some(Value::String(_)) => Err(CniError::config(format!("missing {key}"))),
        Some(other) => Err(CniError::config(format!(
            "{key} must be a string, got {other}"
        ))),
    }
}

fn opt_path(obj: &Map<String, Value>, key: &str) -> Result<Option<PathBuf>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(CniError::config(format!(
            "{key} must be an absolute path, got {other}"
        ))),
    }
}

/// Booleans accept JSON booleans and the strings "true"/"false", as libcni does.
fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(CniError::config(format!(
            "{key} must be a boolean, got {other}"
        ))),
    }
}

fn opt_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(CniError::config(format!(
                "{key} must be a positive integer, got {v}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PluginConfig> {
        PluginConfig::parse(json.as_bytes())
    }

    #[test]
    fn defaults_and_own_keys() {
        let c = parse(r#"{"cniVersion":"0.3.1","name":"cbr0","type":"raven-cni"}"#).unwrap();
        assert_eq!(c.node_state_file, PathBuf::from(DEFAULT_NODE_STATE_FILE));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_CNI_DATA_DIR));
        assert!(!c.require_node_daemon);
        assert_eq!(c.node_state_max_age_secs, 300);
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"raven-cni","nodeStateFile":"/tmp/s.json",
                "dataDir":"/tmp/d","requireNodeDaemon":"true","nodeStateMaxAgeSeconds":30,
                "capabilities":{"x":true},"runtimeConfig":{},"cni.dev/valid-attachments":[]}"#,
        )
        .unwrap();
        assert!(c.require_node_daemon);
        assert_eq!(c.node_state_max_age_secs, 30);
        assert_eq!(c.version().unwrap(), SpecVersion::V110);
    }

    #[test]
    fn error_codes() {
        let cases: &[(&str, &str, u32)] = &[
            ("not json", "{", 6),
            ("not object", "[]", 6),
            (
                "unknown key",
                r#"{"cniVersion":"1.0.0","name":"n","nodestatefile":"/x"}"#,
                2,
            ),
            ("missing name", r#"{"cniVersion":"1.0.0"}"#, 7),
            ("bad name", r#"{"cniVersion":"1.0.0","name":"a b"}"#, 7),
            ("missing version", r#"{"name":"n"}"#, 7),
            (
                "relative dataDir",
                r#"{"cniVersion":"1.0.0","name":"n","dataDir":"x"}"#,
                7,
            ),
            (
                "bad bool",
                r#"{"cniVersion":"1.0.0","name":"n","requireNodeDaemon":1}"#,
                7,
            ),
            (
                "zero age",
                r#"{"cniVersion":"1.0.0","name":"n","nodeStateMaxAgeSeconds":0}"#,
                7,
            ),
            (
                "wrong type",
                r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
                7,
            ),
            (
                "prevResult array",
                r#"{"cniVersion":"1.0.0","name":"n","prevResult":[]}"#,
                6,
            ),
        ];
        for (name, json, code) in cases {
            assert_eq!(parse(json).unwrap_err().code, *code, "{name}");
        }
        let c = parse(r#"{"cniVersion":"9.9.9","name":"n"}"#).unwrap();
        assert_eq!(c.version().unwrap_err().code, 1);
    }

    #[test]
    fn requested_version_is_lax() {
        assert_eq!(
            requested_version(br#"{"cniVersion":"1.0.0"}"#).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(requested_version(b""), None);
    }
}
