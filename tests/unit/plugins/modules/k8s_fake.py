# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory apiserver behind ``K8sClient._transport`` for module unit tests.

Only what k8s_drain, cluster_health and kubelet_csr_approve call is implemented; anything else answers
404 and is recorded, so a test sees unexpected requests. Thread-safe: k8s_drain evicts from several threads.
"""

from __future__ import annotations

import json
import re
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sApiError, K8sClient

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://vip.example:8443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: admin
  name: admin@kubernetes
current-context: admin@kubernetes
users:
- name: admin
  user:
    token: test-token
"""


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def status(code, reason, message, causes=None):
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}
    if causes:
        body["details"] = {"causes": causes}
    return code, {"Content-Type": "application/json"}, json.dumps(body).encode()


def ok(obj, code=200):
    return code, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def make_pod(name, node="w1", namespace="default", owner="ReplicaSet", labels=None, volumes=None, phase="Running",
             uid=None, annotations=None, deletion=None):
    meta = {"name": name, "namespace": namespace, "uid": uid or "uid-%s" % name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "%s-owner" % name.split("-")[0], "controller": True}]
    if annotations:
        meta["annotations"] = annotations
    if deletion is not None:
        meta["deletionTimestamp"] = iso(deletion)
    return {"metadata": meta, "spec": {"nodeName": node, "volumes": volumes or []}, "status": {"phase": phase}}


def make_pdb(name, match_labels, disruptions_allowed=0, current=1, desired=2, expected=2, namespace="default"):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": match_labels}, "maxUnavailable": 1},
            "status": {"disruptionsAllowed": disruptions_allowed, "currentHealthy": current,
                       "desiredHealthy": desired, "expectedPods": expected}}


