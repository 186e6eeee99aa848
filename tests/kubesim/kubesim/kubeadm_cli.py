# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubeadm shim: the CLI contract our roles use, writing the files real kubeadm writes.

Reference: https://kubernetes.io/docs/reference/setup-tools/kubeadm/ (flags, phases, output) and
https://kubernetes.io/docs/setup/best-practices/certificates/ (files). Exit codes: 0 success, 1 error
(every fatal kubeadm error, flag errors included, exits 1).
KUBESIM_ROOT prefixes every path (tests); the package installs with root "/".
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import shutil
import sys
import time

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from . import DEFAULT_VERSION, pki
from .client import Client, ClientError, kubeconfig_text
from .kubeadm_config import ConfigError, load

CERT_FILES = ["ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key",
              "etcd/ca.crt", "etcd/ca.key"]


# kubeadm retries its API calls for timeouts.kubernetesAPICall (default 1m).
API_CALL_RETRY_SECONDS = 60


class KubeadmError(Exception):
    pass


def root():
    return os.environ.get("KUBESIM_ROOT", "/")


def path(*parts):
    return os.path.join(root(), *[p.lstrip("/") for p in parts])


def version():
    """The package version: the .deb writes /usr/share/kubesim/VERSION."""
    if os.environ.get("KUBESIM_VERSION"):
        return os.environ["KUBESIM_VERSION"].lstrip("v")
    try:
        with open(path("/usr/share/kubesim/VERSION")) as handle:
            return handle.read().strip().lstrip("v")
    except OSError:
        return DEFAULT_VERSION


def minor(text):
    return tuple(int(p) for p in text.lstrip("v").split(".")[:3])


def write(file_path, content, mode=0o644):
    os.makedirs(os.path.dirname(file_path), exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(file_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(file_path, mode)


def read(file_path):
    with open(file_path, "rb") as handle:
        return handle.read()


def load_pair(base):
    cert = x509.load_pem_x509_certificate(read(path("/etc/kubernetes/pki", base + ".crt")))
    key = serialization.load_pem_private_key(read(path("/etc/kubernetes/pki", base + ".key")), None)
    return cert, key


def ca_hash(ca_cert):
    spki = ca_cert.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def arg_list(value):
    """v1beta4 extraArgs ([{name, value}]) or v1beta3 (map) -> [(name, value)]."""
    if isinstance(value, dict):
        return sorted(value.items())
    return [(a["name"], a["value"]) for a in value or []]


# --- config ---------------------------------------------------------------------------------------
class Config:
    def __init__(self, docs, node_name=None):
        self.docs = docs
        self.init = docs.get("InitConfiguration", {})
        self.join = docs.get("JoinConfiguration", {})
        self.cluster = docs.get("ClusterConfiguration", {})
        registration = (self.init or self.join).get("nodeRegistration") or {}
        self.node_name = registration.get("name") or node_name or os.uname().nodename.lower()
        endpoint = self.init.get("localAPIEndpoint") or (self.join.get("controlPlane") or {}).get(
            "localAPIEndpoint") or {}
        self.advertise = endpoint.get("advertiseAddress") or "127.0.0.1"
        self.port = int(endpoint.get("bindPort") or 6443)
        self.registration = registration

    @property
    def control_plane_endpoint(self):
        endpoint = self.cluster.get("controlPlaneEndpoint") or "%s:%d" % (self.advertise, self.port)
        return endpoint if ":" in endpoint.rsplit("]", 1)[-1] else "%s:%d" % (endpoint, self.port)


def read_config(file_name):
    try:
        with open(file_name) as handle:
            return load(handle.read())
    except OSError as exc:
        raise KubeadmError("unable to read config from \"%s\": %s" % (file_name, exc)) from exc
    except ConfigError as exc:
        raise KubeadmError(str(exc)) from exc


# --- files ----------------------------------------------------------------------------------------
def ensure_ca(base, cn):
    crt = path("/etc/kubernetes/pki", base + ".crt")
    if os.path.exists(crt):
        print("[certs] Using existing %s certificate authority" % base)
        return load_pair(base)
    pair = pki.make_ca(cn)
    pki.write_pair(os.path.dirname(crt), os.path.basename(base), pair)
    print("[certs] Generating \"%s\" certificate and key" % base)
    return pair


def write_certs(cfg):
    ca = ensure_ca("ca", "kubernetes")
    sans = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            cfg.node_name, "10.96.0.1", cfg.advertise, cfg.control_plane_endpoint.rsplit(":", 1)[0].strip("[]")]
    sans += list((cfg.cluster.get("apiServer") or {}).get("certSANs") or [])
    pki_dir = path("/etc/kubernetes/pki")
    pki.write_pair(pki_dir, "apiserver", pki.make_cert(ca, "kube-apiserver", server=True, sans=sans))
    print("[certs] apiserver serving cert is signed for DNS names and IPs %s" % sorted(set(sans)))
    pki.write_pair(pki_dir, "apiserver-kubelet-client", pki.make_cert(
        ca, "kube-apiserver-kubelet-client", orgs=["kubeadm:cluster-admins"], client=True))
    front = ensure_ca("front-proxy-ca", "front-proxy-ca")
    pki.write_pair(pki_dir, "front-proxy-client", pki.make_cert(front, "front-proxy-client", client=True))
    if not os.path.exists(os.path.join(pki_dir, "sa.key")):
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write(os.path.join(pki_dir, "sa.key"), pki.pem_key(key), 0o600)
        write(os.path.join(pki_dir, "sa.pub"), key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ca


def write_kubeconfigs(cfg, ca, worker_token=None):
    ca_pem = pki.pem_cert(ca[0])
    server = "https://%s" % cfg.control_plane_endpoint
    local = "https://%s:%d" % (cfg.advertise, cfg.port)
    files = {"admin.conf": ("kubernetes-admin", ["kubeadm:cluster-admins"], server),
             "super-admin.conf": ("kubernetes-super-admin", ["system:masters"], server),
             "kubelet.conf": ("system:node:%s" % cfg.node_name, ["system:nodes"], server),
             "controller-manager.conf": ("system:kube-controller-manager", [], local),
             "scheduler.conf": ("system:kube-scheduler", [], local)}
    for name, (user, orgs, url) in files.items():
        cert, key = pki.make_cert(ca, user, orgs=orgs, client=True)
        write(path("/etc/kubernetes", name), kubeconfig_text(url, ca_pem, user, pki.pem_cert(cert), pki.pem_key(key)),
              0o600)
        print("[kubeconfig] Writing \"%s\" kubeconfig file" % name)


def etcd_flags(cfg):
    external = (cfg.cluster.get("etcd") or {}).get("external")
    if not external:
        raise KubeadmError("kubesim models external etcd only (etcd.external in ClusterConfiguration)")
    return [("etcd-servers", ",".join(external["endpoints"])), ("etcd-cafile", external.get("caFile", "")),
            ("etcd-certfile", external.get("certFile", "")), ("etcd-keyfile", external.get("keyFile", ""))]


def static_pod(name, command, image, port, volumes=()):
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"component": name, "tier": "control-plane"},
                     "annotations": {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": port}
                     if name == "kube-apiserver" else {}},
        "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                 "containers": [{"name": name, "image": image, "command": command,
                                 "volumeMounts": [{"name": v["name"], "mountPath": v["mountPath"],
                                                   "readOnly": bool(v.get("readOnly"))} for v in volumes]}],
                 "volumes": [{"name": v["name"], "hostPath": {"path": v["hostPath"],
                                                              "type": v.get("pathType", "DirectoryOrCreate")}}
                             for v in volumes]},
    }, sort_keys=False)


