# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_drain and cluster_health, run by ansible-playbook, against a real control plane on loopback.

tests/harness/realapi.py runs etcd 3.6 (TLS), two kube-apiserver replicas, kube-controller-manager (ReplicaSet,
DaemonSet, disruption = PDB status, node lifecycle, ServiceAccount, GC) and kube-scheduler, all real binaries.
There is no kubelet: realapi.FakeKubelet registers the test's Nodes, renews their Leases, reports the pods bound to
them Running/Ready through the status subresource and finishes graceful deletions, which is what a kubelet does
through the API. Everything else (scheduling, evictions and PDB decisions, dry-run, node lifecycle) is the real
Kubernetes code.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import realapi
from realapi import wait_for

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    K8sApiError,
    K8sClient,
)

# The node lifecycle controller marks a Node Unknown after 8 s without a Lease renewal (FakeKubelet renews every
# 2 s, so a busy machine does not make the test nodes flap).
REAL_CLUSTER = dict(replicas=2, controller_manager=True, scheduler=True, node_monitor_grace_period=8)
KUBE_VERSION = realapi.KUBE_VERSION


def replicaset(name, replicas, labels):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                                           "containers": [{"name": name, "image": "registry.invalid/%s:1" % name}]}}}}


def pdb(name, labels, **spec):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"}, "spec": dict(spec, selector={"matchLabels": labels})}


def ready(pod):
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or [])


class Sim:
    def __init__(self, cluster, kubelet, run_module):
        self.cluster = cluster
        self.kubelet = kubelet
        self.run_module = run_module
        self.kubeconfig = cluster.kubeconfigs[0]
        self.api = K8sClient.from_kubeconfig(self.kubeconfig)

    def pods(self, selector=None, node=None):
        query = {"labelSelector": selector}
        if node:
            query["fieldSelector"] = "spec.nodeName=%s" % node
        return self.api.list_all("/api/v1/namespaces/default/pods", query=query)

    def cordon(self, name, value):
        self.api.patch("/api/v1/nodes/%s" % name, {"spec": {"unschedulable": True if value else None}})

    def pdb_settled(self, name, **expected):
        """Wait until the disruption controller has computed the PDB's status for its current pods."""
        def check():
            budget = self.api.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/%s" % name)
            status = budget.get("status") or {}
            return (status.get("observedGeneration") == budget["metadata"]["generation"]
                    and all(status.get(key) == value for key, value in expected.items()) and budget)

        return wait_for(check, timeout=60, what="PDB %s status %s" % (name, expected))

    def module(self, module_name, check=False, **args):
        args.setdefault("kubeconfig", self.kubeconfig)
        return self.run_module(module_name, check=check, **args)


@pytest.fixture(scope="module")
def kubelet(real_cluster):
    client = K8sClient.from_kubeconfig(real_cluster.kubeconfigs[0])
    fake = realapi.FakeKubelet(client).start()
    try:
        yield fake
    finally:
        fake.stop()
        client.close()


@pytest.fixture
def sim(real_cluster, kubelet, run_module):
    sim = Sim(real_cluster, kubelet, run_module)
    yield sim
    sim.api.close()


