# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for x509_certificate_status: which certificates a host must issue again, from real PEM files."""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.baremetal.kubernetes.plugins.modules import x509_certificate_status as mod
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import run_module

NOW = datetime.datetime.now(datetime.timezone.utc)
SANS = ["DNS:etcd1", "DNS:localhost", "IP:10.0.0.11", "IP:127.0.0.1"]


def _key(kind="ec"):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(tmp_path, name="ca", kind="ec"):
    key = _key(kind)
    cert = (x509.CertificateBuilder().subject_name(_name("etcd-ca")).issuer_name(_name("etcd-ca"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / ("%s.crt" % name)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _issue(tmp_path, ca, name="server", common_name="etcd1", sans=None, ekus=("serverAuth", "clientAuth"),
           days=365, key=None, mode=0o600, key_usage=True):
    ca_cert, ca_key, _path = ca
    key = key or _key()
    sans = SANS if sans is None else sans
    general = [x509.IPAddress(ipaddress.ip_address(s[3:])) if s.startswith("IP:") else x509.DNSName(s[4:])
               for s in sans]
    oids = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=days)))
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage([oids[e] for e in ekus]), critical=False)
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = tmp_path / ("%s.crt" % name), tmp_path / ("%s.key" % name)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, mode)
    return cert_path, key_path


def _spec(tmp_path, name="server", **overrides):
    spec = {"name": name, "path": str(tmp_path / ("%s.crt" % name)),
            "privatekey_path": str(tmp_path / ("%s.key" % name)),
            "common_name": "etcd1", "subject_alt_name": ["DNS:localhost", "DNS:etcd1", "IP:127.0.0.1", "IP:10.0.0.11"],
            "extended_key_usage": ["clientAuth", "serverAuth"], "key_usage": ["digitalSignature", "keyEncipherment"],
            "privatekey_mode": "0600", "privatekey_owner": pwd.getpwuid(os.getuid()).pw_name,
            "privatekey_group": grp.getgrgid(os.getgid()).gr_name}
    spec.update(overrides)
    return spec


def _run(tmp_path, certificates, ca_path=None, check_mode=False, renew_before_days=30):
    return run_module(mod.main, {"ca_path": str(ca_path or tmp_path / "ca.crt"), "certificates": certificates,
                                 "renew_before_days": renew_before_days}, check_mode=check_mode)


def _reasons(tmp_path, spec, **kwargs):
    kind, result = _run(tmp_path, [spec], **kwargs)
    assert kind == "exit", result
    assert result["changed"] is False
    return result["certificates"][spec["name"]]["reasons"]


