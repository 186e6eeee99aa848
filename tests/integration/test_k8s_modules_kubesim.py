# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_drain and cluster_health, run by ansible-playbook, against kubesim (tests/kubesim).

kubesim is the project's Kubernetes test double: a simulated kube-apiserver over TLS, backed by a
real etcd on loopback, with the scheduler, ReplicaSet/DaemonSet controllers and the kubelet's pod
lifecycle simulated (see tests/kubesim). The modules talk to it exactly as to a real apiserver:
HTTPS with the client certificate embedded in a kubeconfig.

Check mode is covered too: k8s_drain sends dry-run evictions (``dryRun=All``), which kubesim answers with the
same PDB decision as a real eviction while writing nothing, as the real apiserver does. A stopped kubelet is a
real kubelet shim process (``python -m kubesim kubelet``) that is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBESIM = REPO / "tests" / "kubesim"
# The checkout as ansible_collections.baremetal.kubernetes (see tests/unit/conftest.py) and kubesim.

from ansible_collections.baremetal.kubernetes.plugins.module_utils.k8s_client import (  # noqa: E402
    K8sApiError,
    K8sClient,
)

kubesim_testing = pytest.importorskip("kubesim.testing", reason="kubesim (tests/kubesim) is not available")
LocalCluster = kubesim_testing.LocalCluster
wait_for = kubesim_testing.wait_for


def node_body(name, ip, kubelet="v1.37.1", unschedulable=False, ready=True, heartbeat_age=0):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - heartbeat_age))
    ready_cond = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready "
                  "status", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
    if not ready:
        ready_cond.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [ready_cond], "addresses": [{"type": "InternalIP", "address": ip}],
                       "nodeInfo": {"kubeletVersion": kubelet}}}


def replicaset(name, replicas, labels):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": name, "image": "registry.invalid/%s:1" % name}]}}}}


def pdb(name, labels, **spec):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"}, "spec": dict(spec, selector={"matchLabels": labels})}


def ready(pod):
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or [])


class Sim:
    def __init__(self, local, run_module):
        self.local = local
        self.run_module = run_module
        self.kubeconfig = local.kubeconfigs[0]
        self.api = K8sClient.from_kubeconfig(self.kubeconfig)

    def pods(self, selector=None, node=None):
        query = {"labelSelector": selector}
        if node:
            query["fieldSelector"] = "spec.nodeName=%s" % node
        return self.api.list_all("/api/v1/namespaces/default/pods", query=query)

    def cordon(self, name, value):
        self.api.patch("/api/v1/nodes/%s" % name, {"spec": {"unschedulable": True if value else None}})

    def module(self, module_name, check=False, **args):
        args.setdefault("kubeconfig", self.kubeconfig)
        return self.run_module(module_name, check=check, **args)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    for binary in ("/usr/bin/etcd",):
        if not Path(binary).exists():
            pytest.fail("%s is required for the kubesim integration tests (make deps installs it)" % binary)
    with LocalCluster(str(tmp_path_factory.mktemp("kubesim") / "cluster"), replicas=2).running() as local:
        yield local


@pytest.fixture
def sim(local, run_module):
    sim = Sim(local, run_module)
    yield sim
    sim.api.close()


