# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the k8s_drain module against an in-memory apiserver (mocked at K8sClient._transport)."""

from __future__ import annotations

import time

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sClient
from ansible_collections.baremetal.kubernetes.plugins.modules import k8s_drain
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.k8s_fake import (
    FakeCluster,
    install_fake_apiserver,
    make_pdb,
    make_pod,
    status,
)
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import deprecated_aliases, run_module


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    fake = FakeCluster()
    fake.add_node("w1")
    fake.add_node("w2")
    # Fast backoff and polling so the retry and timeout paths take a second, not minutes.
    monkeypatch.setattr(k8s_drain, "EVICTION_BACKOFF", 0.02)
    monkeypatch.setattr(k8s_drain, "EVICTION_BACKOFF_MAX", 0.1)
    monkeypatch.setattr(k8s_drain, "WAIT_POLL", 0.01)
    monkeypatch.setattr(k8s_drain, "WAIT_POLL_MAX", 0.02)
    return install_fake_apiserver(monkeypatch, tmp_path, fake)


def run(cluster, check_mode=False, **args):
    args.setdefault("name", "w1")
    return run_module(k8s_drain.main, dict(args, kubeconfig=cluster.kubeconfig), check_mode=check_mode)


def names(entries):
    return sorted(e["name"] for e in entries)


# ---------------------------------------------------------------------------------------------
# classification (pure)

NOW = 1_800_000_000.0
BASE = dict(ignore_daemonsets=False, delete_emptydir_data=False, force=False, skip_wait_for_delete_timeout=0)
EMPTYDIR = [{"name": "scratch", "emptyDir": {}}]
MIRROR = {"kubernetes.io/config.mirror": "abc"}


@pytest.mark.parametrize(
    "pod, params, expected",
    [
        pytest.param(make_pod("web"), {}, ("normal", "evict"), id="replicaset-pod"),
        pytest.param(make_pod("etcd-cp1", owner="Node", annotations=MIRROR), {}, ("mirror", "skip"), id="mirror"),
        pytest.param(make_pod("etcd-cp1", owner=None, annotations=MIRROR), {"force": True}, ("mirror", "skip"),
                     id="mirror-even-with-force"),
        pytest.param(make_pod("proxy", owner="DaemonSet"), {}, ("daemonset", "refuse"), id="daemonset-refused"),
        pytest.param(make_pod("proxy", owner="DaemonSet"), {"ignore_daemonsets": True}, ("daemonset", "skip"),
                     id="daemonset-ignored"),
        pytest.param(make_pod("bare", owner=None), {}, ("unmanaged", "refuse"), id="unmanaged-refused"),
        pytest.param(make_pod("bare", owner=None), {"force": True}, ("unmanaged", "evict"), id="unmanaged-forced"),
        pytest.param(make_pod("cache", volumes=EMPTYDIR), {}, ("emptydir", "refuse"), id="emptydir-refused"),
        pytest.param(make_pod("cache", volumes=EMPTYDIR), {"delete_emptydir_data": True}, ("emptydir", "evict"),
                     id="emptydir-allowed"),
        pytest.param(make_pod("cache", volumes=[{"name": "cfg", "configMap": {"name": "x"}}]), {},
                     ("normal", "evict"), id="configmap-volume-is-not-local-data"),
        pytest.param(make_pod("both", owner=None, volumes=EMPTYDIR), {"force": True}, ("unmanaged", "refuse"),
                     id="unmanaged-emptydir-needs-both-flags"),
        pytest.param(make_pod("both", owner=None, volumes=EMPTYDIR), {"force": True, "delete_emptydir_data": True},
                     ("unmanaged", "evict"), id="unmanaged-emptydir-both-flags"),
        pytest.param(make_pod("job", owner=None, volumes=EMPTYDIR, phase="Succeeded"), {}, ("finished", "evict"),
                     id="finished-pods-always-go"),
        pytest.param(make_pod("job", owner=None, phase="Failed"), {}, ("finished", "evict"), id="failed-pod"),
        pytest.param(make_pod("old", deletion=NOW - 100), {"skip_wait_for_delete_timeout": 60},
                     ("terminating", "skip"), id="stuck-terminating-skipped"),
        pytest.param(make_pod("old", deletion=NOW - 10), {"skip_wait_for_delete_timeout": 60},
                     ("terminating", "evict"), id="recently-terminating-waited-for"),
        pytest.param(make_pod("old", owner=None, deletion=NOW - 10), {}, ("terminating", "evict"),
                     id="terminating-unmanaged-needs-no-force"),
    ],
)
def test_classify(pod, params, expected):
    kind, action, reason = k8s_drain.classify(pod, dict(BASE, **params), NOW)
    assert (kind, action) == expected
    assert reason


