# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for kubelet_csr_approve: its PKCS#10 reader against the cryptography library's, and the module
against an in-memory apiserver (mocked at K8sClient._transport) with real requests, good and forged."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.baremetal.kubernetes.plugins.modules import kubelet_csr_approve as mod
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.k8s_fake import (
    FakeCluster,
    install_fake_apiserver,
    iso,
)
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import deprecated_aliases, run_module

NODES = [{"name": "w1", "addresses": ["10.0.0.21", "w1.example.com"]},
         {"name": "w2", "addresses": ["10.0.0.22", "fd00::22"]}]
KEY = ec.generate_private_key(ec.SECP256R1())
SERVING = ("digital signature", "server auth")


def request_pem(cn="system:node:w1", orgs=("system:nodes",), dns=("w1",), ips=("10.0.0.21",), uris=(), emails=(),
                extra_ous=(), key=KEY, extensions=()):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, o) for o in extra_ous]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names = ([x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
             + [x509.UniformResourceIdentifier(u) for u in uris] + [x509.RFC822Name(e) for e in emails])
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_csr(name, username="system:node:w1", groups=("system:nodes", "system:authenticated"), usages=SERVING,
             signer=mod.SIGNER, conditions=None, certificate=None, age=60, pem=None, **request_args):
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name, "creationTimestamp": iso(time.time() - age)},
           "spec": {"signerName": signer, "username": username, "groups": list(groups), "usages": list(usages),
                    "request": base64.b64encode(pem if pem is not None else request_pem(**request_args)).decode()},
           "status": {}}
    if conditions:
        csr["status"]["conditions"] = [{"type": c, "status": "True", "reason": "Test"} for c in conditions]
    if certificate:
        csr["status"]["certificate"] = certificate
    return csr


