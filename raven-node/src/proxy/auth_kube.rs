//! Bearer-token callers of the proxy front side in Kubernetes mode: TokenReview to learn who
//! the token belongs to, SubjectAccessReview to ask whether that user may do `verb` on
//! `nodes/<subresource>` of the target node, the checks the kubelet itself makes
//! (`--authentication-token-webhook`, `--authorization-mode=Webhook`), so the proxy grants no
//! more than a direct call to the kubelet would.
//!
//! Answers are cached like the kubelet caches them: authenticated tokens 2 minutes, allowed
//! decisions 5 minutes, denials and invalid tokens 30 seconds; the cache holds at most
//! [`MAX_CACHE`] entries per kind. An API error is [`Unavailable`] (the front side answers 503),
//! never "allowed" and never cached.
//!
//! It implements the front side's [`Authenticator`] by a field-by-field conversion of
//! [`TokenUser`] and [`Verdict`]. The front's [`UserInfo`] has no `extra`, so extra attributes
//! of a token are not passed on to SubjectAccessReview through the trait (upstream's kubelet
//! passes them; RBAC ignores them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::front::{Attributes, AuthFuture, AuthUnavailable, Authenticator, Decision, UserInfo};

/// Most cached answers of each kind.
pub const MAX_CACHE: usize = 4096;

/// The owner of a valid token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenUser {
    /// User name.
    pub name: String,
    /// UID, if the authenticator gave one.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (passed on to SubjectAccessReview).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// An authorization answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied; the reason is shown to the caller.
    Deny(String),
}

/// The API server could not answer.
#[derive(Debug, thiserror::Error)]
#[error("authentication backend unavailable: {0}")]
pub struct Unavailable(pub String);

/// How long answers are cached.
#[derive(Clone, Copy, Debug)]
pub struct CacheTtl {
    /// Valid tokens.
    pub authenticated: Duration,
    /// Invalid tokens.
    pub unauthenticated: Duration,
    /// Allowed decisions.
    pub allowed: Duration,
    /// Denied decisions.
    pub denied: Duration,
}

impl Default for CacheTtl {
    fn default() -> Self {
        CacheTtl {
            authenticated: Duration::from_secs(120),
            unauthenticated: Duration::from_secs(30),
            allowed: Duration::from_secs(300),
            denied: Duration::from_secs(30),
        }
    }
}

type AuthzKey = (String, Vec<String>, &'static str, String, &'static str);

/// TokenReview + SubjectAccessReview against the cluster's API server.
pub struct KubeTokenAuthenticator {
    client: Client,
    audiences: Vec<String>,
    ttl: CacheTtl,
    tokens: Mutex<HashMap<String, (Instant, Option<TokenUser>)>>,
    decisions: Mutex<HashMap<AuthzKey, (Instant, Verdict)>>,
}

impl std::fmt::Debug for KubeTokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTokenAuthenticator")
            .field("audiences", &self.audiences)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Inserts with an expiry, dropping expired entries first and everything when still full.
fn cache_put<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, (Instant, V)>,
    k: K,
    ttl: Duration,
    v: V,
) {
    let now = Instant::now();
    if map.len() >= MAX_CACHE {
        map.retain(|_, (exp, _)| *exp > now);
        if map.len() >= MAX_CACHE {
            map.clear();
        }
    }
    map.insert(k, (now + ttl, v));
}

fn cache_get<K: std::hash::Hash + Eq, V: Clone>(
    map: &HashMap<K, (Instant, V)>,
    k: &K,
) -> Option<V> {
    map.get(k)
        .filter(|(exp, _)| *exp > Instant::now())
        .map(|(_, v)| v.clone())
}

