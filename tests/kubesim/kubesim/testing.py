# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway local cluster for tests: TLS etcd on loopback + kubesim replicas + a kubeconfig."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request

from . import pki
from .server import ApiServer


def wait_for(predicate, timeout=30, interval=0.3, what="condition"):
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return that value.

    Bounded: raises AssertionError naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("%s not met within %ss" % (what, timeout))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secretbox_config(*keys):
    """An EncryptionConfiguration (apiserver.config.k8s.io/v1) for Secrets: secretbox with ``keys`` (name, base64
    secret) in order, the first writing, and identity last."""
    return ("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
            "- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n%s  - identity: {}\n"
            % "".join("      - name: %s\n        secret: %s\n" % key for key in keys))


def kubeconfig(server, ca_pem, cert_pem, key_pem, user="kubernetes-admin"):
    def b64(data):
        return base64.b64encode(data).decode()

    return ("apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: %s\n"
            "    certificate-authority-data: %s\ncontexts:\n- name: %s@kubernetes\n  context:\n"
            "    cluster: kubernetes\n    user: %s\ncurrent-context: %s@kubernetes\nusers:\n- name: %s\n  user:\n"
            "    client-certificate-data: %s\n    client-key-data: %s\n"
            % (server, b64(ca_pem), user, user, user, user, b64(cert_pem), b64(key_pem)))


class LocalCluster:
    """etcd (one member, TLS, loopback, random ports) and ``replicas`` kubesim apiservers."""

    def __init__(self, workdir, replicas=1, encryption_config=None, etcd_binary="/usr/bin/etcd", version=None,
                 **server_options):
        self.workdir = workdir
        self.replicas = replicas
        self.encryption_config = encryption_config
        self.etcd_binary = etcd_binary
        self.version = version
        # Passed to ApiServer. Nodes in these tests have no kubelet, so node lifecycle (NotReady after missed
        # heartbeats) is off unless a test asks for it with node_monitor_grace_period=<seconds>.
        server_options.setdefault("node_monitor_grace_period", None)
        self.server_options = server_options
        self.etcd_proc = None
        self.etcd_log = None
        self.servers = []
        self.pki = os.path.join(workdir, "pki")

    def _pki(self):
        etcd_ca = pki.make_ca("etcd-ca")
        ca = pki.make_ca("kubernetes")
        self.etcd_ca_file, _dummy = pki.write_pair(os.path.join(self.pki, "etcd"), "ca", etcd_ca)
        self.etcd_server = pki.write_pair(os.path.join(self.pki, "etcd"), "server",
                                          pki.make_cert(etcd_ca, "etcd", server=True, client=True,
                                                        sans=["127.0.0.1", "localhost"]))
        self.etcd_client = pki.write_pair(self.pki, "apiserver-etcd-client",
                                          pki.make_cert(etcd_ca, "kube-apiserver-etcd-client", client=True))
        self.ca_file, _dummy = pki.write_pair(self.pki, "ca", ca)
        self.serving = pki.write_pair(self.pki, "apiserver", pki.make_cert(
            ca, "kube-apiserver", server=True, sans=["127.0.0.1", "localhost", "kubernetes"]))
        admin_cert, admin_key = pki.make_cert(ca, "kubernetes-admin", orgs=["kubeadm:cluster-admins"], client=True)
        self.admin = (pki.pem_cert(admin_cert), pki.pem_key(admin_key))
        self.ca = ca

    def start_etcd(self):
        self.etcd_port = free_port()
        peer = free_port()
        self.etcd_url = "https://127.0.0.1:%d" % self.etcd_port
        data = os.path.join(self.workdir, "etcd-data")
        cert, key = self.etcd_server
        self.etcd_log = open(os.path.join(self.workdir, "etcd.log"), "wb")  # noqa: SIM115 (closed in stop)
        self.etcd_proc = subprocess.Popen(
            [self.etcd_binary, "--name", "default", "--data-dir", data,
             "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-cluster", "default=http://127.0.0.1:%d" % peer,
             "--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", self.etcd_ca_file,
             "--listen-metrics-urls", "http://127.0.0.1:%d" % free_port()],
            stdout=self.etcd_log, stderr=subprocess.STDOUT)
        self.wait_etcd()

    def wait_etcd(self, timeout=20):
        import ssl

        context = ssl.create_default_context(cafile=self.etcd_ca_file)
        context.load_cert_chain(*self.etcd_client)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=2, context=context) as resp:
                    if b"true" in resp.read():
                        return
            except OSError:
                pass
            if self.etcd_proc and self.etcd_proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("etcd did not become healthy; see %s/etcd.log" % self.workdir)

    def apiserver_argv(self, port):
        cert, key = self.serving
        argv = ["kube-apiserver", "--advertise-address=127.0.0.1", "--bind-address=127.0.0.1",
                "--secure-port=%d" % port, "--tls-cert-file=%s" % cert, "--tls-private-key-file=%s" % key,
                "--client-ca-file=%s" % self.ca_file, "--etcd-servers=%s" % self.etcd_url,
                "--etcd-cafile=%s" % self.etcd_ca_file, "--etcd-certfile=%s" % self.etcd_client[0],
                "--etcd-keyfile=%s" % self.etcd_client[1], "--enable-bootstrap-token-auth=true",
                "--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.96.0.0/12"]
        if self.encryption_config:
            argv += ["--encryption-provider-config=%s" % self.encryption_config,
                     "--encryption-provider-config-automatic-reload=true"]
        return argv

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        self._pki()
        self.start_etcd()
        kwargs = dict(self.server_options, **({"version": self.version} if self.version else {}))
        for _dummy in range(self.replicas):
            server = ApiServer(self.apiserver_argv(0), reload_interval=0.3, **kwargs)
            self.servers.append(server.start())
        self.kubeconfigs = []
        for index, server in enumerate(self.servers):
            path = os.path.join(self.workdir, "kubeconfig-%d" % index)
            with open(path, "w") as handle:
                handle.write(kubeconfig("https://127.0.0.1:%d" % server.port, pki.pem_cert(self.ca[0]), *self.admin))
            self.kubeconfigs.append(path)
        return self

    @contextlib.contextmanager
    def running(self):
        """``with cluster.running():`` start it, and always stop it and remove its files afterwards, also when
        starting or the body fails."""
        try:
            yield self.start()
        finally:
            self.stop()
            self.cleanup()

    # The interface the fidelity tests use, shared with RemoteCluster.
    def server_url(self, index):
        return "https://127.0.0.1:%d" % self.servers[index].port

    def stop_replica(self, index):
        self.servers[index].stop()

    def read_encryption(self):
        with open(self.encryption_config) as handle:
            return handle.read()

    def write_encryption(self, text):
        with open(self.encryption_config, "w") as handle:
            handle.write(text)

    def etcdctl(self, *args):
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(["etcdctl", "--endpoints", self.etcd_url, "--cacert", self.etcd_ca_file,
                               "--cert", self.etcd_client[0], "--key", self.etcd_client[1], *args],
                              capture_output=True, env=env, timeout=20, check=True).stdout

    def stop(self):
        for server in self.servers:
            server.stop()
        if self.etcd_proc and self.etcd_proc.poll() is None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd_proc.kill()
        if self.etcd_log:
            self.etcd_log.close()

    def cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


