//! Proxy certificates through the CSR API on a real kube-apiserver 1.20.2: raven-node's
//! helper (`raven_node::proxy::certs_kube`) requests, raven-controller (the binary, as its
//! ServiceAccount with the RBAC from `deploy/rbac`) approves and signs.
//!
//! Requesters: nodes as `system:node:<name>` in `system:nodes` (token-file users, the RBAC of
//! `deploy/rbac/node` bound to that group by the test), and the raven-node ServiceAccount with
//! real pod-bound tokens from the TokenRequest API (the production path).

mod csr_support;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use csr_support::{T, cfg, openssl, refused_reason, rt};
use raven_node::proxy::certs_kube::{self, CertKind, KubeCertConfig};
use raven_tests::csr_cluster::{CsrCluster, GatewayNode, node_client};
use raven_tests::kube::wait_for;
use serde_json::{Value, json};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// node-a is the proxy server (the elected proxy endpoint of exposed `gw-a`, public IP
/// 198.51.100.1); node-b the proxy endpoint of `gw-b`, not exposed.
fn setup() -> CsrCluster {
    let c = CsrCluster::start(&[
        GatewayNode {
            name: "node-a",
            ip: "10.0.0.1".into(),
            gateway: "gw-a",
        },
        GatewayNode {
            name: "node-b",
            ip: "10.0.0.2".into(),
            gateway: "gw-b",
        },
    ])
    .unwrap_or_else(|e| panic!("cannot start the CSR test cluster: {e}"));
    c.proxy_gateway("gw-a", "node-a", Some("198.51.100.1"), 10262, None)
        .and_then(|()| c.proxy_gateway("gw-b", "node-b", None, 10262, None))
        .unwrap_or_else(|e| panic!("{e}"));
    c
}

/// The pair file's certificate verifies against the CA file, for client or server auth.
fn assert_verifies(c: &KubeCertConfig, purpose: &str) -> String {
    let pair = c.pair_path().to_string_lossy().into_owned();
    let ca = c.ca_path().to_string_lossy().into_owned();
    let out = openssl(&["verify", "-purpose", purpose, "-CAfile", &ca, &pair]);
    assert!(out.contains(": OK"), "{out}");
    openssl(&[
        "x509",
        "-in",
        &pair,
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName,extendedKeyUsage",
    ])
}

