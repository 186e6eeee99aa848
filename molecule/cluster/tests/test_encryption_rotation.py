# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_encryption_key.yml on the running cluster, checked on raw etcd bytes and with the real
kubectl: a rotation that also switches the provider to aesgcm, interrupted after step 3 (and with one node put
back as if step 3 had not reached it), resumes and re-encrypts every Secret with the same new key, encryption
is turned off and then on again for a cluster built without it
(apiservers without the flags, no file: site.yml writes an identity-only file and warns, the rotation wires the
flags apiserver by apiserver), and nodes that disagree outside a rotation stop it before anything changes. The
cluster ends as it started: secretbox, one key, every Secret readable.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, inventory_args, node_exec, wait_for
from test_encryption import CONFIG, CONTROL_PLANES, ETCDCTL, SCENARIO, checksums, config_text

PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "rotate_encryption_key.yml"
RECORD = "/etc/kubernetes/encryption/rotation.json"
NAMESPACE = "rotation-test"
COUNT = 50


def rotate(*args, timeout=1200):
    run = subprocess.run(["ansible-playbook", *inventory_args(), str(PLAYBOOK), *args],
                         capture_output=True, text=True, timeout=timeout, env=ansible_env("all"), check=False)
    return run, " ".join((run.stdout + run.stderr).split())


def keys(node="cl-cp1"):
    """[(provider, key name or None)] of a node's file, in order."""
    result = []
    for block in yaml.safe_load(config_text(node))["resources"][0]["providers"]:
        ((provider, settings),) = block.items()
        result += [(provider, k["name"]) for k in (settings or {}).get("keys", [])] or [(provider, None)]
    return result


def secrets_of(node="cl-cp1"):
    """Every secret (base64) in a node's file and record: none of them may appear in Ansible's output."""
    found = set()
    for block in yaml.safe_load(config_text(node))["resources"][0]["providers"]:
        found |= {k["secret"] for k in (next(iter(block.values())) or {}).get("keys", [])}
    saved = json.loads(node_exec(node, "cat %s 2>/dev/null || echo '{}'" % RECORD).stdout)
    found |= {e["secret"] for e in [*saved.get("from", []), saved.get("to", {})] if "secret" in e}
    return found


def raw_writers():
    """{secret name: 'k8s:enc:<provider>:v1:<key>' or 'plaintext'} from etcd, for the test's namespace."""
    raw = json.loads(node_exec("cl-cp2", "%s get --prefix /registry/secrets/%s/ -w json" % (ETCDCTL, NAMESPACE)).stdout)
    result = {}
    for kv in raw.get("kvs", []):
        value = base64.b64decode(kv["value"])
        name = base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]
        result[name] = b":".join(value.split(b":")[:5]).decode() if value.startswith(b"k8s:enc:") else "plaintext"
    return result


def record():
    return json.loads(node_exec("cl-cp3", "cat %s" % RECORD).stdout)


@pytest.fixture(scope="module")
def markers():
    values = {"r%02d" % i: "rotation-marker-%02d" % i for i in range(COUNT)}
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    docs += [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n, "namespace": NAMESPACE},
              "stringData": {"token": v}} for n, v in values.items()]
    kubectl(fetched_kubeconfig(), "apply", "-f", "-", input=yaml.safe_dump_all(docs), timeout=180)
    return values


def readable_through(ip):
    """Whether the apiserver at ip reads the test's Secrets (through it alone, not the VIP)."""
    return kubectl(fetched_kubeconfig(), "--server", "https://%s:6443" % ip, "-n", NAMESPACE, "get", "secrets",
                   check=False).returncode == 0


def read_back():
    items = kubectl_json(fetched_kubeconfig(), "-n", NAMESPACE, "get", "secrets")["items"]
    return {s["metadata"]["name"]: base64.b64decode(s["data"]["token"]).decode() for s in items}


def assert_done(before, provider, markers):
    """One new key of ``provider`` on every node (identity last), every Secret stored and read with it."""
    after = keys()
    assert all(keys(n) == after for n in CONTROL_PLANES) and len(set(checksums().values())) == 1
    assert [p for p, _name in after] == [provider, "identity"], after
    new = after[0][1]
    assert new not in [name for _provider, name in before], (before, after)
    writers = raw_writers()
    assert sorted(writers) == sorted(markers) and set(writers.values()) == {"k8s:enc:%s:v1:%s" % (provider, new)}
    assert read_back() == markers
    assert record()["state"] == "complete" and record()["to"]["name"] == new
    for node in CONTROL_PLANES:
        assert node_exec(node, "stat -c '%%a %%U' %s" % RECORD).stdout.split() == ["600", "root"]
    return new


