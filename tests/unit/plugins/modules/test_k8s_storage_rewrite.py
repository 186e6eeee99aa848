# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for k8s_storage_rewrite against an in-memory object store behind K8sClient._transport."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _k8s_client as k8s_client
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sApiError, K8sClient
from ansible_collections.baremetal.kubernetes.plugins.modules import k8s_storage_rewrite
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.k8s_fake import KUBECONFIG, ok, status
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import deprecated_aliases, run_module

CORE = {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
    {"name": "secrets", "namespaced": True, "kind": "Secret", "verbs": ["create", "delete", "get", "list", "update"]},
    {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["get", "list", "update", "patch"]},
    {"name": "pods/eviction", "namespaced": True, "kind": "Eviction", "verbs": ["create"]},
    {"name": "bindings", "namespaced": True, "kind": "Binding", "verbs": ["create"]},
    {"name": "nodes", "namespaced": False, "kind": "Node", "verbs": ["get", "list", "update"]},
]}
APPS = {"kind": "APIGroup", "name": "apps", "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}]}
APPS_V1 = {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
    {"name": "deployments", "namespaced": True, "kind": "Deployment", "verbs": ["get", "list", "update"]}]}


class FakeStore:
    """Objects keyed by (resource, namespace, name); real-apiserver semantics for list pages and PUT.

    ``stale`` holds the names stored with an old key: a PUT of an unchanged object writes (new
    resourceVersion) only for those, as the real etcd3 store does. Scripts: ``conflicts[name]`` 409s before a
    PUT is accepted (each also bumps the stored resourceVersion, as a concurrent writer would);
    ``delete_before_put`` names deleted just before their PUT arrives; ``fail[name]`` = (code, reason, message)
    answered to every PUT; ``expire_continue`` answers the first continued list with 410 (+ a fresh token).
    """

    def __init__(self):
        self.objects = {}
        self.revision = 100
        self.stale = set()
        self.conflicts = {}
        self.delete_before_put = set()
        self.fail = {}
        self.expire_continue = False
        self.requests = []
        self.puts = []

    def add(self, resource, namespace, name, stale=True, **fields):
        self.revision += 1
        obj = {"metadata": {"name": name, "resourceVersion": str(self.revision), "uid": "uid-%s" % name,
                            "managedFields": [{"manager": "kubectl", "operation": "Update"}]}}
        if namespace:
            obj["metadata"]["namespace"] = namespace
        obj.update(fields)
        self.objects[(resource, namespace, name)] = obj
        if stale:
            self.stale.add(name)
        return obj

    def transport_method(self):
        store = self

        def _transport(client, method, url, data, headers, timeout):
            return store.route(method, url, json.loads(data) if data else None)

        return _transport

    def calls(self, method):
        return [r for r in self.requests if r[0] == method]

    def route(self, method, url, body):
        parts = urlsplit(url)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, path, query))
        if path == "/api/v1":
            return ok(CORE)
        if path == "/apis/apps":
            return ok(APPS)
        if path == "/apis/apps/v1":
            return ok(APPS_V1)
        if path.startswith("/apis/") and path.count("/") == 2:
            return status(404, "NotFound", "the server could not find the requested resource")
        match = re.fullmatch(r"/api(?:s/apps)?/v1(?:/namespaces/([^/]+))?/([a-z]+)(?:/([^/]+))?", path)
        if not match:
            return status(404, "NotFound", "no route %s" % path)
        namespace, resource, name = match.groups()
        if name is None:
            return self.list(resource, namespace, query)
        key = (resource, namespace or None, name)
        if method == "GET":
            obj = self.objects.get(key)
            return ok(obj) if obj else status(404, "NotFound", '%s "%s" not found' % (resource, name))
        assert method == "PUT", method
        self.puts.append((resource, namespace, name, body))
        if name in self.delete_before_put:
            self.objects.pop(key, None)
        obj = self.objects.get(key)
        if obj is None:
            return status(404, "NotFound", '%s "%s" not found' % (resource, name))
        if name in self.fail:
            return status(*self.fail[name])
        if self.conflicts.get(name):
            self.conflicts[name] -= 1
            self.revision += 1
            obj["metadata"]["resourceVersion"] = str(self.revision)
            return status(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                          "please apply your changes to the latest version and try again" % (resource, name))
        if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
            return status(409, "Conflict", "stale resourceVersion")
        if name in self.stale:
            self.stale.discard(name)
            self.revision += 1
            obj["metadata"]["resourceVersion"] = str(self.revision)
        return ok(obj)

    def list(self, resource, namespace, query):
        keys = sorted(k for k in self.objects if k[0] == resource and (namespace is None or k[1] == namespace))
        start = 0
        if query.get("continue"):
            if self.expire_continue:
                self.expire_continue = False
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
                        "message": "The provided continue parameter is too old", "metadata": {
                            "continue": query["continue"]}}
                return 410, {"Content-Type": "application/json"}, json.dumps(body).encode()
            start = int(query["continue"])
        limit = int(query.get("limit") or 0) or len(keys)
        page = keys[start:start + limit]
        meta = {"resourceVersion": str(self.revision)}
        if start + limit < len(keys):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(keys) - start - limit
        # Like the real apiserver, list items carry no apiVersion/kind.
        return ok({"kind": "List", "apiVersion": "v1", "metadata": meta,
                   "items": [json.loads(json.dumps(self.objects[k])) for k in page]})


