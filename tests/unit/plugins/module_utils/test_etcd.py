# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsing, integrity, pruning and health summary of the etcd module_utils (no etcd needed)."""

from __future__ import annotations

import socket

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _etcd as etcd
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.etcd_fake import snapshot_bytes

# Captured from etcdctl 3.4.23 (one member up, one endpoint with nothing listening).
STATUS_JSON = (
    '[{"Endpoint":"https://10.0.0.11:2379","Status":{"header":{"cluster_id":15118495548433857066,'
    '"member_id":13668033151171901709,"revision":1,"raft_term":2},"version":"3.4.23","dbSize":20480,'
    '"leader":13668033151171901709,"raftIndex":4,"raftTerm":2,"raftAppliedIndex":4,"dbSizeInUse":16384}}]'
)
STATUS_STDERR = (
    '{"level":"warn","msg":"retrying of unary invoker failed"}\n'
    "Failed to get the status of endpoint https://10.0.0.12:2379 (context deadline exceeded)\n"
)
HEALTH_JSON = (
    '[{"endpoint":"https://10.0.0.11:2379","health":true,"took":"2.3ms"},'
    '{"endpoint":"https://10.0.0.12:2379","health":false,"took":"5.0s","error":"context deadline exceeded"}]'
)
MEMBERS_JSON = (
    '{"header":{"cluster_id":15118495548433857066},"members":[{"ID":13668033151171901709,"name":"m1",'
    '"peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]},'
    '{"ID":255,"peerURLs":["https://10.0.0.14:2380"]}]}'
)


def test_parse_endpoint_status():
    status = etcd.parse_endpoint_status(STATUS_JSON)["https://10.0.0.11:2379"]
    assert status["member_id"] == "bdaf9f7e7e2b2c0d" or status["member_id"] == "%x" % 13668033151171901709
    assert status["cluster_id"] == "%x" % 15118495548433857066
    assert status["is_leader"] is True
    assert (status["db_size"], status["db_size_in_use"], status["raft_index"], status["version"]) == (
        20480, 16384, 4, "3.4.23")


def test_parse_empty_and_broken_output():
    assert etcd.parse_endpoint_status("") == {}
    with pytest.raises(etcd.EtcdError, match="not JSON"):
        etcd.parse_endpoint_status("Error: context deadline exceeded")


def test_parse_status_failures_from_stderr():
    assert etcd.parse_status_failures(STATUS_STDERR) == {"https://10.0.0.12:2379": "context deadline exceeded"}


def test_parse_endpoint_health():
    assert etcd.parse_endpoint_health(HEALTH_JSON) == {
        "https://10.0.0.11:2379": (True, ""),
        "https://10.0.0.12:2379": (False, "context deadline exceeded"),
    }


def test_parse_member_list_marks_unstarted_members():
    cluster_id, members = etcd.parse_member_list(MEMBERS_JSON)
    assert cluster_id == "%x" % 15118495548433857066
    assert [(m["name"], m["started"]) for m in members] == [("m1", True), ("", False)]
    assert members[1]["id"] == "ff" and members[1]["client_urls"] == []


def test_parse_alarm_list():
    assert etcd.parse_alarm_list("{}") == []
    assert etcd.parse_alarm_list('{"alarms":[{"memberID":255,"alarm":"NOSPACE"}]}') == [
        {"member_id": "ff", "alarm": "NOSPACE"}]


def test_parse_snapshot_status():
    assert etcd.parse_snapshot_status('{"hash":3619724649,"revision":2,"totalKey":5,"totalSize":20480}') == {
        "hash": 3619724649, "revision": 2, "total_keys": 5, "total_size": 20480}
    with pytest.raises(etcd.EtcdError, match="no revision"):
        etcd.parse_snapshot_status("{}")


def test_snapshot_integrity(tmp_path):
    good = tmp_path / "good.db"
    good.write_bytes(snapshot_bytes())
    assert len(etcd.verify_snapshot_integrity(str(good), chunk_size=7)) == 64

    corrupted = bytearray(snapshot_bytes())
    corrupted[100:104] = b"XXXX"
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(corrupted))
    with pytest.raises(etcd.EtcdError, match="corrupted"):
        etcd.verify_snapshot_integrity(str(bad))

    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(snapshot_bytes()[:-5])
    with pytest.raises(etcd.EtcdError, match="corrupted"):
        etcd.verify_snapshot_integrity(str(truncated))

    tiny = tmp_path / "tiny.db"
    tiny.write_bytes(b"x" * 10)
    with pytest.raises(etcd.EtcdError, match="too small"):
        etcd.verify_snapshot_integrity(str(tiny))
    with pytest.raises(etcd.EtcdError, match="cannot be read"):
        etcd.verify_snapshot_integrity(str(tmp_path / "missing.db"))


