//! Writes the Gateway CRD generated from the Rust types.
//!
//! Usage: `crdgen [PATH]` writes to PATH (creating its directory), or to stdout without one.
//! The committed copy lives at `deploy/crds/raven.openyurt.io_gateways.yaml`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match raven_api::gateway::crd::crd_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match std::env::args_os().nth(1) {
        Some(path) => write_file(Path::new(&path), &yaml),
        None => std::io::stdout().write_all(yaml.as_bytes()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_file(path: &Path, yaml: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, yaml)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
