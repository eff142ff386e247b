#!/usr/bin/env bash
# Benchmark of raven-cni against Debian's portmap (see tests/src/bin/cni-bench.rs):
# `sudo tests/bench.sh [--iterations N] [--cni-version V] [--port-mappings N]`.
# Installs missing Debian packages, builds what it needs, prints a Markdown table.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ $EUID -ne 0 ]]; then
    echo "tests/bench.sh must run as root (it creates network namespaces)" >&2
    exit 1
fi
source tests/cargo-env.sh

tests/install-deps.sh >&2
tests/cnitool/build.sh >&2
cargo build --release -p raven-cni -p raven-tests --bin cni-bench >&2
"${CARGO_TARGET_DIR:-$root/target}/release/cni-bench" "$@"
