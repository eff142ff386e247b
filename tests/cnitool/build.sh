#!/usr/bin/env bash
# Builds raven-cnitool offline against Debian's libcni sources (golang-github-appc-cni-dev,
# under /usr/share/gocode) in GOPATH mode: no module proxy is needed or contacted.
# Output: <repo>/target/cnitool/raven-cnitool. Skips the build when the binary is newer than
# every source file here. Requires golang-go (tests/run.sh and tests/demo.sh install it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out_dir="$root/target/cnitool"
out="$out_dir/raven-cnitool"
gocode=/usr/share/gocode

command -v go >/dev/null || { echo "build.sh: 'go' not found; apt-get install golang-go" >&2; exit 1; }
[[ -d "$gocode/src/github.com/containernetworking/cni/libcni" ]] || {
    echo "build.sh: libcni sources missing in $gocode; apt-get install golang-github-appc-cni-dev" >&2
    exit 1
}

if [[ -x "$out" && -z "$(find "$here" -newer "$out" -type f \( -name '*.go' -o -name build.sh \))" ]]; then
    echo "raven-cnitool is up to date: $out"
    exit 0
fi

mkdir -p "$out_dir/gocache"
(
    cd "$here"
    GO111MODULE=off GOPATH="$gocode" GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
        GOCACHE="$out_dir/gocache" go build -trimpath -o "$out.tmp" .
)
mv -f "$out.tmp" "$out"
echo "built $out"
