//! `raven-node` against a real kube-apiserver 1.20.2: the per-node health Lease (both modes)
//! and the Kubernetes Gateway source with its endpoint write-back (public key, public IP), and
//! with `--proxy`, the proxy client certificate requested through the CSR API.
//!
//! The daemon runs inside a fresh network namespace (its data plane touches nothing on the
//! host) with the identity of the `raven-node` ServiceAccount (a token user), so the manifests
//! in `deploy/rbac/node` are exactly what authorizes it. The API server listens on the host's
//! loopback, which a namespace cannot reach, so the test relays TCP from a veth address to it.
//!
//! Needs root, the cached apiserver (`tests/kube/build-apiserver.sh`) and a built `raven-node`
//! (`cargo build -p raven-node`); fails with that hint otherwise.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use raven_tests::kube::{KubeApiServer, TestUser, wait_for};
use raven_tests::lab::find_raven_node;
use raven_tests::{Netns, require_root};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const GW: &str = "/apis/raven.openyurt.io/v1beta1/gateways";
const NODE: &str = "nk-1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sa_user() -> TestUser {
    TestUser {
        name: "system:serviceaccount:kube-system:raven-node".into(),
        token: "raven-node-token".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:kube-system".into(),
        ],
    }
}

/// Copies bytes one way until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Relays every connection accepted on `listener` to `target` (threads live until the test
/// process exits).
fn relay(listener: TcpListener, target: String) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                (Ok(c), Ok(s)) => (c, s),
                _ => continue,
            };
            std::thread::spawn(move || pipe(client, server));
            std::thread::spawn(move || pipe(s2, c2));
        }
    });
}

