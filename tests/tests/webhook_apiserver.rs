//! raven-controller's Gateway webhooks (defaulting, validation, CRD conversion) on a real
//! kube-apiserver 1.20.2: the CRD, RBAC and webhook manifests come from `deploy/`, the
//! controller runs as its ServiceAccount (so a missing RBAC rule fails the test), and the API
//! server calls the webhooks through the Service `kube-system/raven-controller-webhook`.
//!
//! How the API server reaches a controller running on this host: kube-apiserver resolves a
//! webhook Service to its ClusterIP, which nothing routes without kube-proxy. Started with
//! `--enable-aggregator-routing=true` it resolves the Service through its Endpoints instead
//! (`ResolveEndpoint` in k8s.io/apiserver), matching the Service port to the Endpoints port by
//! name, and still verifies the certificate for `raven-controller-webhook.kube-system.svc`.
//! Endpoints may not hold loopback addresses (API validation), so the controller listens on
//! this host's first global address and the test writes that address into the Endpoints (no
//! Pods, no endpoints controller: the manual Endpoints stay). The Service and webhook
//! configurations are exactly the files in `deploy/webhooks/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use raven_tests::kube::{ADMIN_TOKEN, ControllerProcess, KubeApiServer, controller_user, wait_for};
use serde_json::{Value, json};

const BETA: &str = "/apis/raven.openyurt.io/v1beta1/gateways";
const ALPHA: &str = "/apis/raven.openyurt.io/v1alpha1/gateways";
const KS: &str = "/api/v1/namespaces/kube-system";
const CRD: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.raven.openyurt.io";
const VWC: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const MWC: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first global address of this host (IPv4 preferred): Endpoints refuse loopback.
fn host_address() -> String {
    let out = Command::new("ip")
        .args(["-j", "addr", "show", "scope", "global"])
        .output()
        .expect("run `ip -j addr` (iproute2)");
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j output is JSON");
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["operstate"] != "DOWN")
        .flat_map(|i| i["addr_info"].as_array().cloned().unwrap_or_default())
    {
        let (Some(fam), Some(ip)) = (a["family"].as_str(), a["local"].as_str()) else {
            continue;
        };
        match fam {
            "inet" => v4.push(ip.to_owned()),
            "inet6" => v6.push(ip.to_owned()),
            _ => {}
        }
    }
    v4.into_iter().chain(v6).next().unwrap_or_else(|| {
        panic!(
            "this host has no global IP address: the API server can only reach a webhook \
             through Endpoints, which refuse loopback addresses"
        )
    })
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip.parse::<std::net::IpAddr>().expect("ip"), 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn socket(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Collection path of a manifest in `deploy/webhooks/`.
fn collection(yaml: &str) -> &'static str {
    let kind = yaml
        .lines()
        .find_map(|l| l.strip_prefix("kind: "))
        .map(str::trim)
        .expect("manifest kind");
    match kind {
        "Service" => "/api/v1/namespaces/kube-system/services",
        "ValidatingWebhookConfiguration" => VWC,
        "MutatingWebhookConfiguration" => MWC,
        other => panic!("unexpected kind {other} in deploy/webhooks"),
    }
}

struct Cluster {
    api: KubeApiServer,
    kubeconfig: PathBuf,
    ip: String,
}

/// API server with aggregator routing, the Gateway CRD, RBAC and webhooks from `deploy/`.
fn setup() -> Cluster {
    let user = controller_user();
    let api = KubeApiServer::start_with_args(
        std::slice::from_ref(&user),
        &["--enable-aggregator-routing=true"],
    )
    .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    let crd = std::fs::read_to_string(repo().join("deploy/crds/raven.openyurt.io_gateways.yaml"))
        .expect("read Gateway CRD");
    api.create_crd(&crd).expect("Gateway CRD");
    api.apply_dir(&repo().join("deploy/rbac"))
        .expect("apply RBAC");
    let kustomization = std::fs::read_to_string(repo().join("deploy/webhooks/kustomization.yaml"))
        .expect("deploy/webhooks/kustomization.yaml");
    let files: Vec<&str> = kustomization
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(files.len(), 3, "kustomization lists {files:?}");
    for f in files {
        let yaml = std::fs::read_to_string(repo().join("deploy/webhooks").join(f))
            .unwrap_or_else(|e| panic!("read deploy/webhooks/{f}: {e}"));
        api.admin("POST", collection(&yaml), Some(&yaml))
            .unwrap_or_else(|e| panic!("apply {f}: {e}"));
    }
    let kubeconfig = api
        .kubeconfig("raven-controller", &user.token)
        .expect("kubeconfig");
    Cluster {
        api,
        kubeconfig,
        ip: host_address(),
    }
}

