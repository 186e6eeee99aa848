# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/harness/packages.py: the pieces that need no built components (debs, signed index, tarballs, hashes)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[3] / "tests" / "harness"


def _load():
    sys.path.insert(0, str(HARNESS))
    spec = importlib.util.spec_from_file_location("harness_packages", HARNESS / "packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


packages = _load()
needs_dpkg = pytest.mark.skipif(not (shutil.which("dpkg-deb") and shutil.which("gpg")), reason="dpkg-deb and gpg")


def test_control_fields_follow_pkgs_k8s_io():
    text = packages.control_text("kubelet", "1.36.3-1.1")
    assert "Package: kubelet\nVersion: 1.36.3-1.1\nArchitecture: amd64\n" in text
    assert "Depends: iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1)" in text
    assert "Depends" not in packages.control_text("kubectl", "1.36.3-1.1")


def test_kubeadm_dropin_is_one_execstart_per_line():
    lines = packages.KUBEADM_DROPIN.splitlines()
    assert "ExecStart=" in lines
    assert lines[-1].startswith("ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS")
    assert any(line.startswith('Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=') and
               line.endswith('--kubeconfig=/etc/kubernetes/kubelet.conf"') for line in lines)


def test_tarball_is_deterministic_and_laid_out(tmp_path):
    binary = tmp_path / "etcd"
    binary.write_bytes(b"\x7fELF fake")
    entries = [("etcd-v1-linux-amd64", None, 0o755), ("etcd-v1-linux-amd64/etcd", binary, 0o755)]
    packages.tar_gz(tmp_path / "a.tar.gz", entries)
    packages.tar_gz(tmp_path / "b.tar.gz", entries)
    assert packages.sha256_file(tmp_path / "a.tar.gz") == packages.sha256_file(tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        member = tar.getmember("etcd-v1-linux-amd64/etcd")
        assert (member.mode, member.uid, member.mtime) == (0o755, 0, packages.EPOCH)
        assert tar.extractfile(member).read() == b"\x7fELF fake"


@needs_dpkg
def test_signed_flat_repository(tmp_path):
    work, repo = tmp_path / "work", tmp_path / "repo"
    work.mkdir()
    deb = packages.build_deb(work, repo / "amd64", "kubectl", "1.36.3-1.1",
                             {"/usr/bin/kubectl": ("#!/bin/sh\n", 0o755)})
    assert deb.name == "kubectl_1.36.3-1.1_amd64.deb"
    packages.write_index(repo)
    fingerprint = packages.make_key(work / "gnupg")
    packages.sign(repo, work / "gnupg", fingerprint)
    index = (repo / "Packages").read_text()
    assert "Filename: amd64/kubectl_1.36.3-1.1_amd64.deb" in index
    assert gzip.decompress((repo / "Packages.gz").read_bytes()).decode() == index
    assert hashlib.sha256((repo / "Packages").read_bytes()).hexdigest() in (repo / "Release").read_text()
    # apt's check: the dearmoured Release.key verifies InRelease and Release.gpg.
    keyring = tmp_path / "keyring.gpg"
    subprocess.run(["gpg", "--batch", "--dearmor", "-o", str(keyring), str(repo / "Release.key")], check=True)
    env = dict(os.environ, GNUPGHOME=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir(mode=0o700)
    for argv in (["gpgv", "--keyring", str(keyring), str(repo / "InRelease")],
                 ["gpgv", "--keyring", str(keyring), str(repo / "Release.gpg"), str(repo / "Release")]):
        subprocess.run(argv, check=True, capture_output=True, env=env)


def test_output_hash_covers_component_dirs_and_recipe(monkeypatch, tmp_path):
    monkeypatch.setattr(packages.components, "go_version", lambda: "go1.26.8")
    packages._MEMO.clear()
    first = packages.output_dir("etcd")
    assert first.parent == packages.OUT and first.name.startswith("etcd-")
    packages._MEMO.clear()
    monkeypatch.setattr(packages, "ETCD_README", "changed", raising=True)
    monkeypatch.setitem(packages.OUTPUTS, "etcd", (packages.build_etcd, ["etcd"], ["changed"], []))
    assert packages.output_dir("etcd") != first
    packages._MEMO.clear()


def test_the_served_flannel_manifest_is_the_one_the_cni_role_pins():
    """The file the site serves (the flannel module's, at components.yml's version) has the sha256 roles/cni pins
    for that version, and names the two images build_images makes."""
    import yaml

    root = HARNESS.parents[1]
    version = yaml.safe_load((HARNESS / "components.yml").read_text())["flannel"]
    pinned = yaml.safe_load((root / "roles" / "cni" / "vars" / "main.yml").read_text())["__cni_manifest_checksums"]
    manifest = packages.flannel_manifest(version)
    assert pinned["flannel"][version] == "sha256:" + packages.sha256_file(manifest)
    assert packages.FLANNEL_MANIFEST.format(version=version) == \
        "flannel-io/flannel/v%s/Documentation/kube-flannel.yml" % version
    flannel, plugin = packages.flannel_images(manifest, version)
    assert flannel == "ghcr.io/flannel-io/flannel:v" + version
    assert plugin.startswith("ghcr.io/flannel-io/flannel-cni-plugin:v")


def test_flannel_images_refuses_a_manifest_naming_other_images(tmp_path):
    manifest = tmp_path / "kube-flannel.yml"
    manifest.write_text(
        "kind: DaemonSet\nspec:\n  template:\n    spec:\n"
        "      initContainers: [{name: a, image: 'ghcr.io/flannel-io/flannel-cni-plugin:v1'}]\n"
        "      containers: [{name: b, image: 'ghcr.io/flannel-io/flannel:v0.1.0'},"
        " {name: c, image: 'docker.io/library/busybox:1'}]\n")
    with pytest.raises(SystemExit, match=r"docker\.io/library/busybox:1"):
        packages.flannel_images(manifest, "0.1.0")
    manifest.write_text(manifest.read_text().replace(", {name: c, image: 'docker.io/library/busybox:1'}", ""))
    assert packages.flannel_images(manifest, "0.1.0") == (
        "ghcr.io/flannel-io/flannel:v0.1.0", "ghcr.io/flannel-io/flannel-cni-plugin:v1")
