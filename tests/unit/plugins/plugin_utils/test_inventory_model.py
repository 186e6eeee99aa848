# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/plugin_utils/inventory_model.py.

Every case starts from one good inventory (GOOD_INVENTORY), applies one mutation to a deep
copy of it and checks exactly which (host, variable) pairs the validator reports.
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import K8S_SUPPORTED_MINORS
from ansible_collections.baremetal.kubernetes.plugins.plugin_utils.inventory_model import (
    CLUSTER,
    RESERVED_PORTS,
    InventoryModel,
    Problem,
    validate,
)

NODE_NETWORK = "192.168.10.0/24"
HOST_ADDRESSES = {
    "cp1": "192.168.10.11",
    "cp2": "192.168.10.12",
    "cp3": "192.168.10.13",
    "w1": "192.168.10.21",
    "w2": "192.168.10.22",
}

GOOD_INVENTORY = {
    "groups": {
        "kube_control_plane": ["cp1", "cp2", "cp3"],
        "etcd": ["cp1", "cp2", "cp3"],
        "kube_node": ["w1", "w2"],
    },
    "cluster": {
        "k8s_version": "1.34.2",
        "etcd_version": "3.6.14",
        "k8s_cluster_name": "kubernetes",
        "k8s_encryption_provider": "secretbox",
        "k8s_encryption_resources": ["secrets"],
        "k8s_api_vip": "192.168.10.100",
        "k8s_api_port": 8443,
        "k8s_pod_subnet": "10.244.0.0/16",
        "k8s_service_subnet": "10.96.0.0/12",
    },
    "hosts": {
        name: {"ansible_host": address, "node_ip": address, "node_network": NODE_NETWORK}
        for name, address in HOST_ADDRESSES.items()
    },
}

LOW, HIGH = K8S_SUPPORTED_MINORS
JUST_BELOW = f"{LOW[0]}.{LOW[1] - 1}.0"
JUST_ABOVE = f"{HIGH[0]}.{HIGH[1] + 1}.0"

# Marks a variable or group to remove instead of set.
ABSENT = object()


# -- mutations ---------------------------------------------------------------------------------
def _apply(target, values):
    for name, value in values.items():
        if value is ABSENT:
            target.pop(name, None)
        else:
            target[name] = value


def set_cluster(**values):
    def mutate(inventory):
        _apply(inventory["cluster"], values)
    return mutate


def set_host(host, **values):
    def mutate(inventory):
        _apply(inventory["hosts"].setdefault(host, {}), values)
    return mutate


def set_group(group, members):
    def mutate(inventory):
        _apply(inventory["groups"], {group: members})
    return mutate


def add_host(host, address, network=NODE_NETWORK, groups=()):
    def mutate(inventory):
        values = {"ansible_host": address, "node_ip": address}
        if network is not None:
            values["node_network"] = network
        inventory["hosts"][host] = values
        for group in groups:
            inventory["groups"].setdefault(group, []).append(host)
    return mutate


def rename_host(old, new):
    def mutate(inventory):
        inventory["hosts"][new] = inventory["hosts"].pop(old)
        for members in inventory["groups"].values():
            members[:] = [new if member == old else member for member in members]
    return mutate


def etcd_size(count):
    """Put `count` hosts in etcd: the control-plane hosts first, then dedicated etcdN hosts."""
    def mutate(inventory):
        members = ["cp1", "cp2", "cp3"][:count]
        for index in range(4, count + 1):
            name = f"etcd{index}"
            add_host(name, f"192.168.10.{30 + index}")(inventory)
            members.append(name)
        inventory["groups"]["etcd"] = members
    return mutate


def chain(*mutations):
    def mutate(inventory):
        for mutation in mutations:
            mutation(inventory)
    return mutate


def loadbalancers_on_20(network="192.168.20.0/24"):
    """Two dedicated load balancers on 192.168.20.0/24, in the 'loadbalancer' group."""
    return chain(
        add_host("lb1", "192.168.20.11", network=network, groups=("loadbalancer",)),
        add_host("lb2", "192.168.20.12", network=network, groups=("loadbalancer",)),
    )


def run(inventory):
    return validate(inventory["groups"], inventory["cluster"], inventory["hosts"])


def describe(problems):
    return "\n".join(str(problem) for problem in problems) or "no problems"


@pytest.fixture
def good_inventory():
    return copy.deepcopy(GOOD_INVENTORY)


# -- the good inventory ------------------------------------------------------------------------
def test_good_inventory_has_no_problems(good_inventory):
    problems = run(good_inventory)
    assert problems == [], describe(problems)


def test_good_inventory_is_what_the_cases_assume():
    groups = GOOD_INVENTORY["groups"]
    assert groups["kube_control_plane"] == groups["etcd"] == ["cp1", "cp2", "cp3"]
    assert groups["kube_node"] == ["w1", "w2"]
    assert all(values["node_network"] == NODE_NETWORK for values in GOOD_INVENTORY["hosts"].values())
    assert GOOD_INVENTORY["cluster"]["k8s_api_port"] == 8443


def test_validation_does_not_modify_its_input(good_inventory):
    etcd_size(2)(good_inventory)
    snapshot = copy.deepcopy(good_inventory)
    assert run(good_inventory)
    assert good_inventory == snapshot


