#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubelet_csr_approve
short_description: Approve the kubelets' serving certificate requests, only for the nodes and addresses you name
version_added: 0.2.0
description:
  - With C(serverTLSBootstrap) every kubelet asks the cluster for its serving certificate with a
    CertificateSigningRequest (C(certificates.k8s.io/v1)) for the signer C(kubernetes.io/kubelet-serving), and
    nothing approves those by default; until one is approved C(kubectl logs), C(exec) and C(port-forward) to that
    node fail. This module approves them, but only the requests that prove to be a node asking for itself.
  - "A pending C(kubernetes.io/kubelet-serving) request is approved only when B(all) of these hold: the requester
    (C(spec.username), set by the apiserver from the credentials that created the request) is
    C(system:node:<name>) for a I(nodes) entry and is in the group C(system:nodes); the PEM request in
    C(spec.request) parses and its subject is exactly C(CN=system:node:<name>), C(O=system:nodes); every DNS
    subject alternative name is the node's name or one of its I(addresses), every IP one is one of its
    I(addresses), and there are no e-mail, URI or other names; C(spec.usages) are a subset of C(digital
    signature), C(key encipherment), C(server auth) and include C(server auth)."
  - Approval is the C(approval) subresource with a condition C(Approved), reason C(BaremetalKubernetesApproved).
    The signer (kube-controller-manager) then issues the certificate; it does not check who asked for which name,
    which is why this check matters.
  - Every other pending C(kubernetes.io/kubelet-serving) request stays pending (or is denied with
    I(deny_invalid=true)) and is listed in C(rejected) with the reason, and in a warning. Requests for other
    signers are never looked at.
  - "For every I(nodes) entry the result says whether the node is covered: an approved request that passes the
    checks (C(approved), C(issued) once the signer wrote the certificate), or, because
    kube-controller-manager deletes approved requests after an hour, a kubelet that already serves a certificate
    from the cluster CA for C(system:node:<name>) (C(serving); checked with a TLS handshake to the node's
    C(InternalIP) and kubelet port against the kubeconfig's CA, I(check_kubelets)). The other nodes are listed in
    C(missing) and in a warning."
  - With I(wait) (the default) and a I(wait_timeout) the module polls every I(wait_sleep) seconds, approving valid
    requests as they appear, until every node is covered or the time is up. A kubelet creates its request seconds
    after it starts.
  - The request is parsed by the module itself (a strict DER reader of PKCS#10, standard library only); no
    Kubernetes or cryptography Python library is needed on the target. The apiserver has verified the request's
    signature when it was created.
  - C(changed) is true only when a request was approved (or denied with I(deny_invalid)). In check mode nothing is
    written and the result says what would be approved.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  nodes:
    description:
      - The nodes whose kubelets may get a serving certificate, usually every host of the inventory.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The node name, as in C(kubectl get nodes); the requester must be C(system:node:<name>).
        type: str
        required: true
      addresses:
        description:
          - IP addresses and DNS names the node's certificate may name besides the node name, e.g. its C(node_ip)
            (the kubelet puts the node's C(InternalIP) and host name into its request).
        type: list
        elements: str
        default: []
  # Described by the wait doc fragment; this module's defaults and former names:
  wait:
    description:
      - Look again until every node in I(nodes) is covered or I(wait_timeout) expires. Without it the module looks
        once.
      - C(true) by default, unlike the other modules, so that tasks written before this option existed, which set
        only I(wait_timeout), keep waiting that long. With the default I(wait_timeout=0) the module looks once
        either way.
    default: true
  wait_timeout:
    default: 0
  wait_sleep:
    default: 2
    aliases: [poll_interval]
  deny_invalid:
    description:
      - Deny (condition C(Denied), reason C(BaremetalKubernetesDenied)) the pending C(kubernetes.io/kubelet-serving)
        requests that fail the checks, instead of leaving them pending. A kubelet whose request was denied asks
        again only after a back-off, so leave this off unless you know the requests are forged.
    type: bool
    default: false
  check_kubelets:
    description:
      - For a node without an approved request, check with a TLS handshake whether its kubelet already serves a
        certificate from the kubeconfig's CA for C(system:node:<name>) (C(serving)). Without it such a node counts
        as missing once its approved request has been cleaned up.
    type: bool
    default: true
  kubelet_port:
    description: The kubelet port to check when the Node does not report one (C(status.daemonEndpoints)).
    type: int
    default: 10250
extends_documentation_fragment:
  - baremetal.kubernetes.kubeconfig
  - baremetal.kubernetes.wait
attributes:
  check_mode:
    support: full
    description: Reads and checks everything, writes nothing; C(approved) lists what would be approved.
  diff_mode:
    support: none
    description: Approving is not a change of an object's content worth a diff; C(approved) says what happened.
seealso:
  - module: baremetal.kubernetes.cluster_health
  - name: Kubelet serving certificates
    description: Why C(serverTLSBootstrap) certificates need an approver.
    link: https://kubernetes.io/docs/reference/access-authn-authz/kubelet-tls-bootstrapping/#certificate-rotation
  - name: Certificate signing requests
    description: Signers, approval and the C(kubernetes.io/kubelet-serving) rules.
    link: https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/
"""

EXAMPLES = r"""
- name: Approve the inventory's kubelet serving certificates, waiting up to 2 minutes for their requests
  baremetal.kubernetes.kubelet_csr_approve:
    kubeconfig: /etc/kubernetes/admin.conf
    nodes:
      - name: cp1
        addresses: [10.0.0.11]
      - name: w1
        addresses: [10.0.0.21, w1.example.com]
    wait_timeout: 120
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true

- name: What would be approved, and which requests would stay pending and why?
  baremetal.kubernetes.kubelet_csr_approve:
    nodes: "{{ my_nodes }}"
  check_mode: true
  register: would
"""

RETURN = r"""
approved:
  description: The requests approved by this run (in check mode, that would be approved).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The CertificateSigningRequest's name.
      type: str
    node:
      description: The node it is for.
      type: str
    requester:
      description: C(spec.username).
      type: str
    dns_names:
      description: Its DNS subject alternative names.
      type: list
    ip_addresses:
      description: Its IP subject alternative names.
      type: list
  sample: [{name: csr-8xk2p, node: w1, requester: "system:node:w1", dns_names: [w1], ip_addresses: [10.0.0.21]}]
rejected:
  description:
    - The pending C(kubernetes.io/kubelet-serving) requests that failed the checks, each with every reason. They
      stay pending unless I(deny_invalid) denied them (C(denied)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The CertificateSigningRequest's name.
      type: str
    requester:
      description: C(spec.username).
      type: str
    reason:
      description: Why it was not approved.
      type: str
    denied:
      description: Whether this run denied it (in check mode, would deny it).
      type: bool
  sample: [{name: csr-4rq9z, requester: "system:node:w1", denied: false,
            reason: "IP address 10.0.0.22 is not an address of node w1 (10.0.0.21)"}]
pending:
  description: How many C(kubernetes.io/kubelet-serving) requests are pending when the task ends (in check mode,
    would be).
  returned: always
  type: int
  sample: 1
nodes:
  description: Per I(nodes) entry, how its kubelet's serving certificate is covered.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The node name.
      type: str
    state:
      description: C(issued), C(approved), C(serving) or C(missing).
      type: str
    csr:
      description: The approved request, for C(issued) and C(approved).
      type: str
    message:
      description: Details, e.g. why a node is missing.
      type: str
  sample: [{name: w1, state: issued, csr: csr-8xk2p, message: "approved by this run"}]
missing:
  description: The I(nodes) names whose kubelet has no approved request and (with I(check_kubelets)) serves no
    certificate from the cluster CA.
  returned: always
  type: list
  elements: str
  sample: [w2]
attempts:
  description: How many times the requests were listed.
  returned: always
  type: int
  sample: 1
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 0.4
"""

import base64
import binascii
import ipaddress
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    CLIENT_ERRORS,
    KUBECONFIG_ARGUMENT_SPEC,
    K8sApiError,
    K8sClient,
    parse_time,
    path_quote,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    poll,
    wait_argument_spec,
)

SIGNER = "kubernetes.io/kubelet-serving"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
ALLOWED_USAGES = ("digital signature", "key encipherment", "server auth")
REQUIRED_USAGE = "server auth"
APPROVE_REASON = "BaremetalKubernetesApproved"
DENY_REASON = "BaremetalKubernetesDenied"
# A conflicting write (someone else updated the request) is re-read and tried again this often.
CONFLICT_RETRIES = 3
PROBE_WORKERS = 16

OID_COMMON_NAME = "2.5.4.3"
OID_ORGANIZATION = "2.5.4.10"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_SUBJECT_ALT_NAME = "2.5.29.17"
OID_NAMES = {OID_COMMON_NAME: "CN", OID_ORGANIZATION: "O", "2.5.4.11": "OU", "2.5.4.6": "C", "2.5.4.7": "L",
             "2.5.4.8": "ST", "2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "emailAddress"}

# DER tags (X.690) of what a PKCS#10 request (RFC 2986) and its SAN extension (RFC 5280) contain.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
SEQUENCE = 0x30
SET = 0x31
CONTEXT_0 = 0xA0
STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}  # UTF8String, PrintableString, IA5String
# GeneralName choices (context-specific tags).
SAN_EMAIL = 0x81
SAN_DNS = 0x82
SAN_URI = 0x86
SAN_IP = 0x87
SAN_OTHER = {0xA0: "otherName", 0xA3: "x400Address", 0xA4: "directoryName", 0xA5: "ediPartyName",
             0x88: "registeredID"}


class CsrParseError(ValueError):
    """The request is not a well-formed DER PKCS#10 request (or uses something this reader refuses)."""


# ---------------------------------------------------------------------------------------------
# PKCS#10, read strictly (DER only: definite minimal lengths, no trailing bytes)


def _tlv(data, pos, end):
    """The DER element at data[pos:end]: (tag, start of its content, end of its content)."""
    if pos + 2 > end:
        raise CsrParseError("truncated element at byte %d" % pos)
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise CsrParseError("unsupported high tag number at byte %d" % pos)
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise CsrParseError("indefinite or oversized length at byte %d (not DER)" % (pos - 1))
        if pos + count > end:
            raise CsrParseError("truncated length at byte %d" % pos)
        length = int.from_bytes(data[pos:pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise CsrParseError("non-minimal length at byte %d (not DER)" % pos)
        pos += count
    if pos + length > end:
        raise CsrParseError("element at byte %d runs past its container" % pos)
    return tag, pos, pos + length


def _children(data, start, end):
    out = []
    pos = start
    while pos < end:
        element = _tlv(data, pos, end)
        out.append(element)
        pos = element[2]
    return out


def _expect(elements, tags, what):
    if [element[0] for element in elements] != list(tags):
        raise CsrParseError("%s: unexpected structure (tags %s)" % (what, " ".join("%02x" % e[0] for e in elements)))
    return elements


def _oid(data, start, end):
    raw = data[start:end]
    if not raw or raw[-1] & 0x80:
        raise CsrParseError("malformed object identifier")
    arcs, value, fresh = [], 0, True
    for byte in raw:
        if fresh and byte == 0x80:
            raise CsrParseError("non-minimal object identifier")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _string(data, tag, start, end, what):
    encoding = STRING_TAGS.get(tag)
    if encoding is None:
        raise CsrParseError("%s: unsupported string type (tag %02x)" % (what, tag))
    try:
        return bytes(data[start:end]).decode(encoding)
    except UnicodeDecodeError:
        raise CsrParseError("%s: not valid %s" % (what, encoding)) from None


def _subject(data, start, end):
    attributes = []
    for rdn in _children(data, start, end):
        if rdn[0] != SET:
            raise CsrParseError("subject: a relative distinguished name is not a SET")
        for atv in _children(data, rdn[1], rdn[2]):
            if atv[0] != SEQUENCE:
                raise CsrParseError("subject: an attribute is not a SEQUENCE")
            pair = _children(data, atv[1], atv[2])
            if len(pair) != 2 or pair[0][0] != OID:
                raise CsrParseError("subject: malformed attribute")
            oid, value = pair
            key = _oid(data, oid[1], oid[2])
            what = "subject %s" % OID_NAMES.get(key, key)
            attributes.append((key, _string(data, value[0], value[1], value[2], what)))
    return attributes


def _general_names(data, start, end, out):
    (names,) = _expect(_children(data, start, end), [SEQUENCE], "subjectAltName")
    for tag, name_start, name_end in _children(data, names[1], names[2]):
        raw = bytes(data[name_start:name_end])
        if tag == SAN_DNS:
            if not raw:
                raise CsrParseError("subjectAltName: empty DNS name")
            out["dns_names"].append(_string(data, 0x16, name_start, name_end, "DNS name"))
        elif tag == SAN_IP:
            if len(raw) not in (4, 16):
                raise CsrParseError("subjectAltName: an IP address of %d bytes" % len(raw))
            out["ip_addresses"].append(str(ipaddress.ip_address(raw)))
        elif tag == SAN_EMAIL:
            out["emails"].append(raw.decode("ascii", "replace"))
        elif tag == SAN_URI:
            out["uris"].append(raw.decode("ascii", "replace"))
        else:
            out["other_names"].append(SAN_OTHER.get(tag, "tag %02x" % tag))


def _extensions(data, start, end, out):
    (extensions,) = _expect(_children(data, start, end), [SEQUENCE], "extensionRequest")
    seen = set()
    for extension in _children(data, extensions[1], extensions[2]):
        if extension[0] != SEQUENCE:
            raise CsrParseError("extensionRequest: an extension is not a SEQUENCE")
        parts = _children(data, extension[1], extension[2])
        tags = [part[0] for part in parts]
        if tags not in ([OID, OCTET_STRING], [OID, BOOLEAN, OCTET_STRING]):
            raise CsrParseError("extensionRequest: malformed extension")
        oid = _oid(data, parts[0][1], parts[0][2])
        if oid in seen:
            raise CsrParseError("extension %s appears twice" % oid)
        seen.add(oid)
        if oid == OID_SUBJECT_ALT_NAME:
            _general_names(data, parts[-1][1], parts[-1][2], out)


def parse_csr_der(der):
    """The parts of a DER PKCS#10 request that decide an approval.

    Returns dict(subject=[(oid, value)], dns_names, ip_addresses, emails, uris, other_names). The signature is
    not checked here: the apiserver refuses a request whose signature does not verify.
    """
    data = memoryview(der)
    (request,) = _expect(_children(data, 0, len(data)), [SEQUENCE], "CertificationRequest")
    info, _algorithm, _signature = _expect(_children(data, request[1], request[2]), [SEQUENCE, SEQUENCE, BIT_STRING],
                                           "CertificationRequest")
    parts = _children(data, info[1], info[2])
    tags = [part[0] for part in parts]
    if tags not in ([INTEGER, SEQUENCE, SEQUENCE, CONTEXT_0], [INTEGER, SEQUENCE, SEQUENCE]):
        raise CsrParseError("CertificationRequestInfo: unexpected structure")
    if bytes(data[parts[0][1]:parts[0][2]]) != b"\x00":
        raise CsrParseError("unsupported request version")
    out = dict(subject=_subject(data, parts[1][1], parts[1][2]), dns_names=[], ip_addresses=[], emails=[], uris=[],
               other_names=[])
    if len(parts) == 4:
        found = False
        for attribute in _children(data, parts[3][1], parts[3][2]):
            if attribute[0] != SEQUENCE:
                raise CsrParseError("attributes: an attribute is not a SEQUENCE")
            oid, values = _expect(_children(data, attribute[1], attribute[2]), [OID, SET], "attribute")
            if _oid(data, oid[1], oid[2]) != OID_EXTENSION_REQUEST:
                continue
            if found:
                raise CsrParseError("more than one extensionRequest attribute")
            found = True
            if len(_children(data, values[1], values[2])) != 1:
                raise CsrParseError("extensionRequest must carry exactly one value")
            _extensions(data, values[1], values[2], out)
    return out


def pem_to_der(pem):
    """The DER bytes of the single CERTIFICATE REQUEST block in ``pem`` (bytes)."""
    try:
        text = pem.decode("ascii")
    except UnicodeDecodeError:
        raise CsrParseError("the request is not ASCII PEM") from None
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", text, re.S)
    if len(blocks) != 1 or blocks[0][0] != "CERTIFICATE REQUEST":
        raise CsrParseError("expected exactly one PEM block CERTIFICATE REQUEST, found %s"
                            % (", ".join(kind for kind, _body in blocks) or "none"))
    body = blocks[0][1]
    if ":" in body:
        raise CsrParseError("PEM headers are not supported")
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CsrParseError("the PEM body is not base64") from None


# ---------------------------------------------------------------------------------------------
# the checks


def node_table(nodes):
    """{name: dict(dns=set, ips=set, addresses=[...])} from the I(nodes) option."""
    table = {}
    for node in nodes:
        dns, ips = {node["name"].lower()}, set()
        for address in node.get("addresses") or []:
            address = str(address).strip()
            try:
                ips.add(ipaddress.ip_address(address))
            except ValueError:
                if address:
                    dns.add(address.lower().rstrip("."))
        table[node["name"]] = dict(dns=dns, ips=ips, addresses=[str(a) for a in node.get("addresses") or []])
    return table


def csr_state(csr):
    """pending, approved, issued, denied or failed."""
    status = csr.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or [] if c.get("status", "True") == "True"}
    if "Denied" in types:
        return "denied"
    if "Failed" in types:
        return "failed"
    if "Approved" in types:
        return "issued" if status.get("certificate") else "approved"
    return "pending"


def check_csr(csr, nodes):
    """(node name or None, parsed SANs or None, reasons): the request may be approved when ``reasons`` is empty.

    ``nodes`` is node_table()'s result.
    """
    spec = csr.get("spec") or {}
    username = spec.get("username") or ""
    if not username.startswith(NODE_USER_PREFIX) or len(username) == len(NODE_USER_PREFIX):
        return None, None, ["requested by %r, not by a node (system:node:<name>)" % username]
    name = username[len(NODE_USER_PREFIX):]
    node = nodes.get(name)
    if node is None:
        return name, None, ["node %s is not one of the nodes to approve for" % name]
    reasons = []
    if NODES_GROUP not in (spec.get("groups") or []):
        reasons.append("the requester is not in the group %s" % NODES_GROUP)
    usages = list(spec.get("usages") or [])
    extra = sorted(set(usages) - set(ALLOWED_USAGES))
    if extra:
        reasons.append("usages %s are not allowed (only %s)" % (", ".join(extra), ", ".join(ALLOWED_USAGES)))
    if REQUIRED_USAGE not in usages:
        reasons.append("usages lack %r" % REQUIRED_USAGE)
    try:
        parsed = parse_csr_der(pem_to_der(base64.b64decode(spec.get("request") or "", validate=True)))
    except (CsrParseError, binascii.Error, ValueError) as exc:
        return name, None, [*reasons, "the request does not parse: %s" % exc]
    expected = [(OID_COMMON_NAME, username), (OID_ORGANIZATION, NODES_GROUP)]
    if sorted(parsed["subject"]) != sorted(expected):
        reasons.append("subject is %s, not CN=%s, O=%s" % (
            ", ".join("%s=%s" % (OID_NAMES.get(k, k), v) for k, v in parsed["subject"]) or "empty", username,
            NODES_GROUP))
    for kind, key in (("e-mail", "emails"), ("URI", "uris"), ("other", "other_names")):
        if parsed[key]:
            reasons.append("%s subject alternative names are not allowed: %s" % (kind, ", ".join(parsed[key])))
    if not parsed["dns_names"] and not parsed["ip_addresses"]:
        reasons.append("no DNS or IP subject alternative name")
    known = ", ".join(node["addresses"]) or "none listed"
    for dns_name in parsed["dns_names"]:
        if dns_name.lower().rstrip(".") not in node["dns"]:
            reasons.append("DNS name %s is neither node %s's name nor one of its addresses (%s)"
                           % (dns_name, name, known))
    for ip in parsed["ip_addresses"]:
        if ipaddress.ip_address(ip) not in node["ips"]:
            reasons.append("IP address %s is not an address of node %s (%s)" % (ip, name, known))
    return name, parsed, reasons


def probe_kubelet(address, port, ca_file, node_name, timeout):
    """None when the kubelet at address:port serves a certificate from the CA in ``ca_file`` that names
    ``address`` and is for system:node:<node_name>; else why not."""
    where = "%s:%d" % ("[%s]" % address if ":" in address else address, port)
    try:
        context = ssl.create_default_context(cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((address, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=address) as tls:
            cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        return "the kubelet at %s serves no certificate from the cluster CA for that address: %s" % (
            where, exc.verify_message or exc)
    except (OSError, ssl.SSLError) as exc:
        return "no TLS handshake with the kubelet at %s: %s" % (where, exc)
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    if names != [NODE_USER_PREFIX + node_name]:
        return "the kubelet at %s serves a certificate for %s, not %s%s" % (
            where, ", ".join(names) or "no CN", NODE_USER_PREFIX, node_name)
    return None


# ---------------------------------------------------------------------------------------------
# the run


def _csr_name(csr):
    return (csr.get("metadata") or {}).get("name")


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Approver:
    def __init__(self, module, client, clock=time.monotonic, sleep=time.sleep):
        self.module = module
        self.params = module.params
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.deadline = Deadline(self.params["wait_timeout"], clock)
        self.nodes = node_table(self.params["nodes"])
        self.approved = {}  # name -> entry, approved by this run
        self.denied = {}  # name -> entry, denied by this run (deny_invalid)
        self.rejected = {}  # name -> entry, pending and refused at the last look
        self.attempts = 0

    # -- API ---------------------------------------------------------------------------------
    def list_csrs(self):
        return [csr for csr in self.client.list_all(CSR_PATH) if (csr.get("spec") or {}).get("signerName") == SIGNER]

    def decide(self, csr, condition, reason, message):
        """Set the Approved or Denied condition through the approval subresource. Returns (state, written): the
        request's state afterwards as this run saw it, and whether this run set it (False when another writer
        decided first, or the request is gone)."""
        name = _csr_name(csr)
        path = "%s/%s/approval" % (CSR_PATH, path_quote(name))
        for attempt in range(CONFLICT_RETRIES + 1):
            body = dict(csr)
            status = dict(body.get("status") or {})
            condition_entry = dict(type=condition, status="True", reason=reason, message=message,
                                   lastUpdateTime=_now())
            status["conditions"] = [*(status.get("conditions") or []), condition_entry]
            body["status"] = status
            try:
                self.client.request("PUT", path, body=body)
                return condition.lower(), True
            except K8sApiError as exc:
                if exc.code == 404:
                    return "gone", False
                if exc.code != 409 or attempt == CONFLICT_RETRIES:
                    raise
            csr = self.client.get("%s/%s" % (CSR_PATH, path_quote(name)))
            if csr_state(csr) != "pending":
                return csr_state(csr), False
        return "pending", False  # pragma: no cover - the loop returns or raises

    def get_nodes(self):
        return {(n.get("metadata") or {}).get("name"): n for n in self.client.list_all("/api/v1/nodes")}

    # -- one look ----------------------------------------------------------------------------
    def look(self):
        """List the requests, approve the valid pending ones, note (or deny) the others. Returns {node: coverage}
        of the nodes covered by an approved request that passes the checks."""
        check = self.module.check_mode
        covered = {}
        self.rejected = {}  # what is pending and refused now; a request approved or gone meanwhile drops out
        csrs = sorted(self.list_csrs(), key=lambda c: (
            parse_time((c.get("metadata") or {}).get("creationTimestamp")) or 0, _csr_name(c) or ""))
        for csr in csrs:
            name = _csr_name(csr)
            state = csr_state(csr)
            if check and name in self.approved:
                state = "approved"  # approved by this check-mode run, on paper
            if check and name in self.denied:
                continue
            node, parsed, reasons = check_csr(csr, self.nodes)
            requester = (csr.get("spec") or {}).get("username") or ""
            if state == "pending" and not reasons:
                state, written = ("approved", True) if check else self.decide(
                    csr, "Approved", APPROVE_REASON, "baremetal.kubernetes.kubelet_csr_approve: requester, subject, "
                    "names and usages match node %s" % node)
                if written:
                    self.approved[name] = dict(name=name, node=node, requester=requester,
                                               dns_names=parsed["dns_names"], ip_addresses=parsed["ip_addresses"])
            elif state == "pending":
                entry = dict(name=name, requester=requester, reason="; ".join(reasons), denied=False)
                state, written = "pending", False
                if self.params["deny_invalid"]:
                    state, written = ("denied", True) if check else self.decide(
                        csr, "Denied", DENY_REASON, "baremetal.kubernetes.kubelet_csr_approve: %s" % entry["reason"])
                if written:
                    self.denied[name] = dict(entry, denied=True)
                elif state == "pending":
                    self.rejected[name] = entry
            if not reasons and state in ("approved", "issued"):
                covered[node] = dict(name=node, state=state, csr=name, message="approved by this run"
                                     if name in self.approved else "approved before this run")
        return covered

    def probe(self, names):
        """{node: None (serving) or why not} for nodes without an approved request."""
        ca_file = getattr(self.client, "ca_path", None)
        if not ca_file:
            return dict.fromkeys(names, "the kubelet was not checked: the kubeconfig names no CA")
        registered = self.get_nodes()
        targets, out = {}, {}
        for name in names:
            node = registered.get(name)
            if node is None:
                out[name] = "no Node %s is registered" % name
                continue
            status = node.get("status") or {}
            internal = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
            inventory = [str(ip) for ip in self.nodes[name]["ips"]]
            address = next((a for a in internal if a in inventory), None) or (internal or inventory or [None])[0]
            if not address:
                out[name] = "Node %s reports no InternalIP and its addresses list no IP" % name
                continue
            port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
                    or self.params["kubelet_port"])
            targets[name] = (address, int(port))
        if targets:
            timeout = min(5, self.params.get("request_timeout") or 5)
            with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(targets))) as pool:
                futures = {name: pool.submit(probe_kubelet, address, port, ca_file, name, timeout)
                           for name, (address, port) in targets.items()}
                out.update({name: future.result() for name, future in futures.items()})
        return out

    def attempt(self):
        """One look, then for the nodes it leaves uncovered a look at their kubelets: (coverage, missing)."""
        coverage = self.look()
        uncovered = [name for name in self.nodes if name not in coverage]
        if uncovered and self.params["check_kubelets"]:
            for name, problem in self.probe(uncovered).items():
                if problem is None:
                    coverage[name] = dict(name=name, state="serving", csr=None,
                                          message="its kubelet serves a certificate from the cluster CA")
                else:
                    coverage[name] = dict(name=name, state="missing", csr=None, message=problem)
        missing = [name for name in self.nodes if coverage.get(name, {}).get("state", "missing") == "missing"]
        return coverage, missing

    def run(self):
        polled = poll(self.attempt, lambda outcome: not outcome[1], self.params["wait"], self.deadline,
                      self.params["wait_sleep"], self.sleep)
        self.attempts = polled.attempts
        return self.finish(*polled.result)

    def finish(self, coverage, missing):
        refused = list(self.denied.values()) + list(self.rejected.values())
        nodes = []
        for name in self.nodes:
            entry = dict(coverage.get(name) or dict(name=name, state="missing", csr=None, message=""))
            if entry["state"] == "missing":
                mine = [e["name"] for e in refused if e["requester"] == NODE_USER_PREFIX + name]
                why = ["no approved kubelet-serving certificate request"]
                if mine:
                    why.append("refused: %s" % ", ".join(mine))
                if entry["message"]:
                    why.append(entry["message"])
                entry["message"] = "; ".join(why)
            nodes.append(entry)
        if refused:
            self.module.warn("%d kubelet-serving certificate request(s) not approved: %s" % (
                len(refused), "; ".join("%s from %s (%s): %s" % (e["name"], e["requester"] or "?", "denied"
                                                                 if e["denied"] else "left pending", e["reason"])
                                        for e in refused)))
        if missing:
            self.module.warn("no kubelet serving certificate for %d node(s) after %d look(s) in %.0f s: %s" % (
                len(missing), self.attempts, self.deadline.elapsed(),
                "; ".join("%s: %s" % (n["name"], n["message"]) for n in nodes if n["state"] == "missing")))
        return dict(changed=bool(self.approved or self.denied), approved=list(self.approved.values()),
                    rejected=refused, pending=len(self.rejected), nodes=nodes, missing=missing,
                    attempts=self.attempts, duration=round(self.deadline.elapsed(), 3))


def main():
    argument_spec = dict(
        nodes=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            addresses=dict(type="list", elements="str", default=[]),
        )),
        deny_invalid=dict(type="bool", default=False),
        check_kubelets=dict(type="bool", default=True),
        kubelet_port=dict(type="int", default=10250),
    )
    argument_spec.update(KUBECONFIG_ARGUMENT_SPEC)
    # wait defaults to true: wait_timeout alone set how long the module waited before wait existed.
    argument_spec.update(wait_argument_spec(timeout=0, sleep=2, wait=True, old_names=dict(wait_sleep="poll_interval")))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_wait_options(module)
    names = [node["name"] for node in params["nodes"]]
    problems = sorted({name for name in names if names.count(name) > 1}) + [n for n in names if not n.strip()]
    if problems:
        module.fail_json(msg="nodes: every name must be given once and not be empty; check %s"
                         % ", ".join(repr(p) for p in problems))

    client = None
    approver = None
    try:
        client = K8sClient.from_module(module)
        approver = Approver(module, client)
        result = approver.run()
    except Exception as exc:  # every failure ends here, with the requests approved until then
        done = list(approver.approved.values()) if approver else []
        partial = dict(approved=done, changed=bool(done) and not module.check_mode)
        fail_from_error(module, exc, "kubelet_csr_approve", partial, expected=CLIENT_ERRORS)
    finally:
        if client:
            client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
