//! The userspace WireGuard driver: a persistent TUN device named `plan.device`, a UDP socket
//! on `plan.listen_port`, and boringtun's protocol core (`noise::Tunn`, one per peer) driven
//! by our own packet threads ([`datapath`]).
//!
//! `apply` order keeps failures from leaving half-applied state: the socket is bound first
//! (nothing to undo if the port is taken), then the device is created or re-attached and
//! configured, then the new peer table is swapped in whole.

mod datapath;
mod liveness;
pub mod offload;
mod strangers;
pub mod table;
pub mod tun;
mod udp_batch;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use boringtun::noise::{Tunn, TunnResult};

pub use datapath::Drops;
use datapath::{Shared, lock};
use liveness::Liveness;
use table::{Entry, PeerState, PeerTable};
use tun::Tun;

use super::key::KeyFile;
use super::peers::{DesiredPeer, wireguard_peers};
use super::{DriverOptions, DriverReport, PeerStats, TunnelDriver, TunnelError};
use crate::plan::TunnelPlan;

/// Socket buffer size asked for (the kernel caps it unless we may force it).
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// Userspace WireGuard over TUN.
#[derive(Debug)]
pub struct UserspaceWireGuard {
    options: DriverOptions,
    key: KeyFile,
    running: Option<Running>,
    /// Next 24-bit local peer index; starts random so a restarted process does not reuse the
    /// indices its peers still hold sessions for.
    next_index: u32,
    drops: Arc<Drops>,
}

/// The live device, socket and threads.
#[derive(Debug)]
struct Running {
    tun: Arc<Tun>,
    port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the packet threads; the device stays.
    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            // A packet thread that panicked has nothing left to clean up.
            let _ = t.join();
        }
    }
}

impl UserspaceWireGuard {
    /// Loads or creates the key in `options.state_dir`; touches no network state.
    pub fn new(options: DriverOptions) -> Result<Self, TunnelError> {
        let key = KeyFile::load_or_create(&options.state_dir)?;
        let mut seed = [0u8; 4];
        // SAFETY: the pointer and length describe `seed`. A failure leaves zeros, which only
        // makes index reuse after a restart more likely (harmless: stale packets fail auth).
        unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        Ok(Self {
            options,
            key,
            running: None,
            next_index: u32::from_ne_bytes(seed) & 0x00ff_ffff,
            drops: Arc::new(Drops::default()),
        })
    }

    /// Drop counters of the packet path.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// The key file in use.
    pub fn key(&self) -> &KeyFile {
        &self.key
    }

    fn take_index(&mut self) -> u32 {
        let i = self.next_index;
        self.next_index = (self.next_index + 1) & 0x00ff_ffff;
        i
    }

