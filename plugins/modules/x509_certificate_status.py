#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: x509_certificate_status
short_description: Tell which of a host's certificates must be issued again, in one read
version_added: 0.2.0
description:
  - Reads each certificate in I(certificates) with its private key and the CA certificate I(ca_path), on the host
    that holds them, and reports which ones are missing or no longer what is wanted. Nothing is changed and no key
    material is returned.
  - "A certificate must be issued (again) when: the certificate or its key file is missing or unreadable; the
    certificate's public key is not the key's; it was not signed by the CA in I(ca_path); it expires within
    I(renew_before_days); its subject common name, subject alternative names (as a set), extended key usages (as a
    set) or key usages differ from the wanted ones; the key file's mode or owner differ from the wanted ones; or a
    copy of the CA certificate that should sit next to it (I(ca_file)) is missing or differs."
  - The roles run it once per host so that an unchanged PKI costs one module run instead of a key, signing request,
    signature and copy per certificate. The issuing tasks then run only for the names in RV(reissue).
  - Needs the Python C(cryptography) library on the host.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  ca_path:
    description: The CA certificate (PEM) the certificates must be signed by.
    type: path
    required: true
  renew_before_days:
    description: A certificate that expires within this many days must be issued again.
    type: int
    default: 30
  certificates:
    description: The wanted certificates.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A name for the certificate, returned in RV(reissue) and RV(certificates).
        type: str
        required: true
      path:
        description: The certificate (PEM).
        type: path
        required: true
      privatekey_path:
        description: Its private key (PEM, unencrypted).
        type: path
        required: true
      common_name:
        description: The wanted subject common name.
        type: str
        required: true
      subject_alt_name:
        description: The wanted subject alternative names, as C(DNS:name) and C(IP:address).
        type: list
        elements: str
        default: []
      extended_key_usage:
        description: The wanted extended key usages, as C(serverAuth), C(clientAuth) or dotted OIDs.
        type: list
        elements: str
        default: []
      key_usage:
        description: The wanted key usages, as named in RFC 5280 (C(digitalSignature), C(keyEncipherment), ...).
        type: list
        elements: str
        default: []
      privatekey_mode:
        description: The wanted mode of the key file, in octal (C("0600")).
        type: str
      privatekey_owner:
        description: The wanted owner (user name) of the key file.
        type: str
      privatekey_group:
        description: The wanted group (group name) of the key file.
        type: str
      ca_file:
        description: A copy of I(ca_path) that must exist next to the certificate with the same content.
        type: path
attributes:
  platform:
    platforms: posix
    support: full
    description: Runs on the host that holds the certificates and keys.
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
requirements:
  - cryptography (Python library, on the host)
seealso:
  - module: community.crypto.x509_certificate_info
"""

EXAMPLES = r"""
- name: Read this member's certificates
  baremetal.kubernetes.x509_certificate_status:
    ca_path: /etc/etcd/pki/ca.crt
    renew_before_days: 30
    certificates:
      - name: server
        path: /etc/etcd/pki/server.crt
        privatekey_path: /etc/etcd/pki/server.key
        common_name: etcd1
        subject_alt_name: [DNS:etcd1, IP:10.0.0.11, IP:127.0.0.1]
        extended_key_usage: [serverAuth, clientAuth]
        key_usage: [digitalSignature, keyEncipherment]
        privatekey_mode: "0600"
        privatekey_owner: etcd
  register: pki_status

- name: Issue only what needs it
  ansible.builtin.include_tasks: issue.yml
  loop: "{{ pki_status.reissue }}"
"""

RETURN = r"""
reissue:
  description: The names of the certificates that must be issued (again), in the order of I(certificates).
  returned: always
  type: list
  elements: str
  sample: [server]
certificates:
  description: Per certificate name, why it must be issued again (empty when it is fine) and when it expires.
  returned: always
  type: dict
  sample:
    server:
      reasons: ["subject alternative names differ: missing IP:10.0.0.21"]
      not_after: "2027-11-28T10:00:00Z"
