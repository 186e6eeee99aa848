# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import textwrap


class ModuleDocFragment:
    # The options of ETCD_CLIENT_ARGUMENT_SPEC in plugins/module_utils/_etcd.py, which etcd_health and
    # etcd_snapshot take at the top level. etcd_snapshot overrides endpoints (required only with
    # state=present). The platform attribute is shared by the modules that run etcdctl; it comes before
    # options so that ETCD_SUBOPTIONS below takes the options only.
    DOCUMENTATION = r"""
attributes:
  platform:
    support: full
    platforms: posix
    description: Runs on a host with etcdctl and an etcd client certificate, usually an etcd member.
options:
  endpoints:
    description: "Client URLs of the etcd members, for example C(https://10.0.0.11:2379)."
    type: list
    elements: str
    required: true
  cacert:
    description: CA certificate that signed the members' server certificates.
    type: path
    default: /etc/etcd/pki/ca.crt
  cert:
    description: Client certificate (the role's healthcheck client certificate).
    type: path
    default: /etc/etcd/pki/healthcheck-client.crt
  key:
    description: Private key of I(cert).
    type: path
    default: /etc/etcd/pki/healthcheck-client.key
  etcdctl:
    description: Name or path of the etcdctl binary.
    type: path
    default: etcdctl
  command_timeout:
    description: Seconds each etcdctl request may take.
    type: int
    default: 5
"""


# cluster_health takes the same options as the suboptions of its `etcd` dict option
# (`extends_documentation_fragment: baremetal.kubernetes.etcd_client.etcd_suboptions`; the module documents
# the option's own description and type). Ansible merges fragments into top-level options only, and
# ansible-test's yamllint reads the DOCUMENTATION strings above from the source, so the nested variant is
# derived here instead of being written out a second time. validate-modules checks the result against
# cluster_health's argument spec.
ModuleDocFragment.ETCD_SUBOPTIONS = "options:\n  etcd:\n    suboptions:\n" + textwrap.indent(
    ModuleDocFragment.DOCUMENTATION.split("options:\n", 1)[1], "    "
)
