# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for kubesim's own logic: transformers, /metrics, selectors, PDB arithmetic, flags, patches, protobuf."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import nacl.secret
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kubesim import pdb, proto
from kubesim.flags import FlagError, command_from_manifest, parse_flags
from kubesim.metrics import EncryptionConfigMetrics, apiserver_id, go_float, sha256_label
from kubesim.patch import PatchError, apply_patch, json_patch, strategic_merge_patch
from kubesim.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from kubesim.transformers import TransformerError, Transformers, parse_config

KEY32 = base64.b64encode(bytes(range(32))).decode()
KEY16 = base64.b64encode(bytes(range(16))).decode()
ETCD_KEY = "/registry/secrets/default/db"


def config(*providers, resources=("secrets",)):
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": list(resources), "providers": list(providers)}]}


def chain(*providers):
    return parse_config(config(*providers))["secrets"]


# --- transformers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("provider,key", [("aescbc", KEY32), ("aescbc", KEY16), ("aesgcm", KEY32),
                                          ("secretbox", KEY32)])
def test_transformer_round_trip_and_prefix(provider, key):
    transformer = chain({provider: {"keys": [{"name": "k1", "secret": key}]}})
    stored = transformer.to_storage(b'{"data":"plaintext"}', ETCD_KEY)
    assert stored.startswith(b"k8s:enc:%s:v1:k1:" % provider.encode())
    assert b"plaintext" not in stored
    assert transformer.from_storage(stored, ETCD_KEY) == b'{"data":"plaintext"}'


def test_aescbc_wire_format_is_iv_then_pkcs7_cbc():
    transformer = chain({"aescbc": {"keys": [{"name": "k1", "secret": KEY32}]}})
    blob = transformer.to_storage(b"0123456789abcdef", ETCD_KEY)[len(b"k8s:enc:aescbc:v1:k1:"):]
    assert len(blob) == 16 + 32  # IV + one full block of data + one full block of padding
    decryptor = Cipher(algorithms.AES(bytes(range(32))), modes.CBC(blob[:16])).decryptor()
    assert decryptor.update(blob[16:]) + decryptor.finalize() == b"0123456789abcdef" + bytes([16]) * 16


def test_aesgcm_wire_format_is_nonce_then_sealed_with_etcd_key_as_aad():
    transformer = chain({"aesgcm": {"keys": [{"name": "k1", "secret": KEY32}]}})
    blob = transformer.to_storage(b"payload", ETCD_KEY)[len(b"k8s:enc:aesgcm:v1:k1:"):]
    assert AESGCM(bytes(range(32))).decrypt(blob[:12], blob[12:], ETCD_KEY.encode()) == b"payload"
    with pytest.raises(TransformerError):
        transformer.from_storage(b"k8s:enc:aesgcm:v1:k1:" + blob, "/registry/secrets/default/other")


def test_secretbox_wire_format_is_24_byte_nonce_then_box():
    transformer = chain({"secretbox": {"keys": [{"name": "k1", "secret": KEY32}]}})
    blob = transformer.to_storage(b"payload", ETCD_KEY)[len(b"k8s:enc:secretbox:v1:k1:"):]
    assert nacl.secret.SecretBox(bytes(range(32))).decrypt(blob[24:], blob[:24]) == b"payload"


def test_first_provider_writes_every_provider_reads():
    old = chain({"secretbox": {"keys": [{"name": "old", "secret": KEY32}]}})
    plain = chain({"identity": {}})
    rotated = chain({"aesgcm": {"keys": [{"name": "new", "secret": KEY16}]}},
                    {"secretbox": {"keys": [{"name": "old", "secret": KEY32}]}}, {"identity": {}})
    assert rotated.from_storage(old.to_storage(b"a", ETCD_KEY), ETCD_KEY) == b"a"
    assert rotated.from_storage(plain.to_storage(b"b", ETCD_KEY), ETCD_KEY) == b"b"
    assert rotated.to_storage(b"c", ETCD_KEY).startswith(b"k8s:enc:aesgcm:v1:new:")


