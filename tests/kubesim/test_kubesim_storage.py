# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage fidelity: an update that changes nothing is not written, unless the stored value is stale.

kube-apiserver (GuaranteedUpdate in k8s.io/apiserver/pkg/storage/etcd3/store.go) skips the etcd write when
the updated object encodes to the bytes already stored, and answers with the stored object and its old
resourceVersion. It writes anyway when the value was read with a provider or key that is not the current
write key (the prefix transformers report it "stale"): that is how `kubectl replace` / k8s_storage_rewrite
re-encrypt after a key rotation, and why a second run changes nothing.

Every write is checked in etcd itself (etcdctl): the key's mod_revision, its version (number of writes) and
its raw bytes. The raw bytes carry a random nonce, so identical bytes prove that nothing was written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from kubesim.client import Client, ClientError
from kubesim.testing import LocalCluster, wait_for

IDENTITY = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - identity: {}
"""

ENCRYPTING = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
%s  - identity: {}
"""

KEYS = {name: base64.b64encode(os.urandom(32)).decode() for name in ("key1", "key2")}


def secretbox(*names):
    """A config whose secretbox provider has these keys, the first one writing; identity reads plaintext."""
    keys = "".join("      - name: %s\n        secret: %s\n" % (name, KEYS[name]) for name in names)
    return ENCRYPTING % ("  - secretbox:\n      keys:\n" + keys)


DECRYPT_ONLY = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - identity: {}
  - secretbox:
      keys:
      - name: key1
        secret: %s
""" % KEYS["key1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One replica without controllers (nothing else writes), secrets in plaintext until a test says otherwise."""
    for binary in ("/usr/bin/etcd", "etcdctl"):
        if not (Path(binary).exists() or shutil.which(binary)):
            pytest.fail("%s is required (make deps installs it)" % binary)
    workdir = tmp_path_factory.mktemp("kubesim-storage")
    encryption = workdir / "encryption.yaml"
    encryption.write_text(IDENTITY)
    with LocalCluster(str(workdir / "cluster"), replicas=1, encryption_config=str(encryption),
                      controllers=False).running() as local:
        yield local


@pytest.fixture(scope="module")
def api(cluster):
    return Client.from_kubeconfig(cluster.kubeconfigs[0])


def use_config(cluster, text):
    """Write the EncryptionConfiguration and wait (bounded) until the replica has loaded it."""
    cluster.write_encryption(text)
    expected = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    wait_for(lambda: cluster.servers[0].transformers.config_hash == expected, timeout=15, interval=0.2,
             what="kubesim loaded the new encryption config")


def stored(cluster, key):
    """(mod_revision, version, raw value) of one etcd key, read with etcdctl."""
    kvs = json.loads(cluster.etcdctl("get", key, "-w", "json")).get("kvs") or []
    assert len(kvs) == 1, "%s is not in etcd" % key
    return int(kvs[0]["mod_revision"]), int(kvs[0]["version"]), base64.b64decode(kvs[0]["value"])


def create_secret(api, name, value="s3cret-value"):
    return api.request("POST", "/api/v1/namespaces/default/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": {"app": "storage-test"}},
        "data": {"value": base64.b64encode(value.encode()).decode()}})


def put_back(api, path):
    """GET the object and PUT it back unchanged (resourceVersion included), as kubectl replace does."""
    current = api.get(path)
    return current, api.request("PUT", path, current)


