# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the cluster_health module against an in-memory apiserver (mocked at K8sClient._transport)."""

from __future__ import annotations

import re
import time

import pytest

from ansible_collections.baremetal.kubernetes.plugins.modules import cluster_health
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.k8s_fake import (
    FakeCluster,
    install_fake_apiserver,
)
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import deprecated_aliases, run_module

VIP = "https://vip.example:8443"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
DISK_PRESSURE = {"type": "DiskPressure", "status": "True", "message": "ephemeral storage low"}


def static_pod(component, node, version="v1.34.2", ready=True, waiting=None, restarts=0):
    container = {"name": component, "ready": ready, "restartCount": restarts,
                 "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    return {"metadata": {"name": "%s-%s" % (component, node), "namespace": "kube-system",
                         "labels": {"component": component, "tier": "control-plane"},
                         "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": node, "containers": [{"name": component,
                                                       "image": "registry.k8s.io/%s:%s" % (component, version)}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [container]}}


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    fake = FakeCluster()
    for name in ("cp1", "cp2", "cp3"):
        fake.add_node(name, control_plane=True)
        fake.pods += [static_pod(component, name) for component in COMPONENTS]
    fake.add_node("w1")
    fake.add_node("w2")
    fake.sleeps = []
    monkeypatch.setattr(cluster_health.HealthCheck, "sleep", staticmethod(fake.sleeps.append))
    return install_fake_apiserver(monkeypatch, tmp_path, fake)


def run(cluster, **args):
    return run_module(cluster_health.main, dict(args, kubeconfig=cluster.kubeconfig))


