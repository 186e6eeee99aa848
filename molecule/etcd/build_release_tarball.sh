#!/usr/bin/env bash
# Builds, reproducibly, a tarball laid out like the official etcd release
# (etcd-v<version>-linux-<arch>/{etcd,etcdctl,README.md}) from the host's Debian etcd binaries,
# which are the only etcd binaries this network can obtain. Prints its sha256.
#   build_release_tarball.sh <version> <arch> <output dir>
set -euo pipefail
version=$1 arch=$2 out=$3
name="etcd-v${version}-linux-${arch}"
for bin in /usr/bin/etcd /usr/bin/etcdctl; do
  [ -x "$bin" ] || { echo "$bin missing: apt-get install etcd-server etcd-client" >&2; exit 1; }
done
found=$(/usr/bin/etcd --version)
grep -qx "etcd Version: ${version}" <<<"$found" \
  || { echo "/usr/bin/etcd is not etcd ${version}: ${found%%$'\n'*}" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
cp /usr/bin/etcd /usr/bin/etcdctl "$stage/$name/"
printf 'etcd %s for linux-%s, repackaged from the Debian etcd-server/etcd-client binaries\nfor the baremetal.kubernetes Molecule tests (same layout as the official release).\n' \
  "$version" "$arch" > "$stage/$name/README.md"
chmod 0755 "$stage/$name" "$stage/$name/etcd" "$stage/$name/etcdctl"
chmod 0644 "$stage/$name/README.md"
tar -C "$stage" --sort=name --mtime='2023-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
  -cf - "$name" | gzip -n -1 > "$out/$name.tar.gz.tmp"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
sha256sum "$out/$name.tar.gz" | cut -d' ' -f1