class FakeCluster:
    """State plus scripted behaviour. ``eviction_script[pod name]`` is a list of HTTP codes answered in
    order (the last one repeats); 429 carries a DisruptionBudget cause, "namespace-terminating" is the 403
    the NamespaceLifecycle admission plugin answers in a namespace being deleted (the pod gets its
    deletionTimestamp, and goes like an evicted pod, after ``namespace_marks[pod name]`` such answers; never
    when absent). An accepted eviction removes the pod after ``linger[pod name]`` further pod listings
    (default 0)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.nodes = {}
        self.pods = []
        self.pdbs = []
        self.leases = {}
        self.eviction_script = {}
        # ``eviction_after[pod name]``: pods that must have been evicted before this one's eviction is accepted;
        # until then it answers 429 (its script waits). Shows, without timing, that a refused pod holds up
        # no other.
        self.eviction_after = {}
        self.linger = {}
        self.namespace_marks = {}
        self.replace_with_new_uid = set()
        self.requests = []
        self.events = []
        self.health = {}  # server -> {"readyz": (code, text) | "down", "livez": ..., "version": str}
        self.default_version = "v1.34.2"
        self.evicting = {}
        # CertificateSigningRequests by name. ``csr_arrivals[n]``: requests that appear at the n-th list (1-based),
        # as a kubelet's request appears while a module waits. ``csr_conflicts[name]``: how many approval writes
        # answer 409 (each after another writer bumped the resourceVersion); ``csr_meanwhile[name]``: the
        # condition that other writer sets before the first 409.
        self.csrs = {}
        self.csr_lists = 0
        self.csr_arrivals = {}
        self.csr_conflicts = {}
        self.csr_meanwhile = {}
        self._rv = 100

    # -- helpers for tests ------------------------------------------------------------------
    def add_node(self, name, unschedulable=False, control_plane=False, ready=True, kubelet="v1.34.2",
                 address=None, heartbeat_age=5, not_ready_since=None, conditions=None):
        now = time.time()
        labels = {"kubernetes.io/hostname": name}
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        ready_cond = {"type": "Ready", "status": "True" if ready else "Unknown",
                      "lastHeartbeatTime": iso(now - heartbeat_age),
                      "lastTransitionTime": iso(not_ready_since if not_ready_since else now - 3600)}
        if not ready:
            ready_cond.update(reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
        address = address or "10.0.0.%d" % (len(self.nodes) + 11)
        node = {"metadata": {"name": name, "labels": labels},
                "spec": {"unschedulable": True} if unschedulable else {},
                "status": {"conditions": [ready_cond, *(conditions or [])],
                           "addresses": [{"type": "InternalIP", "address": address}],
                           "nodeInfo": {"kubeletVersion": kubelet}}}
        self.nodes[name] = node
        self.leases[name] = now - heartbeat_age
        return node

    def calls(self, method=None, contains=""):
        return [r for r in self.requests if (method is None or r[0] == method) and contains in r[1]]

    # -- transport ----------------------------------------------------------------------------
    def transport_method(self):
        """A function to install as ``K8sClient._transport`` (called with the client as first argument)."""
        fake = self

        def _transport(client, method, url, data, headers, timeout):
            return fake.transport(client, method, url, data, headers, timeout)

        return _transport

    def transport(self, _client, method, url, data, headers, timeout):
        with self.lock:
            self.requests.append((method, url, json.loads(data) if data else None))
            return self._route(method, url, json.loads(data) if data else None)

    def _route(self, method, url, body):
        parts = urlsplit(url)
        server = "%s://%s" % (parts.scheme, parts.netloc)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path in ("/readyz", "/livez", "/version"):
            return self._health(server, path)
        if server in self.health and self.health[server].get("readyz") == "down":
            raise K8sApiError("cannot reach %s: [Errno 111] Connection refused" % server)
        match = re.fullmatch(r"/api/v1/nodes/([^/]+)", path)
        if match:
            node = self.nodes.get(match.group(1))
            if node is None:
                return status(404, "NotFound", 'nodes "%s" not found' % match.group(1))
            if method == "PATCH":
                value = body["spec"]["unschedulable"]
                if value:
                    node["spec"]["unschedulable"] = True
                else:
                    node["spec"].pop("unschedulable", None)
                # JSON merge patch of annotations: null removes a key.
                for key, val in ((body.get("metadata") or {}).get("annotations") or {}).items():
                    notes = node.setdefault("metadata", {}).setdefault("annotations", {})
                    if val is None:
                        notes.pop(key, None)
                    else:
                        notes[key] = val
                self.events.append(("patch", value, time.monotonic()))
            return ok(node)
        if path == "/api/v1/nodes":
            return ok({"items": list(self.nodes.values()), "metadata": {}})
        if path == "/api/v1/pods" or path == "/api/v1/namespaces/kube-system/pods":
            return ok({"items": self._list_pods(path, query), "metadata": {}})
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)(/eviction)?", path)
        if match and method in ("POST", "DELETE"):
            return self._evict(match.group(1), match.group(2), query, body, method)
        if match and method == "GET" and not match.group(3):
            pod = self._pod(match.group(1), match.group(2))
            return ok(pod) if pod else status(404, "NotFound", 'pods "%s" not found' % match.group(2))
        match = re.fullmatch(r"/apis/policy/v1/namespaces/([^/]+)/poddisruptionbudgets", path)
        if match:
            return ok({"items": [p for p in self.pdbs if p["metadata"]["namespace"] == match.group(1)],
                       "metadata": {}})
        if path.startswith("/apis/certificates.k8s.io/v1/certificatesigningrequests"):
            return self._csr(method, path, body)
        if path == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases":
            return ok({"items": [{"metadata": {"name": n}, "spec": {"renewTime": iso(t) if t else None}}
                                 for n, t in self.leases.items()], "metadata": {}})
        return status(404, "NotFound", "fake apiserver: no route for %s %s" % (method, path))

    def add_csr(self, csr):
        self._rv += 1
        csr.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self.csrs[csr["metadata"]["name"]] = csr
        return csr

    def _csr(self, method, path, body):
        rest = path[len("/apis/certificates.k8s.io/v1/certificatesigningrequests"):].strip("/").split("/")
        if rest == [""] and method == "GET":
            self.csr_lists += 1
            for csr in self.csr_arrivals.pop(self.csr_lists, []):
                self.add_csr(csr)
            return ok({"kind": "CertificateSigningRequestList", "items": list(self.csrs.values()), "metadata": {}})
        csr = self.csrs.get(rest[0])
        if csr is None:
            return status(404, "NotFound", 'certificatesigningrequests.certificates.k8s.io "%s" not found' % rest[0])
        if len(rest) == 1 and method == "GET":
            return ok(csr)
        if rest[1:] == ["approval"] and method == "PUT":
            if self.csr_conflicts.get(rest[0]):
                self.csr_conflicts[rest[0]] -= 1
                if rest[0] in self.csr_meanwhile:
                    csr.setdefault("status", {}).setdefault("conditions", []).append(
                        {"type": self.csr_meanwhile.pop(rest[0]), "status": "True", "reason": "SomeoneElse"})
                self.add_csr(csr)
                return status(409, "Conflict", "Operation cannot be fulfilled on certificatesigningrequests: the "
                              "object has been modified; please apply your changes to the latest version and try again")
            if body["metadata"].get("resourceVersion") != csr["metadata"]["resourceVersion"]:
                return status(409, "Conflict", "stale resourceVersion")
            conditions = (body.get("status") or {}).get("conditions") or []
            kinds = {c["type"] for c in conditions}
            if {"Approved", "Denied"} <= kinds or not kinds <= {"Approved", "Denied", "Failed"}:
                return status(422, "Invalid", "conditions: invalid %s" % sorted(kinds))
            csr["status"] = dict(csr.get("status") or {}, conditions=conditions)
            return ok(self.add_csr(csr))
        return status(405, "MethodNotAllowed", "fake apiserver: %s %s" % (method, path))

    def _health(self, server, path):
        spec = self.health.get(server, {})
        if spec.get("readyz") == "down":
            raise K8sApiError("cannot reach %s: [Errno 111] Connection refused" % server)
        if path == "/version":
            return ok({"gitVersion": spec.get("version", self.default_version)})
        code, text = spec.get(path.strip("/"), (200, "[+]ping ok\n[+]etcd ok\nreadyz check passed"))
        return code, {"Content-Type": "text/plain"}, text.encode()

    def _list_pods(self, path, query):
        field = query.get("fieldSelector", "")
        node = field.split("=", 1)[1] if field.startswith("spec.nodeName=") else None
        selector = query.get("labelSelector")
        out = []
        for pod in list(self.pods):
            if path.startswith("/api/v1/namespaces/kube-system") and pod["metadata"]["namespace"] != "kube-system":
                continue
            if node and pod["spec"].get("nodeName") != node:
                continue
            if selector:
                key, value = selector.split("=", 1)
                if pod["metadata"].get("labels", {}).get(key) != value:
                    continue
            out.append(pod)
        if node:
            # Accepted evictions take `linger` listings to disappear.
            for name in list(self.evicting):
                if self.evicting[name] <= 0:
                    self._remove(name)
                else:
                    self.evicting[name] -= 1
        return out

    def _remove(self, name):
        self.evicting.pop(name, None)
        for pod in list(self.pods):
            if pod["metadata"]["name"] == name:
                self.pods.remove(pod)
                if name in self.replace_with_new_uid:
                    new = json.loads(json.dumps(pod))
                    new["metadata"]["uid"] = pod["metadata"]["uid"] + "-new"
                    self.pods.append(new)

    def _pod(self, namespace, name):
        return next((p for p in self.pods if p["metadata"]["name"] == name
                     and p["metadata"]["namespace"] == namespace), None)

    def _evict(self, namespace, name, query, body, method):
        pod = self._pod(namespace, name)
        if pod is None:
            return status(404, "NotFound", 'pods "%s" not found' % name)
        dry = query.get("dryRun") == "All"
        script = self.eviction_script.get(name, [201])
        waiting_for = {other for other in self.eviction_after.get(name, ())
                       if not any(e[0] == "evict" and e[1] == other and e[2] == 201 and not e[3] for e in self.events)}
        if waiting_for:
            code = 429
        else:
            code = script[0]
            if len(script) > 1 and not dry:
                script.pop(0)
        self.events.append(("evict", name, code, dry, time.monotonic()))
        if code == "namespace-terminating":
            if not dry and name in self.namespace_marks:
                self.namespace_marks[name] -= 1
                if self.namespace_marks[name] <= 0 and name not in self.evicting:
                    pod["metadata"]["deletionTimestamp"] = iso(time.time())
                    self.evicting[name] = self.linger.get(name, 0)
            message = ('pods "%s" is forbidden: unable to create new content in namespace %s because it is being '
                       'terminated' % (name, namespace))
            return status(403, "Forbidden", message, causes=[
                {"reason": "NamespaceTerminating", "message": message, "field": "metadata.namespace"}])
        if code == 429:
            return status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                          causes=[{"reason": "DisruptionBudget",
                                   "message": "The disruption budget db needs 2 healthy pods and has 1 currently"}])
        if code >= 400:
            return status(code, "InternalError", "scripted failure %d" % code)
        if not dry and name not in self.evicting:
            self.evicting[name] = self.linger.get(name, 0)
        return ok({"kind": "Status", "status": "Success"}, code=201 if method == "POST" else 200)


def install_fake_apiserver(monkeypatch, tmp_path, fake):
    """Send every ``K8sClient`` request of the test to ``fake`` and give it a kubeconfig for the modules.

    The kubeconfig (token user, server https://vip.example:8443) is written to ``tmp_path`` and its path
    stored as ``fake.kubeconfig``. Returns ``fake``.
    """
    monkeypatch.setattr(K8sClient, "_transport", fake.transport_method())
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(KUBECONFIG)
    fake.kubeconfig = str(kubeconfig)
    return fake