#[test]
fn node_certificates_signed_for_own_node_denied_otherwise() {
    let c = setup();
    let dir = tempfile::tempdir().expect("tmp");
    let rt = rt();
    rt.block_on(async {
        let a = node_client(&c.api, "node-a", "token-node-a").await;
        let b = node_client(&c.api, "node-b", "token-node-b").await;

        // Node A for node A: signed, files verify, client usage only.
        let ca_cfg = cfg("node-a", CertKind::Client, &dir.path().join("a"));
        let issued = certs_kube::ensure(&a, &ca_cfg)
            .await
            .unwrap_or_else(|e| panic!("node-a client cert: {e}\n{}", c.controller.log_text()));
        let text = assert_verifies(&ca_cfg, "sslclient");
        assert!(text.contains("CN = raven-proxy-client:node-a"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(!text.contains("Server Authentication"), "{text}");
        assert!(
            issued.not_after - issued.not_before <= 3600 + 300,
            "{issued:?}"
        );
        // A second ensure reuses the files (no new CSR).
        let again = certs_kube::ensure(&a, &ca_cfg).await.expect("reuse");
        assert_eq!(again.serial, issued.serial);

        // Server certificate of the proxy server, with its own address and its elected
        // public IP.
        let mut srv = cfg("node-a", CertKind::Server, &dir.path().join("a"));
        srv.dns_names = vec!["node-a".into()];
        srv.ips = vec![
            "10.0.0.1".parse().expect("ip"),
            "198.51.100.1".parse().expect("ip"),
        ];
        certs_kube::ensure(&a, &srv)
            .await
            .unwrap_or_else(|e| panic!("node-a server cert: {e}"));
        let text = assert_verifies(&srv, "sslserver");
        assert!(text.contains("IP Address:10.0.0.1"), "{text}");
        assert!(text.contains("IP Address:198.51.100.1"), "{text}");
        // node-b is no proxy server (its Gateway is not exposed): no server certificate,
        // even for its own address.
        let mut srv_b = cfg("node-b", CertKind::Server, &dir.path().join("b-srv"));
        srv_b.dns_names = vec!["node-b".into()];
        srv_b.ips = vec!["10.0.0.2".parse().expect("ip")];
        assert_eq!(
            refused_reason(certs_kube::request_once(&b, &srv_b).await),
            "NotProxyServer"
        );
        // ... but not with another node's address.
        let mut srv_b_ip = srv.clone();
        srv_b_ip.dir = dir.path().join("a2");
        srv_b_ip.ips = vec!["10.0.0.2".parse().expect("ip")];
        assert_eq!(
            refused_reason(certs_kube::request_once(&a, &srv_b_ip).await),
            "BadSubjectAltNames"
        );

        // Node B asking for node A: denied with a reason, nothing written.
        let stolen = cfg("node-a", CertKind::Client, &dir.path().join("b"));
        let err = certs_kube::request_once(&b, &stolen).await;
        let msg = format!("{err:?}");
        assert_eq!(refused_reason(err), "NodeMismatch");
        assert!(msg.contains("node-b") && msg.contains("node-a"), "{msg}");
        assert!(!stolen.pair_path().exists());
    });

    // Wrong usages (client auth + server auth) from node A for node A: denied.
    let key = dir.path().join("k.pem");
    let req = dir.path().join("r.pem");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=raven-proxy-client:node-a",
        "-keyout",
        &key.to_string_lossy(),
        "-out",
        &req.to_string_lossy(),
    ]);
    let b64 = {
        let out = Command::new("base64")
            .arg("-w0")
            .arg(&req)
            .output()
            .expect("base64");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let post = |name: &str, signer: &str, usages: Value| {
        let body = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": b64, "signerName": signer, "usages": usages}});
        let r = c
            .api
            .request("token-node-a", "POST", CSRS, Some(&body.to_string()))
            .expect("POST CSR");
        assert_eq!(r.status, 201, "{}", r.body);
    };
    post(
        "wrong-usages",
        "raven.openyurt.io/proxy-client",
        json!(["digital signature", "client auth", "server auth"]),
    );
    let (cond, _) = wait_for(T, "wrong-usages denied", || {
        let v = c
            .api
            .get_json(&format!("{CSRS}/wrong-usages"))
            .map_err(|e| e.to_string())?
            .unwrap_or(Value::Null);
        let conds = v["status"]["conditions"].clone();
        match conds.as_array().and_then(|a| a.first()) {
            Some(cond) => Ok(Some(cond.clone())),
            None => Err(v["status"].to_string()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cond["type"], "Denied", "{cond}");
    assert_eq!(cond["reason"], "BadUsages", "{cond}");

    // A CSR of a foreign signer is never touched.
    post(
        "foreign",
        "example.com/other",
        json!(["digital signature", "client auth"]),
    );
    std::thread::sleep(Duration::from_secs(3));
    let v = c
        .api
        .get_json(&format!("{CSRS}/foreign"))
        .expect("GET")
        .expect("exists");
    assert!(v["status"].get("conditions").is_none(), "{}", v["status"]);
}

/// The production path: raven-node's ServiceAccount with pod-bound tokens from the
/// TokenRequest API. A pod on node-a gets node-a's certificate; a pod on node-b asking for
/// node-a is denied; a token bound to no pod is refused.
#[test]
fn pod_bound_service_account_tokens_bind_to_the_pod_node() {
    let c = setup();
    let tokens: Vec<String> = [("raven-node-a", "node-a"), ("raven-node-b", "node-b")]
        .into_iter()
        .map(|pod| c.api.raven_node_token(Some(pod)).expect("pod-bound token"))
        .collect();
    let unbound = c.api.raven_node_token(None).expect("unbound token");
    let dir = tempfile::tempdir().expect("tmp");
    rt().block_on(async {
        let pod_a = node_client(&c.api, "pod-a", &tokens[0]).await;
        let pod_b = node_client(&c.api, "pod-b", &tokens[1]).await;
        let free = node_client(&c.api, "unbound", &unbound).await;
        let a = cfg("node-a", CertKind::Client, &dir.path().join("a"));
        certs_kube::ensure(&pod_a, &a)
            .await
            .unwrap_or_else(|e| panic!("pod on node-a: {e}\n{}", c.controller.log_text()));
        let text = assert_verifies(&a, "sslclient");
        assert!(text.contains("raven-proxy-client:node-a"), "{text}");
        let stolen = cfg("node-a", CertKind::Client, &dir.path().join("b"));
        assert_eq!(
            refused_reason(certs_kube::request_once(&pod_b, &stolen).await),
            "NodeMismatch"
        );
        assert_eq!(
            refused_reason(certs_kube::request_once(&free, &stolen).await),
            "RequesterNotBound"
        );
    });
}

/// `run` renews before expiry without a restart: with a renewal point a few seconds into the
/// certificate's life, the file holds a new certificate (new serial, still valid) each time.
#[test]
fn certificates_renew_in_place() {
    let c = setup();
    let dir = tempfile::tempdir().expect("tmp");
    let rt = rt();
    let client = rt.block_on(node_client(&c.api, "node-a", "token-node-a"));
    let mut cfg = cfg("node-a", CertKind::Client, dir.path());
    // Lifetime is 3600 s + 300 s back-dating: renew ~4 s after issuance.
    cfg.renew_fraction = 304.0 / 3900.0;
    let updates = Arc::new(AtomicUsize::new(0));
    let seen = updates.clone();
    let task = rt.spawn(certs_kube::run(client, cfg.clone(), move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let mut serials = Vec::new();
    wait_for(
        Duration::from_secs(40),
        "three certificates in place",
        || {
            if let Some(cur) = certs_kube::current(&cfg)
                && serials.last() != Some(&cur.serial)
            {
                serials.push(cur.serial);
            }
            // The callback runs right after the file is written: wait for both.
            if serials.len() >= 3 && updates.load(Ordering::SeqCst) >= 3 {
                Ok(Some(()))
            } else {
                Err(format!("{serials:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_verifies(&cfg, "sslclient");
    task.abort();
}
