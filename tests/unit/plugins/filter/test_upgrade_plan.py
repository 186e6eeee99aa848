# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the upgrade filters: upgrade_plan (the preflight's version rules) and upgrade_window."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.upgrade import upgrade_plan, upgrade_window

CP = ["cp1", "cp2", "cp3"]
WORKERS = ["w1", "w2"]


def health(versions, apiservers=None, extra=None):
    """A cluster_health result: {node: kubelet version}; control-plane pods follow ``apiservers``."""
    apiservers = dict(apiservers or {})
    nodes = []
    pods = []
    for name, version in list(versions.items()) + list((extra or {}).items()):
        nodes.append(dict(name=name, control_plane=name.startswith("cp"), ready=True, schedulable=True,
                          kubelet_version="v" + version))
        if name.startswith("cp"):
            pods.append(dict(name="kube-apiserver-" + name, node=name, component="kube-apiserver",
                             version=apiservers.get(name, version)))
    return dict(nodes=nodes, control_plane_pods=pods,
                apiservers=[dict(endpoint="https://%s:6443" % p["node"], role="apiserver", version="v" + p["version"])
                            for p in pods])


AT_1362 = {"cp1": "1.36.2", "cp2": "1.36.2", "cp3": "1.36.2", "w1": "1.36.2", "w2": "1.36.2"}


def test_next_minor_is_planned_for_every_node():
    plan = upgrade_plan(health(AT_1362), "1.37.1", CP, WORKERS)
    assert plan["problems"] == [] and plan["kind"] == "minor"
    assert plan["pending"] == CP + WORKERS
    assert plan["current"] == dict(control_plane="1.36.2", workers="1.36.2")
    assert plan["nodes"][0] == dict(name="cp1", role="control_plane", kubelet="1.36.2", apiserver="1.36.2",
                                    at_target=False, ready=True, schedulable=True)


def test_patch_upgrade_is_allowed():
    plan = upgrade_plan(health(AT_1362), "1.36.3", CP, WORKERS)
    assert plan["problems"] == [] and plan["kind"] == "patch"


def test_two_minors_ahead_is_refused_with_the_next_step():
    plan = upgrade_plan(health(AT_1362), "1.38.0", CP, WORKERS)
    assert "target 1.38.0: 1.38.0 is 2 minor versions ahead of the running 1.36.2; upgrade one minor at a time " \
        "(next: 1.37) (lowest control-plane version)" in plan["problems"]
    # 1.38 is also past the supported range; both are listed at once.
    assert len(plan["problems"]) == 2 and "outside the supported minors" in plan["problems"][0]


def test_the_lowest_control_plane_decides_the_step():
    # cp1 already at 1.37 (an interrupted run), cp3 still at 1.36: 1.38 is still two minors above cp3.
    versions = dict(AT_1362, cp1="1.37.1")
    plan = upgrade_plan(health(versions), "1.38.0", CP, WORKERS)
    assert any("running 1.36.2" in p for p in plan["problems"])


def test_downgrade_is_refused_naming_the_node():
    plan = upgrade_plan(health(dict(AT_1362, w2="1.37.1")), "1.37.0", CP, WORKERS)
    assert plan["problems"] == ["node w2 runs kubelet 1.37.1, newer than the target 1.37.0: downgrades are not "
                                "supported (restore the etcd snapshot taken before the upgrade instead)"]


def test_downgrade_of_the_whole_cluster_lists_every_node():
    plan = upgrade_plan(health(AT_1362), "1.35.2", CP, WORKERS)
    assert len([p for p in plan["problems"] if "downgrades are not supported" in p]) == 5 + 3


def test_resume_skips_nodes_already_at_the_target():
    versions = dict(AT_1362, cp1="1.37.1", cp2="1.37.1")
    plan = upgrade_plan(health(versions), "1.37.1", CP, WORKERS)
    assert plan["problems"] == [] and plan["pending"] == ["cp3", "w1", "w2"] and plan["kind"] == "minor"
    assert plan["current"]["control_plane"] == "1.36.2"


def test_workers_behind_make_it_a_minor_upgrade():
    versions = {n: ("1.37.1" if n.startswith("cp") else "1.36.2") for n in AT_1362}
    plan = upgrade_plan(health(versions), "1.37.1", CP, WORKERS)
    assert plan["kind"] == "minor" and plan["pending"] == WORKERS


def test_control_plane_needs_its_apiserver_at_the_target_too():
    # kubelet upgraded but `kubeadm upgrade` did not finish: the node is not done.
    plan = upgrade_plan(health(dict(AT_1362, cp1="1.37.1"), apiservers={"cp1": "1.36.2"}), "1.37.1", CP, WORKERS)
    assert "cp1" in plan["pending"]


def test_nothing_to_do():
    plan = upgrade_plan(health(dict.fromkeys(AT_1362, "1.37.1")), "1.37.1", CP, WORKERS)
    assert plan["problems"] == [] and plan["pending"] == [] and plan["kind"] == "none"


