//! The packet path: one thread per direction plus a timer thread.
//!
//! - **outbound** (TUN → UDP): reads packets from the TUN device until it runs dry or a batch
//!   is full, cuts TCP superpackets into their segments ([`split_tcp4`]), encrypts each
//!   straight into one contiguous buffer and sends the whole batch with one `sendmmsg(2)`;
//! - **inbound** (UDP → TUN): receives a batch with one `recvmmsg(2)` (with `UDP_GRO`, a
//!   train of datagrams from one sender arrives as one buffer and is split here), finds the
//!   peer by receiver index (or, for a handshake initiation, by the initiator's static key),
//!   decrypts, checks the inner source against the peer's allowed IPs and hands the packet to
//!   the [`Coalescer`], which writes runs of one TCP flow's segments to the TUN device as one
//!   superpacket (see [`super::offload`]); authenticated packets update the peer's endpoint
//!   (NAT roaming);
//! - **timers**: every 250 ms, boringtun's `update_timers` per peer (rekey, retransmitted
//!   handshakes, persistent keepalive), plus the dead-session probe of [`super::liveness`]
//!   (forced handshake when keepalives go unanswered; inbound answers probing keepalives).
//!
//! All buffers are allocated once per thread; the steady state allocates nothing per packet.
//! Threads block in `poll(2)` only when idle, with a timeout so they notice a stop request.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use boringtun::noise::{Packet, Tunn, TunnResult, handshake::parse_handshake_anon};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::liveness::{self, Action};
use super::offload::{
    Coalescer, Frame, Sink, VNET_HDR_LEN, finish_read, split_tcp4, unmerge_frame,
};
use super::strangers::Strangers;
use super::table::{Entry, PeerTable, destination};
use super::tun::Tun;
use super::udp_batch::{
    BATCH, Batch, datagrams, enable_udp_gro, from_sockaddr, gro_segment_size, send_batch,
};

/// Largest datagram or packet handled.
const MAX_PACKET: usize = 65_535;
/// WireGuard adds at most this much (data header + tag); handshakes need 148 bytes.
const SLACK: usize = 160;
/// Idle wait before re-checking the stop flag.
const POLL_MS: i32 = 250;
/// Timer period (boringtun's timers have one-second resolution; 250 ms keeps them punctual).
const TIMER_TICK: Duration = Duration::from_millis(250);

/// Why packets were dropped, for metrics and debugging.
#[derive(Debug, Default)]
pub struct Drops {
    /// Outbound packet for a destination no peer carries.
    pub no_route: AtomicU64,
    /// Outbound packet for a peer whose endpoint is not known yet.
    pub no_endpoint: AtomicU64,
    /// Inbound datagram that is not WireGuard, is for an unknown peer, or fails authentication.
    pub invalid: AtomicU64,
    /// Decrypted packet whose source the peer may not use.
    pub source_not_allowed: AtomicU64,
    /// Send or TUN write errors.
    pub io_errors: AtomicU64,
}

