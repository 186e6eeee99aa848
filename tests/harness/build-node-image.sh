#!/usr/bin/env bash
# Builds the systemd node image the Molecule scenarios and `make lab` run on:
#   localhost/baremetal-node:debian12 (plus a :recipe-<hash> tag)
# The image is rebuilt only when this recipe changes: the recipe's hash is stored
# as a tag, and a matching tag means the existing image is current.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

IMAGE=${NODE_IMAGE:-localhost/baremetal-node}
TAG=${NODE_IMAGE_TAG:-debian12}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Everything the roles expect on a fresh Debian 12 server, nothing more. Ansible reaches the nodes over
# SSH, as it reaches servers (molecule/_shared/create.yml installs a per-scenario key).
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,iputils-ping,ca-certificates,gnupg,curl,sudo,procps,netbase,apt-transport-https,openssh-server

recipe_hash=$( { cat "$0" "$here"/node-image/*; echo "$SUITE $MIRROR $PACKAGES"; } | sha256sum | cut -c1-12)
if podman image exists "$IMAGE:recipe-$recipe_hash"; then
  echo "node image $IMAGE:$TAG is current (recipe $recipe_hash)"
  podman tag "$IMAGE:recipe-$recipe_hash" "$IMAGE:$TAG"
  exit 0
fi

root=$(mktemp -d /var/tmp/baremetal-node.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building $IMAGE:$TAG (recipe $recipe_hash) in $root"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
  || { tail -n 40 "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Make the tree behave like a server that boots systemd in a container.
echo "deb $MIRROR $SUITE main" > "$root/etc/apt/sources.list"
echo "deb $MIRROR $SUITE-updates main" >> "$root/etc/apt/sources.list"
: > "$root/etc/machine-id"
# Nodes run with `podman --no-hosts`, so /etc/hosts is the node's own file, as on a server.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# Units that only make sense on real hardware or that hang in containers.
for unit in systemd-remount-fs.service getty@tty1.service console-getty.service \
            systemd-firstboot.service sys-kernel-config.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# Test world only: the same cgroup paths under both spellings for a real kubelet (see the script).
install -m 0755 "$here/node-image/baremetal-cgroup-alias" "$root/usr/local/sbin/baremetal-cgroup-alias"
install -m 0644 "$here/node-image/baremetal-cgroup-alias.service" "$root/etc/systemd/system/"
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -sf /etc/systemd/system/baremetal-cgroup-alias.service \
  "$root/etc/systemd/system/sysinit.target.wants/baremetal-cgroup-alias.service"
# Keep images small and apt quiet and deterministic.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  > "$root/etc/apt/apt.conf.d/90baremetal-norecommends"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb

tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  - "$IMAGE:recipe-$recipe_hash" >/dev/null
podman tag "$IMAGE:recipe-$recipe_hash" "$IMAGE:$TAG"
# Drop images of older recipes so the store does not grow without bound. Without --force: an image
# that running nodes (a scenario, the lab) still use stays until they are gone, instead of taking
# those nodes down with it.
podman images --format '{{.Repository}}:{{.Tag}}' \
  | grep "^$IMAGE:recipe-" | grep -v "recipe-$recipe_hash" | xargs -r podman rmi >/dev/null 2>&1 || true
echo "built $IMAGE:$TAG (recipe $recipe_hash)"