/// Points the webhook Service at these ports of the host (one subset per replica, all named
/// like the Service port, so the API server spreads calls over them).
fn set_endpoints(c: &Cluster, ports: &[u16]) {
    let subsets: Vec<Value> = ports
        .iter()
        .map(|p| json!({"addresses": [{"ip": c.ip}], "ports": [{"name": "https", "port": p}]}))
        .collect();
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "raven-controller-webhook", "namespace": "kube-system"},
        "subsets": subsets});
    c.api
        .admin("POST", &format!("{KS}/endpoints"), Some(&ep.to_string()))
        .expect("webhook Endpoints");
}

fn start_controller(c: &Cluster, port: u16, tag: &str) -> ControllerProcess {
    let bind = socket(&c.ip, port);
    ControllerProcess::start(
        &c.kubeconfig,
        c.api.dir().join(format!("controller-{tag}.log")),
        &[
            "--no-nodepools",
            "--webhook-bind-address",
            &bind,
            "--webhook-recheck-seconds",
            "2",
            "--identity",
            tag,
        ],
    )
    .expect("start raven-controller")
}

fn ca_bundles(c: &Cluster) -> Vec<String> {
    let get = |p: &str| c.api.get_json(p).expect("GET").unwrap_or(Value::Null);
    let vwc = get(&format!("{VWC}/raven-controller-webhook"));
    let mwc = get(&format!("{MWC}/raven-controller-webhook"));
    let crd = get(CRD);
    [
        vwc["webhooks"][0]["clientConfig"]["caBundle"].clone(),
        mwc["webhooks"][0]["clientConfig"]["caBundle"].clone(),
        crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"].clone(),
    ]
    .iter()
    .map(|v| v.as_str().unwrap_or_default().to_owned())
    .collect()
}

/// Waits until the three CA bundles equal the Secret's `ca.crt`; returns the Secret.
fn wait_injected(c: &Cluster, ctl: &[&ControllerProcess]) -> Value {
    let (secret, took) = wait_for(T, "CA bundle injected from the Secret", || {
        let Some(s) = c
            .api
            .get_json(&format!("{KS}/secrets/raven-controller-webhook-tls"))
            .map_err(|e| e.to_string())?
        else {
            return Err("no Secret yet".into());
        };
        let ca = s["data"]["ca.crt"].as_str().unwrap_or_default().to_owned();
        let bundles = ca_bundles(c);
        if !ca.is_empty() && bundles.iter().all(|b| *b == ca) {
            Ok(Some(s))
        } else {
            Err(format!(
                "bundles {:?}",
                bundles.iter().map(String::len).collect::<Vec<_>>()
            ))
        }
    })
    .unwrap_or_else(|e| {
        let logs: Vec<String> = ctl.iter().map(|c| c.log_text()).collect();
        panic!("{e}\ncontroller logs:\n{}", logs.join("\n-----\n"))
    });
    eprintln!("CA bundle injected after {took:?}");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    secret
}