def test_a_certificate_as_wanted_needs_nothing_and_sans_compare_as_sets(tmp_path):
    ca = _ca(tmp_path)
    _issue(tmp_path, ca)
    kind, result = _run(tmp_path, [_spec(tmp_path)], check_mode=True)
    assert kind == "exit" and result["changed"] is False
    assert result["reissue"] == []
    assert result["certificates"]["server"]["reasons"] == []
    expires = datetime.datetime.strptime(result["certificates"]["server"]["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((expires.replace(tzinfo=datetime.timezone.utc) - NOW).days - 365) <= 1


def test_missing_files_are_reissued_and_nothing_secret_is_returned(tmp_path):
    ca = _ca(tmp_path)
    _issue(tmp_path, ca, name="peer")
    kind, result = _run(tmp_path, [_spec(tmp_path, "server"), _spec(tmp_path, "peer")])
    assert kind == "exit"
    assert result["reissue"] == ["server"]
    assert "unreadable" in result["certificates"]["server"]["reasons"][0]
    assert "PRIVATE KEY" not in repr(result)
    os.unlink(tmp_path / "peer.key")
    reasons = _reasons(tmp_path, _spec(tmp_path, "peer"))
    assert any(r.startswith("key %s unreadable" % (tmp_path / "peer.key")) for r in reasons)


def test_a_certificate_for_another_key_is_reissued(tmp_path):
    ca = _ca(tmp_path)
    _issue(tmp_path, ca)
    (tmp_path / "server.key").write_bytes(_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(tmp_path / "server.key", 0o600)
    assert _reasons(tmp_path, _spec(tmp_path)) == ["the certificate is not for the key %s" % (tmp_path / "server.key")]


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_certificate_of_another_ca_is_reissued(tmp_path, kind):
    _issue(tmp_path, _ca(tmp_path, name="other", kind=kind))
    _ca(tmp_path, kind=kind)  # same subject, different key: the signature decides
    assert _reasons(tmp_path, _spec(tmp_path)) == ["not signed by the CA %s" % (tmp_path / "ca.crt")]
    _issue(tmp_path, _ca(tmp_path, kind=kind))
    assert _reasons(tmp_path, _spec(tmp_path)) == []


def test_expiry_within_renew_before_days_is_reissued(tmp_path):
    _issue(tmp_path, _ca(tmp_path), days=10)
    reasons = _reasons(tmp_path, _spec(tmp_path))
    assert len(reasons) == 1 and "renew_before_days 30" in reasons[0]
    assert reasons[0].startswith(("expires in 9.9", "expires in 10.0 days"))
    assert _reasons(tmp_path, _spec(tmp_path), renew_before_days=5) == []


def test_subject_sans_and_usages_are_compared(tmp_path):
    _issue(tmp_path, _ca(tmp_path), common_name="etcd9", sans=SANS[:3], ekus=("serverAuth",), key_usage=False)
    reasons = _reasons(tmp_path, _spec(tmp_path))
    assert reasons == [
        "common name etcd9, want etcd1",
        "subject alternative names differ: missing IP:127.0.0.1",
        "extended key usages differ: missing 1.3.6.1.5.5.7.3.2",
        "key usages differ: missing digitalSignature, keyEncipherment",
    ]


def test_an_extra_san_counts_too(tmp_path):
    _issue(tmp_path, _ca(tmp_path), sans=[*SANS, "IP:10.0.0.99"])
    assert _reasons(tmp_path, _spec(tmp_path)) == ["subject alternative names differ: extra IP:10.0.0.99"]


def test_key_file_mode_and_owner(tmp_path):
    _issue(tmp_path, _ca(tmp_path), mode=0o644)
    spec = _spec(tmp_path, privatekey_owner="nobody-such-user", privatekey_group="no-such-group")
    assert _reasons(tmp_path, spec) == [
        "key mode 0644, want 0600", "key owner %s, want nobody-such-user" % pwd.getpwuid(os.getuid()).pw_name,
        "key group %s, want no-such-group" % grp.getgrgid(os.getgid()).gr_name]
    os.chmod(tmp_path / "server.key", 0o600)
    assert _reasons(tmp_path, _spec(tmp_path)) == []


def test_the_ca_copy_next_to_it_must_match(tmp_path):
    ca = _ca(tmp_path)
    _issue(tmp_path, ca)
    copy = tmp_path / "copy-ca.crt"
    assert _reasons(tmp_path, _spec(tmp_path, ca_file=str(copy))) == [
        "the CA copy %s unreadable: No such file or directory" % copy]
    copy.write_bytes((tmp_path / "ca.crt").read_bytes())
    assert _reasons(tmp_path, _spec(tmp_path, ca_file=str(copy))) == []
    copy.write_bytes((tmp_path / "ca.crt").read_bytes().replace(b"A", b"B", 1))
    assert _reasons(tmp_path, _spec(tmp_path, ca_file=str(copy))) == [
        "the CA copy %s differs from %s" % (copy, tmp_path / "ca.crt")]


def test_bad_input_fails_once_with_a_clear_message(tmp_path):
    kind, result = _run(tmp_path, [_spec(tmp_path)])
    assert kind == "fail" and result["msg"].startswith("x509_certificate_status: cannot read the CA certificate")
    _issue(tmp_path, _ca(tmp_path))
    kind, result = _run(tmp_path, [_spec(tmp_path), _spec(tmp_path)])
    assert kind == "fail" and result["msg"] == "x509_certificate_status: certificate names must be unique: server"
    kind, result = _run(tmp_path, [_spec(tmp_path, key_usage=["digitalSignature", "everything"])])
    assert kind == "fail" and result["msg"] == "x509_certificate_status: server: unknown key_usage everything"
    kind, result = _run(tmp_path, [_spec(tmp_path, subject_alt_name=["IP:not-an-ip"])])
    assert kind == "fail" and "'IP:not-an-ip' is not an IP address" in result["msg"]
    kind, result = _run(tmp_path, [_spec(tmp_path, privatekey_mode="rw")])
    assert kind == "fail" and "privatekey_mode 'rw' is not an octal mode" in result["msg"]
