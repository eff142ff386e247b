#!/usr/bin/env bash
# Builds the raven-cni fuzz target and runs it for a bounded time (default 60 s).
# Uses the pinned stable toolchain with RUSTC_BOOTSTRAP=1 for the sanitizer flags, so no nightly
# toolchain has to be downloaded. Usage: cni-plugin/fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
mkdir -p corpus/stdin_config
cp seeds/*.json corpus/stdin_config/ 2>/dev/null || true
export RUSTC_BOOTSTRAP=1
cargo fuzz build stdin_config
cargo fuzz run stdin_config corpus/stdin_config -- -max_total_time="$secs" -max_len=65536