@pytest.fixture
def store(monkeypatch, tmp_path):
    fake = FakeStore()
    monkeypatch.setattr(K8sClient, "_transport", fake.transport_method())
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(KUBECONFIG)
    fake.kubeconfig = str(kubeconfig)
    return fake


def run(store, check_mode=False, **args):
    return run_module(k8s_storage_rewrite.main, dict(args, kubeconfig=store.kubeconfig), check_mode=check_mode)


def test_rewrites_every_secret_in_pages_keeping_the_resource_version(store):
    for index in range(7):
        store.add("secrets", "ns%d" % (index % 3), "s%d" % index, data={"k": "dg=="})
    outcome, result = run(store, batch_size=3)
    assert outcome == "exit", result.get("msg")
    assert result["changed"] is True
    assert result["rewritten"] == {"secrets": 7} and result["unchanged_revision"] == {"secrets": 0}
    assert result["gone"] == 0 and result["conflicts_retried"] == 0 and result["failed_objects"] == []
    # Three pages: limit=3 and the continue tokens were followed.
    lists = [q for m, p, q in store.calls("GET") if p == "/api/v1/secrets"]
    assert [q.get("continue") for q in lists] == [None, "3", "6"] and all(q["limit"] == "3" for q in lists)
    assert len(result["progress"]) == 3
    assert result["progress"][0].startswith("secrets batch 1: objects 1-3: rewritten 3, gone 0")
    assert result["progress"][2].startswith("secrets batch 3: objects 7-7: rewritten 1")
    # Each PUT is the object as read: resourceVersion kept, managedFields dropped, apiVersion/kind filled in.
    assert len(store.puts) == 7
    _resource, namespace, name, body = store.puts[0]
    assert (namespace, name) == ("ns0", "s0")
    assert body["apiVersion"] == "v1" and body["kind"] == "Secret" and body["data"] == {"k": "dg=="}
    assert body["metadata"]["resourceVersion"] and "managedFields" not in body["metadata"]
    assert body["metadata"]["uid"] == "uid-s0"


def test_objects_already_on_the_current_key_keep_their_revision_and_report_unchanged(store):
    store.add("secrets", "default", "old", stale=True)
    store.add("secrets", "default", "current", stale=False)
    outcome, result = run(store)
    assert outcome == "exit" and result["changed"] is True
    assert result["rewritten"] == {"secrets": 2} and result["unchanged_revision"] == {"secrets": 1}
    again = run(store)[1]
    assert again["changed"] is False and again["unchanged_revision"] == {"secrets": 2}


def test_conflicts_are_retried_with_a_fresh_read(store):
    store.add("secrets", "default", "busy")
    store.add("secrets", "default", "calm")
    store.conflicts["busy"] = 2
    outcome, result = run(store, conflict_retries=5)
    assert outcome == "exit", result.get("msg")
    assert result["conflicts_retried"] == 2 and result["rewritten"] == {"secrets": 2}
    gets = [p for m, p, q in store.calls("GET") if p.endswith("/secrets/busy")]
    assert len(gets) == 2
    assert "conflicts retried 2" in result["progress"][0]


