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
    python3-venv                # the venv holding kubernetes-validate (manifest tests)
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "Debian packages: all present"
else
    if [[ $EUID -ne 0 ]]; then
        echo "install-deps.sh: missing packages (${missing[*]}) and not root; run with sudo" >&2
        exit 1
    fi
    echo "Debian packages: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# kubernetes-validate (PyPI) in its own venv, for tests/tests/manifests.rs: it bundles the
# JSON schemas of every Kubernetes release it knows, so validation runs offline afterwards.
# RAVEN_MANIFEST_VENV overrides the location (the tests read the same variable).
venv="${RAVEN_MANIFEST_VENV:-/var/lib/raven-tests/venv}"
kv_version=1.37.0
if [[ -x "$venv/bin/kubernetes-validate" ]] &&
    "$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | grep -qx "Version: $kv_version"; then
    echo "kubernetes-validate $kv_version: present in $venv"
else
    echo "kubernetes-validate: installing $kv_version into $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
