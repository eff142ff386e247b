//! The proxy front side's Kubernetes-mode token check
//! (`raven_node::proxy::auth_kube::KubeTokenAuthenticator`) on a real kube-apiserver 1.20.2,
//! running as raven-node's ServiceAccount with the RBAC from `deploy/rbac/node`: a
//! ServiceAccount token with `nodes/proxy` permission passes, one without is denied, a
//! garbage token is not authenticated. The same answers come through the front side's
//! `Authenticator` trait object (what `raven-node run --proxy --proxy-front-*` uses).

use std::path::PathBuf;

use std::sync::Arc;

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
}
