#!/usr/bin/env bash
# Builds the local Debian bookworm image with systemd + python3 that molecule and the
# sandbox use as "a plain VM". No registry is reachable, so: debootstrap + docker import.
# The tag carries a hash of this script, so editing the package list rebuilds the image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/docker-engine.sh"
tag=${CRYPTOMON_BASE_IMAGE:-cryptomon/debian-systemd:bookworm-$(sha256sum "$0" | cut -c1-10)}
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
command -v debootstrap >/dev/null || "$here/install-system-deps.sh"
# Use the mirror this machine's apt already uses (first deb URI), not a hard-coded one.
mirror=$({ grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?$' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
  | awk '{print $2}' | head -n1)
mirror=${CRYPTOMON_DEBIAN_MIRROR:-$mirror}
[[ -n $mirror ]] || { echo "[image] ERROR: no Debian mirror found in /etc/apt; set CRYPTOMON_DEBIAN_MIRROR" >&2; exit 1; }
# Java 17, python3-apt/venv and python3-cryptography (community.crypto) are baked in so converges don't re-download ~150 MB per
# container; the roles still declare them (apt state=present), as on a real VM.
pkgs=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,python3-packaging,openjdk-17-jre-headless,procps,iproute2,ca-certificates,sudo,less,netbase
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[image] debootstrap bookworm from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include="$pkgs" bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# Containers have no getty/udev; mask what only makes noise or waits for hardware.
for unit in getty@tty1.service console-getty.service systemd-udevd.service systemd-modules-load.service \
            systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount; do
  ln -sf /dev/null "$work/rootfs/etc/systemd/system/$unit"
done
# On a VM systemd makes / a shared mount at boot; in a container it leaves Docker's private
# propagation, and then LoadCredential= (whose ramfs is mounted in a child namespace) hands the
# service an empty, root-only credentials dir. Do what the VM does, before any service starts.
cat >"$work/rootfs/etc/systemd/system/cryptomon-shared-mounts.service" <<'UNIT'
[Unit]
Description=Make / a shared mount, as systemd does on a VM
DefaultDependencies=no
Before=sysinit.target local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/mount --make-rshared /

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p "$work/rootfs/etc/systemd/system/sysinit.target.wants"
ln -sf ../cryptomon-shared-mounts.service "$work/rootfs/etc/systemd/system/sysinit.target.wants/cryptomon-shared-mounts.service"
# Ship fresh package lists, like a real VM: roles can apt-get install without a refresh.
cp /etc/resolv.conf "$work/rootfs/etc/resolv.conf"
chroot "$work/rootfs" apt-get update -qq >/dev/null
# debootstrap's minbase cannot configure python3-cryptography among its base packages: apt can.
DEBIAN_FRONTEND=noninteractive chroot "$work/rootfs" apt-get install -y -qq --no-install-recommends python3-cryptography >/dev/null 2>&1
rm -f "$work/rootfs/etc/resolv.conf"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
tar -C "$work/rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$tag" >/dev/null
echo "$tag"
