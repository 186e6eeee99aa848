#!/usr/bin/env bash
# `make lab` / `make lab-destroy`: the local lab described by inventories/lab.
#   lab.sh up       create the network, the nodes (reachable over SSH with the lab's own key) and
#                   lab-repo, which serves the real components (tests/harness/packages.py: the signed
#                   apt repository, the release tarballs and the image registry; idempotent: existing
#                   containers are kept)
#   lab.sh usage    show the nodes as the real kubelets report them, and how to reach the cluster
#   lab.sh down     remove every container and the network of the lab, and its state directory
# State (SSH key, the served release checksums, fetched admin kubeconfig) lives in build/lab/, which
# inventories/lab points at.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
NETWORK=baremetal-lab
SUBNET=10.123.10.0/24
IMAGE=localhost/baremetal-node:debian12
# name:ip, as in inventories/lab (hosts.yml; the mirror and the VIP in group_vars/all/cluster.yml)
NODES="lab-cp1:10.123.10.11 lab-cp2:10.123.10.12 lab-cp3:10.123.10.13 lab-w1:10.123.10.21 lab-w2:10.123.10.22"
REPO=lab-repo
REPO_IP=10.123.10.5
PY="$root/.venv/bin/python"
VIP=10.123.10.100
STATE="$root/build/lab"
KEY="$STATE/ssh_key"
KUBECONFIG_FILE="$STATE/admin.conf"
LABEL=baremetal.lab=true
SSH_OPTS=(-i "$KEY" -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null
          -o StrictHostKeyChecking=no -o LogLevel=ERROR -o ConnectTimeout=2)

up() {
  "$here/build-node-image.sh"
  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C baremetal-lab -f "$KEY"
  podman network exists "$NETWORK" \
    || podman network create --subnet "$SUBNET" --label "$LABEL" "$NETWORK" >/dev/null
  for node in $NODES; do
    name=${node%%:*} ip=${node##*:}
    if podman container exists "$name"; then
      podman start "$name" >/dev/null
      continue
    fi
    # No --hosts: the node keeps its own /etc/hosts, as a server does; the common role manages it.
    podman run -d --name "$name" --hostname "$name" --network "$NETWORK" --ip "$ip" --label "$LABEL" \
      --privileged --systemd=always --no-hosts "$IMAGE" /sbin/init >/dev/null
  done
  for node in $NODES; do
    name=${node%%:*} ip=${node##*:}
    state=unknown
    for _ in $(seq 1 60); do
      state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
      if [ "$state" = running ] || [ "$state" = degraded ]; then break; fi
      sleep 1
    done
    if [ "$state" != running ] && [ "$state" != degraded ]; then
      echo "lab: $name: systemd is '$state' after 60 s" >&2
      exit 1
    fi
    # Ansible reaches the nodes over SSH as it reaches servers (pipelined, one round trip per task).
    podman exec -i "$name" sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys' <"$KEY.pub"
    for _ in $(seq 1 30); do
      if ssh "${SSH_OPTS[@]}" "root@$ip" true 2>/dev/null; then break; fi
      sleep 1
    done
    ssh "${SSH_OPTS[@]}" "root@$ip" true || { echo "lab: $name: no SSH on $ip after 30 s" >&2; exit 1; }
    echo "$name: $state, ssh root@$ip ok"
  done
  "$PY" "$here/packages.py" serve "$NETWORK" "$REPO_IP" "$REPO" "$LABEL"
  # The release checksums of what lab-repo serves (inventories/lab reads them).
  cp "$("$PY" "$here/packages.py" path site)/checksums.json" "$STATE/checksums.json"
}

usage() {
  local kubectl="$root/.venv/bin/kubectl" nodes ready
  # What the real kubelets report, through the VIP (bounded: 10 s a request).
  nodes=$("$kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=10s get nodes -o wide)
  ready=$(awk 'NR > 1 && $2 == "Ready"' <<<"$nodes" | wc -l)
  cat <<EOF

The lab cluster: 3 control-plane nodes (etcd, HAProxy + keepalived), 2 workers; API at https://$VIP:8443
\$ kubectl get nodes -o wide
$nodes

  export KUBECONFIG=$KUBECONFIG_FILE
  $kubectl get pods -A
A shell on a node:   podman exec -it lab-cp1 bash
  (or ssh -i $KEY -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no root@10.123.10.11)
Re-run Ansible:      ansible-playbook site.yml -i inventories/lab [--tags etcd,...]
Remove everything:   make lab-destroy
EOF
  if [ "$ready" -ne "$(wc -w <<<"$NODES")" ]; then
    echo "lab: $ready of $(wc -w <<<"$NODES") nodes are Ready" >&2
    exit 1
  fi
}

down() {
  # Close Ansible's SSH ControlMaster connections to the nodes (ansible.cfg keeps them 120 s): a new
  # lab reuses the addresses, and a master still attached to a removed node would hang the next run.
  for node in $NODES; do
    ssh -o ControlPath="$HOME/.ansible/cp/%C" -O exit "root@${node##*:}" >/dev/null 2>&1 || true
  done
  # Every container of the lab by its label (nodes, lab-repo, and any a broken run left behind),
  # retried a bounded number of times: a removal can fail while a node's systemd is still stopping.
  # Success is what podman lists afterwards, never the exit status of rm alone.
  local left=""
  for _ in 1 2 3; do
    left=$(podman ps -a --filter "label=$LABEL" --format '{{.Names}}')
    [ -z "$left" ] && break
    # shellcheck disable=SC2086 # one name per word
    podman rm -f -t 5 $left >/dev/null 2>&1 || true
  done
  left=$(podman ps -a --filter "label=$LABEL" --format '{{.Names}}')
  if [ -n "$left" ]; then
    echo "lab: still there after 3 attempts: $(tr '\n' ' ' <<<"$left")- remove them with podman rm -f, then run make lab-destroy again" >&2
    exit 1
  fi
  if podman network exists "$NETWORK"; then
    podman network rm "$NETWORK" >/dev/null
  fi
  rm -rf "$STATE"
  echo "lab removed (every container labelled $LABEL, network $NETWORK, $STATE)"
}

case "${1:-}" in
  up) up ;;
  usage) usage ;;
  down) down ;;
  *) echo "usage: $0 up|usage|down" >&2; exit 2 ;;
esac