"""

import datetime
import grp
import ipaddress
import os
import pwd
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
    EKU_NAMES = {
        "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
        "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
        "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
        "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
        "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,
        "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,
    }
except ImportError:  # pragma: no cover - reported by main()
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
    EKU_NAMES = {}

# RFC 5280 key usage names -> cryptography's KeyUsage attributes (nonRepudiation: KEY_USAGE_ALIASES).
KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
KEY_USAGE_ALIASES = {"nonRepudiation": "contentCommitment"}


class CertificateStatusError(Exception):
    """A problem with the module's input (raised inside, reported once by main())."""


def _public_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _not_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def _signed_by(cert, ca_cert):
    """Whether ``ca_cert``'s key made ``cert``'s signature (and the issuer name is the CA's subject)."""
    if cert.issuer != ca_cert.subject:
        return False
    ca_key = ca_cert.public_key()
    try:
        if isinstance(ca_key, ec.EllipticCurvePublicKey):
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(ca_key, rsa.RSAPublicKey):
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)
        else:
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _extension(cert, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _sans(cert):
    names = set()
    value = _extension(cert, x509.SubjectAlternativeName)
    for entry in value or []:
        if isinstance(entry, x509.DNSName):
            names.add("DNS:%s" % entry.value)
        elif isinstance(entry, x509.IPAddress):
            names.add("IP:%s" % entry.value)
        elif isinstance(entry, x509.RFC822Name):
            names.add("email:%s" % entry.value)
        elif isinstance(entry, x509.UniformResourceIdentifier):
            names.add("URI:%s" % entry.value)
        else:
            names.add(repr(entry))
    return names


def _normalized_sans(wanted):
    """``IP:`` entries in the form ipaddress prints them (a wanted ``IP:::1`` matches the certificate's ``::1``)."""
    names = set()
    for entry in wanted:
        kind, _sep, value = entry.partition(":")
        if kind.upper() == "IP":
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError as exc:
                raise CertificateStatusError("subject_alt_name %r is not an IP address" % entry) from exc
            names.add("IP:%s" % value)
        elif kind.upper() == "DNS":
            names.add("DNS:%s" % value)
        else:
            names.add(entry)
    return names


def _ekus(cert):
    value = _extension(cert, x509.ExtendedKeyUsage)
    return {oid.dotted_string for oid in value or []}


def _key_usages(cert):
    value = _extension(cert, x509.KeyUsage)
    if value is None:
        return set()
    found = set()
    for name, attribute in KEY_USAGES.items():
        try:
            if getattr(value, attribute):
                found.add(name)
        except ValueError:  # encipher_only/decipher_only without key_agreement
            continue
    return found


def _difference(label, have, want):
    missing, extra = sorted(want - have), sorted(have - want)
    parts = (["missing " + ", ".join(missing)] if missing else []) + (["extra " + ", ".join(extra)] if extra else [])
    return "%s differ: %s" % (label, "; ".join(parts))


def check_certificate(spec, ca_cert, ca_pem, renew_before, now):
    """Return (reasons, not_after ISO string or None) for one wanted certificate."""
    reasons = []
    try:
        cert = x509.load_pem_x509_certificate(_read(spec["path"]))
    except (OSError, ValueError) as exc:
        return ["certificate %s unreadable: %s" % (spec["path"], getattr(exc, "strerror", None) or exc)], None
    not_after = _not_after(cert)
    try:
        key = serialization.load_pem_private_key(_read(spec["privatekey_path"]), password=None)
    except (OSError, ValueError, TypeError) as exc:
        reasons.append("key %s unreadable: %s" % (spec["privatekey_path"], getattr(exc, "strerror", None) or exc))
        key = None
    if key is not None and _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        reasons.append("the certificate is not for the key %s" % spec["privatekey_path"])
    if not _signed_by(cert, ca_cert):
        reasons.append("not signed by the CA %s" % spec["ca_path"])
    days_left = (not_after - now).total_seconds() / 86400
    if days_left < renew_before:
        reasons.append("expires in %.1f days (renew_before_days %d)" % (days_left, renew_before))
    common_names = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if common_names != [spec["common_name"]]:
        reasons.append("common name %s, want %s" % (", ".join(common_names) or "none", spec["common_name"]))
    want_sans = _normalized_sans(spec["subject_alt_name"])
    have_sans = _sans(cert)
    if have_sans != want_sans:
        reasons.append(_difference("subject alternative names", have_sans, want_sans))
    want_ekus, have_ekus = {EKU_NAMES.get(name, name) for name in spec["extended_key_usage"]}, _ekus(cert)
    if have_ekus != want_ekus:
        reasons.append(_difference("extended key usages", have_ekus, want_ekus))
    want_usages = {KEY_USAGE_ALIASES.get(name, name) for name in spec["key_usage"]}
    unknown = sorted(want_usages - set(KEY_USAGES))
    if unknown:
        raise CertificateStatusError("%s: unknown key_usage %s" % (spec["name"], ", ".join(unknown)))
    have_usages = _key_usages(cert)
    if have_usages != want_usages:
        reasons.append(_difference("key usages", have_usages, want_usages))
    reasons.extend(_file_attributes(spec))
    if spec.get("ca_file"):
        try:
            if _read(spec["ca_file"]).strip() != ca_pem.strip():
                reasons.append("the CA copy %s differs from %s" % (spec["ca_file"], spec["ca_path"]))
        except OSError as exc:
            reasons.append("the CA copy %s unreadable: %s" % (spec["ca_file"], exc.strerror))
    return reasons, not_after.strftime("%Y-%m-%dT%H:%M:%SZ")


def _file_attributes(spec):
    reasons = []
    try:
        info = os.stat(spec["privatekey_path"])
    except OSError:
        return reasons  # reported as unreadable above
    if spec.get("privatekey_mode"):
        try:
            wanted = int(str(spec["privatekey_mode"]), 8)
        except ValueError as exc:
            raise CertificateStatusError("%s: privatekey_mode %r is not an octal mode"
                                         % (spec["name"], spec["privatekey_mode"])) from exc
        if info.st_mode & 0o7777 != wanted:
            reasons.append("key mode %04o, want %04o" % (info.st_mode & 0o7777, wanted))
    for option, label, number, lookup in (("privatekey_owner", "owner", info.st_uid, pwd.getpwuid),
                                          ("privatekey_group", "group", info.st_gid, grp.getgrgid)):
        if spec.get(option):
            try:
                name = lookup(number)[0]
            except KeyError:
                name = str(number)
            if name != spec[option]:
                reasons.append("key %s %s, want %s" % (label, name, spec[option]))
    return reasons


def certificate_status(params, now=None):
    """The module's result (without ``changed``) for its parameters."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        ca_pem = _read(params["ca_path"])
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except (OSError, ValueError) as exc:
        raise CertificateStatusError("cannot read the CA certificate %s: %s"
                                     % (params["ca_path"], getattr(exc, "strerror", None) or exc)) from exc
    names = [spec["name"] for spec in params["certificates"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CertificateStatusError("certificate names must be unique: %s" % ", ".join(duplicates))
    reissue, report = [], {}
    for spec in params["certificates"]:
        spec = dict(spec, ca_path=params["ca_path"])
        reasons, not_after = check_certificate(spec, ca_cert, ca_pem, params["renew_before_days"], now)
        report[spec["name"]] = {"reasons": reasons, "not_after": not_after}
        if reasons:
            reissue.append(spec["name"])
    return {"reissue": reissue, "certificates": report}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_path=dict(type="path", required=True),
            renew_before_days=dict(type="int", default=30),
            certificates=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                path=dict(type="path", required=True),
                privatekey_path=dict(type="path", required=True, no_log=False),
                common_name=dict(type="str", required=True),
                subject_alt_name=dict(type="list", elements="str", default=[]),
                extended_key_usage=dict(type="list", elements="str", default=[]),
                key_usage=dict(type="list", elements="str", default=[]),
                privatekey_mode=dict(type="str", no_log=False),
                privatekey_owner=dict(type="str", no_log=False),
                privatekey_group=dict(type="str", no_log=False),
                ca_file=dict(type="path"),
            )),
        ),
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        result = certificate_status(module.params)
    except CertificateStatusError as exc:
        module.fail_json(msg="x509_certificate_status: %s" % exc)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
