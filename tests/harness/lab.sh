#!/usr/bin/env bash
# `make lab` / `make lab-destroy`: the local lab described by inventories/lab.
#   lab.sh up       create the network and nodes (idempotent)
#   lab.sh down     remove them
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
NETWORK=baremetal-lab
SUBNET=10.123.10.0/24
IMAGE=localhost/baremetal-node:debian12
# name:ip, as in inventories/lab/hosts.yml
NODES="lab-cp1:10.123.10.11 lab-cp2:10.123.10.12 lab-cp3:10.123.10.13 lab-w1:10.123.10.21 lab-w2:10.123.10.22"

up() {
  "$here/build-node-image.sh"
  podman network exists "$NETWORK" || podman network create --subnet "$SUBNET" "$NETWORK" >/dev/null
  for node in $NODES; do
    name=${node%%:*} ip=${node##*:}
    if podman container exists "$name"; then
      podman start "$name" >/dev/null
      continue
    fi
    podman run -d --name "$name" --hostname "$name" --network "$NETWORK" --ip "$ip" \
      --privileged --systemd=always --no-hosts "$IMAGE" /sbin/init >/dev/null
  done
  for node in $NODES; do
    name=${node%%:*}
    for _ in $(seq 1 60); do
      state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
      [ "$state" = running ] || [ "$state" = degraded ] && break
      sleep 1
    done
    echo "$name: ${state:-unknown}"
  done
}

down() {
  for node in $NODES; do
    podman rm -f "${node%%:*}" >/dev/null 2>&1 || true
  done
  podman network rm "$NETWORK" >/dev/null 2>&1 || true
  echo "lab removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