# -- one problem per rule ----------------------------------------------------------------------
def case(case_id, mutate, expected, phrase, fix=None):
    """expected: the exact (host, variable) of every problem, in order; phrase: in each message."""
    return pytest.param(mutate, expected, phrase, fix, id=case_id)


ETCD = (CLUSTER, "groups.etcd")
CONTROL_PLANE = (CLUSTER, "groups.kube_control_plane")
VIP = (CLUSTER, "k8s_api_vip")
PORT = (CLUSTER, "k8s_api_port")
POD = (CLUSTER, "k8s_pod_subnet")
SERVICE = (CLUSTER, "k8s_service_subnet")
VERSION = (CLUSTER, "k8s_version")
ETCD_VERSION = (CLUSTER, "etcd_version")
CLUSTER_NAME = (CLUSTER, "k8s_cluster_name")
ENC_PROVIDER = (CLUSTER, "k8s_encryption_provider")
ENC_RESOURCES = (CLUSTER, "k8s_encryption_resources")
ROUTER_ID = "loadbalancer_keepalived_virtual_router_id"


def set_loadbalancers(*values, hosts=("cp1", "cp2", "cp3")):
    """Set variables on every load-balancer host (as group_vars/loadbalancer would)."""
    return chain(*(set_host(host, **dict(values)) for host in hosts))


