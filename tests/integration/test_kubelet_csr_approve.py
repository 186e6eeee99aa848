# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubelet_csr_approve, run by ansible-playbook, against a real kube-apiserver (Node,RBAC authorization) and a real
kube-controller-manager running only its CSR signer with the cluster CA (tests/harness/realapi.py).

The requests are created as the kubelets would: through the API with client certificates for system:node:<name>
in the group system:nodes (so the apiserver itself sets spec.username and spec.groups, and verifies the request's
signature), next to forged ones made with a node's or the admin's credentials. Only the good request may end up
Approved, and the real signer then issues its certificate.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import ssl
import sys
import threading
import time

import pytest
import realapi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from realapi import wait_for

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sApiError, K8sClient

REAL_CLUSTER = dict(controller_manager=True, controllers=("certificatesigningrequest-signing-controller",))
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SIGNER = "kubernetes.io/kubelet-serving"
SERVING = ("digital signature", "server auth")
# Loopback addresses stand for the nodes' InternalIPs (Linux answers on all of 127.0.0.0/8).
ADDRESSES = {"node-a": "127.0.0.21", "node-b": "127.0.0.22", "node-c": "127.0.0.23"}
NODES = [{"name": name, "addresses": [ip]} for name, ip in ADDRESSES.items()]


def request_pem(key, cn, orgs=("system:nodes",), dns=(), ips=(), uris=()):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    names = ([x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
             + [x509.UniformResourceIdentifier(u) for u in uris])
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class Cluster:
    def __init__(self, real_cluster, run_module):
        self.real = real_cluster
        self.run_module = run_module
        self.kubeconfig = real_cluster.kubeconfigs[0]
        self.admin = K8sClient.from_kubeconfig(self.kubeconfig)
        self.clients = {}

    def as_node(self, name):
        """The API as the kubelet of ``name`` (its client certificate: system:node:<name>, O=system:nodes)."""
        if name not in self.clients:
            self.clients[name] = K8sClient.from_kubeconfig(
                self.real.user_kubeconfig("system:node:%s" % name, groups=["system:nodes"]))
        return self.clients[name]

    def create(self, api, name, usages=SERVING, **request):
        key = ec.generate_private_key(ec.SECP256R1())
        body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {"signerName": SIGNER, "usages": list(usages),
                         "request": base64.b64encode(request_pem(key, **request)).decode()}}
        created = api.request("POST", CSRS, body=body)
        return created, key

    def good(self, node, name):
        return self.create(self.as_node(node), name, cn="system:node:%s" % node, dns=[node], ips=[ADDRESSES[node]])

    def csr(self, name):
        return self.admin.get("%s/%s" % (CSRS, name))

    def conditions(self, name):
        return [(c["type"], c.get("reason")) for c in (self.csr(name).get("status") or {}).get("conditions") or []]

    def module(self, check=False, **args):
        args.setdefault("kubeconfig", self.kubeconfig)
        args.setdefault("nodes", NODES)
        return self.run_module("kubelet_csr_approve", check=check, **args)

    def close(self):
        self.admin.close()
        for client in self.clients.values():
            client.close()


@pytest.fixture
def cluster(real_cluster, run_module):
    sim = Cluster(real_cluster, run_module)
    # Every test starts without requests (kube-controller-manager's cleaner would delete old ones after an hour).
    sim.admin.request("DELETE", CSRS)
    for name in [n["metadata"]["name"] for n in sim.admin.list_all("/api/v1/nodes")]:
        sim.admin.request("DELETE", "/api/v1/nodes/%s" % name)
    yield sim
    sim.close()