# Each forged request a hostile (or broken) node or user might send, and a phrase its reason must contain.
FORGED = [
    ("csr-wrong-ip", dict(ips=("10.0.0.22",)), "IP address 10.0.0.22 is not an address of node w1"),
    ("csr-wrong-dns", dict(dns=("w2",)), "DNS name w2 is neither node w1's name"),
    ("csr-foreign-dns", dict(dns=("evil.example.com", "w1")), "DNS name evil.example.com"),
    # w1's credentials, w2's name in the subject (and w2's addresses).
    ("csr-cn-mismatch", dict(cn="system:node:w2", dns=("w2",), ips=("10.0.0.22",)),
     "subject is O=system:nodes, CN=system:node:w2, not CN=system:node:w1"),
    # w2's own credentials asking for w1's names: the requester decides whose addresses count.
    ("csr-other-node-requester", dict(username="system:node:w2", cn="system:node:w2"),
     "IP address 10.0.0.21 is not an address of node w2"),
    ("csr-admin-requester", dict(username="kubernetes-admin", groups=("system:masters",)),
     "not by a node (system:node:<name>)"),
    ("csr-not-in-nodes-group", dict(groups=("system:authenticated",)), "not in the group system:nodes"),
    ("csr-unknown-node", dict(username="system:node:w9", cn="system:node:w9", dns=("w9",), ips=()),
     "node w9 is not one of the nodes"),
    ("csr-uri", dict(uris=("spiffe://cluster.local/ns/default/sa/x",)), "URI subject alternative names"),
    ("csr-email", dict(emails=("w1@example.com",)), "e-mail subject alternative names"),
    ("csr-client-auth", dict(usages=("digital signature", "client auth", "server auth")),
     "usages client auth are not allowed"),
    ("csr-no-server-auth", dict(usages=("digital signature", "key encipherment")), "usages lack 'server auth'"),
    ("csr-masters-org", dict(orgs=("system:masters",)), "subject is O=system:masters"),
    ("csr-extra-ou", dict(extra_ous=("ops",)), "OU=ops"),
    ("csr-no-sans", dict(dns=(), ips=()), "no DNS or IP subject alternative name"),
    ("csr-garbage", dict(pem=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
     "does not parse"),
]


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    fake = FakeCluster()
    fake.add_node("w1", address="10.0.0.21")
    fake.add_node("w2", address="10.0.0.22")
    return install_fake_apiserver(monkeypatch, tmp_path, fake)


def run(cluster, check_mode=False, **args):
    args.setdefault("nodes", NODES)
    args.setdefault("kubeconfig", cluster.kubeconfig)
    return run_module(mod.main, args, check_mode=check_mode)


def approval_puts(cluster):
    return [(url.split("/")[-2], body["status"]["conditions"][-1]) for method, url, body in cluster.requests
            if method == "PUT" and url.endswith("/approval")]


def names(entries):
    return sorted(e["name"] for e in entries)


# ---------------------------------------------------------------------------------------------
# the PKCS#10 reader


@pytest.mark.parametrize("args", [
    dict(),
    dict(dns=("w1", "w1.example.com"), ips=("10.0.0.21", "fd00::22")),
    dict(dns=(), ips=("10.0.0.21",)),
    dict(uris=("spiffe://x/y",), emails=("a@example.com",)),
    dict(cn=None, dns=()),
    dict(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    dict(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True),
                     (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]),
], ids=["kubelet-like", "several-names-ipv6", "ip-only", "uri-email", "no-cn-no-sans", "rsa", "more-extensions"])
def test_reader_agrees_with_cryptography(args):
    pem = request_pem(**args)
    ours = mod.parse_csr_der(mod.pem_to_der(pem))
    theirs = x509.load_pem_x509_csr(pem)
    assert ours["subject"] == [(a.oid.dotted_string, a.value) for a in theirs.subject]
    try:
        san = theirs.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    assert ours["dns_names"] == san.get_values_for_type(x509.DNSName)
    assert ours["ip_addresses"] == [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    assert ours["uris"] == san.get_values_for_type(x509.UniformResourceIdentifier)
    assert ours["emails"] == san.get_values_for_type(x509.RFC822Name)
    assert ours["other_names"] == []


def _der(pem):
    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def _pem(der, kind="CERTIFICATE REQUEST"):
    body = base64.encodebytes(der).decode()
    return ("-----BEGIN %s-----\n%s-----END %s-----\n" % (kind, body, kind)).encode()


def tlv(tag, *parts):
    """One DER element (minimal length)."""
    content = b"".join(parts)
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


OID_EXT_REQUEST = tlv(0x06, bytes.fromhex("2a864886f70d01090e"))  # 1.2.840.113549.1.9.14
OID_SAN = tlv(0x06, bytes.fromhex("551d11"))  # 2.5.29.17


def san_extension(*dns):
    return tlv(0x30, OID_SAN, tlv(0x04, x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]).public_bytes()))


