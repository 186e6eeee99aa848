# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""apiserver_encryption_status and k8s_storage_rewrite, run by ansible-playbook, against kubesim.

kubesim (tests/kubesim) stores Secrets in a real etcd through the same transformers and wire format as
kube-apiserver (``k8s:enc:secretbox:v1:<key name>:`` + nonce + ciphertext), reloads its
``--encryption-provider-config`` when the file changes, and serves the encryption-config controller's
``/metrics`` families. So the key rotation's last steps are checked on raw etcd bytes: config A (key1), then
config B (key2 first, key1 second), every replica reporting B's hash, the re-write, and every Secret in etcd
carrying key2 afterwards and reading back intact. A second re-write changes nothing: kubesim, like the
apiserver, skips the etcd write of an unchanged object already stored with the current write key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBESIM = REPO / "tests" / "kubesim"

from ansible_collections.baremetal.kubernetes.plugins.module_utils.k8s_client import K8sClient  # noqa: E402

kubesim_testing = pytest.importorskip("kubesim.testing", reason="kubesim (tests/kubesim) is not available")
kubesim_server = pytest.importorskip("kubesim.server", reason="kubesim (tests/kubesim) is not available")
LocalCluster = kubesim_testing.LocalCluster

SECRETS = 24
config = kubesim_testing.secretbox_config


def new_key(name):
    return (name, base64.b64encode(os.urandom(32)).decode())


def file_hash(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def keys():
    return new_key("key1"), new_key("key2")


@pytest.fixture(scope="module")
def local(tmp_path_factory, keys):
    for binary in ("/usr/bin/etcd", "etcdctl"):
        if not (Path(binary).exists() or shutil.which(binary)):
            pytest.fail("%s is required for the kubesim integration tests (make deps installs it)" % binary)
    workdir = tmp_path_factory.mktemp("kubesim-encryption")
    encryption = workdir / "encryption.yaml"
    encryption.write_text(config(keys[0]))
    encryption.chmod(0o600)
    with LocalCluster(str(workdir / "cluster"), replicas=2, encryption_config=str(encryption)).running() as local:
        yield local


class Runner:
    def __init__(self, run_module, kubeconfig):
        self.run_module = run_module
        self.kubeconfig = kubeconfig

    def module(self, name, check=False, **args):
        args.setdefault("kubeconfig", self.kubeconfig)
        return self.run_module(name, check=check, **args)


@pytest.fixture
def runner(local, run_module):
    return Runner(run_module, local.kubeconfigs[0])


def raw_secrets(local):
    """{key: raw value bytes} of every Secret in etcd."""
    listing = json.loads(local.etcdctl("get", "/registry/secrets/", "--prefix", "-w", "json"))
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in listing.get("kvs", [])}


