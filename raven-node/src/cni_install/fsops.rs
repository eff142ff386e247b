//! Atomic file replacement: write a temporary file in the same directory, fsync it, rename it
//! over the target, fsync the directory. `rename(2)` within one file system is atomic, so a
//! reader (the container runtime listing `/etc/cni/net.d`, or exec'ing `/opt/cni/bin/raven-cni`)
//! sees the old complete file or the new complete file, never a prefix. The temporary name
//! starts with a dot and ends in `.tmp`, an extension the runtime does not load. Renaming over
//! a binary that is being executed is safe (the running process keeps the old inode), unlike
//! writing into it (`ETXTBSY`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `content` atomically, with permissions `mode`.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("raven");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        // The umask may have narrowed the mode given to open.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` (and syncs its directory); `Ok(false)` when it was not there.
pub fn remove_file(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Installs `src` as `<bin_dir>/<name>` (mode 0755) unless it already holds the same bytes;
/// `Ok(true)` when it wrote.
pub fn install_binary(src: &Path, bin_dir: &Path, name: &str) -> Result<bool, String> {
    let content =
        std::fs::read(src).map_err(|e| format!("reading the binary {}: {e}", src.display()))?;
    if content.len() < 4 || &content[..4] != b"\x7fELF" {
        return Err(format!("{} is not an ELF executable", src.display()));
    }
    let dst = bin_dir.join(name);
    match std::fs::read(&dst) {
        Ok(existing) if existing == content => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", dst.display())),
    }
    write_atomic(&dst, &content, 0o755).map_err(|e| format!("writing {}: {e}", dst.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/05-raven.conflist");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["05-raven.conflist"]);
        assert!(remove_file(&p).unwrap());
        assert!(!remove_file(&p).unwrap());
    }

    #[test]
    fn installs_binaries_once_and_refuses_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"\x7fELF rest").unwrap();
        let bin = dir.path().join("bin");
        assert!(install_binary(&src, &bin, "raven-cni").unwrap());
        assert!(!install_binary(&src, &bin, "raven-cni").unwrap());
        let mode = std::fs::metadata(bin.join("raven-cni"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::write(&src, b"#!/bin/sh").unwrap();
        let e = install_binary(&src, &bin, "raven-cni").unwrap_err();
        assert!(e.contains("not an ELF"), "{e}");
        let e = install_binary(&dir.path().join("nope"), &bin, "raven-cni").unwrap_err();
        assert!(e.contains("reading the binary"), "{e}");
    }
}