def test_conflicts_beyond_the_bound_fail_naming_the_object(store):
    store.add("secrets", "default", "hot")
    store.add("secrets", "default", "fine")
    store.conflicts["hot"] = 100
    outcome, result = run(store, conflict_retries=3)
    assert outcome == "fail"
    assert result["conflicts_retried"] == 3
    reason = result["failed_objects"][0]["reason"]
    assert result["failed_objects"] == [dict(resource="secrets", namespace="default", name="hot", reason=reason)]
    assert "still conflicting after 3 retries" in result["failed_objects"][0]["reason"]
    assert "1 object(s) could not be re-written: secrets default/hot" in result["msg"]
    # The other object was still re-written, and that is reported.
    assert result["rewritten"] == {"secrets": 1} and result["changed"] is True


def test_objects_deleted_meanwhile_are_gone_not_failed(store):
    store.add("secrets", "default", "a")
    store.add("secrets", "default", "b")
    store.delete_before_put.add("a")
    outcome, result = run(store)
    assert outcome == "exit", result.get("msg")
    assert result["gone"] == 1 and result["rewritten"] == {"secrets": 1} and result["failed_objects"] == []
    assert "gone 1" in result["progress"][0]


def test_deleted_during_conflict_retry_is_gone(store):
    store.add("secrets", "default", "a")
    store.conflicts["a"] = 1
    original = store.route

    def route(method, url, body):
        answer = original(method, url, body)
        if method == "PUT":
            store.objects.pop(("secrets", "default", "a"), None)
        return answer

    store.route = route
    outcome, result = run(store)
    assert outcome == "exit" and result["gone"] == 1 and result["conflicts_retried"] == 1


def test_every_failure_is_listed_and_the_rest_is_done(store):
    for name in ("a", "b", "c", "d"):
        store.add("secrets", "default", name)
    store.fail["b"] = (422, "Invalid", 'Secret "b" is invalid: data: Too long')
    store.fail["d"] = (403, "Forbidden", "secrets \"d\" is forbidden")
    outcome, result = run(store, batch_size=2)
    assert outcome == "fail"
    assert [(f["name"], f["reason"].split(":")[0]) for f in result["failed_objects"]] == [
        ("b", "HTTP 422 Invalid"), ("d", "HTTP 403 Forbidden")]
    assert "2 object(s) could not be re-written" in result["msg"]
    assert "secrets default/b: HTTP 422 Invalid" in result["msg"] and "secrets default/d" in result["msg"]
    assert result["rewritten"] == {"secrets": 2}
    assert [line.split(":")[0] for line in result["progress"]] == ["secrets batch 1", "secrets batch 2"]
    assert "failed 1" in result["progress"][0]


def test_check_mode_lists_only(store):
    for index in range(5):
        store.add("secrets", "default", "s%d" % index)
    store.add("configmaps", "kube-system", "cm")
    outcome, result = run(store, check_mode=True, resources=["secrets", "configmaps"], batch_size=2)
    assert outcome == "exit"
    assert result["changed"] is True and result["rewritten"] == {"secrets": 5, "configmaps": 1}
    assert not store.puts
    assert result["progress"][0].startswith("secrets batch 1: objects 1-2: would rewrite 2")
    store.objects.clear()
    outcome, result = run(store, check_mode=True)
    assert outcome == "exit" and result["changed"] is False and result["rewritten"] == {"secrets": 0}


def test_namespaces_and_grouped_resources(store):
    store.add("secrets", "a", "s1")
    store.add("secrets", "b", "s2")
    store.add("secrets", "c", "s3")
    store.add("deployments", "a", "web", spec={"replicas": 2})
    outcome, result = run(store, resources=["secrets", "deployments.apps"], namespaces=["a", "b"])
    assert outcome == "exit", result.get("msg")
    assert result["rewritten"] == {"secrets": 2, "deployments.apps": 1}
    assert sorted((p[1], p[2]) for p in store.puts) == [("a", "s1"), ("a", "web"), ("b", "s2")]
    web = next(p for p in store.puts if p[2] == "web")[3]
    assert web["apiVersion"] == "apps/v1" and web["kind"] == "Deployment" and web["spec"] == {"replicas": 2}
    assert [line.split(":")[0] for line in result["progress"]] == [
        "secrets in a batch 1", "secrets in b batch 2", "deployments.apps in a batch 1"]


