//! Attachment records: what ADD did, so that DEL, CHECK, GC and raven-node's refresh can find it.
//!
//! One JSON file per attachment, `<dataDir>/<network>/<containerID>:<ifname>.json` (`:` appears
//! in neither a container ID nor an interface name, so names never collide). Files are replaced
//! atomically (write a temporary file, rename). Each attachment has its own lock file beside the
//! record, so concurrent ADDs of different pods never wait for each other; the lock is what
//! orders a raven-node refresh against an ADD of the same pod.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::env::AttachmentId;
use crate::error::{CniError, Result, code};

/// How long an invocation waits for another holder of the same attachment's lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What raven-cni knows about one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    /// Network (conflist) name.
    pub network: String,
    /// `CNI_CONTAINERID`
    pub container_id: String,
    /// `CNI_IFNAME`
    pub ifname: String,
    /// `CNI_NETNS` at ADD time.
    pub netns: String,
    /// The pod's addresses on this interface, from prevResult.
    pub pod_ips: Vec<IpNetwork>,
    /// The gateways our routes use, one per family at most.
    pub gateways: Vec<std::net::IpAddr>,
    /// From `CNI_ARGS` `K8S_POD_NAME`.
    #[serde(default)]
    pub pod_name: Option<String>,
    /// From `CNI_ARGS` `K8S_POD_NAMESPACE`.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// From `CNI_ARGS` `K8S_POD_UID`.
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// Node-state generation the routes were last programmed with; `None` until the first
    /// successful programming (or when there was no node state).
    pub generation: Option<u64>,
    /// Prefixes routed through the tunnel, as last programmed.
    #[serde(default)]
    pub routes: Vec<IpNetwork>,
    /// MTU of those routes.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// The directory of one network's records.
pub fn network_dir(data_dir: &Path, network: &str) -> PathBuf {
    data_dir.join(network)
}

fn stem(id: &AttachmentId) -> String {
    format!("{}:{}", id.container_id, id.ifname)
}

/// Path of an attachment's record.
pub fn record_path(data_dir: &Path, network: &str, id: &AttachmentId) -> PathBuf {
    network_dir(data_dir, network).join(format!("{}.json", stem(id)))
}

fn lock_path(data_dir: &Path, network: &str, id: &AttachmentId) -> PathBuf {
    network_dir(data_dir, network).join(format!("{}.lock", stem(id)))
}

/// Reads a record; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<AttachmentRecord>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("corrupt attachment record {}", path.display()),
                e.to_string(),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(path.display(), &e)),
    }
}

/// Replaces the record atomically.
///
/// No fsync: a record lost in a power cut only costs raven-node a refresh of a pod that is gone
/// after the reboot anyway, while an fsync per pod start would cost milliseconds on every node.
pub fn store(data_dir: &Path, record: &AttachmentRecord) -> Result<()> {
    let id = AttachmentId {
        container_id: record.container_id.clone(),
        ifname: record.ifname.clone(),
    };
    let path = record_path(data_dir, &record.network, &id);
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let bytes = serde_json::to_vec(record)
        .map_err(|e| CniError::new(code::IO, "encode record", e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CniError::io(path.display(), &e)
    })
}

/// Removes a record; a missing record is success.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CniError::io(path.display(), &e)),
        _ => Ok(()),
    }
}

/// Every record of one network, with the path it was read from. Unreadable records are returned
/// as errors in the second list so that callers can go on with the rest.
pub fn list(data_dir: &Path, network: &str) -> Result<(Vec<AttachmentRecord>, Vec<CniError>)> {
    let dir = network_dir(data_dir, network);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(CniError::io(dir.display(), &e)),
    };
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match load(&path) {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    records.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
    Ok((records, errors))
}

/// An exclusive lock on one attachment, held until dropped.
#[derive(Debug)]
pub struct AttachmentLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl AttachmentLock {
    /// Takes the attachment's lock, creating the network directory if needed.
    ///
    /// The lock file may be unlinked by a DEL holding it; after locking we check that the path
    /// still names the file we locked, and start over otherwise, so two holders can never exist.
    pub fn acquire(data_dir: &Path, network: &str, id: &AttachmentId) -> Result<Self> {
        let dir = network_dir(data_dir, network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CniError::io(dir.display(), &e))?;
        let path = lock_path(data_dir, network, id);
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| CniError::io(path.display(), &e))?;
            let lock = lock_until(file, deadline, &path)?;
            if still_linked(&lock, &path) {
                return Ok(Self { _lock: lock, path });
            }
        }
    }

    /// Unlinks the lock file (the attachment is gone); the lock itself is released on drop.
    pub fn remove_file(&self) -> Result<()> {
        remove(&self.path)
    }
}

fn lock_until(mut file: File, deadline: Instant, path: &Path) -> Result<Flock<File>> {
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, errno)) => {
                return Err(CniError::new(
                    code::TRY_AGAIN,
                    format!("attachment is locked: {}", path.display()),
                    format!("{errno} after {}s", LOCK_TIMEOUT.as_secs()),
                ));
            }
        }
    }
}

fn still_linked(lock: &Flock<File>, path: &Path) -> bool {
    match (lock.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: &str) -> AttachmentId {
        AttachmentId {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    fn record(c: &str) -> AttachmentRecord {
        AttachmentRecord {
            network: "cbr0".into(),
            container_id: c.into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            pod_ips: vec!["10.244.1.2/24".parse().unwrap()],
            gateways: vec!["10.244.1.1".parse().unwrap()],
            pod_name: Some("p".into()),
            pod_namespace: Some("ns".into()),
            pod_uid: None,
            generation: Some(3),
            routes: vec!["10.20.0.0/24".parse().unwrap()],
            mtu: Some(1400),
        }
    }

    #[test]
    fn store_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = AttachmentLock::acquire(dir.path(), "cbr0", &id("a")).unwrap();
        store(dir.path(), &record("b")).unwrap();
        store(dir.path(), &record("a")).unwrap();
        let path = record_path(dir.path(), "cbr0", &id("a"));
        assert_eq!(load(&path).unwrap(), Some(record("a")));
        let (all, errors) = list(dir.path(), "cbr0").unwrap();
        assert_eq!(
            all.iter()
                .map(|r| r.container_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(errors.is_empty());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(load(&path).unwrap(), None);
        assert!(list(dir.path(), "other").unwrap().0.is_empty());
    }

    #[test]
    fn corrupt_record_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = AttachmentLock::acquire(dir.path(), "cbr0", &id("a")).unwrap();
        store(dir.path(), &record("a")).unwrap();
        fs::write(record_path(dir.path(), "cbr0", &id("bad")), "{").unwrap();
        let (all, errors) = list(dir.path(), "cbr0").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, 6);
    }

    #[test]
    fn lock_is_exclusive_and_survives_unlink_races() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let first = AttachmentLock::acquire(&path, "n", &id("a")).unwrap();
        let p2 = path.clone();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let second = AttachmentLock::acquire(&p2, "n", &id("a")).unwrap();
            (start.elapsed(), second)
        });
        std::thread::sleep(Duration::from_millis(50));
        first.remove_file().unwrap();
        drop(first);
        let (waited, second) = waiter.join().unwrap();
        assert!(
            waited >= Duration::from_millis(40),
            "second holder did not wait: {waited:?}"
        );
        assert!(
            lock_path(&path, "n", &id("a")).exists(),
            "the waiter re-created a linked lock file"
        );
        drop(second);
        let _other = AttachmentLock::acquire(&path, "n", &id("b")).unwrap();
    }
}
