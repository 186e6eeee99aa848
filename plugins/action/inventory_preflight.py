# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side implementation of baremetal.kubernetes.inventory_preflight."""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.baremetal.kubernetes.plugins.plugin_utils.inventory_model import (
    CLUSTER_VARIABLES,
    GROUP_CONTROL_PLANE,
    GROUP_ETCD,
    GROUP_LOADBALANCER,
    GROUP_WORKERS,
    HAS_NETADDR,
    InventoryModel,
)

# Per-host variables the rules read from hostvars.
HOST_VARIABLES = (
    "ansible_host",
    "ansible_port",
    "ansible_connection",
    "node_ip",
    "node_network",
    "node_name",
    "k8s_control_plane_as_worker",
    # The loadbalancer role's inventory-level rules (router id range, single-node opt-in).
    "loadbalancer_keepalived_virtual_router_id",
    "loadbalancer_allow_single_node",
)
_MISSING = object()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("cluster", "fail_on_problems"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        result["changed"] = False

        _dummy, args = self.validate_argument_spec(
            argument_spec=dict(cluster=dict(type="dict"), fail_on_problems=dict(type="bool", default=True)),
        )
        if not HAS_NETADDR:
            raise AnsibleError("inventory_preflight needs the Python library netaddr on the controller: "
                               "pip install netaddr (it is in the collection's requirements.txt).")

        groups = task_vars.get("groups", {})
        hostvars = task_vars.get("hostvars", {})
        cluster = dict(args.get("cluster") or {})
        for name in CLUSTER_VARIABLES:
            if name not in cluster:
                cluster[name] = self._resolve(task_vars.get(name, None), task_vars)

        model_groups = {
            name: list(groups.get(name, []))
            for name in (GROUP_CONTROL_PLANE, GROUP_ETCD, GROUP_WORKERS, GROUP_LOADBALANCER)
        }
        model = InventoryModel(model_groups, cluster, {})
        hosts = {}
        for host in model.managed_hosts:
            values = {}
            overrides = {}
            host_vars = hostvars.get(host, {})
            for name in HOST_VARIABLES + CLUSTER_VARIABLES:
                try:
                    value = host_vars.get(name, _MISSING) if hasattr(host_vars, "get") else _MISSING
                except Exception as exc:  # a template in the inventory that cannot be rendered
                    model.add(host, name, "its value cannot be rendered: %s." % to_text(exc),
                              "correct the variable's template in the inventory.")
                    continue
                if value is _MISSING:
                    continue
                if name in CLUSTER_VARIABLES:
                    if to_text(value) != to_text(cluster.get(name)):
                        overrides[name] = value
                else:
                    values[name] = value
            values["cluster_overrides"] = overrides
            hosts[host] = values
        model.hosts = hosts
        pre_existing = list(model.problems)
        problems = pre_existing + model.validate()

        result["hosts_checked"] = len(model.managed_hosts)
        if problems and args["fail_on_problems"]:
            result["failed"] = True
            lines = ["The inventory has %d problem(s); no host was contacted:" % len(problems)]
            lines.extend("%2d. %s" % (index, problem) for index, problem in enumerate(problems, 1))
            result["msg"] = "\n".join(lines)
        else:
            # The structured list only when the caller asked to handle problems itself: on
            # failure the numbered message says it all, once.
            result["problems"] = [problem.as_dict() for problem in problems]
            result["msg"] = "%d problem(s) found" % len(problems) if problems else \
                "inventory is valid (%d hosts)" % len(model.managed_hosts)
        return result

    def _resolve(self, value, task_vars):
        if value is None:
            return None
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        return templar.template(value)
