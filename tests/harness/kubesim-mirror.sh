#!/usr/bin/env bash
# kubesim's signed pkgs.k8s.io-style apt mirror (tests/kubesim/kubesim/mirror.py: kubeadm, kubelet and
# kubectl test doubles for 1.35-1.37), shared by the Molecule cluster scenario and `make lab`.
#
#   kubesim-mirror.sh build
#       Build the mirror unless this version is cached, and print its directory:
#       build/kubesim-mirror/<hash of tests/kubesim/kubesim/*.py and the kubectl binary it packages>.
#   kubesim-mirror.sh serve NETWORK IP NAME [LABEL=VALUE ...]
#       Build, then serve it as http://IP:8080/ from the container NAME (the node image, python3's
#       http.server) on the podman network NETWORK, with the given labels. A container NAME already
#       serving this version is kept; otherwise it is replaced. Waits, bounded, until the repository
#       answers, and prints "serving DIR at http://IP:8080 from NAME (started|already running)".
#
# Environment: KUBESIM_PYTHON (default: the checkout's .venv/bin/python; kubectl is taken from the
# same bin directory), NODE_IMAGE (default localhost/baremetal-node:debian12), CONTAINERS_CONF.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
PYTHON=${KUBESIM_PYTHON:-$root/.venv/bin/python}
IMAGE=${NODE_IMAGE:-localhost/baremetal-node:debian12}
PORT=8080

build() {
  local bin hash out tmp
  bin=$(dirname "$PYTHON")
  [ -x "$bin/kubectl" ] || { echo "kubesim-mirror: no kubectl next to $PYTHON (make venv)" >&2; exit 1; }
  hash=$(cat "$root"/tests/kubesim/kubesim/*.py "$bin/kubectl" | sha256sum | cut -c1-16)
  out="$root/build/kubesim-mirror/$hash"
  if [ ! -d "$out" ]; then
    echo "kubesim-mirror: building $out" >&2
    mkdir -p "$root/build/kubesim-mirror"
    tmp="$out.tmp.$$"
    rm -rf "$tmp"
    (cd "$root/tests/kubesim" && "$PYTHON" -m kubesim mirror "$tmp" >/dev/null)
    mv "$tmp" "$out"
  fi
  echo "$out"
}

serve() {
  [ $# -ge 3 ] || usage
  local network=$1 ip=$2 name=$3 dir label probe state=started
  shift 3
  local labels=()
  for label in "$@"; do labels+=(--label "$label"); done
  dir=$(build)
  if podman container exists "$name"; then
    if [ "$(podman container inspect --format '{{.State.Running}} {{range .Mounts}}{{.Source}}{{end}}' "$name")" \
         = "true $dir" ]; then
      state="already running"
    else
      podman rm -f -t 2 "$name" >/dev/null
    fi
  fi
  if [ "$state" = started ]; then
    podman run -d --name "$name" --network "$network" --ip "$ip" "${labels[@]}" \
      -v "$dir:/srv:ro" "$IMAGE" python3 -m http.server "$PORT" --bind "$ip" --directory /srv >/dev/null
  fi
  # Any one minor's signed index proves the server answers on its address.
  probe=$(cd "$dir" && find . -path '*/deb/InRelease' | sort | head -n 1)
  probe=${probe#./}
  for _ in $(seq 1 20); do
    if podman exec "$name" curl -sf -o /dev/null "http://$ip:$PORT/$probe"; then
      echo "serving $dir at http://$ip:$PORT from $name ($state)"
      return 0
    fi
    sleep 1
  done
  echo "kubesim-mirror: $name does not serve http://$ip:$PORT/$probe after 20 s" >&2
  podman logs --tail 20 "$name" >&2 || true
  exit 1
}

usage() {
  echo "usage: $0 build | serve NETWORK IP NAME [LABEL=VALUE ...]" >&2
  exit 2
}

case "${1:-}" in
  build) build ;;
  serve) shift; serve "$@" ;;
  *) usage ;;
esac
