//! Who may use the front side, and for what: the [`Authenticator`] trait (bearer tokens and
//! authorization decisions; in Kubernetes mode backed by TokenReview and SubjectAccessReview),
//! the kubelet-style mapping of a request to `nodes/<subresource>` attributes, and the
//! [`PodLocator`] used to route kubelet streaming paths by their Pod.

use std::future::Future;
use std::pin::Pin;

use http::Method;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name (certificate CN, or the TokenReview user name).
    pub name: String,
    /// Groups (certificate O values, or the TokenReview groups).
    pub groups: Vec<String>,
    /// UID from the TokenReview, if any.
    pub uid: Option<String>,
}

/// What the caller asks to do, in the kubelet's terms (`resource` is always `nodes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// The caller.
    pub user: UserInfo,
    /// `get`, `create`, `update`, `patch` or `delete` (from the method, as the kubelet does).
    pub verb: &'static str,
    /// Node the request goes to (the object name).
    pub node: String,
    /// `proxy`, `stats`, `metrics`, `log`, `spec`, `checkpoint`, `configz`, `healthz`, `pods`.
    pub subresource: &'static str,
    /// Target port (not part of RBAC; for audit logs of custom authorizers).
    pub port: u16,
    /// Request path (without the query).
    pub path: String,
}

/// An authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, with the reason shown to the caller.
    Deny(String),
}

/// The authenticator or authorizer could not answer (front side: 503; never "allowed").
#[derive(Debug, thiserror::Error)]
#[error("authentication backend unavailable: {0}")]
pub struct AuthUnavailable(pub String);

/// Boxed future of the [`Authenticator`] methods.
pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AuthUnavailable>> + Send + 'a>>;

/// Checks bearer tokens and authorizes requests.
///
/// Kubernetes mode implements it with TokenReview (`authenticate`) and SubjectAccessReview
/// (`authorize`, `resourceAttributes{verb, resource: "nodes", subresource, name: node}`);
/// implementations should cache answers briefly, as the kubelet does (2 min / 5 min).
pub trait Authenticator: Send + Sync {
    /// `Ok(None)` when the token is not valid.
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a, Option<UserInfo>>;
    /// Decides whether `attrs.user` may perform the request.
    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> AuthFuture<'a, Decision>;
}

/// Boxed future of [`PodLocator::node_of`].
pub type LocateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, AuthUnavailable>> + Send + 'a>>;

/// Finds the node a Pod runs on (kubelet streaming paths, where `Host` may be the API
/// server's own). Kubernetes mode backs it with a Pod watch or GET.
pub trait PodLocator: Send + Sync {
    /// `Ok(None)` when there is no such Pod or it is not scheduled.
    fn node_of<'a>(&'a self, namespace: &'a str, pod: &'a str) -> LocateFuture<'a>;
}

/// The kubelet's verb for a method (`pkg/kubelet/server/auth.go`).
pub fn verb_of(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// The kubelet's subresource for a path: the specific ones by prefix, `proxy` for everything
/// else (exec, attach, portForward, containerLogs, run, and any non-kubelet port).
pub fn subresource_of(path: &str) -> &'static str {
    const TABLE: [(&str, &str); 8] = [
        ("/stats", "stats"),
        ("/metrics", "metrics"),
        ("/logs", "log"),
        ("/spec", "spec"),
        ("/checkpoint", "checkpoint"),
        ("/configz", "configz"),
        ("/healthz", "healthz"),
        ("/pods", "pods"),
    ];
    for (prefix, sub) in TABLE {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return sub;
        }
    }
    "proxy"
}

/// Subresources the kubelet (fine-grained authorization) also accepts `proxy` for.
pub fn falls_back_to_proxy(subresource: &str) -> bool {
    matches!(subresource, "configz" | "healthz" | "pods")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_subresources() {
        for (path, sub) in [
            ("/stats/summary", "stats"),
            ("/stats", "stats"),
            ("/statsx", "proxy"),
            ("/metrics", "metrics"),
            ("/metrics/cadvisor", "metrics"),
            ("/metrics/resource", "metrics"),
            ("/logs/", "log"),
            ("/logs/syslog", "log"),
            ("/spec/", "spec"),
            ("/checkpoint/ns/p/c", "checkpoint"),
            ("/configz", "configz"),
            ("/healthz", "healthz"),
            ("/pods", "pods"),
            ("/exec/ns/p/c", "proxy"),
            ("/portForward/ns/p", "proxy"),
            ("/containerLogs/ns/p/c", "proxy"),
            ("/", "proxy"),
        ] {
            assert_eq!(subresource_of(path), sub, "{path}");
        }
    }

    #[test]
    fn verbs() {
        assert_eq!(verb_of(&Method::GET), "get");
        assert_eq!(verb_of(&Method::HEAD), "get");
        assert_eq!(verb_of(&Method::POST), "create");
        assert_eq!(verb_of(&Method::DELETE), "delete");
        assert_eq!(verb_of(&Method::OPTIONS), "");
    }
}