def test_classify_reason_names_the_option():
    _kind, _action, reason = k8s_drain.classify(make_pod("proxy", owner="DaemonSet"), BASE, NOW)
    assert "ignore_daemonsets=true" in reason
    _kind, _action, reason = k8s_drain.classify(make_pod("b", owner=None, volumes=EMPTYDIR), BASE, NOW)
    assert "force=true" in reason and "delete_emptydir_data=true" in reason and "scratch" in reason


# ---------------------------------------------------------------------------------------------
# drain


def test_refuses_up_front_listing_every_offending_pod_without_cordoning(cluster):
    cluster.pods += [make_pod("proxy-a", owner="DaemonSet"), make_pod("bare", owner=None),
                     make_pod("cache", volumes=EMPTYDIR), make_pod("web")]
    outcome, result = run(cluster)
    assert outcome == "fail"
    assert "3 pod(s) cannot be evicted" in result["msg"]
    for needle in ("default/proxy-a", "default/bare", "default/cache", "nothing was changed: node w1 is not cordoned"):
        assert needle in result["msg"]
    assert names(result["refused_pods"]) == ["bare", "cache", "proxy-a"]
    assert result["cordoned"] is False
    assert not cluster.calls("PATCH") and not cluster.calls("POST")


def test_drain_evicts_skips_and_cordons_first(cluster):
    cluster.pods += [make_pod("web-%d" % i) for i in range(5)]
    cluster.pods += [make_pod("proxy-a", owner="DaemonSet"), make_pod("kube-apiserver-w1", owner="Node",
                                                                      annotations=MIRROR)]
    cluster.pods.append(make_pod("other", node="w2"))
    outcome, result = run(cluster, ignore_daemonsets=True, grace_period=7)
    assert outcome == "exit", result.get("msg")
    assert result["changed"] is True and result["cordoned"] is True and result["was_cordoned"] is False
    assert names(result["evicted_pods"]) == ["web-%d" % i for i in range(5)]
    skipped = {(s["name"], s["kind"]) for s in result["skipped_pods"]}
    assert skipped == {("proxy-a", "daemonset"), ("kube-apiserver-w1", "mirror")}
    assert result["blocked_pods"] == [] and result["failed_pods"] == []
    assert isinstance(result["duration"], float)
    patch_at = next(e[2] for e in cluster.events if e[0] == "patch")
    assert all(e[4] >= patch_at for e in cluster.events if e[0] == "evict")
    body = cluster.calls("POST", "/eviction")[0][2]
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["deleteOptions"]["gracePeriodSeconds"] == 7
    assert body["deleteOptions"]["preconditions"]["uid"].startswith("uid-web-")
    assert [p["metadata"]["name"] for p in cluster.pods] == ["proxy-a", "kube-apiserver-w1", "other"]


@pytest.mark.parametrize(
    "unschedulable, pods, expected_changed",
    [
        pytest.param(True, [], False, id="cordoned-and-empty"),
        pytest.param(True, [make_pod("proxy-a", owner="DaemonSet")], False, id="cordoned-only-daemonsets"),
        pytest.param(False, [], True, id="empty-but-not-cordoned"),
        pytest.param(True, [make_pod("web")], True, id="cordoned-with-a-pod"),
    ],
)
def test_changed_is_honest(cluster, unschedulable, pods, expected_changed):
    cluster.nodes["w1"]["spec"]["unschedulable"] = unschedulable
    cluster.pods += pods
    outcome, result = run(cluster, ignore_daemonsets=True)
    assert outcome == "exit", result.get("msg")
    assert result["changed"] is expected_changed
    assert bool(cluster.calls("PATCH")) is (not unschedulable)