def test_drain_30_pods_with_daemonset_and_pdb(sim):
    api = sim.api
    for index, name in enumerate(("node-a", "node-b", "node-c")):
        api.request("POST", "/api/v1/nodes", body=node_body(name, "10.0.0.%d" % (21 + index),
                                                            unschedulable=name != "node-a"))
    # Everything starts on node-a: the other nodes are cordoned while the workloads are placed.
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("web", 30, {"app": "web"}))
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("db", 2, {"app": "db"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("db", {"app": "db"}, maxUnavailable=1))
    ds = replicaset("agent", 0, {"app": "agent"})
    ds["kind"] = "DaemonSet"
    ds["spec"].pop("replicas")
    api.request("POST", "/apis/apps/v1/namespaces/default/daemonsets", body=ds)
    wait_for(lambda: len([p for p in sim.pods(node="node-a") if ready(p)]) == 33, timeout=60,
             what="33 pods Ready on node-a")
    for name in ("node-b", "node-c"):
        sim.cordon(name, False)

    # Watch the PDB pods the whole time: never more than 1 of 2 may be down.
    lowest = [2]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            with contextlib.suppress(K8sApiError):
                lowest[0] = min(lowest[0], len([p for p in sim.pods("app=db") if ready(p)]))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = sim.module("k8s_drain", name="node-a", ignore_daemonsets=True, timeout=120)
    finally:
        stop.set()
        watcher.join(5)
    print("k8s_drain of 33 pods (30 web, 2 db under a PDB, 1 DaemonSet): module %.1f s, task %.1f s, PDB pods "
          "Ready at least %d of 2" % (result.get("duration", -1), result["_wall"], lowest[0]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["cordoned"] is True
    assert len(result["evicted_pods"]) == 32
    assert [(p["name"].split("-")[0], p["kind"]) for p in result["skipped_pods"]] == [("agent", "daemonset")]
    assert lowest[0] >= 1
    left = sim.pods(node="node-a")
    assert [p["metadata"]["name"].split("-")[0] for p in left] == ["agent"]
    wait_for(lambda: len([p for p in sim.pods("app=web") if ready(p)]) == 30, timeout=60,
             what="30 web pods Ready elsewhere")
    wait_for(lambda: len([p for p in sim.pods("app=db") if ready(p)]) == 2, timeout=60,
             what="2 db pods Ready elsewhere")
    assert all(p["spec"]["nodeName"] != "node-a" for p in sim.pods("app in (web,db)") if ready(p))
    assert api.get("/api/v1/nodes/node-a")["spec"].get("unschedulable") is True

    again = sim.module("k8s_drain", name="node-a", ignore_daemonsets=True)
    assert again["changed"] is False and again["evicted_pods"] == []

    uncordon = sim.module("k8s_drain", name="node-a", state="uncordon")
    assert uncordon["changed"] is True and uncordon["cordoned"] is False
    assert not api.get("/api/v1/nodes/node-a")["spec"].get("unschedulable")


def test_unsatisfiable_pdb_times_out_naming_it_and_node_stays_cordoned(sim):
    api = sim.api
    api.request("POST", "/api/v1/nodes", body=node_body("node-d", "10.0.0.31"))
    for name in ("node-a", "node-b", "node-c"):
        sim.cordon(name, True)
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("solo", 1, {"app": "solo"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("solo", {"app": "solo"}, minAvailable=1))
    wait_for(lambda: [p for p in sim.pods("app=solo", node="node-d") if ready(p)], timeout=60,
             what="solo pod Ready on node-d")
    result = sim.module("k8s_drain", name="node-d", ignore_daemonsets=True, timeout=5)
    print("unsatisfiable PDB: failed after %.1f s with: %s" % (result.get("duration", -1), result["msg"]))
    assert result["failed"] is True and result["cordoned"] is True
    assert "blocked by PDB default/solo (disruptionsAllowed=0, currentHealthy=1, desiredHealthy=1" in result["msg"]
    assert "Node node-d is still cordoned" in result["msg"]
    # It retried for the whole timeout: the last attempt is made up to 0.1 s before the deadline so that
    # reading the PDBs and reporting still fit inside `timeout` (k8s_drain.evict_with_retries).
    assert 4.85 <= result["duration"] < 15
    assert result["blocked_pods"][0]["pdbs"][0]["name"] == "solo"
    assert api.get("/api/v1/nodes/node-d")["spec"].get("unschedulable") is True
    assert [p for p in sim.pods("app=solo", node="node-d") if ready(p)]
    for name in ("node-a", "node-b", "node-c", "node-d"):
        sim.cordon(name, False)


def test_check_mode_reports_the_drain_and_changes_nothing(sim):
    """Check mode: what would be cordoned and evicted, a PDB that would block named, and nothing written."""
    api = sim.api
    api.request("POST", "/api/v1/nodes", body=node_body("node-e", "10.0.0.35"))
    for name in ("node-a", "node-b", "node-c", "node-d"):
        sim.cordon(name, True)
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("free", 1, {"app": "free"}))
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("held", 1, {"app": "held"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("held", {"app": "held"}, minAvailable=1))
    wait_for(lambda: len([p for p in sim.pods("app in (free,held)", node="node-e") if ready(p)]) == 2,
             timeout=60, what="the free and held pods Ready on node-e")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in sim.pods("app in (free,held)", node="node-e")}
    pdb_before = api.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/held")

    result = sim.module("k8s_drain", check=True, name="node-e", ignore_daemonsets=True, timeout=20)
    print("k8s_drain check mode: %.1f s, would evict %s, blocked %s" % (
        result["_wall"], [p["name"] for p in result["evicted_pods"]], [p["name"] for p in result["blocked_pods"]]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["cordoned"] is True and result["was_cordoned"] is False
    assert [p["name"].split("-")[0] for p in result["evicted_pods"]] == ["free"]
    assert [p["name"].split("-")[0] for p in result["blocked_pods"]] == ["held"]
    assert result["blocked_pods"][0]["pdbs"][0]["name"] == "held"
    assert any("would be blocked" in w and "held" in w for w in result.get("warnings", [])), result.get("warnings")
    # Nothing happened: not cordoned, the same two pods, not terminating, the PDB status untouched.
    assert not api.get("/api/v1/nodes/node-e")["spec"].get("unschedulable")
    after = sim.pods("app in (free,held)", node="node-e")
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in after} == before
    assert all(ready(p) for p in after)
    pdb_after = api.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/held")
    assert pdb_after["metadata"]["resourceVersion"] == pdb_before["metadata"]["resourceVersion"]
    for name in ("free", "held"):
        api.request("DELETE", "/apis/apps/v1/namespaces/default/replicasets/%s" % name)
    api.request("DELETE", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/held")
    for name in ("node-a", "node-b", "node-c", "node-d"):
        sim.cordon(name, False)


@pytest.fixture
def kubelet_cluster(tmp_path):
    """One replica with the node lifecycle controller on (3 s grace period) and a real kubelet shim process."""
    root = tmp_path / "root"
    with LocalCluster(str(tmp_path / "cluster"), replicas=1, node_monitor_grace_period=3.0).running() as local:
        (root / "etc/kubernetes").mkdir(parents=True)
        (root / "var/lib/kubelet").mkdir(parents=True)
        (root / "etc/kubernetes/kubelet.conf").write_text(Path(local.kubeconfigs[0]).read_text())
        (root / "var/lib/kubelet/kubeadm-flags.env").write_text(
            'KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.51 --hostname-override=node-k"\n')
        env = dict(os.environ, PYTHONPATH=str(KUBESIM), KUBESIM_ROOT=str(root), KUBESIM_VERSION="1.37.1")
        with (tmp_path / "kubelet.log").open("wb") as log:
            kubelet = subprocess.Popen([sys.executable, "-m", "kubesim", "kubelet", "--interval", "0.5",
                                       "--status-interval", "0.5"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                yield local, kubelet
            finally:
                if kubelet.poll() is None:
                    kubelet.kill()
                    kubelet.wait(10)


def test_cluster_health_catches_a_killed_kubelet(kubelet_cluster, run_module):
    local, kubelet = kubelet_cluster
    sim = Sim(local, run_module)
    try:
        base = dict(apiservers=["127.0.0.1:%d" % local.servers[0].port], control_plane_components=[],
                    expect_nodes=["node-k"])
        healthy = sim.module("cluster_health", wait=True, timeout=30, **base)
        assert healthy["healthy"] is True, healthy.get("msg")
        kubelet.send_signal(signal.SIGKILL)
        kubelet.wait(10)
        # The node lifecycle controller marks the node Unknown after its 3 s grace period.
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "Unknown" for c in
                             sim.api.get("/api/v1/nodes/node-k")["status"]["conditions"]), timeout=30,
                 what="node-k Ready=Unknown after the kubelet was killed")
        broken = sim.module("cluster_health", **base)
        print("cluster_health after SIGKILL of the kubelet shim: %s" % broken["msg"])
        assert broken["failed"] is True
        assert re.search(r"node node-k NotReady for \d+ s \(last heartbeat [0-9T:Z-]+, \d+ s ago\): "
                         r"NodeStatusUnknown: Kubelet stopped posting node status\.", broken["msg"]), broken["msg"]
    finally:
        sim.api.close()


def test_cluster_health_catches_kubelet_replica_and_skew(sim, local, tmp_path):
    api = sim.api
    servers = ["127.0.0.1:%d" % server.port for server in local.servers]
    base = dict(apiservers=servers, control_plane_components=[], max_heartbeat_age=3600)
    healthy = sim.module("cluster_health", **base)
    assert healthy["healthy"] is True, healthy.get("msg")
    assert healthy["changed"] is False and len(healthy["apiservers"]) == 3

    # etcd through the collection's etcd health helper (etcdctl against kubesim's real TLS etcd).
    etcd = dict(endpoints=[local.etcd_url], cacert=local.etcd_ca_file, cert=local.etcd_client[0],
                key=local.etcd_client[1])
    with_etcd = sim.module("cluster_health", etcd=etcd, **base)
    assert with_etcd["healthy"] is True, with_etcd.get("msg")
    assert with_etcd["etcd"]["healthy"] is True and with_etcd["etcd"]["member_count"] == 1
    wrong_ca = sim.module("cluster_health", etcd=dict(etcd, cacert=local.ca_file), **base)
    print("cluster_health with etcd and the wrong CA: %s" % wrong_ca["msg"])
    assert wrong_ca["failed"] is True and "etcd %s" % local.etcd_url in wrong_ca["msg"]

    # A stopped kubelet: the node lifecycle controller has marked the node's Ready condition Unknown.
    api.request("POST", "/api/v1/nodes", body=node_body("node-x", "10.0.0.41", ready=False, heartbeat_age=95))
    # Version skew: a kubelet newer than the apiserver (kubesim reports v1.37.1).
    api.request("POST", "/api/v1/nodes", body=node_body("node-y", "10.0.0.42", kubelet="v1.38.0"))
    broken = sim.module("cluster_health", **base)
    assert broken["failed"] is True
    # Created 95 s "old"; ansible-playbook start-up adds a few seconds.
    match = re.search(r"node node-x NotReady for (\d+) s \(last heartbeat [0-9T:Z-]+, (\d+) s ago\): "
                      r"NodeStatusUnknown: Kubelet stopped posting node status\.", broken["msg"])
    assert match and 95 <= int(match.group(1)) < 160, broken["msg"]
    assert "kubelet on node-y is 1.38.0, newer than the oldest kube-apiserver (1.37.1" in broken["msg"]
    for name in ("node-x", "node-y"):
        api.request("DELETE", "/api/v1/nodes/%s" % name)

    # A stopped apiserver replica while the endpoint still answers: the endpoint is a real HAProxy on
    # loopback in front of both replicas, health-checking /readyz as the loadbalancer role configures it.
    with haproxy_endpoint(local, tmp_path) as (kubeconfig, replica_state):
        through_vip = sim.module("cluster_health", kubeconfig=kubeconfig, **base)
        assert through_vip["healthy"] is True, through_vip.get("msg")
        local.servers[1].stop()
        wait_for(lambda: replica_state("a1") == "DOWN", timeout=20, what="HAProxy marking the stopped replica DOWN")
        stopped = sim.module("cluster_health", kubeconfig=kubeconfig, **base)
    print("cluster_health with a stopped replica behind a live endpoint: %s" % stopped["msg"])
    assert stopped["failed"] is True
    assert len(stopped["failures"]) == 1 and stopped["failures"][0].startswith(
        "apiserver https://%s unreachable" % servers[1]), stopped["failures"]
    endpoint = [a for a in stopped["apiservers"] if a["role"] == "endpoint"]
    assert len(endpoint) == 1 and endpoint[0]["ready"] is True, stopped["apiservers"]
    assert [a["ready"] for a in stopped["apiservers"] if a["role"] != "endpoint"] == [True, False]


HAPROXY = """global
    maxconn 200
    stats socket %(socket)s mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend vip
    bind 127.0.0.1:%(port)d
    default_backend apiservers
backend apiservers
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 check check-ssl verify none
%(servers)s
"""


@contextlib.contextmanager
def haproxy_endpoint(local, tmp):
    """HAProxy on a free loopback port over the replicas; yields (kubeconfig path, state-of(server name))."""
    binary = "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("%s is required for this test (make deps installs it)" % binary)
    import socket as socketlib

    from kubesim.testing import free_port, kubeconfig

    port, sock_path = free_port(), str(tmp / "haproxy.sock")
    servers = "\n".join("    server a%d 127.0.0.1:%d" % (i, s.port) for i, s in enumerate(local.servers))
    config = tmp / "haproxy.cfg"
    config.write_text(HAPROXY % dict(socket=sock_path, port=port, servers=servers))
    kubeconfig_path = tmp / "vip.kubeconfig"
    with open(local.ca_file, "rb") as handle:
        kubeconfig_path.write_text(kubeconfig("https://127.0.0.1:%d" % port, handle.read(), *local.admin))
    process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def state(name):
        try:
            with socketlib.socket(socketlib.AF_UNIX) as conn:
                conn.settimeout(2)
                conn.connect(sock_path)
                conn.sendall(b"show stat\n")
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
        except OSError:
            return None
        for line in data.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "apiservers" and fields[1] == name:
                return fields[17]
        return None

    try:
        wait_for(lambda: all(state("a%d" % i) == "UP" for i in range(len(local.servers))), timeout=20,
                 what="HAProxy seeing every replica UP")
        yield str(kubeconfig_path), state
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
