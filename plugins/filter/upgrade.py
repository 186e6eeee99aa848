# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for upgrades: ``upgrade_plan`` (what an upgrade would do, and every reason it must not),
``etcd_upgrade_plan`` (the same for the etcd members) and ``upgrade_window`` (is a time inside a
maintenance window)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.module_utils._version_skew import (
    KUBELET_MAX_SKEW,
    check_skew,
    parse_kube_version,
    upgrade_step_problem,
    version_text,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import (
    minor_supported,
    parse_k8s_version,
    supported_range_text,
)


def _text(version):
    return version_text(version) if version else "unknown"


def upgrade_plan(health, target, control_plane, workers, upgrade_workers=True):
    """The upgrade plan from a ``cluster_health`` result (versions as the API reports them).

    ``control_plane`` and ``workers`` are the node names of the inventory's hosts. A node is at the
    target when its kubelet reports it and, on a control-plane node, its kube-apiserver static pod runs
    it too. ``problems`` lists every reason to refuse, at once; the caller adds its own (health, packages).
    """
    if not isinstance(health, dict) or not isinstance(health.get("nodes"), list):
        raise AnsibleFilterError("upgrade_plan needs the result of baremetal.kubernetes.cluster_health")
    problems = []
    wanted = parse_k8s_version(target)
    if wanted is None:
        raise AnsibleFilterError("the target version %r is not X.Y.Z (e.g. 1.34.2)" % (target,))
    if not minor_supported(wanted):
        problems.append("k8s_version %s is outside the supported minors %s" % (target, supported_range_text()))
    registered = {node["name"]: node for node in health["nodes"]}
    apiserver_pods = {pod.get("node"): pod.get("version") for pod in health.get("control_plane_pods") or []
                      if pod.get("component") == "kube-apiserver"}

    roles = [(name, "control_plane") for name in control_plane] + [(name, "worker") for name in workers]
    nodes = []
    for name, role in roles:
        node = registered.get(name)
        if node is None:
            problems.append("node %s (inventory, %s) is not registered in the cluster: join it with site.yml "
                            "first, or remove it from the inventory" % (name, role.replace("_", "-")))
            continue
        kubelet = parse_kube_version(node.get("kubelet_version"))
        apiserver = parse_kube_version(apiserver_pods.get(name)) if role == "control_plane" else None
        at_target = kubelet == wanted and (role == "worker" or apiserver == wanted)
        entry = dict(name=name, role=role, kubelet=_text(kubelet), at_target=at_target,
                     ready=bool(node.get("ready")), schedulable=bool(node.get("schedulable", True)))
        if role == "control_plane":
            entry["apiserver"] = _text(apiserver)
        nodes.append(entry)
        for component, version in (("kubelet", kubelet), ("kube-apiserver", apiserver)):
            if version is not None and version > wanted:
                problems.append("node %s runs %s %s, newer than the target %s: downgrades are not supported "
                                "(restore the etcd snapshot taken before the upgrade instead)"
                                % (name, component, version_text(version), target))

    # kubeadm upgrades the control plane one minor at a time, from its lowest version.
    cp_versions = [parse_kube_version(v) for v in
                   [n["kubelet"] for n in nodes if n["role"] == "control_plane"]
                   + [n.get("apiserver") for n in nodes if n["role"] == "control_plane"]
                   + [a.get("version") for a in health.get("apiservers") or [] if a.get("role") == "apiserver"]]
    cp_versions = [v for v in cp_versions if v is not None]
    lowest_cp = min(cp_versions) if cp_versions else None
    if lowest_cp is None:
        problems.append("no control-plane version could be read from the API, so the upgrade step cannot be checked")
    else:
        step = upgrade_step_problem(version_text(lowest_cp), target)
        if step and lowest_cp <= wanted:
            problems.append("target %s: %s (lowest control-plane version)" % (target, step))

    # Kubelets this run does not upgrade must stay within the skew policy of the new control plane.
    upgraded = set(control_plane) | (set(workers) if upgrade_workers else set())
    left = {name: node.get("kubelet_version") for name, node in registered.items() if name not in upgraded}
    for message in check_skew({"after the upgrade": "v" + target}, kubelets=left, max_kubelet_skew=KUBELET_MAX_SKEW):
        problems.append("%s; this run does not upgrade it (%s)" % (
            message, "upgrade_workers=false" if upgrade_workers is False else "not in the inventory"))

    lowest_workers = [parse_kube_version(n["kubelet"]) for n in nodes if n["role"] == "worker"]
    lowest_workers = [v for v in lowest_workers if v is not None]
    pending = [n["name"] for n in nodes if not n["at_target"] and (n["role"] == "control_plane" or upgrade_workers)]
    # A minor upgrade while any node this run upgrades is on an older minor, else a patch upgrade.
    pending_versions = [parse_kube_version(v) for n in nodes if n["name"] in pending
                        for v in (n["kubelet"], n.get("apiserver")) if v]
    pending_versions = [v for v in pending_versions if v is not None]
    if not pending:
        kind = "none"
    elif pending_versions and min(pending_versions)[:2] != wanted[:2]:
        kind = "minor"
    else:
        kind = "patch"
    return dict(
        target=target,
        kind=kind,
        problems=problems,
        nodes=nodes,
        pending=pending,
        current=dict(control_plane=_text(lowest_cp), workers=_text(min(lowest_workers) if lowest_workers else None)),
    )


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(r"^\s*(?:(?P<days>[A-Za-z*][A-Za-z,*-]*)\s+)?"
                        r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
WINDOW_FORMAT = ("'[DAYS] HH:MM-HH:MM' with DAYS a day (Sat), a list (Sat,Sun), a range (Mon-Fri) or * for every "
                 "day, e.g. 'Sat 02:00-06:00'; a window may cross midnight (it then belongs to the day it starts)")


ETCD_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def _etcd_version(text):
    match = ETCD_VERSION.match(str(text or "").strip())
    return tuple(int(part) for part in match.groups()) if match else None


def etcd_upgrade_plan(health, target, hosts):
    """The plan of a rolling etcd binary upgrade from an ``etcd_health`` result.

    ``hosts`` are the inventory hosts of the endpoints ``etcd_health`` was given, in the same order.
    Members already at ``target`` are skipped (a resumed run); the others go one at a time, followers
    first and the leader last, so the cluster changes leader once. ``problems`` lists every reason to
    refuse: an unhealthy member, a downgrade, or more than one minor up (etcd upgrades one minor at a time).
    """
    if not isinstance(health, dict) or not isinstance(health.get("members"), list):
        raise AnsibleFilterError("etcd_upgrade_plan needs the result of baremetal.kubernetes.etcd_health")
    wanted = _etcd_version(target)
    if wanted is None:
        raise AnsibleFilterError("the target etcd version %r is not X.Y.Z (e.g. 3.5.16)" % (target,))
    hosts = list(hosts)
    if len(hosts) != len(health["members"]):
        raise AnsibleFilterError("etcd_upgrade_plan got %d hosts for %d members" % (len(hosts), len(health["members"])))
    problems, versions, at_target, pending, leader = [], {}, [], [], ""
    for host, member in zip(hosts, health["members"]):
        version = _etcd_version(member.get("version"))
        versions[host] = member.get("version") or "unknown"
        leader = host if member.get("is_leader") else leader
        if not member.get("healthy"):
            problems.append("etcd member %s (%s) is not healthy: %s. Repair it first (etcd_health names the cause)"
                            % (host, member.get("endpoint", "?"), member.get("reason") or "no reason given"))
        elif version is None:
            problems.append("etcd member %s reports no version (%r)" % (host, member.get("version")))
        elif version == wanted:
            at_target.append(host)
        elif version > wanted:
            problems.append("etcd member %s runs %s, newer than etcd_version %s: etcd is not downgraded by replacing "
                            "its binary. Set etcd_version to %s (or restore a snapshot with etcd_restore.yml)"
                            % (host, _etcd_text(version), target, _etcd_text(version)))
        elif version[0] != wanted[0] or wanted[1] - version[1] > 1:
            problems.append("etcd member %s runs %s and etcd_version %s is more than one minor up: etcd upgrades one "
                            "minor at a time. Upgrade to the newest %d.%d.x first, then to %s"
                            % (host, _etcd_text(version), target, version[0], version[1] + 1, target))
        else:
            pending.append(host)
    # Followers first, the leader last: leadership moves once, not with every restart.
    pending.sort(key=lambda host: host == leader)
    return {"problems": problems, "pending": [] if problems else pending, "at_target": at_target,
            "versions": versions, "leader": leader}


def _etcd_text(version):
    return ".".join(str(part) for part in version)


def _minutes(text, window):
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise AnsibleFilterError("maintenance window %r: %s is not a time of day (00:00-24:00)" % (window, text))
    return hours * 60 + minutes


def _days(spec, window):
    if spec in (None, "*"):
        return set(range(7))
    days = set()
    for part in spec.lower().split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or any(b[:3] not in DAYS or len(b) < 3 for b in bounds):
            raise AnsibleFilterError("maintenance window %r: %r is not a day; write %s" % (window, part, WINDOW_FORMAT))
        first, last = DAYS.index(bounds[0][:3]), DAYS.index(bounds[-1][:3])
        day = first
        days.add(day)
        while day != last:
            day = (day + 1) % 7
            days.add(day)
    return days


def upgrade_window(window, now):
    """Whether ``now`` (ISO 8601 local time, e.g. ``now().isoformat()``) is inside ``window``.

    An empty window means always. Returns ``{inside, window, now, reason}``.
    """
    window = (window or "").strip()
    try:
        moment = datetime.fromisoformat(str(now))
    except ValueError:
        raise AnsibleFilterError("upgrade_window needs the time as ISO 8601, got %r" % (now,)) from None
    if not window:
        return dict(inside=True, window="", now=moment.isoformat(timespec="minutes"),
                    reason="no maintenance window set (control_plane_upgrade_window): always inside")
    match = _WINDOW_RE.match(window)
    if not match:
        hint = ""
        if ":" not in window:
            # What `-e control_plane_upgrade_window='Sat 02:00-06:00'` gives: key=value ends at the space.
            hint = ("; on the command line give it as JSON, -e '{\"control_plane_upgrade_window\": "
                    "\"Sat 02:00-06:00\"}', or set it in the inventory")
        raise AnsibleFilterError("maintenance window %r: write %s%s" % (window, WINDOW_FORMAT, hint))
    days = _days(match.group("days"), window)
    start, end = _minutes(match.group("start"), window), _minutes(match.group("end"), window)
    if start == end:
        raise AnsibleFilterError("maintenance window %r is empty (it starts when it ends)" % window)
    minute = moment.hour * 60 + moment.minute
    if start < end:
        inside = moment.weekday() in days and start <= minute < end
    else:  # across midnight: the evening of a listed day, or the early hours of the day after one
        yesterday = (moment - timedelta(days=1)).weekday()
        inside = (moment.weekday() in days and minute >= start) or (yesterday in days and minute < end)
    stamp = moment.strftime("%a %H:%M")
    reason = "%s is %s the maintenance window %s" % (stamp, "inside" if inside else "outside", window)
    return dict(inside=inside, window=window, now=moment.isoformat(timespec="minutes"), reason=reason)


class FilterModule:
    def filters(self):
        return {"upgrade_plan": upgrade_plan, "etcd_upgrade_plan": etcd_upgrade_plan, "upgrade_window": upgrade_window}