impl KubeTokenAuthenticator {
    /// Uses `client` (raven-node's identity: needs `create` on tokenreviews and
    /// subjectaccessreviews). `audiences` empty means the API server's own audience.
    pub fn new(client: Client, audiences: Vec<String>, ttl: CacheTtl) -> Self {
        KubeTokenAuthenticator {
            client,
            audiences,
            ttl,
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// Who owns `token`: `Ok(None)` when it is not valid (expired, unknown, wrong audience).
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenUser>, Unavailable> {
        if token.is_empty() {
            return Ok(None);
        }
        if let Ok(cache) = self.tokens.lock()
            && let Some(hit) = cache_get(&cache, &token.to_owned())
        {
            return Ok(hit);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Unavailable(format!("TokenReview: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true))
            .then(|| status.user.unwrap_or_default())
            .map(|u| TokenUser {
                name: u.username.unwrap_or_default(),
                uid: u.uid,
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            })
            .filter(|u| !u.name.is_empty());
        let ttl = if user.is_some() {
            self.ttl.authenticated
        } else {
            self.ttl.unauthenticated
        };
        if let Ok(mut cache) = self.tokens.lock() {
            cache_put(&mut cache, token.to_owned(), ttl, user.clone());
        }
        Ok(user)
    }

    /// Whether `user` may `verb` `nodes/<subresource>` on `node` (kubelet attributes).
    pub async fn authorize(
        &self,
        user: &TokenUser,
        verb: &'static str,
        node: &str,
        subresource: &'static str,
    ) -> Result<Verdict, Unavailable> {
        let key: AuthzKey = (
            user.name.clone(),
            user.groups.clone(),
            verb,
            node.to_owned(),
            subresource,
        );
        if let Ok(cache) = self.decisions.lock()
            && let Some(hit) = cache_get(&cache, &key)
        {
            return Ok(hit);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    resource: Some("nodes".to_owned()),
                    subresource: Some(subresource.to_owned()),
                    name: Some(node.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Unavailable(format!("SubjectAccessReview: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let verdict = if status.allowed && status.denied != Some(true) {
            Verdict::Allow
        } else {
            let why = status
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "no RBAC rule allows it".to_owned());
            Verdict::Deny(format!(
                "user {:?} may not {verb} nodes/{subresource} on node {node:?}: {why}",
                user.name
            ))
        };
        let ttl = if verdict == Verdict::Allow {
            self.ttl.allowed
        } else {
            self.ttl.denied
        };
        if let Ok(mut cache) = self.decisions.lock() {
            cache_put(&mut cache, key, ttl, verdict.clone());
        }
        Ok(verdict)
    }
}

impl From<TokenUser> for UserInfo {
    fn from(u: TokenUser) -> Self {
        UserInfo {
            name: u.name,
            groups: u.groups,
            uid: u.uid,
        }
    }
}

impl From<&UserInfo> for TokenUser {
    fn from(u: &UserInfo) -> Self {
        TokenUser {
            name: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: Default::default(),
        }
    }
}

impl From<Verdict> for Decision {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Decision::Allow,
            Verdict::Deny(why) => Decision::Deny(why),
        }
    }
}

impl From<Unavailable> for AuthUnavailable {
    fn from(e: Unavailable) -> Self {
        AuthUnavailable(e.0)
    }
}

/// The front side's contract: TokenReview for tokens, SubjectAccessReview on the kubelet's
/// `nodes/<subresource>` attributes the front computed.
impl Authenticator for KubeTokenAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a, Option<UserInfo>> {
        Box::pin(async move {
            Ok(KubeTokenAuthenticator::authenticate(self, token)
                .await?
                .map(UserInfo::from))
        })
    }

    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> AuthFuture<'a, Decision> {
        Box::pin(async move {
            let user = TokenUser::from(&attrs.user);
            Ok(KubeTokenAuthenticator::authorize(
                self,
                &user,
                attrs.verb,
                &attrs.node,
                attrs.subresource,
            )
            .await?
            .into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-level check that the front side accepts it as its authenticator.
    #[test]
    fn is_a_front_authenticator() {
        fn as_front(
            a: std::sync::Arc<KubeTokenAuthenticator>,
        ) -> std::sync::Arc<dyn Authenticator> {
            a
        }
        let _ = as_front;
        let u = TokenUser {
            name: "alice".into(),
            uid: Some("u1".into()),
            groups: vec!["g".into()],
            extra: Default::default(),
        };
        let info = UserInfo::from(u.clone());
        assert_eq!(
            (info.name.as_str(), info.uid.as_deref()),
            ("alice", Some("u1"))
        );
        assert_eq!(info.groups, ["g"]);
        assert_eq!(TokenUser::from(&info), u);
        assert_eq!(
            Decision::from(Verdict::Deny("no".into())),
            Decision::Deny("no".into())
        );
        assert_eq!(Decision::from(Verdict::Allow), Decision::Allow);
        assert_eq!(AuthUnavailable::from(Unavailable("x".into())).0, "x");
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut m: HashMap<u32, (Instant, &str)> = HashMap::new();
        cache_put(&mut m, 1, Duration::from_secs(60), "a");
        cache_put(&mut m, 2, Duration::ZERO, "b");
        assert_eq!(cache_get(&m, &1), Some("a"));
        assert_eq!(cache_get(&m, &2), None, "expired");
        for i in 0..(MAX_CACHE as u32 * 2) {
            cache_put(&mut m, 100 + i, Duration::from_secs(60), "x");
            assert!(m.len() <= MAX_CACHE);
        }
    }
}
