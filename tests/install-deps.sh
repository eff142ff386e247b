#!/usr/bin/env bash
# Installs the Debian packages the tests, the benchmark and the demo need, when missing.
# Runs `apt-get update` at most once, and only if something is missing. Needs root.
set -euo pipefail

packages=(
    containernetworking-plugins # bridge, host-local, portmap (Flannel-equivalent chain)
    golang-go                   # builds raven-cnitool
    golang-github-appc-cni-dev  # libcni 1.1.2 sources for raven-cnitool
    iproute2                    # ip netns / ip -j
    iptables                    # portmap's backend
    nftables
    iperf3
    hyperfine
    tcpdump
    iputils-ping                # ping in the lab
    curl                        # metrics/health checks, kube tier
    time                        # /usr/bin/time: peak RSS in the benchmark
    qemu-system-x86             # kernel tier: boots Debian's kernel (tests/src/vm)
    busybox-static              # kernel tier: the initramfs's shell
    kmod                        # kernel tier: depmod/modprobe for the guest's modules
    cpio                        # kernel tier: packs the initramfs
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "Debian packages: all present"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "install-deps.sh: missing packages (${missing[*]}) and not root; run with sudo" >&2
    exit 1
fi
echo "Debian packages: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
