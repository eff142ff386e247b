//! The proxy front's kubelet client certificate through the CSR API, on a real
//! kube-apiserver 1.20.2 with the real raven-controller approving and the real
//! kube-controller-manager signing with the cluster CA (`kubernetes.io/kube-apiserver-client`),
//! as in a cluster. Replaces the Secret every node used to mount:
//! - a proxy server (the active proxy endpoint of the exposed Gateway, elected by the
//!   controller) gets `CN=raven-proxy-front:<node>, O=raven:proxy-fronts`, signed by the cluster
//!   CA; kube-apiserver authenticates it, and `deploy/rbac/node` lets it reach the kubelet API
//!   and nothing else;
//! - an edge node is denied (`NotProxyServer`), and so is the cloud node once its Gateway is no
//!   longer exposed;
//! - other users' requests to that signer are left alone (never approved or denied);
//! - raven-node's wiring (`daemon::proxy_certs::ProxyCsr`) requests it with the server role and
//!   deletes it when the role goes.

mod csr_support;
use std::path::Path;
use std::process::Command;

use csr_support::{T, cfg, openssl, refused_reason, rt};
use raven_api::gateway::v1beta1::Gateway;
use raven_node::daemon::proxy_certs::{CsrSettings, ProxyCsr};
use raven_node::proxy::certs_kube::{self, CertKind};
use raven_tests::cluster_signer::request_as_cert;
use raven_tests::csr_cluster::{CsrCluster, GATEWAYS as GW, GatewayNode, node_client};
use raven_tests::kube::{ADMIN_TOKEN, KubeApiServer, wait_for};
use serde_json::{Value, json};

const CLOUD: &str = "fc-cloud-1";
const EDGE: &str = "fc-edge-1";
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// The Gateways as the API server has them.
fn gateways(api: &KubeApiServer) -> Vec<Gateway> {
    let list = api.get_json(GW).expect("list").expect("gateways");
    serde_json::from_value(list["items"].clone()).expect("gateways")
}

/// What kube-apiserver's authorizer says the certificate's holder may do.
fn may(api: &KubeApiServer, pair: &Path, verb: &str, resource: &str, sub: &str) -> bool {
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "subresource": sub}}});
    let r = request_as_cert(
        api,
        pair,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(&review.to_string()),
    )
    .expect("SelfSubjectAccessReview");
    assert_eq!(
        r.status, 201,
        "the certificate must authenticate: {}",
        r.body
    );
    let v: Value = r.json().expect("JSON");
    v["status"]["allowed"].as_bool().unwrap_or(false)
}

