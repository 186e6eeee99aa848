# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway real control plane on loopback for integration tests (like controller-runtime's envtest).

etcd 3.6 (TLS with client certificates), one or more kube-apiserver replicas on the same etcd, and optionally
kube-controller-manager and kube-scheduler; all real binaries built by tests/harness/components.py. There is no
kubelet: :class:`FakeKubelet` does the kubelet's API-side work for Node objects a test creates (Lease heartbeats,
pod status, finishing graceful deletions).

Binaries: ``$BAREMETAL_KUBE_BIN_DIR`` / ``$BAREMETAL_ETCD_BIN_DIR`` when set, else the directories that
``components.py path kubernetes <version>`` / ``components.py path etcd`` print. Missing binaries raise
:class:`HarnessError` ("run make components"); nothing is skipped.

Every wait is bounded; :meth:`RealCluster.running` stops every process it started and removes its directory,
also when starting fails.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
KUBE_VERSION = os.environ.get("BAREMETAL_KUBE_VERSION", "1.36.3")
# The product's hardening flags (roles/control_plane/defaults/main.yml); audit logging is left out.
TLS_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)
APISERVER_HARDENING = ("--profiling=false", "--tls-min-version=VersionTLS12",
                       "--tls-cipher-suites=%s" % ",".join(TLS_CIPHER_SUITES), "--service-account-lookup=true")
# What the tests need from kube-controller-manager: ReplicaSet/DaemonSet pods, PDB status, node lifecycle
# (Ready=Unknown after missed heartbeats, NoSchedule taints), the default ServiceAccount pods need, and GC.
DEFAULT_CONTROLLERS = ("replicaset-controller", "daemonset-controller", "disruption-controller",
                       "node-lifecycle-controller", "serviceaccount-controller", "garbage-collector-controller")


class HarnessError(RuntimeError):
    pass


# -- binaries ------------------------------------------------------------------------------------

def component_bin_dir(component, env_var, version=None):
    """The bin directory of a built component, or HarnessError saying how to build it."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override)
        return path / "bin" if (path / "bin").is_dir() else path
    argv = [sys.executable, str(HERE / "components.py"), "path", component] + ([version] if version else [])
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError("cannot ask components.py for %s: %s (run make components, or set %s)"
                           % (component, exc, env_var)) from None
    if result.returncode != 0:
        raise HarnessError("%s is not built: %s (run make components, or set %s to a directory with the binaries)"
                           % (component, (result.stderr or result.stdout).strip(), env_var))
    return Path(result.stdout.strip()) / "bin"


def find_binary(directory, name, env_var):
    path = Path(directory) / name
    if not os.access(path, os.X_OK):
        raise HarnessError("%s not found in %s (run make components, or set %s)" % (name, directory, env_var))
    return str(path)


def kube_binary(name):
    return find_binary(component_bin_dir("kubernetes", "BAREMETAL_KUBE_BIN_DIR", KUBE_VERSION), name,
                       "BAREMETAL_KUBE_BIN_DIR")


def etcd_binary(name):
    return find_binary(component_bin_dir("etcd", "BAREMETAL_ETCD_BIN_DIR"), name, "BAREMETAL_ETCD_BIN_DIR")


# -- small helpers -------------------------------------------------------------------------------

def wait_for(predicate, timeout=30, interval=0.3, what="condition"):
    """Call ``predicate`` until it returns a true value (returned); AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("%s not met within %ss" % (what, timeout))
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def secretbox_config(*keys):
    """An EncryptionConfiguration for Secrets: secretbox with ``keys`` ((name, base64 secret), the first writes),
    then identity."""
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


def parse_metric(text, name):
    """[(labels dict, float value)] of one metric family in Prometheus text format (simple label values)."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        head, _sep, value = line.rpartition(" ")
        labels = {}
        if "{" in head:
            for pair in head[head.index("{") + 1:head.rindex("}")].split(","):
                if "=" in pair:
                    key, raw = pair.split("=", 1)
                    labels[key.strip()] = raw.strip().strip('"')
        samples.append((labels, float(value)))
    return samples


# -- PKI -----------------------------------------------------------------------------------------

def _name(cn, orgs=()):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())  # fast to make; every component accepts P-256


def make_ca(cn):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_cert(ca, cn, orgs=(), server=False, client=False, sans=()):
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                                      if client else [])
    builder = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    names = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data, mode=0o644):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as handle:
        handle.write(data)
    return str(path)


def write_pair(directory, base, pair):
    cert, key = pair
    os.makedirs(directory, exist_ok=True)
    return (_write(os.path.join(directory, base + ".crt"), pem_cert(cert)),
            _write(os.path.join(directory, base + ".key"), pem_key(key), 0o600))


# -- processes -----------------------------------------------------------------------------------

def _die_with_parent():
    """In the child before exec: SIGKILL it when the test process dies, even if teardown never runs."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