ENTRIES = [("s1", 100.0), ("s2", 200.0), ("s3", 300.0), ("s4", 400.0), ("s5", 500.0)]


@pytest.mark.parametrize(
    "keep,max_age,protect,expected",
    [
        (3, None, None, ["s1", "s2"]),
        (None, 250, None, ["s1", "s2"]),  # now=500: older than 250 s
        (4, 150, None, ["s1", "s2", "s3"]),  # both rules
        (None, None, None, []),
        (1, None, "s3", ["s1", "s2", "s4"]),  # the protected one survives even when not the newest
        (1, 10, "s5", ["s1", "s2", "s3", "s4"]),
        (10, None, None, []),
    ],
)
def test_select_prunable(keep, max_age, protect, expected):
    assert etcd.select_prunable(ENTRIES, keep=keep, max_age=max_age, now=500.0, protect=protect) == expected


def test_quorum():
    assert [etcd.quorum(n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 2, 3, 3, 4]


def test_endpoint_address():
    assert etcd.endpoint_address("https://10.0.0.1:2379") == ("10.0.0.1", 2379)
    with pytest.raises(etcd.EtcdError, match="not a URL"):
        etcd.endpoint_address("10.0.0.1:2379")


def test_probe_tcp_reports_refused_connections():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen(1)
    assert etcd.probe_tcp("https://127.0.0.1:%d" % port) is None
    listener.close()
    assert "connection refused" in etcd.probe_tcp("https://127.0.0.1:%d" % port)


def _status(member_id, leader="a", **extra):
    base = dict(member_id=member_id, cluster_id="c", revision=7, version="3.4.23", db_size=1, db_size_in_use=1,
                leader_id=leader, is_leader=member_id == leader, raft_term=2, raft_index=9, raft_applied_index=9,
                errors=[])
    base.update(extra)
    return base


EPS = ["https://e1:2379", "https://e2:2379", "https://e3:2379"]


def test_summarize_healthy_cluster():
    statuses = {EPS[0]: _status("a"), EPS[1]: _status("b"), EPS[2]: _status("c")}
    health = dict.fromkeys(EPS, (True, ""))
    report = etcd.summarize(EPS, statuses, {}, health, [])
    assert report["healthy"] and report["has_quorum"] and report["leader"] == "a"
    assert report["healthy_count"] == 3 and report["problems"] == []


def test_summarize_member_down_names_the_reason():
    statuses = {EPS[0]: _status("a"), EPS[1]: _status("b")}
    health = {EPS[0]: (True, ""), EPS[1]: (True, ""), EPS[2]: (False, "context deadline exceeded")}
    report = etcd.summarize(EPS, statuses, {EPS[2]: "context deadline exceeded"}, health, [],
                            probe=lambda endpoint: "connection refused on e3:2379: nothing listens there")
    assert not report["healthy"] and report["has_quorum"]
    assert report["problems"] == ["https://e3:2379: connection refused on e3:2379: nothing listens there"]
    assert "member_id" not in report["members"][2]


def test_summarize_without_probe_uses_etcdctl_reason():
    report = etcd.summarize(EPS[:1], {}, {EPS[0]: "context deadline exceeded"}, {}, [])
    assert report["members"][0]["reason"] == "status request failed: context deadline exceeded"
    assert not report["has_quorum"]


def test_summarize_alarms_no_leader_and_split_views():
    statuses = {EPS[0]: _status("a"), EPS[1]: _status("b", leader="0"), EPS[2]: _status("c", leader="c")}
    health = dict.fromkeys(EPS, (True, ""))
    report = etcd.summarize(EPS, statuses, {}, health, [{"member_id": "a", "alarm": "NOSPACE"}])
    reasons = [m["reason"] for m in report["members"]]
    assert reasons[0] == "alarm(s) raised: NOSPACE"
    assert reasons[1].startswith("member has no leader")
    assert report["alarms"] == ["NOSPACE"] and not report["healthy"]


def test_summarize_leader_disagreement():
    statuses = {EPS[0]: _status("a"), EPS[1]: _status("b", leader="b"), EPS[2]: _status("c")}
    health = dict.fromkeys(EPS, (True, ""))
    report = etcd.summarize(EPS, statuses, {}, health, [])
    assert "members disagree about the leader: a, b" in report["problems"]
    assert not report["has_quorum"]


def test_summarize_unhealthy_member_with_status():
    statuses = {EPS[0]: _status("a", errors=["corrupt"]), EPS[1]: _status("b")}
    health = {EPS[0]: (True, ""), EPS[1]: (False, "etcdserver: request timed out")}
    report = etcd.summarize(EPS[:2], statuses, {}, health, [])
    assert [m["reason"] for m in report["members"]] == [
        "member reports errors: corrupt", "health check failed: etcdserver: request timed out"]
