#!/usr/bin/env bash
# Builds the kernel tier's initramfs: static busybox, /init (init.sh), the virtio + 9p modules
# in dependency order, and the modprobe wrapper that loads further modules from the host's
# kmod against the unpacked kernel tree.
# Usage: build-initramfs.sh <kernel-dir from prepare-kernel.sh> <output.cpio.gz>
set -euo pipefail

kdir="$1"
out="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(cat "$kdir/version")"
mods="$kdir/lib/modules/$version"
busybox=/bin/busybox
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
    # `file` may be missing: ldd says "not a dynamic executable" for static binaries.
    if ldd "$busybox" >/dev/null 2>&1; then
        echo "build-initramfs.sh: $busybox is not statically linked: install busybox-static (tests/install-deps.sh)" >&2
        exit 1
    fi
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
cat > "$root/bin/modprobe-host" <<WRAP
#!/bin/busybox sh
# Called by the kernel (/proc/sys/kernel/modprobe) and by /init: the host's kmod, chrooted into
# the host root, against the unpacked Debian kernel tree.
exec /bin/busybox chroot /host /sbin/modprobe -d /run/raven-vm/kernel "\$@"
WRAP
chmod +x "$root/bin/modprobe-host"

# Dependency order from modules.dep: dependencies first, each module once.
declare -A seen=()
order=()
add() {
    local m="$1" deps
    [[ -n "${seen[$m]:-}" ]] && return
    seen[$m]=1
    deps="$(grep -m1 "^$m:" "$mods/modules.dep" | cut -d: -f2)"
    local d
    for d in $deps; do add "$d"; done
    order+=("$m")
}
for m in drivers/virtio/virtio_pci fs/9p/9p net/9p/9pnet_virtio; do
    add "kernel/$m.ko"
done
for m in "${order[@]}"; do
    cp "$mods/$m" "$root/modules/"
    basename "$m" >> "$root/boot-modules"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
