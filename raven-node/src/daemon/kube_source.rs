//! The Kubernetes Gateway source (the default mode): a watch-backed cache of the cluster's
//! v1beta1 Gateways feeding the same engine as the file source, plus the write-back of what the
//! agent owns in its own tunnel endpoints ([`super::writeback`]: the WireGuard public key, and
//! the public IP while it is an active endpoint without one). A write-back that failed or could
//! not find an address yet is retried every [`RETRY_EVERY`], not only on the next event.
//!
//! The watch runs on its own thread with a small tokio runtime and hands full snapshots to the
//! synchronous main loop through a channel; the write-back decision is pure and unit-tested.
//! API errors are logged and retried (the watcher backs off), never fatal.

use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use raven_api::gateway::defaults::default_gateway;
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::{
    LABEL_GATEWAY, LABEL_GATEWAY_ENDPOINTS, LABEL_GATEWAY_TYPE, WORKING_NAMESPACE,
};

use super::lease::{KubeAccess, client};
use super::source::{Poll, Snapshot};
use super::writeback::{self, IpSource};

/// Retry period of a pending write-back (failed patch, no address found yet).
pub const RETRY_EVERY: Duration = Duration::from_secs(30);
/// Time allowed to each public IP discovery URL.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What this agent writes back into its own Gateway endpoints.
#[derive(Clone, Debug, Default)]
pub struct Writeback {
    /// The tunnel public key (`None`: the driver has none, e.g. IPsec).
    pub public_key: Option<String>,
    /// Public IP discovery URLs (`--public-ip-url`); empty: no HTTP discovery.
    pub public_ip_urls: Vec<String>,
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
    /// Starts the watch thread; `writeback`: what this agent owns in its Gateway endpoints.
    pub fn spawn(access: KubeAccess, node: String, writeback: Writeback) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the watch runtime: {e}"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raven-gateways".to_owned())
            .spawn(move || rt.block_on(watch(access, node, writeback, tx)))
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
    writeback: Writeback,
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
    let api: Api<Gateway> = Api::all(client.clone());
    let services: Api<Service> = Api::namespaced(client, WORKING_NAMESPACE);
    let (reader, writer) = reflector::store();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .modify(|g: &mut Gateway| g.metadata.managed_fields = None)
        .reflect(writer)
        .boxed();
    let mut synced = false;
    let mut pending = false;
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => Some(ev),
                None => return,
            },
            _ = retry.tick() => None,
        };
        match event {
            Some(Ok(Event::Init | Event::InitApply(_))) => continue,
            Some(Ok(Event::InitDone)) => synced = true,
            Some(Ok(Event::Apply(_) | Event::Delete(_))) => {}
            Some(Err(e)) => {
                tracing::warn!("Gateway watch error (retrying): {e}");
                continue;
            }
            // The retry tick: only worth a pass when something is pending.
            None if !pending => continue,
            None => {}
        }
        if !synced {
            continue;
        }
        let raw: Vec<Gateway> = reader.state().iter().map(|g| (**g).clone()).collect();
        if event.is_some() && tx.send(engine_view(&raw)).is_err() {
            return;
        }
        pending = false;
        for gw in &raw {
            if !write_back(&api, &services, gw, &node, &writeback).await {
                pending = true;
            }
        }
    }
}

/// Writes what this agent owns into `gw` if it is missing; false when it should be retried.
async fn write_back(
    api: &Api<Gateway>,
    services: &Api<Service>,
    gw: &Gateway,
    node: &str,
    writeback: &Writeback,
) -> bool {
    let name = gw.metadata.name.clone().unwrap_or_default();
    let mut complete = true;
    let ip = match writeback::public_ip_wanted(gw, node) {
        None => None,
        Some(source) => match find_public_ip(services, &name, node, source, writeback).await {
            Ok(ip) => Some(ip),
            Err(e) => {
                tracing::warn!(gateway = %name, "public IP of this active endpoint: {e}");
                complete = false;
                None
            }
        },
    };
    let Some(patch) = writeback::endpoint_patch(gw, node, writeback.public_key.as_deref(), ip)
    else {
        return complete;
    };
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(gateway = %name, public_ip = ?ip, "wrote this node's endpoint fields");
            complete
        }
        // The next watch event carries the newer object and recomputes the patch.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(gateway = %name, "Gateway changed meanwhile; will retry");
            complete
        }
        Err(e) => {
            tracing::warn!(gateway = %name, "writing this node's endpoint fields: {e}");
            false
        }
    }
}

/// This node's public IP for `gateway`, from its LoadBalancer Service or the discovery URLs.
async fn find_public_ip(
    services: &Api<Service>,
    gateway: &str,
    node: &str,
    source: IpSource,
    writeback: &Writeback,
) -> Result<std::net::IpAddr, String> {
    match source {
        IpSource::LoadBalancer => {
            let selector = format!(
                "{LABEL_GATEWAY}={gateway},{LABEL_GATEWAY_TYPE}=tunnel,{LABEL_GATEWAY_ENDPOINTS}={node}"
            );
            let list = services
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| format!("listing the tunnel LoadBalancer Service: {e}"))?;
            list.items
                .iter()
                .find_map(writeback::load_balancer_ip)
                .ok_or_else(|| {
                    format!("the tunnel LoadBalancer Service ({selector}) has no ingress IP yet")
                })
        }
        IpSource::Discovery => {
            if writeback.public_ip_urls.is_empty() {
                return Err(
                    "publicIP is empty and no --public-ip-url is configured: set it \
                     in the Gateway spec or configure discovery"
                        .to_owned(),
                );
            }
            super::public_ip::discover(&writeback.public_ip_urls, DISCOVERY_TIMEOUT).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_api::gateway::EndpointType;
    use raven_api::gateway::v1beta1::{Endpoint, GatewaySpec};

    fn ep(node: &str, t: EndpointType) -> Endpoint {
        Endpoint {
            node_name: node.into(),
            type_: t,
            port: 4500,
            ..Default::default()
        }
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
    fn engine_view_is_sorted_and_defaulted() {
        let mut b = gw(vec![ep("n1", EndpointType::Tunnel)]);
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
