"""molecule/cluster: the upgrades of the real cluster site.yml built at 1.36.2, in the order an operator meets them.

Runs last in the verify but for the timer (file order): the cluster is at 1.37.2 afterwards.
1. Targets that must be refused (two minors ahead, a downgrade) change nothing.
2. upgrade_scheduled.yml: outside its window it does nothing; inside it, it is refused while another run holds
   the lock, then moves the control planes to the newest patch of the minor, 1.36.3 (the workers stay: the
   minor upgrade takes them), keeping an operator's cordon.
3. upgrade.yml to 1.37.2 with a workload users run: a Deployment of three web pods on the workers (spread one
   per worker), a PodDisruptionBudget that lets one go at a time, a readiness probe, a preStop delay, behind a
   NodePort Service. Three runs:
   - killed (SIGTERM) once cl-cp2 is upgraded;
   - resumed, with the budget tightened so that no web pod may go: it upgrades cl-cp3, then stops at the first
     worker, whose drain the budget blocks, naming the pod and the budget, with that worker uncordoned and no
     worker after it touched;
   - the budget relaxed again: it finishes (workers two at a time), without draining the nodes already done.
   Through all three, pollers send a request on a new connection every 200 ms and count every one: GET
   https://VIP:8443/readyz as a client of the API does, and GET http://<node>:<nodePort>/name round all six
   nodes as a client of the workload does. Every request must be answered; a third poller reads the web pods
   every second, and the budget must keep two of them Ready through every drain.
4. Every node runs 1.37.2 (kubelet, held packages, control-plane images, kube-proxy, kubeadm-config), every
   apiserver is back in HAProxy, and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from itertools import cycle
from pathlib import Path

import pytest
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, haproxy_states, inventory_args, node_exec, sh, wait_for
from run_watch import MarkedRun, Poller, ca_context, changed_by_host, probe
from test_control_plane import CONTROL_PLANES, K8S_VERSION, PORT, VIP, readyz
from test_real_cluster import NODES, WORKERS, live_web_pods, pod_ready, web_affinity, web_container, web_spread

# tests/harness/components.yml: the newest patch of the minor the cluster runs, and the next minor.
PATCH = "1.36.3"
TARGET = "1.37.2"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
PLAYBOOK = str(PROJECT / "playbooks" / "upgrade.yml")
# Bounds for this 2-core host: one whole upgrade of six nodes (the real kubeadm restarts every static pod and
# waits for each), and one request (a slow answer is still an answer; a refused, reset or wrong one is not).
UPGRADE_TIMEOUT_S = 1800
POLL_TIMEOUT_S = 5
NAMESPACE = "upgrade-test"
NODE_PORT = 31080
WORKLOAD = {
    "apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": NAMESPACE},
         "spec": {
             "replicas": 3,
             "selector": {"matchLabels": {"app": "web"}},
             "template": {
                 "metadata": {"labels": {"app": "web"}},
                 "spec": {
                     # On the workers, one per worker while it can be: a replacement goes to any worker left.
                     "affinity": web_affinity(spread_required=False),
                     "terminationGracePeriodSeconds": 30,
                     # Out of the endpoints (and kube-proxy's rules on every node) before the server exits.
                     "containers": [dict(web_container(probe_period=1),
                                         lifecycle={"preStop": {"sleep": {"seconds": 10}}})],
                 },
             },
         }},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "web", "namespace": NAMESPACE},
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "namespace": NAMESPACE},
         "spec": {"type": "NodePort", "selector": {"app": "web"},
                  "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}},
    ],
}


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


def web_pods(kubeconfig):
    return live_web_pods(kubeconfig, NAMESPACE)


def budget_sample(kubeconfig):
    """How many web pods are Ready and not being deleted, read through the API: (True unless fewer than the
    budget's 2, detail). A read that fails (the API poller counts those) is not a sample."""
    try:
        ready = [name for name, pod in web_pods(kubeconfig).items() if pod_ready(pod)]
    except (AssertionError, ValueError, subprocess.TimeoutExpired) as error:
        return True, "not read: %s" % str(error)[:80]
    return len(ready) >= 2, "%d Ready" % len(ready)


def workload_request(addresses):
    """GET /name through the NodePort of the next node in turn: (True, pod name) or (False, why)."""
    address = next(addresses)
    try:
        with urllib.request.urlopen("http://%s:%d/name" % (address, NODE_PORT), timeout=POLL_TIMEOUT_S) as answer:
            body = answer.read().decode(errors="replace").strip()
        return body.startswith("web-"), "%s: %s" % (address, body[:80])
    except (OSError, urllib.error.URLError) as error:
        return False, "%s: %s" % (address, error)


def control_plane_pods_ready(kubeconfig):
    pods = kubectl_json(kubeconfig, "get", "pods", "-n", "kube-system", "-l", "tier=control-plane")["items"]
    return len(pods) == 3 * len(CONTROL_PLANES) and all(pod_ready(p) for p in pods)


def kubelet_versions(kubeconfig):
    return {name: n["status"]["nodeInfo"]["kubeletVersion"] for name, n in nodes(kubeconfig).items()}


def cordoned(kubeconfig):
    return sorted(name for name, n in nodes(kubeconfig).items() if n["spec"].get("unschedulable"))


def snapshots():
    return node_exec("cl-cp1", "ls /var/backups/etcd/ 2>/dev/null | grep '^etcd-' || true").stdout.split()


def upgrade_snapshots():
    return [name for name in snapshots() if name.startswith("etcd-upgrade-") and name.endswith(".db")]


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


def marked_run(pollers, label, *extra):
    """upgrade.yml in the background, every task it starts marked on the pollers (molecule/run_watch.py)."""
    return MarkedRun(pollers, label, ["ansible-playbook", *inventory_args(), PLAYBOOK, *extra], ansible_env())


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
    # The site's mirror carries no 1.35 repository: named among the problems, not a bare HTTP error.
    assert ("packages: kubeadm 1.35.2 is not in the repository of minor 1.35 (it offers: nothing; "
            "http://10.123.70.5:8080/core:/stable:/v1.35/deb/Packages answers 404") in flat(run), flat(run)[-3000:]
    # Nothing reported a change, except the snapshot's check-mode dry run (it says what it would take).
    changed = {task for tasks in changed_by_host(run.stdout).values() for task in tasks}
    assert changed <= {"baremetal.kubernetes.etcd : Take, verify and prune the snapshot"}, changed
    assert kubelet_versions(kubeconfig) == before_versions and cordoned(kubeconfig) == []
    assert snapshots() == before_snapshots
    for node in NODES:
        held = node_exec(node, "dpkg-query -W -f='${Version}' kubeadm").stdout
        assert held == K8S_VERSION + "-1.1"


# -- scheduled patch upgrades ------------------------------------------------------------------------
SCHEDULED = str(PROJECT / "playbooks" / "upgrade_scheduled.yml")
LOCK = "/var/lib/baremetal-kubernetes/upgrade.lock"


def scheduled(window, report, *extra):
    return sh("ansible-playbook", *inventory_args(), SCHEDULED,
              # JSON: in key=value form the space in the window would end the value.
              "-e", json.dumps({"control_plane_upgrade_window": window}),
              "-e", "control_plane_upgrade_report_file=%s" % report, *extra, timeout=UPGRADE_TIMEOUT_S, check=False,
              env=ansible_env())


def days(*offsets):
    """Whole days as a window, in the controller's (this host's) local time: 0 is today, 1 tomorrow..."""
    return "%s 00:00-24:00" % ",".join((datetime.now() + timedelta(days=o)).strftime("%a") for o in offsets)


# Inside: today and tomorrow, so that a run which crosses midnight is still inside. Outside: three days on,
# which no run of this test reaches.
INSIDE = days(0, 1)
OUTSIDE = days(3)


def test_a_scheduled_run_outside_its_window_changes_nothing(kubeconfig):
    before_versions, before_snapshots = kubelet_versions(kubeconfig), snapshots()
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "scheduled-outside.json"
    run = scheduled(OUTSIDE, report)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "upgrade: nothing to do - " in flat(run)
    assert "is outside the maintenance window %s" % OUTSIDE in flat(run)
    summary = json.loads(report.read_text())
    assert summary["result"] == "nothing to do" and summary["window"] == OUTSIDE
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
    locked = scheduled(INSIDE, report)
    assert locked.returncode != 0, locked.stdout[-4000:]
    assert "another upgrade holds the lock %s" % LOCK in flat(locked), locked.stdout[-4000:] + locked.stderr[-2000:]
    assert "ansible-playbook pid 4242 on ops-box" in flat(locked)
    assert kubelet_versions(kubeconfig) == before and cordoned(kubeconfig) == []
    node_exec("cl-cp1", "rm -f %s" % LOCK)

    # An operator cordoned cl-cp3 before the run: it is upgraded, and stays cordoned. The control planes only
    # (control_plane_upgrade_workers=false): the workers' cycle is the minor upgrade's below, and this keeps the
    # scenario's share of CI down.
    kubectl(kubeconfig, "cordon", "cl-cp3")
    snapshots_before = snapshots()
    try:
        run = scheduled(INSIDE, report, "-e", "control_plane_upgrade_workers=false")
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        versions = kubelet_versions(kubeconfig)
        still_cordoned = cordoned(kubeconfig)
    finally:
        kubectl(kubeconfig, "uncordon", "cl-cp3")
    print("\nscheduled run inside %s: control planes %s -> %s; kubelets: %s" % (INSIDE, K8S_VERSION, PATCH, versions))
    expected = {node: "v" + (PATCH if node in CONTROL_PLANES else K8S_VERSION) for node in NODES}
    assert versions == expected, versions
    assert still_cordoned == ["cl-cp3"]
    summary = json.loads(report.read_text())
    assert summary["result"] == "success" and summary["target"] == PATCH and summary["kind"] == "patch"
    assert summary["scheduled"] is True and summary["window"] == INSIDE
    assert summary["nodes"]["cl-cp3"]["cordoned_before"] is True
    assert summary["nodes"]["cl-cp1"]["cordoned_before"] is False
    assert set(summary["upgraded"]) == set(CONTROL_PLANES)
    # A new upgrade takes its own snapshot (it does not reuse the previous upgrade's), and releases the lock.
    new = sorted(set(snapshots()) - set(snapshots_before))
    assert len(new) == 1 and summary["backup"]["path"].endswith(new[0]) and summary["backup"]["reused"] is False
    assert node_exec("cl-cp1", "test -e %s" % LOCK, check=False).returncode != 0
    assert "upgrade: success - %s" % PATCH in flat(run)
    assert "node cl-cp3 stays cordoned" in flat(run)


def test_upgrade_interrupted_then_resumed_answers_every_api_and_workload_request(kubeconfig):
    kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
    kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(WORKLOAD))
    placed, waited = wait_for(lambda: web_spread(kubeconfig, NAMESPACE), 180, interval=2)
    assert placed, "the web pods were not Ready one per worker after %.0f s: %s" % (waited, {
        name: (p["spec"].get("nodeName"), p["status"].get("phase")) for name, p in web_pods(kubeconfig).items()})
    addresses = cycle(NODES.values())
    # Every node answers through its NodePort before the upgrade starts (kube-proxy has the rules everywhere).
    warm, waited = wait_for(lambda: all(workload_request(addresses)[0] for _node in NODES), 60, interval=1)
    assert warm, "the NodePort did not answer on every node after %.0f s" % waited
    snapshots_before = upgrade_snapshots()
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "upgrade-report.json"
    report.unlink(missing_ok=True)
    context = ca_context(kubeconfig)
    api = Poller(lambda: probe(VIP, PORT, context, timeout=POLL_TIMEOUT_S), UPGRADE_TIMEOUT_S * 2)
    workload = Poller(lambda: workload_request(addresses), UPGRADE_TIMEOUT_S * 2)
    budget = Poller(lambda: budget_sample(kubeconfig), UPGRADE_TIMEOUT_S * 2, interval=1.0)
    pollers = (api, workload, budget)
    watch = CordonWatch(kubeconfig, UPGRADE_TIMEOUT_S)
    for poller in pollers:
        poller.start()
    watch.start()
    started = time.monotonic()
    try:
        # First run: killed (SIGTERM, like a stopped CI job or a closed terminal) once cl-cp2 is upgraded.
        first = marked_run(pollers, "run 1", "-e", "k8s_version=%s" % TARGET)

        def cp2_upgraded():
            node = nodes(kubeconfig)["cl-cp2"]
            return node["status"]["nodeInfo"]["kubeletVersion"] == "v" + TARGET or first.process.poll() is not None

        wait_for(cp2_upgraded, UPGRADE_TIMEOUT_S, interval=1)
        assert first.process.poll() is None, "the first run ended before cl-cp2 was upgraded:\n" + first.stdout[-6000:]
        first.mark("run 1 killed")
        os.killpg(first.process.pid, signal.SIGTERM)
        first.finish(timeout=60)
        interrupted_at = time.monotonic() - started
        after_kill = kubelet_versions(kubeconfig)
        first_output = first.stdout
        # The kill came as cl-cp2's kubelet package restarted the kubelet (its postinst does), with the node's
        # static pods restarting: the preflight of a re-run refuses a cluster with pods not Ready, so the
        # operator, like this test, waits until they are (bounded).
        settled, waited = wait_for(lambda: control_plane_pods_ready(kubeconfig), 180, interval=2)
        assert settled, "the control-plane pods were not Ready %.0f s after the kill" % waited
        # Second run: no web pod may go (maxUnavailable 0), so the first worker cannot be drained; the run must
        # stop there after control_plane_upgrade_drain_timeout.
        kubectl(kubeconfig, "patch", "pdb", "-n", NAMESPACE, "web", "--type=merge", "-p",
                '{"spec": {"maxUnavailable": 0}}')
        blocked = marked_run(pollers, "run 2", "-e", "k8s_version=%s" % TARGET,
                             "-e", "control_plane_upgrade_drain_timeout=20").finish(UPGRADE_TIMEOUT_S)
        after_block = kubelet_versions(kubeconfig)
        cordoned_after_block = cordoned(kubeconfig)
        kubectl(kubeconfig, "patch", "pdb", "-n", NAMESPACE, "web", "--type=merge", "-p",
                '{"spec": {"maxUnavailable": 1}}')
        # Third run: finishes the job, workers two at a time (the budget lets one pod go at a time, and the
        # worker left schedulable takes the replacements).
        resumed = marked_run(pollers, "run 3", "-e", "k8s_version=%s" % TARGET,
                             "-e", "control_plane_upgrade_report_file=%s" % report,
                             "-e", "control_plane_upgrade_worker_batch_size=2").finish(UPGRADE_TIMEOUT_S)
        total = time.monotonic() - started
    finally:
        for poller in pollers:
            poller.stop()
        watch.stopped.set()
        watch.join(timeout=10)
    print("\nupgrade %s -> %s: first run killed after %.0f s (kubelets then: %s); the re-run finished at %.0f s"
          % (PATCH, TARGET, interrupted_at, after_kill, total))
    for name, poller in (("API through the VIP", api), ("workload through the NodePorts", workload)):
        print("%s: %d of %d requests answered during the three runs; slowest %s"
              % (name, len(poller.results) - len(poller.failed), len(poller.results), poller.slowest()))
    assert after_kill["cl-cp1"] == after_kill["cl-cp2"] == "v" + TARGET

    # The blocked run: control planes done, then it stopped at the first worker with a web pod.
    assert blocked.returncode != 0, blocked.stdout[-4000:]
    stuck = re.search(r"drain of node (cl-w\d) did not complete: 1 pod\(s\) still blocked by PodDisruptionBudgets "
                      r"after 20 s: %s/web-\S+ blocked by PDB %s/web" % (NAMESPACE, NAMESPACE), flat(blocked))
    assert stuck, blocked.stdout[-4000:] + blocked.stderr[-2000:]
    stuck = stuck.group(1)
    workers = sorted(WORKERS)
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

    # Every request through the VIP and through the NodePorts was answered, during all three runs.
    for name, poller in (("API through the VIP", api), ("workload through the NodePorts", workload)):
        assert len(poller.results) > 100, (name, len(poller.results))
        assert not poller.failed, "%s: %d of %d requests failed: %s" % (
            name, len(poller.failed), len(poller.results), "; ".join(poller.describe(r) for r in poller.failed[:5]))
    # The budget held every drain until the replacement was Ready: never fewer than 2 of the 3 web pods Ready,
    # and 2 while a worker's pod was going (so the drains did evict).
    counts = [int(detail.split()[0]) for _start, _ok, detail, _took in budget.results if detail.endswith(" Ready")]
    print("web pods Ready during the upgrade: %d samples, fewest %s" % (len(counts), min(counts, default="none")))
    assert len(counts) > 100 and min(counts) == 2, (len(counts), sorted(set(counts)))
    assert not budget.failed, "; ".join(budget.describe(r) for r in budget.failed[:5])

    # The snapshot: taken once (the re-runs reused it, verified again), before the first node was cordoned.
    new = sorted(set(upgrade_snapshots()) - set(snapshots_before))
    assert len(new) == 1, new
    assert summary["backup"]["path"].endswith(new[0]) and summary["backup"]["reused"] is True
    assert summary["backup"]["revision"] > 0
    assert new[0] in first_output
    taken = datetime.strptime(summary["backup"]["taken_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert watch.first is not None, "no node was ever seen cordoned"
    assert taken.timestamp() <= watch.first, (summary["backup"]["taken_at"], watch.first)
    # The workload is whole again.
    whole, waited = wait_for(lambda: sum(pod_ready(p) for p in web_pods(kubeconfig).values()) == 3, 120, interval=2)
    assert whole, "the web Deployment has not 3 Ready pods %.0f s after the upgrade" % waited


def test_every_node_runs_the_target(kubeconfig):
    target = "v" + TARGET
    server = json.loads(kubectl(kubeconfig, "version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == target
    found = nodes(kubeconfig)
    assert sorted(found) == sorted(NODES)
    for name, node in found.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True" and node["status"]["nodeInfo"]["kubeletVersion"] == target, (name, node["status"])
        assert not node["spec"].get("unschedulable"), "%s was left cordoned" % name
        assert "baremetal.kubernetes/cordoned-by" not in (node["metadata"].get("annotations") or {}), name
        assert node_exec(name, "dpkg-query -W -f '${Version} ' kubeadm kubelet kubectl").stdout.split() == [
            "%s-1.1" % TARGET] * 3
        assert {"kubeadm", "kubelet", "kubectl"} <= set(node_exec(name, "apt-mark showhold").stdout.split())
        assert node_exec(name, "systemctl is-active kubelet").stdout.strip() == "active"
    pods = {p["metadata"]["name"]: p for p in kubectl_json(kubeconfig, "get", "pods", "-n", "kube-system")["items"]}
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for node in CONTROL_PLANES:
            image = pods["%s-%s" % (component, node)]["spec"]["containers"][0]["image"]
            assert image == "registry.k8s.io/%s:%s" % (component, target)
    proxy = kubectl_json(kubeconfig, "get", "daemonset", "-n", "kube-system", "kube-proxy")
    assert proxy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-proxy:%s" % target
    # kubeadm-config names the target: the next upgrade starts from here.
    config = kubectl(kubeconfig, "get", "configmap", "-n", "kube-system", "kubeadm-config",
                     "-o", "jsonpath={.data.ClusterConfiguration}").stdout
    assert "kubernetesVersion: %s" % target in config
    context = ca_context(kubeconfig)
    for name, address in CONTROL_PLANES.items():
        version = json.loads(sh("curl", "-sk", "--max-time", "5", "https://%s:6443/version" % address).stdout)
        assert version["gitVersion"] == target, (name, version)
        assert readyz(address, 6443, context, timeout=2)
        # Back in HAProxy's rotation on every load balancer.
        states = haproxy_states(name)
        assert states == dict.fromkeys(CONTROL_PLANES, "UP"), (name, states)


def test_a_second_run_changes_nothing(kubeconfig):
    before = upgrade_snapshots()
    run = upgrade(TARGET, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "upgrade: nothing to do - every node is at %s" % TARGET in run.stdout, run.stdout[-3000:]
    assert changed_by_host(run.stdout) == {}, changed_by_host(run.stdout)
    # No new snapshot: nothing was about to change.
    assert upgrade_snapshots() == before
