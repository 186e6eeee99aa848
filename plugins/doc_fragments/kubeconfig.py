# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of KUBECONFIG_ARGUMENT_SPEC in plugins/module_utils/_k8s_client.py, and the platform
    # attribute of the modules that take them (apiserver_encryption_status, cluster_health, k8s_drain,
    # k8s_storage_rewrite, kubelet_csr_approve).
    DOCUMENTATION = r"""
attributes:
  platform:
    support: full
    platforms: posix
    description: Runs on any host that can reach the apiservers, usually the first control-plane node.
options:
  kubeconfig:
    description:
      - Path of the kubeconfig on the target. Its server is the cluster endpoint unless I(api_server) is set.
      - Certificates and keys may be embedded (C(*-data), written to 0600 temporary files for the run and
        removed) or paths; a bearer token (C(token), C(tokenFile)) is supported. Exec and auth-provider
        plugins are not.
      - "YAML kubeconfigs need no PyYAML: without it a strict parser for the subset that kubeconfig writers
        emit is used."
    type: path
    default: /etc/kubernetes/admin.conf
  context:
    description: kubeconfig context; the current context when omitted.
    type: str
  api_server:
    description: Use this apiserver (C(host), C(host:port) or URL) instead of the kubeconfig's server.
    type: str
  validate_certs:
    description: Verify the apiserver certificates against the kubeconfig's CA.
    type: bool
    default: true
  request_timeout:
    description: Seconds for a single API request.
    type: int
    default: 10
"""