# `kubeadm init phase control-plane <name>`: phase name -> static Pod name (cmd/kubeadm/app/constants).
CONTROL_PLANE_COMPONENTS = {"apiserver": "kube-apiserver", "controller-manager": "kube-controller-manager",
                            "scheduler": "kube-scheduler"}
ALL_COMPONENTS = tuple(CONTROL_PLANE_COMPONENTS.values())
MANIFEST_DIR = "/etc/kubernetes/manifests"


def write_manifests(cfg, kubernetes_version, components=ALL_COMPONENTS):
    """The static Pod manifests of ``components`` from cfg (ClusterConfiguration + local API endpoint).

    One function for init, join --control-plane, `init phase control-plane` and upgrade, as kubeadm's
    controlplane.CreateStaticPodFiles. The output is deterministic, so the same configuration rewrites a
    byte-identical file, which the kubelet does not restart.
    """
    pki_dir = "/etc/kubernetes/pki"
    repo = cfg.cluster.get("imageRepository") or "registry.k8s.io"
    tag = "v%s" % kubernetes_version.lstrip("v")
    manifests = path(MANIFEST_DIR)
    for name in components:
        print("[control-plane] Creating static Pod manifest for \"%s\"" % name)
        if name != "kube-apiserver":
            conf = {"kube-controller-manager": "controller-manager.conf", "kube-scheduler": "scheduler.conf"}[name]
            component = cfg.cluster.get(name.replace("kube-", "").replace("-manager", "Manager")) or {}
            extra = dict(arg_list(component.get("extraArgs")))
            command = [name, "--kubeconfig=/etc/kubernetes/%s" % conf] + ["--%s=%s" % i for i in sorted(extra.items())]
            write(os.path.join(manifests, name + ".yaml"),
                  static_pod(name, command, "%s/%s:%s" % (repo, name, tag), ""), 0o600)
            continue
        api = cfg.cluster.get("apiServer") or {}
        flags = [("advertise-address", cfg.advertise), ("allow-privileged", "true"),
                 ("authorization-mode", "Node,RBAC"), ("client-ca-file", pki_dir + "/ca.crt"),
                 ("enable-admission-plugins", "NodeRestriction"), ("enable-bootstrap-token-auth", "true"),
                 *etcd_flags(cfg),
                 ("kubelet-client-certificate", pki_dir + "/apiserver-kubelet-client.crt"),
                 ("kubelet-client-key", pki_dir + "/apiserver-kubelet-client.key"),
                 ("secure-port", str(cfg.port)),
                 ("service-account-issuer", "https://kubernetes.default.svc.cluster.local"),
                 ("service-account-key-file", pki_dir + "/sa.pub"),
                 ("service-account-signing-key-file", pki_dir + "/sa.key"),
                 ("service-cluster-ip-range",
                  (cfg.cluster.get("networking") or {}).get("serviceSubnet", "10.96.0.0/12")),
                 ("tls-cert-file", pki_dir + "/apiserver.crt"), ("tls-private-key-file", pki_dir + "/apiserver.key")]
        merged = dict(flags)
        merged.update(dict(arg_list(api.get("extraArgs"))))  # extra args override defaults
        command = ["kube-apiserver"] + ["--%s=%s" % item for item in sorted(merged.items())]
        write(os.path.join(manifests, "kube-apiserver.yaml"),
              static_pod("kube-apiserver", command, "%s/kube-apiserver:%s" % (repo, tag),
                         "%s:%d" % (cfg.advertise, cfg.port), api.get("extraVolumes") or []), 0o600)


