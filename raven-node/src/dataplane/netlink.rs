//! The netlink transport: one request → one acknowledgement or one dump, counted.
//!
//! Everything above this module builds `RouteNetlinkMessage`s; this module sets the header
//! flags, sends through the shared rtnetlink connection, and turns the kernel's answer into a
//! [`NlError`] with the errno, so callers can treat "not found" on delete as success and
//! `EEXIST` on an exclusive rule add as "already there".

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};

/// Counters for the metrics endpoint: plain atomics, read with `Ordering::Relaxed`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Netlink requests sent (ops, dumps and lookups).
    pub netlink_requests: AtomicU64,
    /// Requests the kernel refused (excluding the ones that mean "already done").
    pub netlink_errors: AtomicU64,
    /// Ops applied (one request each).
    pub ops: AtomicU64,
    /// Ops that failed.
    pub op_errors: AtomicU64,
    /// Completed reconciles (including ones with errors).
    pub reconciles: AtomicU64,
    /// Reconciles that reported at least one error.
    pub failed_reconciles: AtomicU64,
    /// Duration of the last reconcile, in microseconds.
    pub last_reconcile_micros: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A failed netlink request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlError {
    /// Positive errno, if the kernel returned one.
    pub errno: Option<i32>,
    /// Human-readable cause.
    pub message: String,
}

impl NlError {
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self {
            errno: None,
            message: message.into(),
        }
    }

    /// "No such object" in any of the forms the kernel uses for deletes and lookups.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno,
            Some(
                libc_errno::ENOENT
                    | libc_errno::ESRCH
                    | libc_errno::ENODEV
                    | libc_errno::EADDRNOTAVAIL
            )
        )
    }

    /// `EEXIST`.
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc_errno::EEXIST)
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(e) => write!(
                f,
                "{} (errno {e}: {})",
                self.message,
                std::io::Error::from_raw_os_error(e)
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for NlError {}

/// The errno values we branch on (Linux, all architectures we build for).
pub(crate) mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EADDRNOTAVAIL: i32 = 99;
}

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 << 20;

/// A counted rtnetlink connection.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
    counters: Arc<Counters>,
}

impl Netlink {
    /// Opens a strict-checking rtnetlink socket in the calling thread's network namespace and
    /// spawns its driver on the current tokio runtime.
    ///
    /// Strict checking is what makes the kernel honour the filters of our dumps (table and
    /// protocol for routes, interface for neighbours and addresses).
    pub fn connect(counters: Arc<Counters>) -> std::io::Result<Self> {
        let (mut conn, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        let socket = rtnetlink::sys::AsyncSocket::socket_mut(conn.socket_mut());
        // Acknowledgements without the echoed request, and room for a full pipeline of them:
        // an overflowing receive buffer would drop acknowledgements (ENOBUFS) and leave
        // requests waiting forever. Both are best effort; the defaults also work for small
        // pipelines.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        tokio::spawn(conn);
        Ok(Self { handle, counters })
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Sends `msg` with `extra` header flags plus `NLM_F_REQUEST|NLM_F_ACK` and waits for the
    /// acknowledgement. Does not count kernel refusals as errors: callers decide what an errno
    /// means.
    pub async fn ack(&self, msg: RouteNetlinkMessage, extra: u16) -> Result<(), NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra;
        Counters::add(&self.counters.netlink_requests, 1);
        let mut handle = self.handle.clone();
        let mut stream = handle
            .request(req)
            .map_err(|e| NlError::other(format!("netlink request not sent: {e}")))?;
        while let Some(answer) = stream.next().await {
            if let NetlinkPayload::Error(e) = answer.payload
                && let Some(code) = e.code
            {
                return Err(NlError {
                    errno: Some(-code.get()),
                    message: "kernel refused".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Sends a request (a dump when `dump`) and collects every answer; a kernel error ends it.
    pub async fn collect(
        &self,
        msg: RouteNetlinkMessage,
        dump: bool,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        Counters::add(&self.counters.netlink_requests, 1);
        let mut handle = self.handle.clone();
        let mut stream = handle
            .request(req)
            .map_err(|e| NlError::other(format!("netlink request not sent: {e}")))?;
        let mut out = Vec::new();
        while let Some(answer) = stream.next().await {
            match answer.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(NlError {
                            errno: Some(-code.get()),
                            message: "kernel refused".to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Counts a failure the caller did not treat as success.
    pub(crate) fn count_error(&self) {
        Counters::add(&self.counters.netlink_errors, 1);
    }
}
