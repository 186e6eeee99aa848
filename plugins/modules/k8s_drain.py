#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_drain
short_description: Cordon, drain or uncordon a Kubernetes node, waiting out PodDisruptionBudgets
version_added: 0.1.0
description:
  - Cordons a node, evicts its pods through the Eviction API (C(policy/v1)) and waits until they are
    gone; or only cordons; or uncordons.
  - Needs no Kubernetes Python client on the target; it talks HTTPS to the apiserver with the
    credentials of a kubeconfig (by default C(/etc/kubernetes/admin.conf), present on control-plane nodes).
  - "Before anything changes, every pod on the node is classified: C(mirror) (the API copy of a static pod;
    always skipped, the kubelet owns it), C(daemonset) (skipped with I(ignore_daemonsets=true), else refused),
    C(unmanaged) (no controller; evicted only with I(force=true)), C(emptydir) (local data that is lost;
    evicted only with I(delete_emptydir_data=true)), C(finished) (Succeeded/Failed; always evicted),
    C(terminating) (already being deleted) and C(normal). When the options do not allow a pod, the module
    fails up front and lists B(every) offending pod with the option that would allow it; the node is not
    cordoned by that failure."
  - Evictions run in parallel (I(max_parallel)). A C(429) answer means a PodDisruptionBudget does not
    allow the disruption now; that pod is retried with exponential backoff (0.5 s doubling to 5 s) until
    I(wait_timeout), while the other evictions and the waiting proceed. When I(wait_timeout) expires the module
    fails and names every blocked pod with the PodDisruptionBudgets selecting it and their status
    (C(disruptionsAllowed), C(currentHealthy), C(desiredHealthy), C(expectedPods)).
  - Failed API requests (5xx, connection errors) are retried with backoff.
  - A pod in a namespace being deleted cannot be evicted (C(403), cause C(NamespaceTerminating)); the
    namespace's deletion removes it. As C(kubectl drain) does, its eviction is retried until the pod is marked
    for deletion, and then it is waited for like an evicted pod; in check mode it counts as evicted.
  - An eviction is complete when the pod is gone from the node (deleted, or replaced by a pod with a
    different UID).
  - B(Cordon contract.) This module never uncordons behind your back and never leaves a node cordoned
    without saying so. Every result, success or failure, has C(cordoned) (the node's state at the end)
    and C(was_cordoned). When a drain fails after the cordon, the failure message says
    C(node <name> is still cordoned) and C(cordoned=true) is returned; playbooks run the drain in a
    C(block) with an C(always) (or C(rescue)) section that uncordons with I(state=uncordon) when that is
    what they want. A refusal up front (pods the options do not allow) leaves the node as it was.
  - In check mode the module reports what it would cordon and evict, and validates every eviction with
    C(dryRun=All), so a PodDisruptionBudget that blocks I(now) is reported in C(blocked_pods) (and as a warning)
    before anything changes. Nothing is written in check mode.
  - C(changed) is true only when the node's schedulability changed or a pod was evicted or deleted;
    draining a node that is already cordoned and empty reports C(changed=false).
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  name:
    description: The node name, as in C(kubectl get nodes).
    type: str
    required: true
  state:
    description:
      - C(drain) cordons and evicts; C(cordon) only marks the node unschedulable; C(uncordon) marks it
        schedulable again.
    type: str
    choices: [cordon, drain, uncordon]
    default: drain
  wait_timeout:
    description:
      - Seconds for the whole operation (listing, evictions, PodDisruptionBudget retries and waiting for
        the pods to be gone). A drain always waits for its pods to be gone, so there is no I(wait) option, and
        it paces its own polling (growing backoff), so there is no I(wait_sleep).
      - The alias C(timeout) is the option's former name; it is deprecated and will be removed in release 1.0.0.
    type: int
    default: 300
    aliases: [timeout]
  grace_period:
    description:
      - Termination grace period in seconds given to each pod; the pod's own
        C(terminationGracePeriodSeconds) when omitted. C(0) means immediate deletion.
    type: int
  ignore_daemonsets:
    description:
      - Skip DaemonSet-managed pods (the DaemonSet controller ignores C(unschedulable) and would recreate them
        at once). With C(false) a node running DaemonSet pods is refused, like C(kubectl drain).
    type: bool
    default: false
  delete_emptydir_data:
    description: Evict pods with C(emptyDir) volumes; their local data is lost.
    type: bool
    default: false
  force:
    description:
      - Evict pods that no controller manages (bare pods). Nothing recreates them; they are gone for good.
    type: bool
    default: false
  pod_selector:
    description:
      - Label selector (C(app=web,tier!=db)); only pods on the node that match it are considered.
    type: str
  disable_eviction:
    description:
      - Last resort. Delete pods directly instead of evicting them, which B(bypasses PodDisruptionBudgets).
    type: bool
    default: false
  skip_wait_for_delete_timeout:
    description:
      - When greater than 0, pods whose deletion started more than this many seconds ago are not waited
        for (they are reported in C(skipped_pods)), e.g. pods stuck terminating on a dead kubelet.
      - C(0) waits for every pod.
    type: int
    default: 0
  max_parallel:
    description: How many evictions are in flight at once.
    type: int
    default: 32
  cordon_owner:
    description:
      - Who cordons, recorded in the node annotation C(baremetal.kubernetes/cordoned-by), so that an uncordon
        with the same owner (possibly in a later, resumed run) can tell its own cordon from an operator's.
      - With I(state=drain) or I(state=cordon), a schedulable node is cordoned and annotated in one request. A
        node that is already cordoned keeps its annotation (or lack of one); C(cordon_owned) says whose cordon it is.
      - With I(state=uncordon), only a cordon carrying this owner is lifted (and the annotation removed). A node
        cordoned by anyone else B(stays cordoned); the task reports C(changed=false) and C(cordon_owned=false).
      - Omitted, the module neither reads nor writes the annotation, and I(state=uncordon) lifts any cordon.
    type: str
extends_documentation_fragment:
  - baremetal.kubernetes.kubeconfig
attributes:
  check_mode:
    support: full
    description: Reports what would be cordoned and evicted; evictions are validated with C(dryRun=All).
  diff_mode:
    support: full
    description: The node's C(spec.unschedulable) before and after.
seealso:
  - module: baremetal.kubernetes.cluster_health
  - name: Safely drain a node
    description: The Kubernetes documentation of drain and PodDisruptionBudgets.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
"""

EXAMPLES = r"""
- name: Drain, upgrade and always report the node's state
  block:
    - name: Drain the node (cordon + evict, PDB-aware)
      baremetal.kubernetes.k8s_drain:
        name: "{{ node_name }}"
        ignore_daemonsets: true
        delete_emptydir_data: true
        wait_timeout: 600
      delegate_to: "{{ groups['kube_control_plane'][0] }}"

    - name: Upgrade the node
      ansible.builtin.debug:
        msg: the upgrade tasks go here
  always:
    # The drain module never uncordons by itself; on failure it says "node ... is still cordoned".
    - name: Make the node schedulable again
      baremetal.kubernetes.k8s_drain:
        name: "{{ node_name }}"
        state: uncordon
      delegate_to: "{{ groups['kube_control_plane'][0] }}"

- name: Only cordon
  baremetal.kubernetes.k8s_drain:
    name: w2
    state: cordon

# A maintenance run that may be interrupted and re-run: the owner annotation tells its own cordon
# (lifted at the end, also by the re-run) from one an operator set before (kept).
- name: Drain, recording who cordoned
  baremetal.kubernetes.k8s_drain:
    name: w2
    ignore_daemonsets: true
    cordon_owner: upgrade

- name: Uncordon only if this maintenance cordoned it
  baremetal.kubernetes.k8s_drain:
    name: w2
    state: uncordon
    cordon_owner: upgrade

- name: What would a drain evict, and would a PDB block it right now?
  baremetal.kubernetes.k8s_drain:
    name: w2
    ignore_daemonsets: true
  check_mode: true
  register: would

- name: Evict only the web pods, talking to one apiserver directly
  baremetal.kubernetes.k8s_drain:
    name: w2
    pod_selector: app=web
    api_server: 10.0.0.11:6443
    kubeconfig: /etc/kubernetes/admin.conf
"""

RETURN = r"""
# The pod lists end in _pods: a top-level `skipped` or `failed` key means something else to Ansible.
node:
  description: The node name.
  returned: always
  type: str
  sample: w2
cordoned:
  description:
    - Whether the node is unschedulable at the end of the task (also on failure). In check mode, what it would be.
  returned: always
  type: bool
  sample: true
was_cordoned:
  description: Whether the node was already unschedulable when the task started.
  returned: always
  type: bool
  sample: false
cordon_owned:
  description:
    - Whether the node's cordon belongs to I(cordon_owner) at the end of the task (this task or an earlier one
      with the same owner cordoned it). C(false) for a node cordoned by someone else, or not cordoned.
  returned: when I(cordon_owner) is set
  type: bool
  sample: true
