#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_storage_rewrite
short_description: Re-write every object of some resources through the apiserver, e.g. after an encryption key change
version_added: 0.1.0
description:
  - Lists every object of each resource in I(resources) (paginated with C(limit)/C(continue), I(batch_size) objects
    per page) and sends each back unchanged with a C(PUT), C(metadata.resourceVersion) included, so that the
    apiserver stores it again with the B(first) provider (the current write key) of its C(EncryptionConfiguration).
    This is the upstream way to re-encrypt data after a key rotation or after turning encryption on,
    C(kubectl get secrets -A -o json | kubectl replace -f -), done in batches with progress output.
  - "A C(409 Conflict) (the object changed between the read and the write) re-reads the object and retries, at most
    I(conflict_retries) times per object. A C(404) (deleted meanwhile) is counted in C(gone): nothing is left to
    re-encrypt. Other errors of one object are collected in C(failed_objects) and the module fails at the end,
    naming every failed object; the other objects are still re-written."
  - "When a C(continue) token has expired (C(410 Gone) after an etcd compaction), the listing goes on with the
    token the apiserver returns in that error (an inconsistent continuation: objects created meanwhile are already
    written with the current key)."
  - Needs no Kubernetes Python client on the target; it talks HTTPS to the apiserver with the credentials of a
    kubeconfig (by default C(/etc/kubernetes/admin.conf)).
  - "B(changed.) The apiserver skips the etcd write of an update that leaves the object's bytes unchanged B(unless)
    the stored value was read with a key that is not the current write key (C(GuaranteedUpdate) in
    C(k8s.io/apiserver/pkg/storage/etcd3/store.go)). A re-written object therefore gets a new
    C(resourceVersion) exactly when it was stored with an old key (or in plaintext under a new provider).
    C(changed) is true when at least one object came back with a new C(resourceVersion); C(unchanged_revision)
    counts the objects the apiserver found already stored with the current key. Running it twice in a row on
    a real apiserver reports C(changed=false) the second time."
  - In check mode the objects are only listed; C(rewritten) holds the numbers that would be re-written and
    C(changed) is true when there is at least one (without reading etcd it cannot be known which objects are
    already stored with the current key).
  - Objects are re-written one at a time, in list order; a run over a few thousand Secrets takes seconds to
    minutes. The module is safe to interrupt and re-run.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  resources:
    description:
      - The resources to re-write, as C(resource) for the core API group (C(secrets), C(configmaps)) or
        C(resource.group) (C(deployments.apps), C(ingresses.networking.k8s.io)), the same names as in the
        C(resources) lists of an C(EncryptionConfiguration).
      - Each is looked up in the apiserver's discovery documents first (preferred version of the group); an
        unknown resource, or one that cannot be listed and updated, fails before anything is written.
      - Cluster-scoped resources are re-written as a whole; I(namespaces) does not restrict them.
    type: list
    elements: str
    default: [secrets]
  namespaces:
    description:
      - Only these namespaces. All namespaces when omitted (one cluster-wide list per resource).
    type: list
    elements: str
  batch_size:
    description:
      - Objects per page of the list (C(limit)) and per progress line.
    type: int
    default: 100
  conflict_retries:
    description:
      - How many times an object is re-read and written again after a C(409 Conflict) before it is reported
        in C(failed_objects).
    type: int
    default: 5
  wait_timeout:
    description:
      - Seconds for the whole run. When it expires the module fails, reporting what was done so far; a re-run
        starts over and is safe. The module always runs to the end, so there is no I(wait) option, and it does
        not poll, so there is no I(wait_sleep).
      - The alias C(timeout) is the option's former name; it is deprecated and will be removed in release 1.0.0.
    type: int
    default: 1800
    aliases: [timeout]
extends_documentation_fragment:
  - baremetal.kubernetes.kubeconfig
attributes:
  check_mode:
    support: full
    description: Lists the objects and reports how many would be re-written; nothing is written.
  diff_mode:
    support: none
    description: The objects are written back unchanged; there is nothing to diff.
seealso:
  - module: baremetal.kubernetes.apiserver_encryption_status
  - name: Encrypting confidential data at rest
    description: Upstream's key rotation procedure, whose last step this module performs.
    link: https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/
"""

EXAMPLES = r"""
- name: Re-write every Secret with the current write key
  baremetal.kubernetes.k8s_storage_rewrite:
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true
  register: rewrite

