# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the inventory_preflight action plugin (plugins/action/inventory_preflight.py).

The task, connection, loader and templar are mocks; argument validation and the inventory
rules run for real.
"""

from __future__ import annotations

import copy
import re
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail, AnsibleError

from ansible_collections.baremetal.kubernetes.plugins.action import inventory_preflight
from ansible_collections.baremetal.kubernetes.plugins.action.inventory_preflight import ActionModule

CLUSTER_VARS = {
    "k8s_version": "1.34.2",
    "etcd_version": "3.6.14",
    "k8s_cluster_name": "kubernetes",
    "k8s_encryption_provider": "secretbox",
    "k8s_encryption_resources": ["secrets"],
    "k8s_api_vip": "192.168.10.100",
    "k8s_api_port": 8443,
    "k8s_pod_subnet": "10.244.0.0/16",
    "k8s_service_subnet": "10.96.0.0/12",
}
HOST_ADDRESSES = {
    "cp1": "192.168.10.11",
    "cp2": "192.168.10.12",
    "cp3": "192.168.10.13",
    "w1": "192.168.10.21",
    "w2": "192.168.10.22",
}
NUMBERED_LINE = re.compile(r"^ ?(\d+)\. (cluster|host \S+), variable \S+: .+ Fix: .+$")


def host_vars(name):
    """What Ansible's hostvars hold for a host: its own variables plus group_vars/all."""
    values = dict(CLUSTER_VARS)
    values.update(ansible_host=HOST_ADDRESSES[name], node_ip=HOST_ADDRESSES[name], node_network="192.168.10.0/24")
    return values


def good_task_vars():
    task_vars = {
        "inventory_hostname": "localhost",
        "groups": {
            "all": sorted(HOST_ADDRESSES),
            "ungrouped": [],
            "k8s_cluster": ["cp1", "cp2", "cp3", "w1", "w2"],
            "kube_control_plane": ["cp1", "cp2", "cp3"],
            "etcd": ["cp1", "cp2", "cp3"],
            "kube_node": ["w1", "w2"],
        },
        "hostvars": {name: host_vars(name) for name in HOST_ADDRESSES},
    }
    task_vars.update(copy.deepcopy(CLUSTER_VARS))
    return task_vars


def make_action(args=None):
    task = MagicMock()
    task.args = {} if args is None else args
    task.async_val = 0
    task.check_mode = False
    task.diff = False
    task.action = "baremetal.kubernetes.inventory_preflight"
    connection = MagicMock()
    connection._shell.tmpdir = "/tmp/not-used"
    play_context = MagicMock()
    play_context.check_mode = False
    templar = MagicMock()
    templar.copy_with_new_env.return_value.template.side_effect = lambda value, *args, **kwargs: value
    action = ActionModule(
        task=task,
        connection=connection,
        play_context=play_context,
        loader=MagicMock(),
        templar=templar,
        shared_loader_obj=MagicMock(),
    )
    return action


def run(task_vars, args=None):
    return make_action(args).run(task_vars=task_vars)


def numbered_lines(msg):
    lines = msg.splitlines()
    numbers = []
    for line in lines[1:]:
        match = NUMBERED_LINE.match(line)
        assert match, f"not a numbered problem line: {line!r}"
        numbers.append(int(match.group(1)))
    return lines[0], numbers


# -- good inventory ----------------------------------------------------------------------------
def test_good_inventory_passes():
    result = run(good_task_vars())
    assert not result.get("failed", False)
    assert result["changed"] is False
    assert result["hosts_checked"] == 5
    assert result["msg"] == "inventory is valid (5 hosts)"
    assert result["problems"] == []


def test_good_inventory_does_not_touch_the_connection():
    action = make_action()
    result = action.run(task_vars=good_task_vars())
    assert not result.get("failed", False)
    assert action._connection.exec_command.call_count == 0
    assert action._connection.put_file.call_count == 0


def test_cluster_values_go_through_the_templar():
    task_vars = good_task_vars()
    action = make_action()
    action.run(task_vars=task_vars)
    templar = action._templar
    assert templar.copy_with_new_env.call_count >= 1
    assert all(call.kwargs == {"available_variables": task_vars} for call in templar.copy_with_new_env.call_args_list)
    rendered = [call.args[0] for call in templar.copy_with_new_env.return_value.template.call_args_list]
    assert "1.34.2" in rendered
    assert "192.168.10.100" in rendered