def test_cluster_scoped_resources_are_rewritten_whole(store):
    store.add("nodes", None, "w1")
    outcome, result = run(store, resources=["nodes"], namespaces=["ignored"])
    assert outcome == "exit" and result["rewritten"] == {"nodes": 1}
    assert store.puts[0][:3] == ("nodes", None, "w1")


def test_expired_continue_token_goes_on_with_the_returned_token(store):
    for index in range(4):
        store.add("secrets", "default", "s%d" % index)
    store.expire_continue = True
    outcome, result = run(store, batch_size=2)
    assert outcome == "exit", result.get("msg")
    assert result["rewritten"] == {"secrets": 4}


@pytest.mark.parametrize("resources, needle", [
    (["widgets"], "no resource 'widgets' in /api/v1"),
    (["deployments.nope.example.com"], "does not serve the API group 'nope.example.com'"),
    (["pods/eviction"], "is not a resource name"),
    (["bindings"], "does not allow get, list, update"),
    (["secrets."], "is not a resource name"),
])
def test_bad_resources_fail_before_anything_is_written(store, resources, needle):
    store.add("secrets", "default", "s")
    outcome, result = run(store, resources=["secrets", *resources])
    assert outcome == "fail" and needle in result["msg"], result["msg"]
    assert not store.puts


@pytest.mark.parametrize("args, needle", [
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(wait_timeout=0), "wait_timeout must be at least 1"),
    (dict(conflict_retries=-1), "conflict_retries must be 0 or more"),
    (dict(namespaces=[]), "namespaces is an empty list"),
])
def test_bad_options(store, args, needle):
    outcome, result = run(store, **args)
    assert outcome == "fail" and needle in result["msg"]


@pytest.mark.parametrize("timeout_option", ["wait_timeout", "timeout"])
def test_timeout_reports_progress(store, monkeypatch, timeout_option):
    for index in range(3):
        store.add("secrets", "default", "s%d" % index)
    ticks = iter([0.0] + [float(i) for i in range(0, 10000, 20)])
    original = k8s_storage_rewrite.Rewriter.__init__

    def init(self, module, client, clock=None):
        original(self, module, client, clock=lambda: next(ticks))

    monkeypatch.setattr(k8s_storage_rewrite.Rewriter, "__init__", init)
    outcome, result = run(store, **{timeout_option: 50})
    assert outcome == "fail" and result["msg"].startswith("timeout: 50 s passed")
    assert "Re-running is safe" in result["msg"]
    # timeout is the option's former name: still accepted, with a deprecation warning.
    expected = {"timeout": ("1.0.0", "baremetal.kubernetes")} if timeout_option == "timeout" else {}
    assert deprecated_aliases(result) == expected


def test_an_unexpected_error_reports_what_was_rewritten_before_it(store, monkeypatch):
    for index in range(3):
        store.add("secrets", "default", "s%d" % index)
    original = k8s_storage_rewrite.Rewriter.rewrite_one

    def rewrite_one(self, rtype, obj):
        if obj["metadata"]["name"] == "s1":
            raise ValueError("a bug")
        return original(self, rtype, obj)

    monkeypatch.setattr(k8s_storage_rewrite.Rewriter, "rewrite_one", rewrite_one)
    outcome, result = run(store)
    assert outcome == "fail"
    assert result["msg"] == ("k8s_storage_rewrite failed unexpectedly: ValueError: a bug. So far: rewritten "
                             "secrets 1, gone 0, conflicts retried 0, failed 0")
    assert result["rewritten"] == {"secrets": 1} and "ValueError: a bug" in result["exception"]


def test_unreachable_apiserver_stops_with_the_summary(store, monkeypatch):
    monkeypatch.setattr(k8s_client, "backoff_delay", lambda *args, **kwargs: 0)
    store.add("secrets", "default", "s0")
    store.add("secrets", "default", "s1")
    original = store.route

    def route(method, url, body):
        if method == "PUT" and url.endswith("/s1"):
            raise K8sApiError("cannot reach https://vip.example:8443: [Errno 111] Connection refused")
        return original(method, url, body)

    store.route = route
    outcome, result = run(store, request_timeout=1)
    assert outcome == "fail"
    assert "Connection refused" in result["msg"] and "So far: rewritten secrets 1" in result["msg"]
