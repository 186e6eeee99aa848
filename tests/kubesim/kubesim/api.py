# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""REST semantics of the resources kubesim serves (k8s.io/apiserver/pkg/registry/generic/registry/store.go
and the per-resource strategies in pkg/registry/*). No HTTP here: see server.py.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import random
import urllib.parse
import uuid

from . import pdb as pdbmath
from . import resources as res
from .patch import PatchError, apply_patch
from .selectors import (
    SelectorError,
    fields_match,
    label_requirements_from_selector,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import ApiError, conflict, not_found

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# utilrand.String alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no confusable digits.
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length=5):
    return "".join(random.choice(_ALPHANUMS) for _dummy in range(length))


def owner(obj):
    """The controller ownerReference of obj, or None."""
    for ref in obj.get("metadata", {}).get("ownerReferences", []) or []:
        if ref.get("controller"):
            return ref
    return None


def is_mirror_pod(pod):
    return "kubernetes.io/config.mirror" in (pod.get("metadata", {}).get("annotations") or {})


class Api:
    def __init__(self, store, version_info):
        self.store = store
        self.version_info = version_info

    # --- helpers ---------------------------------------------------------------------------------
    def ensure_system_namespaces(self):
        ns = res.BY_PATH[("", "v1", "namespaces")]
        for name in SYSTEM_NAMESPACES:
            obj, _dummy = self.store.get_raw(ns, None, name)
            if obj is None:
                try:
                    self.create(ns, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
                except ApiError as exc:
                    if exc.reason != "AlreadyExists":
                        raise

    def controller_scale(self, pods):
        """Sum of the scale of the controllers owning ``pods`` (disruption controller getExpectedScale)."""
        seen, total = set(), 0
        for pod in pods:
            ref = owner(pod)
            if not ref or (ref.get("kind"), ref.get("name")) in seen:
                continue
            seen.add((ref.get("kind"), ref.get("name")))
            namespace = pod["metadata"]["namespace"]
            if ref.get("kind") == "ReplicaSet":
                obj, _dummy = self.store.get_raw(res.BY_KIND[("apps", "ReplicaSet")], namespace, ref["name"])
                total += int((obj or {}).get("spec", {}).get("replicas", 1))
            elif ref.get("kind") == "DaemonSet":
                obj, _dummy = self.store.get_raw(res.BY_KIND[("apps", "DaemonSet")], namespace, ref["name"])
                total += int((obj or {}).get("status", {}).get("desiredNumberScheduled", 0))
            else:
                raise ApiError(500, "InternalError", "kubesim cannot compute the scale of %s owners"
                               % ref.get("kind"))
        return total

    def decorate(self, resource, obj):
        """Computed fields filled on read (kubesim has no separate disruption controller)."""
        if resource.name == "poddisruptionbudgets":
            _dummy, pods = self.store.list(res.BY_KIND[("", "Pod")], obj["metadata"]["namespace"])
            obj["status"] = pdbmath.compute_status(obj, pods, self.controller_scale)
        return obj

    def check_namespace(self, resource, namespace):
        if not resource.namespaced:
            return
        ns_res = res.BY_KIND[("", "Namespace")]
        ns, _dummy = self.store.get_raw(ns_res, None, namespace)
        if ns is None:
            raise not_found(ns_res, namespace)
        if ns.get("status", {}).get("phase") == "Terminating":
            raise ApiError(403, "Forbidden", 'unable to create new content in namespace %s because it is being '
                           'terminated' % namespace)

    # --- verbs -----------------------------------------------------------------------------------
    def get(self, resource, namespace, name):
        return self.decorate(resource, self.store.get(resource, namespace, name))

    def list(self, resource, namespace, query):
        try:
            labels = parse_label_selector(query.get("labelSelector", ""))
            fields = parse_field_selector(query.get("fieldSelector", ""))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        revision, objects = self.store.list(resource, namespace)
        items = []
        for obj in objects:
            try:
                if not fields_match(fields, obj, resource.fields):
                    continue
            except SelectorError as exc:
                raise ApiError(400, "BadRequest", str(exc)) from exc
            if labels_match(labels, obj["metadata"].get("labels")):
                items.append(self.decorate(resource, obj))
        return revision, items

    def prepare_create(self, resource, namespace, obj):
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if obj.get("kind") not in (None, resource.kind):
            raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match the expected API "
                           "version (%s)" % (obj.get("apiVersion"), resource.api_version))
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise ApiError(422, "Invalid", "%s \"\" is invalid: metadata.name: Required value: name or "
                               "generateName is required" % resource.kind,
                               {"kind": resource.kind, "causes": [
                                   {"reason": "FieldValueRequired", "message": "Required value",
                                    "field": "metadata.name"}]})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        if resource.name not in ("secrets", "configmaps", "namespaces", "pods", "nodes", "leases"):
            meta["generation"] = 1
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        # Strategies' PrepareForCreate: status is server-owned, except nodes (the kubelet registers with status).
        if resource.name == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif resource.name == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("serviceAccountName", "default")
        elif resource.name == "secrets":
            obj.setdefault("type", "Opaque")
            for key, value in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        elif resource.has_status and resource.name != "nodes":
            obj["status"] = {}
        if resource.name == "nodes":
            obj.setdefault("spec", {})
            obj.setdefault("status", {})
        if resource.name == "poddisruptionbudgets":
            obj.setdefault("spec", {})
        return obj

    def create(self, resource, namespace, obj, dry_run=False, user=None):
        obj = self.prepare_create(resource, namespace, obj)
        if resource.name == "certificatesigningrequests":
            # The registry strategy records who asked; the approver trusts only this, never the body.
            spec = obj.setdefault("spec", {})
            spec["username"] = (user or {}).get("username", "")
            spec["groups"] = list((user or {}).get("groups", []))
        self.check_namespace(resource, namespace)
        if dry_run:
            return obj
        return self.decorate(resource, self.store.create(resource, obj))

    def _merge_update(self, resource, old, new, subresource):
        """Strategies' PrepareForUpdate: main resource keeps status, status subresource keeps the rest."""
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        for immutable in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
            if immutable in old["metadata"]:
                meta[immutable] = old["metadata"][immutable]
            else:
                meta.pop(immutable, None)
        if subresource == "status":
            kept = copy.deepcopy(old)
            kept["status"] = new.get("status", {})
            return kept
        if resource.has_status and resource.name not in ("namespaces",):
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if resource.name == "secrets":
            for key, value in (new.pop("stringData", None) or {}).items():
                new.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        if "generation" in old["metadata"] and old.get("spec") != new.get("spec"):
            meta["generation"] = old["metadata"]["generation"] + 1
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        return new

    def update(self, resource, namespace, name, obj, subresource=None, dry_run=False):
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if obj.get("metadata", {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                           % (obj["metadata"]["name"], name))
        state = self.store.read(resource, namespace, name)
        if state is None:
            raise not_found(resource, name)
        wanted = obj.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != str(state.revision):
            raise conflict(resource, name)
        new = self._merge_update(resource, state.obj, obj, subresource)
        if dry_run:
            return new
        return self.decorate(resource, self.store.update(resource, new, state.revision, orig=state))

    def patch(self, resource, namespace, name, content_type, patch, subresource=None, dry_run=False):
        for _dummy in range(5):  # the apiserver retries a patch on conflict (GuaranteedUpdate)
            state = self.store.read(resource, namespace, name)
            if state is None:
                raise not_found(resource, name)
            old, revision = state.obj, state.revision
            try:
                patched = apply_patch(content_type, old, patch)
            except PatchError as exc:
                code = 415 if "does not support patch type" in str(exc) else 422
                raise ApiError(code, "UnsupportedMediaType" if code == 415 else "Invalid", str(exc)) from exc
            wanted = (patched.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != str(revision):
                raise conflict(resource, name)
            new = self._merge_update(resource, old, patched, subresource)
            if dry_run:
                return new
            try:
                return self.decorate(resource, self.store.update(resource, new, revision, orig=state))
            except ApiError as exc:
                if exc.reason != "Conflict" or wanted:
                    raise
        raise conflict(resource, name)

    def delete(self, resource, namespace, name, options=None, dry_run=False):
        options = options or {}
        obj, revision = self.store.get_raw(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise ApiError(409, "Conflict", "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                           % (pre["uid"], obj["metadata"].get("uid")))
        if pre.get("resourceVersion") and pre["resourceVersion"] != str(revision):
            raise conflict(resource, name)
        if dry_run:
            return obj
        if resource.name == "pods":
            return self._delete_pod(resource, obj, revision, options)
        if resource.name == "namespaces":
            return self._delete_namespace(resource, obj, revision)
        self.store.delete(resource, obj, revision)
        group = {"group": resource.group} if resource.group else {}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": dict(name=name, kind=resource.name, uid=obj["metadata"].get("uid"), **group)}

    def _delete_pod(self, resource, pod, revision, options):
        """Graceful deletion (pkg/registry/core/pod/strategy.go CheckGracefulDelete): grace period from the
        options, else the pod's terminationGracePeriodSeconds; 0 or an unscheduled pod deletes at once."""
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        grace = int(grace)
        unscheduled = not pod.get("spec", {}).get("nodeName")
        terminal = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if grace <= 0 or unscheduled or terminal:
            self.store.delete(resource, pod, revision)
            return pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return pod
        deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
        meta["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["deletionGracePeriodSeconds"] = grace
        return self.store.update(resource, pod, revision)

    def _delete_namespace(self, resource, ns, revision):
        """Namespace deletion: phase Terminating, then (the namespace controller) its content goes, then it."""
        if ns["metadata"]["name"] in SYSTEM_NAMESPACES:
            raise ApiError(403, "Forbidden", 'namespaces "%s" is forbidden: this namespace may not be deleted'
                           % ns["metadata"]["name"])
        ns["metadata"]["deletionTimestamp"] = now_rfc3339()
        ns["status"] = {"phase": "Terminating"}
        return self.store.update(resource, ns, revision)

    @staticmethod
    def to_scale(obj):
        """autoscaling/v1 Scale view of a ReplicaSet (pkg/registry/apps/replicaset/storage ScaleREST)."""
        selector = obj.get("spec", {}).get("selector") or {}
        text = ",".join("%s=%s" % item for item in sorted((selector.get("matchLabels") or {}).items()))
        meta = {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in obj["metadata"]}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
                "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": text}}

    def scale(self, resource, namespace, name, method, content_type=None, body=None):
        for _dummy in range(5):
            obj, revision = self.store.get_raw(resource, namespace, name)
            if obj is None:
                raise not_found(resource, name)
            current = self.to_scale(obj)
            if method == "GET":
                return current
            try:
                wanted = apply_patch(content_type, current, body) if method == "PATCH" else body
            except PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from exc
            replicas = (wanted or {}).get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", "Scale.autoscaling \"%s\" is invalid: spec.replicas: Invalid value: "
                               "must be greater than or equal to 0" % name)
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            if rv and rv != str(revision):
                raise conflict(resource, name)
            if obj["spec"].get("replicas") != replicas:  # the strategy bumps generation on a spec change only
                obj["spec"]["replicas"] = replicas
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            try:
                return self.to_scale(self.store.update(resource, obj, revision))
            except ApiError as exc:
                if exc.reason != "Conflict" or rv:
                    raise
        raise conflict(resource, name)

    def evict(self, namespace, name, body, dry_run=False):
        """POST pods/eviction (pkg/registry/core/pod/storage/eviction.go).

        A dry run (``?dryRun=All`` or ``deleteOptions.dryRun: [All]``) takes the same PDB decision, so it
        answers 429 where a real eviction would, but writes nothing: neither the pod nor the PDB status."""
        pod_res = res.BY_KIND[("", "Pod")]
        if not isinstance(body, dict) or body.get("kind") != "Eviction":
            raise ApiError(400, "BadRequest", "not an Eviction")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        for _dummy in range(5):
            pod, revision = self.store.get_raw(pod_res, namespace, name)
            if pod is None:
                raise not_found(pod_res, name)
            pdb_res = res.BY_KIND[("policy", "PodDisruptionBudget")]
            _pdb_revision, pdbs = self.store.list(pdb_res, namespace)
            _dummy2, pods = self.store.list(pod_res, namespace)
            refusal = pdbmath.eviction_decision(pod, pdbs, pods, self.controller_scale)
            if refusal:
                code, reason, message, causes = refusal
                raise ApiError(code, reason, message, {"causes": causes} if causes else None)
            options = body.get("deleteOptions") or {}
            if dry_run or "All" in (options.get("dryRun") or []):
                return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
            if self._evict_atomically(pod, revision, pdbs, options):
                return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                       {"causes": [{"reason": "DisruptionBudget", "message": "too many concurrent evictions"}]})

    def _evict_atomically(self, pod, revision, pdbs, options):
        """One etcd transaction: the pod is unchanged AND every matching PDB is unchanged (the real apiserver
        writes the PDB status with a resourceVersion precondition, so does kubesim), then the
        pod is deleted or marked for graceful deletion and the PDB rewritten."""
        pod_res = res.BY_KIND[("", "Pod")]
        pdb_res = res.BY_KIND[("policy", "PodDisruptionBudget")]
        etcd = self.store.etcd
        compare = [etcd.cmp_mod_revision(self.store.key(pod_res, pod["metadata"]["namespace"],
                                                        pod["metadata"]["name"]), revision)]
        success = []
        labels = pod["metadata"].get("labels")
        for budget in pdbs:
            if budget.get("spec", {}).get("selector") is None or not labels_match(
                    label_requirements_from_selector(budget["spec"]["selector"]), labels):
                continue
            key = self.store.key(pdb_res, budget["metadata"]["namespace"], budget["metadata"]["name"])
            compare.append(etcd.cmp_mod_revision(key, int(budget["metadata"]["resourceVersion"])))
            # What checkAndDecrement writes: one disruption fewer, the pod in disruptedPods.
            stamp = copy.deepcopy(budget)
            status = stamp.setdefault("status", {})
            status["disruptionsAllowed"] = max(0, int(status.get("disruptionsAllowed", 1)) - 1)
            status.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = now_rfc3339()
            success.append(etcd.op_put(key, self.store.encode(pdb_res, key, stamp)))
        pod_key = self.store.key(pod_res, pod["metadata"]["namespace"], pod["metadata"]["name"])
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        if int(grace) <= 0 or not pod.get("spec", {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            success.append(etcd.op_delete(pod_key))
        else:
            deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(grace))
            pod = copy.deepcopy(pod)
            pod["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            # The kubelet marks the pod not ready while it terminates.
            for condition in pod.get("status", {}).get("conditions", []) or []:
                if condition.get("type") in ("Ready", "ContainersReady"):
                    condition["status"] = "False"
            success.append(etcd.op_put(pod_key, self.store.encode(pod_res, pod_key, pod)))
        ok, _dummy, _dummy2 = etcd.txn(compare, success)
        return ok


def parse_query(raw):
    return {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


def load_body(raw):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        try:
            from .transformers import parse_yaml

            return parse_yaml(raw.decode())
        except Exception as exc:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format") from exc