def test_rotation_reload_wait_and_rewrite_to_the_new_key(local, runner, keys):
    key1, key2 = keys
    api = K8sClient.from_kubeconfig(local.kubeconfigs[0])
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
        before = raw_secrets(local)
        ours = {"/registry/secrets/%s/%s" % key for key in expected}
        assert ours <= set(before)
        assert all(before[key].startswith(b"k8s:enc:secretbox:v1:key1:") for key in ours)
        assert not any(p.encode() in before["/registry/secrets/%s/%s" % k] for k, p in expected.items())

        # Status before the change: every replica reports config A.
        servers = [local.server_url(0), local.server_url(1)]
        status_a = runner.module("apiserver_encryption_status", apiservers=servers,
                                 expected_config=local.read_encryption())
        assert not status_a.get("failed"), status_a.get("msg")
        assert status_a["all_match"] is True and status_a["changed"] is False
        assert {e["hash"] for e in status_a["apiservers"]} == {file_hash(local.read_encryption())}

        # Config B: key2 writes, key1 still reads. Wait until every replica has loaded it.
        config_b = config(key2, key1)
        reloaded_after = time.time()
        local.write_encryption(config_b)
        status_b = runner.module("apiserver_encryption_status", apiservers=servers, expected_config=config_b,
                                 wait=True, wait_timeout=60, poll_interval=1)
        print("apiserver_encryption_status: every replica on config B after %.1f s (%d attempts, task %.1f s)"
              % (status_b["duration"], status_b["attempts"], status_b["_wall"]))
        assert not status_b.get("failed"), status_b.get("msg")
        assert status_b["all_match"] is True and status_b["expected_hash"] == file_hash(config_b)
        # expected_config carries the keys: no_log keeps them out of the result.
        assert key2[1] not in json.dumps(status_b) and key1[1] not in json.dumps(status_b)
        for entry in status_b["apiservers"]:
            assert entry["hash"] == file_hash(config_b) and entry["reloads_success"] >= 1
            assert entry["last_success"] >= reloaded_after - 2 and entry["reloads_failure"] == 0

        # Check mode counts without writing.
        would = runner.module("k8s_storage_rewrite", check=True, batch_size=10)
        assert not would.get("failed"), would.get("msg")
        assert would["changed"] is True and would["rewritten"]["secrets"] == len(before)
        assert raw_secrets(local) == before

        rewrite = runner.module("k8s_storage_rewrite", batch_size=10)
        print("k8s_storage_rewrite of %d Secrets: module %.2f s, task %.1f s; %s" % (
            len(before), rewrite["duration"], rewrite["_wall"], " | ".join(rewrite["progress"])))
        assert not rewrite.get("failed"), rewrite.get("msg")
        assert rewrite["changed"] is True and rewrite["rewritten"] == {"secrets": len(before)}
        assert rewrite["unchanged_revision"] == {"secrets": 0}  # every Secret was on key1: all written again
        assert rewrite["gone"] == 0 and rewrite["failed_objects"] == []
        # kubesim ignores limit/continue (tests/kubesim/README.md), so it answers one page; pagination is
        # covered by the unit tests.
        assert rewrite["progress"][-1].startswith("secrets batch %d: objects" % len(rewrite["progress"]))
        assert "-%d: rewritten" % len(before) in rewrite["progress"][-1]

        after = raw_secrets(local)
        assert set(after) == set(before)
        stale = sorted(key for key, value in after.items() if not value.startswith(b"k8s:enc:secretbox:v1:key2:"))
        assert stale == [], "still on another key: %s" % stale
        assert not any(p.encode() in after["/registry/secrets/%s/%s" % k] for k, p in expected.items())
        for (namespace, name), plaintext in expected.items():
            secret = api.get("/api/v1/namespaces/%s/secrets/%s" % (namespace, name))
            assert base64.b64decode(secret["data"]["value"]).decode() == plaintext

        # A second run finds everything stored with the current key: the apiserver writes nothing (same bytes,
        # same nonces, same revisions) and the module reports no change.
        again = runner.module("k8s_storage_rewrite", batch_size=10)
        print("second k8s_storage_rewrite: module %.2f s; %s" % (again["duration"], " | ".join(again["progress"])))
        assert not again.get("failed"), again.get("msg")
        assert again["changed"] is False
        assert again["rewritten"] == again["unchanged_revision"] == {"secrets": len(before)}
        assert raw_secrets(local) == after
    finally:
        api.close()


def test_status_wait_times_out_naming_the_replica_on_the_old_hash(local, runner, tmp_path, keys):
    """A third replica started with its own copy of the old file never reloads the new one."""
    old_copy = tmp_path / "old-encryption.yaml"
    old_text = config(keys[0])
    old_copy.write_text(old_text)
    argv = [arg if not arg.startswith("--encryption-provider-config=") else
            "--encryption-provider-config=%s" % old_copy for arg in local.apiserver_argv(0)]
    lagging = kubesim_server.ApiServer(argv, reload_interval=0.3, controllers=False).start()
    try:
        lagging_url = "https://127.0.0.1:%d" % lagging.port
        current = local.read_encryption()
        result = runner.module("apiserver_encryption_status", apiservers=[local.server_url(0), lagging_url],
                               expected_config=current, wait=True, wait_timeout=4, poll_interval=1)
        print("status wait with a lagging replica: failed after %.1f s (%d attempts): %s"
              % (result["duration"], result["attempts"], result["msg"]))
        assert result["failed"] is True and result["all_match"] is False
        assert 4 <= result["duration"] < 20 and result["attempts"] >= 3
        assert "1 of 2 apiserver(s) do not run the expected encryption configuration %s after waiting 4 s" % (
            file_hash(current)) in result["msg"]
        assert "%s: hash %s: reports a different configuration" % (lagging_url, file_hash(old_text)) in result["msg"]
        assert local.server_url(0) + ":" not in result["msg"]
        good, bad = result["apiservers"]
        assert good["matches"] is True and bad["matches"] is False and bad["hash"] == file_hash(old_text)
    finally:
        lagging.stop()


def test_status_explains_a_config_that_does_not_load(local, runner):
    good = local.read_encryption()
    broken = "kind: Broken\n"
    try:
        local.write_encryption(broken)
        result = runner.module("apiserver_encryption_status", apiservers=[local.server_url(0)],
                               expected_config=broken, wait=True, wait_timeout=5, poll_interval=1)
        assert result["failed"] is True
        entry = result["apiservers"][0]
        assert entry["hash"] == file_hash(good) and entry["reloads_failure"] >= 1
        assert "its last automatic reload FAILED at" in result["msg"], result["msg"]
    finally:
        local.write_encryption(good)
