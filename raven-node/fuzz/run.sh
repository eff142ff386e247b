#!/usr/bin/env bash
# Builds the proxy front side's request-head fuzz target and runs it for a bounded time
# (default 30 s). Same setup as cni-plugin/fuzz/run.sh: the pinned stable toolchain with
# RUSTC_BOOTSTRAP=1 for the sanitizer flags. Usage: raven-node/fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
mkdir -p corpus/request_head
cp seeds/* corpus/request_head/
export RUSTC_BOOTSTRAP=1
cargo fuzz build request_head
cargo fuzz run request_head corpus/request_head -- -max_total_time="$secs" -max_len=16384