def test_an_interrupted_switch_to_aesgcm_resumes_with_the_same_new_key(markers):
    """The key rotation itself, switching the provider to aesgcm, cut off after step 3 and finished by a re-run
    (one rotation serves all three: a provider switch goes through the same seven steps, the re-run goes
    through steps 4-7 as an uninterrupted run does, and the off/on test below rotates uninterrupted). Each
    rotation waits three times for the real apiservers' automatic reload, about once a minute."""
    before = keys()
    assert set(raw_writers().values()) == {"k8s:enc:secretbox:v1:%s" % before[0][1]}
    s0_text = config_text()
    run, out = rotate("-e", "encryption_rotation_stop_after=3", "-e", "k8s_encryption_provider=aesgcm")
    assert run.returncode == 0, out[-4000:]
    stage1 = keys()
    assert stage1[0] == before[0] and len(stage1) == 3, stage1  # old, new, identity
    assert all(keys(n) == stage1 for n in CONTROL_PLANES)
    assert record()["state"] == "in-progress"
    # Nothing writes with the new key yet.
    assert set(raw_writers().values()) == {"k8s:enc:secretbox:v1:%s" % before[0][1]}
    # As if step 3 had been cut off before it reached cl-cp3.
    subprocess.run(["podman", "exec", "-i", "cl-cp3", "sh", "-c", "cat > %s" % CONFIG], input=s0_text, text=True,
                   check=True, timeout=30)
    run, out = rotate("-e", "k8s_encryption_provider=aesgcm")
    assert run.returncode == 0, out[-4000:]
    assert "Resuming the rotation recorded in %s" % RECORD in out
    new = assert_done(before, "aesgcm", markers)
    assert new == stage1[1][1]  # the key added in the first run: no third key
    assert "Rotation done: secretbox:%s, identity:- -> aesgcm:%s" % (before[0][1], new) in out, out[-3000:]
    # Step 6 read every Secret's raw value and found only the new key (YAML output doubles the quotes).
    assert re.search(r"raw etcd, secrets: \d+ objects by writer \{'+aesgcm:%s'+: \d+\}" % new, out), out[-3000:]
    # The snapshot of step 2 was taken and verified; the record names it (readable with the old keys).
    assert record()["snapshot"].endswith(".db") and record()["from"][0]["name"] == before[0][1]
    for secret in secrets_of():
        assert secret not in run.stdout + run.stderr