def hand_made(attributes):
    """A CertificationRequest with ``attributes`` (DER of each Attribute); the signature is junk, which the
    reader does not look at (the apiserver verifies it)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "system:node:w1")]).public_bytes()
    spki = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = tlv(0x30, tlv(0x02, b"\x00"), subject, spki, tlv(0xA0, *attributes))
    algorithm = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # ecdsa-with-SHA256
    return tlv(0x30, info, algorithm, tlv(0x03, b"\x00" + b"\x01" * 8))


def ext_request(*extensions):
    return tlv(0x30, OID_EXT_REQUEST, tlv(0x31, tlv(0x30, *extensions)))


def _content(der):
    _tag, start, end = mod._tlv(der, 0, len(der))
    return der[start:end]


GOOD_DER = _der(request_pem())
GOOD_CONTENT = _content(GOOD_DER)


def test_hand_made_requests_read_like_real_ones():
    """The encoder below builds what the reader accepts, so the refusals that follow are about the one change."""
    parsed = mod.parse_csr_der(hand_made([ext_request(san_extension("w1"))]))
    assert parsed["dns_names"] == ["w1"]
    assert parsed["subject"] == [(mod.OID_ORGANIZATION, "system:nodes"), (mod.OID_COMMON_NAME, "system:node:w1")]
    assert tlv(0x30, GOOD_CONTENT) == GOOD_DER


@pytest.mark.parametrize("attributes, message", [
    ([ext_request(san_extension("w1"), san_extension("w2"))], "extension 2.5.29.17 appears twice"),
    ([ext_request(san_extension("w1")), ext_request(san_extension("w2"))], "more than one extensionRequest"),
    ([tlv(0x30, OID_EXT_REQUEST, tlv(0x31, tlv(0x30, san_extension("w1")), tlv(0x30, san_extension("w2"))))],
     "exactly one value"),
], ids=["two-san-extensions", "two-extension-requests", "two-values"])
def test_reader_refuses_names_hidden_in_a_second_place(attributes, message):
    with pytest.raises(mod.CsrParseError, match=message):
        mod.parse_csr_der(hand_made(attributes))


@pytest.mark.parametrize("pem, message", [
    (_pem(GOOD_DER[:-5]), "runs past"),
    (_pem(GOOD_DER + b"\x00\x00"), "CertificationRequest: unexpected structure"),
    (_pem(b"\x30\x80" + GOOD_CONTENT + b"\x00\x00"), "indefinite"),
    (_pem(b"\x30\x83" + len(GOOD_CONTENT).to_bytes(3, "big") + GOOD_CONTENT), "non-minimal length"),
    (_pem(GOOD_DER) + _pem(GOOD_DER), "exactly one PEM block"),
    (_pem(GOOD_DER, "CERTIFICATE"), "found CERTIFICATE"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n", "not base64"),
    (b"nothing here", "found none"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nw\u00e9\n-----END CERTIFICATE REQUEST-----\n".encode(), "not ASCII"),
], ids=["truncated", "trailing-bytes", "indefinite-length", "non-minimal-length", "two-blocks", "certificate",
        "bad-base64", "no-pem", "not-ascii"])
def test_reader_refuses_malformed_requests(pem, message):
    with pytest.raises(mod.CsrParseError, match=message):
        mod.parse_csr_der(mod.pem_to_der(pem))


# ---------------------------------------------------------------------------------------------
# check_csr, one reason per forged request


@pytest.mark.parametrize("name, args, phrase", FORGED, ids=[f[0] for f in FORGED])
def test_forged_requests_fail_the_checks(name, args, phrase):
    csr = make_csr(name, **args)
    _node, _parsed, reasons = mod.check_csr(csr, mod.node_table(NODES))
    assert reasons, "%s passed the checks" % name
    assert phrase in "; ".join(reasons)


@pytest.mark.parametrize("args", [
    dict(),
    dict(usages=("digital signature", "key encipherment", "server auth")),
    dict(dns=("W1.example.com.", "w1"), ips=("10.0.0.21",)),
    dict(username="system:node:w2", cn="system:node:w2", dns=("w2",), ips=("fd00:0:0::22", "10.0.0.22")),
], ids=["ecdsa-usages", "rsa-usages", "fqdn-any-case", "ipv6-written-differently"])
def test_good_requests_pass_the_checks(args):
    node, parsed, reasons = mod.check_csr(make_csr("csr-good", **args), mod.node_table(NODES))
    assert reasons == []
    assert node == args.get("username", "system:node:w1").split(":")[-1]
    assert parsed["dns_names"]


# ---------------------------------------------------------------------------------------------
# the module


def test_only_the_good_request_is_approved(cluster):
    cluster.add_csr(make_csr("csr-good"))
    for name, args, _phrase in FORGED:
        cluster.add_csr(make_csr(name, **args))
    # Not ours to judge: another signer, and requests already decided.
    cluster.add_csr(make_csr("csr-client-kubelet", signer="kubernetes.io/kube-apiserver-client-kubelet",
                             usages=("digital signature", "client auth"), dns=(), ips=()))
    cluster.add_csr(make_csr("csr-denied", conditions=["Denied"]))
    outcome, result = run(cluster)
    assert outcome == "exit", result
    assert result["changed"] is True
    assert [(a["name"], a["node"], a["requester"], a["dns_names"], a["ip_addresses"]) for a in result["approved"]] == [
        ("csr-good", "w1", "system:node:w1", ["w1"], ["10.0.0.21"])]
    assert names(result["rejected"]) == sorted(f[0] for f in FORGED)
    reasons = {r["name"]: r["reason"] for r in result["rejected"]}
    for name, _args, phrase in FORGED:
        assert phrase in reasons[name], (name, reasons[name])
    assert not any(r["denied"] for r in result["rejected"])
    assert result["pending"] == len(FORGED)
    # Through the API: one approval write, for the good request, with the condition the module promises.
    puts = approval_puts(cluster)
    assert [name for name, _condition in puts] == ["csr-good"]
    assert puts[0][1]["type"] == "Approved" and puts[0][1]["reason"] == "BaremetalKubernetesApproved"
    assert mod.csr_state(cluster.csrs["csr-good"]) == "approved"
    for name, _args, _phrase in FORGED:
        assert mod.csr_state(cluster.csrs[name]) == "pending"
    assert mod.csr_state(cluster.csrs["csr-client-kubelet"]) == "pending"
    # w1 is covered; w2 has no request of its own (its only one was w2's credentials asking for w1's names).
    assert {n["name"]: n["state"] for n in result["nodes"]} == {"w1": "approved", "w2": "missing"}
    assert result["missing"] == ["w2"]
    assert "csr-other-node-requester" in {n["name"]: n["message"] for n in result["nodes"]}["w2"]
    warnings = " ".join(result.get("warnings", []))
    assert "%d kubelet-serving certificate request(s) not approved" % len(FORGED) in warnings
    assert "no kubelet serving certificate for 1 node(s)" in warnings and "w2:" in warnings


def test_second_run_changes_nothing(cluster):
    cluster.add_csr(make_csr("csr-w1"))
    cluster.add_csr(make_csr("csr-w2", username="system:node:w2", cn="system:node:w2", dns=("w2",),
                             ips=("10.0.0.22",)))
    outcome, first = run(cluster)
    assert outcome == "exit" and first["changed"] is True and names(first["approved"]) == ["csr-w1", "csr-w2"]
    assert first["missing"] == [] and first.get("warnings") is None
    cluster.csrs["csr-w1"]["status"]["certificate"] = base64.b64encode(b"issued").decode()
    writes = len(approval_puts(cluster))
    outcome, second = run(cluster)
    assert outcome == "exit"
    assert second["changed"] is False and second["approved"] == [] and second["rejected"] == []
    assert len(approval_puts(cluster)) == writes
    assert {n["name"]: (n["state"], n["csr"]) for n in second["nodes"]} == {
        "w1": ("issued", "csr-w1"), "w2": ("approved", "csr-w2")}
    assert all(n["message"] == "approved before this run" for n in second["nodes"])


def test_check_mode_reports_and_writes_nothing(cluster):
    cluster.add_csr(make_csr("csr-good"))
    cluster.add_csr(make_csr("csr-wrong-ip", ips=("10.0.0.99",)))
    outcome, result = run(cluster, check_mode=True, deny_invalid=True)
    assert outcome == "exit"
    assert result["changed"] is True
    assert names(result["approved"]) == ["csr-good"]
    assert [(r["name"], r["denied"]) for r in result["rejected"]] == [("csr-wrong-ip", True)]
    assert approval_puts(cluster) == []
    assert mod.csr_state(cluster.csrs["csr-good"]) == "pending"
    assert {n["name"]: n["state"] for n in result["nodes"]}["w1"] == "approved"


def test_nothing_to_approve_is_not_a_change(cluster):
    cluster.add_csr(make_csr("csr-wrong-ip", ips=("10.0.0.99",)))
    outcome, result = run(cluster)
    assert outcome == "exit"
    assert result["changed"] is False and result["approved"] == [] and names(result["rejected"]) == ["csr-wrong-ip"]
    assert approval_puts(cluster) == []


def test_deny_invalid_denies_only_the_forged_ones(cluster):
    cluster.add_csr(make_csr("csr-good"))
    for name, args, _phrase in FORGED[:4]:
        cluster.add_csr(make_csr(name, **args))
    outcome, result = run(cluster, deny_invalid=True)
    assert outcome == "exit" and result["changed"] is True
    puts = dict(approval_puts(cluster))
    assert puts["csr-good"]["type"] == "Approved"
    for name, _args, phrase in FORGED[:4]:
        assert puts[name]["type"] == "Denied" and puts[name]["reason"] == "BaremetalKubernetesDenied"
        assert phrase in puts[name]["message"]
        assert mod.csr_state(cluster.csrs[name]) == "denied"
    assert all(r["denied"] for r in result["rejected"]) and result["pending"] == 0


def test_waits_for_a_request_that_appears_later(cluster):
    cluster.add_csr(make_csr("csr-w1"))
    cluster.csr_arrivals[3] = [make_csr("csr-w2-late", username="system:node:w2", cn="system:node:w2", dns=("w2",),
                                        ips=("10.0.0.22",))]
    started = time.monotonic()
    outcome, result = run(cluster, wait=True, wait_timeout=30, wait_sleep=1)
    assert outcome == "exit", result
    assert names(result["approved"]) == ["csr-w1", "csr-w2-late"]
    assert result["attempts"] == 3 and result["missing"] == [] and "deprecations" not in result
    assert time.monotonic() - started < 10


def test_a_task_written_before_wait_existed_still_waits(cluster):
    """wait defaults to true: wait_timeout alone set how long to wait, and poll_interval is wait_sleep's old name."""
    cluster.add_csr(make_csr("csr-w1"))
    cluster.csr_arrivals[3] = [make_csr("csr-w2-late", username="system:node:w2", cn="system:node:w2", dns=("w2",),
                                        ips=("10.0.0.22",))]
    outcome, result = run(cluster, wait_timeout=30, poll_interval=1)
    assert outcome == "exit", result
    assert result["attempts"] == 3 and result["missing"] == []
    assert deprecated_aliases(result) == {"poll_interval": ("1.0.0", "baremetal.kubernetes")}


