# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""The Kubernetes version skew policy as plain arithmetic, shared by cluster_health and upgrades.

https://kubernetes.io/releases/version-skew-policy/ :

* Minor granularity: patch releases never matter for skew.
* kube-apiserver: in an HA control plane the newest and oldest instances are within 1 minor.
* kubelet (and kube-proxy): never newer than kube-apiserver, at most 3 minors older. With skewed
  apiservers the window is measured against the OLDEST apiserver.
* kube-controller-manager, kube-scheduler: never newer than the apiservers they talk to (so: the
  oldest apiserver), at most 1 minor older.
* Upgrades move the control plane one minor at a time.
"""

from __future__ import annotations

import re

from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import parse_k8s_version

# Policy maxima (Kubernetes >= 1.28).
KUBELET_MAX_SKEW = 3
CONTROL_PLANE_MAX_SKEW = 1

_KUBE_VERSION_RE = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+].*)?$")


def parse_kube_version(value):
    """(major, minor, patch) from 'v1.34.2', '1.34.2', 'v1.34.2-rc.0', 'v1.34.2+k3s1'; else None."""
    if value is None:
        return None
    text = str(value).strip()
    plain = parse_k8s_version(text.lstrip("v"))
    if plain:
        return plain
    match = _KUBE_VERSION_RE.fullmatch(text)
    return tuple(int(part) for part in match.groups()) if match else None


def version_text(version):
    return "%d.%d.%d" % tuple(version[:3]) if version else "unknown"


def minor_distance(newer, older):
    """How many minors ``older`` is behind ``newer`` (negative when it is ahead).

    Majors differ only at 1.x today; a different major is treated as infinitely far apart.
    """
    if newer[0] != older[0]:
        return float("inf") if newer[0] > older[0] else float("-inf")
    return newer[1] - older[1]


def image_tag_version(image):
    """The version in an image tag: 'registry.k8s.io/kube-apiserver:v1.34.2' -> (1, 34, 2)."""
    if not image or ":" not in str(image).rsplit("/", 1)[-1]:
        return None
    tag = str(image).rsplit("/", 1)[-1].split(":", 1)[1].split("@", 1)[0]
    return parse_kube_version(tag)


def check_skew(apiservers, components=None, kubelets=None, max_kubelet_skew=KUBELET_MAX_SKEW):
    """Every skew-policy violation as a readable message; empty list when the cluster complies.

    apiservers: {instance name: version string}; components: {instance: (component, version
    string)} for kube-controller-manager / kube-scheduler; kubelets: {node: version string}.
    ``max_kubelet_skew`` may tighten the kubelet window below the policy's 3, never widen it.
    """
    problems = []
    max_kubelet_skew = min(int(max_kubelet_skew), KUBELET_MAX_SKEW)
    parsed_api = {}
    for name, raw in sorted((apiservers or {}).items()):
        version = parse_kube_version(raw)
        if version is None:
            problems.append("kube-apiserver %s reports an unparsable version %r" % (name, raw))
        else:
            parsed_api[name] = version
    if not parsed_api:
        if apiservers:
            return problems
        problems.append("no kube-apiserver version known, so the version skew cannot be checked")
        return problems
    oldest_name, oldest = min(parsed_api.items(), key=lambda item: (item[1], item[0]))
    newest_name, newest = max(parsed_api.items(), key=lambda item: (item[1], item[0]))
    spread = minor_distance(newest, oldest)
    if spread > CONTROL_PLANE_MAX_SKEW:
        values = (_fmt(spread), version_text(newest), newest_name, version_text(oldest), oldest_name,
                  CONTROL_PLANE_MAX_SKEW)
        problems.append("kube-apiserver instances are %s minor versions apart (%s on %s, %s on %s); "
                        "the policy allows %d" % values)

    for name, (component, raw) in sorted((components or {}).items()):
        version = parse_kube_version(raw)
        if version is None:
            problems.append("%s %s reports an unparsable version %r" % (component, name, raw))
            continue
        behind = minor_distance(oldest, version)
        if behind < 0:
            problems.append("%s %s is %s, newer than the oldest kube-apiserver (%s on %s); it must never be newer"
                            % (component, name, version_text(version), version_text(oldest), oldest_name))
        elif behind > CONTROL_PLANE_MAX_SKEW:
            values = (component, name, version_text(version), _fmt(behind), version_text(oldest), oldest_name,
                      CONTROL_PLANE_MAX_SKEW)
            problems.append("%s %s is %s, %s minor versions older than the oldest kube-apiserver (%s on %s); "
                            "the policy allows %d" % values)

    for node, raw in sorted((kubelets or {}).items()):
        version = parse_kube_version(raw)
        if version is None:
            problems.append("kubelet on %s reports an unparsable version %r" % (node, raw))
            continue
        behind = minor_distance(oldest, version)
        if behind < 0:
            problems.append("kubelet on %s is %s, newer than the oldest kube-apiserver (%s on %s); "
                            "a kubelet must never be newer than the apiserver"
                            % (node, version_text(version), version_text(oldest), oldest_name))
        elif behind > max_kubelet_skew:
            problems.append("kubelet on %s is %s, %s minor versions older than the oldest kube-apiserver (%s on %s); "
                            "at most %d allowed" % (node, version_text(version), _fmt(behind), version_text(oldest),
                                                    oldest_name, max_kubelet_skew))
    return problems


def upgrade_step_problem(current, target):
    """None when a control plane at ``current`` may be upgraded to ``target``, else why not.

    Allowed: the same minor (patch upgrades, re-runs) or exactly the next minor. Downgrades and
    minor jumps are refused, as kubeadm refuses them.
    """
    cur, tgt = parse_kube_version(current), parse_kube_version(target)
    if cur is None or tgt is None:
        return "cannot compare versions %r and %r" % (current, target)
    if tgt < cur:
        return "%s is older than the running %s; downgrades are not supported" % (version_text(tgt), version_text(cur))
    distance = minor_distance(tgt, cur)
    if distance > 1:
        return ("%s is %s minor versions ahead of the running %s; upgrade one minor at a time (next: %d.%d)"
                % (version_text(tgt), _fmt(distance), version_text(cur), cur[0], cur[1] + 1))
    return None


def _fmt(number):
    return "different major" if number in (float("inf"), float("-inf")) else "%d" % number
