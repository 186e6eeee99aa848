# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_health and etcd_snapshot against a fake etcdctl (tests/unit/plugins/modules/etcd_fake.py)."""

from __future__ import annotations

import os

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _etcd as etcd_utils
from ansible_collections.baremetal.kubernetes.plugins.module_utils import _wait as wait_utils
from ansible_collections.baremetal.kubernetes.plugins.modules import etcd_health, etcd_snapshot
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.etcd_fake import FakeEtcd
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import run_module


@pytest.fixture
def fake(monkeypatch, tmp_path):
    cluster = FakeEtcd()
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, args, **kw: cluster.run_command(args, **kw))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **kw: (
        None if name == "etcdutl" else str(tmp_path / "etcdctl")))
    monkeypatch.setattr(etcd_utils, "probe_tcp", lambda endpoint, timeout=2.0: (
        "connection refused on %s: nothing listens there (etcd is stopped or crashed)" % endpoint))
    for name in ("etcdctl", "ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    cluster.tls = dict(cacert=str(tmp_path / "ca.crt"), cert=str(tmp_path / "client.crt"),
                       key=str(tmp_path / "client.key"))
    cluster.sleeps = []
    monkeypatch.setattr(wait_utils.time, "sleep", cluster.sleeps.append)
    return cluster


def run(module, args, check_mode=False):
    """(failed, result) of one run of ``module``."""
    outcome, result = run_module(module.main, args, check_mode=check_mode)
    return outcome == "fail", result


# --- etcd_health -----------------------------------------------------------------------------


def test_health_reports_every_member(fake):
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, **fake.tls))
    assert not failed and result["changed"] is False
    assert result["healthy"] and result["has_quorum"] and result["healthy_count"] == 3
    assert result["leader"] == "%x" % 1001
    assert [m["is_leader"] for m in result["members"]] == [True, False, False]
    assert {m["revision"] for m in result["members"]} == {1234}
    assert [m["name"] for m in result["cluster_members"]] == ["m1", "m2", "m3"]


def test_health_fails_with_a_precise_reason_per_member(fake):
    fake.members["https://10.0.0.13:2379"]["up"] = False
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, **fake.tls))
    assert failed
    assert result["msg"].startswith("etcd is not healthy (2 of 3 members healthy): https://10.0.0.13:2379: "
                                    "connection refused")
    assert result["has_quorum"] is True


def test_health_reports_a_degraded_cluster_without_failing(fake):
    fake.members["https://10.0.0.12:2379"]["healthy"] = False
    fake.alarms = [(1001, "NOSPACE")]
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, fail_on_unhealthy=False, **fake.tls))
    assert not failed and not result["healthy"]
    assert result["alarms"] == ["NOSPACE"]
    assert result["members"][0]["reason"] == "alarm(s) raised: NOSPACE"
    assert result["members"][1]["reason"] == "health check failed: etcdserver: unhealthy"


def test_health_waits_until_healthy(fake):
    fake.members["https://10.0.0.11:2379"]["up"] = False
    fake.heal_after = 3
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, wait=True, wait_timeout=60, **fake.tls))
    assert not failed and result["healthy"]
    assert fake.sleeps == [2, 2]  # wait_sleep's default, the fixed pause before it was an option


def test_health_wait_sleep_is_the_pause_between_attempts(fake):
    fake.members["https://10.0.0.11:2379"]["up"] = False
    fake.heal_after = 3
    failed, _result = run(etcd_health, dict(endpoints=fake.endpoints, wait=True, wait_sleep=5, **fake.tls))
    assert not failed and fake.sleeps == [5, 5]


def test_health_wait_is_bounded(fake, monkeypatch):
    fake.members["https://10.0.0.11:2379"]["up"] = False
    clock = iter(range(0, 1000, 30))
    monkeypatch.setattr(wait_utils.time, "monotonic", lambda: float(next(clock)))
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, wait=True, wait_timeout=60, **fake.tls))
    assert failed and "after waiting" in result["msg"]
    assert len(fake.sleeps) <= 2


def test_health_behaves_the_same_in_check_mode(fake):
    failed, result = run(etcd_health, dict(endpoints=fake.endpoints, **fake.tls), check_mode=True)
    assert not failed and result["healthy"] and result["changed"] is False


