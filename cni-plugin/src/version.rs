//! CNI spec versions: which we speak and which operation each allows.

use crate::error::{CniError, Result, code};

/// Spec versions this plugin accepts and answers in. 0.1.0/0.2.0 cannot chain, so they are out.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecVersion {
    /// 0.3.0
    V030,
    /// 0.3.1 (kube-flannel's default)
    V031,
    /// 0.4.0 (adds CHECK)
    V040,
    /// 1.0.0 (k3s)
    V100,
    /// 1.1.0 (adds GC and STATUS)
    V110,
}

impl SpecVersion {
    /// Parses a version string; anything unsupported is error code 1.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "0.3.0" => Self::V030,
            "0.3.1" => Self::V031,
            "0.4.0" => Self::V040,
            "1.0.0" => Self::V100,
            "1.1.0" => Self::V110,
            other => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    "incompatible CNI versions",
                    format!("config is {other:?}, plugin supports {SUPPORTED:?}"),
                ));
            }
        })
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V030 => "0.3.0",
            Self::V031 => "0.3.1",
            Self::V040 => "0.4.0",
            Self::V100 => "1.0.0",
            Self::V110 => "1.1.0",
        }
    }

    /// Results before 1.0.0 carry `ips[].version`.
    pub fn is_legacy_result(self) -> bool {
        self < Self::V100
    }

    /// Fails unless this version allows `command` (CHECK ≥ 0.4.0, GC/STATUS ≥ 1.1.0).
    pub fn require_at_least(self, min: Self, command: &str) -> Result<()> {
        if self < min {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version does not allow {command}"),
                format!(
                    "{command} needs cniVersion {} or later, config is {}",
                    min.as_str(),
                    self.as_str()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_version_and_rejects_others() {
        for v in SUPPORTED {
            assert_eq!(SpecVersion::parse(v).unwrap().as_str(), v);
        }
        for bad in ["0.1.0", "0.2.0", "1.2.0", "", "1.0", "v1.0.0"] {
            assert_eq!(SpecVersion::parse(bad).unwrap_err().code, 1, "{bad}");
        }
    }

    #[test]
    fn operation_floors() {
        assert!(
            SpecVersion::V031
                .require_at_least(SpecVersion::V040, "CHECK")
                .is_err()
        );
        assert!(
            SpecVersion::V040
                .require_at_least(SpecVersion::V040, "CHECK")
                .is_ok()
        );
        assert!(
            SpecVersion::V100
                .require_at_least(SpecVersion::V110, "GC")
                .is_err()
        );
        assert!(!SpecVersion::V110.is_legacy_result());
        assert!(SpecVersion::V040.is_legacy_result());
    }
}