def test_apiserver_runs_the_products_hardening_flags(real_cluster, tmp_path):
    """The TLS flags the control_plane role sets are real: TLS 1.2 offers only the listed suites, a cipher name
    kube-apiserver does not know stops it at start-up, and profiling is off."""
    server = real_cluster.servers[0]

    def tls12(ciphers):
        context = ssl.create_default_context(cafile=real_cluster.ca_file)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)  # raises here if this OpenSSL cannot offer them at all
        return context

    def handshake(context):
        with socket.create_connection((server.host, server.port), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname=server.host) as tls:
            return tls.version(), tls.cipher()[0]

    assert handshake(tls12("ECDHE-ECDSA-AES128-GCM-SHA256")) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    cbc = tls12("ECDHE-ECDSA-AES128-SHA256")  # CBC: Go implements it, the product's list leaves it out
    with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|handshake failure"):
        handshake(cbc)
    api = K8sClient.from_kubeconfig(real_cluster.kubeconfigs[0])
    try:
        with pytest.raises(K8sApiError) as excinfo:
            api.get("/debug/pprof/", retries=0)
        assert excinfo.value.code == 404
    finally:
        api.close()

    bad = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA255"
    argv = [arg for arg in real_cluster.apiserver_argv("127.0.0.9", realapi.free_port("127.0.0.9"))
            if not arg.startswith("--tls-cipher-suites=")]
    refused = subprocess.run([*argv, "--tls-cipher-suites=%s" % bad], capture_output=True, text=True, timeout=120,
                             check=False)
    print("kube-apiserver with --tls-cipher-suites=%s: exit %d: %s" % (
        bad, refused.returncode, refused.stderr.strip().splitlines()[-1]))
    assert refused.returncode != 0
    assert "Cipher suite %s not supported or doesn't exist" % bad in refused.stderr, refused.stderr[-2000:]