evicted_pods:
  description:
    - Pods evicted (or deleted with I(disable_eviction)) and gone from the node. In check mode, the pods
      whose eviction the apiserver accepted with C(dryRun=All).
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace.
      type: str
    name:
      description: Pod name.
      type: str
    kind:
      description: The classification (C(normal), C(unmanaged), C(emptydir), C(finished), C(terminating)).
      type: str
  sample: [{namespace: default, name: web-5d9c-abcde, kind: normal}]
skipped_pods:
  description: Pods left on the node, each with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{namespace: kube-system, name: kube-proxy-x2x9q, kind: daemonset,
            reason: managed by DaemonSet kube-proxy (ignore_daemonsets=true)}]
refused_pods:
  description: Pods the options do not allow to evict, each with the option that would (the task fails).
  returned: always
  type: list
  elements: dict
  sample: [{namespace: default, name: scratch, kind: unmanaged,
            reason: "not managed by a controller: nothing would recreate it (force=true allows it)"}]
blocked_pods:
  description:
    - Pods whose eviction a PodDisruptionBudget refused (HTTP 429) until the timeout; in check mode, right now.
    - Each lists the PodDisruptionBudgets that select the pod, with their status.
  returned: always
  type: list
  elements: dict
  sample:
    - namespace: default
      name: db-0
      message: Cannot evict pod as it would violate the pod's disruption budget.
      attempts: 37
      pdbs:
        - namespace: default
          name: db
          disruptions_allowed: 0
          current_healthy: 1
          desired_healthy: 2
          expected_pods: 2