def test_429_is_retried_while_other_evictions_proceed(cluster):
    cluster.pods += [make_pod("db-0", labels={"app": "db"}), make_pod("web-1"), make_pod("web-2")]
    cluster.eviction_script["db-0"] = [429, 429, 429, 201]
    # db-0 is refused at least until both web pods are evicted: a drain that waited for db-0 before evicting
    # the others would time out here. No clock decides it.
    cluster.eviction_after["db-0"] = {"web-1", "web-2"}
    outcome, result = run(cluster, wait_timeout=20)
    assert outcome == "exit", result.get("msg")
    assert names(result["evicted_pods"]) == ["db-0", "web-1", "web-2"]
    db_attempts = [e for e in cluster.events if e[0] == "evict" and e[1] == "db-0"]
    codes = [e[2] for e in db_attempts]
    assert len(codes) >= 4 and set(codes[:-1]) == {429} and codes[-1] == 201, codes
    # Backoff grows between attempts: each wait at least the step (0.02 s doubling to the 0.1 s cap here).
    # Lower bounds only; a loaded machine makes the gaps longer, never shorter.
    gaps = [b[4] - a[4] for a, b in zip(db_attempts, db_attempts[1:])]
    steps = [min(0.1, 0.02 * 2 ** i) for i in range(len(gaps))]
    assert all(gap >= 0.95 * step for gap, step in zip(gaps, steps)), list(zip(gaps, steps))


def test_timeout_names_the_blocking_pdb_and_reports_the_node_cordoned(cluster):
    cluster.pods += [make_pod("db-0", labels={"app": "db"}), make_pod("web-1", labels={"app": "web"})]
    cluster.pdbs += [make_pdb("db", {"app": "db"}, disruptions_allowed=0, current=1, desired=2, expected=2),
                     make_pdb("web", {"app": "web"}, disruptions_allowed=1)]
    cluster.eviction_script["db-0"] = [429]
    started = time.monotonic()
    outcome, result = run(cluster, wait_timeout=1)
    elapsed = time.monotonic() - started
    assert outcome == "fail"
    assert 0.8 < elapsed < 5
    msg = result["msg"]
    assert "default/db-0 blocked by PDB default/db (disruptionsAllowed=0, currentHealthy=1, desiredHealthy=2, " \
           "expectedPods=2)" in msg
    assert "Node w1 is still cordoned" in msg
    assert result["cordoned"] is True
    assert names(result["evicted_pods"]) == ["web-1"]
    blocked = result["blocked_pods"][0]
    assert blocked["name"] == "db-0" and blocked["attempts"] > 3
    assert blocked["pdbs"] == [dict(namespace="default", name="db", disruptions_allowed=0, current_healthy=1,
                                    desired_healthy=2, expected_pods=2, max_unavailable=1)]
    assert "needs 2 healthy pods" in blocked["causes"][0]


def test_check_mode_validates_with_dry_run_and_reports_blocks(cluster, monkeypatch):
    warnings = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    cluster.pods += [make_pod("db-0", labels={"app": "db"}), make_pod("web-1"), make_pod("proxy", owner="DaemonSet")]
    cluster.pdbs.append(make_pdb("db", {"app": "db"}))
    cluster.eviction_script["db-0"] = [429]
    outcome, result = run(cluster, check_mode=True, ignore_daemonsets=True)
    assert outcome == "exit", result.get("msg")
    assert result["changed"] is True and result["cordoned"] is True and result["was_cordoned"] is False
    assert names(result["evicted_pods"]) == ["web-1"]
    assert names(result["blocked_pods"]) == ["db-0"]
    assert result["blocked_pods"][0]["pdbs"][0]["name"] == "db"
    assert any("would be blocked right now: default/db-0 blocked by PDB default/db" in w for w in warnings)
    assert not cluster.calls("PATCH")
    evictions = cluster.calls("POST", "/eviction")
    assert len(evictions) == 2
    assert all("dryRun=All" in url and body["deleteOptions"]["dryRun"] == ["All"] for _m, url, body in evictions)
    assert len(cluster.pods) == 3 and "unschedulable" not in cluster.nodes["w1"]["spec"]


def test_check_mode_already_cordoned_and_empty_is_not_changed(cluster):
    cluster.nodes["w1"]["spec"]["unschedulable"] = True
    outcome, result = run(cluster, check_mode=True)
    assert outcome == "exit" and result["changed"] is False and result["evicted_pods"] == []