def test_without_wait_it_looks_once(cluster):
    cluster.add_csr(make_csr("csr-w1"))
    cluster.csr_arrivals[2] = [make_csr("csr-w2-late", username="system:node:w2", cn="system:node:w2", dns=("w2",),
                                        ips=("10.0.0.22",))]
    outcome, result = run(cluster, wait=False, wait_timeout=30)
    assert outcome == "exit" and result["attempts"] == 1 and result["missing"] == ["w2"]


def test_the_wait_is_bounded(cluster):
    cluster.add_csr(make_csr("csr-w1"))
    started = time.monotonic()
    outcome, result = run(cluster, wait_timeout=2, wait_sleep=1)
    took = time.monotonic() - started
    assert outcome == "exit"
    assert result["missing"] == ["w2"] and result["attempts"] >= 2
    assert 2 <= took < 6, took
    assert "the kubeconfig names no CA" in {n["name"]: n["message"] for n in result["nodes"]}["w2"]


def test_a_conflicting_write_is_retried(cluster):
    cluster.add_csr(make_csr("csr-good"))
    cluster.csr_conflicts["csr-good"] = 2
    outcome, result = run(cluster)
    assert outcome == "exit" and names(result["approved"]) == ["csr-good"]
    assert len(approval_puts(cluster)) == 3
    assert mod.csr_state(cluster.csrs["csr-good"]) == "approved"