/// The daemon process, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn renew_time(api: &KubeApiServer) -> Result<Option<(String, String)>, String> {
    let Some(lease) = api
        .get_json(&format!("{LEASES}/raven-node-{NODE}"))
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let spec = &lease["spec"];
    Ok(Some((
        spec["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        spec["renewTime"].as_str().unwrap_or_default().to_owned(),
    )))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Everything one test needs: the API server, the node namespace, paths, and the daemon.
struct Setup {
    api: KubeApiServer,
    ns: Netns,
    dir: tempfile::TempDir,
    bin: String,
    kubeconfig: String,
    node_ip: String,
    log: PathBuf,
}

impl Setup {
    /// API server with the Gateway CRD and the node RBAC; a node namespace on `10.<net>.0.0/30`
    /// reaching the API server through a relay; a kubeconfig for the node identity.
    fn new(net: u8) -> Self {
        require_root();
        let bin = find_raven_node()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string_lossy()
            .into_owned();
        let user = sa_user();
        let api = KubeApiServer::start_with_users(std::slice::from_ref(&user))
            .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
        let crd =
            std::fs::read_to_string(repo().join("deploy/crds/raven.openyurt.io_gateways.yaml"))
                .expect("read Gateway CRD");
        api.create_crd(&crd).expect("Gateway CRD");
        let applied = api
            .apply_dir(&repo().join("deploy/rbac/node"))
            .expect("apply the node RBAC");
        assert_eq!(applied.len(), 7, "{applied:?}");
        // The front side's kubelet identity (group raven:proxy-fronts of the CSR-issued
        // certificates) reaches the kubelet API and nothing else.
        for (resource, subresource, verb, allowed) in [
            ("nodes", "proxy", "create", true),
            ("nodes", "metrics", "get", true),
            ("nodes", "", "get", false),
            ("secrets", "", "get", false),
        ] {
            let review = serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": "raven-proxy-front:cloud-1", "groups": ["raven:proxy-fronts"],
                    "resourceAttributes": {
                    "verb": verb, "resource": resource, "subresource": subresource}},
            });
            let r = api
                .request(
                    raven_tests::kube::ADMIN_TOKEN,
                    "POST",
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    Some(&review.to_string()),
                )
                .expect("SubjectAccessReview");
            let answer: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
            assert_eq!(
                answer["status"]["allowed"].as_bool().unwrap_or(false),
                allowed,
                "raven:proxy-fronts {verb} {resource}/{subresource}: {}",
                r.body
            );
        }
        // The node identity is not an admin, and lists no Leases.
        for path in ["/api/v1/secrets", LEASES] {
            let r = api
                .request(&user.token, "GET", path, None)
                .expect("request");
            assert_eq!(r.status, 403, "raven-node must not GET {path}: {}", r.body);
        }

        let host_ip = format!("10.{net}.0.1");
        let node_ip = format!("10.{net}.0.2");
        let ns = Netns::new("nk").expect("netns");
        let host_if = format!("rnk{net}-{}", std::process::id() % 10_000);
        let run = |argv: &[&str]| {
            let out = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .output()
                .expect("spawn");
            assert!(out.status.success(), "{argv:?}: {out:?}");
        };
        run(&[
            "ip",
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        ns.ip(&["addr", "add", &format!("{node_ip}/30"), "dev", "eth0"])
            .expect("addr");
        ns.ip(&["link", "set", "eth0", "up"]).expect("up");
        ns.ip(&["route", "add", "default", "via", &host_ip])
            .expect("default route");

        let listener = TcpListener::bind((host_ip.as_str(), 0)).expect("relay listen");
        let relay_port = listener.local_addr().expect("addr").port();
        let target = api
            .url
            .strip_prefix("https://")
            .expect("https url")
            .to_owned();
        relay(listener, target);

        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let kc = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "t", "cluster": {
                "server": format!("https://{host_ip}:{relay_port}"),
                "insecure-skip-tls-verify": true}}],
            "users": [{"name": "raven-node", "user": {"token": user.token}}],
            "contexts": [{"name": "raven-node",
                          "context": {"cluster": "t", "user": "raven-node"}}],
            "current-context": "raven-node",
        });
        std::fs::write(&kubeconfig, kc.to_string()).expect("kubeconfig");
        let log = dir.path().join("raven-node.log");
        Self {
            api,
            ns,
            bin,
            kubeconfig: kubeconfig.to_string_lossy().into_owned(),
            node_ip,
            log,
            dir,
        }
    }

    fn path(&self, sub: &str) -> String {
        self.dir.path().join(sub).to_string_lossy().into_owned()
    }

    /// A solo Gateway where this node is the active tunnel endpoint.
    fn gateway(&self) -> Value {
        let endpoint = json!({"nodeName": NODE, "type": "tunnel", "port": 4500,
            "publicIP": self.node_ip, "underNAT": false});
        json!({
            "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-nk"},
            "spec": {"proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 1},
                     "endpoints": [endpoint]},
            "status": {"nodes": [{"nodeName": NODE, "privateIP": self.node_ip,
                                  "subnets": ["10.244.90.0/24"]}],
                       "activeEndpoints": [endpoint]},
        })
    }

    /// The common flags of `run` and `cleanup`, plus `extra`.
    fn argv<'a>(&'a self, sub: &'a str, extra: &[&'a str], owned: &'a [String]) -> Vec<&'a str> {
        let mut v = vec![self.bin.as_str(), sub, "--node-name", NODE];
        v.extend_from_slice(&[
            "--state-dir",
            &owned[0],
            "--node-state-file",
            &owned[1],
            "--cni-data-dir",
            &owned[2],
            "--metrics-addr",
            "off",
            "--underlay-mtu",
            "1500",
        ]);
        v.extend_from_slice(extra);
        v
    }

    fn owned(&self) -> Vec<String> {
        vec![
            self.path("state"),
            self.path("node-state.json"),
            self.path("cni"),
        ]
    }

    /// Starts `raven-node run` in the namespace with `extra` flags.
    fn start(&self, extra: &[&str]) -> Daemon {
        let owned = self.owned();
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend_from_slice(&[
            "--poll-interval-ms",
            "200",
            "--kubeconfig",
            &self.kubeconfig,
            "--log",
            "info",
        ]);
        let argv = self.argv("run", &extra, &owned);
        let logf = std::fs::File::create(&self.log).expect("log");
        let mut cmd = self.ns.command(&argv);
        cmd.env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log clone"))
            .stderr(logf);
        Daemon(cmd.spawn().expect("start raven-node"))
    }

    fn log_text(&self) -> String {
        log_of(&self.log)
    }

    /// Waits for the Lease, then for one renewal.
    fn assert_lease_renews(&self) {
        let ((holder, first), took) = wait_for(Duration::from_secs(30), "the node Lease", || {
            renew_time(&self.api)
        })
        .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", self.log_text()));
        assert_eq!(holder, NODE);
        assert!(!first.is_empty(), "renewTime set");
        let lease = self
            .api
            .get_json(&format!("{LEASES}/raven-node-{NODE}"))
            .expect("get")
            .expect("exists");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15, "{lease}");
        eprintln!("Lease appeared within {took:?}");
        let ((_, second), took) = wait_for(Duration::from_secs(20), "a Lease renewal", || {
            Ok(renew_time(&self.api)?.filter(|(_, t)| *t != first))
        })
        .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", self.log_text()));
        eprintln!("renewed {first} -> {second} within {took:?}");
    }

    /// `raven-node cleanup` in the namespace (it is deleted on drop anyway).
    fn cleanup(&self) {
        let owned = self.owned();
        let argv = self.argv("cleanup", &[], &owned);
        let out = self.ns.command(&argv).output().expect("cleanup");
        assert!(out.status.success(), "cleanup: {out:?}");
    }
}