BAD_CASES = [
    # groups
    case("control-plane-empty", set_group("kube_control_plane", []), [CONTROL_PLANE], "is empty or missing",
         "add 1 or 3 hosts"),
    case("control-plane-missing", set_group("kube_control_plane", ABSENT), [CONTROL_PLANE], "is empty or missing"),
    case("control-plane-none", set_group("kube_control_plane", None), [CONTROL_PLANE], "is empty or missing"),
    # etcd size
    case("etcd-0-empty", set_group("etcd", []), [ETCD], "'etcd' is empty or missing", "1, 3, 5 or 7"),
    case("etcd-0-missing", set_group("etcd", ABSENT), [ETCD], "'etcd' is empty or missing"),
    case("etcd-2", etcd_size(2), [ETCD], "has 2 members (cp1, cp2), an even number", "1, 3, 5 or 7"),
    case("etcd-4", etcd_size(4), [ETCD], "quorum of floor(n/2)+1 = 3", "1, 3, 5 or 7"),
    case("etcd-4-tolerance", etcd_size(4), [ETCD], "4 members survive only 1 failure(s), the same as 3 members"),
    case("etcd-6", etcd_size(6), [ETCD], "quorum of floor(n/2)+1 = 4"),
    case("etcd-8", etcd_size(8), [ETCD], "has 8 members", "1, 3, 5 or 7"),
    case("etcd-8-too-many", etcd_size(8), [ETCD], "more than 7 members"),
    # control-plane hosts that are workers too
    case("cp-also-worker", set_group("kube_node", ["w1", "w2", "cp1"]), [("cp1", "k8s_control_plane_as_worker")],
         "in both 'kube_control_plane' and 'kube_node'", "k8s_control_plane_as_worker: true"),
    case("cp-also-worker-opt-in-false",
         chain(set_group("kube_node", ["w1", "w2", "cp2"]), set_host("cp2", k8s_control_plane_as_worker=False)),
         [("cp2", "k8s_control_plane_as_worker")], "in both"),
    case("cp-also-worker-opt-in-no",
         chain(set_group("kube_node", ["w1", "w2", "cp2"]), set_host("cp2", k8s_control_plane_as_worker="no")),
         [("cp2", "k8s_control_plane_as_worker")], "in both"),
    case("cp-also-worker-opt-in-on-other-host",
         chain(set_group("kube_node", ["w1", "w2", "cp2"]), set_host("cp1", k8s_control_plane_as_worker=True)),
         [("cp2", "k8s_control_plane_as_worker")], "in both"),
    # cluster-wide variables set differently on one host
    case("cluster-override", set_host("w1", cluster_overrides={"k8s_version": "1.33.0"}), [("w1", "k8s_version")],
         "k8s_version='1.33.0' but the cluster value is '1.34.2'", "group_vars/all"),
    case("cluster-overrides-sorted",
         set_host("cp2", cluster_overrides={"k8s_api_port": 6443, "etcd_version": "3.5.0"}),
         [("cp2", "etcd_version"), ("cp2", "k8s_api_port")], "must be the same on every host"),
    # duplicate addresses and SSH endpoints
    case("duplicate-node-ip", set_host("w2", node_ip="192.168.10.21"), [("w2", "node_ip")],
         "192.168.10.21 is also the node address of host w1", "distinct node_ip"),
    case("duplicate-node-ip-vs-ansible-host",
         chain(set_host("w1", node_ip=ABSENT), set_host("w2", node_ip="192.168.10.21", ansible_host="10.0.0.22")),
         [("w2", "node_ip")], "also the node address of host w1"),
    case("duplicate-ansible-host", set_host("w2", ansible_host="192.168.10.21"), [("w2", "ansible_host")],
         "192.168.10.21 port 22 is also where Ansible reaches host w1", "ansible_host/ansible_port"),
    case("duplicate-ansible-host-and-port",
         chain(set_host("w1", ansible_host="bastion.example", ansible_port=2201),
               set_host("w2", ansible_host="bastion.example", ansible_port="2201")),
         [("w2", "ansible_host")], "bastion.example port 2201 is also where Ansible reaches host w1"),
    case("duplicate-ansible-host-ssh-fqcn",
         chain(set_host("w2", ansible_host="192.168.10.21"),
               set_host("w1", ansible_connection="ansible.builtin.ssh"),
               set_host("w2", ansible_connection="ansible.builtin.ssh")),
         [("w2", "ansible_host")], "is also where Ansible reaches host w1"),
    # node names
    case("duplicate-short-name-fqdn",
         chain(rename_host("cp1", "cp1.a.example"), rename_host("cp2", "cp1.b.example")),
         [("cp1.b.example", "inventory_hostname")], "'cp1' is already used by host cp1.a.example", "node_name"),
    case("duplicate-node-name", set_host("w2", node_name="w1"), [("w2", "node_name")],
         "'w1' is already used by host w1"),
    case("node-name-uppercase-hostname", rename_host("w1", "Worker1"), [("Worker1", "inventory_hostname")],
         "'Worker1' is not a valid Kubernetes node name", "lower-case"),
    case("node-name-underscore-hostname", rename_host("w1", "worker_1"), [("worker_1", "inventory_hostname")],
         "'worker_1' is not a valid Kubernetes node name"),
    case("node-name-uppercase", set_host("w1", node_name="Worker1"), [("w1", "node_name")],
         "is not a valid Kubernetes node name"),
    case("node-name-underscore", set_host("w1", node_name="worker_1"), [("w1", "node_name")],
         "is not a valid Kubernetes node name"),
    case("node-name-trailing-dot", set_host("w1", node_name="worker1."), [("w1", "node_name")],
         "is not a valid Kubernetes node name"),
    case("node-name-too-long", set_host("w1", node_name="a" * 254), [("w1", "node_name")],
         "is not a valid Kubernetes node name"),
    # node addresses and networks
    case("node-ip-malformed", set_host("w1", node_ip="192.168.10.300"), [("w1", "node_ip")],
         "'192.168.10.300' is not an IP address", "set node_ip"),
    case("node-ip-with-prefix", set_host("w1", node_ip="192.168.10.21/24"), [("w1", "node_ip")],
         "is not an IP address"),
    case("node-ip-hostname", set_host("w1", node_ip="w1.example"), [("w1", "node_ip")], "is not an IP address"),
    case("node-network-no-prefix", set_host("w1", node_network="192.168.10.0"), [("w1", "node_network")],
         "'192.168.10.0' is not a network in CIDR notation", "192.168.10.0/24"),
    case("node-network-bad-prefix", set_host("w1", node_network="192.168.10.0/33"), [("w1", "node_network")],
         "is not a network in CIDR notation"),
    case("node-network-garbage", set_host("w1", node_network="lan"), [("w1", "node_network")],
         "is not a network in CIDR notation"),
    case("node-ip-outside-node-network", set_host("w1", node_ip="192.168.11.21"), [("w1", "node_network")],
         "the node address 192.168.11.21 (node_ip) is not inside node_network 192.168.10.0/24"),
    case("ansible-host-outside-node-network",
         set_host("w1", node_ip=ABSENT, ansible_host="192.168.11.21"), [("w1", "node_network")],
         "(ansible_host) is not inside node_network"),
    # API VIP
    case("vip-missing", set_cluster(k8s_api_vip=ABSENT), [VIP], "it is not set", "k8s_api_vip"),
    case("vip-empty", set_cluster(k8s_api_vip=""), [VIP], "it is not set"),
    case("vip-malformed", set_cluster(k8s_api_vip="192.168.10.300"), [VIP], "is not an IP address"),
    case("vip-hostname", set_cluster(k8s_api_vip="api.example"), [VIP], "is not an IP address"),
    case("vip-with-prefix", set_cluster(k8s_api_vip="192.168.10.100/24"), [VIP],
         "'192.168.10.100/24' is not an IP address", "no prefix length"),
    case("vip-is-worker-address", set_cluster(k8s_api_vip="192.168.10.21"), [("w1", "node_ip")],
         "the node address 192.168.10.21 is the API VIP", "choose a k8s_api_vip that no node uses"),
    case("vip-is-control-plane-address", set_cluster(k8s_api_vip="192.168.10.12"), [("cp2", "node_ip")],
         "is the API VIP"),
    case("vip-is-ansible-host-address",
         chain(set_host("w2", node_ip=ABSENT), set_cluster(k8s_api_vip="192.168.10.22")),
         [("w2", "ansible_host")], "is the API VIP"),
    case("vip-outside-control-plane-subnet", set_cluster(k8s_api_vip="192.168.20.100"),
         [("cp1", "k8s_api_vip"), ("cp2", "k8s_api_vip"), ("cp3", "k8s_api_vip")],
         "the VIP 192.168.20.100 is outside this load-balancer node's subnet 192.168.10.0/24", "pick k8s_api_vip"),
    case("vip-outside-one-control-plane-subnet",
         set_host("cp3", node_ip="192.168.11.13", node_network="192.168.11.0/24"),
         [("cp3", "k8s_api_vip")], "outside this load-balancer node's subnet 192.168.11.0/24"),
    case("vip-outside-loadbalancer-subnet", loadbalancers_on_20(),
         [("lb1", "k8s_api_vip"), ("lb2", "k8s_api_vip")],
         "the VIP 192.168.10.100 is outside this load-balancer node's subnet 192.168.20.0/24"),
    case("vip-network-address", set_cluster(k8s_api_vip="192.168.10.0"), [VIP],
         "192.168.10.0 is the network or broadcast address of 192.168.10.0/24", "pick a host address"),
    case("vip-broadcast-address", set_cluster(k8s_api_vip="192.168.10.255"), [VIP],
         "192.168.10.255 is the network or broadcast address of 192.168.10.0/24"),
    case("control-plane-lb-without-node-network", set_host("cp2", node_network=ABSENT), [("cp2", "node_network")],
         "it is not set, so the preflight cannot check that the API VIP 192.168.10.100", "set node_network"),
    case("loadbalancer-without-node-network",
         chain(loadbalancers_on_20(), set_host("lb2", node_network=ABSENT), set_cluster(k8s_api_vip="192.168.20.100")),
         [("lb2", "node_network")], "it is not set"),
    # API port
    case("port-not-numeric", set_cluster(k8s_api_port="https"), [PORT], "'https' is not a TCP port", "8443"),
    case("port-missing", set_cluster(k8s_api_port=ABSENT), [PORT], "None is not a TCP port"),
    case("port-empty", set_cluster(k8s_api_port=""), [PORT], "is not a TCP port"),
    case("port-float", set_cluster(k8s_api_port="8443.5"), [PORT], "is not a TCP port"),
    case("port-zero", set_cluster(k8s_api_port=0), [PORT], "0 is not a TCP port", "between 1 and 65535"),
    case("port-negative", set_cluster(k8s_api_port=-1), [PORT], "is not a TCP port"),
    case("port-too-high", set_cluster(k8s_api_port=65536), [PORT], "65536 is not a TCP port"),
    case("port-too-high-string", set_cluster(k8s_api_port="70000"), [PORT], "is not a TCP port"),
] + [
    case(f"port-reserved-{port}", set_cluster(k8s_api_port=port), [PORT],
         f"port {port} is used by {service} on the control-plane hosts", "use another port")
    for port, service in sorted(RESERVED_PORTS.items())
] + [
    case("port-reserved-6443-string", set_cluster(k8s_api_port="6443"), [PORT], "used by kube-apiserver"),
    case("port-reserved-2379-etcd", set_cluster(k8s_api_port=2379), [PORT], "used by etcd client"),
    # pod and service subnets
    case("pod-subnet-malformed", set_cluster(k8s_pod_subnet="10.244.0.0"), [POD],
         "'10.244.0.0' is not a network in CIDR notation", "10.244.0.0/16"),
    case("pod-subnet-garbage", set_cluster(k8s_pod_subnet="10.244.0.0/99"), [POD], "is not a network in CIDR notation"),
    case("pod-subnet-missing", set_cluster(k8s_pod_subnet=ABSENT), [POD], "None is not a network in CIDR notation"),
    case("service-subnet-malformed", set_cluster(k8s_service_subnet="10.96.0.0"), [SERVICE],
         "is not a network in CIDR notation", "10.96.0.0/12"),
    case("service-subnet-missing", set_cluster(k8s_service_subnet=""), [SERVICE], "is not a network in CIDR notation"),
    case("pod-subnet-host-bits", set_cluster(k8s_pod_subnet="10.244.1.0/16"), [POD],
         "10.244.1.0/16 has host bits set", "write the network address: 10.244.0.0/16"),
    case("service-subnet-host-bits", set_cluster(k8s_service_subnet="10.96.0.1/12"), [SERVICE],
         "has host bits set", "10.96.0.0/12"),
    case("pod-overlaps-service", set_cluster(k8s_pod_subnet="10.96.0.0/16"), [POD],
         "the pod subnet 10.96.0.0/16 overlaps the service subnet 10.96.0.0/12", "non-overlapping"),
    case("service-inside-pod", set_cluster(k8s_service_subnet="10.244.128.0/17"), [POD],
         "overlaps the service subnet 10.244.128.0/17"),
    case("pod-overlaps-node-network", set_cluster(k8s_pod_subnet="192.168.0.0/16"), [("cp1", "k8s_pod_subnet")],
         "k8s_pod_subnet 192.168.0.0/16 overlaps this node's network 192.168.10.0/24", "does not overlap"),
    case("service-overlaps-node-network", set_cluster(k8s_service_subnet="192.168.10.0/24"),
         [("cp1", "k8s_service_subnet")], "overlaps this node's network 192.168.10.0/24"),
    case("pod-overlaps-each-node-network-once",
         chain(set_host("w1", node_ip="192.168.11.21", node_network="192.168.11.0/24"),
               set_host("w2", node_ip="192.168.11.22", node_network="192.168.11.0/24"),
               set_cluster(k8s_pod_subnet="192.168.0.0/16")),
         [("cp1", "k8s_pod_subnet"), ("w1", "k8s_pod_subnet")], "overlaps this node's network"),
    case("pod-subnet-smaller-than-24", set_cluster(k8s_pod_subnet="10.244.0.0/25"), [POD],
         "10.244.0.0/25 is smaller than one node's pod range (/24)", "larger range"),
    case("service-subnet-larger-than-12", set_cluster(k8s_service_subnet="10.96.0.0/11"), [SERVICE],
         "10.96.0.0/11 is too large", "smaller range"),
    case("service-subnet-ipv6-too-large", set_cluster(k8s_service_subnet="fd00:96::/107"), [SERVICE],
         "at most 20 host bits (a /108 for IPv6)"),
    case("node-address-in-pod-subnet",
         set_host("w1", node_ip="10.244.5.5", ansible_host="10.244.5.5", node_network=ABSENT),
         [("w1", "k8s_pod_subnet")], "the node address 10.244.5.5 lies inside k8s_pod_subnet 10.244.0.0/16",
         "does not contain any node address"),
    case("node-address-in-service-subnet",
         set_host("w1", node_ip="10.100.0.5", ansible_host="10.100.0.5", node_network=ABSENT),
         [("w1", "k8s_service_subnet")], "lies inside k8s_service_subnet 10.96.0.0/12"),
    # versions
    case("k8s-version-missing", set_cluster(k8s_version=ABSENT), [VERSION], "it is not set", "set k8s_version"),
    case("k8s-version-two-parts", set_cluster(k8s_version="1.34"), [VERSION],
         "'1.34' is not a Kubernetes release version", "MAJOR.MINOR.PATCH"),
    case("k8s-version-yaml-float", set_cluster(k8s_version=1.34), [VERSION], "is not a Kubernetes release version"),
    case("k8s-version-leading-zero", set_cluster(k8s_version="1.34.02"), [VERSION],
         "is not a Kubernetes release version"),
    case("k8s-version-prerelease", set_cluster(k8s_version="1.34.0-rc.1"), [VERSION],
         "is not a Kubernetes release version"),
    case("k8s-version-leading-v", set_cluster(k8s_version="v1.34.2"), [VERSION],
         "'v1.34.2' is not a Kubernetes release version", "without the leading 'v'"),
    case("k8s-version-just-below", set_cluster(k8s_version=JUST_BELOW), [VERSION],
         f"{JUST_BELOW} is outside the supported range {LOW[0]}.{LOW[1]} to {HIGH[0]}.{HIGH[1]}", "choose a release"),
    case("k8s-version-just-above", set_cluster(k8s_version=JUST_ABOVE), [VERSION],
         f"{JUST_ABOVE} is outside the supported range"),
    case("k8s-version-next-major", set_cluster(k8s_version=f"{HIGH[0] + 1}.0.0"), [VERSION],
         "outside the supported range"),
    case("etcd-version-missing", set_cluster(etcd_version=ABSENT), [ETCD_VERSION], "it is not set", "3.6.14"),
    case("etcd-version-below-kubeadm-minimum", set_cluster(etcd_version="3.5.23"), [ETCD_VERSION],
         "3.5.23 is older than 3.5.24, the oldest external etcd kubeadm accepts", "set etcd_version to 3.5.24"),
    case("etcd-version-debian-3.4", set_cluster(etcd_version="3.4.23"), [ETCD_VERSION],
         "older than 3.5.24", "playbooks/etcd_upgrade.yml"),
    case("etcd-version-not-semver", set_cluster(etcd_version="3.5"), [ETCD_VERSION],
         "'3.5' is not a semantic version", "MAJOR.MINOR.PATCH"),
    case("etcd-version-leading-zero", set_cluster(etcd_version="3.05.21"), [ETCD_VERSION],
         "is not a semantic version"),
    case("etcd-version-leading-v", set_cluster(etcd_version="v3.5.21"), [ETCD_VERSION],
         "is not a semantic version", "without the leading 'v'"),
    # cluster name
    case("cluster-name-uppercase", set_cluster(k8s_cluster_name="Kubernetes"), [CLUSTER_NAME],
         "'Kubernetes' is not a DNS label", "lower-case letters"),
    case("cluster-name-underscore", set_cluster(k8s_cluster_name="prod_eu1"), [CLUSTER_NAME], "is not a DNS label"),
    case("cluster-name-dot", set_cluster(k8s_cluster_name="prod.eu1"), [CLUSTER_NAME], "is not a DNS label"),
    case("cluster-name-leading-dash", set_cluster(k8s_cluster_name="-prod"), [CLUSTER_NAME], "is not a DNS label"),
    case("cluster-name-trailing-dash", set_cluster(k8s_cluster_name="prod-"), [CLUSTER_NAME], "is not a DNS label"),
    case("cluster-name-64-chars", set_cluster(k8s_cluster_name="a" * 64), [CLUSTER_NAME], "is not a DNS label"),
    case("cluster-name-trailing-newline", set_cluster(k8s_cluster_name="kubernetes\n"), [CLUSTER_NAME],
         "is not a DNS label"),
    case("cluster-name-empty", set_cluster(k8s_cluster_name=""), [CLUSTER_NAME], "'' is not a DNS label"),
    case("cluster-name-missing", set_cluster(k8s_cluster_name=ABSENT), [CLUSTER_NAME], "None is not a DNS label"),
    case("encryption-provider-unknown", set_cluster(k8s_encryption_provider="aes256"), [ENC_PROVIDER],
         "'aes256' is not an encryption provider", "secretbox"),
    case("encryption-resources-empty", set_cluster(k8s_encryption_resources=[]), [ENC_RESOURCES],
         "is not a list of resources", "[secrets]"),
    case("encryption-resources-string", set_cluster(k8s_encryption_resources="secrets"), [ENC_RESOURCES],
         "is not a list of resources"),
    case("encryption-resources-capitals", set_cluster(k8s_encryption_resources=["Secrets"]), [ENC_RESOURCES],
         "is not a list of resources"),
    # the loadbalancer role's inventory-level rules
    case("router-id-0", set_loadbalancers((ROUTER_ID, 0)),
         [("cp1", ROUTER_ID), ("cp2", ROUTER_ID), ("cp3", ROUTER_ID)], "VRRP allows 1 to 255", "from 1 to 255"),
    case("router-id-256", set_loadbalancers((ROUTER_ID, 256)),
         [("cp1", ROUTER_ID), ("cp2", ROUTER_ID), ("cp3", ROUTER_ID)], "256 is not a VRRP router id",
         "from 1 to 255"),
    case("router-id-not-a-number", set_host("cp2", **{ROUTER_ID: "fifty"}), [("cp2", ROUTER_ID)],
         "'fifty' is not a VRRP router id"),
    case("router-id-differs", set_host("cp3", **{ROUTER_ID: 52}), [(CLUSTER, ROUTER_ID)],
         "51 on cp1, cp2; 52 on cp3", "group_vars"),
    case("single-loadbalancer-for-ha-control-plane", set_group("loadbalancer", ["cp1"]),
         [("cp1", "groups.loadbalancer")], "the only load-balancer node in front of 3 control-plane nodes",
         "loadbalancer_allow_single_node: true"),
    case("single-loadbalancer-opt-in-on-other-host",
         chain(set_group("loadbalancer", ["cp1"]), set_host("cp2", loadbalancer_allow_single_node=True)),
         [("cp1", "groups.loadbalancer")], "the only load-balancer node"),
    case("single-loadbalancer-opt-in-false-string",
         chain(set_group("loadbalancer", ["cp1"]), set_host("cp1", loadbalancer_allow_single_node="false")),
         [("cp1", "groups.loadbalancer")], "the only load-balancer node"),
]