def test_inventory_node_not_registered_is_refused():
    versions = {n: v for n, v in AT_1362.items() if n != "w2"}
    plan = upgrade_plan(health(versions), "1.37.1", CP, WORKERS)
    assert plan["problems"] == ["node w2 (inventory, worker) is not registered in the cluster: join it with "
                                "site.yml first, or remove it from the inventory"]


def test_node_outside_the_inventory_must_stay_within_skew():
    plan = upgrade_plan(health(AT_1362, extra={"old": "1.33.1"}), "1.37.1", CP, WORKERS)
    assert len(plan["problems"]) == 1
    assert "kubelet on old is 1.33.1, 4 minor versions older" in plan["problems"][0]
    assert "not in the inventory" in plan["problems"][0]
    assert upgrade_plan(health(AT_1362, extra={"old": "1.34.1"}), "1.37.1", CP, WORKERS)["problems"] == []


def test_workers_left_out_are_checked_for_skew():
    versions = dict(AT_1362, w1="1.34.2", w2="1.34.2")
    plan = upgrade_plan(health(versions), "1.37.1", CP, WORKERS, upgrade_workers=False)
    assert plan["problems"] == [] and plan["pending"] == CP
    versions = dict(AT_1362, w1="1.33.2")
    plan = upgrade_plan(health(versions), "1.37.1", CP, WORKERS, upgrade_workers=False)
    assert len(plan["problems"]) == 1 and "kubelet on w1 is 1.33.2" in plan["problems"][0]
    assert "upgrade_workers=false" in plan["problems"][0]


def test_unsupported_minor_is_refused():
    plan = upgrade_plan(health(dict.fromkeys(AT_1362, "1.37.1")), "1.38.0", CP, WORKERS)
    assert any("outside the supported minors" in p for p in plan["problems"])


@pytest.mark.parametrize("target", ["1.37", "v1.37.1", "latest", None])
def test_bad_target(target):
    with pytest.raises(AnsibleFilterError, match=r"is not X\.Y\.Z"):
        upgrade_plan(health(AT_1362), target, CP, WORKERS)


def test_needs_a_health_result():
    with pytest.raises(AnsibleFilterError, match="cluster_health"):
        upgrade_plan({"msg": "failed"}, "1.37.1", CP, WORKERS)


# -- upgrade_window ------------------------------------------------------------------------------
# 2026-11-28 is a Saturday.
@pytest.mark.parametrize("window, now, inside", [
    ("Sat 02:00-06:00", "2026-11-28T02:00:00", True),
    ("Sat 02:00-06:00", "2026-11-28T05:59:59", True),
    ("Sat 02:00-06:00", "2026-11-28T06:00:00", False),
    ("Sat 02:00-06:00", "2026-11-28T01:59:00", False),
    ("Sat 02:00-06:00", "2026-11-29T03:00:00", False),
    ("Mon-Fri 22:00-04:00", "2026-11-27T23:30:00", True),    # Friday evening
    ("Mon-Fri 22:00-04:00", "2026-11-28T03:00:00", True),    # Saturday early: Friday's window
    ("Mon-Fri 22:00-04:00", "2026-11-29T03:00:00", False),   # Sunday early: Saturday is not listed
    ("Mon-Fri 22:00-04:00", "2026-11-30T03:00:00", False),   # Monday early: Sunday is not listed
    ("Fri-Mon 01:00-02:00", "2026-11-30T01:30:00", True),    # a range across the week end
    ("Fri-Mon 01:00-02:00", "2026-11-25T01:30:00", False),
    ("Sat,Sun 00:00-24:00", "2026-11-29T23:59:00", True),
    ("* 02:00-03:00", "2026-11-25T02:30:00", True),
    ("02:00-03:00", "2026-11-25T02:30:00", True),
    ("saturday 02:00-06:00", "2026-11-28T02:30:00", True),
    ("", "2026-11-25T12:00:00", True),
])
def test_window(window, now, inside):
    verdict = upgrade_window(window, now)
    assert verdict["inside"] is inside
    assert ("inside" if inside else "outside") in verdict["reason"]


def test_window_reason_names_the_time_and_the_window():
    assert upgrade_window("Sat 02:00-06:00", "2026-11-25T14:02:31")["reason"] == \
        "Wed 14:02 is outside the maintenance window Sat 02:00-06:00"


@pytest.mark.parametrize("window, needle", [
    ("Sat 2-6", "write '[DAYS] HH:MM-HH:MM'"),
    ("Caturday 02:00-06:00", "'caturday' is not a day"),
    ("Sat 25:00-26:00", "25:00 is not a time of day"),
    ("Sat 02:00-02:00", "is empty"),
    # -e control_plane_upgrade_window='Sat 02:00-06:00' arrives as 'Sat': the error says how to pass it.
    ("Sat", """-e '{"control_plane_upgrade_window": "Sat 02:00-06:00"}'"""),
])
def test_bad_window(window, needle):
    with pytest.raises(AnsibleFilterError, match=re.escape(needle)):
        upgrade_window(window, "2026-11-28T02:00:00")
