# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local pkgs.k8s.io mirror: layout, signatures, and a real `apt-get install` on a Debian 12 node.

The node and the HTTP server are containers on this test's own podman network (10.123.50.0/24), labelled
baremetal.molecule.scenario=kubesim-mirror and removed afterwards, also on failure. The node gets the
dependencies of the shims (python3-yaml, python3-cryptography, python3-nacl) from Debian, like every node
in the harness.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from kubesim.mirror import MINORS, build

LABEL = "baremetal.molecule.scenario=kubesim-mirror"
NETWORK = "kubesim-mirror"
SUBNET = "10.123.50.0/24"
SERVER_IP = "10.123.50.2"
NODE_IP = "10.123.50.10"
IMAGE = "localhost/baremetal-node:debian12"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return str(build(str(tmp_path_factory.mktemp("mirror"))))


def repo(root, minor):
    return os.path.join(root, "core:", "stable:", "v%s" % minor, "deb")


def test_layout_is_one_flat_repository_per_minor(mirror):
    for minor in MINORS:
        debs = sorted(os.listdir(os.path.join(repo(mirror, minor), "amd64")))
        assert debs == sorted(["cri-tools_%s.0-1.1_amd64.deb" % minor] + [
            "%s_%s.%d-1.1_amd64.deb" % (tool, minor, patch) for tool in ("kubeadm", "kubectl", "kubelet")
            for patch in (1, 2)])
        with open(os.path.join(repo(mirror, minor), "Release")) as handle:
            release = handle.read()
        with open(os.path.join(repo(mirror, minor), "Packages"), "rb") as handle:
            packages = handle.read()
        assert " %s %d Packages\n" % (hashlib.sha256(packages).hexdigest(), len(packages)) in release


def test_release_signature_verifies_with_the_published_key(mirror, tmp_path):
    keyring = tmp_path / "kubernetes-apt-keyring.gpg"
    subprocess.run(["gpg", "--batch", "--dearmor", "-o", str(keyring),
                    os.path.join(repo(mirror, "1.36"), "Release.key")], check=True)
    verified = subprocess.run(["gpgv", "--keyring", str(keyring), os.path.join(repo(mirror, "1.36"), "InRelease")],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr
    tampered = tmp_path / "InRelease"
    with open(os.path.join(repo(mirror, "1.36"), "InRelease")) as handle:
        tampered.write_text(handle.read().replace("Label: kubesim", "Label: evil"))
    assert subprocess.run(["gpgv", "--keyring", str(keyring), str(tampered)], capture_output=True,
                          check=False).returncode != 0


def podman(*args, check=True, timeout=300):
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode:
        raise AssertionError("podman %s failed (%d): %s%s" % (" ".join(args), result.returncode, result.stdout,
                                                              result.stderr))
    return result


def cleanup():
    ids = podman("ps", "-aq", "--filter", "label=" + LABEL, check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False)
    podman("network", "rm", "-f", NETWORK, check=False)


@pytest.fixture
def lab(mirror, tmp_path):
    if not shutil.which("podman"):
        pytest.fail("podman is required (make deps)")
    if podman("image", "exists", IMAGE, check=False).returncode:
        pytest.fail("%s is missing: run make image" % IMAGE)
    # A copy of 1.35 whose InRelease was altered after signing: apt must refuse it.
    evil = os.path.join(mirror, "core:", "stable:", "v1.35-tampered", "deb")
    shutil.rmtree(evil, ignore_errors=True)
    shutil.copytree(repo(mirror, "1.35"), evil)
    with open(os.path.join(evil, "InRelease")) as handle:
        text = handle.read()
    with open(os.path.join(evil, "InRelease"), "w") as handle:
        handle.write(text.replace("Label: kubesim", "Label: evil"))
    cleanup()
    try:
        podman("network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK)
        podman("run", "-d", "--name", "kubesim-mirror-http", "--label", LABEL, "--network", NETWORK, "--ip", SERVER_IP,
               "-v", "%s:/srv:ro,Z" % mirror, IMAGE, "python3", "-m", "http.server", "8080", "--directory", "/srv")
        podman("run", "-d", "--name", "kubesim-mirror-node", "--label", LABEL, "--network", NETWORK, "--ip", NODE_IP,
               IMAGE, "sleep", "900")
        yield "http://%s:8080" % SERVER_IP
    finally:
        cleanup()


def node(script, check=True, timeout=300):
    return podman("exec", "kubesim-mirror-node", "bash", "-ec", script, check=check, timeout=timeout)


def test_apt_installs_from_the_mirror_with_signature_checked(lab):
    url = lab
    node("for i in $(seq 1 50); do curl -fsS -o /dev/null %s/ && exit 0; sleep 0.2; done; exit 1" % url)
    # Exactly the steps of the upstream install guide, with our URL and key.
    node("install -d -m 0755 /etc/apt/keyrings && curl -fsSL '%s/core:/stable:/v1.36/deb/Release.key' | "
         "gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg && echo 'deb [signed-by=/etc/apt/keyrings/"
         "kubernetes-apt-keyring.gpg] %s/core:/stable:/v1.36/deb/ /' > /etc/apt/sources.list.d/kubernetes.list"
         % (url, url))
    node("apt-get update -qq", timeout=300)
    policy = node("apt-cache policy kubeadm").stdout
    assert "1.36.2-1.1" in policy and "1.36.1-1.1" in policy
    node("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubeadm=1.36.1-1.1 "
         "kubelet=1.36.1-1.1 kubectl=1.36.1-1.1 >/dev/null", timeout=600)
    assert node("kubeadm version -o short").stdout.strip() == "v1.36.1"
    assert node("kubelet --version").stdout.strip() == "Kubernetes v1.36.1"
    assert "Client Version: v1.37.1" in node("kubectl version --client").stdout
    assert node("crictl --version").stdout.strip() == "crictl version v1.36.0"
    assert "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS" in node(
        "cat /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").stdout
    # A repository whose signed index was altered is refused.
    node("echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] %s/core:/stable:/v1.35-tampered/deb/ /'"
         " > /etc/apt/sources.list.d/tampered.list" % url)
    refused = node("apt-get update 2>&1", check=False)
    assert refused.returncode != 0 or "BADSIG" in refused.stdout or "not signed" in refused.stdout
    assert "v1.35-tampered" in refused.stdout and ("BADSIG" in refused.stdout or "invalid" in refused.stdout)
