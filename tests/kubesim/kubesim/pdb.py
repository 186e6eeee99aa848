# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PodDisruptionBudget arithmetic, after pkg/controller/disruption/disruption.go and
pkg/registry/core/pod/storage/eviction.go (https://kubernetes.io/docs/concepts/workloads/pods/disruptions/).
"""

from __future__ import annotations

import math

from .selectors import label_requirements_from_selector, labels_match


def scaled(value, total):
    """intstr.GetScaledValueFromIntOrPercent(value, total, roundUp=true)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100.0)
    return int(value)


def pod_ready(pod):
    for condition in pod.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def pod_healthy(pod):
    """countHealthyPods: not being deleted and Ready."""
    return not pod.get("metadata", {}).get("deletionTimestamp") and pod_ready(pod)


def matching_pods(pdb, pods):
    """Pods in the PDB's namespace selected by spec.selector (an empty selector selects nothing in policy/v1? no:
    in policy/v1 an empty selector selects every pod of the namespace)."""
    selector = pdb.get("spec", {}).get("selector")
    if selector is None:
        return []
    requirements = label_requirements_from_selector(selector)
    namespace = pdb["metadata"]["namespace"]
    return [p for p in pods if p["metadata"].get("namespace") == namespace
            and labels_match(requirements, p["metadata"].get("labels"))]


def expected_count(spec, pods, controller_scale):
    """getExpectedPodCount: (expectedCount, desiredHealthy)."""
    if spec.get("maxUnavailable") is not None:
        expected = controller_scale(pods)
        desired = max(0, expected - scaled(spec["maxUnavailable"], expected))
        return expected, desired
    min_available = spec.get("minAvailable")
    if min_available is None:
        return len(pods), 0
    if isinstance(min_available, int):
        return len(pods), min_available
    expected = controller_scale(pods)
    return expected, scaled(min_available, expected)


def compute_status(pdb, pods, controller_scale):
    """The status the disruption controller would write for ``pdb``."""
    selected = matching_pods(pdb, pods)
    expected, desired = expected_count(pdb.get("spec", {}), selected, controller_scale)
    healthy = sum(1 for p in selected if pod_healthy(p))
    allowed = max(0, healthy - desired) if expected > 0 else 0
    condition_ok = allowed > 0
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": "True" if condition_ok else "False",
            "reason": "SufficientPods" if condition_ok else "InsufficientPods",
            "message": "",
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "lastTransitionTime": pdb["metadata"].get("creationTimestamp"),
        }],
    }


def eviction_decision(pod, pdbs, pods, controller_scale):
    """Return None when the eviction may proceed, else (code, reason, message, causes) of the refusal."""
    phase = pod.get("status", {}).get("phase")
    if phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
        return None
    labels = pod["metadata"].get("labels")
    matched = [b for b in pdbs if b["metadata"]["namespace"] == pod["metadata"]["namespace"]
               and b.get("spec", {}).get("selector") is not None
               and labels_match(label_requirements_from_selector(b["spec"]["selector"]), labels)]
    if not matched:
        return None
    if len(matched) > 1:
        return (500, "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", [])
    pdb = matched[0]
    status = compute_status(pdb, pods, controller_scale)
    policy = pdb.get("spec", {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
    if not pod_ready(pod):
        if policy == "AlwaysAllow":
            return None
        if status["currentHealthy"] >= status["desiredHealthy"] and status["desiredHealthy"] > 0:
            return None
    if status["disruptionsAllowed"] > 0:
        return None
    message = "The disruption budget %s needs %d healthy pods and has %d currently" % (
        pdb["metadata"]["name"], status["desiredHealthy"], status["currentHealthy"])
    return (429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
            [{"reason": "DisruptionBudget", "message": message}])
