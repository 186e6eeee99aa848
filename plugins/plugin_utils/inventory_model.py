# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory model and its validation rules, as plain data in, problems out.

This runs on the controller only (the ``inventory_preflight`` action plugin), before
any managed host is contacted. It never looks at facts: everything it checks comes
from the inventory itself. Each rule appends a :class:`Problem` that names the host
(or ``cluster``), the variable and the fix, so an operator sees every mistake in one
run instead of fixing them one failed run at a time.
"""

from __future__ import annotations

import re

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported by the action plugin
    netaddr = None
    HAS_NETADDR = False

from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import (
    KUBEADM_MIN_EXTERNAL_ETCD,
    minor_supported,
    parse_k8s_version,
    parse_semver,
    supported_range_text,
)

CLUSTER = "cluster"

# Group names every playbook of the collection relies on.
GROUP_CONTROL_PLANE = "kube_control_plane"
GROUP_ETCD = "etcd"
GROUP_WORKERS = "kube_node"
GROUP_LOADBALANCER = "loadbalancer"

# Variables that must have one value for the whole cluster. They belong in
# group_vars/all; a different value on one host is a mistake we refuse.
CLUSTER_VARIABLES = (
    "k8s_version",
    "k8s_api_vip",
    "k8s_api_port",
    "k8s_pod_subnet",
    "k8s_service_subnet",
    "k8s_cluster_name",
    "k8s_encryption_provider",
    "k8s_encryption_resources",
    "k8s_encryption_config_file",
    "etcd_version",
)

ETCD_SIZES = (1, 3, 5, 7)

# kube-apiserver's encryption providers, and what a resource entry of an EncryptionConfiguration
# may look like: resource, resource.group, *.group, *.* (and "*." for the core group).
ENCRYPTION_PROVIDERS = ("secretbox", "aesgcm", "aescbc", "kms", "identity")
ENCRYPTION_RESOURCE_RE = re.compile(r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?)?\Z")

# The loadbalancer role's variables the preflight checks as inventory data (role defaults).
LB_ROUTER_ID_VARIABLE = "loadbalancer_keepalived_virtual_router_id"
LB_ROUTER_ID_DEFAULT = 51
LB_ALLOW_SINGLE_VARIABLE = "loadbalancer_allow_single_node"

# Ports the collection's own services use on control-plane hosts. The API frontend
# (HAProxy) shares those hosts, so it must not collide with any of them.
RESERVED_PORTS = {
    2379: "etcd client",
    2380: "etcd peer",
    6443: "kube-apiserver",
    10250: "kubelet",
    10257: "kube-controller-manager",
    10259: "kube-scheduler",
}

# kube-controller-manager's default --node-cidr-mask-size for IPv4 and IPv6.
NODE_CIDR_MASK = {4: 24, 6: 64}
# kube-apiserver refuses service ranges with more host bits than this.
MAX_SERVICE_HOST_BITS = {4: 20, 6: 20}

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Problem:
    """One inventory mistake: where it is, what is wrong, and how to fix it."""

    __slots__ = ("fix", "host", "message", "variable")

    def __init__(self, host, variable, message, fix):
        self.host = host
        self.variable = variable
        self.message = message
        self.fix = fix

    def __str__(self):
        where = "cluster" if self.host == CLUSTER else "host %s" % self.host
        return "%s, variable %s: %s Fix: %s" % (where, self.variable, self.message, self.fix)

    def as_dict(self):
        return {"host": self.host, "variable": self.variable, "message": self.message, "fix": self.fix}


def _is_set(value):
    return value is not None and str(value).strip() != ""


def _ip(value):
    """Parse a single IP address; None when malformed."""
    try:
        return netaddr.IPAddress(str(value).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None


def _network(value):
    """Parse a CIDR; None when malformed or when it has no prefix length."""
    text = str(value).strip()
    if "/" not in text:
        return None
    try:
        return netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None


def _overlaps(first, second):
    return first.first <= second.last and second.first <= first.last


class InventoryModel:
    """The inventory as the preflight sees it.

    :param groups: group name -> list of host names (as ``groups`` in Ansible)
    :param cluster: cluster-wide variable name -> value, as the play resolves it
    :param hosts: host name -> dict of the per-host variables the rules read:
        ``ansible_host``, ``ansible_port``, ``ansible_connection``, ``node_ip``,
        ``node_network``, ``node_name``, ``k8s_control_plane_as_worker``, the loadbalancer
        role's ``loadbalancer_keepalived_virtual_router_id`` and ``loadbalancer_allow_single_node`` and, under
        ``cluster_overrides``, any cluster-wide variable whose value on that host
        differs from the cluster's.
    """

    def __init__(self, groups, cluster, hosts):
        self.groups = {name: list(members or []) for name, members in (groups or {}).items()}
        self.cluster = dict(cluster or {})
        self.hosts = dict(hosts or {})
        self.problems = []

    # -- helpers -----------------------------------------------------------
    def group(self, name):
        return self.groups.get(name, [])

    @property
    def loadbalancers(self):
        """The ``loadbalancer`` group, or the control plane when it is empty."""
        return self.group(GROUP_LOADBALANCER) or self.group(GROUP_CONTROL_PLANE)

    @property
    def managed_hosts(self):
        """Every host a playbook of the collection configures, in inventory order."""
        seen = []
        for name in (GROUP_ETCD, GROUP_CONTROL_PLANE, GROUP_WORKERS, GROUP_LOADBALANCER):
            for host in self.group(name):
                if host not in seen:
                    seen.append(host)
        return seen

    def hostvar(self, host, name, default=None):
        value = self.hosts.get(host, {}).get(name)
        return default if value is None else value

    def node_address(self, host):
        """The address Kubernetes and etcd use: node_ip, else ansible_host, else the name."""
        for name in ("node_ip", "ansible_host"):
            value = self.hostvar(host, name)
            if _is_set(value):
                return str(value).strip(), name
        return host, "inventory_hostname"

    def node_name(self, host):
        value = self.hostvar(host, "node_name")
        if _is_set(value):
            return str(value).strip(), "node_name"
        return host.split(".")[0], "inventory_hostname"

    def add(self, host, variable, message, fix):
        self.problems.append(Problem(host, variable, message, fix))

    # -- rules -------------------------------------------------------------
    def validate(self):
        """Run every rule; return the list of problems (empty when the inventory is good)."""
        self.problems = []
        self.check_groups()
        self.check_etcd_size()
        self.check_control_plane_workers()
        self.check_cluster_overrides()
        self.check_versions()
        self.check_cluster_name()
        self.check_encryption()
        self.check_node_names()
        networks = self.check_node_addresses()
        self.check_api_endpoint(networks)
        self.check_loadbalancers()
        self.check_cluster_subnets(networks)
        return self.problems

    def check_groups(self):
        if not self.group(GROUP_CONTROL_PLANE):
            self.add(
                CLUSTER, "groups.%s" % GROUP_CONTROL_PLANE,
                "the group '%s' is empty or missing; a cluster needs at least one control-plane node."
                % GROUP_CONTROL_PLANE,
                "add 1 or 3 hosts under '%s' in the inventory (3 for a highly available API)." % GROUP_CONTROL_PLANE,
            )

    def check_etcd_size(self):
        members = self.group(GROUP_ETCD)
        count = len(members)
        if count in ETCD_SIZES:
            return
        listing = ", ".join(members) if members else "none"
        if count == 0:
            message = "the group '%s' is empty or missing; kube-apiserver needs an external etcd cluster." % GROUP_ETCD
        elif count > max(ETCD_SIZES):
            message = (
                "the group '%s' has %d members (%s). Every write waits for a majority, so more than %d members "
                "makes the cluster slower without a useful gain in failure tolerance."
                % (GROUP_ETCD, count, listing, max(ETCD_SIZES))
            )
        else:
            quorum = count // 2 + 1
            tolerated = count - quorum
            smaller = count - 1
            message = (
                "the group '%s' has %d members (%s), an even number. etcd needs a quorum of floor(n/2)+1 = %d "
                "members to accept writes, so %d members survive only %d failure(s), the same as %d members, "
                "while one more member must agree on every write and a network split into two halves of %d "
                "leaves neither side with a quorum."
                % (GROUP_ETCD, count, listing, quorum, count, tolerated, smaller, count // 2)
            )
        self.add(
            CLUSTER, "groups.%s" % GROUP_ETCD, message,
            "put 1, 3, 5 or 7 hosts in the '%s' group (3 tolerates one failure, 5 tolerates two)." % GROUP_ETCD,
        )

    def check_control_plane_workers(self):
        workers = set(self.group(GROUP_WORKERS))
        for host in self.group(GROUP_CONTROL_PLANE):
            if host in workers and not _truthy(self.hostvar(host, "k8s_control_plane_as_worker", False)):
                self.add(
                    host, "k8s_control_plane_as_worker",
                    "the host is in both '%s' and '%s', which schedules ordinary workloads next to the "
                    "API server and etcd." % (GROUP_CONTROL_PLANE, GROUP_WORKERS),
                    "remove it from '%s', or set k8s_control_plane_as_worker: true for it to opt in." % GROUP_WORKERS,
                )

    def check_cluster_overrides(self):
        for host in self.managed_hosts:
            overrides = self.hostvar(host, "cluster_overrides", {}) or {}
            for variable in sorted(overrides):
                self.add(
                    host, variable,
                    "the host has %s=%r but the cluster value is %r; cluster-wide variables must be the same "
                    "on every host." % (variable, overrides[variable], self.cluster.get(variable)),
                    "set %s only once, in group_vars/all (inventories/<name>/group_vars/all/cluster.yml), and "
                    "remove it from host_vars and other groups." % variable,
                )

    def check_versions(self):
        version = self.cluster.get("k8s_version")
        parsed = parse_k8s_version(version) if _is_set(version) else None
        if not _is_set(version):
            self.add(CLUSTER, "k8s_version", "it is not set.",
                     "set k8s_version to a release such as 1.33.4 in group_vars/all/cluster.yml.")
        elif parsed is None:
            hint = " without the leading 'v'" if str(version).strip().lower().startswith("v") else ""
            self.add(CLUSTER, "k8s_version", "%r is not a Kubernetes release version (MAJOR.MINOR.PATCH)." % (version,),
                     "write it as MAJOR.MINOR.PATCH%s, for example 1.33.4." % hint)
        elif not minor_supported(parsed):
            self.add(CLUSTER, "k8s_version",
                     "%s is outside the supported range %s." % (version, supported_range_text()),
                     "choose a release between %s." % supported_range_text())

        etcd_version = self.cluster.get("etcd_version")
        if not _is_set(etcd_version):
            self.add(CLUSTER, "etcd_version", "it is not set.", "set etcd_version to a release such as 3.6.14.")
        elif parse_semver(etcd_version) is None:
            hint = " without the leading 'v'" if str(etcd_version).strip().lower().startswith("v") else ""
            self.add(CLUSTER, "etcd_version", "%r is not a semantic version." % (etcd_version,),
                     "write it as MAJOR.MINOR.PATCH%s, for example 3.6.14." % hint)
        elif self.group(GROUP_CONTROL_PLANE) and parse_semver(etcd_version) < KUBEADM_MIN_EXTERNAL_ETCD:
            minimum = "%d.%d.%d" % KUBEADM_MIN_EXTERNAL_ETCD
            self.add(CLUSTER, "etcd_version",
                     "%s is older than %s, the oldest external etcd kubeadm accepts: kubeadm init and upgrade "
                     "apply would stop on it." % (etcd_version, minimum),
                     "set etcd_version to %s or newer (the default is 3.6.14); move a running etcd there first "
                     "with playbooks/etcd_upgrade.yml, one minor at a time." % minimum)

    def check_cluster_name(self):
        name = self.cluster.get("k8s_cluster_name")
        if not _is_set(name) or not DNS_LABEL_RE.match(str(name)):
            self.add(CLUSTER, "k8s_cluster_name", "%r is not a DNS label." % (name,),
                     "use lower-case letters, digits and '-', at most 63 characters, for example 'prod-eu1'.")

    def check_encryption(self):
        provider = self.cluster.get("k8s_encryption_provider")
        if provider not in ENCRYPTION_PROVIDERS:
            self.add(CLUSTER, "k8s_encryption_provider", "%r is not an encryption provider." % (provider,),
                     "use one of %s (secretbox unless you have a reason)." % ", ".join(ENCRYPTION_PROVIDERS))
        resources = self.cluster.get("k8s_encryption_resources")
        if (not isinstance(resources, (list, tuple)) or not resources
                or not all(isinstance(r, str) and ENCRYPTION_RESOURCE_RE.match(r) for r in resources)):
            self.add(CLUSTER, "k8s_encryption_resources",
                     "%r is not a list of resources such as secrets, configmaps or *.apps." % (resources,),
                     "set a list of lower-case resource names (resource, resource.group, *.group or *.*), "
                     "for example [secrets].")

    def check_node_names(self):
        seen = {}
        for host in self.managed_hosts:
            name, source = self.node_name(host)
            if not DNS_SUBDOMAIN_RE.match(name) or len(name) > 253:
                self.add(host, source,
                         "the node name %r is not a valid Kubernetes node name (lower-case DNS subdomain)." % name,
                         "rename the host or set node_name to lower-case letters, digits, '-' and '.'.")
                continue
            key = name.lower()
            if key in seen:
                self.add(host, source,
                         "the node name %r is already used by host %s; Kubernetes and etcd need unique names."
                         % (name, seen[key]),
                         "give one of them a distinct node_name (or a distinct short host name).")
            else:
                seen[key] = host

    def check_node_addresses(self):
        """Duplicate and malformed addresses; returns host -> node network (IPNetwork)."""
        addresses = {}
        endpoints = {}
        networks = {}
        for host in self.managed_hosts:
            address, source = self.node_address(host)
            parsed = _ip(address)
            if source == "node_ip" and parsed is None:
                self.add(host, "node_ip", "%r is not an IP address." % address,
                         "set node_ip to the address Kubernetes and etcd should use, for example 192.168.10.11.")
            key = str(parsed) if parsed is not None else address
            if key in addresses:
                self.add(host, source,
                         "the address %s is also the node address of host %s; every node needs its own."
                         % (key, addresses[key]),
                         "give each host a distinct node_ip (or ansible_host).")
            else:
                addresses[key] = host

            # Short or fully qualified: local, ansible.builtin.local, containers.podman.podman, ...
            connection = str(self.hostvar(host, "ansible_connection", "ssh")).rsplit(".", 1)[-1]
            if connection not in ("local", "podman", "docker", "lxd") and _is_set(self.hostvar(host, "ansible_host")):
                endpoint = (str(self.hostvar(host, "ansible_host")).strip(),
                            str(self.hostvar(host, "ansible_port", 22)))
                if endpoint in endpoints:
                    self.add(host, "ansible_host",
                             "%s port %s is also where Ansible reaches host %s; two inventory entries for one "
                             "machine would configure it twice." % (endpoint[0], endpoint[1], endpoints[endpoint]),
                             "remove the duplicate entry or correct ansible_host/ansible_port.")
                else:
                    endpoints[endpoint] = host

            network_value = self.hostvar(host, "node_network")
            if not _is_set(network_value):
                continue
            network = _network(network_value)
            if network is None:
                self.add(host, "node_network", "%r is not a network in CIDR notation." % (network_value,),
                         "set node_network to the node's subnet, for example 192.168.10.0/24.")
                continue
            networks[host] = network
            if parsed is not None and parsed not in network:
                self.add(host, "node_network",
                         "the node address %s (%s) is not inside node_network %s." % (parsed, source, network),
                         "set node_network to the subnet that contains %s, or correct %s." % (parsed, source))
        return networks

    def check_api_endpoint(self, networks):
        vip_value = self.cluster.get("k8s_api_vip")
        if not _is_set(vip_value):
            self.add(CLUSTER, "k8s_api_vip", "it is not set; every kubelet and client reaches the API through it.",
                     "set k8s_api_vip to a free address in the load balancers' subnet, in group_vars/all/cluster.yml.")
        else:
            vip = _ip(vip_value)
            if vip is None:
                self.add(CLUSTER, "k8s_api_vip", "%r is not an IP address." % (vip_value,),
                         "set k8s_api_vip to a single free address such as 192.168.10.100 (no prefix length).")
            else:
                self._check_vip_placement(vip, networks)

        port = self.cluster.get("k8s_api_port")
        try:
            port_number = int(str(port))
        except (TypeError, ValueError):
            port_number = None
        if port_number is None or not 1 <= port_number <= 65535:
            self.add(CLUSTER, "k8s_api_port", "%r is not a TCP port." % (port,),
                     "set k8s_api_port to a port between 1 and 65535; the default is 8443.")
        elif port_number in RESERVED_PORTS:
            self.add(CLUSTER, "k8s_api_port",
                     "port %d is used by %s on the control-plane hosts, where HAProxy listens too."
                     % (port_number, RESERVED_PORTS[port_number]),
                     "use another port for the load-balanced API endpoint; the default is 8443.")

    def _check_vip_placement(self, vip, networks):
        reported = set()
        for host in self.managed_hosts:
            address, source = self.node_address(host)
            if _ip(address) == vip:
                self.add(host, source, "the node address %s is the API VIP (k8s_api_vip)." % vip,
                         "choose a k8s_api_vip that no node uses, or correct the host's address.")
        for host in self.loadbalancers:
            network = networks.get(host)
            if network is None:
                if not _is_set(self.hostvar(host, "node_network")):
                    self.add(host, "node_network",
                             "it is not set, so the preflight cannot check that the API VIP %s can live on this "
                             "load-balancer node's subnet." % vip,
                             "set node_network (for example 192.168.10.0/24) in group_vars/all or for this host.")
                continue
            if vip not in network:
                self.add(host, "k8s_api_vip",
                         "the VIP %s is outside this load-balancer node's subnet %s; keepalived can only hold an "
                         "address on a subnet the node is attached to." % (vip, network),
                         "pick k8s_api_vip inside %s, or correct node_network." % network)
            elif vip in (network.network, network.broadcast) and network.size > 2 and network not in reported:
                reported.add(network)
                self.add(CLUSTER, "k8s_api_vip",
                         "%s is the network or broadcast address of %s." % (vip, network),
                         "pick a host address inside %s." % network)

    def check_loadbalancers(self):
        """keepalived's router id and the single-node refusal, before any host is touched."""
        router_ids = {}
        for host in self.loadbalancers:
            value = self.hostvar(host, LB_ROUTER_ID_VARIABLE, LB_ROUTER_ID_DEFAULT)
            try:
                number = int(str(value).strip())
            except (TypeError, ValueError):
                number = None
            if number is None or not 1 <= number <= 255:
                self.add(host, LB_ROUTER_ID_VARIABLE,
                         "%r is not a VRRP router id; VRRP allows 1 to 255." % (value,),
                         "set %s to a number from 1 to 255 that no other VRRP instance on the nodes' network "
                         "uses (the default is %d)." % (LB_ROUTER_ID_VARIABLE, LB_ROUTER_ID_DEFAULT))
                continue
            router_ids.setdefault(number, []).append(host)
        if len(router_ids) > 1:
            listing = "; ".join("%d on %s" % (number, ", ".join(hosts)) for number, hosts in sorted(router_ids.items()))
            self.add(CLUSTER, LB_ROUTER_ID_VARIABLE,
                     "the load-balancer nodes use different VRRP router ids (%s), so they would never see each "
                     "other and each would hold the VIP." % listing,
                     "set %s once, in group_vars/all or group_vars/loadbalancer." % LB_ROUTER_ID_VARIABLE)

        loadbalancers = self.loadbalancers
        control_plane = self.group(GROUP_CONTROL_PLANE)
        if len(loadbalancers) == 1 and len(control_plane) > 1 and \
                not _truthy(self.hostvar(loadbalancers[0], LB_ALLOW_SINGLE_VARIABLE, False)):
            self.add(loadbalancers[0], "groups.%s" % GROUP_LOADBALANCER,
                     "it is the only load-balancer node in front of %d control-plane nodes, so the API endpoint "
                     "would fail with this one host however many apiservers run." % len(control_plane),
                     "put 2 or 3 hosts in the '%s' group (or leave it empty to use the control-plane hosts), or "
                     "set %s: true to accept a single load balancer." % (GROUP_LOADBALANCER, LB_ALLOW_SINGLE_VARIABLE))

    def check_cluster_subnets(self, networks):
        parsed = {}
        for variable in ("k8s_pod_subnet", "k8s_service_subnet"):
            value = self.cluster.get(variable)
            network = _network(value) if _is_set(value) else None
            if network is None:
                self.add(CLUSTER, variable, "%r is not a network in CIDR notation." % (value,),
                         "set %s to a private range such as %s." %
                         (variable, "10.244.0.0/16" if variable == "k8s_pod_subnet" else "10.96.0.0/12"))
                continue
            if network.ip != network.network:
                self.add(CLUSTER, variable, "%s has host bits set." % value,
                         "write the network address: %s." % network.cidr)
            parsed[variable] = network

        pods = parsed.get("k8s_pod_subnet")
        services = parsed.get("k8s_service_subnet")
        if pods is not None and pods.prefixlen > NODE_CIDR_MASK[pods.version]:
            self.add(CLUSTER, "k8s_pod_subnet",
                     "%s is smaller than one node's pod range (/%d), so no node could get pod addresses."
                     % (pods, NODE_CIDR_MASK[pods.version]),
                     "use a larger range, for example 10.244.0.0/16.")
        if services is not None:
            host_bits = (32 if services.version == 4 else 128) - services.prefixlen
            if host_bits > MAX_SERVICE_HOST_BITS[services.version]:
                self.add(CLUSTER, "k8s_service_subnet",
                         "%s is too large: kube-apiserver accepts at most %d host bits (a /%d for IPv%d)."
                         % (services, MAX_SERVICE_HOST_BITS[services.version],
                            (32 if services.version == 4 else 128) - MAX_SERVICE_HOST_BITS[services.version],
                            services.version),
                         "use a smaller range, for example 10.96.0.0/12.")
        if pods is not None and services is not None and _overlaps(pods, services):
            self.add(CLUSTER, "k8s_pod_subnet",
                     "the pod subnet %s overlaps the service subnet %s." % (pods, services),
                     "choose non-overlapping ranges, for example 10.244.0.0/16 and 10.96.0.0/12.")

        reported = set()
        for host, node_network in networks.items():
            for variable, subnet in (("k8s_pod_subnet", pods), ("k8s_service_subnet", services)):
                if subnet is None or not _overlaps(subnet, node_network):
                    continue
                key = (variable, str(node_network))
                if key in reported:
                    continue
                reported.add(key)
                self.add(host, variable,
                         "%s %s overlaps this node's network %s (node_network); traffic to nodes would be routed "
                         "into the cluster." % (variable, subnet, node_network),
                         "choose a %s that does not overlap any node network." % variable)
        for host in self.managed_hosts:
            if host in networks:
                continue
            address = _ip(self.node_address(host)[0])
            if address is None:
                continue
            for variable, subnet in (("k8s_pod_subnet", pods), ("k8s_service_subnet", services)):
                if subnet is not None and address in subnet:
                    self.add(host, variable,
                             "the node address %s lies inside %s %s." % (address, variable, subnet),
                             "choose a %s that does not contain any node address." % variable)


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def validate(groups, cluster, hosts):
    """Validate an inventory; return a list of :class:`Problem` (empty when it is fine)."""
    return InventoryModel(groups, cluster, hosts).validate()
