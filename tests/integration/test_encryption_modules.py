# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""apiserver_encryption_status and k8s_storage_rewrite, run by ansible-playbook, against a real control plane.

tests/harness/realapi.py runs etcd 3.6 and two kube-apiserver replicas with the product's
``--encryption-provider-config`` (secretbox) and ``--encryption-provider-config-automatic-reload=true``. So the
key rotation's last steps are checked on raw etcd bytes: config A (key1), then config B (key2 first, key1
second), every replica reporting B's hash in ``apiserver_encryption_config_controller_last_config_info``, the
re-write, and every Secret in etcd carrying key2 afterwards and reading back intact. A second re-write changes
nothing: the apiserver skips the etcd write of an unchanged object already stored with the current write key.

The apiserver polls the file once a minute (EncryptionConfigFileChangePollDuration in
k8s.io/apiserver/pkg/server/options/encryptionconfig/controller), so the waits allow well over a minute.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import realapi

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sClient

SECRETS = 24
BATCH = 10
config = realapi.secretbox_config
# Longer than the apiserver's one-minute poll of the file, with room for a busy machine.
RELOAD_TIMEOUT = 150


def new_key(name):
    return (name, base64.b64encode(os.urandom(32)).decode())


def file_hash(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


KEY1, KEY2 = new_key("key1"), new_key("key2")
REAL_CLUSTER = dict(replicas=2, encryption_config=config(KEY1))


def module(run_module, cluster, name, check=False, **args):
    args.setdefault("kubeconfig", cluster.kubeconfigs[0])
    return run_module(name, check=check, **args)


def raw_secrets(cluster):
    """{key: raw value bytes} of every Secret in etcd."""
    listing = json.loads(cluster.etcdctl("get", "/registry/secrets/", "--prefix", "-w", "json"))
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in listing.get("kvs", [])}


def test_the_metric_is_what_the_module_reads(real_cluster):
    """What kube-apiserver 1.36 really exposes: last_config_info{apiserver_id_hash="sha256:<hex>",
    hash="sha256:<hex of the file's bytes>"} 1, from start-up on (before any automatic reload)."""
    text = real_cluster.metrics(real_cluster.servers[0])
    samples = realapi.parse_metric(text, "apiserver_encryption_config_controller_last_config_info")
    print("last_config_info samples: %s" % samples)
    assert len(samples) == 1
    labels, value = samples[0]
    assert value == 1 and labels["hash"] == file_hash(real_cluster.read_encryption())
    assert labels["apiserver_id_hash"].startswith("sha256:") and len(labels["apiserver_id_hash"]) == 71
    # No reload has happened yet: the reload vectors have no samples.
    assert realapi.parse_metric(text, "apiserver_encryption_config_controller_automatic_reloads_total") == []


