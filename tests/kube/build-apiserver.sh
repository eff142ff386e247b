#!/usr/bin/env bash
# Build a real kube-apiserver and kube-controller-manager (Kubernetes 1.20.2) from Debian's
# `kubernetes` source package, offline, and cache the binaries outside the repository, keyed by
# the package version. kube-controller-manager runs only its CSR signing controllers in the
# tests (the signer of the proxy front's kubelet client certificate).
#
# Why: the controller's integration tier runs against a real API server; no registry we can
# reach ships one, but Debian's source package carries the whole tree with its vendor/ dir.
# See /work/shared/reference/kube-apiserver.md for the recipe this script automates.
#
# Idempotent: a second run finds the cached binaries and only prints the API server's path.
# Output: the last line on stdout is the absolute path of the kube-apiserver binary;
# kube-controller-manager is next to it.
#
# Environment:
#   RAVEN_KUBE_CACHE  cache root (default /var/cache/raven-rs/kube)
set -euo pipefail

CACHE="${RAVEN_KUBE_CACHE:-/var/cache/raven-rs/kube}"
SOURCES=/etc/apt/sources.list.d/debian.sources
PKGS=(golang-go etcd-server rsync jq golang-github-modern-go-reflect2-dev)

log() { echo "build-apiserver: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages with apt-get)"
mkdir -p "$CACHE"

# 1. Source packages must be visible to apt (deb-src). Only flip `Types: deb` lines.
if [[ -f $SOURCES ]] && ! grep -q '^Types:.*deb-src' "$SOURCES"; then
    log "enabling deb-src in $SOURCES"
    sed -i 's/^Types: deb$/Types: deb deb-src/' "$SOURCES"
    apt-get update -qq >&2
fi

# 2. Build/run dependencies (no-op when already installed).
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }
fi

# 3. The cache key is the source package version apt would fetch.
VERSION=$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}')
[[ -n $VERSION ]] || die "apt-cache showsrc kubernetes found nothing (is deb-src enabled?)"
KEY=${VERSION//[^A-Za-z0-9.+-]/_}
BIN="$CACHE/bin/$KEY/kube-apiserver"
KCM="$CACHE/bin/$KEY/kube-controller-manager"
if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1 && [[ -x $KCM ]] && "$KCM" --version >/dev/null 2>&1; then
    log "cached: $BIN"
    echo "$BIN"
    exit 0
fi

# 4. Fetch and unpack the source (Debian's patches are applied on unpack).
SRC_ROOT="$CACHE/src/$KEY"
mkdir -p "$SRC_ROOT"
TREE=$(find "$SRC_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
if [[ -z $TREE ]]; then
    log "apt-get source kubernetes=$VERSION into $SRC_ROOT"
    (cd "$SRC_ROOT" && apt-get source -qq "kubernetes=$VERSION" >&2)
    TREE=$(find "$SRC_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
    [[ -n $TREE ]] || die "apt-get source produced no kubernetes-* directory"
fi

# 5. reflect2 1.0.1 (vendored) faults with Go >= 1.18 on the first custom resource it encodes:
#    replace it with Debian's 1.0.2.
R2_VENDOR="$TREE/vendor/github.com/modern-go/reflect2"
R2_DEB=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d $R2_DEB ]] || die "$R2_DEB missing (golang-github-modern-go-reflect2-dev)"
if ! cmp -s "$R2_DEB/reflect2.go" "$R2_VENDOR/reflect2.go"; then
    log "replacing vendored reflect2 with Debian's"
    find "$R2_VENDOR" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    find "$R2_DEB" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
        -exec cp {} "$R2_VENDOR/" \;
fi

# 6. Build in GOPATH mode the way debian/rules does. A half-built _output/ from an interrupted
#    run makes the generators fail, so start clean when there is no binary.
log "building kube-apiserver and kube-controller-manager (about 7 minutes on 2 cores)"
start=$(date +%s)
(
    cd "$TREE"
    rm -rf _output
    mkdir -p .go/src/k8s.io
    ln -sfn ../../.. .go/src/k8s.io/kubernetes
    export GOPATH="$TREE/.go" CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GO111MODULE=off
    cd .go/src/k8s.io/kubernetes
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
)
mkdir -p "$(dirname "$BIN")"
for target in "$BIN" "$KCM"; do
    OUT="$TREE/_output/bin/$(basename "$target")"
    [[ -x $OUT ]] || die "build finished without $OUT"
    cp "$OUT" "$target.tmp" && mv "$target.tmp" "$target"
done
log "built in $(( $(date +%s) - start )) s: $BIN $KCM"
echo "$BIN"
