//! The Kubernetes Gateway source (the default mode): a watch-backed cache of the cluster's
//! v1beta1 Gateways feeding the same engine as the file source, plus the write-back of what the
//! agent owns: its WireGuard public key in `config.publicKey` of its own tunnel endpoints in
//! the Gateway spec (as upstream's agent does). Public IP discovery is not done here.
//!
//! The watch runs on its own thread with a small tokio runtime and hands full snapshots to the
//! synchronous main loop through a channel; the write-back decision is pure and unit-tested.
//! API errors are logged and retried (the watcher backs off), never fatal.

use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use raven_api::gateway::EndpointType;
use raven_api::gateway::defaults::default_gateway;
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::CONFIG_PUBLIC_KEY;
use serde_json::{Value, json};

use super::lease::{KubeAccess, client};
use super::source::{Poll, Snapshot};

/// The merge patch that writes `key` into `config.publicKey` of `node`'s tunnel endpoints of
/// `gw`, or `None` when they already carry it (no write when nothing changes).
///
/// A merge patch replaces lists whole, so the patch carries every endpoint as read, and the
/// object's resourceVersion: if anyone changed the Gateway since, the API server answers 409
/// and the next watch event recomputes the patch from the new object (no lost update).
pub fn key_patch(gw: &Gateway, node: &str, key: &str) -> Option<Value> {
    let mine = |e: &raven_api::gateway::v1beta1::Endpoint| {
        e.node_name == node && e.type_ == EndpointType::Tunnel
    };
    let stale = gw
        .spec
        .endpoints
        .iter()
        .any(|e| mine(e) && e.config.get(CONFIG_PUBLIC_KEY).map(String::as_str) != Some(key));
    if !stale {
        return None;
    }
    let endpoints: Vec<_> = gw
        .spec
        .endpoints
        .iter()
        .cloned()
        .map(|mut e| {
            if mine(&e) {
                e.config
                    .insert(CONFIG_PUBLIC_KEY.to_owned(), key.to_owned());
            }
            e
        })
        .collect();
    Some(json!({
        "metadata": {"resourceVersion": gw.metadata.resource_version},
        "spec": {"endpoints": endpoints},
    }))
}

/// The Gateways as the engine wants them: defaulted like the file source's, sorted by name.
fn engine_view(raw: &[Gateway]) -> Vec<Gateway> {
    let mut out: Vec<Gateway> = raw
        .iter()
        .cloned()
        .map(|mut g| {
            default_gateway(&mut g);
            g
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The main loop's side: the latest snapshot the watch thread sent.
#[derive(Debug)]
pub struct KubeWatcher {
    rx: mpsc::Receiver<Vec<Gateway>>,
}

impl KubeWatcher {
    /// Starts the watch thread. `public_key`: what to write back (`None`: nothing).
    pub fn spawn(
        access: KubeAccess,
        node: String,
        public_key: Option<String>,
    ) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the watch runtime: {e}"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raven-gateways".to_owned())
            .spawn(move || rt.block_on(watch(access, node, public_key, tx)))
            .map_err(|e| format!("starting the watch thread: {e}"))?;
        Ok(Self { rx })
    }

    /// The newest snapshot since the last poll, if any.
    pub fn poll(&mut self) -> Poll {
        let mut latest = None;
        loop {
            match self.rx.try_recv() {
                Ok(s) => latest = Some(s),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    if latest.is_none() {
                        return Poll::DirError("the Gateway watch thread ended".to_owned());
                    }
                    break;
                }
            }
        }
        match latest {
            Some(gateways) => Poll::Changed(Snapshot {
                gateways,
                errors: Vec::new(),
            }),
            None => Poll::Unchanged,
        }
    }
}

async fn watch(
    access: KubeAccess,
    node: String,
    public_key: Option<String>,
    tx: mpsc::Sender<Vec<Gateway>>,
) {
    let client = loop {
        match client(&access).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!("Gateway watch: {e}; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let api: Api<Gateway> = Api::all(client);
    let (reader, writer) = reflector::store();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .modify(|g: &mut Gateway| g.metadata.managed_fields = None)
        .reflect(writer)
        .boxed();
    let mut synced = false;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Ok(Event::InitDone) => synced = true,
            Ok(Event::Apply(_) | Event::Delete(_)) => {}
            Err(e) => {
                tracing::warn!("Gateway watch error (retrying): {e}");
                continue;
            }
        }
        if !synced {
            continue;
        }
        let raw: Vec<Gateway> = reader.state().iter().map(|g| (**g).clone()).collect();
        if tx.send(engine_view(&raw)).is_err() {
            return;
        }
        let Some(key) = &public_key else { continue };
        for gw in &raw {
            let Some(patch) = key_patch(gw, &node, key) else {
                continue;
            };
            let name = gw.metadata.name.clone().unwrap_or_default();
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => tracing::info!(gateway = %name, "published the tunnel public key"),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(gateway = %name, "Gateway changed meanwhile; will retry")
                }
                Err(e) => tracing::warn!(gateway = %name, "publishing the public key: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_api::gateway::v1beta1::{Endpoint, GatewaySpec};

    fn ep(node: &str, t: EndpointType, key: Option<&str>) -> Endpoint {
        let mut e = Endpoint {
            node_name: node.into(),
            type_: t,
            port: 4500,
            ..Default::default()
        };
        if let Some(k) = key {
            e.config.insert(CONFIG_PUBLIC_KEY.into(), k.into());
        }
        e
    }

    fn gw(endpoints: Vec<Endpoint>) -> Gateway {
        let mut g = Gateway::new(
            "gw",
            GatewaySpec {
                endpoints,
                ..Default::default()
            },
        );
        g.metadata.resource_version = Some("7".into());
        g
    }

    #[test]
    fn patches_only_this_nodes_tunnel_endpoints_and_keeps_the_others() {
        let g = gw(vec![
            ep("n1", EndpointType::Tunnel, None),
            ep("n1", EndpointType::Proxy, None),
            ep("n2", EndpointType::Tunnel, Some("other")),
        ]);
        let p = key_patch(&g, "n1", "K").expect("a patch");
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        let eps = p["spec"]["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0]["config"]["publicKey"], "K");
        assert!(eps[1].get("config").is_none(), "{p}");
        assert_eq!(eps[2]["config"]["publicKey"], "other");
        assert_eq!(eps[2]["nodeName"], "n2");
    }

    #[test]
    fn no_write_when_the_key_is_already_there_or_no_endpoint_is_ours() {
        let g = gw(vec![ep("n1", EndpointType::Tunnel, Some("K"))]);
        assert_eq!(key_patch(&g, "n1", "K"), None);
        assert_eq!(key_patch(&g, "n9", "K"), None);
        assert!(key_patch(&g, "n1", "NEW").is_some());
        assert_eq!(key_patch(&gw(vec![]), "n1", "K"), None);
    }

    #[test]
    fn engine_view_is_sorted_and_defaulted() {
        let mut b = gw(vec![ep("n1", EndpointType::Tunnel, None)]);
        b.metadata.name = Some("b".into());
        let mut a = b.clone();
        a.metadata.name = Some("a".into());
        let v = engine_view(&[b.clone(), a]);
        assert_eq!(v[0].metadata.name.as_deref(), Some("a"));
        let mut d = b;
        default_gateway(&mut d);
        assert_eq!(v[1], d);
    }
}
