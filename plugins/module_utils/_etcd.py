# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""etcd client helper shared by the etcd_health and etcd_snapshot modules.

It drives ``etcdctl`` (v3 API, JSON output) over mutual TLS. The role installs etcdctl on every
member, and it is the only client that implements everything both modules need with the same TLS
code as etcd itself: endpoint status and health, member and alarm lists, the snapshot stream and
``snapshot status``. The parsing is kept in pure functions so it can be unit tested without etcd.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import socket
import time
from urllib.parse import urlparse

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import ModuleError

ETCD_CLIENT_ARGUMENT_SPEC = dict(
    endpoints=dict(type="list", elements="str", required=True),
    cacert=dict(type="path", default="/etc/etcd/pki/ca.crt"),
    cert=dict(type="path", default="/etc/etcd/pki/healthcheck-client.crt"),
    key=dict(type="path", default="/etc/etcd/pki/healthcheck-client.key", no_log=False),
    etcdctl=dict(type="path", default="etcdctl"),
    command_timeout=dict(type="int", default=5),
)

SNAPSHOT_HASH_SIZE = 32


class EtcdError(ModuleError):
    """A failure the module reports with fail_json: the message plus details (rc, stderr) as its result."""


def quorum(size):
    """Members that must agree for a cluster of ``size`` members to accept writes."""
    return size // 2 + 1


def endpoint_address(endpoint):
    """(host, port) of an endpoint URL such as https://10.0.0.1:2379."""
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise EtcdError("endpoint %r is not a URL like https://10.0.0.1:2379" % endpoint)
    return parsed.hostname, parsed.port or 2379


def probe_tcp(endpoint, timeout=2.0):
    """Explain why an endpoint does not answer at the TCP level, or return None when it accepts."""
    host, port = endpoint_address(endpoint)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return "connection refused on %s:%s: nothing listens there (etcd is stopped or crashed)" % (host, port)
    except socket.timeout:
        return "no answer from %s:%s within %.0f s (host down, firewall or network partition)" % (host, port, timeout)
    except OSError as exc:
        return "cannot connect to %s:%s: %s" % (host, port, exc.strerror or exc)


def _loads(text, what):
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EtcdError("etcdctl %s printed output that is not JSON: %s" % (what, text[:300])) from exc


def parse_endpoint_status(text):
    """``etcdctl endpoint status -w json`` -> {endpoint: status dict}."""
    data = _loads(text, "endpoint status") or []
    result = {}
    for item in data:
        status = item.get("Status") or {}
        header = status.get("header") or {}
        result[item["Endpoint"]] = dict(
            member_id="%x" % header.get("member_id", 0),
            cluster_id="%x" % header.get("cluster_id", 0),
            revision=header.get("revision", 0),
            version=status.get("version", ""),
            db_size=status.get("dbSize", 0),
            db_size_in_use=status.get("dbSizeInUse", status.get("dbSize", 0)),
            leader_id="%x" % status.get("leader", 0),
            is_leader=bool(status.get("leader")) and status.get("leader") == header.get("member_id"),
            raft_term=status.get("raftTerm", 0),
            raft_index=status.get("raftIndex", 0),
            raft_applied_index=status.get("raftAppliedIndex", status.get("raftIndex", 0)),
            errors=list(status.get("errors") or []),
        )
    return result


_STATUS_FAILURE = re.compile(r"Failed to get the status of endpoint (\S+) \((.*)\)")


def parse_status_failures(stderr):
    """The per-endpoint reasons etcdctl endpoint status prints on stderr for endpoints it could not reach."""
    return dict(_STATUS_FAILURE.findall(stderr or ""))


def parse_endpoint_health(text):
    """``etcdctl endpoint health -w json`` -> {endpoint: (healthy, error)}."""
    data = _loads(text, "endpoint health") or []
    return {item["endpoint"]: (bool(item.get("health")), item.get("error") or "") for item in data}


def parse_member_list(text):
    """``etcdctl member list -w json`` -> (cluster_id, [member dicts])."""
    data = _loads(text, "member list") or {}
    members = []
    for item in data.get("members") or []:
        members.append(
            dict(
                id="%x" % item.get("ID", 0),
                name=item.get("name", ""),
                peer_urls=list(item.get("peerURLs") or []),
                client_urls=list(item.get("clientURLs") or []),
                is_learner=bool(item.get("isLearner")),
                started=bool(item.get("name")),
            )
        )
    return "%x" % (data.get("header") or {}).get("cluster_id", 0), members


def parse_alarm_list(text):
    """``etcdctl alarm list -w json`` -> [{'member_id', 'alarm'}]."""
    data = _loads(text, "alarm list") or {}
    return [
        dict(member_id="%x" % item.get("memberID", 0), alarm=str(item.get("alarm", "")))
        for item in data.get("alarms") or []
    ]