def test_templated_cluster_value_is_what_gets_checked():
    task_vars = good_task_vars()
    task_vars["k8s_version"] = "{{ wanted_version }}"
    action = make_action({"fail_on_problems": False})
    action._templar.copy_with_new_env.return_value.template.side_effect = (
        lambda value, *args, **kwargs: "1.34.2" if value == "{{ wanted_version }}" else value
    )
    result = action.run(task_vars=task_vars)
    # The cluster value renders to 1.34.2, which is valid and equal to every host's value.
    assert result["problems"] == []


def test_groups_other_than_the_collection_ones_are_ignored():
    task_vars = good_task_vars()
    task_vars["groups"]["monitoring"] = ["mon1"]
    task_vars["groups"]["all"].append("mon1")
    result = run(task_vars)
    assert not result.get("failed", False)
    assert result["hosts_checked"] == 5


# -- bad inventory -----------------------------------------------------------------------------
def test_bad_inventory_fails_with_a_numbered_message():
    task_vars = good_task_vars()
    task_vars["groups"]["etcd"] = ["cp1", "cp2"]
    del task_vars["k8s_api_vip"]
    for values in task_vars["hostvars"].values():
        del values["k8s_api_vip"]
    task_vars["hostvars"]["w2"]["node_ip"] = "192.168.10.21"

    result = run(task_vars)

    assert result["failed"] is True
    assert result["changed"] is False
    assert "problems" not in result
    assert result["msg"].startswith("The inventory has 3 problem(s); no host was contacted:")
    header, numbers = numbered_lines(result["msg"])
    assert header == "The inventory has 3 problem(s); no host was contacted:"
    assert numbers == [1, 2, 3]
    assert "cluster, variable groups.etcd:" in result["msg"]
    assert "cluster, variable k8s_api_vip: it is not set" in result["msg"]
    assert "host w2, variable node_ip:" in result["msg"]


def test_many_problems_are_numbered_in_order():
    task_vars = good_task_vars()
    # 12 extra etcd members that all claim the node name cp1: one etcd-size problem and 12 name clashes.
    extra = [f"extra{index}" for index in range(12)]
    task_vars["groups"]["etcd"] = ["cp1", "cp2", "cp3", *extra]
    for index, name in enumerate(extra):
        task_vars["hostvars"][name] = {"node_ip": f"192.168.10.{40 + index}", "node_name": "cp1"}
    result = run(task_vars)
    header, numbers = numbered_lines(result["msg"])
    count = int(re.match(r"The inventory has (\d+) problem\(s\)", header).group(1))
    assert count == 13
    assert numbers == list(range(1, count + 1))
    assert "\n 1. " in result["msg"]
    assert "\n10. " in result["msg"]


def test_fail_on_problems_false_returns_the_problems():
    task_vars = good_task_vars()
    task_vars["groups"]["etcd"] = ["cp1", "cp2"]
    result = run(task_vars, {"fail_on_problems": False})
    assert not result.get("failed", False)
    assert result["changed"] is False
    assert result["msg"] == "1 problem(s) found"
    assert len(result["problems"]) == 1
    (problem,) = result["problems"]
    assert set(problem) == {"host", "variable", "message", "fix"}
    assert (problem["host"], problem["variable"]) == ("cluster", "groups.etcd")
    assert "even number" in problem["message"]
    assert problem["fix"]


def test_fail_on_problems_accepts_a_boolean_string():
    task_vars = good_task_vars()
    task_vars["k8s_cluster_name"] = "Bad_Name"
    for values in task_vars["hostvars"].values():
        values["k8s_cluster_name"] = "Bad_Name"
    result = run(task_vars, {"fail_on_problems": "no"})
    assert not result.get("failed", False)
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [("cluster", "k8s_cluster_name")]


