//! Observing the underlay MTU: the MTU of the link carrying the IPv4 default route of the main
//! table (upstream's `DefaultMTU`), read from `/proc/net/route` and sysfs.
//!
//! `/proc/net/route` lists the main table of the reader's network namespace, and `ip netns
//! exec` mounts a matching sysfs, so this observes the right namespace in the lab too.

/// MTU of the default route's device.
pub fn default_route_mtu() -> Result<u32, String> {
    let routes = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| format!("reading /proc/net/route: {e}"))?;
    let dev = default_route_device(&routes).ok_or("no IPv4 default route in the main table")?;
    let path = format!("/sys/class/net/{dev}/mtu");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{path}: {text:?}: {e}"))
}

/// The device of the first default route (`Destination 00000000`, `Mask 00000000`) with the
/// lowest metric.
pub fn default_route_device(proc_net_route: &str) -> Option<&str> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            // RTF_UP
            if flags & 1 == 0 {
                return None;
            }
            Some((f[6].parse::<u32>().ok()?, f[0]))
        })
        .min()
        .map(|(_, dev)| dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_route_device() {
        let table = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth9\t00000000\t0100A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
";
        assert_eq!(default_route_device(table), Some("eth0"));
        assert_eq!(default_route_device("Iface\tDestination\n"), None);
    }
}
