#!/usr/bin/env bash
# The test orchestration behind the Makefile's targets (`make help` names them; the Makefile only calls
# this script). Run from the repository root with the venv's bin first on PATH, as make does.
#
#   ci.sh sanity          ansible-test sanity on a copy of the tree under build/sanity/ansible_collections/
#   ci.sh molecule [S..]  `molecule test` of each container scenario (default: all but the VM ones), timed
#   ci.sh vm-kernel       molecule/vm's reduced form: the node role's swap and kernel steps in a QEMU VM
#   ci.sh test-vm         every VM scenario whole, timed
#   ci.sh test            what CI runs (`make test`): the checks, the VM's reduced form, every container
#                         scenario
#
# The machine CI gives us has two cores, and some verify steps assert time bounds (VIP failover, zero
# failed requests during an upgrade, a VM's reboot). Those steps must run with nothing heavy next to
# them; see `test` below for how the jobs share the machine.
#
# Errors are passed on explicitly (`|| return`): a function called as `f || ...` runs without set -e.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Scenarios on QEMU virtual machines: under TCG (no usable KVM on our runners) a boot takes minutes and
# a task seconds. `molecule` leaves them out; `test` runs molecule/vm's reduced form.
VM_SCENARIOS="vm"
# Scenarios not yet passing end to end in one `molecule test`: named on every run, not run. None today.
NOT_YET_GREEN=""
# The reduced form: only the node role's steps that containers cannot prove (swap, kernel modules,
# sysctls), with the same check mode, idempotence and reboot; the tests of the rest are named, not run.
VM_KERNEL_TAGS="node_preflight,node_swap,node_kernel,untagged"
# Held by `test`'s background VM run; a container scenario (and so its verify) starts only once it is free.
QUIET_LOCK="$PWD/build/quiet-machine.lock"
QUIET_WAIT_S=1800
SANITY_VENV=${SANITY_VENV:-.venv-sanity}
SANITY_ROOT=build/sanity/ansible_collections/baremetal/kubernetes

all_scenarios() {
  local path name
  for path in molecule/*/molecule.yml; do
    name=${path#molecule/}
    echo "${name%/molecule.yml}"
  done
}

in_list() {  # in_list WORD LIST: is WORD one of LIST's words?
  case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

sanity() {
  rm -rf build/sanity && mkdir -p "$SANITY_ROOT" ~/.ansible/test/cache
  git ls-files -co --exclude-standard | grep -v '^\.collections/' | tar -cf - -T - | tar -xf - -C "$SANITY_ROOT"
  (cd "$SANITY_ROOT" && git init -q && git add -A)
  # ansible-test bootstraps pip into its venvs with a get-pip.py it downloads from a host we cannot
  # reach: give it the offline one under the name of each pip version it may ask for.
  local version venv
  venv=$(realpath "$SANITY_VENV")
  for version in $("$SANITY_VENV/bin/python" -c 'from types import SimpleNamespace as N
from ansible_test._internal.python_requirements import get_venv_packages as g
print(g(N(version="3.11"))["pip"])'); do
    cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/"get_pip_${version//./_}.py"
  done
  cd "$SANITY_ROOT" && "$venv/bin/ansible-test" sanity --color no --python 3.11 --requirements
}

# timed NAME COMMAND...: run it, then say how long it took; the times are collected in $times.
times=""
timed() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  "$@" || return $?
  times+=$(printf '  %-28s %5d s\\n' "$name" $(($(date +%s) - t0)))
  echo "== $name passed in $(($(date +%s) - t0)) s"
}

wait_quiet() {  # bounded: until the background VM run of `test` has released the quiet lock
  [ -n "${BAREMETAL_QUIET_LOCK:-}" ] || return 0
  local t0
  t0=$(date +%s)
  flock -w "$QUIET_WAIT_S" "$BAREMETAL_QUIET_LOCK" true || {
    echo "== $BAREMETAL_QUIET_LOCK still locked after $QUIET_WAIT_S s: the background VM run did not end" \
      "(build/test-vm-kernel.log)"
    return 1
  }
  echo "== quiet machine: waited $(($(date +%s) - t0)) s for the background VM run"
}

molecule_all() {
  local chosen=("$@") s
  if [ ${#chosen[@]} -eq 0 ]; then
    for s in $(all_scenarios); do
      in_list "$s" "$VM_SCENARIOS $NOT_YET_GREEN" || chosen+=("$s")
    done
  fi
  for s in "${chosen[@]}"; do
    wait_quiet || return $?
    echo "== molecule test -s $s"
    timed "molecule/$s" molecule test -s "$s" || return $?
  done
  printf "== molecule scenarios\n%b" "$times"
  for s in $(all_scenarios); do
    in_list "$s" "${chosen[*]}" && continue
    if in_list "$s" "$NOT_YET_GREEN"; then
      echo "== NOT RUN: molecule/$s is not yet green end to end (make molecule SCENARIOS=$s)"
    elif in_list "$s" "$VM_SCENARIOS"; then
      echo "== NOT RUN here: molecule/$s boots QEMU VMs (make test-vm; make test runs its reduced form)"
    fi
  done
}

vm_kernel() {
  echo "== molecule test -s vm, reduced form: MOLECULE_VM_TAGS=$VM_KERNEL_TAGS"
  MOLECULE_VM_TAGS=$VM_KERNEL_TAGS timed "molecule/vm (reduced form)" molecule test -s vm
}

test_vm() {
  local s
  for s in $VM_SCENARIOS; do
    echo "== molecule test -s $s"
    timed "molecule/$s" molecule test -s "$s" || return $?
  done
  printf "== VM scenarios\n%b" "$times"
}

# Everything CI runs. The checks share nothing and are bound by one core each (make -j2; -O prints each
# one's output whole when it ends). molecule/vm's reduced form runs in the background from the start,
# holding QUIET_LOCK, next to the checks only: every container scenario waits for the lock before it
# starts (its reboot under TCG once did not come back within 480 s while molecule/cluster booted its
# containers next to it), so verify steps, whose failover and upgrade bounds are timed, run on a quiet
# machine too; molecule/conftest.py's wait for the lock before the first testinfra verify is then a
# no-op. The VM run's output is printed at the end.
test_all() {
  local log=build/test-vm-kernel.log vm rc=0 vm_rc=0
  mkdir -p build
  : > "$QUIET_LOCK"
  exec 9<>"$QUIET_LOCK"
  flock -w 60 9 || { echo "== $QUIET_LOCK is held by another run (fuser -v $QUIET_LOCK)"; exit 1; }
  # The subshell holds the lock (fd 9) until the VM run has ended; the run itself gets no copy of it.
  ( status=0; (vm_kernel) 9<&- || status=$?; flock -u 9; exit $status ) > "$log" 2>&1 &
  vm=$!
  exec 9<&-
  make --no-print-directory -j2 -O checks || rc=$?
  if [ $rc -eq 0 ]; then
    BAREMETAL_QUIET_LOCK=$QUIET_LOCK molecule_all || rc=$?
  fi
  wait $vm || vm_rc=$?
  echo "== output of molecule/vm's reduced form ($log), run in the background:"
  cat "$log"
  [ $rc -eq 0 ] && [ $vm_rc -eq 0 ]
}

case "${1:-}" in
  sanity) sanity ;;
  molecule) shift; molecule_all "$@" ;;
  vm-kernel) vm_kernel ;;
  test-vm) test_vm ;;
  test) test_all ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