- name: Re-write Secrets and ConfigMaps of two namespaces, small batches
  baremetal.kubernetes.k8s_storage_rewrite:
    resources: [secrets, configmaps]
    namespaces: [default, payments]
    batch_size: 50
    wait_timeout: 600

- name: How many objects would be re-written?
  baremetal.kubernetes.k8s_storage_rewrite:
    resources: [secrets, deployments.apps]
  check_mode: true
  register: would
"""

RETURN = r"""
rewritten:
  description:
    - Per resource (as given in I(resources)), how many objects the apiserver accepted the C(PUT) for (stored
      again with the current write key, or found already stored with it). In check mode, how many would be.
  returned: always
  type: dict
  sample: {secrets: 812, configmaps: 40}
unchanged_revision:
  description:
    - Per resource, how many of the C(rewritten) objects kept their C(resourceVersion) because the apiserver
      found them already stored with the current write key and skipped the etcd write.
  returned: always
  type: dict
  sample: {secrets: 0, configmaps: 40}
gone:
  description: Objects deleted between the list and their re-write (C(404)); not an error.
  returned: always
  type: int
  sample: 1
conflicts_retried:
  description: How many C(409 Conflict) answers were retried (re-read and written again).
  returned: always
  type: int
  sample: 3
failed_objects:
  description:
    - Objects that could not be re-written, each with the reason (the task fails when this is not empty).
    - Named C(failed_objects) because a top-level C(failed) key is Ansible's own task status.
  returned: always
  type: list
  elements: dict
  contains:
    resource:
      description: The resource as given in I(resources).
      type: str
    namespace:
      description: Namespace (empty for cluster-scoped resources).
      type: str
    name:
      description: Object name.
      type: str
    reason:
      description: The last error.
      type: str
  sample: [{resource: secrets, namespace: default, name: db, reason: "HTTP 422 Invalid: ..."}]
progress:
  description: One line per batch (also written to the target's syslog through C(module.log)).
  returned: always
  type: list
  elements: str
  sample: ["secrets batch 1: objects 1-100: rewritten 100, gone 0, conflicts retried 0, failed 0 (0.9 s)"]
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 4.2
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import ModuleError, fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    CLIENT_ERRORS,
    KUBECONFIG_ARGUMENT_SPEC,
    K8sApiError,
    K8sClient,
    path_quote,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    deadline_argument_spec,
)

# Shown in the failure message; the full list is in `failed`.
MAX_NAMED_FAILURES = 20


class RewriteError(ModuleError):
    """A re-write that cannot go on; its message says what was done so far."""


class ResourceType:
    """A resource resolved through discovery: where to list it and what kind to PUT."""

    def __init__(self, spec, name, group, version, kind, namespaced):
        self.spec = spec
        self.name = name
        self.group = group
        self.version = version
        self.kind = kind
        self.namespaced = namespaced

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def base(self):
        return "/apis/%s/%s" % (self.group, self.version) if self.group else "/api/%s" % self.version

    def collection(self, namespace=None):
        if self.namespaced and namespace:
            return "%s/namespaces/%s/%s" % (self.base, path_quote(namespace), self.name)
        return "%s/%s" % (self.base, self.name)

    def item(self, namespace, name):
        return "%s/%s" % (self.collection(namespace if self.namespaced else None), path_quote(name))


def split_resource(spec):
    """'secrets' -> ('secrets', ''); 'deployments.apps' -> ('deployments', 'apps'). Resource names have no dots."""
    spec = str(spec).strip()
    name, _dot, group = spec.partition(".")
    if not name or (_dot and not group) or "/" in spec or " " in spec:
        raise RewriteError("resources: %r is not a resource name; use 'resource' for the core group (secrets) or "
                           "'resource.group' (deployments.apps)" % spec)
    return name.lower(), group.lower()