/// What the packet threads share with the driver.
pub(crate) struct Shared {
    pub table: RwLock<Arc<PeerTable>>,
    pub stop: AtomicBool,
    pub tun: Arc<Tun>,
    pub socket: UdpSocket,
    pub secret: StaticSecret,
    pub public: PublicKey,
    pub drops: Arc<Drops>,
    /// Recent initiations from keys no peer has yet (answered when the peer is added).
    pub strangers: Mutex<Strangers>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tun", &self.tun)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The current table (a cheap `Arc` clone; writers only swap it).
    pub fn table(&self) -> Arc<PeerTable> {
        match self.table.read() {
            Ok(t) => Arc::clone(&t),
            // A panicking writer cannot leave a half-built table: it is swapped whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends one datagram (handshakes, keepalives, timer output) to the peer's endpoint.
    pub fn send_to_peer(&self, entry: &Entry, packet: &[u8]) {
        let endpoint = *lock(&entry.state.endpoint);
        match endpoint {
            Some(addr) => self.send_to(packet, addr),
            None => {
                self.drops.no_endpoint.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends one datagram to `addr`, counting a failure.
    pub fn send_to(&self, packet: &[u8], addr: SocketAddr) {
        if self.socket.send_to(packet, addr).is_err() {
            self.drops.io_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Locks a mutex, recovering from poisoning (the protected state stays consistent: boringtun
/// state machines and endpoints are updated by single assignments).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until `fd` is readable or the timeout passes.
fn wait_readable(fd: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
}

/// Encrypted datagrams waiting for one `sendmmsg`: packed back to back in `out`.
struct Outgoing {
    out: Vec<u8>,
    used: usize,
    spans: Vec<(usize, usize, SocketAddr)>,
    batch: Batch,
    gso: bool,
}

impl Outgoing {
    /// Sends what is pending.
    fn send(&mut self, shared: &Shared) {
        if !self.spans.is_empty() {
            send_batch(
                shared.socket.as_fd(),
                &shared.drops.io_errors,
                &mut self.batch,
                &mut self.out,
                &self.spans,
                &mut self.gso,
            );
        }
        self.spans.clear();
        self.used = 0;
    }

    /// Encrypts `packet` for `entry` after what is pending (sending that first if the buffer
    /// could not take it).
    fn encrypt(&mut self, shared: &Shared, entry: &Entry, packet: &[u8]) {
        if self.used + packet.len() + SLACK > self.out.len() {
            self.send(shared);
        }
        let endpoint = *lock(&entry.state.endpoint);
        let mut tunn = lock(&entry.state.tunn);
        match tunn.encapsulate(packet, &mut self.out[self.used..]) {
            TunnResult::WriteToNetwork(wire) => {
                let len = wire.len();
                drop(tunn);
                match endpoint {
                    Some(addr) => {
                        self.spans.push((self.used, len, addr));
                        self.used += len;
                    }
                    None => {
                        shared.drops.no_endpoint.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // Queued until the handshake completes.
            TunnResult::Done => {}
            _ => {
                shared.drops.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Outbound thread: TUN → (split superpackets) → encrypt → UDP.
pub(crate) fn outbound(shared: Arc<Shared>) {
    let mut input = vec![0u8; VNET_HDR_LEN + MAX_PACKET];
    let mut segment = Vec::with_capacity(MAX_PACKET);
    // Packets are packed back to back, so only the first few hundred KiB are touched at a
    // typical MTU; the size only guarantees that a full batch of maximum-size packets fits.
    let mut pending = Outgoing {
        out: vec![0u8; BATCH * (MAX_PACKET + SLACK)],
        used: 0,
        spans: Vec::with_capacity(BATCH),
        batch: Batch::new(),
        gso: true,
    };
    while !shared.stopping() {
        let table = shared.table();
        let mut idle = false;
        let mut reads = 0;
        while reads < BATCH && pending.spans.len() < BATCH {
            let n = match shared.tun.read(&mut input) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    idle = pending.spans.is_empty();
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
                    idle = true;
                    break;
                }
            };
            reads += 1;
            let Ok(frame) = finish_read(&mut input[..n]) else {
                shared.drops.invalid.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (range, mss) = match frame {
                Frame::Packet(r) => (r, None),
                Frame::Tcp4 { packet, mss } => (packet, Some(mss)),
            };
            let packet = &input[range];
            let Some(entry) = destination(packet).and_then(|d| table.route(d)) else {
                shared.drops.no_route.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match mss {
                None => pending.encrypt(&shared, entry, packet),
                Some(mss) => {
                    let split = split_tcp4(packet, mss, &mut segment, |s| {
                        pending.encrypt(&shared, entry, s);
                    });
                    if split.is_err() {
                        shared.drops.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        pending.send(&shared);
        if idle {
            wait_readable(shared.tun.fd());
        }
    }
}

/// Inbound thread: UDP → decrypt → TUN.
pub(crate) fn inbound(shared: Arc<Shared>) {
    let mut bufs = vec![0u8; BATCH * MAX_PACKET];
    let mut out = vec![0u8; MAX_PACKET + SLACK];
    let mut batch = Batch::new();
    for (i, chunk) in bufs.chunks_mut(MAX_PACKET).enumerate() {
        batch.iov[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
    }
    let gro = enable_udp_gro(&shared.socket);
    let mut coalescer = Coalescer::new();
    let mut scratch = Vec::with_capacity(VNET_HDR_LEN + MAX_PACKET);
    let mut merge = true;
    while !shared.stopping() {
        for (h, ctrl) in batch.hdrs.iter_mut().zip(batch.ctrl.iter_mut()) {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_len = 0;
            if gro {
                let ctrl: *mut [u64; 4] = ctrl;
                h.msg_hdr.msg_control = ctrl.cast();
                h.msg_hdr.msg_controllen = size_of::<[u64; 4]>();
            }
        }
        // SAFETY: headers point at BATCH valid iovecs aimed at `bufs` (alive, not otherwise
        // borrowed during the call) and at valid address storage.
        let n = unsafe {
            libc::recvmmsg(
                shared.socket.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                wait_readable(shared.socket.as_fd());
            }
            continue;
        }
        let table = shared.table();
        let now = liveness::now_ms();
        let merging = merge;
        let mut sink = TunSink {
            shared: &shared,
            merge: &mut merge,
            scratch: Vec::new(),
            plain: Vec::new(),
        };
        let mut delivery = Delivery {
            coalescer: merging.then_some(&mut coalescer),
            sink: &mut sink,
            scratch: &mut scratch,
        };
        for i in 0..n as usize {
            let len = batch.hdrs[i].msg_len as usize;
            let Some(src) = from_sockaddr(&batch.addrs[i]) else {
                continue;
            };
            let segment = gro_segment_size(&batch.hdrs[i].msg_hdr);
            let buffer = &bufs[i * MAX_PACKET..i * MAX_PACKET + len];
            for datagram in datagrams(buffer, segment) {
                receive(&shared, &table, src, datagram, &mut out, now, &mut delivery);
            }
        }
        // Nothing waits for the next batch.
        delivery.flush();
    }
}

/// Writes frames to the TUN device, counting failures. A kernel that refuses a merged
/// frame (`EINVAL`: it does not take GSO writes) turns merging off for good, and every
/// merged frame it refuses is written again as the plain packets it stands for, so none is
/// lost.
struct TunSink<'a> {
    shared: &'a Shared,
    merge: &'a mut bool,
    /// Scratch for re-cutting a refused merged frame.
    scratch: Vec<u8>,
    plain: Vec<u8>,
}

impl Sink for TunSink<'_> {
    fn write_frame(&mut self, frame: &[u8]) {
        let Err(e) = self.shared.tun.write(frame) else {
            return;
        };
        let merged = frame.get(1).is_some_and(|gso| *gso != 0);
        if !merged || e.raw_os_error() != Some(libc::EINVAL) {
            self.shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if *self.merge {
            tracing::info!(error = %e, "TUN device refused a merged TCP frame; writing packets one by one");
            *self.merge = false;
        }
        let (shared, scratch, plain) = (self.shared, &mut self.scratch, &mut self.plain);
        let unmerged = unmerge_frame(frame, scratch, plain, |f| {
            if shared.tun.write(f).is_err() {
                shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        if unmerged.is_err() {
            shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where decrypted packets go: through the coalescer, or straight to the device.
struct Delivery<'a, 'b> {
    coalescer: Option<&'a mut Coalescer>,
    sink: &'a mut TunSink<'b>,
    /// Frame buffer for packets written alone.
    scratch: &'a mut Vec<u8>,
}

impl Delivery<'_, '_> {
    fn packet(&mut self, packet: &[u8]) {
        match &mut self.coalescer {
            Some(c) => c.push(packet, self.sink),
            None => {
                self.scratch.clear();
                self.scratch.resize(VNET_HDR_LEN, 0);
                self.scratch.extend_from_slice(packet);
                self.sink.write_frame(self.scratch);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(c) = &mut self.coalescer {
            c.flush(self.sink);
        }
    }
}

/// Handles one datagram from `src`, received at `now` (see [`liveness::now_ms`]).
fn receive(
    shared: &Shared,
    table: &PeerTable,
    src: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
    now: u64,
    delivery: &mut Delivery<'_, '_>,
) {
    let invalid = || {
        shared.drops.invalid.fetch_add(1, Ordering::Relaxed);
    };
    let parsed = Tunn::parse_incoming_packet(datagram);
    let is_data = matches!(parsed, Ok(Packet::PacketData(_)));
    let entry = match parsed {
        Ok(Packet::HandshakeInit(init)) => {
            match parse_handshake_anon(&shared.secret, &shared.public, &init) {
                Ok(half) => {
                    let known = table.by_key(&half.peer_static_public);
                    if known.is_none() {
                        lock(&shared.strangers).knock(half.peer_static_public, src, now);
                    }
                    known
                }
                Err(_) => None,
            }
        }
        Ok(Packet::HandshakeResponse(p)) => table.by_receiver(p.receiver_idx),
        Ok(Packet::PacketCookieReply(p)) => table.by_receiver(p.receiver_idx),
        Ok(Packet::PacketData(p)) => table.by_receiver(p.receiver_idx),
        Err(_) => None,
    };
    let Some(entry) = entry else {
        invalid();
        return;
    };
    let mut tunn = lock(&entry.state.tunn);
    let authenticated = match tunn.decapsulate(Some(src.ip()), datagram, out) {
        TunnResult::WriteToTunnelV4(packet, source) => {
            deliver(shared, entry, IpAddr::V4(source), packet, delivery);
            true
        }
        TunnResult::WriteToTunnelV6(packet, source) => {
            deliver(shared, entry, IpAddr::V6(source), packet, delivery);
            true
        }
        TunnResult::WriteToNetwork(reply) => {
            // A handshake response or cookie: always back to where the request came from.
            if shared.socket.send_to(reply, src).is_err() {
                shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
            }
            // Then whatever was queued waiting for the session.
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], out) {
                if shared.socket.send_to(queued, src).is_err() {
                    shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A cookie reply proves nothing about the sender; a handshake message does.
            !matches!(
                Tunn::parse_incoming_packet(datagram),
                Ok(Packet::PacketCookieReply(_))
            )
        }
        // A keepalive (or a handshake response that completed the session).
        TunnResult::Done => {
            // A peer that probes with keepalives needs an answer to know we still hold the
            // session (see `liveness`); boringtun only answers data.
            if is_data
                && entry.state.keepalive.is_none()
                && entry.state.liveness.echo_due(now)
                && let TunnResult::WriteToNetwork(keepalive) = tunn.encapsulate(&[], out)
                && shared.socket.send_to(keepalive, src).is_err()
            {
                shared.drops.io_errors.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
        TunnResult::Err(_) => {
            invalid();
            false
        }
    };
    drop(tunn);
    if authenticated {
        entry.state.liveness.received(now);
        let mut endpoint = lock(&entry.state.endpoint);
        if *endpoint != Some(src) {
            tracing::debug!(gateway = %entry.config.gateway, %src, "peer endpoint updated");
            *endpoint = Some(src);
        }
    }
}

/// Hands a decrypted packet on towards the TUN device if its source belongs to the peer.
fn deliver(
    shared: &Shared,
    entry: &Entry,
    source: IpAddr,
    packet: &[u8],
    delivery: &mut Delivery<'_, '_>,
) {
    if !entry.allows(source) {
        shared
            .drops
            .source_not_allowed
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    delivery.packet(packet);
}

/// Timer thread: rekeys, handshake retries, keepalives, and the dead-session probe of
/// [`liveness`].
pub(crate) fn timers(shared: Arc<Shared>) {
    let mut out = vec![0u8; MAX_PACKET + SLACK];
    while !shared.stopping() {
        std::thread::sleep(TIMER_TICK);
        let table = shared.table();
        let now = liveness::now_ms();
        for entry in &table.peers {
            let live = &entry.state.liveness;
            let mut tunn = lock(&entry.state.tunn);
            let mut expired = false;
            match tunn.update_timers(&mut out) {
                TunnResult::WriteToNetwork(packet) => {
                    let len = packet.len();
                    // Timers emit handshake initiations and keepalives; a keepalive is a probe.
                    if matches!(
                        Tunn::parse_incoming_packet(packet),
                        Ok(Packet::PacketData(_))
                    ) {
                        live.keepalive_sent(now);
                    }
                    drop(tunn);
                    shared.send_to_peer(entry, &out[..len]);
                    tunn = lock(&entry.state.tunn);
                }
                TunnResult::Err(boringtun::noise::errors::WireGuardError::ConnectionExpired) => {
                    expired = true;
                }
                _ => {}
            }
            let keepalive_ms = entry.state.keepalive.map(|k| u64::from(k) * 1000);
            if liveness::decide(live.snapshot(now, keepalive_ms, expired)) == Action::Handshake {
                live.forced(now);
                if let TunnResult::WriteToNetwork(packet) =
                    tunn.format_handshake_initiation(&mut out, true)
                {
                    let len = packet.len();
                    drop(tunn);
                    if live.first_contact() {
                        tracing::debug!(gateway = %entry.config.gateway, "first contact: retrying the handshake");
                    } else {
                        tracing::info!(
                            gateway = %entry.config.gateway,
                            expired,
                            "no answer from the peer: forcing a new handshake"
                        );
                    }
                    shared.send_to_peer(entry, &out[..len]);
                }
            }
        }
    }
}