    fn bind(port: u16) -> Result<UdpSocket, TunnelError> {
        let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|source| TunnelError::Socket {
            port,
            op: "bind",
            source,
        })?;
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            for opt in [force, plain] {
                // Best effort: the forced variant needs CAP_NET_ADMIN; default buffers work.
                if set_int_option(&socket, libc::SOL_SOCKET, opt, SOCKET_BUFFER) {
                    break;
                }
            }
        }
        Ok(socket)
    }

    fn start(
        &self,
        tun: Arc<Tun>,
        socket: UdpSocket,
        port: u16,
        table: Arc<PeerTable>,
    ) -> Result<Running, TunnelError> {
        let shared = Arc::new(Shared {
            table: RwLock::new(table),
            stop: AtomicBool::new(false),
            tun: Arc::clone(&tun),
            socket,
            secret: self.key.secret().clone(),
            public: *self.key.public(),
            drops: Arc::clone(&self.drops),
            strangers: Mutex::new(strangers::Strangers::default()),
        });
        let mut running = Running {
            tun,
            port,
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        type Body = fn(Arc<Shared>);
        let bodies: [(&'static str, Body); 3] = [
            ("wg-outbound", datapath::outbound),
            ("wg-inbound", datapath::inbound),
            ("wg-timers", datapath::timers),
        ];
        for (name, body) in bodies {
            let s = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(s))
            {
                Ok(h) => running.threads.push(h),
                Err(source) => {
                    running.stop();
                    return Err(TunnelError::Thread { name, source });
                }
            }
        }
        Ok(running)
    }

    /// Builds the next table from the desired peers, reusing live state where the key and
    /// keepalive are unchanged, and fills in the report.
    fn next_table(
        &mut self,
        old: &PeerTable,
        desired: Vec<DesiredPeer>,
        report: &mut DriverReport,
    ) -> (PeerTable, Vec<Arc<PeerState>>) {
        let mut entries = Vec::with_capacity(desired.len());
        let mut fresh = Vec::new();
        for want in desired {
            let reusable = old
                .by_key(&want.public_key)
                .filter(|e| e.state.keepalive == want.keepalive);
            let state = match reusable {
                Some(e) => {
                    let mut configured = lock(&e.state.configured_endpoint);
                    if want.endpoint.is_some() && *configured != want.endpoint {
                        // The plan moved the peer: follow it. Otherwise keep what we learned.
                        *lock(&e.state.endpoint) = want.endpoint;
                        *configured = want.endpoint;
                    }
                    if e.config != want {
                        report.peers_updated.push(want.gateway.clone());
                    }
                    Arc::clone(&e.state)
                }
                None => {
                    let index = self.take_index();
                    let tunn = Tunn::new(
                        self.key.secret().clone(),
                        boringtun::x25519::PublicKey::from(want.public_key),
                        self.options.preshared_key,
                        want.keepalive,
                        index,
                        None,
                    );
                    let state = Arc::new(PeerState {
                        tunn: Mutex::new(tunn),
                        endpoint: Mutex::new(want.endpoint),
                        index,
                        keepalive: want.keepalive,
                        configured_endpoint: Mutex::new(want.endpoint),
                        liveness: Liveness::born_at(liveness::now_ms()),
                    });
                    if old.by_key(&want.public_key).is_some() {
                        report.peers_updated.push(want.gateway.clone());
                    } else {
                        report.peers_added.push(want.gateway.clone());
                    }
                    fresh.push(Arc::clone(&state));
                    state
                }
            };
            entries.push(Entry {
                config: want,
                state,
            });
        }
        let table = PeerTable::new(entries);
        for e in &old.peers {
            if table.by_key(&e.config.public_key).is_none() {
                report.peers_removed.push(e.config.gateway.clone());
            }
        }
        (table, fresh)
    }

    /// Stops the threads and deletes the device (ours, or one a previous run left under
    /// `name`). Returns whether a device was removed.
    fn teardown(&mut self, name: &str) -> Result<bool, TunnelError> {
        match self.running.take() {
            Some(mut running) => {
                running.stop();
                let Running { tun, shared, .. } = running;
                drop(shared);
                match Arc::try_unwrap(tun) {
                    Ok(tun) => tun.remove().map(|()| true),
                    // Unreachable once the threads are joined; fall back to the name.
                    Err(tun) => {
                        let name = tun.name().to_owned();
                        drop(tun);
                        tun::remove_by_name(&name)
                    }
                }
            }
            None => tun::remove_by_name(name),
        }
    }
}

