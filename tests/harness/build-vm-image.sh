#!/usr/bin/env bash
# Builds the Debian 12 VM disk the Molecule `vm` scenario boots with QEMU, from the filesystem of
# the node image (localhost/baremetal-node:debian12, tests/harness/build-node-image.sh) plus what a
# real machine needs: a kernel, systemd-networkd with DHCP on the first NIC, and sshd. Output, in the
# build cache outside the work tree (as tests/harness/components.py's), so a fresh clone reuses it:
#   $BAREMETAL_CACHE/vm-image/<recipe hash>/disk.qcow2   the base disk (one ext4 filesystem, /dev/vda)
#   $BAREMETAL_CACHE/vm-image/<recipe hash>/vmlinuz      kernel and initrd for QEMU's -kernel/-initrd
#   $BAREMETAL_CACHE/vm-image/<recipe hash>/initrd.img
# (default cache /var/cache/baremetal-kubernetes; VM_IMAGE_DIR replaces $BAREMETAL_CACHE/vm-image).
# The last line of stdout is that directory. A directory for the current recipe (this script, the
# node image's ID, the package lists) means the image is current and nothing is rebuilt. A lock lets
# two clones ask at once: the second waits for the first's build and reuses it.
#
# No SSH key is baked in, so one image serves every scenario: at boot, baremetal-ssh-key.service
# copies the key QEMU passes as fw_cfg opt/baremetal/authorized_keys into /root/.ssh/authorized_keys
# (molecule/vm/create.yml passes the scenario's key).
#
# The VM has no route to the internet (QEMU user networking with restrict=on). The Debian packages the
# node role installs are therefore downloaded here, on the host, from Debian's signed mirror, into a
# local repository inside the image (/var/local/baremetal-debs); it is the VM's only apt source.
# The Kubernetes packages and containerd come from the real components' package site (tests/harness/
# packages.py), forwarded into the VM (molecule/vm/create.yml).
#
# Needs root (chroot, bind mounts), podman, qemu-img and mkfs.ext4 (e2fsprogs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

NODE_IMAGE=${NODE_IMAGE:-localhost/baremetal-node:debian12}
OUT_BASE=${VM_IMAGE_DIR:-${BAREMETAL_CACHE:-/var/cache/baremetal-kubernetes}/vm-image}
DISK_SIZE=${VM_DISK_SIZE:-4G}
# What turns the container filesystem into a bootable machine.
BOOT_PACKAGES="linux-image-amd64 kmod udev"
# What the node role installs from Debian (roles/node/vars/Debian.yml: __node_os_packages), and what the
# kubelet package depends on (its Depends, as pkgs.k8s.io's: tests/harness/packages.py DEB_META). Only
# their .debs are stored (with every dependency the image lacks), not installed: the role installs them.
# A package the role starts to need and that is missing here makes converge fail with apt's "Unable to
# locate package", never a silent skip.
NODE_PACKAGES="conntrack socat iptables nftables gnupg ca-certificates
iproute2 util-linux mount ethtool ebtables"

node_image_id=$(podman image inspect --format '{{.Id}}' "$NODE_IMAGE") \
  || { echo "build-vm-image: no $NODE_IMAGE (make image)" >&2; exit 1; }
recipe_hash=$( { cat "$0"; echo "$node_image_id $BOOT_PACKAGES $NODE_PACKAGES $DISK_SIZE"; } \
  | sha256sum | cut -c1-12)