def test_approved_meanwhile_by_someone_else_is_not_our_change(cluster):
    cluster.add_csr(make_csr("csr-good"))
    cluster.csr_conflicts["csr-good"] = 1
    cluster.csr_meanwhile["csr-good"] = "Approved"
    outcome, result = run(cluster)
    assert outcome == "exit"
    assert result["changed"] is False and result["approved"] == []
    assert {n["name"]: n["message"] for n in result["nodes"]}["w1"] == "approved before this run"


def test_a_node_whose_kubelet_already_serves_is_covered(cluster, tmp_path, monkeypatch):
    """Approved requests are deleted after an hour: a re-run then finds none, and asks the kubelets instead."""
    (tmp_path / "ca.crt").write_text("a CA")
    kubeconfig = tmp_path / "with-ca.conf"
    server = "    server: https://vip.example:8443"
    kubeconfig.write_text(Path(cluster.kubeconfig).read_text().replace(
        server, server + "\n    certificate-authority: ca.crt"))
    probed = []

    def probe(address, port, ca_file, node, timeout):
        probed.append((address, port, Path(ca_file).read_text(), node))
        return None if node == "w1" else "no TLS handshake with the kubelet at %s:%d: refused" % (address, port)

    monkeypatch.setattr(mod, "probe_kubelet", probe)
    cluster.nodes["w2"]["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": 10999}}
    outcome, result = run(cluster, kubeconfig=str(kubeconfig))
    assert outcome == "exit"
    assert sorted(probed) == [("10.0.0.21", 10250, "a CA", "w1"), ("10.0.0.22", 10999, "a CA", "w2")]
    assert {n["name"]: n["state"] for n in result["nodes"]} == {"w1": "serving", "w2": "missing"}
    assert result["missing"] == ["w2"] and result["changed"] is False
    probed.clear()
    outcome, result = run(cluster, kubeconfig=str(kubeconfig), check_kubelets=False)
    assert probed == [] and result["missing"] == ["w1", "w2"]


