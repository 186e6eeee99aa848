# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API resources kubesim serves, their discovery documents and server-side table columns.

Discovery format: https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api
Table format (meta.k8s.io/v1 Table): https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
Column sets follow pkg/printers/internalversion/printers.go.
"""

from __future__ import annotations

import datetime


class Resource:
    def __init__(self, group, version, name, kind, namespaced, short=(), subresources=(), etcd_name=None,
                 fields=(), has_status=True, categories=()):
        self.group = group
        self.version = version
        self.name = name
        self.kind = kind
        self.namespaced = namespaced
        self.short = list(short)
        self.subresources = list(subresources)
        # etcd keeps the legacy names of a few resources (nodes live under /registry/minions).
        self.etcd_name = etcd_name or name
        self.fields = {"metadata.name", *(["metadata.namespace"] if namespaced else []), *fields}
        self.has_status = has_status
        self.categories = list(categories)

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def singular(self):
        return self.kind.lower()


VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"], ["status"], fields=["status.phase"]),
    Resource("", "v1", "nodes", "Node", False, ["no"], ["status"], etcd_name="minions",
             fields=["spec.unschedulable"]),
    Resource("", "v1", "pods", "Pod", True, ["po"], ["status", "eviction"],
             fields=["spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
                     "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"],
             categories=["all"]),
    Resource("", "v1", "secrets", "Secret", True, [], [], fields=["type"], has_status=False),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"], [], has_status=False),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["status"], categories=["all"]),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["status", "scale"], categories=["all"]),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], ["status"]),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, [], [], has_status=False),
    # Only what the kubelet's TLS bootstrap needs: kubeadm join posts a CSR with the bootstrap token and
    # the controllers approve and sign kubelet client certificates (kube-controller-manager's job).
    Resource("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False,
             ["csr"], ["status"]),
]

BY_PATH = {(r.group, r.version, r.name): r for r in RESOURCES}
BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def groups():
    """Ordered {group: [versions]} for non-core groups."""
    result = {}
    for resource in RESOURCES:
        if resource.group:
            versions = result.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
    return result


def resource_list(group, version):
    """APIResourceList for one group version, or None."""
    items = []
    for resource in RESOURCES:
        if resource.group != group or resource.version != version:
            continue
        entry = {"name": resource.name, "singularName": resource.singular, "namespaced": resource.namespaced,
                 "kind": resource.kind, "verbs": VERBS + (["deletecollection"] if resource.name != "namespaces"
                                                          else [])}
        if resource.short:
            entry["shortNames"] = resource.short
        if resource.categories:
            entry["categories"] = resource.categories
        items.append(entry)
        for sub in resource.subresources:
            if sub == "scale":
                items.append({"name": "%s/scale" % resource.name, "singularName": "", "namespaced": True,
                              "group": "autoscaling", "version": "v1", "kind": "Scale",
                              "verbs": ["get", "patch", "update"]})
            elif sub == "eviction":
                items.append({"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy",
                              "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            else:
                items.append({"name": "%s/%s" % (resource.name, sub), "singularName": "",
                              "namespaced": resource.namespaced, "kind": resource.kind,
                              "verbs": ["get", "patch", "update"]})
    if not items:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "%s/%s" % (group, version) if group else version, "resources": items}


def api_group(name):
    versions = groups().get(name)
    if not versions:
        return None
    entries = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in api_group(name).items() if k not in ("kind", "apiVersion")}
                       for name in groups()]}


# --- server-side printing ------------------------------------------------------------------------
def parse_time(value):
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration (short form)."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return "%ds" % seconds
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return "%dm%ds" % (minutes, rest) if rest else "%dm" % minutes
    if minutes < 180:
        return "%dm" % minutes
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return "%dh%dm" % (hours, rest) if rest else "%dh" % hours
    if hours < 48:
        return "%dh" % hours
    days = hours // 24
    if days < 8:
        rest = hours % 24
        return "%dd%dh" % (days, rest) if rest else "%dd" % days
    if days < 365 * 2:
        return "%dd" % days
    return "%dy" % (days // 365)


def age(obj, now):
    created = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


def _col(name, kind="string", fmt="", priority=0, description=""):
    return {"name": name, "type": kind, "format": fmt, "description": description or name, "priority": priority}


def _node_row(node, now):
    conditions = {c.get("type"): c.get("status") for c in node.get("status", {}).get("conditions", []) or []}
    status = {"True": "Ready", "False": "NotReady"}.get(conditions.get("Ready"), "Unknown")
    if node.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = node.get("metadata", {}).get("labels", {}) or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k)
    roles += ["control-plane"] if labels.get("kubernetes.io/role") == "master" else []
    info = node.get("status", {}).get("nodeInfo", {}) or {}
    addresses = {a.get("type"): a.get("address") for a in node.get("status", {}).get("addresses", []) or []}
    return [node["metadata"]["name"], status, ",".join(roles) or "<none>", age(node, now),
            info.get("kubeletVersion", ""), addresses.get("InternalIP", "<none>"),
            addresses.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


def _pod_row(pod, now):
    status = pod.get("status", {}) or {}
    containers = pod.get("spec", {}).get("containers", []) or []
    statuses = status.get("containerStatuses", []) or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [pod["metadata"]["name"], "%d/%d" % (ready, len(containers)), reason, restarts, age(pod, now),
            status.get("podIP") or "<none>", pod.get("spec", {}).get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", "<none>"]


TABLES = {
    "nodes": ([_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
               _col("Internal-IP", priority=1), _col("External-IP", priority=1), _col("OS-Image", priority=1),
               _col("Kernel-Version", priority=1), _col("Container-Runtime", priority=1)], _node_row),
    "pods": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "string"), _col("Age"),
              _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
              _col("Readiness Gates", priority=1)], _pod_row),
    "namespaces": ([_col("Name", fmt="name"), _col("Status"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], o.get("status", {}).get("phase", "Active"), age(o, now)]),
    "secrets": ([_col("Name", fmt="name"), _col("Type"), _col("Data", "integer"), _col("Age")],
                lambda o, now: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}),
                                age(o, now)]),
    "configmaps": ([_col("Name", fmt="name"), _col("Data", "integer"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                   age(o, now)]),
    "poddisruptionbudgets": (
        [_col("Name", fmt="name"), _col("Min Available"), _col("Max Unavailable"),
         _col("Allowed Disruptions", "integer"), _col("Age")],
        lambda o, now: [o["metadata"]["name"], str(o.get("spec", {}).get("minAvailable", "N/A")),
                        str(o.get("spec", {}).get("maxUnavailable", "N/A")),
                        o.get("status", {}).get("disruptionsAllowed", 0), age(o, now)]),
    "replicasets": (
        [_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
         _col("Age")],
        lambda o, now: [o["metadata"]["name"], o.get("spec", {}).get("replicas", 1),
                        o.get("status", {}).get("replicas", 0), o.get("status", {}).get("readyReplicas", 0),
                        age(o, now)]),
    "daemonsets": (
        [_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
         _col("Up-to-date", "integer"), _col("Available", "integer"), _col("Age")],
        lambda o, now: [o["metadata"]["name"]] + [o.get("status", {}).get(k, 0) for k in (
            "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
            "numberAvailable")] + [age(o, now)]),
}


def to_table(resource, objects, resource_version, include_object="PartialObjectMetadata", now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    columns, row = TABLES.get(resource.name, ([_col("Name", fmt="name"), _col("Created At", "date")],
                                              lambda o, now: [o["metadata"]["name"],
                                                              o["metadata"].get("creationTimestamp")]))
    rows = []
    for obj in objects:
        if include_object == "Object":
            embedded = obj
        elif include_object == "None":
            embedded = None
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append({"cells": row(obj, now), "object": embedded})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": columns, "rows": rows}


# --- OpenAPI v3 (just enough for kubectl's field-validation support check) -------------------------
# kubectl --validate=strict asks /openapi/v3 whether the PATCH operation of a kind accepts the
# fieldValidation query parameter (k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go); when it
# does, validation happens on the server. The documents carry paths only, no schemas.
def _gv_path(group, version):
    return "apis/%s/%s" % (group, version) if group else "api/%s" % version


def openapi_v3_root():
    paths = {}
    for resource in RESOURCES:
        path = _gv_path(resource.group, resource.version)
        paths[path] = {"serverRelativeURL": "/openapi/v3/%s?hash=kubesim" % path}
    return {"paths": paths}


def openapi_v3_group_version(path):
    parts = path.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    paths = {}
    for resource in RESOURCES:
        if resource.group != group or resource.version != version:
            continue
        prefix = "/" + _gv_path(group, version)
        url = prefix + ("/namespaces/{namespace}/%s/{name}" if resource.namespaced else "/%s/{name}") % resource.name
        gvk = {"group": group, "version": version, "kind": resource.kind}
        params = [{"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                  for name in ("dryRun", "fieldManager", "fieldValidation", "force")]
        operation = {"operationId": "patch%s" % resource.kind, "parameters": params,
                     "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                     "responses": {"200": {"description": "OK"}}}
        get = {"operationId": "read%s" % resource.kind, "x-kubernetes-action": "get",
               "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}}
        paths[url] = {"get": get, "patch": operation}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (kubesim)", "version": "unversioned"},
            "paths": paths, "components": {"schemas": {}}}