@pytest.mark.parametrize("mutate, expected, phrase, fix_phrase", BAD_CASES)
def test_bad_inventory(good_inventory, mutate, expected, phrase, fix_phrase):
    mutate(good_inventory)
    problems = run(good_inventory)
    assert [(problem.host, problem.variable) for problem in problems] == expected, describe(problems)
    for problem in problems:
        assert phrase in problem.message
        assert problem.fix.strip()
        assert fix_phrase is None or fix_phrase in problem.fix


# -- variations the rules must accept ----------------------------------------------------------
GOOD_VARIATIONS = [
    pytest.param(etcd_size(1), id="etcd-1"),
    pytest.param(etcd_size(3), id="etcd-3"),
    pytest.param(etcd_size(5), id="etcd-5"),
    pytest.param(etcd_size(7), id="etcd-7"),
    pytest.param(chain(set_group("kube_node", ["w1", "w2", "cp1"]), set_host("cp1", k8s_control_plane_as_worker=True)),
                 id="cp-worker-opt-in-true"),
    pytest.param(chain(set_group("kube_node", ["w1", "w2", "cp1"]), set_host("cp1", k8s_control_plane_as_worker="yes")),
                 id="cp-worker-opt-in-yes"),
    pytest.param(chain(set_group("kube_node", ["w1", "w2", "cp1"]),
                       set_host("cp1", k8s_control_plane_as_worker="True")),
                 id="cp-worker-opt-in-True-string"),
    pytest.param(chain(set_group("kube_node", ["w1", "w2", "cp1"]), set_host("cp1", k8s_control_plane_as_worker=1)),
                 id="cp-worker-opt-in-1"),
    pytest.param(set_host("w1", k8s_control_plane_as_worker=True), id="opt-in-on-plain-worker"),
    pytest.param(set_host("w1", cluster_overrides={}), id="no-overrides"),
    pytest.param(chain(set_host("w2", ansible_host="192.168.10.21", ansible_connection="podman"),
                       set_host("w1", ansible_connection="podman")),
                 id="shared-ansible-host-podman"),
    pytest.param(chain(set_host("w2", ansible_host="192.168.10.21", ansible_connection="podman")),
                 id="shared-ansible-host-second-podman"),
    pytest.param(chain(set_host("w2", ansible_host="192.168.10.21", ansible_connection="containers.podman.podman"),
                       set_host("w1", ansible_connection="containers.podman.podman")),
                 id="shared-ansible-host-podman-fqcn"),
    pytest.param(chain(set_host("w2", ansible_host="127.0.0.1", ansible_connection="local"),
                       set_host("w1", ansible_host="127.0.0.1", ansible_connection="local")),
                 id="shared-ansible-host-local"),
    pytest.param(chain(set_host("w2", ansible_host="127.0.0.1", ansible_connection="ansible.builtin.local"),
                       set_host("w1", ansible_host="127.0.0.1", ansible_connection="ansible.builtin.local")),
                 id="shared-ansible-host-local-fqcn"),
    pytest.param(chain(set_host("w2", ansible_host="dockerhost", ansible_connection="docker"),
                       set_host("w1", ansible_host="dockerhost", ansible_connection="community.docker.docker")),
                 id="shared-ansible-host-docker"),
    pytest.param(set_host("w2", ansible_host="192.168.10.21", ansible_port=2222), id="shared-ansible-host-other-port"),
    pytest.param(chain(set_host("w1", ansible_host="bastion.example", ansible_port=2201),
                       set_host("w2", ansible_host="bastion.example", ansible_port=2202)),
                 id="jump-host-distinct-ports"),
    pytest.param(rename_host("cp1", "cp1.example.com"), id="fqdn-inventory-name"),
    pytest.param(chain(rename_host("cp1", "cp1.a.example"), rename_host("cp2", "cp1.b.example"),
                       set_host("cp1.b.example", node_name="cp2")),
                 id="fqdn-clash-resolved-by-node-name"),
    pytest.param(set_host("w1", node_name="worker-1.example.com"), id="node-name-subdomain"),
    pytest.param(set_host("w1", node_ip=ABSENT), id="node-address-from-ansible-host"),
    pytest.param(set_host("w1", node_network=ABSENT), id="worker-without-node-network"),
    pytest.param(set_group("loadbalancer", []), id="empty-loadbalancer-group"),
    pytest.param(set_group("loadbalancer", ["cp1", "cp2", "cp3"]), id="control-plane-as-loadbalancer"),
    pytest.param(chain(loadbalancers_on_20(), set_cluster(k8s_api_vip="192.168.20.100")),
                 id="vip-in-loadbalancer-subnet-only"),
    pytest.param(set_cluster(k8s_api_vip=" 192.168.10.100 "), id="vip-with-spaces"),
    pytest.param(set_cluster(k8s_api_port="8443"), id="port-string"),
    pytest.param(set_cluster(k8s_api_port=1), id="port-1"),
    pytest.param(set_cluster(k8s_api_port=65535), id="port-65535"),
    pytest.param(set_cluster(k8s_api_port=443), id="port-443"),
    pytest.param(set_cluster(k8s_pod_subnet="10.244.0.0/24"), id="pod-subnet-exactly-24"),
    pytest.param(set_cluster(k8s_service_subnet="10.96.0.0/16"), id="service-subnet-16"),
    pytest.param(set_cluster(k8s_version=f"{LOW[0]}.{LOW[1]}.0"), id="k8s-version-lowest-minor"),
    pytest.param(set_cluster(k8s_version=f"{HIGH[0]}.{HIGH[1]}.99"), id="k8s-version-highest-minor"),
    pytest.param(set_cluster(etcd_version="3.6.0-rc.1"), id="etcd-version-prerelease"),
    pytest.param(set_cluster(etcd_version="3.5.24+build.1"), id="etcd-version-build-metadata"),
    pytest.param(set_cluster(etcd_version="3.5.24"), id="etcd-version-kubeadm-minimum"),
    pytest.param(set_cluster(k8s_cluster_name="a" * 63), id="cluster-name-63-chars"),
    pytest.param(set_cluster(k8s_cluster_name="prod-eu1"), id="cluster-name-with-dash"),
    pytest.param(set_cluster(k8s_cluster_name="k"), id="cluster-name-one-char"),
    pytest.param(set_cluster(k8s_encryption_provider="identity"), id="encryption-off"),
    pytest.param(set_cluster(k8s_encryption_resources=["secrets", "configmaps", "*.apps", "*.*"]),
                 id="encryption-resources-patterns"),
    pytest.param(set_loadbalancers((ROUTER_ID, 1)), id="router-id-1"),
    pytest.param(set_loadbalancers((ROUTER_ID, "255")), id="router-id-255-string"),
    pytest.param(set_host("w1", **{ROUTER_ID: 300}), id="router-id-ignored-off-loadbalancers"),
    pytest.param(chain(set_group("loadbalancer", ["cp1"]), set_host("cp1", loadbalancer_allow_single_node=True)),
                 id="single-loadbalancer-opted-in"),
    pytest.param(chain(set_group("loadbalancer", ["cp1"]), set_host("cp1", loadbalancer_allow_single_node="yes")),
                 id="single-loadbalancer-opted-in-yes"),
    pytest.param(chain(set_group("kube_control_plane", ["cp1"]), set_group("etcd", ["cp1"])),
                 id="single-control-plane-single-loadbalancer"),
]


