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

section "kube-apiserver 1.20.2 + etcd (built once from Debian's sources, then cached)"
tests/kube/build-apiserver.sh

section "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

section "raven-cni depends on neither kube nor tokio"
if cargo tree -p raven-cni -e normal --prefix none | grep -E '^(kube|kube-[a-z]+|tokio|k8s-openapi) '; then
    echo "raven-cni must stay a small synchronous binary: the crates above must not be in its tree" >&2
    exit 1
fi
echo "ok"

section "release build of raven-cni"
cargo build --release -p raven-cni

section "build raven-controller and raven-node (the apiserver and lab tests run the binaries)"
cargo build -p raven-controller -p raven-node

section "cargo test --workspace --all-features"
# --all-features: raven-api's Gateway tests (CRD drift, Go fixtures) live behind its `kube` feature.
cargo test --workspace --all-features

section "fuzz"
if [[ -x cni-plugin/fuzz/run.sh ]]; then
    cni-plugin/fuzz/run.sh
elif [[ -d cni-plugin/fuzz ]]; then
    echo "cni-plugin/fuzz exists but cni-plugin/fuzz/run.sh is missing or not executable" >&2
    exit 1
else
    echo "no fuzz targets in this tree (cni-plugin/fuzz absent)"
fi
# The proxy front side's request-head layer, ~30 s.
if [[ -x raven-node/fuzz/run.sh ]]; then
    raven-node/fuzz/run.sh 30
else
    echo "raven-node/fuzz/run.sh is missing or not executable" >&2
    exit 1
fi

section "all tests passed"