def test_health_refuses_missing_client_certificate(fake, tmp_path):
    args = dict(endpoints=fake.endpoints, **fake.tls)
    args["cert"] = str(tmp_path / "nope.crt")
    failed, result = run(etcd_health, args)
    assert failed and result["msg"] == "cert %s does not exist or is not a file" % args["cert"]
    assert fake.calls == []


# --- etcd_snapshot ---------------------------------------------------------------------------


def snapshot_args(fake, dest, **extra):
    args = dict(endpoints=fake.endpoints, dest=str(dest), **fake.tls)
    args.update(extra)
    return args


def old_snapshots(dest, count):
    paths = []
    for index in range(count):
        path = dest / ("etcd-snapshot-2020010%dT000000Z.db" % index)
        path.write_bytes(b"old")
        os.utime(path, (1577836800 + index, 1577836800 + index))
        paths.append(path)
    return paths


def test_snapshot_is_verified_renamed_and_pruned(fake, tmp_path):
    dest = tmp_path / "backups"
    dest.mkdir()
    old = old_snapshots(dest, 3)
    (dest / "unrelated.db").write_bytes(b"keep me")
    failed, result = run(etcd_snapshot, snapshot_args(fake, dest, keep=2))
    assert not failed, result
    assert result["changed"] and os.path.isfile(result["path"])
    assert os.path.basename(result["path"]).startswith("etcd-snapshot-")
    assert (result["revision"], result["total_keys"], result["hash"]) == (1234, 1005, 3619724649)
    assert result["size"] == len(fake.snapshot_payload) and len(result["sha256"]) == 64
    assert result["endpoint"] == fake.endpoints[0] and result["duration"] >= 0
    assert result["pruned"] == [str(old[0]), str(old[1])]
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [old[2].name, "unrelated.db", os.path.basename(result["path"])])
    assert oct(os.stat(result["path"]).st_mode & 0o777) == "0o600"


def saves(fake):
    return [call for call in fake.calls if call[-3:-1] == ["snapshot", "save"]]


def test_snapshot_within_min_interval_is_reused_after_verifying_it(fake, tmp_path):
    failed, first = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert not failed and first["changed"] and first["reused"] is False and first["taken_at"].endswith("Z")
    failed, again = run(etcd_snapshot, snapshot_args(fake, tmp_path, min_interval=600))
    assert not failed, again
    assert again["changed"] is False and again["reused"] is True and again["path"] == first["path"]
    assert (again["revision"], again["sha256"], again["taken_at"]) == (1234, first["sha256"], first["taken_at"])
    assert 0 <= again["age"] < 600
    assert len(saves(fake)) == 1


def test_snapshot_older_than_min_interval_is_not_reused(fake, tmp_path):
    old = old_snapshots(tmp_path, 1)[0]
    old.write_bytes(fake.snapshot_payload)
    os.utime(old, (1577836800, 1577836800))
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path, min_interval=3600))
    assert not failed and result["changed"] and result["reused"] is False and result["path"] != str(old)
    assert len(saves(fake)) == 1


def test_recent_snapshot_that_does_not_verify_is_replaced(fake, tmp_path):
    bad = tmp_path / "etcd-snapshot-20990101T000000Z.db"
    bad.write_bytes(b"Z" + fake.snapshot_payload[1:])
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path, min_interval=600))
    assert not failed and result["changed"] and result["reused"] is False
    assert "does not verify" in " ".join(result["warnings"]) and str(bad) in " ".join(result["warnings"])
    assert len(saves(fake)) == 1


def test_snapshot_never_prunes_the_new_one_by_age(fake, tmp_path):
    old = old_snapshots(tmp_path, 2)
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path, max_age_days=1))
    assert not failed and result["pruned"] == [str(p) for p in old]
    assert os.path.exists(result["path"])


def test_snapshot_skips_an_unhealthy_member(fake, tmp_path):
    fake.members["https://10.0.0.11:2379"]["up"] = False
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert not failed and result["endpoint"] == "https://10.0.0.12:2379"


def test_snapshot_refuses_without_a_healthy_member(fake, tmp_path):
    for member in fake.members.values():
        member["up"] = False
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert failed and result["msg"].startswith("no healthy member to take a snapshot from: https://10.0.0.11:2379")
    assert list(tmp_path.glob("*.db")) == []


