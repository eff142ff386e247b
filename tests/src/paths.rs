//! Where the binaries under test live and how to build them when they do not.
//!
//! The test runner (`tests/run.sh`) builds `raven-cni` in release mode and the Go driver before
//! `cargo test`; a test that finds either missing panics with the build command instead of
//! building behind the user's back.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::require::is_executable;

/// A file of the team's shared reference notes (`shared/reference/...`): next to the checkout
/// (where CI lays `shared/`), else at `/work/shared`. Panics naming both places when absent.
pub fn shared_reference(relative: &str) -> PathBuf {
    let beside = repo_root()
        .join("..")
        .join("shared/reference")
        .join(relative);
    let fixed = PathBuf::from("/work/shared/reference").join(relative);
    [beside, fixed.clone()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("reference file {relative} not found beside the checkout (../shared/reference) nor at {}", fixed.display()))
}

/// Root of the repository (the workspace directory).
pub fn repo_root() -> PathBuf {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_dir.parent().unwrap_or(tests_dir).to_path_buf()
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// The release `raven-cni` binary (`RAVEN_CNI_BIN` overrides).
pub fn find_raven_cni() -> Result<PathBuf> {
    let path = std::env::var_os("RAVEN_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release").join("raven-cni"));
    existing(
        path,
        "build it with `cargo build --release -p raven-cni` (tests/run.sh does)",
    )
}

/// Our libcni driver (`RAVEN_CNITOOL` overrides).
pub fn find_cnitool() -> Result<PathBuf> {
    let path = std::env::var_os("RAVEN_CNITOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/cnitool/raven-cnitool"));
    existing(
        path,
        "build it with `tests/cnitool/build.sh` (tests/run.sh does)",
    )
}

/// Panicking form of [`find_raven_cni`] for tests.
#[track_caller]
pub fn raven_cni_bin() -> PathBuf {
    find_raven_cni().unwrap_or_else(|e| panic!("{e}"))
}

/// Panicking form of [`find_cnitool`] for tests.
#[track_caller]
pub fn cnitool_bin() -> PathBuf {
    find_cnitool().unwrap_or_else(|e| panic!("{e}"))
}

fn existing(path: PathBuf, how: &str) -> Result<PathBuf> {
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::new(format!("{} is missing: {how}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests/Cargo.toml").is_file());
    }
}