class Process:
    """One started binary with its log file; ``stop`` sends SIGTERM, then SIGKILL after ``grace`` seconds."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=25):
        try:
            with open(self.log_path, "rb") as handle:
                return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace=10, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


class Apiserver:
    def __init__(self, host, port, process):
        self.host = host
        self.port = port
        self.process = process

    @property
    def url(self):
        return "https://%s:%d" % (self.host, self.port)

    def stop(self, **kwargs):
        self.process.stop(**kwargs)


class RealCluster:
    """etcd + ``replicas`` kube-apiservers (replica i on 127.0.0.<i+1>) [+ kube-controller-manager, kube-scheduler].

    ``node_monitor_grace_period`` (seconds) is the controller manager's: how long a Node may miss heartbeats
    before the node lifecycle controller marks it Ready=Unknown.
    """

    def __init__(self, workdir, replicas=1, encryption_config=None, controller_manager=False, scheduler=False,
                 controllers=DEFAULT_CONTROLLERS, node_monitor_grace_period=8, start_timeout=150):
        self.workdir = str(workdir)
        self.replicas = replicas
        self.encryption_config = str(encryption_config) if encryption_config else None
        self.with_controller_manager = controller_manager
        self.with_scheduler = scheduler
        self.controllers = controllers
        self.node_monitor_grace_period = node_monitor_grace_period
        self.start_timeout = start_timeout
        self.pki = os.path.join(self.workdir, "pki")
        self.servers = []
        self.processes = []
        self.kubeconfigs = []
        self.etcd = None

    # -- start ---------------------------------------------------------------------------------
    def _make_pki(self):
        etcd_ca = make_ca("etcd-ca")
        self.etcd_ca_file, _dummy = write_pair(os.path.join(self.pki, "etcd"), "ca", etcd_ca)
        self.etcd_server = write_pair(os.path.join(self.pki, "etcd"), "server", make_cert(
            etcd_ca, "etcd-server", server=True, client=True, sans=["127.0.0.1", "localhost"]))
        self.etcd_client = write_pair(self.pki, "apiserver-etcd-client",
                                      make_cert(etcd_ca, "kube-apiserver-etcd-client", client=True))
        ca = make_ca("kubernetes")
        self.ca = ca
        self.ca_file, self.ca_key_file = write_pair(self.pki, "ca", ca)
        self.ca_pem = pem_cert(ca[0])
        sans = ["127.0.0.%d" % (i + 1) for i in range(8)] + [
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "10.96.0.1"]
        self.serving = write_pair(self.pki, "apiserver", make_cert(ca, "kube-apiserver", server=True, sans=sans))
        admin_cert, admin_key = make_cert(ca, "kubernetes-admin", orgs=["system:masters"], client=True)
        self.admin = (pem_cert(admin_cert), pem_key(admin_key))
        self.admin_files = write_pair(self.pki, "admin", (admin_cert, admin_key))
        sa_key = _key()
        self.sa_key = _write(os.path.join(self.pki, "sa.key"), pem_key(sa_key), 0o600)
        self.sa_pub = _write(os.path.join(self.pki, "sa.pub"), sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _ssl_context(self, cafile, cert):
        context = ssl.create_default_context(cafile=cafile)
        context.load_cert_chain(*cert)
        return context

    def _get(self, url, context, timeout=3):
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()

    def _wait_ready(self, process, url, context, what, timeout=None):
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = None
        while time.monotonic() < deadline:
            if not process.alive():
                raise HarnessError("%s exited with %s:\n%s" % (what, process.proc.returncode, process.log_tail()))
            try:
                status, body = self._get(url, context)
                if status == 200:
                    return
                last = "HTTP %d %s" % (status, body[:200])
            except urllib.error.HTTPError as exc:
                last = "HTTP %d %s" % (exc.code, exc.read()[-300:])
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise HarnessError("%s not ready within %ss (last answer: %s):\n%s"
                           % (what, timeout or self.start_timeout, last, process.log_tail()))

    def start_etcd(self):
        self.etcd_port = free_port()
        peer = free_port()
        self.etcd_url = "https://127.0.0.1:%d" % self.etcd_port
        cert, key = self.etcd_server
        argv = [etcd_binary("etcd"), "--name", "default", "--data-dir", os.path.join(self.workdir, "etcd-data"),
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
                "--initial-cluster", "default=http://127.0.0.1:%d" % peer,
                "--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", self.etcd_ca_file,
                "--listen-metrics-urls", "http://127.0.0.1:%d" % free_port(), "--log-level", "warn",
                "--unsafe-no-fsync"]  # a throwaway member: fsync only slows the tests down
        self.etcd = Process("etcd", argv, os.path.join(self.workdir, "etcd.log"))
        self.processes.append(self.etcd)
        self._wait_ready(self.etcd, self.etcd_url + "/health",
                         self._ssl_context(self.etcd_ca_file, self.etcd_client), "etcd", timeout=60)

    def apiserver_argv(self, host, port, encryption_config=None, extra=()):
        cert, key = self.serving
        argv = [kube_binary("kube-apiserver"), "--advertise-address=%s" % host, "--bind-address=%s" % host,
                "--secure-port=%d" % port, "--tls-cert-file=%s" % cert, "--tls-private-key-file=%s" % key,
                "--client-ca-file=%s" % self.ca_file, "--etcd-servers=%s" % self.etcd_url,
                "--etcd-cafile=%s" % self.etcd_ca_file, "--etcd-certfile=%s" % self.etcd_client[0],
                "--etcd-keyfile=%s" % self.etcd_client[1], "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/12",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file=%s" % self.sa_pub, "--service-account-signing-key-file=%s" % self.sa_key,
                "--enable-priority-and-fairness=false", *APISERVER_HARDENING]
        encryption_config = encryption_config or self.encryption_config
        if encryption_config:
            argv += ["--encryption-provider-config=%s" % encryption_config,
                     "--encryption-provider-config-automatic-reload=true"]
        return argv + list(extra)

    def start_apiserver(self, index, encryption_config=None, extra=(), wait=True, port=None):
        """Start a kube-apiserver on 127.0.0.<index+1> (a free port unless ``port``) with this cluster's flags.
        Not added to ``servers``; the caller stops it (``running`` also stops it)."""
        host = "127.0.0.%d" % (index + 1)
        port = port or free_port(host)
        process = Process("kube-apiserver-%d" % index, self.apiserver_argv(host, port, encryption_config, extra),
                          os.path.join(self.workdir, "kube-apiserver-%d.log" % index))
        self.processes.append(process)
        server = Apiserver(host, port, process)
        if wait:
            self.wait_apiserver(server)
        return server

    def wait_apiserver(self, server, timeout=None):
        self._wait_ready(server.process, server.url + "/readyz",
                         self._ssl_context(self.ca_file, self.admin_files), server.process.name, timeout=timeout)

    def _write_kubeconfig(self, name, server_url):
        path = os.path.join(self.workdir, name)
        _write(path, kubeconfig(server_url, self.ca_pem, *self.admin).encode(), 0o600)
        return path

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        self._make_pki()
        self.start_etcd()
        # All replicas start together (their start-up is CPU-bound and long); then each is waited for.
        self.servers = [self.start_apiserver(index, wait=False) for index in range(self.replicas)]
        for server in self.servers:
            self.wait_apiserver(server)
        self.kubeconfigs = [self._write_kubeconfig("kubeconfig-%d" % index, server.url)
                            for index, server in enumerate(self.servers)]
        if self.with_controller_manager:
            grace = self.node_monitor_grace_period
            # csrsigning issues the certificates of approved requests with the cluster CA, as kubeadm sets it up.
            signs = {"csrsigning", "certificatesigningrequest-signing-controller"} & set(self.controllers)
            signing = (["--cluster-signing-cert-file=%s" % self.ca_file,
                        "--cluster-signing-key-file=%s" % self.ca_key_file] if signs else [])
            self.controller_manager = self._start_component("kube-controller-manager", [
                "--controllers=%s" % ",".join(self.controllers), "--node-monitor-period=1s",
                "--node-monitor-grace-period=%ss" % grace, "--terminated-pod-gc-threshold=1000",
                "--concurrent-replicaset-syncs=5", *signing])
        if self.with_scheduler:
            self.scheduler = self._start_component("kube-scheduler", [])
        return self

    def user_kubeconfig(self, user, groups=(), server_index=0):
        """A kubeconfig (written to the work directory) with a client certificate from the cluster CA for ``user``
        in ``groups``, e.g. a kubelet's credentials: user system:node:<name>, group system:nodes."""
        cert, key = make_cert(self.ca, user, orgs=groups, client=True)
        path = os.path.join(self.workdir, "kubeconfig-%s" % user.replace(":", "-"))
        _write(path, kubeconfig(self.servers[server_index].url, self.ca_pem, pem_cert(cert), pem_key(key),
                                user=user.replace(":", "-")).encode(), 0o600)
        return path

    def _start_component(self, name, args):
        argv = [kube_binary(name), "--kubeconfig=%s" % self.kubeconfigs[0], "--leader-elect=false",
                "--profiling=false", "--secure-port=0", *args]
        process = Process(name, argv, os.path.join(self.workdir, "%s.log" % name))
        self.processes.append(process)
        time.sleep(1)
        if not process.alive():
            raise HarnessError("%s exited with %s:\n%s" % (name, process.proc.returncode, process.log_tail()))
        return process

    def stop(self):
        # Controllers first, then apiservers, etcd last.
        for process in reversed(self.processes):
            process.stop()

    @contextlib.contextmanager
    def running(self):
        """Start the cluster; always stop every process and remove the directory afterwards."""
        try:
            yield self.start()
        finally:
            self.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- what tests use ------------------------------------------------------------------------
    def server_url(self, index):
        return self.servers[index].url

    def stop_replica(self, index):
        self.servers[index].stop()

    def restart_replica(self, index):
        """Stop replica ``index`` and start it again on the same address and port (kubeconfigs stay valid); it
        reads its flags and files anew, e.g. the encryption config, as after a static pod restart."""
        self.servers[index].stop()
        self.servers[index] = self.start_apiserver(index, port=self.servers[index].port)
        return self.servers[index]

    def read_encryption(self):
        with open(self.encryption_config) as handle:
            return handle.read()

    def write_encryption(self, text):
        """Replace the file atomically (as the encryption role's copy does): the apiserver never reads half."""
        tmp = self.encryption_config + ".tmp"
        _write(tmp, text.encode(), 0o600)
        os.replace(tmp, self.encryption_config)

    def metrics(self, server):
        """The /metrics text of an Apiserver (admin credentials)."""
        _status, body = self._get(server.url + "/metrics", self._ssl_context(self.ca_file, self.admin_files),
                                  timeout=10)
        return body.decode()

    def encryption_hash(self, server):
        """The hash label of apiserver_encryption_config_controller_last_config_info, or None."""
        samples = parse_metric(self.metrics(server), "apiserver_encryption_config_controller_last_config_info")
        return samples[0][0].get("hash") if samples else None

    def reload_count(self, server, status):
        samples = parse_metric(self.metrics(server), "apiserver_encryption_config_controller_automatic_reloads_total")
        return sum(value for labels, value in samples if labels.get("status") == status)

    def etcdctl(self, *args):
        return subprocess.run([etcd_binary("etcdctl"), "--endpoints", self.etcd_url, "--cacert", self.etcd_ca_file,
                               "--cert", self.etcd_client[0], "--key", self.etcd_client[1], *args],
                              capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=30,
                              check=True).stdout