@pytest.mark.parametrize("mutate", GOOD_VARIATIONS)
def test_good_variation(good_inventory, mutate):
    mutate(good_inventory)
    problems = run(good_inventory)
    assert problems == [], describe(problems)


# -- reporting ---------------------------------------------------------------------------------
def test_several_problems_are_reported_at_once(good_inventory):
    chain(
        etcd_size(2),
        set_cluster(k8s_api_vip=ABSENT, k8s_version="v1.34.2", k8s_cluster_name="Prod"),
        set_host("w2", node_ip="192.168.10.21"),
        set_cluster(k8s_pod_subnet="10.96.0.0/16"),
    )(good_inventory)
    problems = run(good_inventory)
    assert len(problems) >= 3, describe(problems)
    reported = [(problem.host, problem.variable) for problem in problems]
    for expected in (ETCD, VIP, VERSION, CLUSTER_NAME, ("w2", "node_ip"), POD):
        assert expected in reported, describe(problems)
    assert all(problem.fix for problem in problems)


def test_nothing_valid_reports_every_cluster_variable():
    problems = validate({}, {}, {})
    variables = {problem.variable for problem in problems}
    assert variables == {
        "groups.kube_control_plane", "groups.etcd", "k8s_version", "etcd_version", "k8s_cluster_name",
        "k8s_api_vip", "k8s_api_port", "k8s_pod_subnet", "k8s_service_subnet", "k8s_encryption_provider",
        "k8s_encryption_resources",
    }
    assert {problem.host for problem in problems} == {CLUSTER}