def test_rotation_reload_wait_and_rewrite_to_the_new_key(real_cluster, run_module):
    cluster = real_cluster
    api = K8sClient.from_kubeconfig(cluster.kubeconfigs[0])
    try:
        for namespace in ("team-a", "team-b"):
            api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": namespace}})
        expected = {}
        for index in range(SECRETS):
            namespace = ("default", "team-a", "team-b")[index % 3]
            name = "secret-%02d" % index
            plaintext = "plaintext-value-%02d-%s" % (index, os.urandom(4).hex())
            api.request("POST", "/api/v1/namespaces/%s/secrets" % namespace, body={
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "data": {"value": base64.b64encode(plaintext.encode()).decode()}})
            expected[(namespace, name)] = plaintext
        before = raw_secrets(cluster)
        ours = {"/registry/secrets/%s/%s" % key for key in expected}
        assert ours <= set(before)
        assert all(before[key].startswith(b"k8s:enc:secretbox:v1:key1:") for key in ours)
        assert not any(p.encode() in before["/registry/secrets/%s/%s" % k] for k, p in expected.items())

        # Status before the change: every replica reports config A.
        servers = [cluster.server_url(0), cluster.server_url(1)]
        status_a = module(run_module, cluster, "apiserver_encryption_status", apiservers=servers,
                          expected_config=cluster.read_encryption())
        assert not status_a.get("failed"), status_a.get("msg")
        assert status_a["all_match"] is True and status_a["changed"] is False
        assert {e["hash"] for e in status_a["apiservers"]} == {file_hash(cluster.read_encryption())}

        # Config B: key2 writes, key1 still reads. Wait until every replica has loaded it.
        config_b = config(KEY2, KEY1)
        reloaded_after = time.time()
        cluster.write_encryption(config_b)
        status_b = module(run_module, cluster, "apiserver_encryption_status", apiservers=servers,
                          expected_config=config_b, wait=True, wait_timeout=RELOAD_TIMEOUT, wait_sleep=2)
        print("apiserver_encryption_status: every replica on config B after %.1f s (%d attempts, task %.1f s)"
              % (status_b["duration"], status_b["attempts"], status_b["_wall"]))
        assert not status_b.get("failed"), status_b.get("msg")
        assert status_b["all_match"] is True and status_b["expected_hash"] == file_hash(config_b)
        # expected_config carries the keys: no_log keeps them out of the result.
        assert KEY2[1] not in json.dumps(status_b) and KEY1[1] not in json.dumps(status_b)
        for entry in status_b["apiservers"]:
            assert entry["hash"] == file_hash(config_b) and entry["reloads_success"] >= 1
            assert entry["last_success"] >= reloaded_after - 2 and entry["reloads_failure"] == 0

        # Check mode counts without writing.
        would = module(run_module, cluster, "k8s_storage_rewrite", check=True, batch_size=BATCH)
        assert not would.get("failed"), would.get("msg")
        assert would["changed"] is True and would["rewritten"]["secrets"] == len(before)
        assert raw_secrets(cluster) == before

        rewrite = module(run_module, cluster, "k8s_storage_rewrite", batch_size=BATCH)
        print("k8s_storage_rewrite of %d Secrets: module %.2f s, task %.1f s; %s" % (
            len(before), rewrite["duration"], rewrite["_wall"], " | ".join(rewrite["progress"])))
        assert not rewrite.get("failed"), rewrite.get("msg")
        assert rewrite["changed"] is True and rewrite["rewritten"] == {"secrets": len(before)}
        assert rewrite["unchanged_revision"] == {"secrets": 0}  # every Secret was on key1: all written again
        assert rewrite["gone"] == 0 and rewrite["failed_objects"] == []
        # The real apiserver pages the list (limit/continue): one progress line per page of BATCH objects.
        pages = -(-len(before) // BATCH)
        assert len(rewrite["progress"]) == pages
        assert rewrite["progress"][-1].startswith("secrets batch %d: objects %d-%d: rewritten %d"
                                                  % (pages, (pages - 1) * BATCH + 1, len(before),
                                                     len(before) - (pages - 1) * BATCH))

        after = raw_secrets(cluster)
        assert set(after) == set(before)
        stale = sorted(key for key, value in after.items() if not value.startswith(b"k8s:enc:secretbox:v1:key2:"))
        assert stale == [], "still on another key: %s" % stale
        assert not any(p.encode() in after["/registry/secrets/%s/%s" % k] for k, p in expected.items())
        for (namespace, name), plaintext in expected.items():
            secret = api.get("/api/v1/namespaces/%s/secrets/%s" % (namespace, name))
            assert base64.b64decode(secret["data"]["value"]).decode() == plaintext

        # A second run finds everything stored with the current key: the apiserver writes nothing (same bytes,
        # same nonces, same revisions) and the module reports no change.
        again = module(run_module, cluster, "k8s_storage_rewrite", batch_size=BATCH)
        print("second k8s_storage_rewrite: module %.2f s; %s" % (again["duration"], " | ".join(again["progress"])))
        assert not again.get("failed"), again.get("msg")
        assert again["changed"] is False
        assert again["rewritten"] == again["unchanged_revision"] == {"secrets": len(before)}
        assert raw_secrets(cluster) == after
    finally:
        api.close()


def test_status_wait_times_out_naming_the_replica_on_the_old_hash(real_cluster, run_module, tmp_path):
    """A third replica started with its own copy of an older file never loads the current one.

    The older file is the rotation's first step (key1 writes, key2 already reads): a real kube-apiserver whose
    config cannot decrypt what is stored never becomes ready (its Secrets cache cannot list), so a replica
    lagging during a rotation is one on the previous step, not on a config without the new key."""
    old_copy = tmp_path / "old-encryption.yaml"
    old_text = config(KEY1, KEY2)
    old_copy.write_text(old_text)
    old_copy.chmod(0o600)
    lagging = real_cluster.start_apiserver(2, encryption_config=str(old_copy))
    try:
        current = real_cluster.read_encryption()
        result = module(run_module, real_cluster, "apiserver_encryption_status",
                        apiservers=[real_cluster.server_url(0), lagging.url], expected_config=current, wait=True,
                        wait_timeout=4, wait_sleep=1)
        print("status wait with a lagging replica: failed after %.1f s (%d attempts): %s"
              % (result["duration"], result["attempts"], result["msg"]))
        assert result["failed"] is True and result["all_match"] is False
        assert 4 <= result["duration"] < 20 and result["attempts"] >= 3
        assert "1 of 2 apiserver(s) do not run the expected encryption configuration %s after waiting 4 s" % (
            file_hash(current)) in result["msg"]
        assert "%s: hash %s: reports a different configuration" % (lagging.url, file_hash(old_text)) in result["msg"]
        assert real_cluster.server_url(0) + ":" not in result["msg"]
        good, bad = result["apiservers"]
        assert good["matches"] is True and bad["matches"] is False and bad["hash"] == file_hash(old_text)
    finally:
        lagging.stop()


def test_status_explains_a_config_that_does_not_load(real_cluster, run_module):
    good = real_cluster.read_encryption()
    broken = "kind: Broken\n"
    server = real_cluster.servers[0]
    failures = real_cluster.reload_count(server, "failure")
    try:
        real_cluster.write_encryption(broken)
        # The next poll of the file (within a minute) fails to load it.
        realapi.wait_for(lambda: real_cluster.reload_count(server, "failure") > failures, timeout=RELOAD_TIMEOUT,
                         interval=1, what="a failed automatic reload of the broken file")
        result = module(run_module, real_cluster, "apiserver_encryption_status", apiservers=[server.url],
                        expected_config=broken, wait=True, wait_timeout=3, wait_sleep=1)
        print("status with a config that does not load: %s" % result["msg"])
        assert result["failed"] is True
        entry = result["apiservers"][0]
        assert entry["hash"] == file_hash(good) and entry["reloads_failure"] >= 1
        assert "its last automatic reload FAILED at" in result["msg"], result["msg"]
    finally:
        real_cluster.write_encryption(good)
