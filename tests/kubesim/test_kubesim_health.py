# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""/readyz follows etcd: it fails (500, [-]etcd) when etcd is unreachable, and recovers with it."""

from __future__ import annotations

import os
import signal
import ssl
import urllib.error
import urllib.request

import pytest
from kubesim.testing import LocalCluster


def _get(url, context, timeout=10):
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readyz_fails_when_etcd_is_unreachable(tmp_path):
    with LocalCluster(str(tmp_path / "cluster"), replicas=1).running() as local:
        context = ssl.create_default_context(cafile=local.ca_file)
        base = "https://127.0.0.1:%d" % local.servers[0].port
        assert _get(base + "/readyz", context) == (200, "ok")
        local.etcd_proc.terminate()
        local.etcd_proc.wait(10)
        code, body = _get(base + "/readyz?verbose", context)
        assert code == 500
        assert "[-]etcd failed: reason withheld" in body and "readyz check failed" in body
        assert _get(base + "/healthz/etcd", context)[0] == 500
        assert _get(base + "/livez/ping", context) == (200, "ok")


def test_excluded_etcd_checks_are_not_run_so_a_frozen_etcd_does_not_block_them(tmp_path):
    # What the HAProxy check of roles/loadbalancer asks: /readyz without the etcd checks. Like the real
    # apiserver, every exclude= value counts and an excluded check is not run: with etcd frozen (SIGSTOP:
    # connections hang, nothing is refused), it answers within 2 s, well before kubesim's 5 s etcd timeout.
    with LocalCluster(str(tmp_path / "cluster"), replicas=1).running() as local:
        context = ssl.create_default_context(cafile=local.ca_file)
        base = "https://127.0.0.1:%d" % local.servers[0].port
        os.kill(local.etcd_proc.pid, signal.SIGSTOP)
        try:
            code, body = _get(base + "/readyz?exclude=etcd&exclude=etcd-readiness&verbose", context, timeout=2)
            assert code == 200, body
            assert "[+]etcd excluded: ok" in body and "[+]etcd-readiness excluded: ok" in body
            assert "[+]shutdown ok" in body and body.rstrip().endswith("readyz check passed")
            # Excluding only one of them still runs the other, which waits for etcd and fails.
            assert _get(base + "/readyz?exclude=etcd", context)[0] == 500
        finally:
            os.kill(local.etcd_proc.pid, signal.SIGCONT)
        assert _get(base + "/readyz", context) == (200, "ok")


def test_node_goes_unknown_without_heartbeats_and_recovers(tmp_path):
    """Node lifecycle: Ready -> Unknown + unreachable taints after the grace period, back on a heartbeat."""
    import time

    from kubesim.controllers import NODE, heartbeat_node

    with LocalCluster(str(tmp_path / "cluster"), replicas=1, node_monitor_grace_period=1.5).running() as local:
        api = local.servers[0].api
        heartbeat_node(api, "node-x", "1.36.2", "10.0.0.9")

        def state():
            node = api.get(NODE, None, "node-x")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            keys = sorted((t["key"], t["effect"]) for t in node["spec"].get("taints") or [])
            return ready["status"], keys

        assert state() == ("True", [])
        deadline = time.monotonic() + 15
        while state()[0] != "Unknown" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert state() == ("Unknown", [("node.kubernetes.io/unreachable", "NoExecute"),
                                       ("node.kubernetes.io/unreachable", "NoSchedule")])
        node = api.get(NODE, None, "node-x")
        assert all(c["reason"] == "NodeStatusUnknown" for c in node["status"]["conditions"])
        # Heartbeat like a kubelet that came back (repeatedly: with a 1.5 s grace period a single heartbeat can go
        # stale again before a controller pass on a loaded machine).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            heartbeat_node(api, "node-x", "1.36.2", "10.0.0.9")
            if not state()[1]:
                break
            time.sleep(0.3)
        assert state()[1] == []
        assert api.get(NODE, None, "node-x")["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.2"


def test_heartbeat_retries_an_update_that_lost_a_race_to_the_node_controller():
    """A 409 from the Node update is read again and retried (the kubelet's nodeStatusUpdateRetry); others raise."""
    from kubesim.controllers import NODE_STATUS_UPDATE_RETRY, heartbeat_node
    from kubesim.store import ApiError

    class Store:
        def __init__(self, failures):
            self.failures, self.reads, self.updates = list(failures), 0, 0

        def get_raw(self, resource, namespace, name):
            self.reads += 1
            return {"metadata": {"name": name}, "status": {}}, self.reads

        def update(self, resource, obj, revision):
            self.updates += 1
            if self.failures:
                raise self.failures.pop(0)
            return dict(obj, revision=revision)

    class Api:
        def __init__(self, store):
            self.store = store

    conflict = ApiError(409, "Conflict", "the object has been modified")
    store = Store([conflict, conflict])
    node = heartbeat_node(Api(store), "node-x", "1.36.2", "10.0.0.9")
    assert (store.reads, store.updates, node["revision"]) == (3, 3, 3)
    assert node["status"]["conditions"][-1]["status"] == "True"

    store = Store([conflict] * NODE_STATUS_UPDATE_RETRY)
    with pytest.raises(ApiError) as raised:
        heartbeat_node(Api(store), "node-x", "1.36.2", "10.0.0.9")
    assert raised.value.code == 409 and store.updates == NODE_STATUS_UPDATE_RETRY

    store = Store([ApiError(500, "InternalError", "etcd down")])
    with pytest.raises(ApiError) as raised:
        heartbeat_node(Api(store), "node-x", "1.36.2", "10.0.0.9")
    assert raised.value.code == 500 and store.updates == 1
