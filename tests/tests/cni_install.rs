//! `raven-node install-cni` / `uninstall-cni` and the daemon's CNI watch, with real files, the
//! real libcni (`raven-cnitool`) and Debian's reference plugins in a node network namespace.
//!
//! The lab's Flannel-equivalent chain (`bridge` + `host-local` exactly as Flannel delegates,
//! then `portmap`) is written as `10-cbr0.conflist`, like kube-flannel's `10-flannel.conflist`;
//! libcni picks the first file of the directory whose network name matches, as the runtimes
//! pick the first file, so the tests observe the chain the runtime would run.
//!
//! Needs root, `ip`, Debian's CNI plugins, `raven-cnitool`, the release `raven-cni` and a
//! `raven-node` build (`RAVEN_NODE_BIN` overrides); a missing one fails the test with the fix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raven_tests::cmd::{self, Output};
use raven_tests::{CniEnv, Pod, kernel, lab, nodestate, paths, require_root};
use serde_json::Value;

const OURS: &str = "05-raven.conflist";
const REMOTE: &str = "10.245.0.0/16";

/// A CNI lab whose chain has no raven-cni yet, with an empty plugin directory first in
/// `CNI_PATH` for the installer to fill.
struct Fixture {
    env: CniEnv,
    bin_dir: PathBuf,
    raven_node: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        let bin = tempfile::Builder::new()
            .prefix("raven-cni-bin-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let env = CniEnv::builder("0.3.1")
            .without_raven()
            .cni_path_prefix(&bin)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let raven_node = lab::find_raven_node().unwrap_or_else(|e| panic!("{e}"));
        Self {
            env,
            bin_dir: bin,
            raven_node,
        }
    }

    fn conf_dir(&self) -> PathBuf {
        self.env.conf_dir()
    }

    fn flannel_file(&self) -> PathBuf {
        self.conf_dir().join("10-cbr0.conflist")
    }

    fn cni_args(&self) -> Vec<String> {
        [
            "--cni-conf-dir".to_owned(),
            self.conf_dir().display().to_string(),
            "--cni-bin-dir".to_owned(),
            self.bin_dir.display().to_string(),
            "--cni-node-state-file".to_owned(),
            self.env.state_file().display().to_string(),
            "--cni-data-dir".to_owned(),
            self.env.data_dir().display().to_string(),
        ]
        .to_vec()
    }

