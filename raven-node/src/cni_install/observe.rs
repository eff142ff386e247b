//! Reading the CNI configuration directory: the configuration files the runtime would load
//! (by extension), with their bytes. Bounded: a file above [`MAX_FILE`] is an error rather
//! than a memory blow-up.

use std::io::Read;
use std::path::Path;

use super::plan::{ConfFile, is_config_name};

/// Largest configuration file read (real ones are a few hundred bytes).
pub const MAX_FILE: u64 = 1024 * 1024;

/// Every configuration file of `dir` (symlinks followed, like the runtime does); a missing
/// directory is empty. Directories and non-configuration names are skipped.
pub fn read_dir(dir: &Path) -> Result<Vec<ConfFile>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_config_name(&name) {
            continue;
        }
        let path = entry.path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            // Deleted between the listing and the open (a concurrent rename): not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("opening {}: {e}", path.display())),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("stat {}: {e}", path.display()))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_FILE {
            return Err(format!(
                "{} is {} bytes, larger than any CNI configuration ({MAX_FILE})",
                path.display(),
                meta.len()
            ));
        }
        let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(MAX_FILE + 1)
            .read_to_end(&mut content)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        out.push(ConfFile { name, content });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-a.conflist"), b"{}").unwrap();
        std::fs::write(dir.path().join("README"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub.conf")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("10-a.conflist"), dir.path().join("20.json"))
            .unwrap();
        let files = read_dir(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["10-a.conflist", "20.json"]);
        assert_eq!(files[1].content, b"{}");
        assert!(read_dir(&dir.path().join("missing")).unwrap().is_empty());
    }
}
