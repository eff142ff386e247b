//! The ESP-in-UDP socket and NAT keepalives.
//!
//! The kernel decapsulates ESP arriving on UDP port 4500 only while a UDP socket bound to that
//! port has the `UDP_ENCAP_ESPINUDP` option (normally an IKE daemon's socket). We hold that
//! socket for as long as the driver lives; without it, inbound ESP-in-UDP is answered with
//! ICMP port unreachable. The SAs themselves live in the kernel and survive a restart; only
//! the reception gap between two processes loses packets (TCP retransmits them).
//!
//! Through NAT, the side behind NAT must open and keep the mapping: a thread sends the
//! one-byte NAT keepalive (0xff, RFC 3948 §2.2, consumed by the receiving kernel) to every
//! peer we initiate towards, every keepalive interval.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::tunnel::TunnelError;

/// `UDP_ENCAP` socket option (linux/udp.h).
const UDP_ENCAP: libc::c_int = 100;
/// `UDP_ENCAP_ESPINUDP` (RFC 3948 encapsulation).
const UDP_ENCAP_ESPINUDP: libc::c_int = 2;

/// The encapsulation socket and its keepalive thread.
#[derive(Debug)]
pub struct Encap {
    port: u16,
    socket: Arc<UdpSocket>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Encap {
    /// Binds `0.0.0.0:port`, enables ESP-in-UDP decapsulation and starts the keepalive thread.
    pub fn open(port: u16, keepalive_secs: u16) -> Result<Self, TunnelError> {
        let sock_err = |op, source| TunnelError::Socket { port, op, source };
        let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| sock_err("bind", e))?;
        let value: libc::c_int = UDP_ENCAP_ESPINUDP;
        // SAFETY: valid socket fd, pointer and length describe `value`.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_UDP,
                UDP_ENCAP,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(sock_err(
                "setsockopt UDP_ENCAP_ESPINUDP",
                std::io::Error::last_os_error(),
            ));
        }
        let socket = Arc::new(socket);
        let targets: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = if keepalive_secs > 0 {
            let (socket, targets, stop) = (socket.clone(), targets.clone(), stop.clone());
            let every = Duration::from_secs(keepalive_secs.into());
            Some(
                std::thread::Builder::new()
                    .name("ipsec-keepalive".into())
                    .spawn(move || keepalive_loop(&socket, &targets, &stop, every))
                    .map_err(|source| TunnelError::Thread {
                        name: "ipsec-keepalive",
                        source,
                    })?,
            )
        } else {
            None
        };
        Ok(Self {
            port,
            socket,
            targets,
            stop,
            thread,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the keepalive targets and sends one keepalive to each new one right away, so a
    /// NATed gateway opens its mapping without waiting a full interval.
    pub fn set_targets(&self, new: Vec<SocketAddr>) {
        let mut targets = self
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in new.iter().filter(|t| !targets.contains(t)) {
            let _ = self.socket.send_to(&[0xff], t);
        }
        *targets = new;
    }
}

fn keepalive_loop(
    socket: &UdpSocket,
    targets: &Mutex<Vec<SocketAddr>>,
    stop: &AtomicBool,
    every: Duration,
) {
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        let list = targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for t in list {
            // Best effort: a send error (no route yet) is retried next interval.
            let _ = socket.send_to(&[0xff], t);
        }
    }
}

impl Drop for Encap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The thread only sleeps and sends; a panic there leaves nothing to clean up.
            let _ = t.join();
        }
    }
}
