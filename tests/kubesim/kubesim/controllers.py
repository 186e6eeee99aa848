# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control loops kubesim needs so that pods behave: one leader among the replicas runs them.

Leader election follows k8s.io/client-go/tools/leaderelection with a coordination.k8s.io/v1 Lease
(kube-system/kubesim-controller-manager). The loops stand in for:
- kube-scheduler: a pod without spec.nodeName goes to the schedulable, Ready node with fewest pods whose
  NoSchedule/NoExecute taints it tolerates (cordoned nodes carry no taint here, spec.unschedulable is checked);
- the kubelet's pod lifecycle: a pod bound to a Ready node becomes Running and Ready; a pod with a
  deletionTimestamp is removed (its simulated containers stop at once on SIGTERM);
- the ReplicaSet controller: replaces missing pods after ``replacement_delay`` seconds, removes extras;
- the DaemonSet controller: one pod per Ready node (DaemonSet pods tolerate node.kubernetes.io/unschedulable,
  as the real controller adds that toleration, so cordoned nodes keep and get DaemonSet pods);
- the namespace controller: a Terminating namespace loses its content, then disappears;
- the node lifecycle controller: a node whose Ready condition has a lastHeartbeatTime older than
  ``node_monitor_grace_period`` (40 s, kube-controller-manager's default) gets every condition Unknown
  ("Kubelet stopped posting node status.") and the node.kubernetes.io/unreachable NoSchedule and NoExecute
  taints; they go when the kubelet posts Ready again. Nodes that never heartbeat (no lastHeartbeatTime,
  e.g. created by a test with kubectl) are left alone; ``node_monitor_grace_period=None`` turns it off.
"""

from __future__ import annotations

import base64
import copy
import datetime
import logging
import os
import threading
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import pki
from . import resources as res
from .api import now_rfc3339, owner, random_suffix
from .etcd import EtcdError
from .pdb import pod_ready
from .selectors import label_requirements_from_selector, labels_match
from .store import ApiError

LOG = logging.getLogger("kubesim.controllers")

POD = res.BY_KIND[("", "Pod")]
NODE = res.BY_KIND[("", "Node")]
NAMESPACE = res.BY_KIND[("", "Namespace")]
RS = res.BY_KIND[("apps", "ReplicaSet")]
DS = res.BY_KIND[("apps", "DaemonSet")]
LEASE = res.BY_KIND[("coordination.k8s.io", "Lease")]
CSR = res.BY_KIND[("certificates.k8s.io", "CertificateSigningRequest")]

UNSCHEDULABLE_TOLERATION = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}


def node_ready(node):
    for condition in node.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def tolerates(pod, taint):
    for toleration in pod.get("spec", {}).get("tolerations", []) or []:
        if toleration.get("effect") not in (None, "", taint.get("effect")):
            continue
        if toleration.get("operator") == "Exists" and toleration.get("key") in (None, "", taint.get("key")):
            return True
        if toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable_for(pod, node):
    if not node_ready(node):
        return False
    if node.get("spec", {}).get("unschedulable") and not tolerates(pod, UNSCHEDULABLE_TOLERATION):
        return False
    selector = pod.get("spec", {}).get("nodeSelector") or {}
    labels = node.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return all(tolerates(pod, t) for t in node.get("spec", {}).get("taints", []) or []
               if t.get("effect") in ("NoSchedule", "NoExecute"))


class Controllers:
    def __init__(self, api, identity=None, interval=1.0, replacement_delay=1.0, lease_seconds=6.0,
                 node_monitor_grace_period=40.0, signing_files=None, renew_seconds=2.0):
        self.api = api
        self.signing_files = signing_files
        self.store = api.store
        self.identity = identity or "kubesim-%s" % uuid.uuid4().hex[:8]
        self.interval = interval
        self.replacement_delay = replacement_delay
        self.lease_seconds = lease_seconds
        # The leader writes its lease this often (kube-controller-manager's retry period), not every loop.
        self.renew_seconds = renew_seconds
        self.node_monitor_grace_period = node_monitor_grace_period
        self._stop = threading.Event()
        self._thread = None
        self._deficit_since = {}
        self.leading = False

    def start(self):
        self._thread = threading.Thread(target=self._run, name="kubesim-controllers", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.leading = self.acquire_or_renew()
                if self.leading:
                    self.reconcile()
            except (EtcdError, ApiError, OSError) as exc:
                LOG.warning("controller loop: %s", exc)
            except Exception:
                LOG.exception("controller loop crashed; continuing")

    # --- leader election -------------------------------------------------------------------------
    def acquire_or_renew(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease, revision = self.store.get_raw(LEASE, "kube-system", "kubesim-controller-manager")
        if lease is None:
            obj = self.api.prepare_create(LEASE, "kube-system", {"metadata": {"name": "kubesim-controller-manager"}})
            obj["spec"] = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                           "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}
            try:
                self.store.create(LEASE, obj)
                return True
            except ApiError:
                return False
        spec = lease.setdefault("spec", {})
        renewed = datetime.datetime.strptime(spec.get("renewTime", "1970-01-01T00:00:00.000000Z"),
                                             "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        expired = (now - renewed).total_seconds() > spec.get("leaseDurationSeconds", self.lease_seconds)
        if spec.get("holderIdentity") != self.identity and not expired:
            return False
        if spec.get("holderIdentity") == self.identity and (now - renewed).total_seconds() < self.renew_seconds:
            return True
        if spec.get("holderIdentity") != self.identity:
            spec["leaseTransitions"] = spec.get("leaseTransitions", 0) + 1
            spec["acquireTime"] = stamp
            spec["holderIdentity"] = self.identity
            LOG.info("%s became the controller leader", self.identity)
        spec["renewTime"] = stamp
        try:
            self.store.update(LEASE, lease, revision)
            return True
        except ApiError:
            return False

    # --- loops -----------------------------------------------------------------------------------
    def reconcile(self):
        _dummy, nodes = self.store.list(NODE)
        self.node_lifecycle(nodes)
        _dummy, nodes = self.store.list(NODE)
        _dummy, pods = self.store.list(POD)
        self.namespaces()
        self.kubelet(nodes, pods)
        _dummy, pods = self.store.list(POD)
        self.daemonsets(nodes, pods)
        self.replicasets(pods)
        _dummy, pods = self.store.list(POD)
        self.schedule(nodes, pods)
        self.kubelet_client_csrs()

    def kubelet_client_csrs(self):
        """csrapproving + csrsigning for kubelet client certificates, as kubeadm configures them.

        A CSR for signer kubernetes.io/kube-apiserver-client-kubelet, asked for by a bootstrap token
        (system:bootstrappers) or a node (system:nodes), whose subject is CN=system:node:<name>,
        O=system:nodes, is approved and signed with the cluster CA. Anything else stays pending.
        """
        _dummy, csrs = self.store.list(CSR)
        pending = [c for c in csrs if not (c.get("status") or {}).get("certificate")
                   and not (c.get("status") or {}).get("conditions")]
        if not pending or not self.signing_files:
            return
        cert_file, key_file = self.signing_files
        if not os.path.exists(key_file):
            LOG.warning("cannot sign CSRs: no CA key at %s", key_file)
            return
        with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
            ca = (x509.load_pem_x509_certificate(cert.read()), serialization.load_pem_private_key(key.read(), None))
        for csr in pending:
            spec = csr.get("spec") or {}
            if spec.get("signerName") != "kubernetes.io/kube-apiserver-client-kubelet":
                continue
            if not {"system:bootstrappers", "system:nodes"} & set(spec.get("groups") or []):
                continue
            try:
                request_pem = base64.b64decode(spec.get("request", ""))
                subject = x509.load_pem_x509_csr(request_pem).subject
            except ValueError:
                continue
            cn = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            if len(cn) != 1 or not cn[0].startswith("system:node:") or orgs != ["system:nodes"]:
                continue
            signed = pki.pem_cert(pki.sign_csr(ca, request_pem))
            csr["status"] = {"conditions": [{
                "type": "Approved", "status": "True", "reason": "AutoApproved",
                "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}],
                "certificate": base64.b64encode(signed).decode()}
            self._safe(self.store.update, CSR, csr, int(csr["metadata"]["resourceVersion"]))
            LOG.info("approved and signed CSR %s for %s", csr["metadata"]["name"], cn[0])

    def _safe(self, action, *args):
        try:
            return action(*args)
        except ApiError as exc:
            if exc.reason not in ("Conflict", "NotFound", "AlreadyExists"):
                raise
            return None

    def node_lifecycle(self, nodes):
        """pkg/controller/nodelifecycle: monitorNodeHealth + the unreachable taints."""
        now = datetime.datetime.now(datetime.timezone.utc)
        unreachable = [{"key": "node.kubernetes.io/unreachable", "effect": effect} for effect in
                       ("NoSchedule", "NoExecute")]
        for node in nodes:
            conditions = node.get("status", {}).get("conditions", []) or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if self.node_monitor_grace_period is None or not ready or not ready.get("lastHeartbeatTime"):
                continue
            beat = res.parse_time(ready["lastHeartbeatTime"])
            taints = node.setdefault("spec", {}).get("taints") or []
            has_taint = any(t.get("key") == "node.kubernetes.io/unreachable" for t in taints)
            stale = (now - beat).total_seconds() > self.node_monitor_grace_period
            changed = False
            if stale and ready.get("status") != "Unknown":
                stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                for condition in conditions:
                    condition.update(status="Unknown", reason="NodeStatusUnknown",
                                     message="Kubelet stopped posting node status.", lastTransitionTime=stamp)
                changed = True
            if stale and not has_taint:
                node["spec"]["taints"] = taints + [dict(t, timeAdded=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
                                                   for t in unreachable]
                changed = True
            if not stale and ready.get("status") == "True" and has_taint:
                node["spec"]["taints"] = [t for t in taints if t.get("key") != "node.kubernetes.io/unreachable"]
                changed = True
            if changed:
                self._safe(self.store.update, NODE, node, int(node["metadata"]["resourceVersion"]))

    def namespaces(self):
        _dummy, namespaces = self.store.list(NAMESPACE)
        for ns in namespaces:
            if ns.get("status", {}).get("phase") != "Terminating":
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for resource in res.RESOURCES:
                if not resource.namespaced:
                    continue
                _dummy, objects = self.store.list(resource, name)
                for obj in objects:
                    remaining += 1
                    self._safe(self.store.delete, resource, obj)
            if not remaining:
                self._safe(self.store.delete, NAMESPACE, ns)

    def kubelet(self, nodes, pods):
        ready_nodes = {n["metadata"]["name"]: n for n in nodes if node_ready(n)}
        now = datetime.datetime.now(datetime.timezone.utc)
        for pod in pods:
            node_name = pod.get("spec", {}).get("nodeName")
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                # Containers stop at once; the kubelet then deletes the pod with grace period 0.
                self._safe(self.store.delete, POD, pod, int(meta["resourceVersion"]))
                continue
            if not node_name or node_name not in ready_nodes:
                continue
            status = pod.setdefault("status", {})
            if status.get("phase") == "Running" and pod_ready(pod):
                continue
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            node = ready_nodes[node_name]
            host_ip = next((a["address"] for a in node.get("status", {}).get("addresses", []) or []
                            if a.get("type") == "InternalIP"), "")
            status.update({
                "phase": "Running", "hostIP": host_ip, "startTime": status.get("startTime") or stamp,
                "podIP": host_ip if pod.get("spec", {}).get("hostNetwork") else "10.244.%d.%d" % (
                    hash(node_name) % 250, hash(meta["name"]) % 250 + 2),
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": stamp, "lastProbeTime": None}
                               for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                         "PodScheduled")],
                "containerStatuses": [{"name": c.get("name"), "image": c.get("image"), "imageID": "",
                                       "ready": True, "started": True, "restartCount": 0,
                                       "containerID": "containerd://%s" % uuid.uuid4().hex,
                                       "state": {"running": {"startedAt": stamp}}}
                                      for c in pod.get("spec", {}).get("containers", []) or []],
            })
            self._safe(self.store.update, POD, pod, int(meta["resourceVersion"]))

    def schedule(self, nodes, pods):
        counts = {}
        for pod in pods:
            name = pod.get("spec", {}).get("nodeName")
            if name:
                counts[name] = counts.get(name, 0) + 1
        for pod in pods:
            if pod.get("spec", {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            candidates = sorted((counts.get(n["metadata"]["name"], 0), n["metadata"]["name"])
                                for n in nodes if schedulable_for(pod, n))
            if not candidates:
                continue
            target = candidates[0][1]
            pod["spec"]["nodeName"] = target
            counts[target] = counts.get(target, 0) + 1
            self._safe(self.store.update, POD, pod, int(pod["metadata"]["resourceVersion"]))

    def _new_pod(self, controller, kind, node_name=None):
        template = copy.deepcopy(controller.get("spec", {}).get("template", {}))
        meta = template.setdefault("metadata", {})
        meta["generateName"] = controller["metadata"]["name"] + "-"
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": controller["metadata"]["name"],
                                    "uid": controller["metadata"]["uid"], "controller": True,
                                    "blockOwnerDeletion": True}]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec", {})}
        if node_name:
            pod["spec"]["nodeName"] = node_name
            tolerations = pod["spec"].setdefault("tolerations", [])
            # daemon/util.AddOrUpdateDaemonPodTolerations
            for key, effect in (("node.kubernetes.io/not-ready", "NoExecute"),
                                ("node.kubernetes.io/unreachable", "NoExecute"),
                                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                                ("node.kubernetes.io/unschedulable", "NoSchedule")):
                tolerations.append({"key": key, "operator": "Exists", "effect": effect})
        for _dummy in range(3):
            meta["name"] = meta["generateName"] + random_suffix()
            try:
                return self.api.create(POD, controller["metadata"]["namespace"], copy.deepcopy(pod))
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        return None

    @staticmethod
    def _owned(controller, pods):
        uid = controller["metadata"]["uid"]
        return [p for p in pods if (owner(p) or {}).get("uid") == uid]

    def replicasets(self, pods):
        _dummy, sets = self.store.list(RS)
        now = time.monotonic()
        for rs in sets:
            uid = rs["metadata"]["uid"]
            owned = [p for p in self._owned(rs, pods) if not p["metadata"].get("deletionTimestamp")
                     and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
            wanted = int(rs.get("spec", {}).get("replicas", 1))
            if len(owned) < wanted:
                since = self._deficit_since.setdefault(uid, now)
                if now - since >= self.replacement_delay:
                    for _dummy2 in range(wanted - len(owned)):
                        self._new_pod(rs, "ReplicaSet")
                    self._deficit_since.pop(uid, None)
            else:
                self._deficit_since.pop(uid, None)
                # Scale down: unscheduled first, then not ready, then newest (controller.ActivePods ordering).
                extra = sorted(owned, key=lambda p: (bool(p["spec"].get("nodeName")), pod_ready(p),
                                                     p["metadata"]["creationTimestamp"]))
                for pod in extra[: len(owned) - wanted]:
                    self._safe(self.api.delete, POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
            ready = sum(1 for p in owned if pod_ready(p))
            status = {"replicas": len(owned), "fullyLabeledReplicas": len(owned), "readyReplicas": ready,
                      "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
            if rs.get("status") != status:
                rs["status"] = status
                self._safe(self.store.update, RS, rs, int(rs["metadata"]["resourceVersion"]))

    def daemonsets(self, nodes, pods):
        _dummy, sets = self.store.list(DS)
        for ds in sets:
            owned = self._owned(ds, pods)
            by_node = {p["spec"].get("nodeName") for p in owned}
            template = {"spec": dict(ds.get("spec", {}).get("template", {}).get("spec", {}),
                                     tolerations=[UNSCHEDULABLE_TOLERATION])}
            eligible = [n for n in nodes if node_ready(n) and schedulable_for(template, n)]
            selector = label_requirements_from_selector(ds.get("spec", {}).get("selector"))
            for node in eligible:
                if node["metadata"]["name"] not in by_node:
                    self._new_pod(ds, "DaemonSet", node["metadata"]["name"])
            ready = sum(1 for p in owned if pod_ready(p) and labels_match(selector, p["metadata"].get("labels")))
            status = {"desiredNumberScheduled": len(eligible), "currentNumberScheduled": len(owned),
                      "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": len(owned),
                      "numberAvailable": ready, "numberUnavailable": max(0, len(eligible) - ready),
                      "observedGeneration": ds["metadata"].get("generation", 1)}
            if ds.get("status") != status:
                ds["status"] = status
                self._safe(self.store.update, DS, ds, int(ds["metadata"]["resourceVersion"]))


# The kubelet's nodeStatusUpdateRetry: a status update that loses a race (409) is read and tried again.
NODE_STATUS_UPDATE_RETRY = 5


def heartbeat_node(api, name, version, address, labels=None, unschedulable=None):
    """What the kubelet does on start and every nodeStatusUpdateFrequency: register, then report Ready.

    The node lifecycle controller writes the same Node (conditions, taints), so an update can meet a newer
    revision: like the kubelet, read it again and retry, up to NODE_STATUS_UPDATE_RETRY times.
    """
    for _attempt in range(NODE_STATUS_UPDATE_RETRY - 1):
        try:
            return _heartbeat_node_once(api, name, version, address, labels, unschedulable)
        except ApiError as exc:
            if exc.code != 409:
                raise
    return _heartbeat_node_once(api, name, version, address, labels, unschedulable)


def _heartbeat_node_once(api, name, version, address, labels, unschedulable):
    stamp = now_rfc3339()
    node, revision = api.store.get_raw(NODE, None, name)
    conditions = [
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"},
    ]
    for condition in conditions:
        condition.update(lastHeartbeatTime=stamp, lastTransitionTime=stamp)
    status = {
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": "v%s" % version.lstrip("v"), "kubeProxyVersion": "",
                     "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "kubesim",
                     "containerRuntimeVersion": "containerd://1.6", "operatingSystem": "linux",
                     "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": ""},
        "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
    }
    if node is None:
        body = {"metadata": {"name": name, "labels": dict({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                           "kubernetes.io/arch": "amd64"}, **(labels or {}))},
                "spec": {"unschedulable": True} if unschedulable else {}, "status": status}
        return api.create(NODE, None, body)
    node["status"] = status
    return api.store.update(NODE, node, revision)
