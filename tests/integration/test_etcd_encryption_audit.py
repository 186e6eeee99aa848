# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_encryption_audit, run by ansible-playbook, against what a real kube-apiserver wrote to a real etcd.

tests/harness/realapi.py runs etcd 3.6 (TLS) and kube-apiserver with ``--encryption-provider-config`` and
automatic reload. The apiserver stores Secrets as ``k8s:enc:secretbox:v1:<key name>:`` + nonce + ciphertext and
everything else (and Secrets written while identity is first) as plaintext protobuf (``k8s\x00``). The audit
reads those bytes through the real etcdctl with a page size small enough to take many pages; each count is
compared with the raw prefixes read by a plain ``etcdctl get --prefix``.

Each config change here restarts the apiserver (how a rotation applies a new file without automatic reload), which
takes seconds where the automatic reload's once-a-minute poll would take up to a minute; the reload itself is
covered by test_encryption_modules.py. ``apiserver_encryption_config_controller_last_config_info`` shows the
restarted apiserver runs the new file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
import realapi

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sClient

SECRETS = 30
PAGE_SIZE = 4
NAMESPACES = ("default", "team-a", "team-b")


IDENTITY = ("identity",)
# This module's two secretbox keys: 32 random bytes each, base64.
KEY1, KEY2 = (("key%d" % number, base64.b64encode(os.urandom(32)).decode()) for number in (1, 2))


def config(*providers):
    """An EncryptionConfiguration for Secrets; each provider is IDENTITY or (key name, base64 secret)."""
    lines = ["apiVersion: apiserver.config.k8s.io/v1", "kind: EncryptionConfiguration", "resources:",
             "- resources: [secrets]", "  providers:"]
    for provider in providers:
        if provider == IDENTITY:
            lines.append("  - identity: {}")
        else:
            lines += ["  - secretbox:", "      keys:", "      - name: %s" % provider[0],
                      "        secret: %s" % provider[1]]
    return "\n".join(lines) + "\n"


REAL_CLUSTER = dict(replicas=1, encryption_config=config(KEY1, IDENTITY))


@pytest.fixture(scope="module")
def local(real_cluster):
    return real_cluster


@pytest.fixture(scope="module")
def api(local):
    client = K8sClient.from_kubeconfig(local.kubeconfigs[0])
    yield client
    client.close()


@pytest.fixture
def audit(local, run_module):
    def run(check=False, **args):
        args.update(endpoints=[local.etcd_url], cacert=local.etcd_ca_file, cert=local.etcd_client[0],
                    key=local.etcd_client[1], etcdctl=realapi.etcd_binary("etcdctl"))
        return run_module("etcd_encryption_audit", check=check, **args)

    return run


def raw(local, prefix):
    """{etcd key: raw value} under ``prefix``, and the revision, read with one plain etcdctl get."""
    listing = json.loads(local.etcdctl("get", prefix, "--prefix", "-w", "json"))
    values = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in listing.get("kvs", [])}
    return values, listing["header"]["revision"]


def use_config(local, text):
    """Write the encryption config and restart the apiserver, which then reports the new file's hash."""
    local.write_encryption(text)
    server = local.restart_replica(0)
    assert local.encryption_hash(server) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def rewrite(api, key):
    """GET + PUT of one Secret through the API: the apiserver stores it with its current write key."""
    _registry, _secrets, namespace, name = key.strip("/").split("/")
    path = "/api/v1/namespaces/%s/secrets/%s" % (namespace, name)
    api.request("PUT", path, body=api.get(path))