    fn raven_node(&self, sub: &str, extra: &[String]) -> Output {
        let mut c = Command::new(&self.raven_node);
        c.arg(sub).args(self.cni_args()).args(extra);
        cmd::run_command(c, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn install(&self) -> Output {
        let bin = paths::raven_cni_bin().display().to_string();
        self.raven_node("install-cni", &["--cni-binary".to_owned(), bin])
    }

    fn uninstall(&self) -> Output {
        self.raven_node("uninstall-cni", &[])
    }

    /// Every file of the configuration directory with its bytes.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.conf_dir())
            .expect("conf dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect()
    }

    fn ours(&self) -> Option<Value> {
        std::fs::read(self.conf_dir().join(OURS))
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("our conflist is JSON"))
    }

    fn pod(&self, name: &str) -> Pod {
        self.env.new_pod(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn raven_route(&self, pod: &Pod) -> Option<kernel::Route> {
        kernel::routes(&pod.netns, "-4")
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(|r| r.dst == REMOTE && r.protocol_number() == Some(82))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bin_dir);
    }
}

fn ok(o: Output) -> Output {
    assert!(o.success(), "{}", o.describe_failure());
    o
}

fn types(list: &Value) -> Vec<&str> {
    list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["type"].as_str().expect("type"))
        .collect()
}

/// Runs a CNI operation while the flipper installs and uninstalls the conflist. The harness
/// stands in for the runtime and loads the conf dir on every call; libcni lists the directory
/// and then reads each file, so a conflist removed in between fails that load ("load network
/// list", "no such file or directory", code 999, before any plugin runs). A runtime reloads;
/// so does this, for that error only. Any other failure fails the test.
fn retrying_conf_dir_race(
    op: impl Fn() -> raven_tests::error::Result<raven_tests::cni_env::CniOutput>,
) {
    for attempt in 1.. {
        match op().and_then(|o| o.ok()) {
            Ok(_) => return,
            Err(e) => {
                let text = e.to_string();
                let race = text.contains("load network list")
                    && text.contains("no such file or directory");
                assert!(race && attempt < 5, "attempt {attempt}: {text}");
            }
        }
    }
}
#[test]
fn pods_before_during_and_after_install_keep_working_and_uninstall_restores() {
    let f = Fixture::new();
    let state = nodestate::state(1, &[REMOTE], 1400).unwrap_or_else(|e| panic!("{e}"));
    f.env
        .publish_state(&state)
        .unwrap_or_else(|e| panic!("{e}"));
    let original = f.snapshot();

    // Before: a pod on the plain Flannel chain.
    let before = f.pod("before");
    f.env.add(&before).and_then(|o| o.ok()).unwrap();
    assert!(f.raven_route(&before).is_none());

    // Install: binary and our derived list; twice, the second a no-op.
    let out = ok(f.install());
    assert!(
        out.stdout.contains("chained after 10-cbr0.conflist"),
        "{}",
        out.stdout
    );
    let list = f.ours().expect("05-raven.conflist written");
    assert_eq!(types(&list), ["bridge", "portmap", "raven-cni"]);
    assert_eq!(list["name"], "cbr0");
    assert_eq!(
        std::fs::read(f.bin_dir.join("raven-cni")).unwrap(),
        std::fs::read(paths::raven_cni_bin()).unwrap()
    );
    let first = f.snapshot();
    let out = ok(f.install());
    assert!(out.stdout.contains("binary up to date"), "{}", out.stdout);
    assert_eq!(
        f.snapshot(),
        first,
        "a second install changed the directory"
    );
    // Flannel's file is untouched.
    assert_eq!(
        first.get("10-cbr0.conflist"),
        original.get("10-cbr0.conflist")
    );

    // After: a new pod gets raven-cni's route; the pod from before still deletes cleanly.
    let after = f.pod("after");
    f.env.add(&after).and_then(|o| o.ok()).unwrap();
    let route = f
        .raven_route(&after)
        .expect("raven route in the pod added after install");
    assert_eq!(route.mtu(), Some(1400));
    f.env.del(&before).and_then(|o| o.ok()).unwrap();

    // During: install/uninstall flip the chain while pods are added and deleted; the runtime
    // must never read a half-written file, so every operation succeeds.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let node = f.raven_node.clone();
        let args = f.cni_args();
        let bin = paths::raven_cni_bin();
        std::thread::spawn(move || {
            let mut flips = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sub = if flips.is_multiple_of(2) {
                    "uninstall-cni"
                } else {
                    "install-cni"
                };
                let mut c = Command::new(&node);
                c.arg(sub).args(&args);
                if sub == "install-cni" {
                    c.arg("--cni-binary").arg(&bin);
                }
                let o = cmd::run_command(c, None).expect("run raven-node");
                assert!(o.success(), "{}", o.describe_failure());
                flips += 1;
            }
            flips
        })
    };
    let mut with_route = 0;
    for i in 0..12 {
        let p = f.pod(&format!("during-{i}"));
        retrying_conf_dir_race(|| f.env.add(&p));
        if f.raven_route(&p).is_some() {
            with_route += 1;
        }
        retrying_conf_dir_race(|| f.env.del(&p));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().expect("flipper thread");
    assert!(
        flips >= 2,
        "only {flips} install/uninstall flips ran during the pods"
    );
    eprintln!("{flips} flips, {with_route}/12 pods added under the raven chain");

    // Uninstall restores the original directory byte for byte; new pods get no raven route,
    // the pod added under our chain still deletes (the binary stays).
    ok(f.install());
    let out = ok(f.uninstall());
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
    assert_eq!(
        f.snapshot(),
        original,
        "uninstall did not restore the directory"
    );
    let out = ok(f.uninstall());
    assert!(out.stdout.contains("was not installed"), "{}", out.stdout);
    let plain = f.pod("plain");
    f.env.add(&plain).and_then(|o| o.ok()).unwrap();
    assert!(f.raven_route(&plain).is_none());
    f.env.del(&after).and_then(|o| o.ok()).unwrap();
    f.env.del(&plain).and_then(|o| o.ok()).unwrap();
    assert!(f.bin_dir.join("raven-cni").exists());
}

