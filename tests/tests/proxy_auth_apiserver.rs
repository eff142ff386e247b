//! The proxy front side's Kubernetes-mode token check
//! (`raven_node::proxy::auth_kube::KubeTokenAuthenticator`) on a real kube-apiserver 1.20.2,
//! running as raven-node's ServiceAccount with the RBAC from `deploy/rbac/node`: a
//! ServiceAccount token with `nodes/proxy` permission passes, one without is denied, a
//! garbage token is not authenticated. The same answers come through the front side's
//! `Authenticator` trait object (what `raven-node run --proxy --proxy-front-*` uses).
//!
//! The same API server then backs the front side's Kubernetes `PodLocator`
//! (`raven_node::proxy::pods_kube`, RBAC `get pods` from `deploy/rbac/node`): kubelet
//! streaming paths reach the node in the Pod's `spec.nodeName` whatever `Host` says, and an
//! unknown Pod, an unscheduled one and one on an unknown node get a clear 404.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raven_node::proxy::front::{self, FrontConfig, FrontMetrics, FrontServices, TargetTls};
use raven_node::proxy::pods_kube::{KubePodLocator, PodCacheTtl};
use raven_node::proxy::{DialError, DialFuture, Dialer, ProxyStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use raven_node::proxy::auth_kube::{CacheTtl, KubeTokenAuthenticator, Verdict};
use raven_node::proxy::front::{Attributes, Authenticator, Decision};
use raven_tests::kube::{KubeApiServer, TestUser};
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sa_token(api: &KubeApiServer, ns: &str, name: &str) -> String {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns}});
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        Some(&sa.to_string()),
    )
    .expect("ServiceAccount");
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
        Some(&tr.to_string()),
    )
    .expect("TokenRequest")
    .json()
    .expect("json")["status"]["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[test]
fn token_review_and_subject_access_review_gate_nodes_proxy() {
    let node_sa = TestUser {
        name: "system:serviceaccount:kube-system:raven-node".into(),
        token: "raven-node-token".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:kube-system".into(),
        ],
    };
    let api = KubeApiServer::start_with_users(std::slice::from_ref(&node_sa))
        .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    api.apply_dir(&repo().join("deploy/rbac/node"))
        .expect("node RBAC");
    let allowed = sa_token(&api, "default", "scraper");
    let denied = sa_token(&api, "default", "nobody");
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "test-nodes-proxy"},
        "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]});
    api.admin(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        Some(&role.to_string()),
    )
    .expect("role");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "test-nodes-proxy"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "test-nodes-proxy"},
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": "default"}]});
    api.admin(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        Some(&binding.to_string()),
    )
    .expect("binding");
    let kc = api
        .kubeconfig("raven-node", &node_sa.token)
        .expect("kubeconfig");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&kc).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let auth = KubeTokenAuthenticator::new(client.clone(), Vec::new(), CacheTtl::default());
        // A separate instance (empty cache) behind the front side's trait.
        let front: Arc<dyn Authenticator> = Arc::new(KubeTokenAuthenticator::new(
            client,
            Vec::new(),
            CacheTtl::default(),
        ));
        let attrs = |user, verb, subresource| Attributes {
            user,
            verb,
            node: "edge-1".to_owned(),
            subresource,
            port: 10250,
            path: "/".to_owned(),
        };
        let scraper = front
            .authenticate(&allowed)
            .await
            .expect("TokenReview answered")
            .expect("valid token");
        assert_eq!(scraper.name, "system:serviceaccount:default:scraper");
        assert_eq!(
            front
                .authorize(&attrs(scraper.clone(), "get", "proxy"))
                .await
                .expect("SAR answered"),
            Decision::Allow
        );
        assert!(matches!(
            front.authorize(&attrs(scraper, "get", "metrics")).await.expect("SAR"),
            Decision::Deny(why) if why.contains("metrics")
        ));
        let nobody = front
            .authenticate(&denied)
            .await
            .expect("TokenReview answered")
            .expect("valid token");
        assert!(matches!(
            front
                .authorize(&attrs(nobody, "get", "proxy"))
                .await
                .expect("SAR"),
            Decision::Deny(_)
        ));
        assert!(
            front
                .authenticate("not-a-token")
                .await
                .expect("answered")
                .is_none()
        );

        let ok_user = auth
            .authenticate(&allowed)
            .await
            .expect("TokenReview answered")
            .expect("valid token");
        assert_eq!(ok_user.name, "system:serviceaccount:default:scraper");
        assert!(ok_user.groups.iter().any(|g| g == "system:serviceaccounts"));
        assert_eq!(
            auth.authorize(&ok_user, "get", "edge-1", "proxy")
                .await
                .expect("SAR answered"),
            Verdict::Allow
        );
        // The permission is nodes/proxy get only: metrics and writes are denied.
        for (verb, sub) in [("get", "metrics"), ("create", "proxy")] {
            match auth
                .authorize(&ok_user, verb, "edge-1", sub)
                .await
                .expect("SAR")
            {
                Verdict::Deny(why) => assert!(why.contains(sub), "{why}"),
                Verdict::Allow => panic!("{verb} nodes/{sub} must be denied"),
            }
        }

        let no_user = auth
            .authenticate(&denied)
            .await
            .expect("TokenReview answered")
            .expect("valid token");
        match auth
            .authorize(&no_user, "get", "edge-1", "proxy")
            .await
            .expect("SAR answered")
        {
            Verdict::Deny(why) => {
                assert!(
                    why.contains("system:serviceaccount:default:nobody"),
                    "{why}"
                )
            }
            Verdict::Allow => panic!("a token without nodes/proxy must be denied"),
        }

        assert_eq!(
            auth.authenticate("not-a-token").await.expect("answered"),
            None
        );
        assert_eq!(auth.authenticate("").await.expect("answered"), None);
    });

    pods_route_kubelet_paths(&api, &kc, &allowed, &rt);
}