def test_check_mode_refusal_is_reported_before_anything(cluster):
    cluster.pods.append(make_pod("bare", owner=None))
    outcome, result = run(cluster, check_mode=True)
    assert outcome == "fail" and "default/bare" in result["msg"] and not cluster.calls("POST")


def test_waits_until_evicted_pods_are_gone_or_replaced(cluster):
    cluster.pods += [make_pod("slow"), make_pod("sts-0")]
    cluster.linger["slow"] = 5
    cluster.replace_with_new_uid.add("sts-0")  # same name, new UID: the evicted pod is gone
    outcome, result = run(cluster)
    assert outcome == "exit", result.get("msg")
    assert names(result["evicted_pods"]) == ["slow", "sts-0"]
    assert len(cluster.calls("GET", "fieldSelector=spec.nodeName")) >= 6


def test_pod_not_gone_before_timeout_fails(cluster):
    cluster.pods.append(make_pod("stuck"))
    cluster.linger["stuck"] = 10**6
    outcome, result = run(cluster, wait_timeout=1)
    assert outcome == "fail"
    assert "still on the node when the timeout expired" in result["msg"] and "still cordoned" in result["msg"]
    assert names(result["failed_pods"]) == ["stuck"]


def test_skip_wait_for_delete_timeout_stops_waiting_for_stuck_pods(cluster):
    stuck = make_pod("stuck", deletion=time.time() - 120)
    cluster.pods += [stuck, make_pod("web")]
    outcome, result = run(cluster, skip_wait_for_delete_timeout=60)
    assert outcome == "exit", result.get("msg")
    assert [s["name"] for s in result["skipped_pods"]] == ["stuck"]
    assert names(result["evicted_pods"]) == ["web"]


def test_disable_eviction_deletes(cluster):
    cluster.pods.append(make_pod("web"))
    outcome, result = run(cluster, disable_eviction=True, grace_period=0)
    assert outcome == "exit", result.get("msg")
    delete = cluster.calls("DELETE")
    assert len(delete) == 1 and delete[0][2]["gracePeriodSeconds"] == 0 and not cluster.calls("POST")


def test_pod_selector_limits_the_pods(cluster):
    cluster.pods += [make_pod("web", labels={"app": "web"}), make_pod("db", labels={"app": "db"})]
    outcome, result = run(cluster, pod_selector="app=web")
    assert outcome == "exit" and names(result["evicted_pods"]) == ["web"]
    assert [p["metadata"]["name"] for p in cluster.pods] == ["db"]


def test_other_eviction_error_fails_and_says_cordoned(cluster):
    cluster.pods += [make_pod("web"), make_pod("odd")]
    cluster.eviction_script["odd"] = [403]
    outcome, result = run(cluster)
    assert outcome == "fail"
    assert "scripted failure 403" in result["msg"] and "still cordoned" in result["msg"]
    assert names(result["evicted_pods"]) == ["web"] and names(result["failed_pods"]) == ["odd"]


def test_already_gone_pod_is_skipped_not_failed(cluster):
    cluster.pods.append(make_pod("web"))
    cluster.eviction_script["web"] = [404]
    outcome, result = run(cluster)
    assert outcome == "exit"
    assert result["skipped_pods"][0]["reason"].startswith("already gone")


def test_pod_scheduled_between_list_and_cordon_is_refused_with_node_cordoned(cluster, monkeypatch):
    cluster.pods.append(make_pod("web"))
    original = k8s_drain.Drainer.set_unschedulable

    def cordon_then_race(self, value, owner=None):
        original(self, value, owner=owner)
        cluster.pods.append(make_pod("late", owner=None))

    monkeypatch.setattr(k8s_drain.Drainer, "set_unschedulable", cordon_then_race)
    outcome, result = run(cluster)
    assert outcome == "fail"
    assert "node w1 is still cordoned (this task cordoned it)" in result["msg"] and result["cordoned"] is True


def test_unexpected_error_after_cordon_still_reports_the_node_cordoned(cluster, monkeypatch):
    cluster.pods.append(make_pod("web"))

    def broken(self, to_evict, dry_run=False):
        raise KeyError("metadata")

    monkeypatch.setattr(k8s_drain.Drainer, "evict_all", broken)
    outcome, result = run(cluster)
    assert outcome == "fail" and result["cordoned"] is True
    assert "failed unexpectedly: KeyError" in result["msg"] and "Node w1 is still cordoned" in result["msg"]