# -- the kubelet's API-side work -----------------------------------------------------------------

def now_rfc3339(offset=0.0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_body(name, ip, kubelet="v%s" % KUBE_VERSION, unschedulable=False, ready=True, heartbeat_age=0):
    """A Node as a kubelet registers it (status included; the API keeps a Node's status on create)."""
    stamp = now_rfc3339(-heartbeat_age)
    ready_cond = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                  "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp,
                  "lastTransitionTime": stamp}
    if not ready:
        ready_cond.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    conditions = [{"type": kind, "status": "False", "reason": "KubeletHas" + reason, "message": "ok",
                   "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
                  for kind, reason in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                                       ("PIDPressure", "SufficientPID"))]
    resources = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "50Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [*conditions, ready_cond], "addresses": [{"type": "InternalIP", "address": ip}],
                       "capacity": resources, "allocatable": resources,
                       "nodeInfo": {"kubeletVersion": kubelet, "operatingSystem": "linux", "architecture": "amd64",
                                    "containerRuntimeVersion": "containerd://2.0.0", "kernelVersion": "6.1.0",
                                    "osImage": "test", "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                                    "bootID": ""}}}


class FakeKubelet:
    """The API-side work of kubelets for the Nodes in ``nodes`` (none of them runs a real kubelet).

    A bounded background thread (at most ``lifetime`` seconds), every ``interval`` seconds: renews each node's
    Lease in kube-node-lease every ``lease_interval`` seconds (the heartbeat the node lifecycle controller
    watches; a real kubelet renews every 10 s of a 40 s lease); reports pods bound to the
    nodes as Running and Ready through the status subresource; deletes with gracePeriodSeconds=0 the pods with a
    deletionTimestamp (containers "stopped"), which is what lets a graceful deletion finish.
    ``stop_node`` ends one node's heartbeats, as when its kubelet is killed.
    """

    def __init__(self, client, interval=0.5, lease_interval=2.0, lifetime=900):
        self.api = client
        self.interval = interval
        self.lease_interval = lease_interval
        self.lifetime = lifetime
        self.nodes = {}
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._ip = 100

    def add_node(self, name, ip=None, register=True, **node_args):
        """Register the Node (POST with kubelet-like status) and start heartbeating it."""
        if ip is None:
            self._ip += 1
            ip = "10.0.0.%d" % self._ip
        if register:
            self.api.request("POST", "/api/v1/nodes", body=node_body(name, ip, **node_args))
        self._renew(name)
        with self._lock:
            self.nodes[name] = {"ip": ip, "heartbeat": True, "renewed": time.monotonic()}
        return name

    def stop_node(self, name):
        with self._lock:
            self.nodes[name]["heartbeat"] = False

    def forget_node(self, name):
        with self._lock:
            self.nodes.pop(name, None)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(15)

    def _renew(self, name):
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/%s" % name
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}}
        try:
            self.api.patch(path, {"spec": body["spec"]}, retries=0)
        except Exception as exc:  # K8sApiError; the first renewal creates the Lease
            if getattr(exc, "code", None) != 404:
                raise
            self.api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=body,
                             retries=0)

    def _pod_status(self, pod, ip):
        stamp = now_rfc3339()
        start = (pod.get("status") or {}).get("startTime") or stamp
        conditions = [{"type": kind, "status": "True", "lastTransitionTime": stamp}
                      for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready",
                                   "PodScheduled")]
        containers = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "started": True,
                       "restartCount": 0, "containerID": "containerd://%032x" % index,
                       "state": {"running": {"startedAt": start}}}
                      for index, c in enumerate(pod["spec"]["containers"])]
        return {"status": {"phase": "Running", "conditions": conditions, "hostIP": ip, "hostIPs": [{"ip": ip}],
                           "podIP": ip, "podIPs": [{"ip": ip}], "startTime": start, "containerStatuses": containers}}

    def sync_once(self):
        with self._lock:
            nodes = {name: dict(info) for name, info in self.nodes.items()}
        for name, info in nodes.items():
            if info["heartbeat"] and time.monotonic() - info["renewed"] >= self.lease_interval:
                self._renew(name)
                with self._lock:
                    if name in self.nodes:
                        self.nodes[name]["renewed"] = time.monotonic()
        for pod in self.api.list_all("/api/v1/pods"):
            node = pod["spec"].get("nodeName")
            if node not in nodes:
                continue
            meta = pod["metadata"]
            path = "/api/v1/namespaces/%s/pods/%s" % (meta["namespace"], meta["name"])
            if meta.get("deletionTimestamp"):
                with contextlib.suppress(Exception):  # already gone, or a newer pod took the name
                    self.api.request("DELETE", path, body={"gracePeriodSeconds": 0,
                                                           "preconditions": {"uid": meta["uid"]}}, retries=0)
            elif nodes[node]["heartbeat"] and (pod.get("status") or {}).get("phase") != "Running":
                with contextlib.suppress(Exception):  # deleted meanwhile
                    self.api.patch(path + "/status", self._pod_status(pod, nodes[node]["ip"]), retries=0)

    def _run(self):
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.sync_once()
            except Exception as exc:  # keep heartbeating through a transient apiserver error
                self.errors.append(repr(exc))
                del self.errors[:-20]
            self._stop.wait(self.interval)