/// POST/PUT until the API server stops failing to call the webhook (it picks up new webhook
/// configurations and CA bundles asynchronously); returns the final response.
fn write_when_reachable(
    c: &Cluster,
    method: &str,
    path: &str,
    body: &Value,
) -> raven_tests::kube::Response {
    let (r, _) = wait_for(T, &format!("{method} {path} reaching the webhooks"), || {
        let r = c
            .api
            .request(ADMIN_TOKEN, method, path, Some(&body.to_string()))
            .map_err(|e| e.to_string())?;
        let unreachable = r.status >= 500
            || r.body.contains("failed calling webhook")
            || r.body.contains("x509")
            || r.body.contains("conversion webhook");
        if unreachable {
            Err(format!("HTTP {}: {}", r.status, r.body))
        } else {
            Ok(Some(r))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    r
}

fn get(c: &Cluster, path: &str) -> Value {
    let (v, _) = wait_for(T, &format!("GET {path}"), || {
        let r = c
            .api
            .request(ADMIN_TOKEN, "GET", path, None)
            .map_err(|e| e.to_string())?;
        if r.ok() {
            r.json().map(Some).map_err(|e| e.to_string())
        } else {
            Err(format!("HTTP {}: {}", r.status, r.body))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    v
}

#[test]
fn webhooks_default_validate_and_convert_through_the_service() {
    let c = setup();
    let port = free_port(&c.ip);
    set_endpoints(&c, &[port]);
    let ctl = start_controller(&c, port, "a");
    wait_injected(&c, &[&ctl]);

    // Defaulting on a v1beta1 create: selector label and the type's default ports.
    let beta = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-beta"},
        "spec": {"exposeType": "PublicIP",
            "proxyConfig": {"Replicas": 1, "proxyHTTPPort": "10255,9100"},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": [
                {"nodeName": "n1", "type": "proxy", "publicIP": "1.2.3.4"},
                {"nodeName": "n1", "type": "tunnel", "publicIP": "1.2.3.4", "config": {"publicKey": "k1"}},
                {"nodeName": "n2", "type": "tunnel", "port": 4600, "publicIP": "1.2.3.5"}]}});
    let r = write_when_reachable(&c, "POST", BETA, &beta);
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = get(&c, &format!("{BETA}/gw-beta"));
    assert_eq!(
        stored["spec"]["nodeSelector"],
        json!({"matchLabels": {"raven.openyurt.io/gateway": "gw-beta"}})
    );
    let ports: Vec<i64> = stored["spec"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["port"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        ports,
        vec![10262, 4500, 4600],
        "default ports, explicit port kept"
    );

    // v1beta1 → v1alpha1 → v1beta1 without loss: read as v1alpha1 (conversion webhook), write
    // that v1alpha1 object back unchanged, read as v1beta1: the spec is what was stored.
    let alpha = get(&c, &format!("{ALPHA}/gw-beta"));
    assert_eq!(alpha["apiVersion"], "raven.openyurt.io/v1alpha1");
    assert_eq!(
        alpha["spec"]["endpoints"].as_array().map(Vec::len),
        Some(3),
        "{alpha}"
    );
    let r = write_when_reachable(&c, "PUT", &format!("{ALPHA}/gw-beta"), &alpha);
    assert_eq!(r.status, 200, "{}", r.body);
    let again = get(&c, &format!("{BETA}/gw-beta"));
    assert_eq!(
        again["spec"], stored["spec"],
        "v1beta1 spec survives a v1alpha1 round trip"
    );
    assert!(
        again["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| !a.keys().any(|k| k.starts_with("raven.openyurt.io/v1beta1"))),
        "no conversion annotation left on the v1beta1 object: {}",
        again["metadata"]
    );

    // v1alpha1 create → read as v1beta1 (defaulted) → read back as v1alpha1: same spec.
    let alpha_new = json!({"apiVersion": "raven.openyurt.io/v1alpha1", "kind": "Gateway",
        "metadata": {"name": "gw-alpha"},
        "spec": {"exposeType": "LoadBalancer",
            "endpoints": [{"nodeName": "e1", "publicIP": "5.6.7.8", "config": {"a": "b"}}]}});
    let r = write_when_reachable(&c, "POST", ALPHA, &alpha_new);
    assert_eq!(r.status, 201, "{}", r.body);
    let as_beta = get(&c, &format!("{BETA}/gw-alpha"));
    assert_eq!(as_beta["spec"]["endpoints"][0]["type"], "tunnel");
    assert_eq!(as_beta["spec"]["endpoints"][0]["port"], 4500);
    assert_eq!(
        as_beta["spec"]["nodeSelector"]["matchLabels"]["raven.openyurt.io/gateway"], "gw-alpha",
        "defaulting applies to v1alpha1 writes too (matchPolicy Equivalent)"
    );
    let as_alpha = get(&c, &format!("{ALPHA}/gw-alpha"));
    assert_eq!(
        as_alpha["spec"]["endpoints"],
        alpha_new["spec"]["endpoints"]
    );
    assert_eq!(as_alpha["spec"]["exposeType"], "LoadBalancer");

    // Validation: rejected with the API crate's message, nothing stored.
    let invalid = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-bad"},
        "spec": {"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 2},
            "endpoints": [{"nodeName": "n1", "type": "tunnel", "publicIP": "invalid-ip"}]}});
    let r = write_when_reachable(&c, "POST", BETA, &invalid);
    assert_eq!(r.status, 422, "{}", r.body);
    let msg = r.json().expect("status")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for fragment in [
        "admission webhook \"validate.gateway.v1beta1.raven.openyurt.io\" denied the request",
        "Gateway.raven.openyurt.io \"gw-bad\" is invalid",
        "spec.tunnelConfig.Replicas: Invalid value: 2",
        "spec.endpoints[0].publicIP: Invalid value: \"invalid-ip\"",
    ] {
        assert!(msg.contains(fragment), "{fragment:?} not in {msg}");
    }
    assert!(
        c.api
            .get_json(&format!("{BETA}/gw-bad"))
            .expect("GET")
            .is_none()
    );
    // Through v1alpha1 too (converted, then validated).
    let invalid_alpha = json!({"apiVersion": "raven.openyurt.io/v1alpha1", "kind": "Gateway",
        "metadata": {"name": "gw-bad2"},
        "spec": {"endpoints": [{"nodeName": "", "publicIP": "1.1.1.1"}]}});
    let r = write_when_reachable(&c, "POST", ALPHA, &invalid_alpha);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("nodeName"), "{}", r.body);

    // Fail-closed: with the webhook gone, Gateway writes are refused.
    drop(ctl);
    let r = c
        .api
        .request(
            ADMIN_TOKEN,
            "POST",
            BETA,
            Some(
                &json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
                    "metadata": {"name": "gw-down"}, "spec": {}})
                .to_string(),
            ),
        )
        .expect("request");
    assert!(
        r.status >= 500,
        "write without webhook must fail: {}",
        r.body
    );
    assert!(r.body.contains("failed calling webhook"), "{}", r.body);
}

