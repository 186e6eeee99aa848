# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory etcd cluster behind a fake ``etcdctl``, for the etcd_* module tests.

``FakeEtcd.run_command`` replaces ``AnsibleModule.run_command``: it answers the etcdctl invocations
the modules make (endpoint status/health, alarm list, member list, snapshot save/status) with the
JSON and stderr real etcdctl 3.4 prints (captured from etcd 3.4.23).
"""

from __future__ import annotations

import hashlib
import json

CLUSTER_ID = 15118495548433857066


def snapshot_bytes(payload=b"bbolt-db-pages" * 100):
    """A file shaped like `etcdctl snapshot save` output: the database plus its sha256."""
    return payload + hashlib.sha256(payload).digest()


class FakeEtcd:
    def __init__(self, size=3):
        self.members = {}
        for index in range(1, size + 1):
            endpoint = "https://10.0.0.1%d:2379" % index
            self.members[endpoint] = dict(id=1000 + index, name="m%d" % index, up=True, healthy=True,
                                          peer="https://10.0.0.1%d:2380" % index)
        self.leader = 1001
        self.alarms = []
        self.revision = 1234
        self.db_size = 20480
        self.calls = []
        self.snapshot_payload = snapshot_bytes()
        self.status_output = None
        self.heal_after = None

    @property
    def endpoints(self):
        return list(self.members)

    def status(self, endpoint):
        member = self.members[endpoint]
        return {"Endpoint": endpoint, "Status": {
            "header": {"cluster_id": CLUSTER_ID, "member_id": member["id"], "revision": self.revision, "raft_term": 2},
            "version": "3.4.23", "dbSize": self.db_size, "leader": self.leader, "raftIndex": 40,
            "raftTerm": 2, "raftAppliedIndex": 40, "dbSizeInUse": self.db_size // 2}}

    def run_command(self, args, environ_update=None, **kwargs):
        self.calls.append(list(args))
        options = dict(arg[2:].split("=", 1) for arg in args[1:] if arg.startswith("--") and "=" in arg)
        words = [arg for arg in args[1:] if not arg.startswith("-") and arg != "json"]
        endpoints = options.get("endpoints", "").split(",")
        if words[:2] == ["endpoint", "status"]:
            if self.heal_after is not None:
                self.heal_after -= 1
                if self.heal_after <= 0:
                    for member in self.members.values():
                        member.update(up=True, healthy=True)
            up = [e for e in endpoints if self.members[e]["up"]]
            err = "".join("Failed to get the status of endpoint %s (context deadline exceeded)\n" % e
                          for e in endpoints if e not in up)
            return (1 if err else 0), json.dumps([self.status(e) for e in up]), err
        if words[:2] == ["endpoint", "health"]:
            report = []
            for endpoint in endpoints:
                member = self.members[endpoint]
                entry = {"endpoint": endpoint, "health": member["up"] and member["healthy"], "took": "2ms"}
                if not entry["health"]:
                    entry["error"] = "context deadline exceeded" if not member["up"] else "etcdserver: unhealthy"
                report.append(entry)
            failed = any(not entry["health"] for entry in report)
            return (1 if failed else 0), json.dumps(report), "Error: unhealthy cluster\n" if failed else ""
        if words[:2] == ["alarm", "list"]:
            alarms = [{"memberID": member, "alarm": alarm} for member, alarm in self.alarms]
            return 0, json.dumps({"alarms": alarms} if alarms else {}), ""
        if words[:2] == ["member", "list"]:
            members = [{"ID": m["id"], "name": m["name"], "peerURLs": [m["peer"]], "clientURLs": [e]}
                       for e, m in self.members.items()]
            return 0, json.dumps({"header": {"cluster_id": CLUSTER_ID}, "members": members}), ""
        if words[:2] == ["snapshot", "save"]:
            with open(words[2], "wb") as stream:
                stream.write(self.snapshot_payload)
            return 0, "Snapshot saved at %s\n" % words[2], ""
        if words[:2] == ["snapshot", "status"]:
            if self.status_output is not None:
                return 1, "", self.status_output
            return 0, json.dumps({"hash": 3619724649, "revision": self.revision, "totalKey": 1005,
                                  "totalSize": self.db_size}), ""
        raise AssertionError("unexpected etcdctl call: %r" % (args,))