def test_unchanged_put_with_the_current_key_writes_nothing(cluster, api):
    use_config(cluster, secretbox("key1"))
    created = create_secret(api, "unchanged")
    path = "/api/v1/namespaces/default/secrets/unchanged"
    key = "/registry/secrets/default/unchanged"
    before = stored(cluster, key)
    assert before[2].startswith(b"k8s:enc:secretbox:v1:key1:")
    assert before[0] == int(created["metadata"]["resourceVersion"])

    current, answer = put_back(api, path)
    assert answer["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"] == str(before[0])
    assert answer["data"] == current["data"] and answer["metadata"]["uid"] == current["metadata"]["uid"]
    assert stored(cluster, key) == before  # same mod_revision, same version, same nonce: no write at all

    # A merge patch that changes nothing, and a PUT without resourceVersion, are no-ops too.
    patched = api.request("PATCH", path, {"metadata": {"labels": {"app": "storage-test"}}},
                          content_type="application/merge-patch+json")
    assert patched["metadata"]["resourceVersion"] == str(before[0])
    body = api.get(path)
    del body["metadata"]["resourceVersion"]
    assert api.request("PUT", path, body)["metadata"]["resourceVersion"] == str(before[0])
    assert stored(cluster, key) == before

    # A resource that no provider covers (identity, never stale) behaves the same.
    api.request("POST", "/api/v1/namespaces/default/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}, "data": {"k": "v"}})
    cm_before = stored(cluster, "/registry/configmaps/default/plain")
    current, answer = put_back(api, "/api/v1/namespaces/default/configmaps/plain")
    assert answer["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    assert stored(cluster, "/registry/configmaps/default/plain") == cm_before


def test_changed_put_writes_a_new_revision(cluster, api):
    use_config(cluster, secretbox("key1"))
    create_secret(api, "changed")
    path = "/api/v1/namespaces/default/secrets/changed"
    key = "/registry/secrets/default/changed"
    before = stored(cluster, key)
    body = api.get(path)
    body["data"]["value"] = base64.b64encode(b"another-value").decode()
    answer = api.request("PUT", path, body)
    after = stored(cluster, key)
    assert int(answer["metadata"]["resourceVersion"]) == after[0] > before[0]
    assert after[1] == before[1] + 1
    assert after[2].startswith(b"k8s:enc:secretbox:v1:key1:") and after[2] != before[2]
    assert base64.b64decode(api.get(path)["data"]["value"]) == b"another-value"

    # A stale resourceVersion is still a conflict, even when the body is what is stored.
    body["metadata"]["resourceVersion"] = str(before[0])
    with pytest.raises(ClientError, match="HTTP 409"):
        api.request("PUT", path, body)
    assert stored(cluster, key) == after


def test_unchanged_put_after_rotation_rewrites_with_the_new_key(cluster, api):
    use_config(cluster, secretbox("key1"))
    create_secret(api, "rotated", "rotation-plaintext")
    path = "/api/v1/namespaces/default/secrets/rotated"
    key = "/registry/secrets/default/rotated"
    before = stored(cluster, key)
    assert before[2].startswith(b"k8s:enc:secretbox:v1:key1:")

    use_config(cluster, secretbox("key2", "key1"))  # key2 writes, key1 still reads: key1 values are stale
    current, answer = put_back(api, path)
    after = stored(cluster, key)
    assert int(answer["metadata"]["resourceVersion"]) == after[0] > before[0]
    assert current["metadata"]["resourceVersion"] == str(before[0])
    assert after[1] == before[1] + 1
    assert after[2].startswith(b"k8s:enc:secretbox:v1:key2:") and b"rotation-plaintext" not in after[2]
    assert base64.b64decode(api.get(path)["data"]["value"]) == b"rotation-plaintext"

    # Now stored with the current key: the next unchanged PUT writes nothing.
    _current, again = put_back(api, path)
    assert again["metadata"]["resourceVersion"] == str(after[0])
    assert stored(cluster, key) == after


def test_unchanged_put_of_plaintext_after_encryption_was_turned_on(cluster, api):
    use_config(cluster, IDENTITY)
    create_secret(api, "was-plain", "plain-before-encryption")
    path = "/api/v1/namespaces/default/secrets/was-plain"
    key = "/registry/secrets/default/was-plain"
    before = stored(cluster, key)
    assert b"cGxhaW4tYmVmb3JlLWVuY3J5cHRpb24=" in before[2]  # base64 of the value, in plaintext JSON

    use_config(cluster, secretbox("key1"))  # identity is second now: plaintext values are stale
    _current, answer = put_back(api, path)
    after = stored(cluster, key)
    assert int(answer["metadata"]["resourceVersion"]) == after[0] > before[0]
    assert after[2].startswith(b"k8s:enc:secretbox:v1:key1:") and b"cGxhaW4tYmVmb3Jl" not in after[2]
    _current, again = put_back(api, path)
    assert again["metadata"]["resourceVersion"] == str(after[0])
    assert stored(cluster, key) == after


def test_unchanged_put_after_encryption_was_turned_off_writes_plaintext(cluster, api):
    """Decrypting away from a provider: identity first, the old key only reads; encrypted values are stale."""
    use_config(cluster, secretbox("key1"))
    create_secret(api, "decrypt-me", "decrypted-later")
    key = "/registry/secrets/default/decrypt-me"
    before = stored(cluster, key)
    assert before[2].startswith(b"k8s:enc:secretbox:v1:key1:")

    use_config(cluster, DECRYPT_ONLY)
    _current, answer = put_back(api, "/api/v1/namespaces/default/secrets/decrypt-me")
    after = stored(cluster, key)
    assert int(answer["metadata"]["resourceVersion"]) == after[0] > before[0]
    assert json.loads(after[2])["metadata"]["name"] == "decrypt-me"


def test_scale_to_the_same_replicas_writes_nothing(cluster, api):
    """The ReplicaSet strategy bumps generation only when the spec changes, so an unchanged scale is a no-op."""
    path = "/apis/apps/v1/namespaces/default/replicasets"
    api.request("POST", path, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}})
    key = "/registry/replicasets/default/web"
    before = stored(cluster, key)
    scale = api.get(path + "/web/scale")
    assert api.request("PUT", path + "/web/scale", scale)["metadata"]["resourceVersion"] == str(before[0])
    assert stored(cluster, key) == before
    scale["spec"]["replicas"] = 3
    answer = api.request("PUT", path + "/web/scale", scale)
    after = stored(cluster, key)
    assert int(answer["metadata"]["resourceVersion"]) == after[0] > before[0]
    assert api.get(path + "/web")["metadata"]["generation"] == 2