/// Two replicas start together: one Secret (the create race has one winner, the loser reads it
/// back), both serve a certificate that the injected CA bundle verifies, and API calls spread
/// over both succeed.
#[test]
fn two_replicas_share_one_certificate() {
    let c = setup();
    let (p1, p2) = (free_port(&c.ip), free_port(&c.ip));
    set_endpoints(&c, &[p1, p2]);
    let a = start_controller(&c, p1, "a");
    let b = start_controller(&c, p2, "b");
    let secret = wait_injected(&c, &[&a, &b]);
    let ca = {
        use std::io::Write;
        let raw = secret["data"]["ca.crt"].as_str().expect("ca.crt");
        let pem = Command::new("base64")
            .args(["-d"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin.take().expect("stdin").write_all(raw.as_bytes())?;
                ch.wait_with_output()
            })
            .expect("base64 -d");
        let path = c.api.dir().join("webhook-ca.pem");
        std::fs::write(&path, pem.stdout).expect("write CA");
        path
    };
    let host = "raven-controller-webhook.kube-system.svc";
    for (port, ctl) in [(p1, &a), (p2, &b)] {
        wait_for(
            T,
            &format!("replica on {port} serving a verifiable certificate"),
            || {
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "5", "--cacert"])
                    .arg(&ca)
                    .arg("--resolve")
                    .arg(format!("{host}:{port}:{}", c.ip))
                    .arg(format!("https://{host}:{port}/healthz"))
                    .output()
                    .map_err(|e| e.to_string())?;
                if out.status.success() && out.stdout == b"ok" {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "{}{}\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr),
                        ctl.log_text()
                    ))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let logs = format!("{}\n{}", a.log_text(), b.log_text());
    let issued = logs.matches("issuing webhook certificates").count();
    assert!(issued >= 1, "nobody issued:\n{logs}");
    // Every write and read (spread over both subsets at random) succeeds.
    for i in 0..12 {
        let gw = json!({"apiVersion": "raven.openyurt.io/v1alpha1", "kind": "Gateway",
            "metadata": {"name": format!("gw-{i}")},
            "spec": {"endpoints": [{"nodeName": format!("n{i}"), "publicIP": "1.2.3.4"}]}});
        let r = write_when_reachable(&c, "POST", ALPHA, &gw);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let list = get(&c, ALPHA);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(12));
}