def parse_snapshot_status(text):
    """``etcdctl snapshot status -w json`` (or etcdutl) -> hash, revision, total_keys, total_size."""
    data = _loads(text, "snapshot status")
    if not isinstance(data, dict) or "revision" not in data:
        raise EtcdError("snapshot status returned no revision: %r" % (text or "")[:300])
    return dict(
        hash=int(data.get("hash", 0)),
        revision=int(data["revision"]),
        total_keys=int(data.get("totalKey", 0)),
        total_size=int(data.get("totalSize", 0)),
    )


def prefix_range_end(prefix):
    """The range end that selects every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    raw = bytearray(prefix.encode("utf-8", "surrogateescape"))
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        raise EtcdError("key prefix %r has no range end that etcdctl can take as an argument" % prefix)
    raw[-1] += 1
    return bytes(raw).decode("utf-8", "surrogateescape")


def parse_range(text):
    """``etcdctl get <key> <range end> -w json`` -> revision, kvs [(key, base64 value)], more, count.

    ``revision`` is the store's current revision (also when the read was pinned with ``--rev``); ``count``
    is the number of keys in the whole range, ``more`` whether ``--limit`` cut the answer short. Keys are
    decoded with surrogateescape, so they round-trip into an etcdctl argument byte for byte.
    """
    data = _loads(text, "get")
    if not isinstance(data, dict) or "revision" not in (data.get("header") or {}):
        raise EtcdError("etcdctl get returned no revision: %r" % (text or "")[:300])
    kvs = []
    for item in data.get("kvs") or []:
        key = base64.b64decode(item.get("key", "")).decode("utf-8", "surrogateescape")
        kvs.append((key, item.get("value", "")))
    return dict(revision=int(data["header"]["revision"]), kvs=kvs, more=bool(data.get("more")),
                count=int(data.get("count", len(kvs))))


def value_head(encoded, size):
    """The first ``size`` bytes of a base64 value, decoding only the characters that hold them."""
    chunk = encoded[:(size + 2) // 3 * 4]
    try:
        return base64.b64decode(chunk)[:size]
    except (binascii.Error, ValueError) as exc:
        raise EtcdError("etcdctl printed a value that is not base64: %r" % chunk[:40]) from exc


def verify_snapshot_integrity(path, chunk_size=1024 * 1024):
    """Check the sha256 that ``etcdctl snapshot save`` appends to the database.

    ``snapshot status`` only reads the bbolt pages it needs, so a flipped byte in the middle of
    the file goes unnoticed; ``snapshot restore`` would then refuse the file. Checking the
    trailer here catches that before a restore stops any member. Returns the sha256 hex digest of
    the whole file.
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise EtcdError("snapshot %s cannot be read: %s" % (path, exc.strerror or exc)) from exc
    if size <= SNAPSHOT_HASH_SIZE:
        raise EtcdError("snapshot %s is %d bytes: too small to be an etcd snapshot" % (path, size))
    body = hashlib.sha256()
    whole = hashlib.sha256()
    remaining = size - SNAPSHOT_HASH_SIZE
    with open(path, "rb") as stream:
        while remaining > 0:
            chunk = stream.read(min(chunk_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            body.update(chunk)
            whole.update(chunk)
        trailer = stream.read(SNAPSHOT_HASH_SIZE)
    whole.update(trailer)
    if remaining or trailer != body.digest():
        raise EtcdError(
            "snapshot %s is corrupted: its sha256 trailer does not match its content "
            "(truncated or modified after it was taken); etcd would refuse to restore it" % path
        )
    return whole.hexdigest()


def select_prunable(entries, keep=None, max_age=None, now=None, protect=None):
    """Which snapshots to delete.

    ``entries`` are (path, mtime) pairs. The newest ``keep`` are kept; any older than ``max_age``
    seconds are deleted (when set); ``protect`` (the snapshot just taken) is never deleted.
    Returns the paths to delete, oldest first.
    """
    now = time.time() if now is None else now
    ordered = sorted(entries, key=lambda entry: (entry[1], entry[0]), reverse=True)
    delete = []
    for position, (path, mtime) in enumerate(ordered):
        if path == protect:
            continue
        too_many = keep is not None and position >= keep
        too_old = max_age is not None and now - mtime > max_age
        if too_many or too_old:
            delete.append(path)
    return sorted(delete, key=lambda path: dict(entries)[path])


class EtcdCtl:
    """Runs etcdctl with TLS client credentials through AnsibleModule.run_command."""

    def __init__(self, module, tls=True):
        self.module = module
        params = module.params
        self.cacert = params["cacert"]
        self.cert = params["cert"]
        self.key = params["key"]
        self.timeout = params["command_timeout"]
        self.binary = module.get_bin_path(params["etcdctl"], required=False) or params["etcdctl"]
        if not os.path.exists(self.binary):
            raise EtcdError("etcdctl not found (%s): install it or set the etcdctl option" % params["etcdctl"])
        for option in ("cacert", "cert", "key") if tls else ():
            if not os.path.isfile(params[option]):
                raise EtcdError("%s %s does not exist or is not a file" % (option, params[option]))

    def base(self, endpoints, timeout=None):
        timeout = timeout or self.timeout
        return [
            self.binary,
            "--endpoints=%s" % ",".join(endpoints),
            "--cacert=%s" % self.cacert,
            "--cert=%s" % self.cert,
            "--key=%s" % self.key,
            "--dial-timeout=%ds" % min(timeout, 5),
            "--command-timeout=%ds" % timeout,
        ]

    def run(self, endpoints, args, check=True, timeout=None):
        rc, out, err = self.module.run_command(
            self.base(endpoints, timeout) + list(args), environ_update=dict(ETCDCTL_API="3")
        )
        if check and rc != 0:
            raise EtcdError(
                "etcdctl %s failed against %s: %s" % (" ".join(args[:2]), ",".join(endpoints), _last_error(err)),
                rc=rc, stderr=err,
            )
        return rc, out, err

    def snapshot_status(self, path):
        """Hash, revision and key count of a snapshot file, with etcdutl when the release ships it.

        The etcdutl of the same release as the etcdctl in use (next to it) comes first: etcd 3.6's etcdctl
        no longer reads snapshot files, and an etcdctl given by path need not be on PATH.
        """
        sibling = os.path.join(os.path.dirname(self.binary), "etcdutl")
        if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
            etcdutl = sibling
        else:
            etcdutl = self.module.get_bin_path("etcdutl", required=False)
        if etcdutl:
            command = [etcdutl, "snapshot", "status", path, "-w", "json"]
        else:
            # etcd 3.4 has no etcdutl; its etcdctl reads the file locally.
            command = [self.binary, "snapshot", "status", path, "-w", "json"]
        rc, out, err = self.module.run_command(command, environ_update=dict(ETCDCTL_API="3"))
        if rc != 0:
            raise EtcdError("snapshot %s failed verification: %s" % (path, _last_error(err)), rc=rc, stderr=err)
        return parse_snapshot_status(out)


def _last_error(stderr):
    """The most useful line of etcdctl's stderr (it logs JSON warnings before the error)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("Error:", "Failed")):
            return line
    return lines[-1] if lines else "no error output"


def collect_health(ctl, endpoints, probe=None):
    """Status of every endpoint, with a precise reason for each one that is not healthy."""
    probe = probe or probe_tcp
    rc, out, err = ctl.run(endpoints, ["endpoint", "status", "-w", "json"], check=False)
    statuses = parse_endpoint_status(out)
    failures = parse_status_failures(err)
    rc, out, err = ctl.run(endpoints, ["endpoint", "health", "-w", "json"], check=False)
    health = parse_endpoint_health(out)
    alarms = []
    reachable = [endpoint for endpoint in endpoints if endpoint in statuses]
    if reachable:
        rc, out, err = ctl.run(reachable, ["alarm", "list", "-w", "json"], check=False)
        if rc == 0:
            alarms = parse_alarm_list(out)
    return summarize(endpoints, statuses, failures, health, alarms, probe)


def summarize(endpoints, statuses, failures, health, alarms, probe=None):
    """Combine the etcdctl views into one report per endpoint plus a cluster verdict."""
    members = []
    leaders = set()
    for endpoint in endpoints:
        status = statuses.get(endpoint)
        healthy, health_error = health.get(endpoint, (False, "no health answer"))
        entry = dict(endpoint=endpoint, healthy=False, reason="")
        if status is None:
            reason = failures.get(endpoint) or health_error or "no status answer"
            detail = probe(endpoint) if probe else None
            entry["reason"] = detail or ("status request failed: %s" % reason)
        else:
            entry.update(status)
            member_alarms = sorted(a["alarm"] for a in alarms if a["member_id"] == status["member_id"])
            entry["alarms"] = member_alarms
            if status["leader_id"] in ("0", ""):
                entry["reason"] = "member has no leader (lost quorum or still electing)"
            elif member_alarms:
                entry["reason"] = "alarm(s) raised: %s" % ", ".join(member_alarms)
            elif status["errors"]:
                entry["reason"] = "member reports errors: %s" % "; ".join(status["errors"])
            elif not healthy:
                entry["reason"] = "health check failed: %s" % (health_error or "unknown error")
            else:
                entry["healthy"] = True
                leaders.add(status["leader_id"])
        members.append(entry)
    cluster_alarms = sorted({a["alarm"] for a in alarms})
    healthy_count = sum(1 for member in members if member["healthy"])
    problems = ["%s: %s" % (m["endpoint"], m["reason"]) for m in members if not m["healthy"]]
    if len(leaders) > 1:
        problems.append("members disagree about the leader: %s" % ", ".join(sorted(leaders)))
    return dict(
        members=members,
        healthy=not problems,
        healthy_count=healthy_count,
        member_count=len(members),
        has_quorum=healthy_count >= quorum(len(members)) and len(leaders) == 1,
        leader=sorted(leaders)[0] if len(leaders) == 1 else "",
        alarms=cluster_alarms,
        problems=problems,
    )
