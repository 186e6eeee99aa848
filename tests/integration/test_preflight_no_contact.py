"""A bad inventory fails on localhost before Ansible opens a single connection.

Each inventory host points at its own TCP listener on 127.0.0.1 that counts accepted
connections. The bad inventory must leave every counter at zero; the control case (the same
hosts in a valid inventory) proves the counters do see Ansible trying to connect.
"""

import socket
import threading

import pytest


class CountingListener:
    """A loopback TCP port that accepts, counts and immediately closes connections."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _dummy_peer = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listeners():
    started = [CountingListener() for dummy in range(5)]
    yield started
    for listener in started:
        listener.close()


def write_inventory(path, listeners, etcd_hosts):
    hosts = ["cp1", "cp2", "cp3", "w1", "w2"]
    lines = ["[all:vars]", "ansible_connection=ssh", "ansible_user=nobody", "ansible_host=127.0.0.1"]
    lines += ["node_network=10.50.0.0/24", "k8s_api_vip=10.50.0.100", "k8s_version=1.34.2", ""]
    lines += ["[kube_control_plane]"]
    lines += [f"{h} node_ip=10.50.0.{11 + i} ansible_port={listeners[i].port}" for i, h in enumerate(hosts[:3])]
    lines += ["[kube_node]"]
    lines += [f"{h} node_ip=10.50.0.{21 + i} ansible_port={listeners[3 + i].port}" for i, h in enumerate(hosts[3:])]
    lines += ["[k8s_cluster:children]", "kube_control_plane", "kube_node", "[etcd]", *etcd_hosts]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_four_etcd_members_fail_on_localhost_without_contacting_any_host(tmp_path, listeners, run_playbook):
    inventory = write_inventory(tmp_path / "hosts.ini", listeners, ["cp1", "cp2", "cp3", "w1"])
    result = run_playbook("site.yml", "-i", str(inventory), env={"ANSIBLE_TIMEOUT": "3"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "The inventory has 1 problem(s); no host was contacted" in output
    assert "variable groups.etcd" in output and "has 4 members" in output
    assert "quorum of floor(n/2)+1 = 3" in output
    assert "put 1, 3, 5 or 7 hosts" in output
    assert "UNREACHABLE" not in output
    assert "PLAY [Common" not in output
    assert [listener.accepted for listener in listeners] == [0] * len(listeners)


def test_control_a_valid_inventory_does_reach_the_hosts(tmp_path, listeners, run_playbook):
    inventory = write_inventory(tmp_path / "hosts.ini", listeners, ["cp1", "cp2", "cp3"])
    result = run_playbook("site.yml", "-i", str(inventory), env={"ANSIBLE_TIMEOUT": "3"})
    output = result.stdout + result.stderr
    # The preflight passes, the next play tries every host, and the listeners see it.
    assert "PLAY [Common" in output
    assert result.returncode != 0
    assert all(listener.accepted > 0 for listener in listeners), [listener.accepted for listener in listeners]