def test_drain_30_pods_with_daemonset_and_pdb(sim):
    api = sim.api
    for name in ("node-a", "node-b", "node-c"):
        sim.kubelet.add_node(name, unschedulable=name != "node-a")
    # Everything starts on node-a: the other nodes are cordoned while the workloads are placed.
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("web", 30, {"app": "web"}))
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("db", 2, {"app": "db"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("db", {"app": "db"}, maxUnavailable=1))
    ds = replicaset("agent", 0, {"app": "agent"})
    ds["kind"] = "DaemonSet"
    ds["spec"].pop("replicas")
    api.request("POST", "/apis/apps/v1/namespaces/default/daemonsets", body=ds)
    wait_for(lambda: len([p for p in sim.pods(node="node-a") if ready(p)]) == 33, timeout=120,
             what="33 pods Ready on node-a")
    sim.pdb_settled("db", currentHealthy=2, disruptionsAllowed=1)
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
        result = sim.module("k8s_drain", name="node-a", ignore_daemonsets=True, wait_timeout=150)
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
    wait_for(lambda: len([p for p in sim.pods("app=web") if ready(p)]) == 30, timeout=120,
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
    for name in ("node-a", "node-b", "node-c"):
        sim.cordon(name, True)
    sim.kubelet.add_node("node-d")
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("solo", 1, {"app": "solo"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("solo", {"app": "solo"}, minAvailable=1))
    wait_for(lambda: [p for p in sim.pods("app=solo", node="node-d") if ready(p)], timeout=60,
             what="solo pod Ready on node-d")
    sim.pdb_settled("solo", currentHealthy=1, disruptionsAllowed=0)
    result = sim.module("k8s_drain", name="node-d", ignore_daemonsets=True, wait_timeout=5)
    print("unsatisfiable PDB: failed after %.1f s with: %s" % (result.get("duration", -1), result["msg"]))
    assert result["failed"] is True and result["cordoned"] is True
    assert "blocked by PDB default/solo (disruptionsAllowed=0, currentHealthy=1, desiredHealthy=1" in result["msg"]
    assert "Node node-d is still cordoned" in result["msg"]
    # It retried for the whole timeout: the last attempt is made up to 0.1 s before the deadline so that
    # reading the PDBs and reporting still fit inside `wait_timeout` (k8s_drain.evict_with_retries).
    assert 4.85 <= result["duration"] < 15
    assert result["blocked_pods"][0]["pdbs"][0]["name"] == "solo"
    assert api.get("/api/v1/nodes/node-d")["spec"].get("unschedulable") is True
    assert [p for p in sim.pods("app=solo", node="node-d") if ready(p)]
    for name in ("node-a", "node-b", "node-c", "node-d"):
        sim.cordon(name, False)


def test_check_mode_reports_the_drain_and_changes_nothing(sim):
    """Check mode: what would be cordoned and evicted, a PDB that would block named, and nothing written. The
    real apiserver answers the module's dry-run evictions (dryRun=All) with its PDB decision."""
    api = sim.api
    for name in ("node-a", "node-b", "node-c", "node-d"):
        sim.cordon(name, True)
    sim.kubelet.add_node("node-e")
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("free", 1, {"app": "free"}))
    api.request("POST", "/apis/apps/v1/namespaces/default/replicasets", body=replicaset("held", 1, {"app": "held"}))
    api.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                body=pdb("held", {"app": "held"}, minAvailable=1))
    wait_for(lambda: len([p for p in sim.pods("app in (free,held)", node="node-e") if ready(p)]) == 2,
             timeout=60, what="the free and held pods Ready on node-e")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in sim.pods("app in (free,held)", node="node-e")}
    pdb_before = sim.pdb_settled("held", currentHealthy=1, disruptionsAllowed=0)

    result = sim.module("k8s_drain", check=True, name="node-e", ignore_daemonsets=True, wait_timeout=20)
    print("k8s_drain check mode: %.1f s, would evict %s, blocked %s" % (
        result["_wall"], [p["name"] for p in result["evicted_pods"]], [p["name"] for p in result["blocked_pods"]]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["cordoned"] is True and result["was_cordoned"] is False
    assert [p["name"].split("-")[0] for p in result["evicted_pods"]] == ["free"]
    assert [p["name"].split("-")[0] for p in result["blocked_pods"]] == ["held"]
    assert result["blocked_pods"][0]["pdbs"][0]["name"] == "held"
    assert any("would be blocked" in w and "held" in w for w in result.get("warnings", [])), result.get("warnings")
    # Nothing happened: not cordoned, the same two pods, not terminating, the PDB untouched.
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


def test_cluster_health_catches_a_stopped_kubelet(sim, real_cluster):
    """A node whose kubelet stops renewing its Lease: the real node lifecycle controller marks it Unknown after
    --node-monitor-grace-period, and cluster_health reports it."""
    api = sim.api
    sim.kubelet.add_node("node-k")
    base = dict(apiservers=[real_cluster.servers[0].url], control_plane_components=[], expect_nodes=["node-k"])
    try:
        healthy = sim.module("cluster_health", wait=True, wait_timeout=30, **base)
        assert healthy["healthy"] is True, healthy.get("msg")
        sim.kubelet.stop_node("node-k")
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "Unknown" for c in
                             api.get("/api/v1/nodes/node-k")["status"]["conditions"]), timeout=60,
                 what="node-k Ready=Unknown after its kubelet stopped")
        broken = sim.module("cluster_health", **base)
        print("cluster_health after node-k's kubelet stopped: %s" % broken["msg"])
        assert broken["failed"] is True
        assert re.search(r"node node-k NotReady for \d+ s \(last heartbeat [0-9T:Z-]+, \d+ s ago\): "
                         r"NodeStatusUnknown: Kubelet stopped posting node status\.", broken["msg"]), broken["msg"]
    finally:
        sim.kubelet.forget_node("node-k")
        with contextlib.suppress(K8sApiError):
            api.request("DELETE", "/api/v1/nodes/node-k")


