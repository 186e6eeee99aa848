# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets encryption at rest (roles/encryption + the control_plane wiring), checked where it matters:
the raw bytes kube-apiserver stored in etcd, read with etcdctl on a control-plane node, and the real
kubectl reading the same Secrets back through the VIP. Then key custody: the key never in Ansible's
output, nodes that disagree and a provider switch refused before anything changes, and a node that
lost its file gets the cluster's key back, also under --limit.

Every change a test makes to a node is undone in a finally block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, inventory_args, node_exec

CONTROL_PLANES = ("cl-cp1", "cl-cp2", "cl-cp3")
CONFIG = "/etc/kubernetes/encryption/config.yaml"
SCENARIO = Path(__file__).resolve().parents[1]
NAMESPACE = "encryption-test"
COUNT = 50
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt"
    " --cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key"
)


def config_text(node="cl-cp1"):
    return node_exec(node, "cat %s" % CONFIG).stdout


def checksums():
    return {n: node_exec(n, "sha256sum %s | cut -d' ' -f1" % CONFIG, check=False).stdout.strip()
            for n in CONTROL_PLANES}


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(config_text())


@pytest.fixture(scope="module")
def writer(config):
    """(provider, key name, secret) of the key that writes."""
    (provider, settings), = config["resources"][0]["providers"][0].items()
    key = settings["keys"][0]
    return provider, key["name"], key["secret"]


def site(*args, timeout=600):
    """The encryption stage of converge.yml (site.yml) with the scenario inventory; plain output."""
    return subprocess.run(
        ["ansible-playbook", *inventory_args(), str(SCENARIO / "converge.yml"), *args],
        capture_output=True, text=True, timeout=timeout, env=ansible_env("encryption"), check=False)


def test_one_private_configuration_on_every_control_plane_node(config, writer):
    sums = checksums()
    assert len(set(sums.values())) == 1 and all(sums.values()), sums
    for node in CONTROL_PLANES:
        assert node_exec(node, "stat -c '%%a %%U %%G' %s" % CONFIG).stdout.split() == ["600", "root", "root"]
        assert node_exec(node, "stat -c '%%a' %s" % os.path.dirname(CONFIG)).stdout.strip() == "700"
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1" and config["kind"] == "EncryptionConfiguration"
    block = config["resources"][0]
    assert block["resources"] == ["secrets"]
    assert [next(iter(p)) for p in block["providers"]] == ["secretbox", "identity"]  # identity last
    provider, name, secret = writer
    assert provider == "secretbox" and name.startswith("key-")
    assert len(base64.b64decode(secret, validate=True)) == 32


def test_the_apiservers_and_kubeadm_config_carry_the_flags():
    for node in CONTROL_PLANES:
        manifest = node_exec(node, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout
        assert "--encryption-provider-config=%s" % CONFIG in manifest, node
        assert "--encryption-provider-config-automatic-reload=true" in manifest, node
    # In the kubeadm-config ConfigMap too, so that `kubeadm upgrade` regenerates the same flags.
    cm = kubectl_json(fetched_kubeconfig(), "-n", "kube-system", "get", "configmap", "kubeadm-config")
    cluster = yaml.safe_load(cm["data"]["ClusterConfiguration"])
    flags = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert flags["encryption-provider-config"] == CONFIG
    mounts = {v["name"]: v for v in cluster["apiServer"]["extraVolumes"]}
    assert mounts["encryption-config"]["hostPath"] == os.path.dirname(CONFIG)
    assert mounts["encryption-config"]["readOnly"] is True


def test_fifty_secrets_are_ciphertext_in_etcd_and_read_back_intact(writer):
    provider, name, _secret = writer
    kubeconfig = fetched_kubeconfig()
    markers = {"s%02d" % i: "plaintext-marker-%02d-%s" % (i, hashlib.sha256(b"%d" % i).hexdigest()[:12])
               for i in range(COUNT)}
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    docs += [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n, "namespace": NAMESPACE},
              "stringData": {"token": m}} for n, m in markers.items()]
    kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(docs), timeout=180)

    raw = json.loads(node_exec("cl-cp1", "%s get --prefix /registry/secrets/%s/ -w json" % (ETCDCTL, NAMESPACE)).stdout)
    stored = {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]: base64.b64decode(kv["value"])
              for kv in raw.get("kvs", [])}
    assert sorted(stored) == sorted(markers)
    prefix = ("k8s:enc:%s:v1:%s:" % (provider, name)).encode()
    for secret_name, value in stored.items():
        assert value.startswith(prefix), (secret_name, value[:40])
        assert markers[secret_name].encode() not in value
        assert base64.b64encode(markers[secret_name].encode()) not in value

    items = kubectl_json(kubeconfig, "-n", NAMESPACE, "get", "secrets")["items"]
    read = {s["metadata"]["name"]: base64.b64decode(s["data"]["token"]).decode() for s in items}
    assert read == markers


def test_the_key_never_appears_in_ansible_output(writer):
    _provider, _name, secret = writer
    run = site("-v")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert secret not in run.stdout and secret not in run.stderr
    assert "writes secrets" in " ".join(run.stdout.split())  # the summary (names only) is there
    recap = [line for line in run.stdout.splitlines() if line.startswith("cl-cp")]
    assert recap and all("changed=0" in line and "failed=0" in line for line in recap), recap


def test_nodes_that_disagree_stop_the_run_naming_them_and_nothing_changes():
    original = config_text()
    try:
        node_exec("cl-cp2", "echo '# edited by hand' >> %s" % CONFIG)
        before = checksums()
        run = site()
        assert run.returncode != 0
        out = " ".join((run.stdout + run.stderr).split())
        assert "differs between control-plane nodes" in out, out[-3000:]
        for node in CONTROL_PLANES:
            assert "%s sha256 %s" % (node, before[node][:16]) in out
        assert checksums() == before
    finally:
        subprocess.run(["podman", "exec", "-i", "cl-cp2", "sh", "-c", "cat > %s" % CONFIG], input=original,
                       text=True, check=True, timeout=30)
    assert len(set(checksums().values())) == 1


def test_a_provider_switch_is_refused_before_anything_changes(writer):
    before = checksums()
    run = site("-e", "k8s_encryption_provider=aesgcm")
    assert run.returncode != 0
    out = " ".join((run.stdout + run.stderr).split())
    assert "with secretbox" in out and "with aesgcm" in out, out[-3000:]
    assert "Fix: set k8s_encryption_provider: secretbox" in out
    assert checksums() == before


def test_supplied_keys_must_be_the_clusters_key(writer):
    other = base64.b64encode(b"\x07" * 32).decode()
    before = checksums()
    run = site("-e", json.dumps({"encryption_keys": [{"name": "other", "secret": other}]}))
    assert run.returncode != 0
    out = " ".join((run.stdout + run.stderr).split())
    assert "its first key (other) is not the key the control-plane nodes write with (%s" % writer[1] in out, out[-3000:]
    assert other not in run.stdout + run.stderr
    assert checksums() == before


def test_a_node_that_lost_its_file_gets_the_clusters_key_back_also_under_limit():
    original = config_text()
    try:
        node_exec("cl-cp3", "rm -f %s" % CONFIG)
        run = site("--limit", "localhost,cl-cp3")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert config_text("cl-cp3") == original
    finally:
        subprocess.run(["podman", "exec", "-i", "cl-cp3", "sh", "-c", "cat > %s && chmod 600 %s" % (CONFIG, CONFIG)],
                       input=original, text=True, check=True, timeout=30)
    assert len(set(checksums().values())) == 1