def test_api_error_after_cordon_reports_the_node_cordoned(cluster, monkeypatch):
    cluster.pods.append(make_pod("web"))
    transport = cluster.transport_method()
    lists = []

    def forbidden_second_list(client, method, url, data, headers, timeout):
        if "fieldSelector" in url:
            lists.append(url)
            if len(lists) == 2:
                return status(403, "Forbidden", 'pods is forbidden: User "x" cannot list resource "pods"')
        return transport(client, method, url, data, headers, timeout)

    monkeypatch.setattr(K8sClient, "_transport", forbidden_second_list)
    outcome, result = run(cluster)
    assert outcome == "fail" and result["cordoned"] is True
    assert "HTTP 403 Forbidden" in result["msg"] and "Node w1 is still cordoned" in result["msg"]


# ---------------------------------------------------------------------------------------------
# cordon / uncordon


@pytest.mark.parametrize(
    "state, initially, changed, final",
    [
        pytest.param("cordon", False, True, True, id="cordon"),
        pytest.param("cordon", True, False, True, id="cordon-again"),
        pytest.param("uncordon", True, True, False, id="uncordon"),
        pytest.param("uncordon", False, False, False, id="uncordon-again"),
    ],
)
def test_cordon_uncordon(cluster, state, initially, changed, final):
    if initially:
        cluster.nodes["w1"]["spec"]["unschedulable"] = True
    cluster.pods.append(make_pod("web"))
    outcome, result = run(cluster, state=state, _ansible_diff=True)
    assert outcome == "exit"
    assert result["changed"] is changed and result["cordoned"] is final
    assert bool(cluster.nodes["w1"]["spec"].get("unschedulable")) is final
    assert result["diff"] == dict(before=dict(unschedulable=initially), after=dict(unschedulable=final))
    assert len(cluster.pods) == 1  # cordon/uncordon never evict


def test_uncordon_check_mode_changes_nothing(cluster):
    cluster.nodes["w1"]["spec"]["unschedulable"] = True
    outcome, result = run(cluster, state="uncordon", check_mode=True)
    assert outcome == "exit" and result["changed"] is True and not cluster.calls("PATCH")


OWNER_KEY = k8s_drain.CORDON_ANNOTATION


def annotations(cluster, node="w1"):
    return cluster.nodes[node].get("metadata", {}).get("annotations", {})


def test_drain_with_owner_cordons_and_marks_in_one_request(cluster):
    cluster.pods.append(make_pod("web"))
    outcome, result = run(cluster, cordon_owner="upgrade")
    assert outcome == "exit" and result["changed"] is True
    assert result["cordoned"] is True and result["cordon_owned"] is True and result["was_cordoned"] is False
    assert annotations(cluster)[OWNER_KEY] == "upgrade"
    assert len(cluster.calls("PATCH")) == 1


def test_uncordon_with_owner_lifts_its_own_cordon_also_in_a_later_run(cluster):
    run(cluster, state="cordon", cordon_owner="upgrade")
    # The re-run of an interrupted upgrade: drain again (already cordoned, ours), then uncordon.
    outcome, result = run(cluster, cordon_owner="upgrade")
    assert outcome == "exit" and result["cordon_owned"] is True and result["was_cordoned"] is True
    assert result["changed"] is False
    outcome, result = run(cluster, state="uncordon", cordon_owner="upgrade")
    assert outcome == "exit" and result["changed"] is True and result["cordoned"] is False
    assert result["cordon_owned"] is False
    assert "unschedulable" not in cluster.nodes["w1"]["spec"] and OWNER_KEY not in annotations(cluster)


@pytest.mark.parametrize("marked", [None, "operator"], ids=["no-annotation", "another-owner"])
def test_uncordon_with_owner_keeps_a_cordon_someone_else_set(cluster, marked):
    cluster.nodes["w1"]["spec"]["unschedulable"] = True
    if marked:
        cluster.nodes["w1"].setdefault("metadata", {}).setdefault("annotations", {})[OWNER_KEY] = marked
    outcome, result = run(cluster, cordon_owner="upgrade")
    assert outcome == "exit" and result["cordon_owned"] is False and result["cordoned"] is True
    outcome, result = run(cluster, state="uncordon", cordon_owner="upgrade")
    assert outcome == "exit" and result["changed"] is False
    assert result["cordoned"] is True and result["cordon_owned"] is False
    assert cluster.nodes["w1"]["spec"]["unschedulable"] is True
    assert "stays cordoned" in " ".join(result.get("warnings", []))
    assert not cluster.calls("PATCH")
    assert annotations(cluster).get(OWNER_KEY) == marked


