"""molecule/cluster: playbooks/upgrade.yml on the cluster site.yml built (1.36.2, kubesim's mirror) -> 1.37.1.

Runs last in the verify (file order): the cluster is at a new version afterwards. Workloads: a
ReplicaSet with a PodDisruptionBudget on the workers. During the whole upgrade a bounded background
poller sends GET https://VIP:8443/readyz every 200 ms; every request must succeed. Three runs:
1. killed (SIGTERM) once cl-cp2 is upgraded;
2. resumed, with the PodDisruptionBudget tightened so that no web pod may go: it upgrades cl-cp3, then
   stops at the first worker whose drain the budget blocks, naming the pod and the budget, with that
   worker uncordoned and no worker after it touched;
3. the budget relaxed again: it finishes, without draining the nodes already upgraded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, inventory_args, node_exec, sh, wait_for
from run_watch import MarkedRun, Poller, ca_context, changed_by_host, probe
from test_control_plane import CONTROL_PLANES, K8S_VERSION, PORT, VIP, readyz

TARGET = "1.37.1"
# Nodes: the scale test left cl-w3 in the inventory.
NODES = [*CONTROL_PLANES, "cl-w1", "cl-w2", "cl-w3"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
PLAYBOOK = str(PROJECT / "playbooks" / "upgrade.yml")
# Bounds for this 2-core host: one whole upgrade of 6 nodes, and the poller's window.
UPGRADE_TIMEOUT_S = 1200
# A request may take this long: on this 2-core host the Python apiserver double, six systemd nodes and
# Ansible share the CPU, and a slow answer is still an answer; a refused, reset or non-200 request is a
# failure. The slowest answer is printed, so slowness shows.
POLL_TIMEOUT_S = 5
WORKLOAD = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10.1}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"""


@pytest.fixture(scope="module")
def kubeconfig():
    return str(fetched_kubeconfig())


def upgrade(target, *extra, timeout=UPGRADE_TIMEOUT_S):
    return sh("ansible-playbook", *inventory_args(), PLAYBOOK, "-e", "k8s_version=%s" % target, *extra,
              timeout=timeout, check=False, env=ansible_env())


def flat(run):
    """A run's whole output (failed results go to stderr) as one line: the YAML result format folds long
    messages (plain or double-quoted)."""
    return " ".join(re.sub(r"\\\n\s*(\\(?= ))?", "", run.stdout + "\n" + run.stderr).split())


def nodes(kubeconfig):
    return {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}


def kubelet_versions(kubeconfig):
    return {name: n["status"]["nodeInfo"]["kubeletVersion"] for name, n in nodes(kubeconfig).items()}


def cordoned(kubeconfig):
    return sorted(name for name, n in nodes(kubeconfig).items() if n["spec"].get("unschedulable"))


def snapshots():
    return node_exec("cl-cp1", "ls /var/backups/etcd/ 2>/dev/null | grep '^etcd-' || true").stdout.split()


class CordonWatch(threading.Thread):
    """The first moment (host clock) any node is seen cordoned, polling the API every 0.5 s."""

    def __init__(self, kubeconfig, seconds):
        super().__init__(daemon=True)
        self.kubeconfig, self.seconds, self.first, self.stopped = kubeconfig, seconds, None, threading.Event()

    def run(self):
        deadline = time.time() + self.seconds
        while self.first is None and time.time() < deadline and not self.stopped.is_set():
            try:
                if cordoned(self.kubeconfig):
                    self.first = time.time()
            except AssertionError:
                pass  # one failed kubectl call; the next poll tells
            time.sleep(0.5)


def marked_run(poller, label, *extra):
    """upgrade.yml in the background, every task it starts marked on the poller (molecule/run_watch.py)."""
    return MarkedRun([poller], label, ["ansible-playbook", *inventory_args(), PLAYBOOK, *extra], ansible_env())


def test_targets_that_must_be_refused_change_nothing(kubeconfig):
    before_versions, before_snapshots = kubelet_versions(kubeconfig), snapshots()
    # Two minors ahead (and past the supported range): the inventory preflight refuses it on the controller.
    run = upgrade("1.38.0", timeout=300)
    assert run.returncode != 0
    assert "1.38" in flat(run) and "supported" in flat(run), run.stdout[-3000:]
    # A downgrade reaches the upgrade preflight, which reads the versions from the API and names every node.
    run = upgrade("1.35.2", timeout=300)
    assert run.returncode != 0
    assert "The upgrade to 1.35.2 is refused; nothing was changed" in flat(run), run.stdout[-3000:]
    for node in NODES:
        assert "node %s runs kubelet %s, newer than the target 1.35.2" % (node, K8S_VERSION) in flat(run)
    # Nothing reported a change, except the snapshot's check-mode dry run (it says what it would take).
    changed = {task for tasks in changed_by_host(run.stdout).values() for task in tasks}
    assert changed <= {"baremetal.kubernetes.etcd : Take, verify and prune the snapshot"}, changed
    assert kubelet_versions(kubeconfig) == before_versions and cordoned(kubeconfig) == []
    assert snapshots() == before_snapshots
    for node in NODES:
        held = node_exec(node, "dpkg-query -W -f='${Version}' kubeadm").stdout
        assert held == K8S_VERSION + "-1.1"


