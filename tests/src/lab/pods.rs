//! Pods: created through each node's real CNI chain (`raven-cnitool`), commands run in them.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::{Lab, LabPod};
use crate::Pod;
use crate::cmd::{self, Output};
use crate::error::{Context, Error, Result};
use crate::netns::Netns;

impl Lab {
    /// Creates a pod on node `i` through the real CNI chain; returns its index in
    /// [`Lab::pods`].
    pub fn add_pod(&mut self, i: usize) -> Result<usize> {
        let node = &self.nodes[i];
        let netns = Netns::new("pod")?;
        let pod = Pod {
            container_id: format!("ctr-{}", netns.name()),
            netns,
            name: format!("pod-{}-{}", node.spec.name, self.pods.len()),
            namespace: "raven-lab".to_string(),
            ifname: "eth0".to_string(),
        };
        let out = self.cnitool(i, "add", &pod)?.into_ok()?;
        let result: Value = serde_json::from_str(&out.stdout)
            .context(|| format!("ADD result is not JSON: {}", out.stdout))?;
        let addr = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| Error::new(format!("no IPv4 address in the ADD result: {result}")))?;
        self.pods.push(LabPod {
            node: i,
            pod,
            ip: addr,
        });
        Ok(self.pods.len() - 1)
    }

    /// Runs `raven-cnitool <op>` for `pod` inside node `i`.
    pub fn cnitool(&self, i: usize, op: &str, pod: &Pod) -> Result<Output> {
        let node = &self.nodes[i];
        let mut argv = vec![self.cnitool.to_string_lossy().into_owned()];
        argv.extend(crate::cni_env::pod_op_args(
            op,
            &node.chain.network,
            &pod.netns.path_str(),
            pod,
            &node.dir.join("cache"),
        ));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut c = node.netns.command(&argv);
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("NETCONFPATH", node.dir.join("conf"))
            .env("CNI_PATH", &self.cni_path);
        cmd::run_command(c, None)
    }

    /// Runs argv in pod `p`.
    pub fn exec_in_pod(&self, p: &LabPod, argv: &[&str]) -> Result<Output> {
        p.pod.netns.exec_output(argv)
    }

    /// One ping from pod `from` to `to_ip` (1 s timeout); whether it got an answer.
    pub fn ping_from_pod(&self, from: &LabPod, to_ip: Ipv4Addr) -> bool {
        from.pod
            .netns
            .exec_output(&["ping", "-c", "1", "-W", "1", &to_ip.to_string()])
            .map(|o| o.success())
            .unwrap_or(false)
    }
}