def test_snapshot_refuses_without_free_space(fake, tmp_path, monkeypatch):
    fake.db_size = 10 * 1024 * 1024
    monkeypatch.setattr(etcd_snapshot, "free_bytes", lambda path: 1024 * 1024)
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert failed and result["msg"].startswith(
        "not enough free space in %s for a snapshot: 1048576 bytes free" % tmp_path)
    assert result["needed_bytes"] == int(10 * 1024 * 1024 * 1.2) + 4096
    assert not any(call[-3:-1] == ["snapshot", "save"] for call in fake.calls)


def test_snapshot_refuses_a_corrupted_download_and_leaves_nothing(fake, tmp_path):
    tmp_path = tmp_path / "backups"
    tmp_path.mkdir()
    fake.snapshot_payload = fake.snapshot_payload[:-1] + b"!"
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert failed and "is corrupted" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_snapshot_refuses_when_status_fails(fake, tmp_path):
    tmp_path = tmp_path / "backups"
    tmp_path.mkdir()
    fake.status_output = "Error: invalid database\n"
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path))
    assert failed and result["msg"].endswith("failed verification: Error: invalid database")
    assert list(tmp_path.iterdir()) == []


def test_snapshot_check_mode_changes_nothing(fake, tmp_path):
    tmp_path = tmp_path / "backups"
    tmp_path.mkdir()
    old = old_snapshots(tmp_path, 3)
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path, keep=1), check_mode=True)
    assert not failed and result["changed"]
    assert result["revision"] == 1234 and len(result["pruned"]) == 3
    assert sorted(tmp_path.iterdir()) == sorted(old)
    assert not any("save" in call for call in fake.calls)


def test_snapshot_refuses_a_missing_directory(fake, tmp_path):
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path / "nope"))
    assert failed and "does not exist" in result["msg"]


@pytest.mark.parametrize("option", ["keep", "max_age_days", "min_interval"])
def test_snapshot_rejects_negative_retention(fake, tmp_path, option):
    failed, result = run(etcd_snapshot, snapshot_args(fake, tmp_path, **{option: -1}))
    assert failed and "keep, max_age_days and min_interval must be 0 (disabled) or positive" in result["msg"]


def test_verified_state(fake, tmp_path):
    good = tmp_path / "good.db"
    good.write_bytes(fake.snapshot_payload)
    failed, result = run(etcd_snapshot, dict(state="verified", path=str(good)))
    assert not failed and result["changed"] is False
    assert (result["revision"], result["total_keys"]) == (1234, 1005)

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"Z" + fake.snapshot_payload[1:])
    failed, result = run(etcd_snapshot, dict(state="verified", path=str(bad)))
    assert failed and "is corrupted" in result["msg"]


def test_verified_state_uses_the_etcdutl_next_to_the_etcdctl_given(fake, tmp_path):
    # etcd 3.6's etcdctl cannot read a snapshot file; the etcdutl of its release sits next to it, off PATH.
    good = tmp_path / "good.db"
    good.write_bytes(fake.snapshot_payload)
    etcdutl = tmp_path / "etcdutl"
    etcdutl.write_text("x")
    etcdutl.chmod(0o755)
    failed, result = run(etcd_snapshot, dict(state="verified", path=str(good), etcdctl=str(tmp_path / "etcdctl")))
    assert not failed and result["total_keys"] == 1005
    assert fake.calls[-1][:3] == [str(etcdutl), "snapshot", "status"]


def test_verified_state_falls_back_to_etcdctl_without_etcdutl(fake, tmp_path):
    # etcd 3.4 ships no etcdutl: its etcdctl reads the file.
    good = tmp_path / "good.db"
    good.write_bytes(fake.snapshot_payload)
    failed, result = run(etcd_snapshot, dict(state="verified", path=str(good), etcdctl=str(tmp_path / "etcdctl")))
    assert not failed and result["total_keys"] == 1005
    assert fake.calls[-1][:3] == [str(tmp_path / "etcdctl"), "snapshot", "status"]


def test_present_requires_endpoints_and_dest(fake):
    failed, result = run(etcd_snapshot, dict(dest="/tmp"))
    assert failed and "endpoints" in result["msg"]
