# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubelet shim: registers the Node, heartbeats Ready, and "runs" the static pods in
/etc/kubernetes/manifests: kube-apiserver.yaml starts the simulated apiserver with the manifest's flags and
is restarted when the manifest changes (the real kubelet re-creates a static pod whose manifest changed,
https://kubernetes.io/docs/tasks/configure-pod-container/static-pod/). The other control-plane components are
no-ops reported through mirror pods. KUBESIM_ROOT prefixes every path (tests).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import yaml

from .api import now_rfc3339
from .client import Client, ClientError
from .kubeadm_cli import path, version

LOG = logging.getLogger("kubesim.kubelet")


def flags_env():
    """--node-ip / --hostname-override from /var/lib/kubelet/kubeadm-flags.env (what kubeadm writes)."""
    try:
        with open(path("/var/lib/kubelet/kubeadm-flags.env")) as handle:
            text = handle.read()
    except OSError:
        return {}
    return dict(re.findall(r"--([a-z-]+)=(\S+?)(?=[\s\"]|$)", text))


class Kubelet:
    """interval: how often the static pods and kubeadm-flags.env are looked at; status_interval: how often
    the Node status is posted (the real kubelet's nodeStatusUpdateFrequency, 10 s) when nothing changed.
    A start, a new name or address, or a static pod (re)started posts it at once."""

    def __init__(self, interval=2.0, status_interval=10.0):
        flags = flags_env()
        self.name = flags.get("hostname-override") or socket.gethostname().lower()
        self.node_ip = flags.get("node-ip") or "127.0.0.1"
        self.interval = interval
        self.status_interval = status_interval
        # The version of the binary this process started from: a package upgrade without a restart leaves
        # the old kubelet running, and reporting its old version, as on a real node.
        self.version = version()
        self.apiserver = None
        self.apiserver_hash = None
        self.stop = threading.Event()

    def manifest(self):
        file_path = path("/etc/kubernetes/manifests/kube-apiserver.yaml")
        try:
            with open(file_path, "rb") as handle:
                raw = handle.read()
        except OSError:
            return None, None
        return file_path, hashlib.sha256(raw).hexdigest()

    def sync_static_pods(self):
        file_path, digest = self.manifest()
        running = self.apiserver is not None and self.apiserver.poll() is None
        if digest is None:
            if running:
                LOG.info("kube-apiserver manifest removed: stopping the apiserver")
                self._stop_apiserver()
            return running
        if running and digest == self.apiserver_hash:
            return False
        if running:
            LOG.info("kube-apiserver manifest changed: restarting the apiserver")
            self._stop_apiserver()
        env = dict(os.environ, KUBESIM_VERSION=version())
        self.apiserver = subprocess.Popen([sys.executable, "-m", "kubesim", "apiserver-manifest", file_path],
                                          env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
        self.apiserver_hash = digest
        LOG.info("started kube-apiserver (pid %d) from %s", self.apiserver.pid, file_path)
        return True

    def _stop_apiserver(self):
        self.apiserver.terminate()
        try:
            self.apiserver.wait(10)
        except subprocess.TimeoutExpired:
            self.apiserver.kill()
        self.apiserver = None

    def client(self):
        return Client.from_kubeconfig(path("/etc/kubernetes/kubelet.conf"), timeout=5)

    def heartbeat(self, client):
        stamp = now_rfc3339()
        conditions = [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": stamp,
                       "lastTransitionTime": stamp} for t, s, r, m in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"))]
        status = {"conditions": conditions,
                  "addresses": [{"type": "InternalIP", "address": self.node_ip},
                                {"type": "Hostname", "address": self.name}],
                  "nodeInfo": {"kubeletVersion": "v" + self.version, "kubeProxyVersion": "", "operatingSystem": "linux",
                               "architecture": "amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                               "kernelVersion": os.uname().release, "containerRuntimeVersion": "containerd://1.6",
                               "machineID": "", "systemUUID": "", "bootID": ""},
                  "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
                  "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"}}
        try:
            node = client.get("/api/v1/nodes/" + self.name)
        except ClientError as exc:
            if exc.code != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": {
                "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
                "spec": {}, "status": status}
            client.request("POST", "/api/v1/nodes", body)
            LOG.info("registered node %s (kubelet v%s)", self.name, self.version)
            return
        node["status"] = status
        client.request("PUT", "/api/v1/nodes/%s/status" % self.name, node)

    def mirror_pods(self, client):
        directory = path("/etc/kubernetes/manifests")
        if not os.path.isdir(directory):
            return
        for name in sorted(os.listdir(directory)):
            try:
                with open(os.path.join(directory, name)) as handle:
                    pod = yaml.safe_load(handle)
            except (OSError, yaml.YAMLError):
                continue
            pod_name = "%s-%s" % (pod["metadata"]["name"], self.name)
            digest = hashlib.md5(yaml.safe_dump(pod).encode(), usedforsecurity=False).hexdigest()
            try:
                current = client.get("/api/v1/namespaces/kube-system/pods/" + pod_name)
                if current["metadata"].get("annotations", {}).get("kubernetes.io/config.hash") == digest:
                    continue
                client.request("DELETE", "/api/v1/namespaces/kube-system/pods/%s?gracePeriodSeconds=0" % pod_name)
            except ClientError as exc:
                if exc.code != 404:
                    raise
            mirror = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": pod_name, "namespace": "kube-system", "labels": pod["metadata"].get("labels", {}),
                "annotations": {"kubernetes.io/config.mirror": digest, "kubernetes.io/config.hash": digest,
                                "kubernetes.io/config.source": "file"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": "", "controller": True}]},
                "spec": dict(pod["spec"], nodeName=self.name)}
            client.request("POST", "/api/v1/namespaces/kube-system/pods", mirror)

    def run(self):
        posted, last_post = None, None
        while not self.stop.is_set():
            # kubeadm rewrites kubeadm-flags.env and restarts the kubelet; re-reading it each loop has that effect.
            flags = flags_env()
            self.name = flags.get("hostname-override") or self.name
            self.node_ip = flags.get("node-ip") or self.node_ip
            pods_changed = self.sync_static_pods()
            identity = (self.name, self.node_ip)
            due = (pods_changed or identity != posted or last_post is None
                   or time.monotonic() - last_post >= self.status_interval)
            if due and os.path.exists(path("/etc/kubernetes/kubelet.conf")):
                try:
                    client = self.client()
                    self.heartbeat(client)
                    self.mirror_pods(client)
                    posted, last_post = identity, time.monotonic()
                except (ClientError, OSError, KeyError) as exc:
                    LOG.warning("heartbeat: %s", exc)
            self.stop.wait(self.interval)
        if self.apiserver is not None:
            self._stop_apiserver()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kubelet")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--interval", type=float, default=2.0, help="static pods and flags, seconds")
    parser.add_argument("--status-interval", type=float, default=10.0,
                        help="Node status when nothing changed, seconds (nodeStatusUpdateFrequency)")
    parser.add_argument("--config")
    args, ignored = parser.parse_known_args(argv)
    if args.version:
        print("Kubernetes v" + version())
        return 0
    if args.config and not os.path.exists(path(args.config)):
        # Like the real kubelet before kubeadm ran: fail, and let systemd restart it (crashloop).
        sys.stderr.write("E kubelet: failed to load kubelet config file, path: %s: no such file or directory\n"
                         % args.config)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if ignored:
        LOG.info("ignoring kubelet flags not modelled by kubesim: %s", " ".join(ignored))
    kubelet = Kubelet(args.interval, args.status_interval)
    signal.signal(signal.SIGTERM, lambda *a: kubelet.stop.set())
    signal.signal(signal.SIGINT, lambda *a: kubelet.stop.set())
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