def test_stale_when_read_by_anything_but_the_first_key_of_the_first_provider():
    """The prefix transformers' rule: a value read by any transformer but the first is stale (written again by
    an update even when unchanged); a resource no config covers is read by identity and never stale."""
    key1 = {"name": "k1", "secret": KEY32}
    key2 = {"name": "k2", "secret": base64.b64encode(os.urandom(32)).decode()}
    old = chain({"secretbox": {"keys": [key1]}})
    rotated = chain({"secretbox": {"keys": [key2, key1]}}, {"identity": {}})
    assert rotated.read(rotated.to_storage(b"new", ETCD_KEY), ETCD_KEY) == (b"new", False)
    assert rotated.read(old.to_storage(b"old", ETCD_KEY), ETCD_KEY) == (b"old", True)  # second key, same provider
    assert rotated.read(b'{"plain":1}', ETCD_KEY) == (b'{"plain":1}', True)  # identity is not first
    other_provider = chain({"aesgcm": {"keys": [{"name": "g", "secret": KEY16}]}}, {"secretbox": {"keys": [key1]}})
    assert other_provider.read(old.to_storage(b"x", ETCD_KEY), ETCD_KEY) == (b"x", True)
    decrypting = chain({"identity": {}}, {"secretbox": {"keys": [key1]}})
    assert decrypting.read(b"plain", ETCD_KEY) == (b"plain", False)
    assert decrypting.read(old.to_storage(b"y", ETCD_KEY), ETCD_KEY) == (b"y", True)
    assert Transformers().for_resource("configmaps").read(b"cm", ETCD_KEY) == (b"cm", False)


def test_identity_refuses_encrypted_data_and_unknown_keys_fail():
    encrypted = chain({"secretbox": {"keys": [{"name": "k1", "secret": KEY32}]}}).to_storage(b"x", ETCD_KEY)
    with pytest.raises(TransformerError, match="identity transformer tried to read encrypted data"):
        chain({"identity": {}}).from_storage(encrypted, ETCD_KEY)
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(TransformerError):
        chain({"secretbox": {"keys": [{"name": "k1", "secret": other}]}}).from_storage(encrypted, ETCD_KEY)


@pytest.mark.parametrize("document,message", [
    ({"kind": "Other", "apiVersion": "apiserver.config.k8s.io/v1"}, "kind must be"),
    (config({"secretbox": {"keys": [{"name": "k", "secret": KEY16}]}}), "16 bytes"),
    (config({"aescbc": {"keys": []}}), "at least one key"),
    (config({"kms": {"name": "x"}}), "not modelled"),
    (config({"aescbc": {"keys": [{"name": "k", "secret": "!!"}]}}), "not valid base64"),
])
def test_encryption_config_rejects(document, message):
    with pytest.raises(TransformerError, match=message):
        parse_config(document)


def test_resource_patterns_and_reload(tmp_path):
    path = tmp_path / "enc.yaml"
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
                    "- resources: [secrets]\n  providers: [{identity: {}}]\n"
                    "- resources: ['*.apps', '*.']\n  providers: [{aesgcm: {keys: [{name: k, secret: '%s'}]}}]\n"
                    % KEY32)
    transformers = Transformers(str(path), reload=True)
    assert transformers.for_resource("secrets").providers[0].name == "identity"
    assert transformers.for_resource("configmaps").providers[0].name == "aesgcm"
    assert transformers.for_resource("daemonsets", "apps").providers[0].name == "aesgcm"
    assert transformers.for_resource("leases", "coordination.k8s.io").providers[0].name == "identity"
    assert transformers.maybe_reload() is False
    path.write_text("not: [valid")
    assert transformers.maybe_reload() is False  # a broken file keeps the running config
    path.write_text(json.dumps(config({"secretbox": {"keys": [{"name": "k", "secret": KEY32}]}})))
    assert transformers.maybe_reload() is True
    assert transformers.for_resource("secrets").providers[0].name == "secretbox"