def test_fail_on_problems_true_is_the_default():
    task_vars = good_task_vars()
    task_vars["k8s_api_port"] = 6443
    for values in task_vars["hostvars"].values():
        values["k8s_api_port"] = 6443
    result = run(task_vars, {"fail_on_problems": True})
    assert result["failed"] is True
    assert result["msg"].startswith("The inventory has 1 problem(s); no host was contacted:")
    assert "kube-apiserver" in result["msg"]


def test_missing_cluster_variables_are_reported():
    task_vars = good_task_vars()
    for name in CLUSTER_VARS:
        del task_vars[name]
        for values in task_vars["hostvars"].values():
            del values[name]
    result = run(task_vars, {"fail_on_problems": False})
    assert {item["variable"] for item in result["problems"]} == set(CLUSTER_VARS)
    assert {item["host"] for item in result["problems"]} == {"cluster"}


# -- cluster-wide variables on single hosts ----------------------------------------------------
def test_host_value_equal_to_cluster_value_is_not_an_override():
    task_vars = good_task_vars()
    # Same value, different type: YAML int on the host, string for the cluster.
    task_vars["k8s_api_port"] = "8443"
    task_vars["hostvars"]["w1"]["k8s_api_port"] = 8443
    task_vars["hostvars"]["w1"]["k8s_version"] = "1.34.2"
    result = run(task_vars, {"fail_on_problems": False})
    assert result["problems"] == []