def test_upgrade_interrupted_then_resumed_keeps_every_readyz_request_answered(kubeconfig):
    kubectl(kubeconfig, "apply", "-f", "-", input=WORKLOAD)
    wait_for(lambda: kubectl_json(kubeconfig, "get", "replicaset", "web").get("status", {}).get("readyReplicas") == 3,
             60, interval=1)
    assert kubectl_json(kubeconfig, "get", "replicaset", "web")["status"].get("readyReplicas") == 3
    snapshots_before = snapshots()
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "upgrade-report.json"
    report.unlink(missing_ok=True)
    context = ca_context(kubeconfig)
    poller = Poller(lambda: probe(VIP, PORT, context, timeout=POLL_TIMEOUT_S), UPGRADE_TIMEOUT_S * 2)
    watch = CordonWatch(kubeconfig, UPGRADE_TIMEOUT_S)
    poller.start()
    watch.start()
    started = time.monotonic()
    try:
        # First run: killed (SIGTERM, like a stopped CI job or a closed terminal) once cl-cp2 is upgraded.
        first = marked_run(poller, "run 1", "-e", "k8s_version=%s" % TARGET)

        def cp2_upgraded():
            node = nodes(kubeconfig)["cl-cp2"]
            return node["status"]["nodeInfo"]["kubeletVersion"] == "v" + TARGET or first.process.poll() is not None

        wait_for(cp2_upgraded, UPGRADE_TIMEOUT_S, interval=1)
        assert first.process.poll() is None, "the first run ended before cl-cp2 was upgraded:\n" + first.stdout[-6000:]
        poller.mark("run 1 killed")
        os.killpg(first.process.pid, signal.SIGTERM)
        first.finish(timeout=60)
        interrupted_at = time.monotonic() - started
        after_kill = kubelet_versions(kubeconfig)
        first_output = first.stdout
        # Second run: every web pod is needed (minAvailable 3 of 3), so the first worker running one cannot
        # be drained; the run must stop there after control_plane_upgrade_drain_timeout.
        kubectl(kubeconfig, "patch", "pdb", "web", "--type=merge", "-p", '{"spec": {"minAvailable": 3}}')
        blocked = marked_run(poller, "run 2", "-e", "k8s_version=%s" % TARGET,
                             "-e", "control_plane_upgrade_drain_timeout=20").finish(UPGRADE_TIMEOUT_S)
        after_block = kubelet_versions(kubeconfig)
        cordoned_after_block = cordoned(kubeconfig)
        kubectl(kubeconfig, "patch", "pdb", "web", "--type=merge", "-p", '{"spec": {"minAvailable": 2}}')
        # Third run: finishes the job, workers two at a time (the web budget allows one pod down and one
        # worker stays schedulable for the replacements).
        resumed = marked_run(poller, "run 3", "-e", "k8s_version=%s" % TARGET,
                             "-e", "control_plane_upgrade_report_file=%s" % report,
                             "-e", "control_plane_upgrade_worker_batch_size=2").finish(UPGRADE_TIMEOUT_S)
        total = time.monotonic() - started
    finally:
        poller.stopped.set()
        watch.stopped.set()
        poller.join(timeout=10)
        watch.join(timeout=10)
    failed = [r for r in poller.results if not r[1]]
    print("\nupgrade %s -> %s: first run killed after %.0f s (kubelets then: %s); the re-run finished at %.0f s. "
          "readyz through the VIP: %d/%d requests succeeded; the slowest answer %s"
          % (K8S_VERSION, TARGET, interrupted_at, after_kill, total, len(poller.results) - len(failed),
             len(poller.results), poller.describe(max(poller.results, key=lambda r: r[3]))))
    assert after_kill["cl-cp1"] == after_kill["cl-cp2"] == "v" + TARGET

    # The blocked run: control planes done, then it stopped at the first worker with a web pod.
    assert blocked.returncode != 0, blocked.stdout[-4000:]
    stuck = re.search(r"drain of node (cl-w\d) did not complete: 1 pod\(s\) still blocked by PodDisruptionBudgets "
                      r"after 20 s: default/web-\S+ blocked by PDB default/web", flat(blocked))
    assert stuck, blocked.stdout[-4000:] + blocked.stderr[-2000:]
    stuck = stuck.group(1)
    workers = ["cl-w1", "cl-w2", "cl-w3"]
    print("the tightened budget stopped the second run at %s; kubelets then: %s" % (stuck, after_block))
    assert cordoned_after_block == [], cordoned_after_block
    assert all(after_block[n] == "v" + TARGET for n in CONTROL_PLANES)
    for later in workers[workers.index(stuck):]:
        assert after_block[later] == "v" + K8S_VERSION, (later, after_block)
    # No worker after the stuck one ran a single task (serial 1, max_fail_percentage 0).
    for later in workers[workers.index(stuck) + 1:]:
        assert "[%s" % later not in blocked.stdout, later

    assert resumed.returncode == 0, resumed.stdout[-8000:] + resumed.stderr[-2000:]

    # Resume: the third run skipped the control planes the first two upgraded (no drain, no package, no
    # kubeadm on them) and upgraded only the workers.
    changed = changed_by_host(resumed.stdout)
    for node in CONTROL_PLANES:
        assert not [t for t in changed.get(node, []) if ": Upgrade |" in t], changed.get(node)
    summary = json.loads(report.read_text())
    assert summary["result"] == "success" and summary["target"] == TARGET
    assert not set(CONTROL_PLANES) & set(summary["nodes"]), summary["nodes"]
    assert set(summary["upgraded"]) == set(workers)
    # Batches of two: the first two workers left were upgraded at the same time.
    left = [w for w in workers if w in summary["nodes"]]
    if len(left) >= 2:
        first, second = (summary["nodes"][w] for w in left[:2])
        assert second["started"] < first["finished"] and first["started"] < second["finished"], (first, second)

    # 100 % of the readyz requests through the VIP succeeded, during both runs.
    assert poller.results and not failed, "%d of %d requests failed: %s" % (
        len(failed), len(poller.results), "; ".join(poller.describe(r) for r in failed[:5]))

    # Every node at the target, Ready and schedulable; every apiserver serves the target version.
    versions = kubelet_versions(kubeconfig)
    assert versions == dict.fromkeys(NODES, "v" + TARGET), versions
    assert cordoned(kubeconfig) == []
    for name, node in nodes(kubeconfig).items():
        assert "baremetal.kubernetes/cordoned-by" not in (node["metadata"].get("annotations") or {}), name
    context = ca_context(kubeconfig)
    for name, address in CONTROL_PLANES.items():
        version = json.loads(sh("curl", "-sk", "--max-time", "5", "https://%s:6443/version" % address).stdout)
        assert version["gitVersion"] == "v" + TARGET, (name, version)
        assert readyz(address, 6443, context, timeout=2)
    for node in NODES:
        assert node_exec(node, "dpkg-query -W -f='${Version} ${Status}' kubelet").stdout == \
            TARGET + "-1.1 hold ok installed"
        assert node_exec(node, "systemctl is-active kubelet").stdout.strip() == "active"

    # The snapshot: taken once (the re-run reused it, verified again), before the first node was cordoned.
    new = sorted(set(snapshots()) - set(snapshots_before))
    assert len(new) == 1, new
    assert summary["backup"]["path"].endswith(new[0]) and summary["backup"]["reused"] is True
    assert summary["backup"]["revision"] > 0
    assert new[0].startswith("etcd-upgrade-") and new[0] in first_output
    taken = datetime.strptime(summary["backup"]["taken_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert watch.first is not None, "no node was ever seen cordoned"
    assert taken.timestamp() <= watch.first, (summary["backup"]["taken_at"], watch.first)
    # The workload survived with its budget: every replica Ready again.
    wait_for(lambda: kubectl_json(kubeconfig, "get", "replicaset", "web")["status"].get("readyReplicas") == 3,
             60, interval=1)
    assert kubectl_json(kubeconfig, "get", "replicaset", "web")["status"].get("readyReplicas") == 3


# -- scheduled patch upgrades ------------------------------------------------------------------------
SCHEDULED = str(PROJECT / "playbooks" / "upgrade_scheduled.yml")
PATCH = "1.37.2"  # the newest patch of 1.37 in kubesim's mirror
LOCK = "/var/lib/baremetal-kubernetes/upgrade.lock"


def scheduled(window, report, *extra):
    return sh("ansible-playbook", *inventory_args(), SCHEDULED,
              # JSON: in key=value form the space in the window would end the value.
              "-e", json.dumps({"control_plane_upgrade_window": window}),
              "-e", "control_plane_upgrade_report_file=%s" % report, *extra, timeout=UPGRADE_TIMEOUT_S, check=False,
              env=ansible_env())


def day(offset):
    """A whole day as a window, in the controller's (this host's) local time: today (0) or another day."""
    return "%s 00:00-24:00" % (datetime.now() + timedelta(days=offset)).strftime("%a")


def test_a_scheduled_run_outside_its_window_changes_nothing(kubeconfig):
    before_versions, before_snapshots = kubelet_versions(kubeconfig), snapshots()
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "scheduled-outside.json"
    run = scheduled(day(1), report)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "upgrade: nothing to do - " in flat(run)
    assert "is outside the maintenance window %s" % day(1) in flat(run)
    summary = json.loads(report.read_text())
    assert summary["result"] == "nothing to do" and summary["window"] == day(1)
    assert "outside the maintenance window" in summary["reason"]
    # The only change anywhere: the report, written on the controller.
    changed = {task for tasks in changed_by_host(run.stdout).values() for task in tasks}
    assert changed == {"baremetal.kubernetes.control_plane : Schedule | write the JSON report on the controller"}, \
        changed
    assert kubelet_versions(kubeconfig) == before_versions and snapshots() == before_snapshots
    assert node_exec("cl-cp1", "test -e %s" % LOCK, check=False).returncode != 0


def test_a_scheduled_run_inside_its_window_moves_to_the_newest_patch(kubeconfig):
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "scheduled-inside.json"
    # Another run holds the lock (another controller, started a minute ago): refused, nothing changes.
    foreign = json.dumps({"id": "0123456789abcdef", "target": PATCH, "pid": 4242, "controller": "ops-box",
                          "started": "earlier", "epoch": int(time.time()) - 60})
    node_exec("cl-cp1", "mkdir -p %s && printf '%%s' '%s' > %s" % (os.path.dirname(LOCK), foreign, LOCK))
    before = kubelet_versions(kubeconfig)
    locked = scheduled(day(0), report)
    assert locked.returncode != 0, locked.stdout[-4000:]
    assert "another upgrade holds the lock %s" % LOCK in flat(locked), locked.stdout[-4000:] + locked.stderr[-2000:]
    assert "ansible-playbook pid 4242 on ops-box" in flat(locked)
    assert kubelet_versions(kubeconfig) == before and cordoned(kubeconfig) == []
    node_exec("cl-cp1", "rm -f %s" % LOCK)

    # An operator cordoned cl-cp3 before the run: it is upgraded, and stays cordoned. The control planes only
    # (control_plane_upgrade_workers=false): the worker cycle is the one the minor upgrade above ran, and
    # this keeps the scenario's share of CI down.
    kubectl(kubeconfig, "cordon", "cl-cp3")
    snapshots_before = snapshots()
    try:
        run = scheduled(day(0), report, "-e", "control_plane_upgrade_workers=false")
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        versions = kubelet_versions(kubeconfig)
        still_cordoned = cordoned(kubeconfig)
    finally:
        kubectl(kubeconfig, "uncordon", "cl-cp3")
    print("\nscheduled run inside %s: control planes %s -> %s; kubelets: %s" % (day(0), TARGET, PATCH, versions))
    expected = {node: "v" + (PATCH if node in CONTROL_PLANES else TARGET) for node in NODES}
    assert versions == expected, versions
    assert still_cordoned == ["cl-cp3"]
    summary = json.loads(report.read_text())
    assert summary["result"] == "success" and summary["target"] == PATCH and summary["kind"] == "patch"
    assert summary["scheduled"] is True and summary["window"] == day(0)
    assert summary["nodes"]["cl-cp3"]["cordoned_before"] is True
    assert summary["nodes"]["cl-cp1"]["cordoned_before"] is False
    assert set(summary["upgraded"]) == set(CONTROL_PLANES)
    # A new upgrade takes its own snapshot (it does not reuse the previous upgrade's), and releases the lock.
    new = sorted(set(snapshots()) - set(snapshots_before))
    assert len(new) == 1 and summary["backup"]["path"].endswith(new[0]) and summary["backup"]["reused"] is False
    assert node_exec("cl-cp1", "test -e %s" % LOCK, check=False).returncode != 0
    assert "upgrade: success - %s" % PATCH in flat(run)
    assert "node cl-cp3 stays cordoned" in flat(run)
