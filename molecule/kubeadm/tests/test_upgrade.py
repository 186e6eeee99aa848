"""molecule/kubeadm: playbooks/upgrade.yml moves the real cluster from 1.36.3 to 1.37.2, and nobody notices.

Runs after test_real_cluster.py (file order): the cluster is at 1.37.2 afterwards. The workload is a
Deployment of three web pods, one per node (they tolerate the control planes' taint), behind a NodePort
Service and a PodDisruptionBudget that lets one pod go at a time. A pod leaves the Service before it stops:
its readiness is probed every second and its preStop hook sleeps, so the endpoints are gone before the
server exits. While upgrade.yml runs, two pollers send a request on a new connection every 200 ms, and
count every one:
- GET https://VIP:8443/readyz, as a client of the API does;
- GET http://<node>:<nodePort>/name, round the three nodes, as a client of the workload does.
Every request must be answered: 200 by an apiserver, a web pod's name by the workload; and a third poller
reads the web pods every second: the budget must keep two of them Ready through every drain. Afterwards every
node runs 1.37.2 (kubelet, kubeadm package, control-plane images, the API's own version), the workload is
whole again, and a second run changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from itertools import cycle

from node_shell import PROJECT, ansible_env, inventory_args, node_exec, sh, wait_for
from run_watch import MarkedRun, Poller, ca_context, changed_by_host, probe
from test_real_cluster import CONTROL_PLANE, JOINED, NODES, kubeconfig, kubectl, kubectl_json, pod_ready, web_container

CONTROL_PLANES = (CONTROL_PLANE, JOINED)
VIP, PORT = "10.123.80.100", 8443
# molecule.yml builds 1.36.3 (test_real_cluster.K8S_VERSION); tests/harness/components.yml builds 1.37.2 too.
TARGET = "1.37.2"
NAMESPACE = "kubeadm-upgrade"
NODE_PORT = 31080
# Bounds for this 2-core host: the whole upgrade of three nodes (the real kubeadm restarts every static pod
# and waits for each), and one request (a slow answer is still an answer; a refused, reset or wrong one is not).
UPGRADE_TIMEOUT_S = 1800
REQUEST_TIMEOUT_S = 5
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
                     "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": {"app": "web"}},
                          "topologyKey": "kubernetes.io/hostname"}]}},
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


def upgrade_argv():
    return ["ansible-playbook", *inventory_args(), str(PROJECT / "playbooks" / "upgrade.yml"),
            "-e", "k8s_version=%s" % TARGET]


def upgrade_snapshots():
    """How many upgrade snapshots the first etcd host keeps."""
    return node_exec(CONTROL_PLANE, "ls /var/backups/etcd/ | grep -c '^etcd-upgrade-.*\\.db$'").stdout.strip()


def web_pods():
    pods = kubectl_json("get", "pods", "-n", NAMESPACE, "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def ready_on_every_node():
    """The three web pods, Ready, one on each node: {node: pod name}, else None."""
    placed = {}
    for name, pod in web_pods().items():
        if pod_ready(pod):
            placed[pod["spec"]["nodeName"]] = name
    return placed if sorted(placed) == sorted(NODES) else None


def budget_sample():
    """How many web pods are Ready and not being deleted, read through the API: (True unless fewer than the
    budget's 2, detail). A read that fails (the API poller counts those) is not a sample."""
    try:
        ready = [name for name, pod in web_pods().items() if pod_ready(pod)]
    except (AssertionError, ValueError, subprocess.TimeoutExpired) as error:
        return True, "not read: %s" % str(error)[:80]
    return len(ready) >= len(NODES) - 1, "%d Ready" % len(ready)


def workload_request(addresses):
    """GET /name through the NodePort of the next node in turn: (True, pod name) or (False, why)."""
    address = next(addresses)
    try:
        with urllib.request.urlopen("http://%s:%d/name" % (address, NODE_PORT), timeout=REQUEST_TIMEOUT_S) as answer:
            body = answer.read().decode(errors="replace").strip()
        return body.startswith("web-"), "%s: %s" % (address, body[:80])
    except (OSError, urllib.error.URLError) as error:
        return False, "%s: %s" % (address, error)


def test_upgrade_to_the_next_minor_answers_every_api_and_workload_request():
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input=json.dumps(WORKLOAD))
    placed, waited = wait_for(ready_on_every_node, 180, interval=2)
    assert placed, "the web pods were not Ready on every node after %.0f s: %s" % (waited, {
        name: (p["spec"].get("nodeName"), p["status"].get("phase")) for name, p in web_pods().items()})
    addresses = cycle(NODES.values())
    # Every node answers through its NodePort before the upgrade starts (kube-proxy has the rules everywhere).
    warm, waited = wait_for(lambda: all(workload_request(addresses)[0] for _node in NODES), 60, interval=1)
    assert warm, "the NodePort did not answer on every node after %.0f s" % waited

    context = ca_context(kubeconfig())
    api = Poller(lambda: probe(VIP, PORT, context, timeout=REQUEST_TIMEOUT_S), UPGRADE_TIMEOUT_S)
    workload = Poller(lambda: workload_request(addresses), UPGRADE_TIMEOUT_S)
    budget = Poller(budget_sample, UPGRADE_TIMEOUT_S, interval=1.0)
    for poller in (api, workload, budget):
        poller.start()
    try:
        run = MarkedRun([api, workload, budget], "upgrade", upgrade_argv(), ansible_env()).finish(UPGRADE_TIMEOUT_S)
    finally:
        for poller in (api, workload, budget):
            poller.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

    for name, poller in (("API through the VIP", api), ("workload through the NodePorts", workload)):
        print("\n%s: %d of %d requests answered during the upgrade; slowest %s"
              % (name, len(poller.results) - len(poller.failed), len(poller.results), poller.slowest()))
    for name, poller in (("API through the VIP", api), ("workload through the NodePorts", workload)):
        assert len(poller.results) > 100, (name, len(poller.results))
        assert not poller.failed, "%s: %d of %d requests failed: %s" % (
            name, len(poller.failed), len(poller.results), "; ".join(poller.describe(r) for r in poller.failed[:5]))

    # The budget held every drain until the replacement was Ready: never fewer than 2 of the 3 web pods Ready,
    # and 2 while a node's pod was going (so the drains did evict).
    counts = [int(detail.split()[0]) for _start, _ok, detail, _took in budget.results if detail.endswith(" Ready")]
    print("web pods Ready during the upgrade: %d samples, fewest %s" % (len(counts), min(counts, default="none")))
    assert len(counts) > 100 and min(counts) == len(NODES) - 1, (len(counts), sorted(set(counts)))
    assert not budget.failed, "; ".join(budget.describe(r) for r in budget.failed[:5])

    # Every node drained and upgraded: the web pods moved, and are whole again.
    drained = [line for line in run.stdout.splitlines() if line.startswith("TASK [") and "drain the node" in line]
    assert len(drained) == len(NODES), drained
    placed, waited = wait_for(ready_on_every_node, 180, interval=2)
    assert placed, "the web pods were not Ready on every node again after %.0f s" % waited