# --- /metrics: the encryption-config controller -----------------------------------------------------
def test_metrics_identity_and_value_format_match_upstream():
    # k8s.io/apiserver/pkg/server/options/encryptionconfig/metrics/metrics_test.go: testAPIServerIDHash.
    assert sha256_label("testAPIServerID") == (
        "sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37")
    assert sha256_label("") == ""
    # Same test file: SetToCurrentTime-style value 1689101941 is printed as 1.689101941e+09.
    assert [go_float(v) for v in (1, 0, 12, 1689101941.0, 0.25, 123456.0, 1234567.0, 1e-5)] == [
        "1", "0", "12", "1.689101941e+09", "0.25", "123456", "1.234567e+06", "1e-05"]
    ident = apiserver_id("cp-1")
    assert ident.startswith("apiserver-") and len(ident) == len("apiserver-") + 26 and ident == ident.lower()
    assert apiserver_id("cp-1") == ident != apiserver_id("cp-2")


def _samples(text):
    """{(name, frozenset(labels)): value} from Prometheus text; checks every sample has HELP and TYPE."""
    helped, typed, samples = set(), set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            typed.add(line.split()[2])
        else:
            name, _dummy, rest = line.partition("{")
            labels, _dummy, value = rest.partition("} ")
            assert name in helped and name in typed, line
            pairs = frozenset(tuple(p.split("=", 1)) for p in labels.split(","))
            samples[(name, pairs)] = float(value)
    return samples


def test_metrics_follow_startup_reload_success_and_failure(tmp_path):
    path = tmp_path / "enc.yaml"
    first = json.dumps(config({"secretbox": {"keys": [{"name": "k1", "secret": KEY32}]}}))
    path.write_text(first)
    clock = iter([1000.0, 1001.0, 1002.0, 1003.0, 1004.0]).__next__
    metrics = EncryptionConfigMetrics("testAPIServerID", clock=clock)
    transformers = Transformers(str(path), reload=True, metrics=metrics)
    ident = 'apiserver_id_hash="sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37"'
    first_hash = "sha256:" + hashlib.sha256(first.encode()).hexdigest()
    # At startup only last_config_info: the reload families are vectors without samples until a reload.
    assert metrics.render() == (
        "# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the last applied "
        "encryption configuration with hash as label, split by apiserver identity.\n"
        "# TYPE apiserver_encryption_config_controller_last_config_info gauge\n"
        'apiserver_encryption_config_controller_last_config_info{%s,hash="%s"} 1\n' % (ident, first_hash))
    assert transformers.maybe_reload() is False and "reloads_total" not in metrics.render()  # unchanged file

    path.write_text("kind: Broken\n")
    assert transformers.maybe_reload() is False
    assert transformers.maybe_reload() is False  # still broken: counted on every poll, like the apiserver
    text = metrics.render()
    assert 'apiserver_encryption_config_controller_automatic_reloads_total{%s,status="failure"} 2' % ident in text
    assert ('apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{%s,status="failure"} '
            "1001" % ident) in text
    assert 'hash="%s"} 1' % first_hash in text and 'status="success"' not in text
    assert transformers.for_resource("secrets").providers[0].name == "secretbox"  # running config kept

    second = json.dumps(config({"aesgcm": {"keys": [{"name": "k2", "secret": KEY16}]}}))
    path.write_text(second)
    assert transformers.maybe_reload() is True
    second_hash = "sha256:" + hashlib.sha256(second.encode()).hexdigest()
    samples = _samples(metrics.render())
    assert [k for k in samples if k[0].endswith("last_config_info")] == [
        ("apiserver_encryption_config_controller_last_config_info",
         frozenset({("apiserver_id_hash", ident.split("=")[1]), ("hash", '"%s"' % second_hash)}))]
    assert samples[("apiserver_encryption_config_controller_automatic_reloads_total",
                    frozenset({("apiserver_id_hash", ident.split("=")[1]), ("status", '"success"')}))] == 1
    assert samples[("apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds",
                    frozenset({("apiserver_id_hash", ident.split("=")[1]), ("status", '"success"')}))] == 1002
    assert transformers.config_hash == second_hash

    path.write_text("")  # an empty file is an error too (loadDataAndHash)
    assert transformers.maybe_reload() is False
    path.unlink()  # so is a missing one
    assert transformers.maybe_reload() is False
    assert 'status="failure"} 4' in metrics.render() and transformers.config_hash == second_hash


def test_metrics_without_encryption_config_are_empty():
    metrics = EncryptionConfigMetrics("x")
    Transformers(None, metrics=metrics)
    assert metrics.render() == ""