def test_problem_str_for_a_host():
    problem = Problem("cp1", "node_ip", "'x' is not an IP address.", "set node_ip.")
    text = str(problem)
    assert "host cp1" in text
    assert "variable node_ip" in text
    assert "Fix:" in text
    assert text == "host cp1, variable node_ip: 'x' is not an IP address. Fix: set node_ip."


def test_problem_str_for_the_cluster():
    text = str(Problem(CLUSTER, "k8s_api_vip", "it is not set.", "set it."))
    assert text.startswith("cluster, variable k8s_api_vip: ")
    assert "host " not in text
    assert text.endswith("Fix: set it.")


def test_problem_str_from_validation(good_inventory):
    set_host("w2", node_ip="192.168.10.21")(good_inventory)
    (problem,) = run(good_inventory)
    text = str(problem)
    assert "host w2" in text
    assert "variable node_ip" in text
    assert "Fix:" in text
    assert text.index(problem.message) < text.index("Fix:") < text.index(problem.fix)


def test_problem_as_dict():
    problem = Problem("w1", "node_name", "bad.", "rename.")
    assert problem.as_dict() == {"host": "w1", "variable": "node_name", "message": "bad.", "fix": "rename."}


# -- the model itself --------------------------------------------------------------------------
def test_validate_resets_problems_between_runs(good_inventory):
    etcd_size(2)(good_inventory)
    model = InventoryModel(good_inventory["groups"], good_inventory["cluster"], good_inventory["hosts"])
    first = model.validate()
    second = model.validate()
    assert len(first) == len(second) == 1
    assert model.problems == second


