//! The TUN device of the userspace driver: create or re-attach, persist, MTU, up, remove.
//!
//! The device is made persistent (`TUNSETPERSIST`) so it, and the daemon's routes through it,
//! outlive the process: a graceful restart re-attaches to the same device instead of
//! recreating it, and packets sent while no process is attached are dropped by the kernel
//! (TCP retransmits them) rather than misrouted. Removal clears the flag and closes the file,
//! which deletes the device.
//!
//! Every call works in the network namespace of the calling thread: `/dev/net/tun` creates
//! the device there and the ioctl socket resolves names there (unlike `/sys/class/net`, which
//! shows the namespace sysfs was mounted in).

use std::ffi::c_int;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::tunnel::TunnelError;

/// `TUNSETOFFLOAD` (`_IOW('T', 208, unsigned int)`; not in libc).
const TUNSETOFFLOAD: libc::Ioctl = 0x4004_54d0;
/// Offload flags of `TUNSETOFFLOAD`: checksum offload, TCPv4 segmentation.
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;

/// An attached TUN device (IFF_TUN | IFF_NO_PI | IFF_VNET_HDR: IP packets behind a
/// `virtio_net_hdr`, see [`super::offload`]).
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a valid interface name",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// A socket for interface ioctls in the caller's namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl with an ifreq argument.
fn ioctl_ifreq(fd: BorrowedFd<'_>, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid, initialised ifreq for the duration of the call and every
    // request used here reads or writes at most one ifreq.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether an interface of that name exists in the caller's namespace.
pub fn exists(name: &str) -> io::Result<bool> {
    let sock = control_socket()?;
    let mut req = ifreq(name)?;
    match ioctl_ifreq(sock.as_fd(), libc::SIOCGIFINDEX, &mut req) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Tun {
    /// Creates the device, or attaches to the persistent device of a previous run. Returns
    /// whether it was created. Refuses (without changing it) a device of that name that is not
    /// a TUN device, or that another process has open.
    pub fn open(name: &str) -> Result<(Self, bool), TunnelError> {
        let dev_err = |op, source| TunnelError::Device {
            device: name.to_owned(),
            op,
            source,
        };
        let existed = exists(name).map_err(|e| dev_err("look up", e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| dev_err("open /dev/net/tun", e))?;
        let mut req = ifreq(name).map_err(|e| dev_err("name", e))?;
        // IFF_VNET_HDR lets writes carry TCP superpackets (see `offload`). The kernel takes
        // the flags of the attaching file, so a device created by an older version without
        // it is switched over on attach.
        req.ifr_ifru.ifru_flags =
            (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        if let Err(e) = ioctl_ifreq(file.as_fd(), libc::TUNSETIFF, &mut req) {
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) if existed => TunnelError::ForeignDevice {
                    device: name.to_owned(),
                    problem: "exists and is not a TUN device (IFF_TUN, no packet info)".into(),
                },
                Some(libc::EBUSY) => TunnelError::ForeignDevice {
                    device: name.to_owned(),
                    problem: "is a TUN device attached by another process".into(),
                },
                Some(libc::EPERM) if existed => TunnelError::ForeignDevice {
                    device: name.to_owned(),
                    problem: "is a TUN device owned by another user".into(),
                },
                _ => dev_err("TUNSETIFF", e),
            });
        }
        let tun = Self {
            file,
            name: name.to_owned(),
        };
        tun.set_persist(true)?;
        tun.set_offload()?;
        Ok((tun, !existed))
    }

    /// Device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn dev_err(&self, op: &'static str, source: io::Error) -> TunnelError {
        TunnelError::Device {
            device: self.name.clone(),
            op,
            source,
        }
    }

    fn set_persist(&self, on: bool) -> Result<(), TunnelError> {
        // SAFETY: TUNSETPERSIST takes an integer argument by value.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETPERSIST,
                libc::c_ulong::from(on),
            )
        };
        if rc < 0 {
            return Err(self.dev_err("TUNSETPERSIST", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Lets the kernel hand over TCPv4 superpackets with partial checksums (see `offload`).
    fn set_offload(&self) -> Result<(), TunnelError> {
        // SAFETY: TUNSETOFFLOAD takes an integer argument by value.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD,
                TUN_F_CSUM | TUN_F_TSO4,
            )
        };
        if rc < 0 {
            return Err(self.dev_err("TUNSETOFFLOAD", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Sets the MTU and brings the link up; both only when they differ (no-op otherwise).
    pub fn configure(&self, mtu: u32) -> Result<(), TunnelError> {
        let sock = control_socket().map_err(|e| self.dev_err("control socket", e))?;
        let mut req = ifreq(&self.name).map_err(|e| self.dev_err("name", e))?;
        ioctl_ifreq(sock.as_fd(), libc::SIOCGIFMTU, &mut req)
            .map_err(|e| self.dev_err("get MTU", e))?;
        // SAFETY: SIOCGIFMTU filled the mtu member of the union.
        let current = unsafe { req.ifr_ifru.ifru_mtu };
        let wanted = c_int::try_from(mtu).map_err(|_| {
            self.dev_err(
                "set MTU",
                io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"),
            )
        })?;
        if current != wanted {
            req.ifr_ifru.ifru_mtu = wanted;
            ioctl_ifreq(sock.as_fd(), libc::SIOCSIFMTU, &mut req)
                .map_err(|e| self.dev_err("set MTU", e))?;
        }
        let mut req = ifreq(&self.name).map_err(|e| self.dev_err("name", e))?;
        ioctl_ifreq(sock.as_fd(), libc::SIOCGIFFLAGS, &mut req)
            .map_err(|e| self.dev_err("get flags", e))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up = libc::IFF_UP as libc::c_short;
        if flags & up == 0 {
            req.ifr_ifru.ifru_flags = flags | up;
            ioctl_ifreq(sock.as_fd(), libc::SIOCSIFFLAGS, &mut req)
                .map_err(|e| self.dev_err("set up", e))?;
        }
        Ok(())
    }

    /// Deletes the device: clears the persist flag; the kernel removes it when this (last)
    /// file is closed.
    pub fn remove(self) -> Result<(), TunnelError> {
        self.set_persist(false)
    }

    /// Reads one frame (header + packet); `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes one frame (header + packet) to the kernel.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: packet is valid for reads of packet.len() bytes.
        let n = unsafe { libc::write(self.file.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The descriptor, for poll(2).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Removes a TUN device of that name left by a previous run (`raven-node cleanup`). Returns
/// whether one was removed; a missing device is fine, a foreign one is an error and is left
/// untouched.
pub fn remove_by_name(name: &str) -> Result<bool, TunnelError> {
    let present = exists(name).map_err(|e| TunnelError::Device {
        device: name.to_owned(),
        op: "look up",
        source: e,
    })?;
    if !present {
        return Ok(false);
    }
    let (tun, _) = Tun::open(name)?;
    tun.remove()?;
    Ok(true)
}