#[test]
fn garbage_is_a_clear_error_and_nothing_is_half_written() {
    let f = Fixture::new();
    let good = std::fs::read(f.flannel_file()).unwrap();
    // Garbage as the only configuration: error naming the file, nothing written anywhere.
    std::fs::write(f.flannel_file(), b"{\"name\": \"cbr0\", \"plugins\": [").unwrap();
    let out = f.install();
    assert!(
        !out.success(),
        "install succeeded on garbage: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("10-cbr0.conflist") && out.stderr.contains("nothing was written"),
        "{}",
        out.stderr
    );
    assert_eq!(
        f.snapshot().keys().collect::<Vec<_>>(),
        ["10-cbr0.conflist"]
    );
    assert!(!f.bin_dir.join("raven-cni").exists());

    // With our file in place, a garbage source leaves it byte for byte.
    std::fs::write(f.flannel_file(), &good).unwrap();
    ok(f.install());
    let installed = f.snapshot();
    std::fs::write(f.flannel_file(), b"").unwrap();
    let out = f.install();
    assert!(
        !out.success() && out.stderr.contains("empty"),
        "{}",
        out.stderr
    );
    let now = f.snapshot();
    assert_eq!(now.get(OURS), installed.get(OURS));
    // The runtime still runs a complete chain (ours) meanwhile.
    let p = f.pod("meanwhile");
    f.env.add(&p).and_then(|o| o.ok()).unwrap();
    f.env.del(&p).and_then(|o| o.ok()).unwrap();

    // A foreign configuration sorting first is refused, not silently ineffective.
    std::fs::write(f.flannel_file(), &good).unwrap();
    std::fs::write(f.conf_dir().join("00-other.conf"), &good).unwrap();
    let out = f.install();
    assert!(
        !out.success() && out.stderr.contains("00-other.conf sorts before"),
        "{}",
        out.stderr
    );
    // A bad binary is refused too.
    std::fs::remove_file(f.conf_dir().join("00-other.conf")).unwrap();
    let out = f.raven_node(
        "install-cni",
        &[
            "--cni-binary".to_owned(),
            f.flannel_file().display().to_string(),
        ],
    );
    assert!(
        !out.success() && out.stderr.contains("not an ELF"),
        "{}",
        out.stderr
    );
    let leftovers: Vec<_> = f
        .snapshot()
        .into_keys()
        .chain(
            std::fs::read_dir(&f.bin_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()),
        )
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The daemon with `--manage-cni`, in the node namespace, reading an empty Gateway directory.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(f: &Fixture) -> Self {
        let root = f.env.root();
        let gateways = root.join("gateways");
        std::fs::create_dir_all(&gateways).unwrap();
        let log = root.join("raven-node.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let node = f.raven_node.display().to_string();
        let mut c = f.env.node().command(&[&node, "run"]);
        c.args([
            "--node-name",
            "n1",
            "--gateways-dir",
            &gateways.display().to_string(),
            "--underlay-mtu",
            "1500",
            "--metrics-addr",
            "off",
            "--state-dir",
            &root.join("state").display().to_string(),
            "--node-state-file",
            &f.env.state_file().display().to_string(),
            "--cni-data-dir",
            &f.env.data_dir().display().to_string(),
            "--manage-cni",
            "--cni-conf-dir",
            &f.conf_dir().display().to_string(),
            "--poll-interval-ms",
            "200",
        ])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
        let child = c.spawn().expect("start raven-node");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, d: &Daemon, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\ndaemon log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemon_converges_after_flannel_rewrites_its_file() {
    let f = Fixture::new();
    // The init container's job: binary and first configuration.
    ok(f.install());
    std::fs::remove_file(f.conf_dir().join(OURS)).unwrap();
    let d = Daemon::start(&f);
    wait_until(
        "daemon writes 05-raven.conflist",
        &d,
        Duration::from_secs(20),
        || f.ours().is_some(),
    );
    let installed = std::fs::read(f.conf_dir().join(OURS)).unwrap();

    // Flannel's install step (`cp -f`): truncate, write part, pause, write the rest. The new
    // content changes the delegate MTU, which our file must follow.
    let mut list: Value =
        serde_json::from_slice(&std::fs::read(f.flannel_file()).unwrap()).unwrap();
    list["plugins"][0]["mtu"] = Value::from(1400);
    let new = serde_json::to_vec_pretty(&list).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(f.flannel_file())
        .unwrap();
    file.write_all(&new[..new.len() / 2]).unwrap();
    file.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Mid-rewrite: the daemon saw the change and refused it; ours is intact.
    assert_eq!(std::fs::read(f.conf_dir().join(OURS)).unwrap(), installed);
    wait_until(
        "daemon reports the half-written file",
        &d,
        Duration::from_secs(5),
        || d.log().contains("invalid JSON"),
    );
    file.write_all(&new[new.len() / 2..]).unwrap();
    drop(file);
    wait_until(
        "our file follows Flannel's",
        &d,
        Duration::from_secs(10),
        || f.ours().is_some_and(|v| v["plugins"][0]["mtu"] == 1400),
    );
    let list = f.ours().unwrap();
    assert_eq!(types(&list), ["bridge", "portmap", "raven-cni"]);

    // Someone deletes ours: recreated. Pods work throughout.
    std::fs::remove_file(f.conf_dir().join(OURS)).unwrap();
    wait_until("our file recreated", &d, Duration::from_secs(10), || {
        f.ours().is_some()
    });
    let p = f.pod("converged");
    f.env.add(&p).and_then(|o| o.ok()).unwrap();
    f.env.del(&p).and_then(|o| o.ok()).unwrap();
    assert!(
        !Path::new(&f.conf_dir().join(".05-raven.conflist.tmp")).exists(),
        "temporary file left"
    );
}