failed_pods:
  description:
    - Pods whose eviction failed for another reason than a PodDisruptionBudget, or that did not go away in time.
  returned: always
  type: list
  elements: dict
  sample: [{namespace: default, name: web-1, message: "evicted but still present after the timeout"}]
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 12.4
"""

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import ModuleError, fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    CLIENT_ERRORS,
    KUBECONFIG_ARGUMENT_SPEC,
    K8sApiError,
    K8sClient,
    parse_time,
    path_quote,
    selector_matches,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    deadline_argument_spec,
)

# Backoff for evictions a PodDisruptionBudget refuses: 0.5 s doubling to 5 s (kubectl: a flat 5 s).
# Records who cordoned a node (option cordon_owner).
CORDON_ANNOTATION = "baremetal.kubernetes/cordoned-by"
EVICTION_BACKOFF = 0.5
EVICTION_BACKOFF_MAX = 5.0
# Polling for evicted pods to be gone: 0.2 s growing to 2 s, one LIST of the node's pods per poll.
WAIT_POLL = 0.2
WAIT_POLL_MAX = 2.0
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class DrainError(ModuleError):
    """A drain that cannot go on; its message says what state the node is left in."""


def namespace_terminating(exc):
    """Whether the apiserver refused a request because the pod's namespace is being deleted: 403 with the
    NamespaceTerminating cause the NamespaceLifecycle admission plugin sets (a StatusCause's type is the
    JSON field ``reason``)."""
    return exc.code == 403 and (
        any((cause or {}).get("reason") == "NamespaceTerminating" for cause in exc.causes)
        or "because it is being terminated" in (exc.message or ""))


def pod_ref(pod):
    meta = pod.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def _controller(pod):
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return owner
    return None


def classify(pod, params, now):
    """(kind, action, reason) for a pod. action: 'evict', 'skip' or 'refuse'.

    The order follows kubectl drain's filters: already terminating, DaemonSet, mirror, then the local
    data and unmanaged checks, which finished pods are exempt from.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    deleting = parse_time(meta.get("deletionTimestamp"))
    skip_after = params.get("skip_wait_for_delete_timeout") or 0
    if deleting is not None and skip_after > 0 and now - deleting > skip_after:
        return ("terminating", "skip", "terminating for %d s, longer than skip_wait_for_delete_timeout=%d"
                % (now - deleting, skip_after))
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return "mirror", "skip", "mirror pod of a static pod; the kubelet on the node manages it"
    controller = _controller(pod)
    if controller and controller.get("kind") == "DaemonSet":
        if params.get("ignore_daemonsets"):
            return "daemonset", "skip", "managed by DaemonSet %s (ignore_daemonsets=true)" % controller.get("name")
        return ("daemonset", "refuse", "managed by DaemonSet %s, which would recreate it at once "
                "(ignore_daemonsets=true skips DaemonSet pods)" % controller.get("name"))
    if deleting is not None:
        return "terminating", "evict", "already terminating"
    if phase in ("Succeeded", "Failed"):
        return "finished", "evict", "finished (%s)" % phase
    reasons = []
    kinds = []
    empty_dirs = [v.get("name") for v in spec.get("volumes") or [] if "emptyDir" in v]
    if not controller:
        kinds.append("unmanaged")
        if not params.get("force"):
            reasons.append("not managed by a controller: nothing would recreate it (force=true allows it)")
    if empty_dirs:
        kinds.append("emptydir")
        if not params.get("delete_emptydir_data"):
            reasons.append("uses emptyDir volume(s) %s whose data would be lost (delete_emptydir_data=true allows it)"
                           % ", ".join(empty_dirs))
    kind = kinds[0] if kinds else "normal"
    if reasons:
        return kind, "refuse", "; ".join(reasons)
    return kind, "evict", "+".join(kinds) if kinds else "normal"