def test_audit_follows_a_key_rotation(local, api, audit, run_module):
    for namespace in NAMESPACES[1:]:
        api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": namespace}})
    plaintexts = []
    for index in range(SECRETS):
        plaintext = "audit-plaintext-%02d-%s" % (index, os.urandom(4).hex())
        api.request("POST", "/api/v1/namespaces/%s/secrets" % NAMESPACES[index % 3], body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secret-%02d" % index},
            "data": {"value": base64.b64encode(plaintext.encode()).decode()}})
        plaintexts.append(plaintext)
    stored, revision = raw(local, "/registry/secrets/")
    assert len(stored) >= SECRETS
    assert all(value.startswith(b"k8s:enc:secretbox:v1:key1:") for value in stored.values())

    # Every Secret carries key1: the audit agrees with the plain read, over many small pages.
    first = audit(expect_writer="secretbox:key1", page_size=PAGE_SIZE)
    assert not first.get("failed"), first.get("msg")
    print("audit of %d Secrets, page_size %d: %d pages, module %.2f s, task %.1f s"
          % (first["total"], PAGE_SIZE, first["pages"], first["duration"], first["_wall"]))
    # The apiserver keeps writing (its identity Lease, endpoints), so the store moves on; the Secrets do not.
    assert first["changed"] is False and first["revision"] >= revision
    assert first["total"] == len(stored) and first["writers"] == {"secretbox:key1": len(stored)}
    assert first["resources"] == {"secrets": {"prefix": "/registry/secrets/", "count": len(stored),
                                              "writers": {"secretbox:key1": len(stored)}}}
    assert first["offenders"] == [] and first["offender_count"] == 0
    # 4 keys on the first page, 3 new ones on each page after it (the first key repeats the last one).
    assert first["pages"] == 1 + -(-(len(stored) - PAGE_SIZE) // (PAGE_SIZE - 1))

    checked = audit(check=True, expect_writer="secretbox:key1", page_size=PAGE_SIZE)
    assert not checked.get("failed") and checked["writers"] == first["writers"] and checked["changed"] is False
    assert raw(local, "/registry/secrets/")[0] == stored

    # Key rotation: key2 writes, key1 still reads. Re-write a few Secrets only.
    use_config(local, config(KEY2, KEY1, IDENTITY))
    ordered = sorted(stored)
    for key in ordered[:5]:
        rewrite(api, key)
    moved, _revision = raw(local, "/registry/secrets/")
    assert sorted(k for k, v in moved.items() if v.startswith(b"k8s:enc:secretbox:v1:key2:")) == ordered[:5]

    partial = audit(expect_writer="secretbox:key2", page_size=PAGE_SIZE)
    print("audit after re-writing 5 Secrets: %s" % partial["msg"])
    stale = ordered[5:]
    assert partial["failed"] is True
    assert partial["writers"] == {"secretbox:key1": len(stale), "secretbox:key2": 5}
    assert partial["offender_count"] == len(stale)
    assert partial["offenders"] == [dict(key=key, writer="secretbox:key1") for key in stale[:20]]
    assert partial["msg"].startswith("%d of %d objects in etcd are not stored by secretbox:key2 (writers at revision "
                                     "%d: secretbox:key1=%d, secretbox:key2=5): %s (secretbox:key1), "
                                     % (len(stale), len(stored), partial["revision"], len(stale), stale[0]))
    assert partial["msg"].endswith(" and %d more" % (len(stale) - 20))
    text = json.dumps(partial)
    assert KEY1[1] not in text and KEY2[1] not in text
    assert not any(plaintext in text for plaintext in plaintexts)

    # The re-write of everything (step 5), then the audit (step 6) passes.
    rewritten = run_module("k8s_storage_rewrite", kubeconfig=local.kubeconfigs[0], batch_size=10)
    assert not rewritten.get("failed"), rewritten.get("msg")
    done = audit(expect_writer="secretbox:key2", page_size=PAGE_SIZE)
    assert not done.get("failed"), done.get("msg")
    assert done["writers"] == {"secretbox:key2": len(stored)} and done["offender_count"] == 0
    assert done["revision"] > partial["revision"] > first["revision"]
    for index, plaintext in enumerate(plaintexts):
        secret = api.get("/api/v1/namespaces/%s/secrets/secret-%02d" % (NAMESPACES[index % 3], index))
        assert base64.b64decode(secret["data"]["value"]).decode() == plaintext


def test_plaintext_objects_are_identity(local, api, audit):
    """Objects outside the config's resources, and Secrets written while identity is first, are plaintext."""
    for index in range(3):
        api.request("POST", "/api/v1/namespaces/default/configmaps", body={
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "audit-cm-%d" % index},
            "data": {"setting": "value-%d" % index}})
    configmaps, _revision = raw(local, "/registry/configmaps/")
    # Not in the config's resources: plaintext protobuf, as kube-apiserver stores built-in types.
    assert configmaps and all(value.startswith(b"k8s\x00") for value in configmaps.values())
    previous = local.read_encryption()
    try:
        # Encryption turned off (identity first); the keys still read what they wrote.
        use_config(local, config(IDENTITY, KEY2, KEY1))
        api.request("POST", "/api/v1/namespaces/default/secrets", body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "zz-plaintext"},
            "data": {"value": base64.b64encode(b"stored-in-the-clear").decode()}})
    finally:
        use_config(local, previous)
    secrets, _revision = raw(local, "/registry/secrets/")
    plain_key = "/registry/secrets/default/zz-plaintext"
    assert secrets[plain_key].startswith(b"k8s\x00")
    encrypted = {}
    for value in secrets.values():
        if value.startswith(b"k8s:enc:"):
            writer = "secretbox:" + value.split(b":")[4].decode()
            encrypted[writer] = encrypted.get(writer, 0) + 1

    result = audit(resources=["secrets", "configmaps"], page_size=3)
    assert not result.get("failed"), result.get("msg")
    assert result["resources"]["configmaps"] == {"prefix": "/registry/configmaps/", "count": len(configmaps),
                                                 "writers": {"identity": len(configmaps)}}
    assert result["resources"]["secrets"]["writers"] == dict(encrypted, identity=1)
    assert result["writers"] == dict(encrypted, identity=1 + len(configmaps))
    assert result["total"] == len(secrets) + len(configmaps)

    plain_ok = audit(resources=["configmaps"], expect_writer="identity", page_size=3)
    assert not plain_ok.get("failed"), plain_ok.get("msg")

    flagged = audit(resources=["secrets"], expect_writer="secretbox:key2", page_size=3)
    assert flagged["failed"] is True
    assert dict(key=plain_key, writer="identity") in flagged["offenders"]
    assert "stored-in-the-clear" not in json.dumps(flagged)
