#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_health
short_description: Report the health of every etcd member over mutual TLS, optionally waiting for it
version_added: 0.1.0
description:
  - Asks every endpoint for its status (member and cluster ID, leader, raft term and index, database size,
    version), its health (a linearizable read) and the cluster's alarms (C(NOSPACE), C(CORRUPT)), and returns
    one entry per endpoint with a precise reason for every member that is not healthy.
  - When an endpoint does not answer at all, the module probes its TCP port to say why
    (connection refused, i.e. etcd is not running; a timeout, i.e. the host or network is down).
  - With I(wait=true) it polls every I(wait_sleep) seconds until every member is healthy or I(wait_timeout)
    expires.
  - "Why C(etcdctl) and not the v3 JSON gateway: the role installs etcdctl on every member, it speaks gRPC
    with the same TLS code as etcd (no second TLS client to keep in step), it reports per-endpoint errors
    for the endpoints it cannot reach, and the C(etcd_snapshot) module needs it anyway for the snapshot
    stream, which the gateway does not offer. The gateway would also require base64 round trips and a
    Python TLS client on hosts that have none."
  - Read-only, so it behaves the same in check mode.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
requirements:
  - etcdctl (v3 API; etcd 3.4 or later) on the host that runs the module
options:
  # Described by the wait doc fragment; this module's defaults (wait_sleep was a fixed 2 seconds before):
  wait:
    default: false
  wait_timeout:
    default: 120
  wait_sleep:
    default: 2
  fail_on_unhealthy:
    description:
      - Fail, listing every unhealthy member and its reason, when the cluster is not healthy (after waiting,
        with I(wait=true)).
      - With C(false) the report is returned either way, for example to assert on a degraded cluster.
    type: bool
    default: true
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
  - baremetal.kubernetes.etcd_client
  - baremetal.kubernetes.wait
seealso:
  - module: baremetal.kubernetes.etcd_snapshot
"""

EXAMPLES = r"""
- name: Wait until the whole cluster is healthy after restarting a member
  baremetal.kubernetes.etcd_health:
    endpoints: "{{ groups['etcd'] | map('extract', hostvars) | map(attribute='etcd_client_url') | list }}"
    wait: true
    wait_timeout: 120

- name: Report a degraded cluster without failing
  baremetal.kubernetes.etcd_health:
    endpoints:
      - https://10.0.0.11:2379
      - https://10.0.0.12:2379
      - https://10.0.0.13:2379
    fail_on_unhealthy: false
  register: etcd

- name: Show why a member is down
  ansible.builtin.debug:
    msg: "{{ etcd.problems }}"
"""

RETURN = r"""
healthy:
  description: Every member answered, is healthy, has no alarm, and all agree on one leader.
  returned: always
  type: bool
  sample: false
has_quorum:
  description: At least a quorum of the given endpoints is healthy and agrees on a leader (writes succeed).
  returned: always
  type: bool
healthy_count:
  description: Number of healthy members.
  returned: always
  type: int
  sample: 2
member_count:
  description: Number of endpoints checked.
  returned: always
  type: int
  sample: 3
leader:
  description: Member ID (hex) of the leader the healthy members agree on; empty when there is none.
  returned: always
  type: str
  sample: bdaa3f5c1d4b2e1a
alarms:
  description: Alarms raised anywhere in the cluster (C(NOSPACE), C(CORRUPT)).
  returned: always
  type: list
  elements: str
problems:
  description: "One line per problem, C(<endpoint>: <reason>)."
  returned: always
  type: list
  elements: str
  sample:
    - "https://10.0.0.12:2379: connection refused on 10.0.0.12:2379: nothing listens there (etcd is stopped or crashed)"
members:
  description: One entry per endpoint, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    endpoint:
      description: The endpoint URL.
      type: str
    healthy:
      description: Whether this member is healthy.
      type: bool
    reason:
      description: Why the member is not healthy; empty when it is.
      type: str
    member_id:
      description: Member ID (hex). Absent when the member did not answer.
      type: str
    cluster_id:
      description: Cluster ID (hex).
      type: str
    leader_id:
      description: The leader this member follows (hex).
      type: str
    is_leader:
      description: Whether this member is the leader.
      type: bool
    version:
      description: etcd server version.
      type: str
    db_size:
      description: Database size in bytes.
      type: int
    db_size_in_use:
      description: Bytes of the database in use (the rest is freed by defragmentation).
      type: int
    revision:
      description: Current store revision.
      type: int
    raft_term:
      description: Raft term.
      type: int
    raft_index:
      description: Raft index.
      type: int
    raft_applied_index:
      description: Applied raft index.
      type: int
    alarms:
      description: Alarms raised on this member.
      type: list
      elements: str
cluster_members:
  description: The member list as the cluster sees it (includes members that were added but have not started).
  returned: when at least one endpoint answered
  type: list
  elements: dict
  contains:
    id:
      description: Member ID (hex).
      type: str
    name:
      description: Member name; empty until the member has started.
      type: str
    peer_urls:
      description: Peer URLs.
      type: list
      elements: str
    client_urls:
      description: Client URLs.
      type: list
      elements: str
waited:
  description: Seconds spent waiting (0 without I(wait)).
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._etcd import (
    ETCD_CLIENT_ARGUMENT_SPEC,
    EtcdCtl,
    collect_health,
    parse_member_list,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    poll,
    wait_argument_spec,
)


def check(module, ctl):
    params = module.params
    polled = poll(lambda: collect_health(ctl, params["endpoints"]), lambda report: report["healthy"],
                  params["wait"], Deadline(params["wait_timeout"]), params["wait_sleep"])
    report = polled.result
    report["waited"] = round(polled.waited, 1) if params["wait"] else 0.0
    reachable = [m["endpoint"] for m in report["members"] if "member_id" in m]
    if reachable:
        rc, out, _err = ctl.run(reachable, ["member", "list", "-w", "json"], check=False)
        if rc == 0:
            report["cluster_members"] = parse_member_list(out)[1]
    return report


def main():
    argument_spec = dict(ETCD_CLIENT_ARGUMENT_SPEC)
    argument_spec.update(wait_argument_spec(timeout=120, sleep=2))
    argument_spec.update(fail_on_unhealthy=dict(type="bool", default=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_wait_options(module)
    try:
        report = check(module, EtcdCtl(module))
    except Exception as exc:  # every failure ends here, in the one fail_json of the module
        fail_from_error(module, exc, "etcd_health")
    if not report["healthy"] and module.params["fail_on_unhealthy"]:
        waited = " after waiting %.0f s" % report["waited"] if module.params["wait"] else ""
        module.fail_json(
            msg="etcd is not healthy%s (%d of %d members healthy): %s"
            % (waited, report["healthy_count"], report["member_count"], "; ".join(report["problems"])),
            changed=False,
            **report
        )
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
