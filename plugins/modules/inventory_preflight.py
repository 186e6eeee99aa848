#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: inventory_preflight
short_description: Validate the cluster inventory on the controller before any host is contacted
version_added: 0.1.0
description:
  - Checks the inventory as data (groups, cluster-wide variables, per-host addresses) and reports
    B(every) problem at once, each naming the host, the variable and the fix.
  - Runs entirely on the controller as an action plugin. It never connects to a managed host and never
    reads facts, so a bad inventory fails before anything is changed.
  - Every playbook of the collection starts with a play on C(localhost) that runs this module.
  - "Rules: the C(etcd) group has 1, 3, 5 or 7 members; C(kube_control_plane) is not empty; a host in both
    C(kube_control_plane) and C(kube_node) sets C(k8s_control_plane_as_worker=true); node addresses
    (C(node_ip), else C(ansible_host)), SSH endpoints and node names are unique; C(k8s_api_vip) is a free
    address inside the C(node_network) of every load-balancer node; pod and service subnets are well formed
    and overlap neither each other nor a node network; C(k8s_version) is a supported X.Y.Z release;
    C(etcd_version) is semver; cluster-wide variables have the same value on every host."
  - The supported Kubernetes minor range is defined once, in the collection's C(_versions) module_utils.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
requirements:
  - netaddr (on the controller)
options:
  cluster:
    description:
      - Cluster-wide variables as the play resolves them (C(k8s_version), C(k8s_api_vip), C(k8s_api_port),
        C(k8s_pod_subnet), C(k8s_service_subnet), C(k8s_cluster_name), C(k8s_encryption_provider),
        C(k8s_encryption_resources), C(k8s_encryption_config_file), C(etcd_version)).
      - When omitted, each is read from the play's variables, which include the
        C(baremetal.kubernetes.cluster_defaults) role defaults when the play lists that role.
    type: dict
  fail_on_problems:
    description:
      - Fail the task when problems are found. With C(false) the problems are only returned.
    type: bool
    default: true
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
attributes:
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
"""

EXAMPLES = r"""
# In a play on localhost that lists the baremetal.kubernetes.cluster_defaults role:
- name: Refuse a bad inventory before any host is contacted
  baremetal.kubernetes.inventory_preflight:

- name: Collect the problems without failing, e.g. for a report
  baremetal.kubernetes.inventory_preflight:
    fail_on_problems: false
  register: preflight
"""

RETURN = r"""
problems:
  description:
    - Every problem found; empty when the inventory is valid.
    - On failure (the default) the problems are in the numbered C(msg) instead.
  returned: when I(fail_on_problems=false)
  type: list
  elements: dict
  contains:
    host:
      description: The inventory host, or C(cluster) for cluster-wide variables.
      type: str
    variable:
      description: The variable (or C(groups.<name>)) at fault.
      type: str
    message:
      description: What is wrong.
      type: str
    fix:
      description: How to fix it.
      type: str
  sample:
    - host: cluster
      variable: groups.etcd
      message: the group 'etcd' has 4 members (e1, e2, e3, e4), an even number. ...
      fix: put 1, 3, 5 or 7 hosts in the 'etcd' group (3 tolerates one failure, 5 tolerates two).
hosts_checked:
  description: How many managed hosts the rules looked at.
  returned: always
  type: int
  sample: 6
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    # The real work happens in the action plugin of the same name, on the controller.
    module = AnsibleModule(
        argument_spec=dict(cluster=dict(type="dict"), fail_on_problems=dict(type="bool", default=True)),
        supports_check_mode=True,
    )
    module.fail_json(msg="inventory_preflight runs on the controller through its action plugin; "
                         "call it as baremetal.kubernetes.inventory_preflight in a play.")


if __name__ == "__main__":
    main()
