//! The `CNI_*` environment: parsed once, validated per command.
//!
//! libcni exports every variable, empty when unused, so an empty value counts as absent.

use std::collections::BTreeMap;

use crate::error::{CniError, Result};

/// The CNI operation requested by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ADD
    Add,
    /// DEL
    Del,
    /// CHECK
    Check,
    /// GC
    Gc,
    /// STATUS
    Status,
    /// VERSION
    Version,
}

impl Command {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "GC" => Self::Gc,
            "STATUS" => Self::Status,
            "VERSION" => Self::Version,
            other => return Err(CniError::env(format!("unknown CNI_COMMAND {other:?}"))),
        })
    }
}

/// The environment of one invocation, before per-command validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`
    pub command: Option<String>,
    /// `CNI_CONTAINERID`
    pub container_id: Option<String>,
    /// `CNI_NETNS`
    pub netns: Option<String>,
    /// `CNI_IFNAME`
    pub ifname: Option<String>,
    /// `CNI_ARGS`
    pub args: Option<String>,
}

impl Env {
    /// Reads the process environment; empty values are absent.
    pub fn from_process() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds from any lookup function (tests use a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        Self {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
        }
    }

    /// The requested command.
    pub fn command(&self) -> Result<Command> {
        Command::parse(
            self.command
                .as_deref()
                .ok_or_else(|| CniError::env("CNI_COMMAND is not set"))?,
        )
    }

    /// The identity of the attachment, required by ADD, DEL and CHECK.
    pub fn attachment(&self) -> Result<AttachmentId> {
        let container_id = self
            .container_id
            .clone()
            .ok_or_else(|| CniError::env("required env variables [CNI_CONTAINERID] missing"))?;
        validate_container_id(&container_id)?;
        let ifname = self
            .ifname
            .clone()
            .ok_or_else(|| CniError::env("required env variables [CNI_IFNAME] missing"))?;
        validate_ifname(&ifname)?;
        Ok(AttachmentId {
            container_id,
            ifname,
        })
    }

    /// `CNI_NETNS`, required by ADD and CHECK.
    pub fn required_netns(&self) -> Result<&str> {
        self.netns
            .as_deref()
            .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing"))
    }

    /// The `K=V;K=V` pairs of `CNI_ARGS`.
    pub fn cni_args(&self) -> Result<BTreeMap<String, String>> {
        parse_cni_args(self.args.as_deref().unwrap_or(""))
    }
}

/// (container ID, interface name): what the spec calls an attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentId {
    /// `CNI_CONTAINERID`
    pub container_id: String,
    /// `CNI_IFNAME`
    pub ifname: String,
}

/// The spec's container ID rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(CniError::env(format!(
            "invalid CNI_CONTAINERID {id:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )));
    }
    Ok(())
}

/// The spec's interface name rule: at most 15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(CniError::env(format!(
            "invalid CNI_IFNAME {name:?}: at most 15 bytes, not . or .., no '/', ':' or whitespace"
        )));
    }
    Ok(())
}

/// Parses `CNI_ARGS`; a pair without `=` or with an empty key is an error naming the pair.
pub fn parse_cni_args(raw: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(CniError::env(format!(
                    "invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn empty_values_are_absent() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_NETNS", ""),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(e.command().unwrap(), Command::Del);
        assert!(e.netns.is_none());
        assert_eq!(e.required_netns().unwrap_err().code, 4);
        assert_eq!(e.attachment().unwrap().container_id, "c1");
    }

    #[test]
    fn validates_identity() {
        let cases = [
            ("ok", "abc-1.2_3", "eth0", true),
            ("leading dash", "-abc", "eth0", false),
            ("slash in id", "a/b", "eth0", false),
            ("long ifname", "c", "0123456789abcdef", false),
            ("dot ifname", "c", "..", false),
            ("colon ifname", "c", "eth:0", false),
            ("space ifname", "c", "eth 0", false),
        ];
        for (name, id, ifname, ok) in cases {
            let e = env(&[("CNI_CONTAINERID", id), ("CNI_IFNAME", ifname)]);
            assert_eq!(e.attachment().is_ok(), ok, "{name}");
        }
        assert_eq!(
            env(&[("CNI_IFNAME", "eth0")])
                .attachment()
                .unwrap_err()
                .code,
            4
        );
    }

    #[test]
    fn parses_cni_args() {
        let args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns;").unwrap();
        assert_eq!(args["K8S_POD_NAME"], "p");
        assert_eq!(args.len(), 3);
        assert!(parse_cni_args("novalue").is_err());
        assert!(parse_cni_args("=v").is_err());
        assert!(parse_cni_args("").unwrap().is_empty());
    }

    #[test]
    fn unknown_command() {
        assert_eq!(
            env(&[("CNI_COMMAND", "FOO")]).command().unwrap_err().code,
            4
        );
        assert_eq!(env(&[]).command().unwrap_err().code, 4);
    }
}