out="$OUT_BASE/$recipe_hash"
mkdir -p "$OUT_BASE"
exec 8>"$OUT_BASE/.lock"
flock -w 1800 8 || { echo "build-vm-image: $OUT_BASE/.lock still held after 1800 s (fuser -v it)" >&2; exit 1; }
if [ -f "$out/disk.qcow2" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
  echo "VM image is current (recipe $recipe_hash)" >&2
  echo "$out"
  exit 0
fi

work=$(mktemp -d /var/tmp/baremetal-vm.XXXXXX)
tree="$work/root"
container=""
cleanup() {
  for m in dev/pts dev sys proc; do
    mountpoint -q "$tree/$m" 2>/dev/null && umount -l "$tree/$m"
  done
  [ -n "$container" ] && podman rm -f "$container" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
echo "building the VM image (recipe $recipe_hash) in $work" >&2

# The node image's filesystem, read through a container that is never started.
mkdir -p "$tree"
container=$(podman create "$NODE_IMAGE" /bin/true)
podman export "$container" | tar -C "$tree" -x
podman rm "$container" >/dev/null
container=""

mount -t proc proc "$tree/proc"
mount --rbind /sys "$tree/sys"
mount --bind /dev "$tree/dev"
mount --bind /dev/pts "$tree/dev/pts"
cp /etc/resolv.conf "$tree/etc/resolv.conf"
in_root() { DEBIAN_FRONTEND=noninteractive chroot "$tree" "$@"; }

in_root apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package lists is intended
in_root apt-get install -y -qq $BOOT_PACKAGES >"$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log" >&2; exit 1; }
in_root apt-get clean
# shellcheck disable=SC2086
in_root apt-get install -y -qq --download-only $NODE_PACKAGES >"$work/apt.log" 2>&1 \
  || { tail -n 40 "$work/apt.log" >&2; exit 1; }
repo="$tree/var/local/baremetal-debs"
mkdir -p "$repo"
mv "$tree"/var/cache/apt/archives/*.deb "$repo/"
(cd "$repo" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null > Packages)
in_root apt-get clean
rm -rf "$tree"/var/lib/apt/lists/*
# The VM's only apt source. trusted=yes: a directory on its own disk, filled above from Debian's
# signed mirror (apt checked those signatures when it downloaded the .debs).
echo "deb [trusted=yes] file:/var/local/baremetal-debs ./" > "$tree/etc/apt/sources.list"

for m in dev/pts dev sys proc; do umount -l "$tree/$m"; done
# No resolver in the VM (no route out); an empty file keeps tools from waiting on one.
: > "$tree/etc/resolv.conf"

# A machine, not a container: undo the container-only masks of build-node-image.sh.
for unit in systemd-remount-fs.service getty@tty1.service console-getty.service \
            systemd-firstboot.service sys-kernel-config.mount; do
  rm -f "$tree/etc/systemd/system/$unit"
done
echo "/dev/vda / ext4 defaults 0 1" > "$tree/etc/fstab"
: > "$tree/etc/machine-id"

# The first NIC (PCI slot 3, molecule/vm/create.yml) is QEMU's user network: DHCP. Any second NIC
# (the VM-to-VM segment) is configured by the scenario and must not hold up boot.
mkdir -p "$tree/etc/systemd/network"
cat > "$tree/etc/systemd/network/20-user-net.network" <<'EOF'
[Match]
Path=pci-0000:00:03.0

[Network]
DHCP=ipv4
EOF
cat > "$tree/usr/local/sbin/baremetal-ssh-key" <<'EOF'
#!/bin/sh
# Installs the SSH key QEMU passes with -fw_cfg name=opt/baremetal/authorized_keys,file=KEY.pub.
set -eu
modprobe qemu_fw_cfg
key=/sys/firmware/qemu_fw_cfg/by_name/opt/baremetal/authorized_keys/raw
[ -r "$key" ] || { echo "no fw_cfg opt/baremetal/authorized_keys: root keeps its keys" >&2; exit 0; }
umask 077
mkdir -p /root/.ssh
cat "$key" > /root/.ssh/authorized_keys
EOF
chmod 0755 "$tree/usr/local/sbin/baremetal-ssh-key"
cat > "$tree/etc/systemd/system/baremetal-ssh-key.service" <<'EOF'
[Unit]
Description=Authorise the SSH key passed by QEMU (fw_cfg opt/baremetal/authorized_keys)
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/baremetal-ssh-key

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$tree" enable systemd-networkd.service ssh.service baremetal-ssh-key.service >/dev/null 2>&1
# Only the first NIC counts for network-online.target.
systemctl --root="$tree" mask systemd-networkd-wait-online.service >/dev/null 2>&1
# sshd host keys are generated per VM at first boot, not shared through the image.
rm -f "$tree"/etc/ssh/ssh_host_*
cat > "$tree/etc/systemd/system/baremetal-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this VM's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$tree" enable baremetal-ssh-hostkeys.service >/dev/null 2>&1

kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
cp "$kernel" "$work/vmlinuz"
cp "$tree/boot/initrd.img-${kernel##*/vmlinuz-}" "$work/initrd.img"
mkfs.ext4 -q -F -L root -d "$tree" "$work/disk.raw" "$DISK_SIZE"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/disk.qcow2"

tmp_out="$out.tmp.$$"
rm -rf "$tmp_out"
mkdir -p "$tmp_out"
mv "$work/disk.qcow2" "$work/vmlinuz" "$work/initrd.img" "$tmp_out/"
rm -rf "$out"
mv "$tmp_out" "$out"
# Older recipes' disks are about 1 GB each: keep only this one. Overlays of a running scenario
# would still need their base, so an old directory in use by a QEMU process is kept.
for old in "$OUT_BASE"/*/; do
  old=${old%/}
  [ "$old" = "$out" ] && continue
  if ! fuser -s "$old/disk.qcow2" 2>/dev/null; then rm -rf "$old"; fi
done
echo "built the VM image (recipe $recipe_hash)" >&2
echo "$out"