def forge(cluster):
    """Forged requests, each created with real credentials, with the phrase its rejection must contain."""
    a, b = cluster.as_node("node-a"), cluster.as_node("node-b")
    forged = {
        # node-a's kubelet asks for node-b's address.
        "forged-wrong-ip": (a, dict(cn="system:node:node-a", dns=["node-a"], ips=[ADDRESSES["node-b"]]),
                            "IP address 127.0.0.22 is not an address of node node-a"),
        # node-a's credentials, node-b's name in the subject (and node-b's names).
        "forged-cn-mismatch": (a, dict(cn="system:node:node-b", dns=["node-b"], ips=[ADDRESSES["node-b"]]),
                               "not CN=system:node:node-a"),
        # node-b's own credentials and subject, node-a's names: the requester decides whose addresses count.
        "forged-other-node": (b, dict(cn="system:node:node-b", dns=["node-a"], ips=[ADDRESSES["node-a"]]),
                              "DNS name node-a is neither node node-b's name"),
        # The admin asks for a serving certificate in node-a's name.
        "forged-admin": (cluster.admin, dict(cn="system:node:node-a", dns=["node-a"], ips=[ADDRESSES["node-a"]]),
                         "requested by 'kubernetes-admin', not by a node"),
        "forged-uri": (a, dict(cn="system:node:node-a", dns=["node-a"], uris=["spiffe://cluster.local/ns/x/sa/y"]),
                       "URI subject alternative names are not allowed"),
        "forged-client-auth": (a, dict(cn="system:node:node-a", dns=["node-a"],
                                       usages=("digital signature", "client auth", "server auth")),
                               "usages client auth are not allowed"),
    }
    created = {}
    for name, (api, args, phrase) in forged.items():
        args = dict(args)
        usages = args.pop("usages", SERVING)
        try:
            cluster.create(api, name, usages=usages, **args)
        except K8sApiError as exc:  # the apiserver itself refused it: nothing to approve
            print("the apiserver refused %s at creation: %s" % (name, exc))
            continue
        created[name] = phrase
    return created


def issued_certificate(cluster, name):
    pem = wait_for(lambda: (cluster.csr(name).get("status") or {}).get("certificate"), timeout=60,
                   what="kube-controller-manager issuing the certificate of %s" % name)
    return x509.load_pem_x509_certificate(base64.b64decode(pem))