def test_healthy_cluster(cluster):
    outcome, result = run(cluster, expect_nodes=["cp1", "cp2", "cp3", "w1", "w2"],
                          expect_version={"control_plane": "1.34.2", "workers": "1.34.2"})
    assert outcome == "exit", result.get("msg")
    assert result["healthy"] is True and result["changed"] is False and result["failures"] == []
    direct = ["https://10.0.0.%d:6443" % i for i in (11, 12, 13)]
    assert [a["endpoint"] for a in result["apiservers"]] == [VIP, *direct]
    assert all(a["ready"] and a["live"] and a["version"] == "v1.34.2" for a in result["apiservers"])
    assert len(result["nodes"]) == 5 and len(result["control_plane_pods"]) == 9
    kinds = {c["check"] for c in result["checks"]}
    assert kinds >= {"endpoint", "apiserver", "node", "static-pod", "expect-nodes", "expect-version", "version-skew"}
    for path in ("/readyz?verbose", "/livez?verbose"):
        assert cluster.calls("GET", "10.0.0.12:6443" + path)
    assert result["attempts"] == 1


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(lambda c: c.add_node("w2", ready=False, heartbeat_age=97, not_ready_since=time.time() - 95),
                     "node w2 NotReady for 9", id="stopped-kubelet"),
        pytest.param(lambda c: c.health.update({"https://10.0.0.12:6443": {"readyz": "down"}}),
                     "apiserver https://10.0.0.12:6443 (node cp2) unreachable: [Errno 111] Connection refused",
                     id="stopped-apiserver-replica"),
        pytest.param(lambda c: c.health.update({"https://10.0.0.13:6443": {
            "readyz": (500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed")}}),
            "apiserver https://10.0.0.13:6443 (node cp3) not ready (readyz HTTP 500: failed etcd failed: reason "
            "withheld)", id="apiserver-not-ready"),
        pytest.param(lambda c: c.health.update({VIP: {"readyz": "down"}}),
                     "cluster endpoint https://vip.example:8443 unreachable", id="vip-down"),
        pytest.param(lambda c: c.add_node("w1", kubelet="v1.30.4"),
                     "kubelet on w1 is 1.30.4, 4 minor versions older than the oldest kube-apiserver (1.34.2 on cp1); "
                     "at most 3 allowed", id="kubelet-too-old"),
        pytest.param(lambda c: c.add_node("w1", kubelet="v1.35.0"),
                     "kubelet on w1 is 1.35.0, newer than the oldest kube-apiserver", id="kubelet-newer"),
        pytest.param(lambda c: c.health.update({"https://10.0.0.11:6443": {"version": "v1.33.1"}}),
                     "kube-controller-manager kube-controller-manager-cp1 is 1.34.2, newer than the oldest "
                     "kube-apiserver (1.33.1 on cp1)", id="controller-manager-newer-than-apiserver"),
        pytest.param(lambda c: c.add_node("w1", heartbeat_age=300),
                     "node w1 is Ready but its last heartbeat ", id="stale-heartbeat"),
        pytest.param(lambda c: c.add_node("w1", conditions=[DISK_PRESSURE]),
                     "node w1 has DiskPressure: ephemeral storage low", id="disk-pressure"),
        pytest.param(lambda c: c.pods.__setitem__(1, static_pod("kube-controller-manager", "cp1", ready=False,
                                                                waiting="CrashLoopBackOff", restarts=7)),
                     "kube-controller-manager-cp1 on cp1 not Ready: phase Running, container kube-controller-manager "
                     "waiting (CrashLoopBackOff), 7 restarts", id="static-pod-crashloop"),
        pytest.param(lambda c: c.pods.pop(8),
                     "control-plane node cp3 has no kube-scheduler static pod in kube-system", id="static-pod-missing"),
    ],
)
def test_each_failure_has_a_precise_message(cluster, breakage, expected):
    breakage(cluster)
    outcome, result = run(cluster)
    assert outcome == "fail"
    assert expected in result["msg"], result["msg"]
    assert result["healthy"] is False and result["changed"] is False
    assert any(expected in f for f in result["failures"])
    assert result["msg"].startswith("the cluster is not healthy after 1 attempt(s)")


def test_not_ready_message_includes_the_kubelet_reason(cluster):
    cluster.add_node("w2", ready=False, heartbeat_age=97, not_ready_since=time.time() - 95)
    _outcome, result = run(cluster)
    line = next(f for f in result["failures"] if f.startswith("node w2"))
    # Kubernetes timestamps have whole seconds, so 95 s may read as 96 s.
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.match(r"node w2 NotReady for 9[56] s \(last heartbeat %s, 9[78] s ago\)" % stamp, line)
    assert line.endswith("s ago): NodeStatusUnknown: Kubelet stopped posting node status.")
    assert next(n for n in result["nodes"] if n["name"] == "w2")["not_ready_for"] in (95, 96)


def test_vip_down_reads_through_a_listed_apiserver(cluster):
    cluster.health[VIP] = {"readyz": "down"}
    outcome, result = run(cluster, apiservers=["10.0.0.11", "10.0.0.12:6443"], fail_on_unhealthy=False)
    assert outcome == "exit"
    assert result["failures"] == ["cluster endpoint %s unreachable: [Errno 111] Connection refused" % VIP]
    assert len(result["nodes"]) == 5
    assert cluster.calls("GET", "https://10.0.0.11:6443/api/v1/nodes")


@pytest.mark.parametrize(
    "args, expected",
    [
        pytest.param({"expect_nodes": ["cp1", "w3"]}, "node w3 is expected (expect_nodes) but not registered",
                     id="missing-node"),
        pytest.param({"expect_version": {"workers": "1.34.3"}},
                     "kubelet on w1 is 1.34.2, expected 1.34.3 (expect_version.workers, workers)", id="worker-version"),
        pytest.param({"expect_version": {"control_plane": "1.35.0"}},
                     "kube-apiserver cp2 is 1.34.2, expected 1.35.0 (expect_version.control_plane", id="cp-version"),
        pytest.param({"max_version_skew": 0, "expect_nodes": []}, None, id="skew-0-all-equal-is-fine"),
    ],
)
def test_assertions(cluster, args, expected):
    outcome, result = run(cluster, **args)
    if expected is None:
        assert outcome == "exit", result.get("msg")
    else:
        assert outcome == "fail" and expected in result["msg"], result.get("msg")


def test_max_version_skew_tightens_the_kubelet_window(cluster):
    cluster.add_node("w1", kubelet="v1.33.0")
    assert run(cluster)[0] == "exit"
    outcome, result = run(cluster, max_version_skew=0)
    assert outcome == "fail" and "kubelet on w1 is 1.33.0, 1 minor versions older" in result["msg"]


def test_cordoned_node_is_reported_and_fails_only_when_required(cluster):
    cluster.nodes["w1"]["spec"]["unschedulable"] = True
    outcome, result = run(cluster)
    assert outcome == "exit"
    assert any(c["check"] == "schedulable" and c["ok"] for c in result["checks"])
    outcome, result = run(cluster, require_schedulable=True)
    assert outcome == "fail" and "node w1 is cordoned (unschedulable)" in result["msg"]


def test_wait_polls_until_healthy(cluster, monkeypatch):
    cluster.add_node("w2", ready=False, not_ready_since=time.time() - 10)
    calls = []

    def heal(seconds):
        calls.append(seconds)
        if len(calls) == 2:
            cluster.add_node("w2")

    monkeypatch.setattr(cluster_health.HealthCheck, "sleep", staticmethod(heal))
    outcome, result = run(cluster, wait=True, wait_timeout=60, wait_sleep=3)
    assert outcome == "exit", result.get("msg")
    assert result["attempts"] == 3 and calls == [3, 3] and result["healthy"] is True
    assert "deprecations" not in result


def test_wait_gives_up_at_the_timeout(cluster):
    cluster.add_node("w2", ready=False)
    outcome, result = run(cluster, wait=True, wait_timeout=0, wait_sleep=1)
    assert outcome == "fail" and result["attempts"] == 1 and cluster.sleeps == []


def test_old_option_names_are_deprecated_aliases(cluster, monkeypatch):
    cluster.add_node("w2", ready=False)
    outcome, result = run(cluster, wait=True, timeout=0, poll_interval=1)
    assert outcome == "fail" and result["attempts"] == 1 and cluster.sleeps == []
    assert deprecated_aliases(result) == {"timeout": ("1.0.0", "baremetal.kubernetes"),
                                          "poll_interval": ("1.0.0", "baremetal.kubernetes")}
    calls = []

    def heal(seconds):
        calls.append(seconds)
        cluster.add_node("w2")

    monkeypatch.setattr(cluster_health.HealthCheck, "sleep", staticmethod(heal))
    outcome, result = run(cluster, wait=True, timeout=60, poll_interval=7)
    assert outcome == "exit" and calls == [7] and result["attempts"] == 2


def test_report_only(cluster):
    cluster.add_node("w2", ready=False)
    outcome, result = run(cluster, fail_on_unhealthy=False)
    assert outcome == "exit" and result["healthy"] is False and result["changed"] is False


def test_etcd_is_delegated_to_the_etcd_helper(cluster, monkeypatch):
    seen = {}

    class FakeCtl:
        def __init__(self, module):
            seen["params"] = module.params

    def fake_collect(ctl, endpoints):
        seen["endpoints"] = endpoints
        return dict(healthy=False, healthy_count=2, member_count=3,
                    problems=["https://10.0.0.13:2379: member has no leader (lost quorum or still electing)"])

    monkeypatch.setattr(cluster_health, "EtcdCtl", FakeCtl)
    monkeypatch.setattr(cluster_health, "collect_health", fake_collect)
    outcome, result = run(cluster, etcd={"endpoints": ["https://10.0.0.11:2379", "https://10.0.0.13:2379"]})
    assert outcome == "fail"
    assert "etcd https://10.0.0.13:2379: member has no leader" in result["msg"]
    assert seen["endpoints"] == ["https://10.0.0.11:2379", "https://10.0.0.13:2379"]
    assert seen["params"]["cacert"] == "/etc/etcd/pki/ca.crt" and seen["params"]["command_timeout"] == 5
    assert result["etcd"]["member_count"] == 3


def test_etcd_helper_error_is_a_failed_check(cluster, monkeypatch):
    def broken(_module):
        raise RuntimeError("etcdctl not found (etcdctl): install it or set the etcdctl option")

    monkeypatch.setattr(cluster_health, "EtcdCtl", broken)
    outcome, result = run(cluster, etcd={"endpoints": ["https://10.0.0.11:2379"]})
    assert outcome == "fail" and "etcd health check could not run: etcdctl not found" in result["msg"]


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"max_version_skew": 4}, "max_version_skew must be between 0 and 3"),
        ({"max_version_skew": -1}, "max_version_skew must be between 0 and 3"),
        ({"expect_version": {"workers": "1.34"}}, "expect_version.workers must be a version like 1.34.2"),
        ({"wait_sleep": 0}, "wait_sleep must be at least 1 second"),
        ({"wait_timeout": -1}, "wait_timeout must be at least 0"),
    ],
)
def test_bad_arguments(cluster, args, needle):
    outcome, result = run(cluster, **args)
    assert outcome == "fail" and needle in result["msg"] and not cluster.requests


def test_missing_kubeconfig_is_a_clear_error(cluster, tmp_path):
    cluster.kubeconfig = str(tmp_path / "nope.conf")
    outcome, result = run(cluster)
    assert outcome == "fail" and "cannot read kubeconfig" in result["msg"] and result["changed"] is False
