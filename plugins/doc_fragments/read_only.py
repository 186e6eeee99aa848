# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # check_mode and diff_mode of the modules that only read (cluster_health, etcd_health, inventory_preflight).
    # Each module documents its own platform attribute.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
"""
