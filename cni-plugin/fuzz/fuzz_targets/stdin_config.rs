//! Fuzzes everything raven-cni does with the bytes on stdin before touching the kernel:
//! config parsing, prevResult extraction and result conversion for every spec version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raven_cni::config::{PluginConfig, requested_version};
use raven_cni::result::{convert_result, pod_addresses};
use raven_cni::version::{SUPPORTED, SpecVersion};

fuzz_target!(|data: &[u8]| {
    let _ = requested_version(data);
    let Ok(conf) = PluginConfig::parse(data) else { return };
    let _ = conf.version();
    let Some(prev) = conf.prev_result else { return };
    let _ = pod_addresses(&prev, "eth0");
    for v in SUPPORTED {
        let version = SpecVersion::parse(v).expect("supported versions parse");
        let out = convert_result(prev.clone(), version);
        assert_eq!(out["cniVersion"], v);
    }
});