const POD_NODE: &str = "edge-pod-1";

/// A plain-HTTP "kubelet": answers every request with the request head it received.
fn stub_kubelet(ip: Ipv4Addr) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind((ip, 0)).expect("stub listen");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            seen2.lock().expect("lock").push(head.clone());
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = c.write_all(r.as_bytes());
        }
    });
    (port, seen)
}

/// `POD_NODE` → the stub kubelet; every other node is unknown (as the tunnel's dialer says
/// for a node in no Gateway).
struct OneNode(SocketAddr);

impl Dialer for OneNode {
    fn dial<'a>(&'a self, node: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            if node != POD_NODE || port != self.0.port() {
                return Err(DialError::UnknownNode(node.to_owned()));
            }
            tokio::net::TcpStream::connect(self.0)
                .await
                .map(|s| Box::new(s) as ProxyStream)
                .map_err(|e| DialError::Failed {
                    target: format!("{node}:{port}"),
                    reason: e.to_string(),
                })
        })
    }
}

fn pods_route_kubelet_paths(
    api: &KubeApiServer,
    kubeconfig: &std::path::Path,
    token: &str,
    rt: &tokio::runtime::Runtime,
) {
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let (kubelet_port, seen) = stub_kubelet(ip);
    for (name, node) in [
        ("web", Some(POD_NODE)),
        ("pending", None),
        ("lost", Some("edge-gone-1")),
    ] {
        let mut spec = json!({"serviceAccountName": "scraper", "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "app:test"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec});
        let r = api
            .admin(
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(&pod.to_string()),
            )
            .expect("create pod");
        assert!(r.ok(), "pod {name}: {}", r.body);
    }
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let config = FrontConfig {
            https_addr: None,
            http_addr: Some(SocketAddr::from((ip, 0))),
            kubelet_port,
            target_tls: TargetTls {
                ports: BTreeSet::new(),
                roots: Vec::new(),
                client_cert: None,
            },
            ..FrontConfig::default()
        };
        let services = FrontServices {
            dialer: Arc::new(OneNode(SocketAddr::from((ip, kubelet_port)))),
            authenticator: Some(Arc::new(KubeTokenAuthenticator::new(
                client.clone(),
                Vec::new(),
                CacheTtl::default(),
            ))),
            pod_locator: Some(Arc::new(KubePodLocator::new(client, PodCacheTtl::default()))),
            metrics: FrontMetrics::default(),
        };
        let handle = front::start(config, services).await.expect("front");
        let addr = handle.http_addr.expect("http");
        let get = move |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            // Host names the API server, as it does for these paths: never used for routing.
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: apiserver:6443\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .expect("answer within 10 s")
                .expect("read");
            let text = String::from_utf8_lossy(&out).into_owned();
            let status: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (status, text)
        };
        for path in [
            "/containerLogs/default/web/app?follow=true",
            "/portForward/default/web",
            "/exec/default/web/app?command=ls",
        ] {
            let (status, text) = get(path).await;
            assert_eq!(status, 200, "{path}: {text}");
            assert!(
                text.to_ascii_lowercase()
                    .contains(&format!("host: {POD_NODE}:{kubelet_port}")),
                "{path} must reach the Pod's node on the kubelet port: {text}"
            );
        }
        for (path, why) in [
            ("/containerLogs/default/ghost/app", "ghost"),
            ("/containerLogs/default/pending/app", "pending"),
            ("/exec/default/lost/app", "edge-gone-1"),
        ] {
            let (status, text) = get(path).await;
            assert_eq!(status, 404, "{path}: {text}");
            assert!(text.contains(why), "{path}: the reason names {why}: {text}");
        }
    });
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        3,
        "only the routable requests reached the kubelet: {seen:?}"
    );
}