def manifest_flags(node):
    manifest = yaml.safe_load(node_exec(node, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout)
    return [a for a in manifest["spec"]["containers"][0]["command"] if a.startswith("--encryption-provider-config")]


def build_without_encryption():
    """Make the cluster look like one an older release built: apiservers without the encryption flags
    (kubeadm re-generates them from a configuration without them, and it goes to kubeadm-config), and no
    EncryptionConfiguration or record on any node."""
    for node in CONTROL_PLANES:
        old = yaml.safe_load_all(node_exec(node, "cat /etc/kubernetes/kubeadm/kubeadm-config.yaml").stdout)
        docs = []
        for doc in old:
            if doc.get("kind") == "ClusterConfiguration":
                api = doc["apiServer"]
                api["extraArgs"] = [a for a in api["extraArgs"] if not a["name"].startswith("encryption-")]
                api["extraVolumes"] = [v for v in api["extraVolumes"] if v["name"] != "encryption-config"]
            docs.append(doc)
        subprocess.run(["podman", "exec", "-i", node, "sh", "-c", "cat > /root/old-kubeadm.yaml"],
                       input=yaml.safe_dump_all(docs), text=True, check=True, timeout=30)
        node_exec(node, "kubeadm init phase control-plane apiserver --config /root/old-kubeadm.yaml", timeout=120)
        if node == CONTROL_PLANES[0]:
            node_exec(node, "kubeadm init phase upload-config kubeadm --config /root/old-kubeadm.yaml", timeout=120)
        node_exec(node, "rm -f /root/old-kubeadm.yaml %s %s" % (CONFIG, RECORD))
    for node in CONTROL_PLANES:
        assert manifest_flags(node) == []
        ip = "10.123.70.%d" % (10 + int(node[-1]))
        ready, waited = wait_for(lambda ip=ip: kubectl(fetched_kubeconfig(), "--server", "https://%s:6443" % ip,
                                                       "get", "--raw", "/readyz", check=False).returncode == 0,
                                 180, interval=2)
        assert ready, "%s: its apiserver did not come back within %.0f s" % (node, waited)
    assert "encryption-provider-config" not in kubeadm_config_map()


def kubeadm_config_map():
    return kubectl_json(fetched_kubeconfig(), "-n", "kube-system", "get", "configmap", "kubeadm-config")["data"][
        "ClusterConfiguration"]


def test_encryption_turned_off_then_on_for_a_cluster_built_without_it(markers):
    # Off through the same path: identity writes, every Secret is re-written as plaintext.
    run, out = rotate("-e", "k8s_encryption_provider=identity")
    assert run.returncode == 0, out[-4000:]
    assert all(keys(n) == [("identity", None)] for n in CONTROL_PLANES)
    assert set(raw_writers().values()) == {"plaintext"} and read_back() == markers
    build_without_encryption()
    # site.yml (this release) on that cluster: an identity-only file, a loud warning, no apiserver restarted.
    run = site_encryption()
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0, out[-4000:]
    assert "WARNING: encryption at rest is OFF on this cluster" in out and "built without encryption" in out
    assert all(keys(n) == [("identity", None)] for n in CONTROL_PLANES) and len(set(checksums().values())) == 1
    assert all(manifest_flags(n) == [] for n in CONTROL_PLANES)
    # The rotation turns it on: the flags first (one apiserver at a time), then the new key, then the re-write.
    run, out = rotate()
    assert run.returncode == 0, out[-4000:]
    for node in CONTROL_PLANES:
        assert "%s: kube-apiserver runs without --encryption-provider-config" % node in out, out[-3000:]
        assert manifest_flags(node) == ["--encryption-provider-config=%s" % CONFIG,
                                        "--encryption-provider-config-automatic-reload=true"]
    assert "encryption-provider-config" in kubeadm_config_map()
    assert_done([("identity", None)], "secretbox", markers)
    for secret in secrets_of():
        assert secret not in run.stdout + run.stderr


def site_encryption():
    return subprocess.run(["ansible-playbook", *inventory_args(), str(SCENARIO / "converge.yml")],
                          capture_output=True, text=True, timeout=900, env=ansible_env("encryption"), check=False)


def test_nodes_that_disagree_outside_a_rotation_stop_it_before_anything_changes(markers):
    original = config_text("cl-cp2")
    other = original.replace(keys("cl-cp2")[0][1], "hand-made-key")
    try:
        subprocess.run(["podman", "exec", "-i", "cl-cp2", "sh", "-c", "cat > %s" % CONFIG], input=other, text=True,
                       check=True, timeout=30)
        before = checksums()
        record_before = node_exec("cl-cp1", "sha256sum %s" % RECORD).stdout
        run, out = rotate()
        assert run.returncode != 0
        assert "EncryptionConfigurations differ and no rotation is in progress" in out, out[-3000:]
        assert "cl-cp2: [secretbox:hand-made-key, identity]" in out
        assert checksums() == before and node_exec("cl-cp1", "sha256sum %s" % RECORD).stdout == record_before
    finally:
        subprocess.run(["podman", "exec", "-i", "cl-cp2", "sh", "-c", "cat > %s" % CONFIG], input=original,
                       text=True, check=True, timeout=30)
    assert len(set(checksums().values())) == 1
    # cl-cp2's apiserver reloads its file by itself (automatic reload), so it ran with the hand-made key while
    # that was there. Until it has loaded the original again, a read through the VIP that lands on it fails:
    # wait (bounded) until every apiserver reads the Secrets, then read them through the VIP.
    for node in CONTROL_PLANES:
        ip = "10.123.70.%d" % (10 + int(node[-1]))
        # The real apiserver looks at its file about once a minute.
        readable, waited = wait_for(lambda ip=ip: readable_through(ip), 150, interval=2)
        assert readable, "%s: its apiserver cannot read the Secrets %.0f s after its file was put back" % (node, waited)
    assert read_back() == markers


def test_the_backup_playbook_keeps_the_keys_next_to_the_snapshot_vaulted(tmp_path):
    passphrase = "molecule-snapshot-passphrase"
    fetch = tmp_path / "backups"
    fetch.mkdir()
    run = subprocess.run(
        ["ansible-playbook", *inventory_args(), str(PLAYBOOK.parent / "etcd_backup.yml"),
         "-e", "etcd_backup_fetch_dir=%s" % fetch, "-e", "encryption_snapshot_copy=vault",
         "-e", "encryption_snapshot_passphrase=%s" % passphrase],
        capture_output=True, text=True, timeout=600, env=ansible_env("all"), check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert passphrase not in out and not any(secret in out for secret in secrets_of())
    snapshot = next(fetch.glob("*.db"))
    vaulted = fetch / (snapshot.name + ".encryption-config.yaml.vault")
    assert oct(vaulted.stat().st_mode & 0o777) == "0o600"
    assert vaulted.read_text().startswith("$ANSIBLE_VAULT;")
    (tmp_path / "pass").write_text(passphrase + "\n")
    plain = subprocess.run(["ansible-vault", "decrypt", "--vault-password-file", str(tmp_path / "pass"),
                            "--output", "-", str(vaulted)], capture_output=True, text=True, check=True, timeout=60)
    assert plain.stdout == config_text()
    # And on the etcd member, next to the snapshot, root 0600.
    remote = node_exec("cl-cp1", "stat -c '%%a %%U' /var/backups/etcd/%s" % vaulted.name).stdout.split()
    assert remote == ["600", "root"]
