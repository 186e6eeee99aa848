#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_snapshot
short_description: Take, verify and prune etcd snapshots over mutual TLS
version_added: 0.1.0
description:
  - With I(state=present), takes a snapshot from the first B(healthy) member of I(endpoints), verifies it,
    moves it into place atomically and prunes older snapshots.
  - "Verification before success is reported: the sha256 trailer that etcd appends to every snapshot must
    match the content (this catches truncated or modified files, which C(snapshot status) alone does not),
    and C(etcdutl snapshot status) must read hash, revision and key count. The etcdutl next to I(etcdctl)
    comes first (etcd 3.6's etcdctl no longer reads snapshot files), then one on C(PATH). etcd 3.4 ships no
    etcdutl, so the module then falls back to C(etcdctl snapshot status -w json)."
  - The snapshot download may take ten times I(command_timeout).
  - The snapshot is written under a temporary hidden name in I(dest) and renamed only after verification,
    so a half-written or unverified file never carries the final name.
  - Refuses to start, with a clear error, when I(dest) has less free space than the member's database size
    times I(space_margin).
  - Pruning keeps the newest I(keep) snapshots and/or deletes those older than I(max_age_days); the snapshot
    just taken is never deleted.
  - With I(state=verified), only verifies an existing snapshot file (used before a restore stops anything).
  - "Why C(etcdctl) and not the v3 JSON gateway: see M(baremetal.kubernetes.etcd_health); the gateway has no
    snapshot stream."
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
requirements:
  - etcdctl (v3 API; etcd 3.4 or later) on the host that runs the module; etcdutl (etcd 3.5 and later) is used
    when it is next to etcdctl or on C(PATH)
options:
  state:
    description:
      - C(present) takes a new snapshot (changed); C(verified) checks I(path) and changes nothing.
    type: str
    choices: [present, verified]
    default: present
  endpoints:
    description:
      - Client URLs to take the snapshot from; the first healthy one is used. Required with I(state=present).
    type: list
    elements: str
    # Overrides the etcd_client fragment, where endpoints is required (required_if in main() instead).
    required: false
  dest:
    description: Directory for snapshots (must exist). Required with I(state=present).
    type: path
  prefix:
    description: File name prefix; snapshots are named C(<prefix>-<UTC timestamp>.db) and only such files are pruned.
    type: str
    default: etcd-snapshot
  path:
    description: Snapshot file to check with I(state=verified).
    type: path
  keep:
    description: Keep at most this many snapshots with I(prefix) in I(dest), the new one included. C(0) disables.
    type: int
    default: 0
  max_age_days:
    description: Delete snapshots with I(prefix) older than this many days. C(0) disables.
    type: float
    default: 0
  space_margin:
    description: Free space required in I(dest), as a multiple of the member's database size.
    type: float
    default: 1.2
  min_interval:
    description:
      - With I(state=present), seconds within which an existing snapshot is recent enough. When the newest
        snapshot with I(prefix) in I(dest) is younger than this and verifies (sha256 trailer and
        C(snapshot status)), it is returned with C(reused=true) and C(changed=false) instead of taking a
        new one; a resumed maintenance run then does not add a second backup. A recent file that fails
        verification is reported in C(warnings) and a new snapshot is taken.
      - C(0) always takes a new snapshot.
    type: int
    default: 0
extends_documentation_fragment:
  - baremetal.kubernetes.etcd_client
attributes:
  check_mode:
    support: full
    description:
      - With I(state=present), checks the member and the free space, and reports the snapshot it would take
        and the files it would prune, without writing or deleting anything.
  diff_mode:
    support: none
    description: A snapshot is a new file; there is nothing to diff.
seealso:
  - module: baremetal.kubernetes.etcd_health
"""

EXAMPLES = r"""
- name: Take a verified snapshot, keep the newest 7
  baremetal.kubernetes.etcd_snapshot:
    endpoints: [https://127.0.0.1:2379]
    dest: /var/backups/etcd
    keep: 7
  register: snap

- name: Refuse a damaged snapshot before a restore
  baremetal.kubernetes.etcd_snapshot:
    state: verified
    path: /var/backups/etcd/etcd-snapshot-20250101T000000Z.db
"""

RETURN = r"""
path:
  description: Absolute path of the snapshot.
  returned: success
  type: str
  sample: /var/backups/etcd/etcd-snapshot-20250101T000000Z.db
size:
  description: Size in bytes (with I(state=present) in check mode, the member's database size).
  returned: success
  type: int
revision:
  description: Store revision contained in the snapshot.
  returned: success
  type: int
hash:
  description: Database hash as reported by C(snapshot status).
  returned: success, except in check mode
  type: int
total_keys:
  description: Number of keys in the snapshot's database (including etcd's internal keys).
  returned: success, except in check mode
  type: int
sha256:
  description: sha256 of the whole file.
  returned: success, except in check mode
  type: str
endpoint:
  description: The member the snapshot was taken from.
  returned: state=present
  type: str
duration:
  description: Seconds spent taking and verifying the snapshot.
  returned: state=present
  type: float
verify_duration:
  description: Seconds spent verifying.
  returned: success, except in check mode
  type: float
pruned:
  description: Snapshots deleted (or that would be deleted, in check mode).
  returned: state=present
  type: list
  elements: str
reused:
  description: Whether an existing snapshot younger than I(min_interval) was returned instead of a new one.
  returned: state=present
  type: bool
  sample: false
taken_at:
  description: When the snapshot file was written (UTC, ISO 8601; in check mode, now).
  returned: success
  type: str
  sample: "2026-11-28T02:00:04Z"
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._etcd import (
    ETCD_CLIENT_ARGUMENT_SPEC,
    EtcdCtl,
    EtcdError,
    collect_health,
    select_prunable,
    verify_snapshot_integrity,
)


def iso_utc(stamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def verify(ctl, path):
    started = time.monotonic()
    sha256 = verify_snapshot_integrity(path)
    result = ctl.snapshot_status(path)
    result.update(sha256=sha256, path=path, size=os.path.getsize(path), taken_at=iso_utc(os.path.getmtime(path)))
    result["verify_duration"] = round(time.monotonic() - started, 3)
    return result


def free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def existing_snapshots(dest, prefix):
    pattern = re.compile(r"^%s-.+\.db$" % re.escape(prefix))
    entries = []
    for name in os.listdir(dest):
        full = os.path.join(dest, name)
        if pattern.match(name) and os.path.isfile(full):
            entries.append((full, os.path.getmtime(full)))
    return entries


def snapshot_name(dest, prefix, now=None):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    path = os.path.join(dest, "%s-%s.db" % (prefix, stamp))
    counter = 1
    while os.path.exists(path):
        path = os.path.join(dest, "%s-%s-%d.db" % (prefix, stamp, counter))
        counter += 1
    return path


def prune(module, dest, prefix, protect):
    params = module.params
    keep = params["keep"] or None
    max_age = params["max_age_days"] * 86400 if params["max_age_days"] else None
    if keep is None and max_age is None:
        return []
    entries = existing_snapshots(dest, prefix)
    if protect not in dict(entries):
        # Check mode: the snapshot that would be taken counts towards keep.
        entries.append((protect, time.time()))
    doomed = select_prunable(entries, keep=keep, max_age=max_age, protect=protect)
    if not module.check_mode:
        for path in doomed:
            os.unlink(path)
    return doomed


def recent(module, ctl, now=None):
    """The newest snapshot younger than min_interval that verifies, as a result; else None."""
    params = module.params
    if not params["min_interval"]:
        return None
    now = time.time() if now is None else now
    entries = sorted(existing_snapshots(params["dest"], params["prefix"]), key=lambda entry: entry[1])
    if not entries or now - entries[-1][1] >= params["min_interval"]:
        return None
    path, mtime = entries[-1]
    try:
        result = verify(ctl, path)
    except EtcdError as exc:
        module.warn("snapshot %s is younger than min_interval (%d s) but does not verify (%s): taking a new one"
                    % (path, params["min_interval"], exc.msg))
        return None
    result.update(changed=False, reused=True, age=round(now - mtime, 1), pruned=[], duration=0.0)
    return result


def take(module, ctl):
    params = module.params
    dest, prefix = params["dest"], params["prefix"]
    if not os.path.isdir(dest):
        raise EtcdError("snapshot directory %s does not exist: create it first (the etcd role does)" % dest)
    reused = recent(module, ctl)
    if reused is not None:
        return reused
    report = collect_health(ctl, params["endpoints"])
    source = next((m for m in report["members"] if m["healthy"]), None)
    if source is None:
        raise EtcdError(
            "no healthy member to take a snapshot from: %s" % "; ".join(report["problems"]), problems=report["problems"]
        )
    needed = int(source["db_size"] * params["space_margin"]) + 4096
    available = free_bytes(dest)
    if available < needed:
        raise EtcdError(
            "not enough free space in %s for a snapshot: %d bytes free, %d needed (database of %s is %d bytes, "
            "times space_margin %.2f). Free space or choose another dest."
            % (dest, available, needed, source["endpoint"], source["db_size"], params["space_margin"]),
            free_bytes=available, needed_bytes=needed,
        )
    path = snapshot_name(dest, prefix)
    if module.check_mode:
        pruned = prune(module, dest, prefix, protect=path)
        return dict(changed=True, path=path, size=source["db_size"], revision=source["revision"],
                    endpoint=source["endpoint"], pruned=pruned, duration=0.0, reused=False,
                    taken_at=iso_utc(time.time()))

    started = time.monotonic()
    temporary = os.path.join(dest, ".%s.partial" % os.path.basename(path))
    try:
        ctl.run([source["endpoint"]], ["snapshot", "save", temporary], timeout=params["command_timeout"] * 10)
        os.chmod(temporary, 0o600)
        result = verify(ctl, temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.rename(temporary, path)
        directory = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        for leftover in (temporary, temporary + ".part"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    result.update(
        changed=True,
        reused=False,
        path=path,
        endpoint=source["endpoint"],
        duration=round(time.monotonic() - started, 3),
        pruned=prune(module, dest, prefix, protect=path),
    )
    return result


def main():
    argument_spec = dict(ETCD_CLIENT_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type="str", choices=["present", "verified"], default="present"),
        endpoints=dict(type="list", elements="str"),
        dest=dict(type="path"),
        prefix=dict(type="str", default="etcd-snapshot"),
        path=dict(type="path"),
        keep=dict(type="int", default=0),
        max_age_days=dict(type="float", default=0),
        space_margin=dict(type="float", default=1.2),
        min_interval=dict(type="int", default=0),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "present", ("endpoints", "dest")), ("state", "verified", ("path",))],
    )
    if module.params["keep"] < 0 or module.params["max_age_days"] < 0 or module.params["min_interval"] < 0:
        module.fail_json(msg="keep, max_age_days and min_interval must be 0 (disabled) or positive")
    try:
        if module.params["state"] == "verified":
            result = verify(EtcdCtl(module, tls=False), module.params["path"])
            result["changed"] = False
        else:
            result = take(module, EtcdCtl(module))
    except Exception as exc:  # every failure ends here, in the one fail_json of the module
        fail_from_error(module, exc, "etcd_snapshot")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