impl TunnelDriver for UserspaceWireGuard {
    fn name(&self) -> &'static str {
        super::DriverKind::UserspaceWireGuard.as_str()
    }

    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<DriverReport, TunnelError> {
        let mut report = DriverReport::default();
        let Some(plan) = plan else {
            let name = self.options.device.clone();
            report.device_removed = self.teardown(&name)?;
            return Ok(report);
        };
        let (desired, skipped) = wireguard_peers(
            plan,
            self.key.public().as_bytes(),
            self.options.keepalive_secs,
        )?;
        report.skipped = skipped;

        // A renamed device: the old one is ours, remove it first.
        if let Some(r) = &self.running
            && r.tun.name() != plan.device
        {
            let old = r.tun.name().to_owned();
            self.teardown(&old)?;
        }
        // Someone deleted our device under us (`ip link del`): our descriptor now points at
        // nothing. Drop it and create the device afresh below; the peer state is kept.
        let vanished = self
            .running
            .as_ref()
            .is_some_and(|r| matches!(tun::exists(r.tun.name()), Ok(false)));
        let mut carried = None;
        if vanished && let Some(mut r) = self.running.take() {
            tracing::warn!(device = %plan.device, "tunnel device disappeared; recreating it");
            r.stop();
            carried = Some(r.shared.table());
        }
        let old_table = self
            .running
            .as_ref()
            .map(|r| r.shared.table())
            .or(carried)
            .unwrap_or_default();
        match &mut self.running {
            Some(r) if r.port == plan.listen_port => {
                r.tun.configure(self.options.mtu)?;
            }
            _ => {
                // A new port never equals the old socket's, so binding first is safe.
                let socket = Self::bind(plan.listen_port)?;
                let tun = match self.running.take() {
                    Some(mut r) => {
                        r.stop();
                        r.tun
                    }
                    None => {
                        let (tun, created) = Tun::open(&plan.device)?;
                        report.device_created = created;
                        Arc::new(tun)
                    }
                };
                tun.configure(self.options.mtu)?;
                self.running =
                    Some(self.start(tun, socket, plan.listen_port, Arc::clone(&old_table))?);
            }
        }
        let (table, fresh) = self.next_table(&old_table, desired, &mut report);
        let running = self.running.as_ref().expect("started or kept just above");
        let table = Arc::new(table);
        match running.shared.table.write() {
            Ok(mut t) => *t = Arc::clone(&table),
            Err(p) => *p.into_inner() = Arc::clone(&table),
        }
        // Handshake right away with new peers we know how to reach, instead of waiting for the
        // first packet or keepalive: the NATed side opens its mapping, a restarted side
        // replaces the sessions its peers still hold. A peer that knocked moments ago (its
        // initiation arrived before we knew it, see `strangers`) is answered where it knocked
        // from: that address is proven reachable, even behind NAT.
        let mut buf = vec![0u8; 256];
        let now = liveness::now_ms();
        for entry in table
            .peers
            .iter()
            .filter(|e| fresh.iter().any(|f| Arc::ptr_eq(f, &e.state)))
        {
            let knocked = lock(&running.shared.strangers).take(&entry.config.public_key, now);
            let Some(target) = knocked.or(*lock(&entry.state.endpoint)) else {
                continue;
            };
            let mut tunn = lock(&entry.state.tunn);
            if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut buf, false)
            {
                let len = p.len();
                drop(tunn);
                running.shared.send_to(&buf[..len], target);
            }
        }
        Ok(report)
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        let Some(running) = &self.running else {
            return Vec::new();
        };
        let now = SystemTime::now();
        running
            .shared
            .table()
            .peers
            .iter()
            .map(|e| {
                let (since, tx, rx, _, _) = lock(&e.state.tunn).stats();
                PeerStats {
                    gateway: e.config.gateway.clone(),
                    node: e.config.node.clone(),
                    endpoint: *lock(&e.state.endpoint),
                    last_handshake: since.and_then(|d| now.checked_sub(d)),
                    rx_bytes: rx as u64,
                    tx_bytes: tx as u64,
                }
            })
            .collect()
    }

    fn public_key(&self) -> Option<String> {
        Some(self.key.public_base64())
    }

    fn cleanup(&mut self) -> Result<(), TunnelError> {
        let name = self.options.device.clone();
        self.teardown(&name).map(|_| ())
    }
}

impl Drop for UserspaceWireGuard {
    /// Graceful stop: the threads end, the device stays (persistent) with its routes, so a
    /// restarted daemon re-attaches without touching the data plane.
    fn drop(&mut self) {
        if let Some(r) = &mut self.running {
            r.stop();
        }
    }
}

/// Sets an integer socket option; whether the kernel took it.
pub(super) fn set_int_option(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: setsockopt with a valid pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}