def test_only_the_good_request_is_approved_and_issued(cluster):
    good, _key = cluster.good("node-a", "good-node-a")
    assert good["spec"]["username"] == "system:node:node-a" and "system:nodes" in good["spec"]["groups"]
    forged = forge(cluster)
    # Everything here was accepted by the apiserver: only the approver stands between them and a certificate.
    assert sorted(forged) == ["forged-admin", "forged-client-auth", "forged-cn-mismatch", "forged-other-node",
                              "forged-uri", "forged-wrong-ip"]

    would = cluster.module(check=True)
    assert would["changed"] is True and [a["name"] for a in would["approved"]] == ["good-node-a"]
    assert all(cluster.conditions(name) == [] for name in ["good-node-a", *forged])

    result = cluster.module()
    print("kubelet_csr_approve: approved %s, rejected %s, pending %d, missing %s, %.1f s (task %.1f s)" % (
        [a["name"] for a in result["approved"]], sorted(r["name"] for r in result["rejected"]), result["pending"],
        result["missing"], result["duration"], result["_wall"]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert [(a["name"], a["node"], a["dns_names"], a["ip_addresses"]) for a in result["approved"]] == [
        ("good-node-a", "node-a", ["node-a"], ["127.0.0.21"])]
    reasons = {r["name"]: r["reason"] for r in result["rejected"]}
    assert sorted(reasons) == sorted(forged) and result["pending"] == len(forged)
    for name, phrase in forged.items():
        assert phrase in reasons[name], (name, reasons[name])
    assert any("not approved" in w for w in result.get("warnings", []))

    # Through the API: the good request carries our Approved condition and gets a certificate from the real signer;
    # every forged one is untouched and stays pending.
    assert cluster.conditions("good-node-a")[0] == ("Approved", "BaremetalKubernetesApproved")
    for name in forged:
        assert cluster.conditions(name) == [], name
    cert = issued_certificate(cluster, "good-node-a")
    ca = x509.load_pem_x509_certificate(cluster.real.ca_pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node-a"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-a"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.21"]
    time.sleep(2)  # the signer had time to look at everything: still nothing for the forged requests
    for name in forged:
        assert not (cluster.csr(name).get("status") or {}).get("certificate"), name

    again = cluster.module()
    assert again["changed"] is False and again["approved"] == []
    states = {n["name"]: n["state"] for n in again["nodes"]}
    assert states["node-a"] == "issued"
    assert states["node-b"] == states["node-c"] == "missing" and again["missing"] == ["node-b", "node-c"]

    denied = cluster.module(deny_invalid=True)
    assert denied["changed"] is True and all(r["denied"] for r in denied["rejected"])
    for name in forged:
        assert [kind for kind, _reason in cluster.conditions(name)] == ["Denied"], name
    assert cluster.conditions("good-node-a")[0] == ("Approved", "BaremetalKubernetesApproved")

    # Why the checks matter: the signer issues whatever is approved. node-b's request for node-a's address, approved
    # by hand, gets a certificate from the cluster CA naming node-a's address.
    created, _key = cluster.create(cluster.as_node("node-b"), "forged-approved-by-hand", cn="system:node:node-b",
                                   dns=["node-b"], ips=[ADDRESSES["node-a"]])
    created["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "ByHand", "message": "x"}]}
    cluster.admin.request("PUT", "%s/forged-approved-by-hand/approval" % CSRS, body=created)
    stolen = issued_certificate(cluster, "forged-approved-by-hand")
    san = stolen.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == [ADDRESSES["node-a"]]


class Kubelet:
    """A TLS listener on a node address serving a certificate, as a kubelet's port 10250 does."""

    def __init__(self, address, cert, key, workdir):
        cert_file, key_file = workdir / "kubelet.crt", workdir / "kubelet.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert_file), str(key_file))
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                continue
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    tls.settimeout(2)
                    tls.recv(1)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def register(cluster, name, port):
    body = realapi.node_body(name, ADDRESSES[name])
    body["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    cluster.admin.request("POST", "/api/v1/nodes", body=body)


def test_after_the_cleanup_a_kubelet_serving_its_certificate_counts(cluster, tmp_path):
    """kube-controller-manager deletes approved requests after an hour: a later run finds none and must not wait for
    requests that never come. It checks each kubelet's port against the cluster CA instead."""
    _created, key = cluster.good("node-a", "good-node-a")
    first = cluster.module(nodes=NODES[:1])
    assert [a["name"] for a in first["approved"]] == ["good-node-a"]
    cert = issued_certificate(cluster, "good-node-a")
    kubelet = Kubelet(ADDRESSES["node-a"], cert, key, tmp_path)
    # A kubelet without a certificate from the cluster CA: a self-signed one, as with serverTLSBootstrap off.
    self_signed_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-b@1700000000")])
    self_signed = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self_signed_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.22"))]),
                                  critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(self_signed_key, hashes.SHA256()))
    (tmp_path / "b").mkdir()
    other = Kubelet(ADDRESSES["node-b"], self_signed, self_signed_key, tmp_path / "b")
    try:
        register(cluster, "node-a", kubelet.port)
        register(cluster, "node-b", other.port)
        cluster.admin.request("DELETE", CSRS)  # the cleaner's work
        started = time.monotonic()
        result = cluster.module(nodes=NODES[:2], wait_timeout=4, wait_sleep=1)
        took = time.monotonic() - started
        print("after the cleanup: %s in %.1f s, %d look(s)" % (
            [(n["name"], n["state"]) for n in result["nodes"]], took, result["attempts"]))
        nodes = {n["name"]: n for n in result["nodes"]}
        assert nodes["node-a"]["state"] == "serving" and kubelet.handshakes >= 1
        assert nodes["node-b"]["state"] == "missing"
        assert "serves no certificate from the cluster CA" in nodes["node-b"]["message"]
        assert result["missing"] == ["node-b"] and result["changed"] is False
        assert result["attempts"] >= 2  # node-b was waited for, within the bound

        alone = cluster.module(nodes=NODES[:1], wait_timeout=60)
        assert alone["missing"] == [] and alone["attempts"] == 1 and alone["duration"] < 10
    finally:
        kubelet.close()
        other.close()


def test_waits_for_a_request_created_while_it_runs(cluster):
    cluster.good("node-a", "good-node-a")

    def kubelet_starts_late():
        time.sleep(4)
        cluster.good("node-c", "late-node-c")

    thread = threading.Thread(target=kubelet_starts_late)
    thread.start()
    try:
        result = cluster.module(nodes=[NODES[0], NODES[2]], wait_timeout=60, wait_sleep=1, check_kubelets=False)
    finally:
        thread.join()
    print("waited %.1f s over %d looks for node-c's request" % (result["duration"], result["attempts"]))
    assert sorted(a["name"] for a in result["approved"]) == ["good-node-a", "late-node-c"]
    assert result["missing"] == [] and result["attempts"] >= 2 and result["duration"] < 30
    assert cluster.conditions("late-node-c")[0] == ("Approved", "BaremetalKubernetesApproved")
    issued_certificate(cluster, "late-node-c")


ROLE_PLAY = """
- name: The control_plane role's kubelet_csr entry point, as site.yml runs it once every node has joined
  hosts: kube_control_plane[0]
  gather_facts: false
  tasks:
    - name: Approve the kubelets' serving certificate requests
      ansible.builtin.import_role:
        name: baremetal.kubernetes.control_plane
        tasks_from: kubelet_csr
"""


def test_the_roles_entry_point_approves_the_inventorys_kubelets_once(cluster, run_playbook, tmp_path):
    """The role passes every k8s_cluster host with its node name, node_ip (else ansible_host) and inventory name;
    a second run changes nothing."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "k8s_api_vip": "127.0.0.100"},
        "children": {"k8s_cluster": {"children": {
            "kube_control_plane": {"hosts": {"node-a": {"ansible_host": "192.0.2.1", "node_ip": ADDRESSES["node-a"]}}},
            "kube_node": {"hosts": {"node-b": {"node_ip": ADDRESSES["node-b"]},
                                    "node-c.example.com": {"ansible_host": ADDRESSES["node-c"]}}}}}}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(ROLE_PLAY)

    def play(*extra):
        return run_playbook("-i", str(inventory), str(playbook), "-e", "__control_plane_admin_conf=%s"
                            % cluster.kubeconfig, "-e", "control_plane_kubelet_csr_timeout=3", *extra)

    cluster.good("node-a", "role-node-a")
    # node-c's kubelet names itself with the inventory's FQDN too (an allowed name of that host).
    cluster.create(cluster.as_node("node-c"), "role-node-c", cn="system:node:node-c",
                   dns=["node-c", "node-c.example.com"], ips=[ADDRESSES["node-c"]])
    cluster.create(cluster.as_node("node-b"), "role-forged-node-b", cn="system:node:node-b", dns=["node-b"],
                   ips=[ADDRESSES["node-a"]])

    off = play("-e", "control_plane_kubelet_csr_approve=false")
    assert off.returncode == 0, off.stdout[-4000:] + off.stderr[-2000:]
    assert "changed=0" in off.stdout and cluster.conditions("role-node-a") == []

    first = play()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "changed=1" in first.stdout, first.stdout[-4000:]
    assert cluster.conditions("role-node-a")[0] == ("Approved", "BaremetalKubernetesApproved")
    assert cluster.conditions("role-node-c")[0] == ("Approved", "BaremetalKubernetesApproved")
    assert cluster.conditions("role-forged-node-b") == []
    # The operator sees the refused request and the node left without a certificate.
    output = " ".join((first.stdout + first.stderr).split())
    assert "role-forged-node-b from system:node:node-b (left pending)" in output
    assert "IP address 127.0.0.21 is not an address of node node-b" in output
    assert "no kubelet serving certificate for 1 node(s)" in output and "node-b:" in output

    again = play()
    assert again.returncode == 0, again.stdout[-4000:]
    assert "changed=0" in again.stdout and "failed=0" in again.stdout, again.stdout[-4000:]