# --- selectors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("selector,labels,expected", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "fe"}, True),
    ("app in (web, api),!legacy", {"app": "api"}, True),
    ("app notin (web)", {"app": "web"}, False),
    ("app notin (web)", {}, True),
    ("tier", {"app": "web"}, False),
    ("app!=web", {}, True),
    ("", {"anything": "x"}, True),
])
def test_label_selectors(selector, labels, expected):
    assert labels_match(parse_label_selector(selector), labels) is expected


def test_label_selector_errors():
    with pytest.raises(SelectorError):
        parse_label_selector("app in (web")
    with pytest.raises(SelectorError):
        parse_label_selector("!app in (x)")


def test_field_selectors():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "node-a"}}
    supported = {"metadata.name", "metadata.namespace", "spec.nodeName"}
    assert fields_match(parse_field_selector("spec.nodeName=node-a"), pod, supported)
    assert not fields_match(parse_field_selector("spec.nodeName=node-b"), pod, supported)
    assert fields_match(parse_field_selector("spec.nodeName!=node-b,metadata.name==p"), pod, supported)
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.hostname"):
        fields_match(parse_field_selector("spec.hostname=x"), pod, supported)


# --- PDB arithmetic -------------------------------------------------------------------------------
def pod(name, ready=True, deleting=False, owner="web", phase="Running"):
    meta = {"name": name, "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def budget(**spec):
    return {"metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": dict(spec, selector={"matchLabels": {"app": "web"}})}


@pytest.mark.parametrize("spec,scale,expected", [
    ({"minAvailable": 2}, 3, (3, 2, 1)),  # expected pods = matching pods for an integer minAvailable
    ({"minAvailable": "50%"}, 4, (4, 2, 1)),  # percent of the controllers' scale, rounded up
    ({"minAvailable": "34%"}, 3, (3, 2, 1)),
    ({"maxUnavailable": 1}, 3, (3, 2, 1)),
    ({"maxUnavailable": "50%"}, 3, (3, 1, 2)),  # 50% of 3 rounds up to 2 unavailable
    ({"maxUnavailable": 0}, 3, (3, 3, 0)),
])
def test_pdb_status(spec, scale, expected):
    pods = [pod("a"), pod("b"), pod("c")]
    status = pdb.compute_status(budget(**spec), pods, lambda selected: scale)
    assert (status["expectedPods"], status["desiredHealthy"], status["disruptionsAllowed"]) == expected
    assert status["currentHealthy"] == 3


def test_pdb_counts_only_ready_pods_not_being_deleted():
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True)]
    status = pdb.compute_status(budget(minAvailable=1), pods, lambda selected: 3)
    assert status["currentHealthy"] == 1 and status["disruptionsAllowed"] == 0


