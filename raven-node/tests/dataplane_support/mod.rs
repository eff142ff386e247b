//! Kernel-test support for the data plane: a fresh named network namespace per test, a tokio
//! runtime on a thread that entered it, and `ip -j`/`bridge -j` readers that check the kernel
//! independently of the code under test.
//!
//! A test that cannot run (not root, `ip`/`bridge` missing) fails and says why.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Fails the test with a clear message if it cannot run here.
pub fn require_kernel_test_environment() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "data-plane kernel tests need root (network namespaces and netlink writes); \
         run them as root, e.g. `sudo -E cargo test -p raven-node --test dataplane_kernel`"
    );
    for tool in ["ip", "bridge"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` (iproute2) is required by the data-plane kernel tests"
        );
    }
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// `rvdp-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Self {
        require_kernel_test_environment();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("rvdp-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `fut` on a current-thread tokio runtime in a thread that entered this namespace;
    /// every netlink socket it opens lives in the namespace.
    pub fn block_on<F, T>(&self, fut: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("netns file opens");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test namespace");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(fut())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// `ip -n <ns> <args>`, must succeed; stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", self.name.as_str()];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// `ip -n <ns> -j -d <args>` parsed (empty output = empty array).
    pub fn ip_json(&self, args: &[&str]) -> Vec<Value> {
        let mut argv = vec!["ip", "-n", self.name.as_str(), "-j", "-d"];
        argv.extend_from_slice(args);
        parse(&run(&argv))
    }

    /// `bridge -n <ns> -j fdb show dev <dev>`.
    pub fn fdb(&self, dev: &str) -> Vec<Value> {
        parse(&run(&[
            "bridge", "-n", &self.name, "-j", "fdb", "show", "dev", dev,
        ]))
    }

    /// The JSON of link `name`, if it exists.
    pub fn link(&self, name: &str) -> Option<Value> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j", "-d", "link", "show", "dev", name])
            .output()
            .expect("ip runs");
        if !out.status.success() {
            return None;
        }
        parse(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .next()
    }

    /// Routes of `table` as `ip -j -d route show table <table>` gives them.
    pub fn routes(&self, table: &str) -> Vec<Value> {
        self.ip_json(&["route", "show", "table", table])
    }

    /// IPv4 rules.
    pub fn rules(&self) -> Vec<Value> {
        self.ip_json(&["-4", "rule", "show"])
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn parse(s: &str) -> Vec<Value> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(v)) => v,
        Ok(other) => vec![other],
        Err(e) => panic!("unparsable JSON from iproute2 ({e}): {s}"),
    }
}

/// Runs argv, must succeed; stdout.
pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// String field.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}
