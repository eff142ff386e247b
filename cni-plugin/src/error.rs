//! The plugin's error type and its mapping to CNI error codes.
//!
//! Every failure becomes one [`CniError`] with the code from the CNI spec (section "Error") or one
//! of our own (100 and above), printed as the spec's error JSON on stdout.

use serde::Serialize;

/// Error codes from the CNI specification, plus ours from 100 up.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot service ADD.
    pub const NOT_AVAILABLE: u32 = 50;
    /// CHECK: one of our routes is missing or differs from the current node state.
    pub const CHECK_FAILED: u32 = 100;
    /// A netlink request failed.
    pub const NETLINK: u32 = 101;
}

/// A failure, ready to be reported to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// The CNI error code.
    pub code: u32,
    /// Short description.
    pub msg: String,
    /// Longer explanation (may be empty).
    pub details: String,
}

impl CniError {
    /// An error with a code, message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// An I/O failure on `what` (a path or an object name).
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        Self::new(code::IO, format!("I/O error on {what}"), err.to_string())
    }

    /// An invalid network configuration.
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg, "")
    }

    /// An invalid or missing environment variable.
    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg, "")
    }

    /// The spec's error JSON, in the config's version when known.
    pub fn to_json(&self, cni_version: Option<&str>) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            cni_version: Option<&'a str>,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).unwrap_or_else(|_| format!("{{\"code\":{}}}", self.code))
    }
}

/// Result alias used throughout the plugin.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_spec_keys() {
        let e = CniError::new(code::DECODE, "bad json", "line 1");
        let v: serde_json::Value = serde_json::from_str(&e.to_json(Some("1.0.0"))).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 6);
        assert_eq!(v["msg"], "bad json");
        assert_eq!(v["details"], "line 1");
        let bare: serde_json::Value =
            serde_json::from_str(&CniError::config("x").to_json(None)).unwrap();
        assert!(bare.get("cniVersion").is_none() && bare.get("details").is_none());
    }
}
