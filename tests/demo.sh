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
section "build: raven-cnitool, raven-cni, raven-lab"
tests/cnitool/build.sh
cargo build --release -p raven-cni -p raven-tests --bin raven-lab
section "raven-lab demo"
"${CARGO_TARGET_DIR:-$root/target}/release/raven-lab" demo "$@"
