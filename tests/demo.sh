#!/usr/bin/env bash
# The README's main job: `sudo tests/demo.sh` (or as root) on a fresh machine.
# Installs missing Debian packages, builds raven-cnitool, the release raven-cni and raven-lab,
# then runs `raven-lab demo`: a "node" netns with Flannel's chain + raven-cni, one pod started
# through the real libcni, what raven-cni installed, and a full teardown.
# Extra arguments go to `raven-lab demo` (e.g. --cni-version 0.3.1).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
section() { printf '\n===== %s =====\n' "$*"; }

if [[ $EUID -ne 0 ]]; then
    echo "tests/demo.sh must run as root (it creates network namespaces): sudo tests/demo.sh" >&2
    exit 1
fi
source tests/cargo-env.sh

section "Debian packages"
tests/install-deps.sh
section "build: raven-cnitool, raven-cni, raven-node, raven-lab"
tests/cnitool/build.sh
cargo build --release -p raven-cni -p raven-node -p raven-tests --bin raven-lab --bin raven-node --bin raven-cni
bin="${CARGO_TARGET_DIR:-$root/target}/release"
section "one node: a pod through Flannel's chain + raven-cni (raven-lab demo)"
"$bin/raven-lab" demo "$@"
section "three domains: cloud, edge-a and edge-b behind NAT with overlapping node IPs (raven-lab multi)"
RAVEN_NODE_BIN="$bin/raven-node" RAVEN_CNI_BIN="$bin/raven-cni" "$bin/raven-lab" multi