#[test]
fn standalone_mode_renews_the_node_lease_under_the_node_rbac() {
    let s = Setup::new(251);
    let gwdir = s.dir.path().join("gateways");
    std::fs::create_dir_all(&gwdir).expect("gateways dir");
    std::fs::write(gwdir.join("gw-nk.json"), s.gateway().to_string()).expect("gateway file");
    let gw_s = gwdir.to_string_lossy().into_owned();
    let daemon = s.start(&["--gateways-dir", &gw_s]);
    s.assert_lease_renews();
    drop(daemon);
    s.cleanup();
}

#[test]
fn kube_mode_watches_gateways_publishes_the_key_and_renews_the_lease() {
    let s = Setup::new(252);
    s.api
        .admin("POST", GW, Some(&s.gateway().to_string()))
        .expect("create Gateway");
    // The key the daemon must publish: the one persisted in its state directory (created here,
    // loaded by the daemon).
    let out = std::process::Command::new(&s.bin)
        .args(["public-key", "--state-dir", &s.path("state")])
        .output()
        .expect("public-key");
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(key.len(), 44, "base64 WireGuard key: {key:?}");
    // Proxy mode on: in Kubernetes mode the daemon requests its proxy client certificate
    // through the CSR API (no controller here: the request stays pending, which must not
    // disturb anything else).
    let certs = s.path("proxy");
    let daemon = s.start(&["--proxy", "--proxy-cert-dir", &certs]);
    let (_, took) = wait_for(
        Duration::from_secs(30),
        "publicKey in the Gateway spec",
        || {
            let gw = s
                .api
                .get_json(&format!("{GW}/gw-nk"))
                .map_err(|e| e.to_string())?
                .ok_or("no Gateway")?;
            let got = gw["spec"]["endpoints"][0]["config"]["publicKey"].clone();
            if got == key.as_str() {
                Ok(Some(()))
            } else {
                Err(format!("publicKey is {got}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", s.log_text()));
    eprintln!("publicKey published within {took:?}");
    let rv = |s: &Setup| {
        s.api
            .get_json(&format!("{GW}/gw-nk"))
            .expect("get")
            .expect("exists")["metadata"]["resourceVersion"]
            .clone()
    };
    let before = rv(&s);
    // The engine applied the plan from the watched Gateway: the Lease only renews after a
    // successful apply.
    s.assert_lease_renews();
    // No write when nothing changed: the patch's own watch event did not cause another one.
    assert_eq!(rv(&s), before, "the Gateway was written again");
    assert!(s.log_text().contains("Kubernetes mode"), "{}", s.log_text());
    // The CSR the daemon submitted: client signer and usages, as raven-node's identity; no
    // server certificate for a node that is no tunnel server.
    let (csrs, _) = wait_for(Duration::from_secs(20), "the proxy client CSR", || {
        let list = s
            .api
            .get_json("/apis/certificates.k8s.io/v1/certificatesigningrequests")
            .map_err(|e| e.to_string())?
            .ok_or("no CSR list")?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok((!items.is_empty()).then_some(items))
    })
    .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", s.log_text()));
    let csr = &csrs[0];
    assert_eq!(csrs.len(), 1, "{csrs:?}");
    assert_eq!(
        csr["spec"]["signerName"], "raven.openyurt.io/proxy-client",
        "{csr}"
    );
    assert_eq!(csr["spec"]["username"], sa_user().name.as_str(), "{csr}");
    assert_eq!(
        csr["spec"]["usages"],
        json!(["digital signature", "client auth"]),
        "{csr}"
    );
    assert!(
        csr["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("raven-proxy-client-{NODE}-"))),
        "{csr}"
    );
    drop(daemon);
    s.cleanup();
}

/// A one-shot-per-connection HTTP server answering `body` (the public IP discovery service).
fn answer_forever(listener: TcpListener, body: &'static str) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
}

fn spec_public_ip(s: &Setup) -> Result<Option<String>, String> {
    let gw = s
        .api
        .get_json(&format!("{GW}/gw-nk"))
        .map_err(|e| e.to_string())?
        .ok_or("no Gateway")?;
    match gw["spec"]["endpoints"][0]["publicIP"].as_str() {
        Some(ip) if !ip.is_empty() => Ok(Some(ip.to_owned())),
        other => Err(format!("publicIP is {other:?}")),
    }
}

#[test]
fn kube_mode_writes_the_public_ip_from_the_load_balancer_then_from_discovery() {
    let s = Setup::new(253);
    // Active endpoint without a publicIP, exposed through a LoadBalancer.
    let mut gw = s.gateway();
    for (part, list) in [("spec", "endpoints"), ("status", "activeEndpoints")] {
        gw[part][list][0]
            .as_object_mut()
            .expect("endpoint")
            .remove("publicIP");
    }
    gw["spec"]["exposeType"] = json!("LoadBalancer");
    s.api
        .admin("POST", GW, Some(&gw.to_string()))
        .expect("create Gateway");
    // Status is a subresource: create drops it, the controller writes it separately.
    let status = json!({"status": gw["status"].clone()});
    s.api
        .admin(
            "PATCH",
            &format!("{GW}/gw-nk/status"),
            Some(&status.to_string()),
        )
        .expect("Gateway status");
    // The controller's tunnel Service for this endpoint, with an ingress IP.
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "x-raven-tunnel-svc-gw-nk-1", "namespace": "kube-system",
            "labels": {"raven.openyurt.io/gateway": "gw-nk",
                       "raven.openyurt.io/gateway-type": "tunnel",
                       "raven.openyurt.io/endpoints-name": NODE}},
        "spec": {"type": "LoadBalancer",
                 "ports": [{"name": "tunnel", "port": 4500, "protocol": "UDP"}]},
    });
    let svcs = "/api/v1/namespaces/kube-system/services";
    s.api
        .admin("POST", svcs, Some(&svc.to_string()))
        .expect("create Service");
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.20"}]}}});
    s.api
        .admin(
            "PATCH",
            &format!("{svcs}/x-raven-tunnel-svc-gw-nk-1/status"),
            Some(&status.to_string()),
        )
        .expect("Service ingress");
    // The discovery service, reachable from the node namespace (host side of its veth).
    let host_ip = s.node_ip.replace(".0.2", ".0.1");
    let listener = TcpListener::bind((host_ip.as_str(), 0)).expect("discovery listen");
    let url = format!(
        "http://{host_ip}:{}/ip",
        listener.local_addr().expect("addr").port()
    );
    answer_forever(listener, "203.0.113.44\n");

    let daemon = s.start(&["--public-ip-url", &url]);
    let (ip, took) = wait_for(Duration::from_secs(30), "publicIP from the Service", || {
        spec_public_ip(&s)
    })
    .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", s.log_text()));
    assert_eq!(
        ip, "198.51.100.20",
        "the LoadBalancer ingress wins over discovery"
    );
    eprintln!("publicIP from the LoadBalancer within {took:?}");

    // Exposed by its own public IP now, and the IP cleared: discovery fills it.
    let patch = json!({"spec": {"exposeType": "PublicIP", "endpoints": [{
        "nodeName": NODE, "type": "tunnel", "port": 4500, "underNAT": false,
        "config": gw["spec"]["endpoints"][0]["config"].clone()}]}});
    s.api
        .admin("PATCH", &format!("{GW}/gw-nk"), Some(&patch.to_string()))
        .expect("clear publicIP");
    let (ip, took) =
        wait_for(
            Duration::from_secs(30),
            "publicIP from discovery",
            || match spec_public_ip(&s)? {
                Some(ip) if ip != "198.51.100.20" => Ok(Some(ip)),
                other => Err(format!("publicIP is {other:?}")),
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", s.log_text()));
    assert_eq!(ip, "203.0.113.44");
    eprintln!("publicIP from discovery within {took:?}");
    drop(daemon);
    s.cleanup();
}

#[test]
fn kube_mode_raises_an_event_on_a_gateway_whose_endpoint_has_no_key() {
    let s = Setup::new(254);
    s.api
        .admin("POST", GW, Some(&s.gateway().to_string()))
        .expect("create Gateway");
    let status = json!({"status": s.gateway()["status"].clone()});
    s.api
        .admin(
            "PATCH",
            &format!("{GW}/gw-nk/status"),
            Some(&status.to_string()),
        )
        .expect("Gateway status");
    // Another domain whose active endpoint never published its WireGuard key.
    let endpoint = json!({"nodeName": "b1", "type": "tunnel", "port": 4500,
        "publicIP": "192.0.2.50", "underNAT": false});
    let bad = json!({
        "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-nokey"},
        "spec": {"proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 1},
                 "endpoints": [endpoint]},
    });
    s.api
        .admin("POST", GW, Some(&bad.to_string()))
        .expect("create the bad Gateway");
    let status = json!({"status": {
        "nodes": [{"nodeName": "b1", "privateIP": "172.16.9.1", "subnets": ["10.245.9.0/24"]}],
        "activeEndpoints": [endpoint]}});
    s.api
        .admin(
            "PATCH",
            &format!("{GW}/gw-nokey/status"),
            Some(&status.to_string()),
        )
        .expect("bad Gateway status");

    let daemon = s.start(&[]);
    let (event, took) = wait_for(Duration::from_secs(30), "an Event on gw-nokey", || {
        let list = s
            .api
            .get_json("/api/v1/namespaces/default/events")
            .map_err(|e| e.to_string())?
            .ok_or("no event list")?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let list = list.to_string();
        let found = items
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "gw-nokey");
        match found {
            Some(e) => Ok(Some(e)),
            None => Err(format!("no Event regarding gw-nokey yet; events: {list}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n--- raven-node log ---\n{}", s.log_text()));
    eprintln!("Event raised within {took:?}: {event}");
    assert_eq!(event["reason"], "MissingPublicKey", "{event}");
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["reportingComponent"], "raven-node", "{event}");
    assert_eq!(event["reportingInstance"], NODE, "{event}");
    assert_eq!(event["involvedObject"]["kind"], "Gateway", "{event}");
    let note = event["message"].as_str().unwrap_or_default();
    assert!(
        note.contains("b1"),
        "the message names the endpoint node: {note}"
    );
    // The good part still applied: the Lease renews only after a successful apply.
    s.assert_lease_renews();
    drop(daemon);
    s.cleanup();
}
