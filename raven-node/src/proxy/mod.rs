//! Proxy mode (L7): cloud components reach `NodeName:Port` on edge nodes through an mTLS
//! reverse tunnel held by each edge gateway, across NAT and with conflicting node IPs.
//!
//! Two halves meet at one contract, [`Dialer`]:
//! - [`tunnel`]: the tunnel itself (edge client dials every cloud server replica, streams are
//!   multiplexed with per-stream flow control), the node → gateway resolution from Gateway
//!   objects, and the [`Dialer`] that opens a byte stream to `node:port` — locally when the node
//!   is in the server's own domain, else through the tunnel of the node's gateway.
//! - [`front`]: the HTTPS/HTTP front side that authenticates callers, parses and checks the
//!   request (`Host: <node>:<port>`, `?nodeName=`), strips internal headers and relays the
//!   request, chunked responses and upgraded connections over a stream from the [`Dialer`].

pub mod auth_kube;
pub mod certs_kube;
pub mod der;
pub mod front;
pub mod pods_kube;
pub mod tunnel;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream to a target port (TCP directly, or one tunnel stream).
pub trait ProxyIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ProxyIo for T {}

/// A boxed [`ProxyIo`].
pub type ProxyStream = Box<dyn ProxyIo>;

/// Why a stream to `node:port` could not be opened; the front side maps each to an HTTP status.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DialError {
    /// No Gateway lists this node (front side: 404).
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// The node's Gateway does not allow this port (front side: 403).
    #[error("port {port} is not allowed for node {node:?}")]
    PortNotAllowed {
        /// Node name asked for.
        node: String,
        /// Port asked for.
        port: u16,
    },
    /// The node's domain has no connected tunnel right now (front side: 502/503).
    #[error("no tunnel to the gateway {gateway:?} of node {node:?}")]
    NoTunnel {
        /// Node name asked for.
        node: String,
        /// Its Gateway.
        gateway: String,
    },
    /// The dial (direct or by the far end) timed out (front side: 504).
    #[error("dialing {target} timed out")]
    Timeout {
        /// `node:port` for the log line.
        target: String,
    },
    /// The far end refused or failed the dial (front side: 502).
    #[error("dialing {target} failed: {reason}")]
    Failed {
        /// `node:port` for the log line.
        target: String,
        /// What the dialing side reported.
        reason: String,
    },
}

impl DialError {
    /// The dial error an early stream's read or write failed with, owned; `Err(e)` when `e`
    /// is another I/O error.
    pub fn from_io(e: std::io::Error) -> Result<DialError, std::io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<DialError>()) {
            let inner = e.into_inner().expect("checked: a custom error");
            return Ok(*inner.downcast::<DialError>().expect("checked: a DialError"));
        }
        Err(e)
    }

    /// The dial error an early stream's read or write failed with, anywhere in `e`'s source
    /// chain (through `hyper`, TLS and I/O wrappers).
    pub fn in_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(d) = err.downcast_ref::<DialError>() {
                return Some(d);
            }
            // io::Error::source skips the error it wraps: look inside explicitly.
            if let Some(d) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<DialError>())
            {
                return Some(d);
            }
            cur = err.source();
        }
        None
    }
}

/// Boxed future returned by [`Dialer::dial`].
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = Result<ProxyStream, DialError>> + Send + 'a>>;

/// Opens a byte stream to `port` on node `node` (by name, never by IP: node IPs of different
/// domains may conflict). Implemented by [`tunnel`], consumed by [`front`].
pub trait Dialer: Send + Sync {
    /// Opens the stream; the target is resolved, authorised (allowed ports) and routed here.
    fn dial<'a>(&'a self, node: &'a str, port: u16) -> DialFuture<'a>;

    /// Whether `port` of `node` is listed as an HTTPS port (`proxyHTTPSPort` of the Gateway
    /// that applies): the front side then speaks TLS to it, as to the kubelet.
    fn is_https_port(&self, _node: &str, _port: u16) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn refused() -> DialError {
        DialError::PortNotAllowed {
            node: "edge-a-1".into(),
            port: 22,
        }
    }

    /// An error whose source is `inner` (what hyper and TLS wrappers look like).
    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_refusal_is_found_through_io_and_wrapper_errors_and_nothing_else_is() {
        let direct = refused();
        assert!(matches!(
            DialError::in_chain(&direct),
            Some(DialError::PortNotAllowed { port: 22, .. })
        ));
        let io = io::Error::other(refused());
        assert!(DialError::in_chain(&io).is_some());
        let wrapped = Wrapper(io::Error::other(refused()));
        assert!(DialError::in_chain(&wrapped).is_some());
        let plain = Wrapper(io::Error::new(io::ErrorKind::BrokenPipe, "pipe"));
        assert!(DialError::in_chain(&plain).is_none());

        let owned = DialError::from_io(io::Error::other(refused())).expect("a dial error");
        assert_eq!(owned.to_string(), refused().to_string());
        let other = DialError::from_io(io::Error::other("not one")).expect_err("not a dial error");
        assert_eq!(other.to_string(), "not one");
    }
}
