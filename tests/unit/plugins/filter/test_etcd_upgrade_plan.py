# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for etcd_upgrade_plan: one minor at a time, no downgrade, resumable, the leader last."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.upgrade import etcd_upgrade_plan

HOSTS = ["et-1", "et-2", "et-3"]


def health(versions, leader="et-1", unhealthy=None):
    """An etcd_health result: one member per host, with its version; ``unhealthy``: {host: reason}."""
    unhealthy = unhealthy or {}
    members = []
    for index, (host, version) in enumerate(zip(HOSTS, versions), start=1):
        member = dict(endpoint="https://10.0.0.1%d:2379" % index, healthy=host not in unhealthy,
                      reason=unhealthy.get(host, ""))
        if host not in unhealthy:
            member.update(version=version, is_leader=host == leader, member_id="%016x" % index)
        members.append(member)
    return dict(healthy=not unhealthy, members=members)


def test_a_minor_step_goes_followers_first_and_the_leader_last():
    plan = etcd_upgrade_plan(health(["3.4.23"] * 3, leader="et-1"), "3.5.16", HOSTS)
    assert plan == dict(problems=[], pending=["et-2", "et-3", "et-1"], at_target=[], leader="et-1",
                        versions={"et-1": "3.4.23", "et-2": "3.4.23", "et-3": "3.4.23"})


def test_a_patch_step_is_allowed():
    plan = etcd_upgrade_plan(health(["3.5.16"] * 3, leader="et-3"), "3.5.21", HOSTS)
    assert plan["problems"] == [] and plan["pending"] == ["et-1", "et-2", "et-3"]


def test_a_resumed_run_skips_members_at_the_target():
    # Interrupted after et-2: it runs the target; et-1 (the leader) and et-3 are still to go.
    plan = etcd_upgrade_plan(health(["3.4.23", "3.5.16", "3.4.23"], leader="et-1"), "3.5.16", HOSTS)
    assert plan["problems"] == []
    assert plan["at_target"] == ["et-2"] and plan["pending"] == ["et-3", "et-1"]


def test_every_member_at_the_target_is_nothing_to_do():
    plan = etcd_upgrade_plan(health(["3.5.16"] * 3), "3.5.16", HOSTS)
    assert plan["problems"] == [] and plan["pending"] == [] and plan["at_target"] == HOSTS


def test_two_minors_up_is_refused_naming_the_step_to_take_first():
    plan = etcd_upgrade_plan(health(["3.4.23"] * 3), "3.6.5", HOSTS)
    assert plan["pending"] == [] and len(plan["problems"]) == 3
    assert plan["problems"][0] == (
        "etcd member et-1 runs 3.4.23 and etcd_version 3.6.5 is more than one minor up: etcd upgrades one minor at "
        "a time. Upgrade to the newest 3.5.x first, then to 3.6.5")


def test_a_major_step_is_refused():
    plan = etcd_upgrade_plan(health(["3.5.16"] * 3), "4.0.0", HOSTS)
    assert len(plan["problems"]) == 3 and "more than one minor up" in plan["problems"][0]


def test_a_downgrade_is_refused_even_for_one_member():
    plan = etcd_upgrade_plan(health(["3.4.23", "3.5.16", "3.4.23"]), "3.4.23", HOSTS)
    assert plan["pending"] == []
    assert plan["problems"] == [
        "etcd member et-2 runs 3.5.16, newer than etcd_version 3.4.23: etcd is not downgraded by replacing its "
        "binary. Set etcd_version to 3.5.16 (or restore a snapshot with etcd_restore.yml)"]


def test_an_unhealthy_member_is_refused_with_its_reason_and_every_other_problem():
    plan = etcd_upgrade_plan(health(["3.4.23", "3.4.23", "3.3.25"], unhealthy={"et-1": "connection refused"}),
                             "3.5.16", HOSTS)
    assert plan["pending"] == []
    assert plan["problems"][0].startswith(
        "etcd member et-1 (https://10.0.0.11:2379) is not healthy: connection refused")
    assert "etcd member et-3 runs 3.3.25" in plan["problems"][1]
    assert plan["versions"]["et-1"] == "unknown"


def test_a_member_without_a_version_is_a_problem():
    result = health(["3.4.23"] * 3)
    del result["members"][1]["version"]
    assert etcd_upgrade_plan(result, "3.5.16", HOSTS)["problems"] == ["etcd member et-2 reports no version (None)"]


@pytest.mark.parametrize("target", ["3.5", "v3.5.16-rc.1", "", None])
def test_a_target_that_is_not_x_y_z_is_an_error(target):
    with pytest.raises(AnsibleFilterError, match=r"is not X\.Y\.Z"):
        etcd_upgrade_plan(health(["3.4.23"] * 3), target, HOSTS)


def test_wrong_input_is_an_error():
    with pytest.raises(AnsibleFilterError, match="etcd_health"):
        etcd_upgrade_plan({"nodes": []}, "3.5.16", HOSTS)
    with pytest.raises(AnsibleFilterError, match="2 hosts for 3 members"):
        etcd_upgrade_plan(health(["3.4.23"] * 3), "3.5.16", HOSTS[:2])
