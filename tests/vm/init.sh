#!/bin/busybox sh
# /init of the kernel tier's initramfs (built by build-initramfs.sh). Loads virtio + 9p, mounts
# the host's root read-only at /host with tmpfs over /tmp and /run, the unpacked kernel tree
# (for modprobe) at /host/run/raven-vm/kernel and the read-write job share at
# /host/run/raven-vm/out, loads the networking modules, then runs /run/raven-vm/out/job.sh in
# a chroot of the host root. Every line it prints starts with "raven-vm:" so the host can tell
# its progress from the job's. Always powers off (so QEMU exits), even when a step fails.
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "raven-vm: $*"; }
off() { sync; echo o > /proc/sysrq-trigger; sleep 5; }
die() { say "FATAL $*"; off; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/sysrq
echo 3 > /proc/sys/kernel/printk 2>/dev/null

for m in $(cat /boot-modules); do
    insmod "/modules/$m" || die "insmod $m failed"
done

p9=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /host
# cache=loose: the read-only root does not change during a run, and the page cache spares
# re-reading big binaries (a debug raven-node is >100 MB) over 9p on every exec.
mount -t 9p -o "$p9,ro,cache=loose" hostroot /host || die "cannot mount the host root over 9p"
mount -t tmpfs tmpfs /host/tmp || die "tmpfs /tmp"
mount -t tmpfs tmpfs /host/run || die "tmpfs /run"
mount -t tmpfs tmpfs /host/var/tmp 2>/dev/null
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mkdir -p /host/run/netns /host/run/raven-vm/kernel /host/run/raven-vm/out /host/run/lock
mount -t 9p -o "$p9,ro,cache=loose" kernel /host/run/raven-vm/kernel || die "cannot mount the kernel tree"
mount -t 9p -o "$p9,rw" out /host/run/raven-vm/out || die "cannot mount the job share"
# Host directories under the tmpfs-covered paths (a checkout in /tmp), at their own path.
while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "/host$path"
    mount -t 9p -o "$p9,ro,cache=loose" "$tag" "/host$path" || die "cannot mount $path"
done < /host/run/raven-vm/out/mounts
mount -t bpf bpf /host/sys/fs/bpf 2>/dev/null

# Modules the kernel requests on demand (crypto, nft expressions) go through this wrapper.
echo /bin/modprobe-host > /proc/sys/kernel/modprobe
for m in $(cat /host/run/raven-vm/out/modules 2>/dev/null); do
    /bin/modprobe-host "$m" || say "WARN modprobe $m failed"
done

hostname raven-vm
say "booted $(uname -r), running the job"
chroot /host /bin/sh -c 'cd /; . /run/raven-vm/out/env; exec /bin/sh /run/raven-vm/out/job.sh' </dev/null
rc=$?
say "JOB-EXIT $rc"
off