def write_kubelet_config(cfg, kubelet_doc):
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
           "authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}, "anonymous": {"enabled": False},
                              "webhook": {"enabled": True}},
           "authorization": {"mode": "Webhook"}, "cgroupDriver": "systemd", "clusterDNS": ["10.96.0.10"],
           "clusterDomain": "cluster.local", "staticPodPath": "/etc/kubernetes/manifests",
           "rotateCertificates": True}
    doc.update({k: v for k, v in (kubelet_doc or {}).items() if k not in ("apiVersion", "kind")})
    write(path("/var/lib/kubelet/config.yaml"), yaml.safe_dump(doc, sort_keys=False))
    extra = arg_list(cfg.registration.get("kubeletExtraArgs"))
    if cfg.node_name != os.uname().nodename.lower():
        extra = [("hostname-override", cfg.node_name), *extra]
    args = " ".join("--%s=%s" % a for a in extra)
    write(path("/var/lib/kubelet/kubeadm-flags.env"), 'KUBELET_KUBEADM_ARGS="%s"\n' % args)
    print("[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"")


def kubelet_service(action):
    """systemctl <action> kubelet, as kubeadm does (kubelet-start phase, reset), when systemd runs this root.

    Under KUBESIM_ROOT (the unit tests' scratch root) or without systemd it returns False, as kubeadm only
    warns when it finds no supported init system.
    """
    import subprocess

    if root() != "/" or not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return False
    result = subprocess.run(["systemctl", action, "kubelet"], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        print("[kubelet] WARNING: systemctl %s kubelet failed: %s" % (action, result.stderr.strip()))
    return result.returncode == 0


def start_kubelet():
    if kubelet_service("restart"):
        print("[kubelet-start] Starting the kubelet")
    else:
        print("[kubelet-start] WARNING: unable to start the kubelet service; start it yourself")


def admin_client(timeout=10):
    conf = path("/etc/kubernetes/admin.conf")
    if not os.path.exists(conf):
        raise KubeadmError("couldn't read kubeconfig %s: no such file; is this a control-plane node?" % conf)
    return Client.from_kubeconfig(conf, timeout=timeout, retry_seconds=API_CALL_RETRY_SECONDS)


def wait_healthy(client, seconds):
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            if client.get("/livez") == "ok":
                return
        except (ClientError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise KubeadmError("[api-check] The API server is not healthy after %ds: context deadline exceeded (%s)"
                       % (seconds, last))


def duration_seconds(text, default):
    if not text:
        return default
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text[index:index + 2] == "ms" else char
        total += float(number or 0) * units.get(unit, 0)
        number = ""
        index += len(unit)
    return total or default


def create_token(client, token=None, ttl="24h0m0s", groups=None, description=""):
    token = token or "%s.%s" % (secrets.token_hex(3), secrets.token_hex(8))
    token_id, secret = token.split(".")
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=duration_seconds(ttl, 86400))
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": ",".join(groups or ["system:bootstrappers:kubeadm:default-node-token"]),
            "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if description:
        data["description"] = description
    body = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-" + token_id, "namespace": "kube-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    client.apply("/api/v1/namespaces/kube-system/secrets", body["metadata"]["name"], body)
    return token


def upload_certs(client, key_hex=None):
    """Secret kube-system/kubeadm-certs: each file AES-GCM encrypted with the certificate key
    (cmd/kubeadm/app/phases/copycerts: nonce prepended, key = 32 random bytes, hex encoded)."""
    key_hex = key_hex or secrets.token_hex(32)
    aead = AESGCM(bytes.fromhex(key_hex))
    data = {}
    for name in CERT_FILES:
        file_path = path("/etc/kubernetes/pki", name)
        if not os.path.exists(file_path):
            continue
        nonce = os.urandom(12)
        data[name.replace("/", "-")] = base64.b64encode(nonce + aead.encrypt(nonce, read(file_path), None)).decode()
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "kubeadm-certs", "namespace": "kube-system"}, "data": data}
    client.apply("/api/v1/namespaces/kube-system/secrets", "kubeadm-certs", body)
    print("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace")
    print("[upload-certs] Using certificate key:\n%s" % key_hex)
    return key_hex