#[test]
fn front_certificates_go_to_proxy_servers_only_and_are_signed_by_the_cluster() {
    let mut c = CsrCluster::start(&[
        GatewayNode {
            name: CLOUD,
            ip: "192.168.50.1".into(),
            gateway: "gw-cloud",
        },
        GatewayNode {
            name: EDGE,
            ip: "192.168.51.1".into(),
            gateway: "gw-edge",
        },
    ])
    .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let api = &c.api;
    c.proxy_gateway("gw-cloud", CLOUD, Some("203.0.113.10"), 10262, None)
        .unwrap_or_else(|e| panic!("{e}"));
    c.proxy_gateway("gw-edge", EDGE, None, 10262, None)
        .unwrap_or_else(|e| panic!("{e}"));

    // Someone else's request to the same signer (an administrator's own user): never ours.
    let foreign = new_request("/CN=alice");
    let foreign_csr = client_signer_csr("alice-client", &foreign);
    api.admin("POST", CSRS, Some(&foreign_csr.to_string()))
        .expect("foreign CSR");

    let dir = tempfile::tempdir().expect("tmp");
    let rt = rt();
    let (cloud, edge) = rt.block_on(async {
        (
            node_client(
                api,
                &format!("system:node:{CLOUD}"),
                &format!("token-{CLOUD}"),
            )
            .await,
            node_client(
                api,
                &format!("system:node:{EDGE}"),
                &format!("token-{EDGE}"),
            )
            .await,
        )
    });

    // The proxy server gets it, signed by the cluster CA (kube-controller-manager).
    let front = cfg(CLOUD, CertKind::Front, &dir.path().join("cloud"));
    std::fs::create_dir_all(&front.dir).expect("dir");
    rt.block_on(certs_kube::request_once(&cloud, &front))
        .unwrap_or_else(|e| {
            let kcm = c.signer.kcm.log_text();
            panic!("front certificate for the proxy server: {e}\nkube-controller-manager:\n{kcm}\ncontroller:\n{}", c.controller.log_text())
        });
    let pair = front.pair_path();
    let ca = c.signer.ca.cert();
    let out = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        &ca.to_string_lossy(),
        &pair.to_string_lossy(),
    ]);
    assert!(out.contains(": OK"), "{out}");
    let subject = openssl(&["x509", "-in", &pair.to_string_lossy(), "-noout", "-subject"]);
    assert!(
        subject.contains("CN = raven-proxy-front:fc-cloud-1")
            && subject.contains("O = raven:proxy-fronts"),
        "{subject}"
    );
    assert!(!front.ca_path().exists(), "no CA file for the front");

    // kube-apiserver authenticates it; the RBAC of deploy/rbac/node gives the kubelet API only.
    assert!(may(api, &pair, "create", "nodes", "proxy"), "nodes/proxy");
    assert!(may(api, &pair, "get", "nodes", "metrics"), "nodes/metrics");
    assert!(!may(api, &pair, "get", "secrets", ""), "secrets");
    assert!(!may(api, &pair, "get", "nodes", ""), "nodes");
    let r = request_as_cert(api, &pair, "GET", "/api/v1/secrets", None).expect("GET");
    assert_eq!(r.status, 403, "the front's identity reads no API object");

    // The proxy server smuggles a second request behind its own: a mislabelled END line makes
    // kube-controller-manager (Go's PEM reader) skip the first block and sign the second, for a
    // cluster administrator. Denied as a whole, never signed.
    let own = new_request("/CN=raven-proxy-front:fc-cloud-1/O=raven:proxy-fronts");
    let admin = new_request("/CN=mallory/O=kubeadm:cluster-admins");
    let smuggled = format!(
        "{}{admin}",
        own.replace("-----END CERTIFICATE REQUEST-----", "-----END X-----")
    );
    let smuggling = client_signer_csr("smuggled", &smuggled);
    let r = api
        .request(
            &format!("token-{CLOUD}"),
            "POST",
            CSRS,
            Some(&smuggling.to_string()),
        )
        .expect("POST");
    assert_eq!(r.status, 201, "{}", r.body);
    let (answer, _) = wait_for(T, "the smuggling CSR decided", || {
        let v = api
            .get_json(&format!("{CSRS}/smuggled"))
            .map_err(|e| e.to_string())?
            .ok_or("gone")?;
        Ok(v["status"]["conditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
            .then_some(v))
    })
    .unwrap_or_else(|e| panic!("{e}\ncontroller:\n{}", c.controller.log_text()));
    let conditions = &answer["status"]["conditions"];
    assert_eq!(conditions[0]["type"], "Denied", "{answer}");
    assert_eq!(conditions[0]["reason"], "BadRequest", "{answer}");
    assert!(answer["status"].get("certificate").is_none(), "{answer}");

    // An edge node is not a proxy server: denied, nothing written.
    let edge_front = cfg(EDGE, CertKind::Front, &dir.path().join("edge"));
    std::fs::create_dir_all(&edge_front.dir).expect("dir");
    assert_eq!(
        refused_reason(rt.block_on(certs_kube::request_once(&edge, &edge_front))),
        "NotProxyServer"
    );
    assert!(!edge_front.pair_path().exists());

    // The foreign request was seen (the controller acted on later ones) and left alone.
    let alice = api
        .get_json(&format!("{CSRS}/alice-client"))
        .expect("GET")
        .expect("alice-client");
    assert!(
        alice["status"]["conditions"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "someone else's request must be left alone: {alice}"
    );

    // raven-node's wiring: requested with the server role, deleted when it goes.
    let mut settings = CsrSettings::new(dir.path().join("daemon"));
    settings.front = true;
    settings.wait_timeout = T;
    let pair = settings.front_pair_path(CLOUD);
    let csr = ProxyCsr::start(rt.handle().clone(), cloud.clone(), CLOUD, settings);
    csr.update(&gateways(api));
    wait_for(T, "the daemon's front certificate", || {
        Ok(std::fs::read_to_string(&pair)
            .ok()
            .filter(|p| p.contains("PRIVATE KEY")))
    })
    .unwrap_or_else(|e| panic!("{e}\ncontroller:\n{}", c.controller.log_text()));
    let subject = openssl(&["x509", "-in", &pair.to_string_lossy(), "-noout", "-subject"]);
    assert!(
        subject.contains("raven-proxy-front:fc-cloud-1"),
        "{subject}"
    );

    // The cloud Gateway stops being exposed: the node drops the certificate, and the
    // controller refuses it a new one.
    let patch = json!({"spec": {"exposeType": null}});
    api.request(
        ADMIN_TOKEN,
        "PATCH",
        &format!("{GW}/gw-cloud"),
        Some(&patch.to_string()),
    )
    .expect("PATCH");
    wait_for(T, "gw-cloud not exposed", || {
        Ok(gateways(api)
            .iter()
            .all(|g| !g.proxy_server_on(CLOUD))
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    csr.update(&gateways(api));
    wait_for(T, "the front certificate deleted with the role", || {
        Ok((!pair.exists()).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // One left from before a restart (the role lost meanwhile) goes at the next update too.
    std::fs::write(&pair, "left over").expect("stale file");
    csr.update(&gateways(api));
    assert!(!pair.exists(), "a left-over front certificate is deleted");
    let again = cfg(CLOUD, CertKind::Front, &dir.path().join("again"));
    std::fs::create_dir_all(&again.dir).expect("dir");
    assert_eq!(
        refused_reason(rt.block_on(certs_kube::request_once(&cloud, &again))),
        "NotProxyServer"
    );
    drop(csr);
    assert!(c.controller.running(), "{}", c.controller.log_text());
}

/// A new PKCS#10 request (PEM) for `subject` (openssl's `/CN=../O=..` form), key thrown away.
fn new_request(subject: &str) -> String {
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        subject,
    ])
}

/// A CSR object `name` for Kubernetes' client signer carrying `request_pem` as is.
fn client_signer_csr(name: &str, request_pem: &str) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64(request_pem.as_bytes()),
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["digital signature", "client auth"]}})
}

fn base64(b: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b)
        .expect("write");
    let out = child.wait_with_output().expect("base64");
    String::from_utf8(out.stdout).expect("utf8")
}