class RemoteCluster:
    """kubesim replicas already running on test nodes (molecule/etcd/kubesim_fidelity.yml), driven from the host.

    Same interface as LocalCluster for the fidelity tests. ``description`` is a JSON file written by the
    scenario: {"servers": [{"url", "container", "unit"}], "ca_file", "admin_cert", "admin_key",
    "encryption_path", "etcd": {"container", "endpoints", "cacert", "cert", "key"}}. Files on the nodes
    are reached with ``podman exec``; the host reaches the apiservers on the scenario network.
    """

    def __init__(self, description, workdir):
        import json

        with open(description) as handle:
            self.description = json.load(handle)
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ca_file = self.description["ca_file"]
        with open(self.description["admin_cert"], "rb") as cert, open(self.description["admin_key"], "rb") as key:
            self.admin = (cert.read(), key.read())
        with open(self.ca_file, "rb") as handle:
            ca_pem = handle.read()
        self.servers = self.description["servers"]
        self.kubeconfigs = []
        for index, server in enumerate(self.servers):
            path = os.path.join(workdir, "kubeconfig-%d" % index)
            with open(path, "w") as handle:
                handle.write(kubeconfig(server["url"], ca_pem, *self.admin))
            self.kubeconfigs.append(path)

    @staticmethod
    def _exec(container, *argv, stdin=None, timeout=60):
        return subprocess.run(["podman", "exec", "-i", container, *argv], input=stdin, capture_output=True,
                              timeout=timeout, check=True).stdout

    def server_url(self, index):
        return self.servers[index]["url"]

    def stop_replica(self, index):
        """SIGKILL, the harshest loss: nothing the replica held may be lost."""
        server = self.servers[index]
        self._exec(server["container"], "systemctl", "kill", "-s", "SIGKILL", server["unit"])

    def read_encryption(self):
        return self._exec(self.servers[0]["container"], "cat", self.description["encryption_path"]).decode()

    def write_encryption(self, text):
        """Every control-plane node gets the same file, as the encryption role writes it."""
        path = self.description["encryption_path"]
        for server in self.servers:
            self._exec(server["container"], "sh", "-c", 'cat > "$1.tmp" && mv "$1.tmp" "$1"', "sh", path,
                       stdin=text.encode())

    def etcdctl(self, *args):
        etcd = self.description["etcd"]
        return self._exec(etcd["container"], "env", "ETCDCTL_API=3", "etcdctl", "--endpoints", etcd["endpoints"],
                          "--cacert", etcd["cacert"], "--cert", etcd["cert"], "--key", etcd["key"], *args,
                          timeout=20)
