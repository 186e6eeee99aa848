# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST SCAFFOLDING for molecule/etcd (kubesim_fidelity.yml): the cluster CA, one serving certificate for all
replicas, the admin client certificate and a secretbox EncryptionConfiguration, made once in OUTDIR (kept on
re-runs).

usage: kubesim_pki.py OUTDIR IP [IP...]
"""

import base64
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "kubesim"))

from kubesim import pki, testing


def main(outdir, ips):
    if os.path.exists(os.path.join(outdir, "encryption.yaml")):
        return 0
    ca = pki.make_ca("kubernetes")
    pki.write_pair(outdir, "ca", ca)
    pki.write_pair(outdir, "apiserver", pki.make_cert(ca, "kube-apiserver", server=True,
                                                      sans=["127.0.0.1", "localhost", "kubernetes", *ips]))
    pki.write_pair(outdir, "admin", pki.make_cert(ca, "kubernetes-admin", orgs=["kubeadm:cluster-admins"],
                                                  client=True))
    key = base64.b64encode(os.urandom(32)).decode()
    descriptor = os.open(os.path.join(outdir, "encryption.yaml"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w") as handle:
        handle.write(testing.secretbox_config(("key1", key)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