def test_eviction_decisions():
    pods = [pod("a"), pod("b")]
    assert pdb.eviction_decision(pods[0], [budget(minAvailable=1)], pods, lambda s: 2) is None
    code, reason, message, causes = pdb.eviction_decision(pods[0], [budget(minAvailable=2)], pods, lambda s: 2)
    assert (code, reason) == (429, "TooManyRequests")
    assert message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert causes == [{"reason": "DisruptionBudget",
                       "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]
    assert pdb.eviction_decision(pods[0], [], pods, lambda s: 2) is None
    assert pdb.eviction_decision(pod("x", phase="Succeeded"), [budget(minAvailable=9)], pods, lambda s: 2) is None
    assert pdb.eviction_decision(pods[0], [budget(minAvailable=1), budget(minAvailable=1)], pods,
                                 lambda s: 2)[0] == 500
    # An unready pod may go while the budget is otherwise met (IfHealthyBudget) ...
    unready = [pod("a"), pod("b", ready=False)]
    assert pdb.eviction_decision(unready[1], [budget(minAvailable=1)], unready, lambda s: 2) is None
    # ... and always with AlwaysAllow.
    broken = [pod("a", ready=False), pod("b", ready=False)]
    assert pdb.eviction_decision(broken[0], [budget(minAvailable=1)], broken, lambda s: 2)[0] == 429
    assert pdb.eviction_decision(broken[0], [budget(minAvailable=1, unhealthyPodEvictionPolicy="AlwaysAllow")],
                                 broken, lambda s: 2) is None


# --- flags ----------------------------------------------------------------------------------------
def test_flag_parsing_models_and_ignores():
    modelled, ignored = parse_flags([
        "kube-apiserver", "--advertise-address=10.0.0.1", "--secure-port=6443", "--etcd-servers=https://a:2379",
        "--tls-cert-file=/c", "--tls-private-key-file=/k", "--authorization-mode=Node,RBAC", "--profiling",
        "--v", "2"])
    assert modelled["advertise-address"] == "10.0.0.1" and modelled["etcd-servers"] == "https://a:2379"
    assert ignored == {"authorization-mode": "Node,RBAC", "profiling": "true", "v": "2"}
    assert modelled["encryption-provider-config-automatic-reload"] == "false"


@pytest.mark.parametrize("argv,message", [
    (["--secure-port=abc", "--etcd-servers=x"], "secure-port"),
    (["--secure-port=6443"], "etcd-servers"),
    (["--etcd-servers=x", "--tls-cert-file=/c"], "together"),
    (["--etcd-servers=x", "stray"], "unexpected argument"),
])
def test_flag_errors(argv, message):
    with pytest.raises(FlagError, match=message):
        parse_flags(argv)


def test_command_from_static_pod_manifest():
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-apiserver"}, "spec": {"containers": [
        {"name": "kube-apiserver", "command": ["kube-apiserver", "--etcd-servers=https://a:2379"],
         "args": ["--secure-port=6443"]}]}}
    assert command_from_manifest(manifest) == ["kube-apiserver", "--etcd-servers=https://a:2379", "--secure-port=6443"]
    with pytest.raises(FlagError):
        command_from_manifest({"kind": "Pod", "spec": {"containers": [{"name": "etcd", "command": ["etcd"]}]}})


# --- patches --------------------------------------------------------------------------------------
def test_cordon_patches():
    node = {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24"}}
    cordoned = apply_patch("application/strategic-merge-patch+json", node, {"spec": {"unschedulable": True}})
    assert cordoned["spec"] == {"podCIDR": "10.0.0.0/24", "unschedulable": True}
    assert apply_patch("application/merge-patch+json", cordoned, {"spec": {"unschedulable": None}})["spec"] == {
        "podCIDR": "10.0.0.0/24"}
    assert json_patch(node, [{"op": "add", "path": "/spec/unschedulable", "value": True}])["spec"]["unschedulable"]


def test_strategic_merge_lists_by_key():
    status = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}
    patched = strategic_merge_patch(status, {"conditions": [{"type": "Ready", "status": "False"}]})
    assert patched["conditions"] == [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]
    deleted = strategic_merge_patch(status, {"conditions": [{"type": "Ready", "$patch": "delete"}]})
    assert deleted["conditions"] == [{"type": "DiskPressure", "status": "False"}]


def test_patch_errors():
    with pytest.raises(PatchError, match="does not support patch type"):
        apply_patch("application/apply-patch+cbor", {}, {})
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}])
    with pytest.raises(PatchError, match="testing value"):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])


# --- protobuf -------------------------------------------------------------------------------------
# The body real kubectl 1.37 POSTs for `kubectl create secret generic s1 --from-literal=password=hunter2
# --type=kubernetes.io/opaque2` (captured with KUBESIM_DUMP_PROTOBUF).
KUBECTL_SECRET = bytes.fromhex(
    "6b3873000a0c0a027631120653656372657412400a120a02733112001a0022002a0032003800420012130a0870617373776f"
    "7264120768756e746572321a156b756265726e657465732e696f2f6f7061717565321a002200")


def test_decode_real_kubectl_protobuf_secret():
    assert proto.decode(KUBECTL_SECRET) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
        "data": {"password": base64.b64encode(b"hunter2").decode()}, "type": "kubernetes.io/opaque2"}


def test_decode_rejects_unknown_kinds_and_garbage():
    with pytest.raises(proto.ProtoError, match="send JSON"):
        proto.decode(b"k8s\x00\x0a\x0b\x0a\x02v1\x12\x05Other")
    with pytest.raises(proto.ProtoError, match="magic"):
        proto.decode(b"{}")
