#!/usr/bin/env bash
# THE test command (README, CI): `sudo tests/run.sh`, or `tests/run.sh` as root.
# Installs missing Debian packages, builds the Go libcni driver and the release plugin, then runs
# fmt, clippy, every test of the workspace (kernel-level tests included: they need root and fail,
# never skip, when something is missing) and the bounded fuzz run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

section() { printf '\n===== %s =====\n' "$*"; }

if [[ $EUID -ne 0 ]]; then
    echo "tests/run.sh must run as root (tests create network namespaces): sudo tests/run.sh" >&2
    exit 1
fi

# Under sudo, cargo usually lives in the invoking user's home.
if ! command -v cargo >/dev/null; then
    for home in "$HOME" ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"}; do
        if [[ -x "$home/.cargo/bin/cargo" ]]; then
            export PATH="$home/.cargo/bin:$PATH"
            [[ -d "$home/.rustup" ]] && export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
            break
        fi
    done
fi
command -v cargo >/dev/null || { echo "cargo not found: install rustup (toolchain pinned in rust-toolchain.toml)" >&2; exit 1; }

section "Debian packages"
tests/install-deps.sh

section "raven-cnitool (Go, libcni $(dpkg-query -W -f='${Version}' golang-github-appc-cni-dev))"
tests/cnitool/build.sh

section "cargo fmt --check"
cargo fmt --all --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "release build of raven-cni"
cargo build --release -p raven-cni

section "cargo test --workspace"
cargo test --workspace

section "fuzz"
if [[ -x cni-plugin/fuzz/run.sh ]]; then
    cni-plugin/fuzz/run.sh
elif [[ -d cni-plugin/fuzz ]]; then
    echo "cni-plugin/fuzz exists but cni-plugin/fuzz/run.sh is missing or not executable" >&2
    exit 1
else
    echo "no fuzz targets in this tree (cni-plugin/fuzz absent)"
fi

section "all tests passed"