def test_managed_hosts_are_unique_and_ordered(good_inventory):
    loadbalancers_on_20()(good_inventory)
    set_group("kube_node", ["w1", "cp1", "w2"])(good_inventory)
    model = InventoryModel(good_inventory["groups"], good_inventory["cluster"], good_inventory["hosts"])
    assert model.managed_hosts == ["cp1", "cp2", "cp3", "w1", "w2", "lb1", "lb2"]


def test_loadbalancers_fall_back_to_control_plane(good_inventory):
    model = InventoryModel(good_inventory["groups"], {}, {})
    assert model.loadbalancers == ["cp1", "cp2", "cp3"]
    loadbalancers_on_20()(good_inventory)
    model = InventoryModel(good_inventory["groups"], {}, {})
    assert model.loadbalancers == ["lb1", "lb2"]


@pytest.mark.parametrize(
    "values, expected",
    [
        pytest.param({"node_ip": "10.0.0.1", "ansible_host": "10.0.0.2"}, ("10.0.0.1", "node_ip"), id="node-ip"),
        pytest.param({"node_ip": " 10.0.0.1 "}, ("10.0.0.1", "node_ip"), id="node-ip-stripped"),
        pytest.param({"node_ip": "", "ansible_host": "10.0.0.2"}, ("10.0.0.2", "ansible_host"), id="empty-node-ip"),
        pytest.param({"ansible_host": "10.0.0.2"}, ("10.0.0.2", "ansible_host"), id="ansible-host"),
        pytest.param({}, ("n1.example", "inventory_hostname"), id="inventory-hostname"),
    ],
)
def test_node_address(values, expected):
    model = InventoryModel({"kube_node": ["n1.example"]}, {}, {"n1.example": values})
    assert model.node_address("n1.example") == expected


@pytest.mark.parametrize(
    "values, expected",
    [
        pytest.param({"node_name": "custom"}, ("custom", "node_name"), id="node-name"),
        pytest.param({"node_name": "  "}, ("n1", "inventory_hostname"), id="blank-node-name"),
        pytest.param({}, ("n1", "inventory_hostname"), id="short-inventory-name"),
    ],
)
def test_node_name(values, expected):
    model = InventoryModel({"kube_node": ["n1.example"]}, {}, {"n1.example": values})
    assert model.node_name("n1.example") == expected