/// raven-node's Gateway writes are bound to its node (`webhook/node_writes.rs`): with the
/// DaemonSet's identity (the raven-node ServiceAccount, pod-bound tokens from the TokenRequest
/// API, RBAC from `deploy/rbac/node`), a node's agent may write its own tunnel endpoint's public
/// key and IP, and nothing else; a token bound to no pod may write nothing; administrators are
/// not restricted.
#[test]
fn node_agents_change_only_their_own_tunnel_endpoints() {
    let c = setup();
    c.api
        .apply_dir(&repo().join("deploy/rbac/node"))
        .expect("apply the node RBAC");
    let port = free_port(&c.ip);
    set_endpoints(&c, &[port]);
    let ctl = start_controller(&c, port, "nodes");
    wait_injected(&c, &[&ctl]);
    // (An empty publicIP reaches the API server's schema check as null: leave it out.)
    let endpoints = |key_a: &str, ip_b: &str| {
        let mut b = json!({"nodeName": "node-b", "type": "tunnel", "port": 4500});
        if !ip_b.is_empty() {
            b["publicIP"] = json!(ip_b);
        }
        json!([{"nodeName": "node-a", "type": "tunnel", "port": 4500, "config": {"publicKey": key_a}},
               b,
               {"nodeName": "node-a", "type": "proxy", "port": 10262}])
    };
    let gw = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-nodes"},
        "spec": {"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1},
                 "endpoints": endpoints("key-a0", "")}});
    let r = write_when_reachable(&c, "POST", BETA, &gw);
    assert_eq!(r.status, 201, "{}", r.body);
    let token_a = c
        .api
        .raven_node_token(Some(("raven-node-a", "node-a")))
        .expect("token a");
    let token_b = c
        .api
        .raven_node_token(Some(("raven-node-b", "node-b")))
        .expect("token b");
    let unbound = c.api.raven_node_token(None).expect("unbound token");
    let path = format!("{BETA}/gw-nodes");
    // A merge patch carrying every endpoint, as raven-node's write-back sends it.
    let patch = |token: &str, body: Value| {
        c.api
            .request(token, "PATCH", &path, Some(&body.to_string()))
            .expect("PATCH")
    };
    let own_key = json!({"spec": {"endpoints": endpoints("key-a1", "")}});
    let cases = [
        (
            "node-a writes its own key",
            &token_a,
            own_key.clone(),
            200,
            "",
        ),
        (
            "node-b writes node-a's key",
            &token_b,
            json!({"spec": {"endpoints": endpoints("key-b", "")}}),
            403,
            "spec.endpoints[0]",
        ),
        (
            "node-b writes its own IP",
            &token_b,
            json!({"spec": {"endpoints": endpoints("key-a1", "203.0.113.2")}}),
            200,
            "",
        ),
        (
            "node-a exposes the Gateway",
            &token_a,
            json!({"spec": {"exposeType": "PublicIP"}}),
            403,
            "beyond its own",
        ),
        (
            "node-a labels the Gateway",
            &token_a,
            json!({"metadata": {"labels": {"x": "y"}}}),
            403,
            "metadata.labels",
        ),
        (
            "a token bound to no pod",
            &unbound,
            json!({"spec": {"endpoints": endpoints("key-u", "203.0.113.2")}}),
            403,
            "pod-bound",
        ),
    ];
    for (what, token, body, want, says) in cases {
        let r = patch(token, body);
        assert_eq!(r.status, want, "{what}: {}\n{}", r.body, ctl.log_text());
        assert!(r.body.contains(says), "{what}: {}", r.body);
    }
    let stored = get(&c, &path);
    assert_eq!(
        stored["spec"]["endpoints"],
        json!([{"nodeName": "node-a", "type": "tunnel", "port": 4500, "config": {"publicKey": "key-a1"}},
               {"nodeName": "node-b", "type": "tunnel", "port": 4500, "publicIP": "203.0.113.2"},
               {"nodeName": "node-a", "type": "proxy", "port": 10262}]),
        "only the allowed writes landed"
    );
    assert!(stored["spec"].get("exposeType").is_none(), "{stored}");
    // The pod behind node-a's token is gone: its token names no node any more.
    c.api
        .admin(
            "DELETE",
            "/api/v1/namespaces/kube-system/pods/raven-node-a?gracePeriodSeconds=0",
            None,
        )
        .expect("delete pod");
    let r = patch(
        &token_a,
        json!({"spec": {"endpoints": endpoints("key-a2", "203.0.113.2")}}),
    );
    assert!(
        r.status == 401 || r.status == 403,
        "deleted pod's token: {} {}",
        r.status,
        r.body
    );
    // Administrators are not restricted.
    let r = patch(ADMIN_TOKEN, json!({"spec": {"exposeType": "PublicIP"}}));
    assert_eq!(r.status, 200, "{}", r.body);
}