class Rewriter:
    def __init__(self, module, client, clock=time.monotonic):
        self.module = module
        self.client = client
        self.params = module.params
        self.clock = clock
        self.deadline = Deadline(self.params["wait_timeout"], clock)
        self.result = dict(changed=False, rewritten={}, unchanged_revision={}, gone=0, conflicts_retried=0,
                           failed_objects=[], progress=[])

    # -- discovery ----------------------------------------------------------------------------
    def resolve(self, spec):
        name, group = split_resource(spec)
        if group:
            try:
                info = self.client.get("/apis/%s" % group, deadline=self.deadline.at) or {}
            except K8sApiError as exc:
                if exc.code == 404:
                    raise RewriteError("resources: %s: the apiserver does not serve the API group %r"
                                       % (spec, group)) from None
                raise
            version = ((info.get("preferredVersion") or {}).get("version")
                       or ((info.get("versions") or [{}])[0]).get("version"))
            if not version:
                raise RewriteError("resources: %s: the API group %r has no version" % (spec, group))
            listing = self.client.get("/apis/%s/%s" % (group, version), deadline=self.deadline.at) or {}
        else:
            version = "v1"
            listing = self.client.get("/api/v1", deadline=self.deadline.at) or {}
        for entry in listing.get("resources") or []:
            if entry.get("name") == name:
                verbs = set(entry.get("verbs") or [])
                missing = sorted({"list", "get", "update"} - verbs)
                if missing:
                    raise RewriteError("resources: %s cannot be re-written: the apiserver does not allow %s on it"
                                       % (spec, ", ".join(missing)))
                return ResourceType(spec, name, group, version, entry.get("kind"), bool(entry.get("namespaced")))
        raise RewriteError("resources: %s: no resource %r in %s (check the spelling; the form is 'resource' or "
                           "'resource.group', plural and lowercase)" % (spec, name, "/apis/%s/%s" % (group, version)
                                                                        if group else "/api/v1"))

    # -- the run ------------------------------------------------------------------------------
    def check_deadline(self, what):
        if self.deadline.expired():
            raise RewriteError("timeout: %d s passed while %s. %s. Re-running is safe: objects already re-written "
                               "are only written again if they changed key." % (self.params["wait_timeout"], what,
                                                                                self.summary()))

    def summary(self):
        res = self.result
        return "So far: rewritten %s, gone %d, conflicts retried %d, failed %d" % (
            ", ".join("%s %d" % item for item in res["rewritten"].items()) or "nothing", res["gone"],
            res["conflicts_retried"], len(res["failed_objects"]))

    def pages(self, rtype, namespace):
        """Yield lists of up to batch_size objects, following continue tokens (and a 410's fresh token)."""
        query = {"limit": self.params["batch_size"]}
        path = rtype.collection(namespace)
        while True:
            self.check_deadline("listing %s" % rtype.spec)
            try:
                page = self.client.get(path, query=query, deadline=self.deadline.at) or {}
            except K8sApiError as exc:
                token = ((exc.status or {}).get("metadata") or {}).get("continue")
                if exc.code == 410 and query.get("continue") and token:
                    self.module.log("k8s_storage_rewrite: continue token of %s expired; going on with the "
                                    "inconsistent continuation the apiserver returned" % rtype.spec)
                    query["continue"] = token
                    continue
                raise
            yield page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def rewrite_one(self, rtype, obj):
        """PUT the object as read; on 409 re-GET and retry. Returns 'written', 'same', 'gone' or ('failed', reason)."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name")
        path = rtype.item(namespace, name)
        attempts = 0
        while True:
            body = dict(obj)
            body["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
            body.setdefault("apiVersion", rtype.api_version)
            body.setdefault("kind", rtype.kind)
            sent_rv = body["metadata"].get("resourceVersion")
            try:
                stored = self.client.request("PUT", path, body=body, deadline=self.deadline.at) or {}
            except K8sApiError as exc:
                if exc.code == 404:
                    return "gone"
                if exc.code == 409 and attempts < self.params["conflict_retries"]:
                    attempts += 1
                    self.result["conflicts_retried"] += 1
                    self.check_deadline("retrying a conflict on %s %s" % (rtype.spec, name))
                    try:
                        obj = self.client.get(path, deadline=self.deadline.at) or {}
                    except K8sApiError as get_exc:
                        if get_exc.code == 404:
                            return "gone"
                        if get_exc.code is None:
                            raise
                        return ("failed", "re-reading after a conflict: %s" % get_exc)
                    continue
                if exc.code is None:
                    raise  # the apiserver is unreachable after the client's retries: stop, do not fail every object
                if exc.code == 409:
                    return ("failed", "still conflicting after %d retries (the object is being modified "
                                      "continuously): %s" % (attempts, exc.message))
                return ("failed", "HTTP %s %s: %s" % (exc.code, exc.reason or "", exc.message))
            new_rv = (stored.get("metadata") or {}).get("resourceVersion")
            return "same" if sent_rv and new_rv == sent_rv else "written"

    def run(self):
        params = self.params
        check = self.module.check_mode
        res = self.result
        types = []
        for spec in params["resources"]:
            rtype = self.resolve(spec)
            if any(t.spec == rtype.spec for t in types):
                continue
            types.append(rtype)
        namespaces = list(dict.fromkeys(n for n in params.get("namespaces") or [] if n)) or [None]
        written = 0
        for rtype in types:
            res["rewritten"].setdefault(rtype.spec, 0)
            res["unchanged_revision"].setdefault(rtype.spec, 0)
            batch = 0
            seen = 0
            for namespace in (namespaces if rtype.namespaced else [None]):
                for items in self.pages(rtype, namespace):
                    if not items:
                        continue
                    batch += 1
                    started = self.clock()
                    before = dict(rewritten=res["rewritten"][rtype.spec], gone=res["gone"],
                                  conflicts=res["conflicts_retried"], failed=len(res["failed_objects"]))
                    for obj in items:
                        if check:
                            res["rewritten"][rtype.spec] += 1
                            continue
                        self.check_deadline("re-writing %s" % rtype.spec)
                        outcome = self.rewrite_one(rtype, obj)
                        if outcome in ("written", "same"):
                            res["rewritten"][rtype.spec] += 1
                            if outcome == "same":
                                res["unchanged_revision"][rtype.spec] += 1
                            else:
                                written += 1
                                res["changed"] = True
                        elif outcome == "gone":
                            res["gone"] += 1
                        else:
                            meta = obj.get("metadata") or {}
                            res["failed_objects"].append(dict(resource=rtype.spec,
                                                              namespace=meta.get("namespace") or "",
                                                              name=meta.get("name"), reason=outcome[1]))
                    line = "%s%s batch %d: objects %d-%d: %s %d, gone %d, conflicts retried %d, failed %d (%.1f s)" % (
                        rtype.spec, " in %s" % namespace if namespace else "", batch, seen + 1, seen + len(items),
                        "would rewrite" if check else "rewritten", res["rewritten"][rtype.spec] - before["rewritten"],
                        res["gone"] - before["gone"], res["conflicts_retried"] - before["conflicts"],
                        len(res["failed_objects"]) - before["failed"], self.clock() - started)
                    seen += len(items)
                    res["progress"].append(line)
                    self.module.log("k8s_storage_rewrite: %s" % line)
        res["changed"] = sum(res["rewritten"].values()) > 0 if check else written > 0
        if res["failed_objects"]:
            failed = res["failed_objects"]
            named = ["%s %s%s: %s" % (f["resource"], "%s/" % f["namespace"] if f["namespace"] else "", f["name"],
                                      f["reason"]) for f in failed[:MAX_NAMED_FAILURES]]
            more = len(failed) - len(named)
            raise RewriteError("%d object(s) could not be re-written: %s%s. %s" % (
                len(failed), "; ".join(named), " (and %d more, see failed_objects)" % more if more > 0 else "",
                self.summary()))
        return self.finish()

    def finish(self):
        self.result["duration"] = round(self.deadline.elapsed(), 3)
        return self.result


def main():
    argument_spec = dict(
        resources=dict(type="list", elements="str", default=["secrets"]),
        namespaces=dict(type="list", elements="str"),
        batch_size=dict(type="int", default=100),
        conflict_retries=dict(type="int", default=5),
    )
    argument_spec.update(KUBECONFIG_ARGUMENT_SPEC)
    argument_spec.update(deadline_argument_spec(timeout=1800, old_name="timeout"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if not params["resources"]:
        module.fail_json(msg="resources must name at least one resource, e.g. [secrets]")
    if params["batch_size"] < 1:
        module.fail_json(msg="batch_size must be at least 1, got %d" % params["batch_size"])
    if params["conflict_retries"] < 0:
        module.fail_json(msg="conflict_retries must be 0 or more, got %d" % params["conflict_retries"])
    check_wait_options(module, min_timeout=1)
    if params.get("namespaces") is not None and not [n for n in params["namespaces"] if n]:
        module.fail_json(msg="namespaces is an empty list; omit it for all namespaces")

    client = None
    rewriter = None
    try:
        client = K8sClient.from_module(module)
        rewriter = Rewriter(module, client)
        result = rewriter.run()
    except Exception as exc:  # every failure ends here, with what was re-written until then
        partial = rewriter.finish() if rewriter else {}
        note = ". %s" % rewriter.summary() if rewriter else ""
        fail_from_error(module, exc, "k8s_storage_rewrite", partial, expected=CLIENT_ERRORS, note=note)
    finally:
        if client:
            client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
