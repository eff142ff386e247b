//! Network namespaces: check a path really is one, and talk to it without entering it.
//!
//! The calling thread never changes namespace. A short-lived helper thread enters the pod's
//! namespace, creates the netlink socket there (a socket stays bound to the namespace it was
//! created in) and exits, so no thread can be left behind in the wrong namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{PROC_SUPER_MAGIC, statfs};

use crate::error::{CniError, Result, code};
use crate::netlink::RouteSocket;

/// `NSFS_MAGIC` from linux/magic.h: the filesystem of /proc/*/ns/* and their bind mounts.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What a netns path turned out to be.
#[derive(Debug)]
pub enum Lookup {
    /// An open handle on a network namespace other than ours.
    Found(File),
    /// Nothing there, or a stale mount point: the namespace is gone.
    Gone,
}

/// Opens `path` as a network namespace, refusing anything that is not one.
///
/// A path that does not exist, or that is a plain file (a bind mount that was already undone
/// leaves an empty tmpfs file behind), means the namespace is gone. The plugin's own namespace
/// is refused: routes meant for a pod must never land on the host.
pub fn open(path: &str) -> Result<Lookup> {
    let fs = match statfs(Path::new(path)) {
        Ok(fs) => fs,
        Err(nix::errno::Errno::ENOENT) => return Ok(Lookup::Gone),
        Err(e) => {
            return Err(CniError::new(
                code::IO,
                format!("statfs {path}"),
                e.to_string(),
            ));
        }
    };
    let magic = fs.filesystem_type();
    if magic.0 as i64 != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
        return Ok(Lookup::Gone);
    }
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("netns {path} vanished"),
            "",
        ),
        _ => CniError::io(path, &e),
    })?;
    refuse_own_namespace(&file, path)?;
    Ok(Lookup::Found(file))
}

/// Like [`open`], for commands that need the namespace to exist (ADD, CHECK): gone is code 3.
pub fn open_existing(path: &str) -> Result<File> {
    match open(path)? {
        Lookup::Found(f) => Ok(f),
        Lookup::Gone => Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {path} does not exist"),
            "CNI_NETNS must name a network namespace (nsfs or /proc/<pid>/ns/net)",
        )),
    }
}

fn refuse_own_namespace(target: &File, path: &str) -> Result<()> {
    let own = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| CniError::io("/proc/thread-self/ns/net", &e))?;
    let theirs = target.metadata().map_err(|e| CniError::io(path, &e))?;
    if own.dev() == theirs.dev() && own.ino() == theirs.ino() {
        return Err(CniError::env(format!(
            "CNI_NETNS {path} is the plugin's own network namespace"
        )));
    }
    Ok(())
}

/// Stack of the helper thread: it makes two system calls, so a few pages are plenty.
const HELPER_STACK: usize = 64 * 1024;

/// Creates a rtnetlink socket bound to the namespace `ns`, from a helper thread.
pub fn open_route_socket(ns: &File) -> Result<RouteSocket> {
    let fd = ns.try_clone().map_err(|e| CniError::io("netns fd", &e))?;
    let handle = std::thread::Builder::new()
        .stack_size(HELPER_STACK)
        .spawn(
            move || -> std::result::Result<netlink_sys::Socket, (&'static str, std::io::Error)> {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| ("setns", std::io::Error::from(e)))?;
                RouteSocket::create_here().map_err(|e| ("netlink socket", e))
            },
        )
        .map_err(|e| CniError::io("spawn netns thread", &e))?;
    let socket = handle
        .join()
        .map_err(|_| CniError::new(code::IO, "netns helper thread panicked", ""))?
        .map_err(|(what, e)| {
            CniError::new(
                code::IO,
                "cannot open netlink in the pod's network namespace",
                format!("{what}: {e}"),
            )
        })?;
    RouteSocket::from_socket(socket)
        .map_err(|e| CniError::new(code::IO, "netlink socket", e.to_string()))
}