def test_bad_options_are_refused_before_any_request(cluster):
    outcome, result = run(cluster, nodes=[{"name": "w1"}, {"name": "w1", "addresses": []}])
    assert outcome == "fail" and "'w1'" in result["msg"]
    outcome, result = run(cluster, wait_timeout=-1)
    assert outcome == "fail" and "wait_timeout" in result["msg"]
    outcome, result = run(cluster, wait_sleep=0)
    assert outcome == "fail" and "wait_sleep must be at least 1 second" in result["msg"]
    assert cluster.requests == []


def test_an_api_error_fails_the_task_with_the_reason(cluster):
    forbidden = (b'{"kind": "Status", "code": 403, "reason": "Forbidden", '
                 b'"message": "certificatesigningrequests is forbidden"}')
    cluster._csr = lambda method, path, body: (403, {}, forbidden)
    outcome, result = run(cluster)
    assert outcome == "fail"
    assert "HTTP 403" in result["msg"] and "certificatesigningrequests is forbidden" in result["msg"]
    assert result["changed"] is False


# ---------------------------------------------------------------------------------------------
# probe_kubelet against a real TLS listener on loopback


def _ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _serving(ca, cn, ip):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


@pytest.fixture
def kubelet_listener(tmp_path):
    """serve(cert, key) -> port: a TLS listener on 127.0.0.1 that completes handshakes (like a kubelet, it asks
    for no client certificate it would require)."""
    servers = []

    def serve(cert, key):
        cert_file, key_file = tmp_path / "serving.crt", tmp_path / "serving.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        sock.settimeout(0.2)
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                try:
                    conn, _addr = sock.accept()
                except OSError:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.settimeout(2)
                        tls.recv(1)
                except OSError:
                    pass

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        servers.append((stop, thread, sock))
        return sock.getsockname()[1]

    yield serve
    for stop, thread, sock in servers:
        stop.set()
        thread.join(5)
        sock.close()


def test_probe_accepts_only_the_cluster_ca_the_address_and_the_node(kubelet_listener, tmp_path):
    ca, other_ca = _ca("kubernetes"), _ca("kubernetes")  # same name, different key
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    good = kubelet_listener(*_serving(ca, "system:node:w1", "127.0.0.1"))
    assert mod.probe_kubelet("127.0.0.1", good, str(ca_file), "w1", 3) is None
    problem = mod.probe_kubelet("127.0.0.1", good, str(ca_file), "w2", 3)
    assert "serves a certificate for system:node:w1, not system:node:w2" in problem
    foreign = kubelet_listener(*_serving(other_ca, "system:node:w1", "127.0.0.1"))
    assert "serves no certificate from the cluster CA" in mod.probe_kubelet("127.0.0.1", foreign, str(ca_file), "w1", 3)
    wrong_ip = kubelet_listener(*_serving(ca, "system:node:w1", "127.0.0.2"))
    assert "serves no certificate from the cluster CA" in mod.probe_kubelet("127.0.0.1", wrong_ip, str(ca_file),
                                                                            "w1", 3)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert "no TLS handshake with the kubelet at 127.0.0.1:%d" % port in mod.probe_kubelet(
        "127.0.0.1", port, str(ca_file), "w1", 3)
