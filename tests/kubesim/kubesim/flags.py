# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube-apiserver command lines: from argv or from the kube-apiserver static-pod manifest kubeadm writes.

Flag names and meanings: https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/
"""

from __future__ import annotations

# Flags kubesim models. Everything else is accepted, logged and ignored.
MODELLED = {
    "advertise-address": "",
    "bind-address": "0.0.0.0",
    "secure-port": "6443",
    "tls-cert-file": "",
    "tls-private-key-file": "",
    "client-ca-file": "",
    "etcd-servers": "",
    "etcd-cafile": "",
    "etcd-certfile": "",
    "etcd-keyfile": "",
    "etcd-prefix": "/registry",
    "encryption-provider-config": "",
    "encryption-provider-config-automatic-reload": "false",
    "enable-bootstrap-token-auth": "false",
    "anonymous-auth": "true",
}


class FlagError(ValueError):
    """A command line the real kube-apiserver would also reject."""


def parse_flags(argv):
    """Return (modelled, ignored) dicts from a kube-apiserver argv (program name optional)."""
    args = list(argv)
    if args and not args[0].startswith("-"):
        args = args[1:]
    modelled, ignored = dict(MODELLED), {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--"):
            raise FlagError("unexpected argument %r: kube-apiserver takes flags only" % arg)
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if index + 1 < len(args) and not args[index + 1].startswith("--"):
                value = args[index + 1]
                index += 1
            else:
                value = "true"
        if name in MODELLED:
            modelled[name] = value
        else:
            ignored[name] = value
        index += 1
    if not modelled["secure-port"].isdigit():
        raise FlagError('invalid argument "%s" for "--secure-port" flag' % modelled["secure-port"])
    for required in ("etcd-servers",):
        if not modelled[required]:
            raise FlagError("--%s must be specified" % required)
    if bool(modelled["tls-cert-file"]) != bool(modelled["tls-private-key-file"]):
        raise FlagError("--tls-cert-file and --tls-private-key-file must be given together")
    return modelled, ignored


def command_from_manifest(document):
    """The kube-apiserver container's command (+ args) from a static Pod manifest dict."""
    if not isinstance(document, dict) or document.get("kind") != "Pod":
        raise FlagError("manifest is not a Pod")
    for container in document.get("spec", {}).get("containers", []) or []:
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if container.get("name") == "kube-apiserver" or (command and command[0].endswith("kube-apiserver")):
            return command
    raise FlagError("manifest has no kube-apiserver container")


def rebase(argv, root):
    """Tests only: prefix absolute path values with KUBESIM_ROOT, so a manifest written for / runs in a temp dir."""
    if not root or root == "/":
        return list(argv)
    result = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and value.startswith("/") and not value.startswith(root):
            arg = "%s=%s/%s" % (name, root.rstrip("/"), value.lstrip("/"))
        result.append(arg)
    return result