def test_host_value_different_from_cluster_value_is_an_override():
    task_vars = good_task_vars()
    task_vars["hostvars"]["w1"]["k8s_version"] = "1.33.0"
    result = run(task_vars, {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [("w1", "k8s_version")]
    assert "k8s_version='1.33.0' but the cluster value is '1.34.2'" in result["problems"][0]["message"]
    assert "group_vars/all" in result["problems"][0]["fix"]


def test_encryption_config_file_is_cluster_wide():
    # Every apiserver mounts the file at one path, and the rotation reads it on every node at that path.
    task_vars = good_task_vars()
    task_vars["k8s_encryption_config_file"] = "/etc/kubernetes/enc/encryption-config.yaml"
    task_vars["hostvars"]["cp3"]["k8s_encryption_config_file"] = "/etc/kubernetes/other.yaml"
    result = run(task_vars, {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [("cp3", "k8s_encryption_config_file")]


def test_override_makes_the_task_fail():
    task_vars = good_task_vars()
    task_vars["hostvars"]["cp2"]["k8s_pod_subnet"] = "10.245.0.0/16"
    result = run(task_vars)
    assert result["failed"] is True
    assert result["msg"].startswith("The inventory has 1 problem(s); no host was contacted:")
    assert "host cp2, variable k8s_pod_subnet:" in result["msg"]


def test_cluster_argument_takes_precedence_over_task_vars():
    task_vars = good_task_vars()
    task_vars["k8s_version"] = "not-a-version"
    action = make_action({"cluster": {"k8s_version": "1.34.2"}, "fail_on_problems": False})
    result = action.run(task_vars=task_vars)
    assert result["problems"] == []
    rendered = [call.args[0] for call in action._templar.copy_with_new_env.return_value.template.call_args_list]
    assert "not-a-version" not in rendered
    assert "3.6.14" in rendered


def test_cluster_argument_is_validated_too():
    task_vars = good_task_vars()
    result = run(task_vars, {"cluster": {"k8s_version": "v1.34.2"}, "fail_on_problems": False})
    problems = [(item["host"], item["variable"]) for item in result["problems"]]
    assert ("cluster", "k8s_version") in problems
    # Every host holds 1.34.2, which now differs from the cluster value.
    assert {host for host, variable in problems if variable == "k8s_version"} >= {"cp1", "w2"}


# -- host variables ----------------------------------------------------------------------------
def test_host_variables_reach_the_rules():
    task_vars = good_task_vars()
    task_vars["groups"]["kube_node"].append("cp1")
    task_vars["hostvars"]["w2"]["ansible_host"] = "192.168.10.21"
    task_vars["hostvars"]["w1"]["node_name"] = "Worker_1"
    result = run(task_vars, {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [
        ("cp1", "k8s_control_plane_as_worker"),
        ("w1", "node_name"),
        ("w2", "ansible_host"),
    ]


def test_control_plane_worker_opt_in_from_hostvars():
    task_vars = good_task_vars()
    task_vars["groups"]["kube_node"].append("cp1")
    task_vars["hostvars"]["cp1"]["k8s_control_plane_as_worker"] = "yes"
    result = run(task_vars)
    assert not result.get("failed", False)


def test_podman_connection_from_hostvars_skips_the_endpoint_check():
    task_vars = good_task_vars()
    task_vars["hostvars"]["w2"]["ansible_host"] = "192.168.10.21"
    for values in task_vars["hostvars"].values():
        values["ansible_connection"] = "podman"
    result = run(task_vars)
    assert not result.get("failed", False)


def test_host_missing_from_hostvars_is_still_checked():
    task_vars = good_task_vars()
    task_vars["groups"]["kube_node"].append("ghost_1")
    result = run(task_vars, {"fail_on_problems": False})
    assert result["hosts_checked"] == 6
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [("ghost_1", "inventory_hostname")]


class UnrenderableVars(dict):
    """A hostvars entry whose variable cannot be templated, like HostVarsVars raising."""

    def __init__(self, values, broken):
        super().__init__(values)
        self.broken = broken

    def get(self, name, default=None):
        if name == self.broken:
            raise AnsibleError("'undefined_thing' is undefined")
        return super().get(name, default)


def test_unrenderable_host_variable_is_a_problem_not_a_crash():
    task_vars = good_task_vars()
    task_vars["hostvars"]["w1"] = UnrenderableVars(task_vars["hostvars"]["w1"], "node_network")
    result = run(task_vars)
    assert result["failed"] is True
    header, numbers = numbered_lines(result["msg"])
    assert header == "The inventory has 1 problem(s); no host was contacted:"
    assert numbers == [1]
    assert "host w1, variable node_network: its value cannot be rendered: 'undefined_thing' is undefined." \
        in result["msg"]


def test_unrenderable_problems_come_first_and_validation_still_runs():
    task_vars = good_task_vars()
    task_vars["hostvars"]["w2"] = UnrenderableVars(task_vars["hostvars"]["w2"], "k8s_version")
    task_vars["groups"]["etcd"] = ["cp1", "cp2"]
    result = run(task_vars, {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [
        ("w2", "k8s_version"),
        ("cluster", "groups.etcd"),
    ]


# -- arguments and environment -----------------------------------------------------------------
def test_unknown_argument_is_refused():
    with pytest.raises(AnsibleActionFail, match="Invalid options"):
        run(good_task_vars(), {"bogus": 1})


def test_wrongly_typed_argument_is_refused():
    with pytest.raises(AnsibleActionFail):
        run(good_task_vars(), {"fail_on_problems": "perhaps"})


def test_missing_netaddr_is_an_error(monkeypatch):
    monkeypatch.setattr(inventory_preflight, "HAS_NETADDR", False)
    with pytest.raises(AnsibleError, match="netaddr"):
        run(good_task_vars())


def test_no_task_vars_reports_an_empty_inventory():
    result = make_action({"fail_on_problems": False}).run(task_vars=None)
    assert result["hosts_checked"] == 0
    variables = {item["variable"] for item in result["problems"]}
    assert {"groups.kube_control_plane", "groups.etcd", "k8s_version"} <= variables


# -- the loadbalancer role's inventory-level variables ------------------------------------------
def test_loadbalancer_variables_reach_the_rules():
    task_vars = good_task_vars()
    task_vars["hostvars"]["cp2"]["loadbalancer_keepalived_virtual_router_id"] = 300
    result = run(task_vars, {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in result["problems"]] == [
        ("cp2", "loadbalancer_keepalived_virtual_router_id"),
    ]


def test_single_loadbalancer_opt_in_from_hostvars():
    task_vars = good_task_vars()
    task_vars["groups"]["loadbalancer"] = ["cp1"]
    refused = run(copy.deepcopy(task_vars), {"fail_on_problems": False})
    assert [(item["host"], item["variable"]) for item in refused["problems"]] == [("cp1", "groups.loadbalancer")]
    task_vars["hostvars"]["cp1"]["loadbalancer_allow_single_node"] = True
    assert not run(task_vars).get("failed", False)