def test_cluster_health_catches_kubelet_replica_and_skew(sim, real_cluster, tmp_path):
    api = sim.api
    servers = ["%s:%d" % (server.host, server.port) for server in real_cluster.servers]
    base = dict(apiservers=servers, control_plane_components=[], max_heartbeat_age=3600)
    healthy = sim.module("cluster_health", **base)
    assert healthy["healthy"] is True, healthy.get("msg")
    assert healthy["changed"] is False and len(healthy["apiservers"]) == 3

    # etcd through the collection's etcd health helper (the real etcdctl 3.6 against the real TLS etcd).
    etcd = dict(endpoints=[real_cluster.etcd_url], cacert=real_cluster.etcd_ca_file, cert=real_cluster.etcd_client[0],
                key=real_cluster.etcd_client[1], etcdctl=realapi.etcd_binary("etcdctl"))
    with_etcd = sim.module("cluster_health", etcd=etcd, **base)
    assert with_etcd["healthy"] is True, with_etcd.get("msg")
    assert with_etcd["etcd"]["healthy"] is True and with_etcd["etcd"]["member_count"] == 1
    wrong_ca = sim.module("cluster_health", etcd=dict(etcd, cacert=real_cluster.ca_file), **base)
    print("cluster_health with etcd and the wrong CA: %s" % wrong_ca["msg"])
    assert wrong_ca["failed"] is True and "etcd %s" % real_cluster.etcd_url in wrong_ca["msg"]

    # A node whose Ready condition went Unknown 95 s ago (registered so, with no Lease), and version skew: a
    # kubelet newer than the apiservers (a heartbeating node that reports v1.38.0).
    api.request("POST", "/api/v1/nodes",
                body=realapi.node_body("node-x", "10.0.0.41", ready=False, heartbeat_age=95))
    sim.kubelet.add_node("node-y", kubelet="v1.38.0")
    try:
        broken = sim.module("cluster_health", **base)
    finally:
        sim.kubelet.forget_node("node-y")
        for name in ("node-x", "node-y"):
            api.request("DELETE", "/api/v1/nodes/%s" % name)
    assert broken["failed"] is True
    # Registered 95 s "old"; ansible-playbook start-up adds a few seconds.
    match = re.search(r"node node-x NotReady for (\d+) s \(last heartbeat [0-9T:Z-]+, (\d+) s ago\): "
                      r"NodeStatusUnknown: Kubelet stopped posting node status\.", broken["msg"])
    assert match and 95 <= int(match.group(1)) < 160, broken["msg"]
    assert "kubelet on node-y is 1.38.0, newer than the oldest kube-apiserver (%s" % KUBE_VERSION in broken["msg"]

    # A stopped apiserver replica while the endpoint still answers: the endpoint is a real HAProxy on
    # loopback in front of both replicas, health-checking /readyz as the loadbalancer role configures it.
    with haproxy_endpoint(real_cluster, tmp_path) as (kubeconfig, replica_state):
        through_vip = sim.module("cluster_health", kubeconfig=kubeconfig, **base)
        assert through_vip["healthy"] is True, through_vip.get("msg")
        real_cluster.stop_replica(1)
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
def haproxy_endpoint(cluster, tmp):
    """HAProxy on a free loopback port over the replicas; yields (kubeconfig path, state-of(server name)).

    The real apiserver lets anonymous requests read /readyz (system:public-info-viewer), which HAProxy's check
    relies on, as in production."""
    binary = "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("%s is required for this test (make deps installs it)" % binary)

    port, sock_path = realapi.free_port(), str(tmp / "haproxy.sock")
    servers = "\n".join("    server a%d %s:%d" % (i, s.host, s.port) for i, s in enumerate(cluster.servers))
    config = tmp / "haproxy.cfg"
    config.write_text(HAPROXY % dict(socket=sock_path, port=port, servers=servers))
    kubeconfig_path = tmp / "vip.kubeconfig"
    kubeconfig_path.write_text(realapi.kubeconfig("https://127.0.0.1:%d" % port, cluster.ca_pem, *cluster.admin))
    process = realapi.Process("haproxy", [binary, "-db", "-f", str(config)], tmp / "haproxy.log")

    def state(name):
        try:
            with socket.socket(socket.AF_UNIX) as conn:
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
        wait_for(lambda: all(state("a%d" % i) == "UP" for i in range(len(cluster.servers))), timeout=20,
                 what="HAProxy seeing every replica UP")
        yield str(kubeconfig_path), state
    finally:
        process.stop()