def test_every_node_runs_the_target():
    target = "v" + TARGET
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == target
    nodes = {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(NODES)
    for name, node in nodes.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True" and node["status"]["nodeInfo"]["kubeletVersion"] == target, (name, node["status"])
        assert not node["spec"].get("unschedulable"), "%s was left cordoned" % name
        assert node_exec(name, "dpkg-query -W -f '${Version}' kubeadm kubelet kubectl").stdout == (
            "%s-1.1" % TARGET) * 3
        assert {"kubeadm", "kubelet", "kubectl"} <= set(node_exec(name, "apt-mark showhold").stdout.split())
    pods = {p["metadata"]["name"]: p for p in kubectl_json("get", "pods", "-n", "kube-system")["items"]}
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for node in CONTROL_PLANES:
            image = pods["%s-%s" % (component, node)]["spec"]["containers"][0]["image"]
            assert image == "registry.k8s.io/%s:%s" % (component, target)
    proxy = kubectl_json("get", "daemonset", "-n", "kube-system", "kube-proxy")
    assert proxy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-proxy:%s" % target
    # kubeadm-config names the target: the next upgrade starts from here.
    config = kubectl("get", "configmap", "-n", "kube-system", "kubeadm-config",
                     "-o", "jsonpath={.data.ClusterConfiguration}").stdout
    assert "kubernetesVersion: %s" % target in config
    # The verified snapshot the upgrade took before it changed anything.
    assert upgrade_snapshots() == "1"
    # Every apiserver is back in HAProxy's rotation on every load balancer.
    for node in CONTROL_PLANES:
        stat = node_exec(node, "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock").stdout
        states = {f[1]: f[17] for f in (line.split(",") for line in stat.splitlines())
                  if len(f) > 17 and f[0] == "kube_apiservers" and f[1] in CONTROL_PLANES}
        assert states == dict.fromkeys(CONTROL_PLANES, "UP"), (node, states)


def test_a_second_run_changes_nothing():
    run = sh(*upgrade_argv(), timeout=900, check=False, env=ansible_env())
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "upgrade: nothing to do - every node is at %s" % TARGET in run.stdout, run.stdout[-3000:]
    assert changed_by_host(run.stdout) == {}, changed_by_host(run.stdout)
    # No second snapshot: nothing was about to change.
    assert upgrade_snapshots() == "1"
