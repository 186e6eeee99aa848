#!/usr/bin/env bash
# Builds, reproducibly, a tarball laid out like the official etcd release
# (etcd-v<version>-linux-<arch>/{etcd,etcdctl[,etcdutl],README.md}) from Debian's etcd binaries, the
# only etcd binaries this network can obtain: the host's (/usr/bin) or those unpacked from Debian
# packages of another release into <bin dir>. Prints its sha256.
#   build_release_tarball.sh <version> <arch> <output dir> [<bin dir>, default /usr/bin]
set -euo pipefail
version=$1 arch=$2 out=$3 bindir=${4:-/usr/bin}
name="etcd-v${version}-linux-${arch}"
for bin in "$bindir/etcd" "$bindir/etcdctl"; do
  [ -x "$bin" ] || { echo "$bin missing: apt-get install etcd-server etcd-client" >&2; exit 1; }
done
found=$("$bindir/etcd" --version)
grep -qx "etcd Version: ${version}" <<<"$found" \
  || { echo "$bindir/etcd is not etcd ${version}: ${found%%$'\n'*}" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
# etcdutl ships from 3.5 on, as in the official tarball.
for bin in etcd etcdctl etcdutl; do
  [ ! -e "$bindir/$bin" ] || cp "$bindir/$bin" "$stage/$name/"
done
printf 'etcd %s for linux-%s, repackaged from the Debian etcd-server/etcd-client binaries\nfor the baremetal.kubernetes Molecule tests (same layout as the official release).\n' \
  "$version" "$arch" > "$stage/$name/README.md"
chmod 0755 "$stage/$name" "$stage/$name"/etcd*
chmod 0644 "$stage/$name/README.md"
tar -C "$stage" --sort=name --mtime='2023-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
  -cf - "$name" | gzip -n -1 > "$out/$name.tar.gz.tmp"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
sha256sum "$out/$name.tar.gz" | cut -d' ' -f1
