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
  local name=$1 t0 t
  shift
  t0=$(date +%s)
  "$@" || return $?
  t=$(($(date +%s) - t0))
  times+=$(printf '  %-28s %5d s\\n' "$name" "$t")
  echo "== $name passed in $t s"
}

# molecule_timed ARGS...: `molecule ARGS`, with the time of day in front of Molecule's own step lines
# ("INFO [cluster > converge] Executed: Successful"), so a log shows what each step took.
molecule_timed() {
  molecule "$@" 2>&1 | while IFS= read -r line; do
    case $line in INFO*) printf '%(%H:%M:%S)T %s\n' -1 "$line" ;; *) printf '%s\n' "$line" ;; esac
  done
}

# wait_quiet SCENARIO: bounded, until `test`'s background jobs allow the scenario to start. Every scenario
# waits for QUIET_FIRST (the VM run); a scenario whose verify is not testinfra (molecule/conftest.py waits
# there) waits for every lock in BAREMETAL_QUIET_LOCK before it starts at all.
wait_quiet() {
  [ -n "${BAREMETAL_QUIET_LOCK:-}" ] || return 0
  local locks=${QUIET_FIRST:-$BAREMETAL_QUIET_LOCK} lock t0
  grep -q '^  name: testinfra' "molecule/$1/molecule.yml" || locks=$BAREMETAL_QUIET_LOCK
  t0=$(date +%s)
  for lock in ${locks//:/ }; do
    flock -w "$QUIET_WAIT_S" "$lock" true || {
      echo "== $lock still locked after $QUIET_WAIT_S s: a background job of \`make test\` did not end" \
        "(build/test-vm-kernel.log, build/checks.log)"
      return 1
    }
  done
  echo "== quiet machine: waited $(($(date +%s) - t0)) s for the background jobs before molecule/$1"
}

# run_scenarios TITLE SCENARIO...: `molecule test` of each in turn (once wait_quiet lets it), then a table of
# their times under TITLE.
run_scenarios() {
  local title=$1 s
  shift
  for s in "$@"; do
    wait_quiet "$s" || return $?
    echo "== molecule test -s $s"
    timed "molecule/$s" molecule_timed test -s "$s" || return $?
  done
  printf "== %s\n%b" "$title" "$times"
}

molecule_all() {
  local chosen=("$@") s
  if [ ${#chosen[@]} -eq 0 ]; then
    for s in $(all_scenarios); do
      in_list "$s" "$VM_SCENARIOS $NOT_YET_GREEN" || chosen+=("$s")
    done
  fi
  run_scenarios "molecule scenarios" "${chosen[@]}" || return $?
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
  MOLECULE_VM_TAGS=$VM_KERNEL_TAGS timed "molecule/vm (reduced form)" molecule_timed test -s vm
}

test_vm() {
  run_scenarios "VM scenarios" $VM_SCENARIOS
}

# Everything CI runs, on a two-core machine where some verify steps assert time bounds (VIP failover, zero
# failed requests during an upgrade, the VM's reboot). Three jobs start at once:
#   - molecule/vm's reduced form, holding VM_LOCK: its reboot under TCG must not share the machine with a
#     scenario's containers (it once did not come back within 480 s while molecule/cluster booted next to it);
#   - the checks (make -j2 checks: each is bound by one core; -O keeps each one's output whole), holding
#     CHECKS_LOCK, output in build/checks.log, printed when they end;
#   - the container scenarios, one after another: each starts once the VM run has ended (VM_LOCK), so the
#     first one's create, check mode, converge and idempotence (nothing timed) run next to the checks' last
#     minutes; its verify waits for both locks (molecule/conftest.py, BAREMETAL_QUIET_LOCK). A scenario whose
#     verifier is not testinfra has no such wait, so it starts only once both locks are free.
# When the checks fail, the scenarios are stopped and destroyed: CI fails now, not an hour later.
VM_LOCK="$PWD/build/quiet-vm.lock"
CHECKS_LOCK="$PWD/build/quiet-checks.lock"

# hold LOCK LOG COMMAND...: run COMMAND in the background, output to LOG, holding LOCK (taken here, before
# the job starts, so nothing can slip in between) until it ends; the job's pid is left in $held.
held=""
hold() {
  local lock=$1 log=$2
  shift 2
  : > "$lock"
  exec 9<>"$lock"
  flock -w 60 9 || { echo "== $lock is held by another run (fuser -v $lock)"; return 1; }
  ( status=0; ("$@") 9<&- || status=$?; flock -u 9; exit $status ) > "$log" 2>&1 &
  held=$!
  exec 9<&-
}

test_all() {
  local vm checks scenarios rc=0 vm_rc=0 s
  mkdir -p build
  hold "$VM_LOCK" build/test-vm-kernel.log vm_kernel || return 1
  vm=$held
  hold "$CHECKS_LOCK" build/checks.log make --no-print-directory -j2 -O checks || return 1
  checks=$held
  # Its own session, so that a failure of the checks can stop it with everything it started.
  BAREMETAL_QUIET_LOCK="$VM_LOCK:$CHECKS_LOCK" QUIET_FIRST="$VM_LOCK" setsid "$0" molecule &
  scenarios=$!
  trap 'kill -TERM -- -$scenarios 2>/dev/null || true' EXIT
  wait $checks || rc=$?
  echo "== output of the checks (build/checks.log), run next to the first scenario's build:"
  cat build/checks.log
  if [ $rc -ne 0 ]; then
    echo "== the checks failed (exit $rc): stopping and destroying the Molecule scenarios"
    kill -TERM -- -$scenarios 2>/dev/null || true
    wait $scenarios || true
    for s in $(all_scenarios); do
      in_list "$s" "$VM_SCENARIOS" || molecule destroy -s "$s" > /dev/null 2>&1 || true
    done
  else
    wait $scenarios || rc=$?
  fi
  trap - EXIT
  wait $vm || vm_rc=$?
  echo "== output of molecule/vm's reduced form (build/test-vm-kernel.log), run in the background:"
  cat build/test-vm-kernel.log
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
