//! The front side follows the proxy server role: its listeners are bound while the Gateways
//! make this node an active proxy endpoint of an exposed Gateway, and closed when they no
//! longer do. Only servers are reached by cloud callers (the internal Service and the DNS
//! entries point at them), and in Kubernetes mode only servers hold a serving certificate, so
//! a listener elsewhere would be an open port that fails every handshake.
//!
//! Closing stops accepting; connections in flight (a `kubectl exec` session) finish on their
//! own. A bind that fails (the port taken by another process) is logged and retried.

use std::time::Duration;

use tokio::sync::watch;

use super::{FrontHandle, Prepared};

/// Binds and closes `prepared`'s listeners as `role` changes, until `role`'s sender is
/// dropped (the proxy stopped) or the task is aborted.
pub(super) async fn follow(prepared: Prepared, mut role: watch::Receiver<bool>, rebind: Duration) {
    let mut bound: Option<FrontHandle> = None;
    let mut last_error: Option<String> = None;
    loop {
        let serve = *role.borrow_and_update();
        match (serve, bound.is_some()) {
            (true, false) => match prepared.bind().await {
                Ok(handle) => {
                    tracing::info!(https = ?handle.https_addr, http = ?handle.http_addr, "proxy front: listening (this node is a proxy server)");
                    prepared.metrics.listening.set(1);
                    last_error = None;
                    bound = Some(handle);
                }
                Err(e) => {
                    let why = e.to_string();
                    if last_error.as_ref() != Some(&why) {
                        tracing::error!(
                            "proxy front: cannot listen (retrying every {rebind:?}): {why}"
                        );
                        last_error = Some(why);
                    }
                }
            },
            (false, true) => {
                bound = None;
                prepared.metrics.listening.set(0);
                tracing::info!("proxy front: listeners closed (no longer a proxy server)");
            }
            _ => {}
        }
        let retry = serve && bound.is_none();
        tokio::select! {
            changed = role.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(rebind), if retry => {}
        }
    }
    prepared.metrics.listening.set(0);
}
