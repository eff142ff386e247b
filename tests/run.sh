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

source tests/cargo-env.sh

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
