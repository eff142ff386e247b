//! The previous plugin's result: what we read from it and how we pass it on.
//!
//! Parsing is tolerant on purpose (missing `interfaces`, `ips[].interface` absent or -1, a
//! `cniVersion` that differs from the config's): the result is someone else's output. We only
//! extract the pod's addresses and gateways; the output is the same JSON, re-shaped only when the
//! config's version needs another layout.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::error::{CniError, Result, code};
use crate::version::SpecVersion;

/// One pod address with the gateway its routes go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// Address with prefix length, as in the result (`10.244.1.2/24`).
    pub address: IpNetwork,
    /// Next hop for our routes of this family, if the result names one.
    pub gateway: Option<IpAddr>,
}

/// Extracts the pod's addresses on `ifname` from a result of any supported version.
///
/// An IP belongs to the pod when its `interface` index points at an interface named `ifname`
/// with a sandbox, or when it has no (or a negative) index — the rule portmap uses.
pub fn pod_addresses(prev: &Value, ifname: &str) -> Result<Vec<PodAddress>> {
    let interfaces = prev.get("interfaces").and_then(Value::as_array);
    let ips = match prev.get("ips") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(ips)) => ips,
        Some(_) => return Err(decode("prevResult.ips must be an array")),
    };
    let mut out = Vec::new();
    for ip in ips {
        if !belongs_to_pod(ip, interfaces, ifname) {
            continue;
        }
        let address = ip
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| decode("prevResult.ips[].address missing"))?;
        let address: IpNetwork = address
            .parse()
            .map_err(|e| decode(&format!("prevResult address {address:?}: {e}")))?;
        let gateway = match ip.get("gateway").and_then(Value::as_str) {
            Some(gw) => Some(
                gw.parse()
                    .map_err(|e| decode(&format!("prevResult gateway {gw:?}: {e}")))?,
            ),
            None => default_gateway(prev, address.is_ipv4()),
        };
        out.push(PodAddress { address, gateway });
    }
    Ok(out)
}

fn belongs_to_pod(ip: &Value, interfaces: Option<&Vec<Value>>, ifname: &str) -> bool {
    let Some(index) = ip.get("interface").and_then(Value::as_i64) else {
        return true;
    };
    let Ok(index) = usize::try_from(index) else {
        return true;
    };
    let Some(iface) = interfaces.and_then(|all| all.get(index)) else {
        return false;
    };
    let name_matches = iface.get("name").and_then(Value::as_str) == Some(ifname);
    let in_sandbox = iface
        .get("sandbox")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    name_matches && in_sandbox
}

/// The `gw` of a default route in `routes[]`, for results whose IPs carry no gateway.
fn default_gateway(prev: &Value, ipv4: bool) -> Option<IpAddr> {
    let default_dst = if ipv4 { "0.0.0.0/0" } else { "::/0" };
    prev.get("routes")?.as_array()?.iter().find_map(|r| {
        (r.get("dst")?.as_str()? == default_dst).then(|| r.get("gw")?.as_str()?.parse().ok())?
    })
}

fn decode(msg: &str) -> CniError {
    CniError::new(code::DECODE, "failed to decode prevResult", msg)
}

/// `prev` in the layout of `version`, with its `cniVersion` set to it.
///
/// Between layouts of the same family (0.3.x/0.4.0, or 1.x) the JSON is returned unchanged apart
/// from `cniVersion`; across families `ips[].version` is added or removed and the 1.1-only
/// interface fields are dropped, as the spec's conversion rules say.
pub fn convert_result(mut prev: Value, version: SpecVersion) -> Value {
    let Some(obj) = prev.as_object_mut() else {
        return prev;
    };
    obj.insert("cniVersion".into(), Value::String(version.as_str().into()));
    if let Some(Value::Array(ips)) = obj.get_mut("ips") {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if version.is_legacy_result() {
                if !ip.contains_key("version") {
                    let v4 = ip
                        .get("address")
                        .and_then(Value::as_str)
                        .is_some_and(|a| !a.contains(':'));
                    ip.insert(
                        "version".into(),
                        Value::String(if v4 { "4" } else { "6" }.into()),
                    );
                }
            } else {
                ip.remove("version");
            }
        }
    }
    if version.is_legacy_result()
        && let Some(Value::Array(ifaces)) = obj.get_mut("interfaces")
    {
        for iface in ifaces.iter_mut().filter_map(Value::as_object_mut) {
            for key in ["mtu", "socketPath", "pciID"] {
                iface.remove(key);
            }
        }
    }
    prev
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flannel_bridge_result(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
                {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/run/netns/p"}
            ],
            "ips": [{"version": "4", "interface": 2, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}],
            "routes": [{"dst": "10.244.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            "dns": {}
        })
    }

    #[test]
    fn finds_pod_address_and_gateway() {
        let got = pod_addresses(&flannel_bridge_result("0.3.1"), "eth0").unwrap();
        assert_eq!(
            got,
            vec![PodAddress {
                address: "10.244.1.2/24".parse().unwrap(),
                gateway: Some("10.244.1.1".parse().unwrap()),
            }]
        );
        assert!(
            pod_addresses(&flannel_bridge_result("0.3.1"), "net1")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn tolerates_missing_index_and_gateway() {
        let prev = json!({
            "ips": [{"address": "10.0.0.5/24", "interface": -1}, {"address": "fd00::5/64"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
        });
        let got = pod_addresses(&prev, "eth0").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(got[1].gateway, None);
        assert!(pod_addresses(&json!({}), "eth0").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_addresses() {
        for prev in [
            json!({"ips": "x"}),
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            json!({"ips": [{"address": "nope"}]}),
            json!({"ips": [{"address": "10.0.0.2/24", "gateway": "x"}]}),
        ] {
            assert_eq!(pod_addresses(&prev, "eth0").unwrap_err().code, 6, "{prev}");
        }
    }

    #[test]
    fn same_family_conversion_only_sets_version() {
        let prev = flannel_bridge_result("0.3.1");
        let out = convert_result(prev.clone(), SpecVersion::V031);
        assert_eq!(out, prev);
        let out = convert_result(prev.clone(), SpecVersion::V040);
        assert_eq!(out["ips"], prev["ips"]);
        assert_eq!(out["cniVersion"], "0.4.0");
    }

    #[test]
    fn cross_family_conversion_reshapes_ips() {
        let modern = convert_result(flannel_bridge_result("0.3.1"), SpecVersion::V100);
        assert!(modern["ips"][0].get("version").is_none());
        let legacy = convert_result(modern, SpecVersion::V030);
        assert_eq!(legacy["ips"][0]["version"], "4");
        let mut v6 = json!({"ips": [{"address": "fd00::2/64"}], "interfaces": [{"name": "eth0", "mtu": 1400}]});
        v6 = convert_result(v6, SpecVersion::V040);
        assert_eq!(v6["ips"][0]["version"], "6");
        assert!(v6["interfaces"][0].get("mtu").is_none());
    }
}