class Drainer:
    """One run of the module against one node."""

    def __init__(self, module, client, clock=time.monotonic, wall=time.time):
        self.module = module
        self.params = module.params
        self.client = client
        self.wall = wall
        self.name = self.params["name"]
        self.deadline = Deadline(self.params["wait_timeout"], clock)
        self.node_path = "/api/v1/nodes/%s" % path_quote(self.name)
        self.stop = threading.Event()
        self.result = dict(changed=False, node=self.name, cordoned=False, was_cordoned=False, evicted_pods=[],
                           skipped_pods=[], refused_pods=[], blocked_pods=[], failed_pods=[], duration=0.0)

    # -- node -------------------------------------------------------------------------------
    def get_node(self):
        try:
            return self.client.get(self.node_path, deadline=self.deadline.at)
        except K8sApiError as exc:
            if exc.code == 404:
                raise DrainError("node %s does not exist in the cluster (kubectl get nodes lists the names)"
                                 % self.name) from None
            raise

    def set_unschedulable(self, value, owner=None):
        """Cordon or uncordon; with an owner, the cordon annotation is set or removed in the same merge patch."""
        body = {"spec": {"unschedulable": True if value else None}}
        if owner is not None:
            body["metadata"] = {"annotations": {CORDON_ANNOTATION: owner if value else None}}
        self.client.patch(self.node_path, body, deadline=self.deadline.at)

    # -- pods -------------------------------------------------------------------------------
    def list_pods(self, selector=None):
        query = {"fieldSelector": "spec.nodeName=%s" % self.name}
        if selector:
            query["labelSelector"] = selector
        return self.client.list_all("/api/v1/pods", query=query, deadline=self.deadline.at)

    def plan(self, pods):
        """Classify the pods: (to_evict [(pod, kind)], skipped, refused)."""
        now = self.wall()
        to_evict, skipped, refused = [], [], []
        for pod in sorted(pods, key=pod_ref):
            kind, action, reason = classify(pod, self.params, now)
            entry = dict(namespace=pod["metadata"].get("namespace"), name=pod["metadata"].get("name"), kind=kind)
            if action == "evict":
                to_evict.append((pod, kind))
            elif action == "skip":
                skipped.append(dict(entry, reason=reason))
            else:
                refused.append(dict(entry, reason=reason))
        return to_evict, skipped, refused

    def refuse(self, refused, cordoned_now):
        lines = ["- %s/%s (%s): %s" % (r["namespace"], r["name"], r["kind"], r["reason"]) for r in refused]
        if cordoned_now:
            state = "node %s is still cordoned (this task cordoned it)" % self.name
        elif self.result["was_cordoned"]:
            state = "node %s was already cordoned and stays cordoned" % self.name
        else:
            state = "nothing was changed: node %s is not cordoned" % self.name
        raise DrainError("cannot drain node %s: %d pod(s) cannot be evicted with the current options; %s.\n%s"
                         % (self.name, len(refused), state, "\n".join(lines)), refused_pods=refused)

    # -- eviction ---------------------------------------------------------------------------
    def _evict_request(self, pod, dry_run=False):
        meta = pod["metadata"]
        base = "/api/v1/namespaces/%s/pods/%s" % (path_quote(meta["namespace"]), path_quote(meta["name"]))
        options = {}
        if self.params.get("grace_period") is not None:
            options["gracePeriodSeconds"] = self.params["grace_period"]
        if meta.get("uid"):
            options["preconditions"] = {"uid": meta["uid"]}
        if dry_run:
            options["dryRun"] = ["All"]
        query = {"dryRun": "All"} if dry_run else None
        # 429 is the PDB answer; it is retried here, per pod, not by the client.
        retry_on = (500, 502, 503, 504)
        if self.params.get("disable_eviction"):
            body = dict(options, apiVersion="v1", kind="DeleteOptions")
            self.client.raw("DELETE", base, body=body, query=query, retry_on=retry_on, deadline=self.deadline.at)
        else:
            body = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
            if options:
                body["deleteOptions"] = options
            self.client.raw("POST", base + "/eviction", body=body, query=query, retry_on=retry_on,
                            deadline=self.deadline.at)

    def _marked_for_deletion(self, pod):
        """Whether the pod is gone or has a deletionTimestamp (None when it cannot be read now)."""
        meta = pod["metadata"]
        try:
            path = "/api/v1/namespaces/%s/pods/%s" % (path_quote(meta["namespace"]), path_quote(meta["name"]))
            current = self.client.get(path, retries=1)
        except K8sApiError as exc:
            return True if exc.code == 404 else None
        current_meta = current.get("metadata") or {}
        if meta.get("uid") and current_meta.get("uid") != meta["uid"]:
            return True  # replaced by a pod of the same name: this one is gone
        return bool(current_meta.get("deletionTimestamp"))

    def evict_one(self, pod, kind, dry_run=False):
        """Evict one pod, retrying PDB refusals until the deadline.

        Returns (state, info) with state 'evicted', 'gone', 'blocked' or 'failed'.
        """
        attempts = 0
        last = None
        while True:
            attempts += 1
            try:
                self._evict_request(pod, dry_run=dry_run)
                return "evicted", dict(attempts=attempts)
            except K8sApiError as exc:
                last = exc
                if exc.code == 404:
                    return "gone", dict(attempts=attempts)
                if exc.code == 409 and "precondition" in (exc.message or "").lower():
                    return "gone", dict(attempts=attempts)  # the UID changed: this pod is already gone
                if namespace_terminating(exc):
                    # No eviction can be created in a namespace being deleted, and its controller deletes the
                    # pod (as kubectl drain: wait for the pod once it is marked, retry until then).
                    if dry_run or self._marked_for_deletion(pod):
                        return "evicted", dict(attempts=attempts, namespace_terminating=True)
                elif exc.code != 429:
                    return "failed", dict(attempts=attempts, message=str(exc))
            if dry_run:
                return "blocked", dict(attempts=attempts, message=last.message, causes=last.causes)
            delay = min(EVICTION_BACKOFF_MAX, EVICTION_BACKOFF * (2 ** min(attempts - 1, 16)))
            if last.retry_after:
                delay = max(delay, min(EVICTION_BACKOFF_MAX, last.retry_after))
            remaining = self.deadline.remaining()
            if self.stop.is_set() or remaining <= 0.1:
                return self._not_evicted(last, attempts)
            # The last attempt is made just before the deadline, not one backoff step early.
            self.stop.wait(min(delay, remaining - 0.1))
            if self.stop.is_set():
                return self._not_evicted(last, attempts)

    @staticmethod
    def _not_evicted(last, attempts):
        """The outcome of a pod still refused at the deadline: a budget's refusal, or a namespace whose
        deletion never marked the pod."""
        if namespace_terminating(last):
            return "failed", dict(attempts=attempts, message="%s (the pod was not marked for deletion in time)"
                                  % last)
        return "blocked", dict(attempts=attempts, message=last.message, causes=last.causes)

    def pdbs_for(self, pods):
        """PodDisruptionBudgets selecting each pod, with their status: {pod_ref: [pdb dict]}."""
        cache = {}
        out = {}
        for pod in pods:
            namespace = pod["metadata"]["namespace"]
            if namespace not in cache:
                try:
                    cache[namespace] = self.client.list_all(
                        "/apis/policy/v1/namespaces/%s/poddisruptionbudgets" % path_quote(namespace), retries=1)
                except K8sApiError as exc:
                    cache[namespace] = exc
            pdbs = cache[namespace]
            if isinstance(pdbs, K8sApiError):
                out[pod_ref(pod)] = [dict(namespace=namespace, name="?", error="cannot list PDBs: %s" % pdbs)]
                continue
            matching = []
            for pdb in pdbs:
                selector = (pdb.get("spec") or {}).get("selector")
                if selector_matches(selector, (pod.get("metadata") or {}).get("labels")):
                    status = pdb.get("status") or {}
                    spec = pdb.get("spec") or {}
                    entry = dict(namespace=namespace, name=pdb["metadata"]["name"],
                                 disruptions_allowed=status.get("disruptionsAllowed"),
                                 current_healthy=status.get("currentHealthy"),
                                 desired_healthy=status.get("desiredHealthy"),
                                 expected_pods=status.get("expectedPods"))
                    for key in ("minAvailable", "maxUnavailable"):
                        if key in spec:
                            entry["min_available" if key == "minAvailable" else "max_unavailable"] = spec[key]
                    matching.append(entry)
            out[pod_ref(pod)] = matching
        return out

    def evict_all(self, to_evict, dry_run=False):
        """Evict in parallel and (unless dry_run) wait until the evicted pods are gone."""
        outcomes = {}
        pending = {}  # uid -> (pod, kind) evicted and not yet gone
        workers = max(1, min(self.params["max_parallel"], len(to_evict)))
        executor = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = {executor.submit(self.evict_one, pod, kind, dry_run): (pod, kind) for pod, kind in to_evict}
            if dry_run:
                for future, (pod, kind) in futures.items():
                    outcomes[pod_ref(pod)] = (pod, kind, *future.result())
            else:
                pending = self._wait(futures, outcomes)
        finally:
            self.stop.set()
            executor.shutdown(wait=True)
        return outcomes, pending

    def _wait(self, futures, outcomes):
        """Collect eviction outcomes while polling for evicted pods to be gone. Returns what is still pending."""
        pending = {}
        remaining = dict(futures)
        interval = WAIT_POLL
        while True:
            for future in [f for f in remaining if f.done()]:
                pod, kind = remaining.pop(future)
                state, info = future.result()
                outcomes[pod_ref(pod)] = (pod, kind, state, info)
                if state == "evicted":
                    pending[pod["metadata"].get("uid") or pod_ref(pod)] = (pod, kind)
            if pending:
                try:
                    present = {p["metadata"].get("uid"): p for p in self.list_pods()}
                except K8sApiError:
                    present = None  # a failed poll is not fatal; the next one may work
                if present is not None:
                    now = self.wall()
                    skip_after = self.params.get("skip_wait_for_delete_timeout") or 0
                    for uid in list(pending):
                        current = present.get(uid)
                        if current is None:
                            pod, kind = pending.pop(uid)
                            outcomes[pod_ref(pod)] = (pod, kind, "done", {})
                            continue
                        deleting = parse_time((current.get("metadata") or {}).get("deletionTimestamp"))
                        if skip_after > 0 and deleting is not None and now - deleting > skip_after:
                            pod, kind = pending.pop(uid)
                            outcomes[pod_ref(pod)] = (pod, kind, "stuck", {})
            if not remaining and not pending:
                return pending
            if self.deadline.expired():
                self.stop.set()
                for future in list(remaining):
                    pod, kind = remaining.pop(future)
                    state, info = future.result()
                    outcomes[pod_ref(pod)] = (pod, kind, state, info)
                    if state == "evicted":
                        pending[pod["metadata"].get("uid") or pod_ref(pod)] = (pod, kind)
                return pending
            wait_for = min(interval, max(0.0, self.deadline.remaining()))
            if remaining and not pending:
                # Nothing to poll yet: wake up as soon as an eviction finishes.
                futures_wait(list(remaining), timeout=wait_for, return_when=FIRST_COMPLETED)
            else:
                time.sleep(wait_for)
                interval = min(WAIT_POLL_MAX, interval * 1.5)

    # -- the run ----------------------------------------------------------------------------
    def run(self):
        check = self.module.check_mode
        state = self.params["state"]
        owner = self.params.get("cordon_owner")
        node = self.get_node()
        was = bool((node.get("spec") or {}).get("unschedulable"))
        marked = ((node.get("metadata") or {}).get("annotations") or {}).get(CORDON_ANNOTATION)
        res = self.result
        res.update(was_cordoned=was, cordoned=was)
        if owner is not None:
            res["cordon_owned"] = was and marked == owner
        self.module_diff = dict(before=dict(unschedulable=was), after=dict(unschedulable=was))

        if state == "uncordon":
            if owner is not None and was and marked != owner:
                self.module.warn("node %s stays cordoned: it was cordoned by %s, not by %s"
                                 % (self.name, ("'%s'" % marked) if marked else "someone else (no %s annotation)"
                                    % CORDON_ANNOTATION, owner))
                return self.finish()
            if was or (owner is not None and marked == owner):
                # A stale annotation on a schedulable node (uncordoned by hand) is removed too.
                if not check:
                    self.set_unschedulable(False, owner=owner if marked == owner else None)
                res.update(changed=True, cordoned=False)
            if owner is not None:
                res["cordon_owned"] = False
            return self.finish()

        to_evict = []
        if state == "drain":
            pods = self.list_pods(self.params.get("pod_selector"))
            to_evict, skipped, refused = self.plan(pods)
            res.update(skipped_pods=skipped, refused_pods=refused)
            if refused:
                self.refuse(refused, cordoned_now=False)

        if not was:
            if not check:
                self.set_unschedulable(True, owner=owner)
            res.update(changed=True, cordoned=True)
            if owner is not None:
                res["cordon_owned"] = True
        if state == "cordon":
            return self.finish()

        if not check:
            # Listed again after the cordon: nothing new can be scheduled now, so this list is final.
            to_evict, skipped, refused = self.plan(self.list_pods(self.params.get("pod_selector")))
            res.update(skipped_pods=skipped, refused_pods=refused)
            if refused:
                self.refuse(refused, cordoned_now=True)
        if not to_evict:
            return self.finish()

        outcomes, pending = self.evict_all(to_evict, dry_run=check)
        blocked_pods = []
        for ref in sorted(outcomes):
            pod, kind, state_, info = outcomes[ref]
            entry = dict(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"], kind=kind)
            if state_ in ("done", "evicted") and (check or state_ == "done"):
                res["evicted_pods"].append(entry)
            elif state_ == "gone":
                res["skipped_pods"].append(dict(entry, reason="already gone when its eviction was sent"))
            elif state_ == "stuck":
                res["evicted_pods"].append(entry)
                reason = "evicted; still terminating after skip_wait_for_delete_timeout, not waited for"
                res["skipped_pods"].append(dict(entry, reason=reason))
            elif state_ == "blocked":
                blocked_pods.append(pod)
                res["blocked_pods"].append(dict(entry, message=info.get("message"), attempts=info.get("attempts"),
                                           causes=[c.get("message") for c in info.get("causes") or []]))
            elif state_ == "failed":
                res["failed_pods"].append(dict(entry, message=info.get("message")))
        for pod, kind in pending.values():
            meta = pod["metadata"]
            res["failed_pods"].append(dict(namespace=meta["namespace"], name=meta["name"], kind=kind,
                                           message="evicted, but still on the node when the timeout expired"))
        if res["evicted_pods"]:
            res["changed"] = True
        if blocked_pods:
            pdbs = self.pdbs_for(blocked_pods)
            for entry in res["blocked_pods"]:
                entry["pdbs"] = pdbs.get("%s/%s" % (entry["namespace"], entry["name"]), [])
        if check:
            if res["blocked_pods"]:
                self.module.warn("a drain of node %s would be blocked right now: %s"
                                 % (self.name, "; ".join(describe_blocked(b) for b in res["blocked_pods"])))
            if res["failed_pods"]:
                rejected = ["%s/%s: %s" % (f["namespace"], f["name"], f["message"]) for f in res["failed_pods"]]
                raise DrainError("check mode: the apiserver rejected the dry-run eviction of %d pod(s): %s"
                                 % (len(rejected), "; ".join(rejected)))
            return self.finish()
        if res["blocked_pods"] or res["failed_pods"]:
            parts = []
            if res["blocked_pods"]:
                parts.append("%d pod(s) still blocked by PodDisruptionBudgets after %d s: %s"
                             % (len(res["blocked_pods"]), self.params["wait_timeout"],
                                "; ".join(describe_blocked(b) for b in res["blocked_pods"])))
            if res["failed_pods"]:
                parts.append("%d pod(s) failed: %s" % (len(res["failed_pods"]), "; ".join(
                    "%s/%s: %s" % (f["namespace"], f["name"], f["message"]) for f in res["failed_pods"])))
            raise DrainError("drain of node %s did not complete: %s. %d pod(s) were evicted. Node %s is still "
                             "cordoned (unschedulable); fix the cause and re-run, or uncordon it with "
                             "state=uncordon." % (self.name, " | ".join(parts), len(res["evicted_pods"]), self.name))
        return self.finish()

    def partial(self):
        """The result so far, for a failure: whether the node is cordoned, the pods evicted until then."""
        return dict(self.result, duration=round(self.deadline.elapsed(), 3))

    def finish(self):
        self.result["duration"] = round(self.deadline.elapsed(), 3)
        self.module_diff["after"] = dict(unschedulable=self.result["cordoned"])
        if self.module._diff:
            self.result["diff"] = self.module_diff
        return self.result


def describe_blocked(entry):
    pdbs = entry.get("pdbs")
    if pdbs is None:
        pdb_text = "; ".join(entry.get("causes") or []) or entry.get("message") or "PodDisruptionBudget"
    elif not pdbs:
        pdb_text = "no PodDisruptionBudget selects it any more (%s)" % (entry.get("message") or "")
    else:
        pdb_text = ", ".join(
            "PDB %s/%s" % (p["namespace"], p["name"]) + (
                ": %s" % p["error"] if p.get("error") else
                " (disruptionsAllowed=%s, currentHealthy=%s, desiredHealthy=%s, expectedPods=%s)"
                % (p.get("disruptions_allowed"), p.get("current_healthy"), p.get("desired_healthy"),
                   p.get("expected_pods")))
            for p in pdbs)
    return "%s/%s blocked by %s" % (entry["namespace"], entry["name"], pdb_text)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="drain", choices=["cordon", "drain", "uncordon"]),
        grace_period=dict(type="int"),
        ignore_daemonsets=dict(type="bool", default=False),
        delete_emptydir_data=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        pod_selector=dict(type="str"),
        disable_eviction=dict(type="bool", default=False),
        skip_wait_for_delete_timeout=dict(type="int", default=0),
        max_parallel=dict(type="int", default=32),
        cordon_owner=dict(type="str"),
    )
    argument_spec.update(KUBECONFIG_ARGUMENT_SPEC)
    argument_spec.update(deadline_argument_spec(timeout=300, old_name="timeout"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_wait_options(module, min_timeout=1)
    if module.params["cordon_owner"] is not None and not module.params["cordon_owner"].strip():
        module.fail_json(msg="cordon_owner must not be empty: name who cordons (e.g. upgrade), or omit it")
    if module.params["max_parallel"] < 1:
        module.fail_json(msg="max_parallel must be at least 1, got %d" % module.params["max_parallel"])
    if module.params["grace_period"] is not None and module.params["grace_period"] < 0:
        module.params["grace_period"] = None  # kubectl's -1: the pod's own grace period

    client = None
    drainer = None
    try:
        client = K8sClient.from_module(module)
        drainer = Drainer(module, client)
        result = drainer.run()
    except Exception as exc:  # also a bug must not hide that the node is cordoned
        partial = drainer.partial() if drainer else {}
        name = module.params["name"]
        note = ". Node %s is still cordoned (unschedulable)." % name if partial.get("cordoned") else ""
        fail_from_error(module, exc, "k8s_drain on node %s" % name, partial, expected=CLIENT_ERRORS, note=note)
    finally:
        if client:
            client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
