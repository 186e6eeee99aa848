#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_health
short_description: Answer "is this Kubernetes cluster fit to proceed?" with a report an operator can read
version_added: 0.1.0
description:
  - Checks, in one call, every control-plane apiserver directly (C(/readyz?verbose) and C(/livez) on
    C(https://<node address>:6443)), the cluster endpoint (the kubeconfig's server, normally the VIP), every
    node (Ready, schedulable, C(kubeletVersion), the age of its last heartbeat from its Lease), the
    control-plane static pods in C(kube-system) and, optionally, etcd.
  - "Assertions: I(expect_nodes) (every inventory node registered), I(expect_version) (per role: control plane
    and workers) and the Kubernetes version skew policy: a kubelet is never newer than the oldest apiserver and
    at most I(max_version_skew) (at most 3) minors older; apiservers are within 1 minor of each other;
    kube-controller-manager and kube-scheduler are never newer than the oldest apiserver and at most 1 minor older."
  - 'When a check fails the message lists B(every) failing check precisely, one per line, for example
    "node w2 NotReady for 95 s (last heartbeat 2026-11-28T02:50:01Z, 97 s ago): NodeStatusUnknown: Kubelet
    stopped posting node status."'
  - With I(wait=true) the checks are repeated every I(wait_sleep) seconds until they all pass or
    I(wait_timeout) expires.
  - When the cluster endpoint does not answer, the cluster state is read through the first ready apiserver
    from I(apiservers), so a dead VIP is reported next to everything else rather than hiding it.
  - Read-only. It never reports C(changed).
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  apiservers:
    description:
      - Apiservers to check directly, as C(host), C(host:port) or URL (port I(apiserver_port) when omitted).
      - When omitted, the C(InternalIP) of every node labelled C(node-role.kubernetes.io/control-plane).
    type: list
    elements: str
  apiserver_port:
    description: Port of the apiservers for I(apiservers) entries and discovered addresses without one.
    type: int
    default: 6443
  check_endpoint:
    description: Check C(/readyz) and C(/livez) of the cluster endpoint (the kubeconfig's server or I(api_server)).
    type: bool
    default: true
  expect_nodes:
    description: Node names that must be registered, e.g. every host of the inventory.
    type: list
    elements: str
  expect_version:
    description:
      - Expected Kubernetes versions (C(X.Y.Z)) per role. Compared with the kubelets of the nodes of that role;
        for the control plane also with the apiservers (C(/version)) and the control-plane static pod images.
    type: dict
    suboptions:
      control_plane:
        description: Version of the control-plane nodes and components.
        type: str
      workers:
        description: Version of the kubelets of the other nodes.
        type: str
  max_version_skew:
    description:
      - How many minor versions a kubelet may be behind the oldest apiserver. The skew policy allows 3; a
        smaller number tightens the check (C(0) requires equal minors). Larger values are refused.
    type: int
    default: 3
  max_heartbeat_age:
    description:
      - A Ready node whose last heartbeat (its C(kube-node-lease) Lease renewal, else the Ready condition's
        C(lastHeartbeatTime)) is older than this many seconds is reported as failing.
    type: int
    default: 60
  require_schedulable:
    description: Report cordoned (unschedulable) nodes as failures. By default they are only reported.
    type: bool
    default: false
  control_plane_components:
    description:
      - The static pods every control-plane node must run and have Ready in C(kube-system). An empty list
        skips the static pod checks.
    type: list
    elements: str
    default: [kube-apiserver, kube-controller-manager, kube-scheduler]
  etcd:
    description:
      - Also check etcd through the collection's etcd health helper (C(etcdctl) on the target, the same code as
        the C(baremetal.kubernetes.etcd_health) module). Omit to skip etcd.
    type: dict
    # suboptions: the etcd_client doc fragment (etcd_suboptions), as etcd_health's top-level options.
  # Described by the wait doc fragment; this module's defaults and former names:
  wait:
    default: false
  wait_timeout:
    default: 300
    aliases: [timeout]
  wait_sleep:
    default: 5
    aliases: [poll_interval]
  fail_on_unhealthy:
    description: Fail the task when a check fails. With C(false) the report is only returned (C(healthy=false)).
    type: bool
    default: true
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
  - baremetal.kubernetes.etcd_client.etcd_suboptions
  - baremetal.kubernetes.kubeconfig
  - baremetal.kubernetes.wait
seealso:
  - module: baremetal.kubernetes.k8s_drain
  - name: Kubernetes version skew policy
    description: The rules I(max_version_skew) implements.
    link: https://kubernetes.io/releases/version-skew-policy/
"""

EXAMPLES = r"""
- name: Is the cluster fit to proceed?
  baremetal.kubernetes.cluster_health:
    expect_nodes: "{{ groups['k8s_cluster'] }}"
    expect_version:
      control_plane: "{{ k8s_version }}"
      workers: "{{ k8s_version }}"
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true

- name: Wait for the node we just upgraded, checking each apiserver directly
  baremetal.kubernetes.cluster_health:
    apiservers: "{{ groups['kube_control_plane'] | map('extract', hostvars, 'ansible_host') | list }}"
    wait: true
    wait_timeout: 600
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true

- name: Report only, including etcd
  baremetal.kubernetes.cluster_health:
    fail_on_unhealthy: false
    etcd:
      endpoints: ["https://10.0.0.11:2379", "https://10.0.0.12:2379", "https://10.0.0.13:2379"]
  register: health
"""

RETURN = r"""
healthy:
  description: Whether every check passed.
  returned: always
  type: bool
  sample: false
failures:
  description: One precise message per failing check (the same lines as in C(msg) on failure).
  returned: always
  type: list
  elements: str
  sample:
    - "node w2 NotReady for 95 s (last heartbeat 2026-11-28T02:50:01Z, 97 s ago): NodeStatusUnknown: Kubelet stopped
      posting node status."
checks:
  description: Every check that ran, passed or not.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: C(endpoint), C(apiserver), C(node), C(heartbeat), C(schedulable), C(condition),
        C(static-pod), C(expect-nodes), C(expect-version), C(version-skew), C(etcd) or C(cluster-state).
      type: str
    target:
      description: What was checked (endpoint, node or pod name).
      type: str
    ok:
      description: Whether it passed.
      type: bool
    message:
      description: Details.
      type: str
  sample: [{check: apiserver, target: "https://10.0.0.11:6443", ok: true, message: "ready and live (v1.34.2)"}]
apiservers:
  description: The result per apiserver checked directly, and for the cluster endpoint.
  returned: always
  type: list
  elements: dict
  sample: [{endpoint: "https://10.0.0.11:6443", role: apiserver, ready: true, live: true, version: v1.34.2,
            failed_checks: []}]
nodes:
  description: Every registered node.
  returned: always
  type: list
  elements: dict
  sample: [{name: w2, control_plane: false, ready: false, schedulable: true, kubelet_version: v1.34.2,
            heartbeat_age: 97, not_ready_for: 95}]
control_plane_pods:
  description: The control-plane static pods found in C(kube-system).
  returned: always
  type: list
  elements: dict
  sample: [{name: kube-apiserver-cp1, node: cp1, component: kube-apiserver, ready: true, version: 1.34.2,
            restarts: 0}]
etcd:
  description: The etcd report of the collection's etcd health helper.
  returned: when I(etcd) is set
  type: dict
attempts:
  description: How many times the checks ran.
  returned: always
  type: int
  sample: 1
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 0.84
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._etcd import (
    ETCD_CLIENT_ARGUMENT_SPEC,
    EtcdCtl,
    collect_health,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    CLIENT_ERRORS,
    KUBECONFIG_ARGUMENT_SPEC,
    K8sApiError,
    K8sClient,
    parse_time,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._version_skew import (
    KUBELET_MAX_SKEW,
    check_skew,
    image_tag_version,
    parse_kube_version,
    version_text,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    poll,
    wait_argument_spec,
)

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def is_control_plane(node):
    labels = (node.get("metadata") or {}).get("labels") or {}
    return any(label in labels for label in CONTROL_PLANE_LABELS)


def node_address(node):
    addresses = (node.get("status") or {}).get("addresses") or []
    for kind in ("InternalIP", "ExternalIP"):
        for address in addresses:
            if address.get("type") == kind and address.get("address"):
                return address["address"]
    return None


def server_for(address, port):
    """An apiserver URL from an address, 'host:port' or URL, with ``port`` when none is given."""
    text = str(address).strip()
    if "://" in text:
        return text.rstrip("/")
    if text.startswith("[") and "]:" in text:
        return "https://%s" % text
    if text.count(":") == 1:
        return "https://%s" % text
    if text.count(":") > 1:
        return "https://[%s]:%d" % (text.strip("[]"), port)
    return "https://%s:%d" % (text, port)


def failed_readyz_checks(text):
    """'[-]etcd failed: reason withheld' lines of a verbose /readyz or /livez answer."""
    return [line.strip()[3:] for line in (text or "").splitlines() if line.strip().startswith("[-]")]


def _ago(now, when):
    return round(now - when) if when is not None else None


class HealthCheck:
    sleep = staticmethod(time.sleep)

    def __init__(self, module, client, clock=time.monotonic, wall=time.time, etcd_check=None):
        self.module = module
        self.params = module.params
        self.client = client
        self.clock = clock
        self.wall = wall
        self.etcd_check = etcd_check

    def run_once(self):
        self.checks = []
        report = dict(apiservers=[], nodes=[], control_plane_pods=[])
        self.report = report
        reader = None
        api_versions = {}

        if self.params["check_endpoint"]:
            entry = self.probe_apiserver(self.client, "endpoint")
            if entry["ready"]:
                reader = self.client
        explicit = [server_for(a, self.params["apiserver_port"]) for a in self.params.get("apiservers") or []]
        direct = {}
        for server in explicit:
            direct[server] = self.client.with_server(server)
            entry = self.probe_apiserver(direct[server], "apiserver")
            if entry.get("version"):
                api_versions[server] = entry["version"]
            if reader is None and entry["ready"]:
                reader = direct[server]
        # Last resort: the endpoint may serve reads even when its /readyz fails.
        reader = reader or self.client

        nodes = None
        try:
            nodes = reader.list_all("/api/v1/nodes", retries=1)
        except K8sApiError as exc:
            self.add("cluster-state", reader.server, False, "cannot read the cluster state (list nodes) through %s: %s"
                     % (reader.server, exc))

        if nodes is not None:
            if not explicit:
                for node in sorted((n for n in nodes if is_control_plane(n)), key=lambda n: n["metadata"]["name"]):
                    address = node_address(node)
                    if not address:
                        self.add("apiserver", node["metadata"]["name"], False,
                                 "control-plane node %s has no InternalIP to reach its apiserver"
                                 % node["metadata"]["name"])
                        continue
                    server = server_for(address, self.params["apiserver_port"])
                    entry = self.probe_apiserver(self.client.with_server(server), "apiserver",
                                                 node=node["metadata"]["name"])
                    if entry.get("version"):
                        api_versions[node["metadata"]["name"]] = entry["version"]
            leases = self.read_leases(reader)
            self.check_nodes(nodes, leases)
            components = {}
            if self.params["control_plane_components"]:
                components = self.check_static_pods(reader, nodes, api_versions)
            self.check_versions(nodes, api_versions, components)
        if self.params.get("etcd") and self.etcd_check is not None:
            self.check_etcd()
        report["checks"] = self.checks
        report["failures"] = [c["message"] for c in self.checks if not c["ok"]]
        report["healthy"] = not report["failures"]
        return report

    def add(self, check, target, ok, message):
        self.checks.append(dict(check=check, target=target, ok=bool(ok), message=message))

    # -- apiservers -------------------------------------------------------------------------
    def probe_apiserver(self, client, role, node=None):
        server = client.server
        label = "cluster endpoint %s" % server if role == "endpoint" else "apiserver %s%s" % (
            server, " (node %s)" % node if node else "")
        entry = dict(endpoint=server, role=role, node=node, ready=False, live=False, version=None, failed_checks=[])
        self.report["apiservers"].append(entry)
        try:
            code, text = client.probe("/readyz?verbose")
        except K8sApiError as exc:
            entry["error"] = exc.message
            reason = exc.message
            if reason.startswith("cannot reach %s: " % server):
                reason = reason[len("cannot reach %s: " % server):]
            self.add(role, server, False, "%s unreachable: %s" % (label, reason))
            return entry
        entry["ready"] = code == 200
        entry["failed_checks"] = failed_readyz_checks(text)
        try:
            live_code, live_text = client.probe("/livez?verbose")
            entry["live"] = live_code == 200
        except K8sApiError as exc:
            live_code, live_text = None, exc.message
        try:
            entry["version"] = (client.get("/version", retries=0) or {}).get("gitVersion")
        except K8sApiError:
            entry["version"] = None
        if entry["ready"] and entry["live"]:
            self.add(role, server, True, "%s ready and live (%s)" % (label, entry["version"] or "version unknown"))
            return entry
        problems = []
        if not entry["ready"]:
            failed = entry["failed_checks"]
            detail = ": failed " + ", ".join(failed) if failed else ": " + " ".join(text.split())[:200]
            problems.append("not ready (readyz HTTP %s%s)" % (code, detail))
        if not entry["live"]:
            failed = failed_readyz_checks(live_text)
            problems.append("not live (livez %s%s)" % ("HTTP %s" % live_code if live_code else "unreachable",
                                                       ": failed " + ", ".join(failed) if failed else
                                                       ": " + " ".join((live_text or "").split())[:200]))
        self.add(role, server, False, "%s %s" % (label, "; ".join(problems)))
        return entry

    # -- nodes ------------------------------------------------------------------------------
    def read_leases(self, reader):
        try:
            leases = reader.list_all("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", retries=1)
        except K8sApiError:
            return {}
        return {lease["metadata"]["name"]: parse_time((lease.get("spec") or {}).get("renewTime")) for lease in leases}

    def check_nodes(self, nodes, leases):
        now = self.wall()
        max_age = self.params["max_heartbeat_age"]
        names = set()
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            names.add(name)
            status = node.get("status") or {}
            conditions = {c.get("type"): c for c in status.get("conditions") or []}
            ready_cond = conditions.get("Ready") or {}
            heartbeat_candidates = [t for t in (leases.get(name), parse_time(ready_cond.get("lastHeartbeatTime")))
                                    if t is not None]
            heartbeat = max(heartbeat_candidates) if heartbeat_candidates else None
            heartbeat_text = ("last heartbeat %s, %d s ago" % (_iso(heartbeat), _ago(now, heartbeat))
                              if heartbeat is not None else "no heartbeat recorded")
            ready = ready_cond.get("status") == "True"
            schedulable = not (node.get("spec") or {}).get("unschedulable")
            entry = dict(name=name, control_plane=is_control_plane(node), ready=ready, schedulable=schedulable,
                         kubelet_version=(status.get("nodeInfo") or {}).get("kubeletVersion"),
                         heartbeat_age=_ago(now, heartbeat), address=node_address(node))
            if ready:
                self.add("node", name, True, "node %s Ready (%s)" % (name, heartbeat_text))
                if heartbeat is not None and now - heartbeat > max_age:
                    self.add("heartbeat", name, False,
                             "node %s is Ready but its %s, more than max_heartbeat_age=%d s; the kubelet may have "
                             "stopped" % (name, heartbeat_text, max_age))
            else:
                since = parse_time(ready_cond.get("lastTransitionTime"))
                entry["not_ready_for"] = _ago(now, since)
                detail = ": ".join(x for x in (ready_cond.get("reason"), ready_cond.get("message")) if x)
                state = "NotReady" if ready_cond else "has no Ready condition"
                duration = " for %d s" % _ago(now, since) if since is not None and ready_cond else ""
                detail = ": " + detail if detail else ""
                self.add("node", name, False, "node %s %s%s (%s)%s" % (name, state, duration, heartbeat_text, detail))
            for cond_type in PRESSURE_CONDITIONS:
                cond = conditions.get(cond_type)
                if cond and cond.get("status") == "True":
                    self.add("condition", name, False, "node %s has %s: %s" % (
                        name, cond_type, cond.get("message") or cond.get("reason") or "True"))
            if not schedulable:
                self.add("schedulable", name, not self.params["require_schedulable"],
                         "node %s is cordoned (unschedulable)" % name)
            self.report["nodes"].append(entry)
        for expected in self.params.get("expect_nodes") or []:
            if expected in names:
                self.add("expect-nodes", expected, True, "node %s is registered" % expected)
            else:
                self.add("expect-nodes", expected, False, "node %s is expected (expect_nodes) but not registered in "
                                                          "the cluster (registered: %s)"
                         % (expected, ", ".join(sorted(names)) or "none"))

    # -- control-plane static pods ----------------------------------------------------------
    def check_static_pods(self, reader, nodes, api_versions):
        """Check the static pods; returns {pod: (component, version)} for the skew check."""
        wanted = list(self.params["control_plane_components"])
        try:
            pods = reader.list_all("/api/v1/namespaces/kube-system/pods", query={"labelSelector": "tier=control-plane"},
                                   retries=1)
        except K8sApiError as exc:
            self.add("static-pod", "kube-system", False, "cannot list the control-plane pods in kube-system: %s" % exc)
            return {}
        by_node = {}
        components = {}
        for pod in pods:
            meta = pod.get("metadata") or {}
            component = (meta.get("labels") or {}).get("component")
            node = (pod.get("spec") or {}).get("nodeName")
            if component not in wanted:
                continue
            by_node.setdefault(node, {})[component] = pod
            status = pod.get("status") or {}
            containers = status.get("containerStatuses") or []
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image")
            version = image_tag_version(image)
            restarts = sum(c.get("restartCount") or 0 for c in containers)
            ready = status.get("phase") == "Running" and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            self.report["control_plane_pods"].append(dict(name=meta.get("name"), node=node, component=component,
                                                          ready=ready, version=version_text(version) if version
                                                          else None, restarts=restarts))
            if version and component in ("kube-controller-manager", "kube-scheduler"):
                components[meta.get("name")] = (component, version_text(version))
            if version and component == "kube-apiserver" and node not in api_versions:
                api_versions.setdefault("pod %s" % meta.get("name"), version_text(version))
            if ready:
                self.add("static-pod", meta.get("name"), True, "%s on %s Ready (%d restarts)"
                         % (meta.get("name"), node, restarts))
                continue
            why = []
            for cstatus in containers:
                state = cstatus.get("state") or {}
                if "waiting" in state:
                    why.append("container %s waiting (%s)" % (cstatus.get("name"),
                                                              state["waiting"].get("reason") or "unknown"))
                elif "terminated" in state:
                    why.append("container %s terminated (%s, exit code %s)" % (
                        cstatus.get("name"), state["terminated"].get("reason") or "unknown",
                        state["terminated"].get("exitCode")))
                elif not cstatus.get("ready"):
                    why.append("container %s not ready" % cstatus.get("name"))
            self.add("static-pod", meta.get("name"), False, "%s on %s not Ready: phase %s%s, %d restarts" % (
                meta.get("name"), node, status.get("phase") or "unknown", ", " + ", ".join(why) if why else "",
                restarts))
        for node in sorted((n for n in nodes if is_control_plane(n)), key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            for component in wanted:
                if component not in by_node.get(name, {}):
                    self.add("static-pod", "%s-%s" % (component, name), False,
                             "control-plane node %s has no %s static pod in kube-system" % (name, component))
        return components

    # -- versions ---------------------------------------------------------------------------
    def check_versions(self, nodes, api_versions, components):
        kubelets = {}
        for node in nodes:
            version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
            if version:
                kubelets[node["metadata"]["name"]] = version
        if not api_versions:
            try:
                version = (self.client.get("/version", retries=0) or {}).get("gitVersion")
            except K8sApiError:
                version = None
            if version:
                api_versions["cluster endpoint"] = version
        problems = check_skew(api_versions, components, kubelets, self.params["max_version_skew"])
        for problem in problems:
            self.add("version-skew", "cluster", False, problem)
        if not problems:
            self.add("version-skew", "cluster", True, "versions within the skew policy (kubelets at most %d minor(s) "
                                                      "behind)" % self.params["max_version_skew"])
        expect = self.params.get("expect_version") or {}
        for role, key in (("control plane", "control_plane"), ("workers", "workers")):
            wanted = expect.get(key)
            if not wanted:
                continue
            wanted_v = parse_kube_version(wanted)
            actual = {}
            for node in nodes:
                if is_control_plane(node) == (key == "control_plane"):
                    name = node["metadata"]["name"]
                    actual["kubelet on %s" % name] = kubelets.get(name)
            if key == "control_plane":
                for name, version in api_versions.items():
                    actual["kube-apiserver %s" % name] = version
                for name, (component, version) in components.items():
                    actual["%s %s" % (component, name)] = version
            for what, version in sorted(actual.items()):
                parsed = parse_kube_version(version)
                ok = parsed is not None and parsed == wanted_v
                self.add("expect-version", what, ok, "%s is %s, expected %s (expect_version.%s, %s)" % (
                    what, version_text(parsed) if parsed else version or "unknown", wanted, key, role))

    # -- etcd -------------------------------------------------------------------------------
    def check_etcd(self):
        try:
            report = self.etcd_check(self.params["etcd"])
        except Exception as exc:  # the etcd helper raises its own error type; report it as a failed check
            self.add("etcd", "etcd", False, "etcd health check could not run: %s" % exc)
            return
        self.report["etcd"] = report
        if report.get("healthy"):
            self.add("etcd", "etcd", True, "etcd healthy: %d/%d members" % (
                report.get("healthy_count", 0), report.get("member_count", 0)))
        for problem in report.get("problems") or []:
            self.add("etcd", "etcd", False, "etcd %s" % problem)
        if not report.get("healthy") and not report.get("problems"):
            self.add("etcd", "etcd", False, "etcd is not healthy")

    # -- loop -------------------------------------------------------------------------------
    def run(self):
        params = self.params
        polled = poll(self.run_once, lambda report: report["healthy"], params["wait"],
                      Deadline(params["wait_timeout"], self.clock), params["wait_sleep"], self.sleep)
        report = polled.result
        report.update(changed=False, attempts=polled.attempts, duration=round(polled.waited, 3))
        return report


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class _EtcdParams:
    """Lets the etcd helper (written for modules with top-level etcd options) read the ``etcd`` suboptions."""

    def __init__(self, module, params):
        self.params = params
        self._module = module

    def __getattr__(self, name):
        # run_command, get_bin_path, warn, ... come from the real module.
        return getattr(self._module, name)


def etcd_checker(module):
    def check(params):
        return collect_health(EtcdCtl(_EtcdParams(module, params)), params["endpoints"])

    return check


def main():
    argument_spec = dict(
        apiservers=dict(type="list", elements="str"),
        apiserver_port=dict(type="int", default=6443),
        check_endpoint=dict(type="bool", default=True),
        expect_nodes=dict(type="list", elements="str"),
        expect_version=dict(type="dict", options=dict(control_plane=dict(type="str"), workers=dict(type="str"))),
        max_version_skew=dict(type="int", default=KUBELET_MAX_SKEW),
        max_heartbeat_age=dict(type="int", default=60),
        require_schedulable=dict(type="bool", default=False),
        control_plane_components=dict(type="list", elements="str",
                                      default=["kube-apiserver", "kube-controller-manager", "kube-scheduler"]),
        # The same connection options as etcd_health, from the shared etcd helper.
        etcd=dict(type="dict", options=dict(ETCD_CLIENT_ARGUMENT_SPEC)),
        fail_on_unhealthy=dict(type="bool", default=True),
    )
    argument_spec.update(KUBECONFIG_ARGUMENT_SPEC)
    argument_spec.update(wait_argument_spec(timeout=300, sleep=5,
                                            old_names=dict(wait_timeout="timeout", wait_sleep="poll_interval")))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if not 0 <= params["max_version_skew"] <= KUBELET_MAX_SKEW:
        module.fail_json(msg="max_version_skew must be between 0 and %d (the Kubernetes skew policy), got %d"
                         % (KUBELET_MAX_SKEW, params["max_version_skew"]))
    for key in ("control_plane", "workers"):
        value = (params.get("expect_version") or {}).get(key)
        if value and parse_kube_version(value) is None:
            module.fail_json(msg="expect_version.%s must be a version like 1.34.2, got %r" % (key, value))
    check_wait_options(module)

    client = None
    try:
        client = K8sClient.from_module(module)
        checker = HealthCheck(module, client, etcd_check=etcd_checker(module) if params.get("etcd") else None)
        report = checker.run()
    except Exception as exc:  # every failure ends here, in the one fail_json of the module
        fail_from_error(module, exc, "cluster_health", dict(healthy=False, changed=False), expected=CLIENT_ERRORS)
    finally:
        if client:
            client.close()
    if not report["healthy"] and params["fail_on_unhealthy"]:
        module.fail_json(msg="the cluster is not healthy after %d attempt(s) over %.0f s; %d failing check(s):\n%s"
                         % (report["attempts"], report["duration"], len(report["failures"]),
                            "\n".join(" - %s" % f for f in report["failures"])), **report)
    module.exit_json(**report)


if __name__ == "__main__":
    main()
