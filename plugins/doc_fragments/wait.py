# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of wait_argument_spec() in plugins/module_utils/_wait.py (apiserver_encryption_status,
    # cluster_health, etcd_health, kubelet_csr_approve). The defaults differ per module and some modules keep an
    # older name as an alias, so each module's own DOCUMENTATION adds `default` and `aliases` to these entries
    # (Ansible merges a module's option keys over the fragment's). The module's description says what it waits for.
    DOCUMENTATION = r"""
options:
  wait:
    description:
      - Repeat the checks until they pass or I(wait_timeout) expires. Without it they run once.
    type: bool
  wait_timeout:
    description:
      - Seconds to keep repeating the checks with I(wait=true). The last attempt starts at this deadline at the
        latest.
      - Where an alias is listed, it is the option's former name in this module. It is deprecated and will be
        removed in release 1.0.0.
    type: int
  wait_sleep:
    description:
      - Seconds between two attempts with I(wait=true). The last pause ends at I(wait_timeout).
      - Where an alias is listed, it is the option's former name in this module. It is deprecated and will be
        removed in release 1.0.0.
    type: int
"""
