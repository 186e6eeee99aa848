# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""usage: python -m kubesim kube-apiserver --flag=...
       python -m kubesim apiserver-manifest /etc/kubernetes/manifests/kube-apiserver.yaml
       python -m kubesim kubeadm <kubeadm arguments>
       python -m kubesim kubelet [--interval seconds] [--status-interval seconds]
       python -m kubesim mirror OUTDIR   (build the local pkgs.k8s.io mirror)"""

from __future__ import annotations

import logging
import os
import sys

from .flags import command_from_manifest, rebase
from .server import run
from .transformers import parse_yaml


def main(argv):
    if argv and argv[0] == "kubeadm":
        from .kubeadm_cli import main as kubeadm

        return kubeadm(argv[1:])
    if argv and argv[0] == "mirror":
        from .mirror import main as mirror

        return mirror(argv[1:])
    if argv and argv[0] == "kubelet":
        from .kubelet_shim import main as kubelet

        return kubelet(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if len(argv) >= 1 and argv[0] == "kube-apiserver":
        run(argv)
        return 0
    if len(argv) == 2 and argv[0] == "apiserver-manifest":
        with open(argv[1]) as handle:
            command = command_from_manifest(parse_yaml(handle.read()))
        run(rebase(command, os.environ.get("KUBESIM_ROOT", "/")))
        return 0
    sys.stderr.write(__doc__ + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
