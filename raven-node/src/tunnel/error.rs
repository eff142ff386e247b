//! Errors of the tunnel drivers: each names the object and the operation, so a log line is
//! enough to act on.

use std::io;
use std::path::PathBuf;

use super::DriverKind;

/// A tunnel driver failure.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The key file exists but cannot be used; it is never overwritten (that would change the
    /// published public key behind the cluster's back).
    #[error("WireGuard key file {path}: {problem}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Reading, creating or writing the key file failed.
    #[error("WireGuard key file {path}: {source}")]
    KeyIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An operation on the tunnel device failed.
    #[error("tunnel device {device}: {op}: {source}")]
    Device {
        /// Device name.
        device: String,
        /// What we tried.
        op: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A device of that name exists and is not ours to manage (not a TUN device, or attached
    /// by another process).
    #[error("tunnel device {device}: {problem}; refusing to touch it")]
    ForeignDevice {
        /// Device name.
        device: String,
        /// Why it is considered foreign.
        problem: String,
    },
    /// The UDP socket could not be opened or bound.
    #[error("UDP port {port}: {op}: {source}")]
    Socket {
        /// Listen port.
        port: u16,
        /// What we tried.
        op: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A packet-path thread could not be started.
    #[error("starting tunnel thread {name}: {source}")]
    Thread {
        /// Thread name.
        name: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The plan is unusable for this driver (e.g. a different protocol family).
    #[error("tunnel plan: {0}")]
    Plan(String),
    /// An xfrm (IPsec SA or policy) operation failed.
    #[error("xfrm {op}: {source}")]
    Xfrm {
        /// What we tried, naming the object.
        op: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The IPsec key ring file is unusable; nothing was changed.
    #[error("{0}")]
    KeyRing(String),
    /// The driver kind is not available in this build.
    #[error("tunnel driver {} is not implemented yet (issue 7)", .0.as_str())]
    Unsupported(DriverKind),
}