def test_uncordon_with_owner_removes_a_stale_annotation(cluster):
    cluster.nodes["w1"].setdefault("metadata", {})["annotations"] = {OWNER_KEY: "upgrade"}
    outcome, result = run(cluster, state="uncordon", cordon_owner="upgrade")
    assert outcome == "exit" and result["changed"] is True and OWNER_KEY not in annotations(cluster)


def test_uncordon_without_owner_lifts_any_cordon_and_leaves_annotations(cluster):
    cluster.nodes["w1"]["spec"]["unschedulable"] = True
    cluster.nodes["w1"].setdefault("metadata", {})["annotations"] = {OWNER_KEY: "operator"}
    outcome, result = run(cluster, state="uncordon")
    assert outcome == "exit" and result["changed"] is True and "cordon_owned" not in result
    assert annotations(cluster)[OWNER_KEY] == "operator"


def test_empty_owner_is_refused(cluster):
    outcome, result = run(cluster, cordon_owner=" ")
    assert outcome == "fail" and "cordon_owner must not be empty" in result["msg"]
    assert not cluster.calls("PATCH")


def test_unknown_node(cluster):
    outcome, result = run(cluster, name="nope")
    assert outcome == "fail" and "node nope does not exist" in result["msg"]


@pytest.mark.parametrize("args, needle", [
    ({"wait_timeout": 0}, "wait_timeout must be at least 1"),
    ({"max_parallel": 0}, "max_parallel"),
])
def test_bad_arguments(cluster, args, needle):
    outcome, result = run(cluster, **args)
    assert outcome == "fail" and needle in result["msg"]


def test_timeout_is_a_deprecated_alias_of_wait_timeout(cluster):
    outcome, result = run(cluster, timeout=0)
    assert outcome == "fail" and "wait_timeout must be at least 1, got 0" in result["msg"]
    assert deprecated_aliases(result) == {"timeout": ("1.0.0", "baremetal.kubernetes")}


# -- a namespace being deleted ----------------------------------------------------------------------
def test_a_pod_of_a_terminating_namespace_is_waited_for_not_failed(cluster):
    """No eviction can be created in a namespace being deleted (403, NamespaceTerminating): as kubectl drain,
    retry until the namespace controller has marked the pod, then wait for it to go like an evicted pod."""
    cluster.pods += [make_pod("doomed", namespace="old-app"), make_pod("web")]
    cluster.eviction_script["doomed"] = ["namespace-terminating"]
    cluster.namespace_marks["doomed"] = 3
    cluster.linger["doomed"] = 2
    outcome, result = run(cluster, wait_timeout=30)
    assert outcome == "exit", result.get("msg")
    assert names(result["evicted_pods"]) == ["doomed", "web"] and not result["failed_pods"]
    attempts = [e for e in cluster.events if e[0] == "evict" and e[1] == "doomed"]
    assert len(attempts) == 3
    assert not any(p["metadata"]["name"] == "doomed" for p in cluster.pods)


def test_a_pod_the_namespace_deletion_never_marks_fails_at_the_timeout(cluster):
    cluster.pods.append(make_pod("doomed", namespace="old-app"))
    cluster.eviction_script["doomed"] = ["namespace-terminating"]
    outcome, result = run(cluster, wait_timeout=1)
    assert outcome == "fail"
    assert names(result["failed_pods"]) == ["doomed"] and not result["blocked_pods"]
    assert "being terminated" in result["msg"] and "not marked for deletion in time" in result["msg"]
    assert "still cordoned" in result["msg"]


def test_check_mode_counts_a_pod_of_a_terminating_namespace_as_going(cluster):
    cluster.pods.append(make_pod("doomed", namespace="old-app"))
    cluster.eviction_script["doomed"] = ["namespace-terminating"]
    outcome, result = run(cluster, check_mode=True)
    assert outcome == "exit", result.get("msg")
    assert names(result["evicted_pods"]) == ["doomed"] and not result["blocked_pods"]
    assert result["changed"] and not cluster.calls("PATCH")