def join_command(client, token, control_plane=False, key=None):
    info = client.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    kubeconfig = yaml.safe_load(info["data"]["kubeconfig"])
    cluster = kubeconfig["clusters"][0]["cluster"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(cluster["certificate-authority-data"]))
    endpoint = cluster["server"].replace("https://", "")
    command = "kubeadm join %s --token %s --discovery-token-ca-cert-hash %s" % (endpoint, token, ca_hash(ca))
    if control_plane:
        command += " --control-plane --certificate-key %s" % key
    return command


def init_kubernetes_version(cfg):
    """ClusterConfiguration.kubernetesVersion, defaulting to kubeadm's own version (kubesim has no stable-1 lookup)."""
    return str(cfg.cluster.get("kubernetesVersion") or "v" + version())


def upload_cluster_configuration(client, cfg, kube_version):
    """ConfigMap kube-system/kubeadm-config, key ClusterConfiguration (the upload-config/kubeadm phase)."""
    stored = dict(cfg.cluster, kubernetesVersion=kube_version)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": yaml.safe_dump(stored, sort_keys=False)}}
    print("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" "
          "Namespace")
    client.apply("/api/v1/namespaces/kube-system/configmaps", "kubeadm-config", body)


def upload_kubelet_configuration(client, docs):
    """ConfigMap kube-system/kubelet-config, key ``kubelet`` (constants.KubeletBaseConfigurationConfigMapKey),
    the upload-config/kubelet phase."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": yaml.safe_dump(docs.get("KubeletConfiguration") or {}, sort_keys=False)}}
    print("[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the "
          "kubelets in the cluster")
    client.apply("/api/v1/namespaces/kube-system/configmaps", "kubelet-config", body)


# --- commands -------------------------------------------------------------------------------------
def cmd_init(args):
    docs = read_config(args.config)
    cfg = Config(docs)
    skip = set((args.skip_phases or "").split(",")) | set(cfg.init.get("skipPhases") or [])
    kube_version = init_kubernetes_version(cfg)
    check_control_plane_version(kube_version)
    if os.path.exists(path("/etc/kubernetes/manifests/kube-apiserver.yaml")):
        raise KubeadmError("[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-"
                           "manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already "
                           "exists\n[preflight] If you know what you are doing, you can make a check non-fatal with "
                           "`--ignore-preflight-errors=...`")
    print("[init] Using Kubernetes version: %s" % kube_version)
    ca = write_certs(cfg)
    write_kubeconfigs(cfg, ca)
    print("[control-plane] Using manifest folder \"%s\"" % MANIFEST_DIR)
    write_manifests(cfg, kube_version)
    write_kubelet_config(cfg, docs.get("KubeletConfiguration"))
    start_kubelet()
    client = Client.from_kubeconfig(path("/etc/kubernetes/super-admin.conf"), retry_seconds=API_CALL_RETRY_SECONDS)
    local = Client("https://%s:%d" % (cfg.advertise, cfg.port), pki.pem_cert(ca[0]))
    timeout = duration_seconds((cfg.init.get("timeouts") or {}).get("controlPlaneComponentHealthCheck"), 240)
    print("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods")
    wait_healthy(local, timeout)
    print("[api-check] The API server is healthy")
    upload_cluster_configuration(client, cfg, kube_version)
    upload_kubelet_configuration(client, docs)
    key = None
    if args.upload_certs and "upload-certs" not in skip:
        key = upload_certs(client, args.certificate_key or cfg.init.get("certificateKey"))
    mark_control_plane(client, cfg)
    tokens = [t["token"] for t in cfg.init.get("bootstrapTokens") or []]
    for token in cfg.init.get("bootstrapTokens") or []:
        create_token(client, token["token"], token.get("ttl", "24h0m0s"), token.get("groups"),
                     token.get("description", ""))
    if not tokens:
        tokens = [create_token(client)]
    ca_pem = pki.pem_cert(ca[0])
    info = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "", "cluster": {
                    "server": "https://%s" % cfg.control_plane_endpoint,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
                "contexts": [], "current-context": "", "preferences": {}, "users": []})}}
    client.apply("/api/v1/namespaces/kube-public/configmaps", "cluster-info", info)
    print("[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace")
    print("[addons] kubesim does not model the CoreDNS and kube-proxy addons; nothing applied")
    print("\nYour Kubernetes control-plane has initialized successfully!\n")
    print("You can now join any number of control-plane nodes running the following command on each as root:\n")
    print("  " + join_command(client, tokens[0], True, key or "<certificate key>"))
    print("\nThen you can join any number of worker nodes by running the following on each as root:\n")
    print("  " + join_command(client, tokens[0]))
    return 0


def mark_control_plane(client, cfg, wait_seconds=60):
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            node = client.get("/api/v1/nodes/%s" % cfg.node_name)
            break
        except ClientError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise KubeadmError("[mark-control-plane] error getting node %s: %s" % (cfg.node_name, exc)) from exc
            time.sleep(0.5)
    taints = cfg.registration.get("taints")
    if taints is None:
        taints = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    patch = {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "",
                                     "node.kubernetes.io/exclude-from-external-load-balancers": ""}},
             "spec": {"taints": taints}}
    client.request("PATCH", "/api/v1/nodes/%s" % node["metadata"]["name"], patch,
                   "application/strategic-merge-patch+json")
    print("[mark-control-plane] Marking the node %s as control-plane" % cfg.node_name)


def check_control_plane_version(wanted):
    """kubeadm deploys its own minor or the one before (cmd/kubeadm/app/util/config: ValidateSupportedVersion)."""
    mine = minor(version())
    target = minor(wanted)
    if target[:2] > mine[:2]:
        raise KubeadmError("the control plane version %s is newer than kubeadm v%s; upgrade kubeadm first"
                           % (wanted, version()))
    if target[:2] < (mine[0], mine[1] - 1):
        raise KubeadmError("this version of kubeadm only supports deploying clusters with the control plane version "
                           ">= %d.%d.0. Current version: %s" % (mine[0], mine[1] - 1, wanted))


def discover(cfg):
    bootstrap = (cfg.join.get("discovery") or {}).get("bootstrapToken") or {}
    endpoint = bootstrap.get("apiServerEndpoint")
    token = bootstrap.get("token") or (cfg.join.get("discovery") or {}).get("tlsBootstrapToken")
    if not endpoint or not token:
        raise KubeadmError("discovery: kubesim supports bootstrapToken discovery with apiServerEndpoint and token")
    anonymous = Client("https://%s" % endpoint, insecure=True)
    info = anonymous.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    cluster = yaml.safe_load(info["data"]["kubeconfig"])["clusters"][0]["cluster"]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    pins = bootstrap.get("caCertHashes") or []
    if pins and ca_hash(ca_cert) not in pins:
        raise KubeadmError("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"%s\" are "
                           "pinned" % ca_hash(ca_cert))
    if not pins and not bootstrap.get("unsafeSkipCAVerification"):
        raise KubeadmError("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without "
                           "caCertHashes can be unsafe. Set unsafeSkipCAVerification as true to continue")
    client = Client("https://%s" % endpoint, ca_pem, token=token, retry_seconds=API_CALL_RETRY_SECONDS)
    return client, ca_pem, endpoint, token


def tls_bootstrap(client, cfg, endpoint, ca_pem):
    """The worker kubelet's TLS bootstrap, done here on its behalf: with the bootstrap token, a CSR for
    CN=system:node:<name>, O=system:nodes that the controllers approve and sign. The kubelet then
    authenticates with that certificate (/var/lib/kubelet/pki/kubelet-client-current.pem), so the
    bootstrap token may expire, as on a real cluster."""
    print("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + cfg.node_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    created = client.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]}})
    name = created["metadata"]["name"]
    seconds = duration_seconds((cfg.join.get("timeouts") or {}).get("tlsBootstrap"), 300)
    deadline = time.monotonic() + seconds
    while True:
        status = client.get("/apis/certificates.k8s.io/v1/certificatesigningrequests/" + name).get("status") or {}
        if status.get("certificate"):
            break
        if time.monotonic() >= deadline:
            raise KubeadmError("error execution phase kubelet-start: timed out waiting for the condition: the CSR %s "
                               "was not signed within %ds" % (name, seconds))
        time.sleep(0.5)
    current = path("/var/lib/kubelet/pki/kubelet-client-current.pem")
    write(current, base64.b64decode(status["certificate"]) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    # The real kubelet.conf names that file; kubesim embeds the same certificate and key, so the file works
    # under a scratch KUBESIM_ROOT too.
    text = kubeconfig_text("https://%s" % endpoint, ca_pem, "default-auth", base64.b64decode(status["certificate"]),
                           key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    write(path("/etc/kubernetes/kubelet.conf"), text, 0o600)


def cmd_join(args):
    docs = read_config(args.config)
    if "JoinConfiguration" not in docs:
        raise KubeadmError("no JoinConfiguration found in %s" % args.config)
    cfg = Config(docs)
    if os.path.exists(path("/etc/kubernetes/kubelet.conf")):
        raise KubeadmError("[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-kubelet"
                           ".conf]: /etc/kubernetes/kubelet.conf already exists")
    client, ca_pem, endpoint, _token = discover(cfg)
    print("[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...")
    stored = client.get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    cfg.cluster = yaml.safe_load(stored["data"]["ClusterConfiguration"])
    kubelet_cm = client.get("/api/v1/namespaces/kube-system/configmaps/kubelet-config")
    kubelet_doc = yaml.safe_load(kubelet_cm["data"].get("kubelet") or "{}")
    write(path("/etc/kubernetes/pki/ca.crt"), ca_pem)
    control_plane = cfg.join.get("controlPlane")
    if control_plane is not None:
        key = control_plane.get("certificateKey")
        if not key:
            raise KubeadmError("controlPlane.certificateKey is required to download the certificates")
        secret = client.get("/api/v1/namespaces/kube-system/secrets/kubeadm-certs")
        aead = AESGCM(bytes.fromhex(key))
        for name in CERT_FILES:
            blob = secret.get("data", {}).get(name.replace("/", "-"))
            if blob:
                raw = base64.b64decode(blob)
                try:
                    plain = aead.decrypt(raw[:12], raw[12:], None)
                except Exception as exc:
                    raise KubeadmError("error downloading certs: error decoding certificate key: %s" % exc) from exc
                write(path("/etc/kubernetes/pki", name), plain, 0o600 if name.endswith(".key") else 0o644)
        print("[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" "
              "Namespace")
        ca = write_certs(cfg)
        write_kubeconfigs(cfg, ca)
        print("[control-plane] Using manifest folder \"%s\"" % MANIFEST_DIR)
        write_manifests(cfg, cfg.cluster.get("kubernetesVersion"))
    else:
        tls_bootstrap(client, cfg, endpoint, ca_pem)
    write_kubelet_config(cfg, kubelet_doc)
    start_kubelet()
    if control_plane is not None:
        local = Client("https://%s:%d" % (cfg.advertise, cfg.port), ca_pem)
        wait_healthy(local, duration_seconds((cfg.join.get("timeouts") or {}).get(
            "controlPlaneComponentHealthCheck"), 240))
        mark_control_plane(admin_client(), cfg)
    print("\nThis node has joined the cluster")
    return 0


def cmd_token_create(args):
    client = admin_client()
    token = create_token(client, args.token, args.ttl, description=args.description or "")
    print(join_command(client, token) if args.print_join_command else token)
    return 0


def cmd_upload_certs(args):
    if not args.upload_certs:
        print("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    upload_certs(admin_client(), args.certificate_key)
    return 0


def phase_config(args, phase):
    if not args.phase_config:
        raise KubeadmError("kubesim needs --config for `kubeadm init phase %s` (kubeadm's flag-only defaults are not "
                           "modelled)" % phase)
    return read_config(args.phase_config)


def cmd_phase_control_plane(args):
    """`kubeadm init phase control-plane all|apiserver|controller-manager|scheduler --config FILE`.

    Writes the static Pod manifests exactly as `kubeadm init` does, from the InitConfiguration (local API
    endpoint) and ClusterConfiguration in FILE; certificates, kubeconfigs and the cluster are not touched.
    This is how https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-reconfigure/ reflects
    ClusterConfiguration changes on a control-plane node; the kubelet restarts a component whose manifest
    changed.
    """
    docs = phase_config(args, "control-plane")
    cfg = Config(docs)
    kube_version = init_kubernetes_version(cfg)
    check_control_plane_version(kube_version)
    if args.component == "all":
        print("[control-plane] Using manifest folder \"%s\"" % MANIFEST_DIR)
        components = ALL_COMPONENTS
    else:
        components = (CONTROL_PLANE_COMPONENTS[args.component],)
    write_manifests(cfg, kube_version, components)
    return 0


def cmd_phase_upload_config(args):
    """`kubeadm init phase upload-config all|kubeadm|kubelet --config FILE [--kubeconfig admin.conf]`."""
    docs = phase_config(args, "upload-config")
    cfg = Config(docs)
    kube_version = init_kubernetes_version(cfg)
    check_control_plane_version(kube_version)
    conf = path(args.kubeconfig)
    if not os.path.exists(conf):
        raise KubeadmError("couldn't read kubeconfig %s: no such file" % conf)
    client = Client.from_kubeconfig(conf, retry_seconds=API_CALL_RETRY_SECONDS)
    if args.config_kind in ("all", "kubeadm"):
        upload_cluster_configuration(client, cfg, kube_version)
    if args.config_kind in ("all", "kubelet"):
        upload_kubelet_configuration(client, docs)
    return 0


def cmd_phase(args):
    handlers = {"upload-certs": cmd_upload_certs, "control-plane": cmd_phase_control_plane,
                "upload-config": cmd_phase_upload_config}
    return handlers[args.phase](args)


def cluster_version(client):
    stored = client.get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    return yaml.safe_load(stored["data"]["ClusterConfiguration"]), stored


def check_upgrade(current, target):
    mine = minor(version())
    if minor(target) > mine:
        raise KubeadmError("Specified version to upgrade to \"%s\" is higher than the kubeadm version \"v%s\". "
                           "Upgrade kubeadm first using the tool you used to install kubeadm" % (target, version()))
    if minor(target)[:2] > (minor(current)[0], minor(current)[1] + 1):
        raise KubeadmError("Specified version to upgrade to \"%s\" is too high; kubeadm can upgrade only 1 minor "
                           "version at a time" % target)
    if minor(target)[:2] < minor(current)[:2]:
        raise KubeadmError("Specified version to upgrade to \"%s\" is lower than the cluster version \"%s\". "
                           "Downgrades are not supported" % (target, current))


def cmd_upgrade(args):
    manifest = path("/etc/kubernetes/manifests/kube-apiserver.yaml")
    if args.upgrade_command == "node" and not os.path.exists(manifest):
        # Like kubeadm's `upgrade node` (cmd/kubeadm/app/cmd/upgrade/node.go): a node without the kube-apiserver
        # manifest is a worker and reads the cluster's configuration with kubelet.conf, not admin.conf.
        conf = path("/etc/kubernetes/kubelet.conf")
        if not os.path.exists(conf):
            raise KubeadmError("couldn't read kubeconfig %s: no such file; has this node joined?" % conf)
        client = Client.from_kubeconfig(conf, timeout=10, retry_seconds=API_CALL_RETRY_SECONDS)
    else:
        client = admin_client()
    cluster, stored = cluster_version(client)
    current = cluster.get("kubernetesVersion")
    if args.upgrade_command == "plan":
        target = "v" + version()
        print("[upgrade] Fetching available versions to upgrade to\n[upgrade/versions] Cluster version: %s\n"
              "[upgrade/versions] kubeadm version: %s" % (current, target))
        try:
            check_upgrade(current, target)
        except KubeadmError as exc:
            print("[upgrade/versions] %s" % exc)
            return 0
        if minor(target) == minor(current):
            print("Awesome, you're up-to-date! Enjoy!")
        else:
            print("\nUpgrade to the latest version in the v%d.%d series:\n\nCOMPONENT   NODE   CURRENT   TARGET\n"
                  "kube-apiserver          %s   %s\n\nYou can now apply the upgrade by executing the following "
                  "command:\n\n\tkubeadm upgrade apply %s"
                  % (minor(target)[0], minor(target)[1], current, target, target))
        return 0
    cfg = Config({"ClusterConfiguration": cluster}, node_name=os.uname().nodename.lower())
    if os.path.exists(manifest):
        pod = yaml.safe_load(read(manifest))
        command = pod["spec"]["containers"][0]["command"]
        flags = dict(c[2:].split("=", 1) for c in command[1:] if "=" in c)
        cfg.advertise = flags.get("advertise-address", cfg.advertise)
        cfg.port = int(flags.get("secure-port", cfg.port))
    if args.upgrade_command == "apply":
        target = "v" + args.version.lstrip("v")
        check_upgrade(current, target)
        if not args.yes:
            raise KubeadmError("[upgrade] non-interactive use needs -y/--yes")
        if os.path.exists(manifest):
            write_manifests(cfg, target)
        cluster["kubernetesVersion"] = target
        stored["data"]["ClusterConfiguration"] = yaml.safe_dump(cluster, sort_keys=False)
        client.request("PUT", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config", stored)
        print("[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"%s\"." % target)
        return 0
    # upgrade node: bring this node's manifests and kubelet config to the cluster version.
    if os.path.exists(manifest):
        write_manifests(cfg, current)
    else:
        print("[upgrade] Skipping phase. Not a control plane node.")
    print("[upgrade] The configuration for this node was successfully upgraded!")
    return 0


def cmd_reset(args):
    if not args.force:
        raise KubeadmError("[reset] Are you sure you want to proceed? non-interactive use needs -f/--force")
    if kubelet_service("stop"):
        print("[reset] Stopping the kubelet service")
    for item in ("/etc/kubernetes/manifests", "/etc/kubernetes/pki", "/var/lib/kubelet/config.yaml",
                 "/var/lib/kubelet/kubeadm-flags.env", "/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf",
                 "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/bootstrap-kubelet.conf",
                 "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf", "/var/lib/kubelet/pki"):
        target = path(item)
        if os.path.isdir(target):
            if item.endswith("manifests"):
                for name in os.listdir(target):
                    os.remove(os.path.join(target, name))
            else:
                shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
    print("[reset] Deleted contents of /etc/kubernetes/manifests, /etc/kubernetes/pki and the kubeconfig files\n"
          "The reset process does not clean your kubeconfig files and you must remove them manually.")
    return 0


def cmd_check_expiration(args):
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for name in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"):
        file_path = path("/etc/kubernetes", name)
        if os.path.exists(file_path):
            user = yaml.safe_load(read(file_path))["users"][0]["user"]
            rows.append((name, x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))))
    for name in ("apiserver", "apiserver-kubelet-client", "front-proxy-client"):
        file_path = path("/etc/kubernetes/pki", name + ".crt")
        if os.path.exists(file_path):
            rows.append((name, x509.load_pem_x509_certificate(read(file_path))))
    if not rows:
        raise KubeadmError("no certificates found under %s" % path("/etc/kubernetes"))
    print("CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY "
          "MANAGED")
    for name, cert in rows:
        expires = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
            tzinfo=datetime.timezone.utc)  # cryptography < 42 (Debian 12) has only the naive attribute
        days = (expires - now).days
        print("%-26s %-24s %-15s %-23s no" % (name, expires.strftime("%b %d, %Y %H:%M UTC"), "%dd" % days,
                                              "front-proxy-ca" if name == "front-proxy-client" else "ca"))
    return 0


def cmd_version(args):
    info = {"major": version().split(".")[0], "minor": version().split(".")[1], "gitVersion": "v" + version(),
            "gitCommit": "kubesim", "gitTreeState": "clean", "goVersion": "go1.24", "compiler": "gc",
            "platform": "linux/amd64"}
    if args.output == "short":
        print("v" + version())
    elif args.output == "json":
        print(json.dumps({"clientVersion": info}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump({"clientVersion": info}, sort_keys=False))
    elif args.output:
        raise KubeadmError('invalid output format: %s' % args.output)
    else:
        print("kubeadm version: &version.Info{Major:\"%s\", Minor:\"%s\", GitVersion:\"v%s\", GitCommit:\"kubesim\"}"
              % (info["major"], info["minor"], version()))
    return 0


def cmd_config_validate(args):
    read_config(args.config)
    print("ok")
    return 0


def parser():
    top = argparse.ArgumentParser(prog="kubeadm")
    sub = top.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init")
    init.add_argument("--config", required=True)
    init.add_argument("--upload-certs", action="store_true")
    init.add_argument("--skip-phases")
    init.add_argument("--certificate-key")
    init_sub = init.add_subparsers(dest="init_command")
    phase = init_sub.add_parser("phase")
    phase_sub = phase.add_subparsers(dest="phase", required=True)
    upload = phase_sub.add_parser("upload-certs")
    upload.add_argument("--upload-certs", action="store_true")
    upload.add_argument("--certificate-key")
    upload.add_argument("--config")
    control_plane = phase_sub.add_parser("control-plane")
    control_plane_sub = control_plane.add_subparsers(dest="component", required=True)
    for name in ("all", *CONTROL_PLANE_COMPONENTS):
        component = control_plane_sub.add_parser(name)
        component.add_argument("--config", dest="phase_config")
    upload_config = phase_sub.add_parser("upload-config")
    upload_config_sub = upload_config.add_subparsers(dest="config_kind", required=True)
    for name in ("all", "kubeadm", "kubelet"):
        kind = upload_config_sub.add_parser(name)
        kind.add_argument("--config", dest="phase_config")
        kind.add_argument("--kubeconfig", default="/etc/kubernetes/admin.conf")
    join = sub.add_parser("join")
    join.add_argument("endpoint", nargs="?")
    join.add_argument("--config", required=True)
    token = sub.add_parser("token")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create")
    create.add_argument("token", nargs="?")
    create.add_argument("--print-join-command", action="store_true")
    create.add_argument("--ttl", default="24h0m0s")
    create.add_argument("--description")
    upgrade = sub.add_parser("upgrade")
    upgrade_sub = upgrade.add_subparsers(dest="upgrade_command", required=True)
    upgrade_sub.add_parser("plan")
    apply = upgrade_sub.add_parser("apply")
    apply.add_argument("version")
    apply.add_argument("-y", "--yes", action="store_true")
    apply.add_argument("--certificate-renewal", default="true")
    apply.add_argument("--etcd-upgrade", default="true")
    # kubesim runs no preflight checks during upgrades, so there is nothing to ignore (accepted like kubeadm).
    apply.add_argument("--ignore-preflight-errors")
    upgrade_sub.add_parser("node").add_argument("--ignore-preflight-errors")
    reset = sub.add_parser("reset")
    reset.add_argument("-f", "--force", action="store_true")
    reset.add_argument("--cri-socket")
    ver = sub.add_parser("version")
    ver.add_argument("-o", "--output")
    certs = sub.add_parser("certs")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    certs_sub.add_parser("check-expiration")
    config = sub.add_parser("config")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate")
    validate.add_argument("--config", required=True)
    return top


def _normalise(argv):
    """`kubeadm init phase ...` takes its flags after the phase name; argparse wants init's --config before it."""
    if argv[:2] == ["init", "phase"]:
        return ["init", "--config", "-", *argv[1:]]
    return argv


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(_normalise(argv))
    except SystemExit as exc:
        return int(bool(exc.code))  # cobra exits 1 on flag errors
    handlers = {"join": cmd_join, "reset": cmd_reset, "version": cmd_version}
    try:
        if args.command == "init":
            return cmd_phase(args) if args.init_command == "phase" else cmd_init(args)
        if args.command == "token":
            return cmd_token_create(args)
        if args.command == "upgrade":
            return cmd_upgrade(args)
        if args.command == "certs":
            return cmd_check_expiration(args)
        if args.command == "config":
            return cmd_config_validate(args)
        return handlers[args.command](args)
    except (KubeadmError, ClientError, OSError) as exc:
        sys.stderr.write("error execution phase: %s\nTo see the stack trace of this error execute with --v=5 or "
                         "higher\n" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
