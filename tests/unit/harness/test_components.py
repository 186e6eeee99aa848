"""Every binary tests/harness/components.py built (make components) reports the version components.yml pins.

Without upstream's version ldflags a Kubernetes binary says v0.0.0-master and kubeadm's version checks fail;
these tests run the cached builds themselves, so a recipe that loses them fails here first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ROOT / "tests" / "harness"
VERSIONS = yaml.safe_load((HARNESS / "components.yml").read_text())


def built(name, version=None):
    args = [sys.executable, str(HARNESS / "components.py"), "path", name] + ([version] if version else [])
    found = subprocess.run(args, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.fail("%s %s is not built: run `make components` (%s)" % (name, version or "", found.stderr.strip()))
    return Path(found.stdout.strip()) / "bin"


def run(*argv):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("version", VERSIONS["kubernetes"])
def test_every_kubernetes_binary_reports_its_release(version):
    bin_dir = built("kubernetes", version)
    assert run(bin_dir / "kubeadm", "version", "-o", "short").strip() == "v" + version
    for name in ("kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert run(bin_dir / name, "--version").strip() == "Kubernetes v" + version, name
    client = yaml.safe_load(run(bin_dir / "kubectl", "version", "--client", "-o", "yaml"))["clientVersion"]
    assert client["gitVersion"] == "v" + version and client["gitTreeState"] == "clean"


def test_etcd_reports_its_release():
    bin_dir = built("etcd")
    assert "etcd Version: %s\n" % VERSIONS["etcd"] in run(bin_dir / "etcd", "--version")
    assert "etcdctl version: %s\n" % VERSIONS["etcd"] in run(bin_dir / "etcdctl", "version")
    assert "etcdutl version: %s\n" % VERSIONS["etcd"] in run(bin_dir / "etcdutl", "version")


def test_containerd_runc_and_crictl_report_their_releases():
    containerd = built("containerd")
    assert " v%s " % VERSIONS["containerd"] in run(containerd / "containerd", "--version")
    assert "Version:  v%s" % VERSIONS["containerd"] in run(containerd / "containerd-shim-runc-v2", "-v")
    runc = run(built("runc") / "runc", "--version")
    assert runc.startswith("runc version %s\n" % VERSIONS["runc"]) and "libseccomp" in runc
    for version in sorted(set(VERSIONS["cri_tools"].values())):
        assert run(built("cri-tools", version) / "crictl", "--version").strip() == "crictl version v" + version


def test_cni_plugins_coredns_and_registry_report_their_releases():
    bridge = subprocess.run([str(built("cni-plugins") / "bridge"), "--version"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "CNI bridge plugin v%s" % VERSIONS["cni_plugins"] in bridge.stdout + bridge.stderr
    for version in sorted(set(VERSIONS["coredns"].values())):
        assert "CoreDNS-%s" % version in run(built("coredns", version) / "coredns", "-version")
    assert "v%s" % VERSIONS["registry"] in run(built("registry") / "registry", "--version")


def test_flannel_and_the_cni_plugin_stand_in_report_their_releases(tmp_path):
    flannel = built("flannel")
    version = subprocess.run([str(flannel / "flanneld"), "--version"], capture_output=True, text=True, timeout=60,
                             check=True)
    assert (version.stdout + version.stderr).strip() == "v" + VERSIONS["flannel"]  # klog's flags: on stderr
    # install-conf is what the manifest's install-cni init container runs: it copies the CNI configuration.
    (tmp_path / "cni-conf.json").write_text('{"name": "cbr0"}\n')
    (tmp_path / "net.d").mkdir()  # a hostPath the kubelet made
    run(flannel / "install-conf", tmp_path / "cni-conf.json", tmp_path / "net.d" / "10-flannel.conflist")
    assert (tmp_path / "net.d" / "10-flannel.conflist").read_text() == '{"name": "cbr0"}\n'
    plugin = subprocess.run([str(built("flannel-cni-plugin") / "flannel"), "--version"], capture_output=True,
                            text=True, timeout=60, check=True)
    assert "CNI flannel plugin v%s" % VERSIONS["flannel_cni_plugin"] in plugin.stdout + plugin.stderr
