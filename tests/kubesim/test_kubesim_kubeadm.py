# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubeadm + kubelet shims end to end in temp roots: init, token, join, upgrade skew, reset, exit codes.

The kubelet shim runs as a real process; it starts the simulated apiserver from the kube-apiserver manifest
kubeadm writes and restarts it when the manifest changes. Real kubectl checks the result.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import Kubectl
from kubesim import kubeadm_cli
from kubesim.testing import LocalCluster, free_port, secretbox_config, wait_for

HERE = Path(__file__).resolve().parent

INIT = """apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp1
  kubeletExtraArgs: [{name: node-ip, value: 127.0.0.1}]
localAPIEndpoint: {advertiseAddress: 127.0.0.1, bindPort: %(port)d}
timeouts: {controlPlaneComponentHealthCheck: 60s}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.33.2
controlPlaneEndpoint: 127.0.0.1:%(port)d
etcd:
  external:
    endpoints: [%(etcd)s]
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
networking: {podSubnet: 10.244.0.0/16}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
"""

JOIN = """apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 127.0.0.1:%(port)d
    token: %(token)s
    caCertHashes: [%(hash)s]
nodeRegistration: {name: worker1}
"""


def kubeadm(root, version, *args, capsys=None):
    os.environ["KUBESIM_ROOT"] = str(root)
    os.environ["KUBESIM_VERSION"] = version
    try:
        code = kubeadm_cli.main(list(args))
    finally:
        os.environ.pop("KUBESIM_ROOT", None)
        os.environ.pop("KUBESIM_VERSION", None)
    out = capsys.readouterr() if capsys else None
    return code, (out.out + out.err) if out else ""


def start_kubelet(root, version, log):
    env = dict(os.environ, KUBESIM_ROOT=str(root), KUBESIM_VERSION=version, PYTHONPATH=str(HERE))
    return subprocess.Popen([sys.executable, "-m", "kubesim", "kubelet", "--interval", "0.5",
                            "--status-interval", "0.5"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=str(HERE))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def etcd(tmp_path):
    local = LocalCluster(str(tmp_path / "etcd"), replicas=0)
    os.makedirs(local.workdir)
    local._pki()
    local.start_etcd()
    try:
        yield local
    finally:
        local.stop()


def test_init_token_join_upgrade_reset(tmp_path, etcd, capsys):
    cp, worker = tmp_path / "cp1", tmp_path / "worker1"
    pki = cp / "etc/kubernetes/pki"
    (pki / "etcd").mkdir(parents=True)
    shutil.copy(etcd.etcd_ca_file, pki / "etcd/ca.crt")
    shutil.copy(etcd.etcd_client[0], pki / "apiserver-etcd-client.crt")
    shutil.copy(etcd.etcd_client[1], pki / "apiserver-etcd-client.key")
    port = free_port()
    config = tmp_path / "init.yaml"
    config.write_text(INIT % {"port": port, "etcd": etcd.etcd_url})
    logs = []
    kubelets = []
    try:
        log = open(tmp_path / "kubelet-cp1.log", "wb")  # noqa: SIM115 (closed below)
        logs.append(log)
        kubelets.append(start_kubelet(cp, "1.33.2", log))
        assert kubeadm(cp, "1.33.2", "version", "-o", "short", capsys=capsys) == (0, "v1.33.2\n")
        code, out = kubeadm(cp, "1.33.2", "init", "--config", str(config), "--upload-certs", capsys=capsys)
        assert code == 0, out
        assert "Your Kubernetes control-plane has initialized successfully!" in out
        assert re.search(r"Using certificate key:\n[0-9a-f]{64}", out)
        for name in ("admin.conf", "super-admin.conf", "kubelet.conf", "manifests/kube-apiserver.yaml",
                     "manifests/kube-controller-manager.yaml", "manifests/kube-scheduler.yaml", "pki/ca.crt",
                     "pki/apiserver.crt", "pki/sa.key", "pki/front-proxy-ca.crt"):
            assert (cp / "etc/kubernetes" / name).exists(), name
        assert "cgroupDriver: systemd" in (cp / "var/lib/kubelet/config.yaml").read_text()
        assert oct((cp / "etc/kubernetes/admin.conf").stat().st_mode & 0o777) == "0o600"
        kubectl = Kubectl(str(cp / "etc/kubernetes/admin.conf"))
        wait_for(lambda: " Ready " in kubectl.run("get", "node", "cp1", check=False).stdout)
        line = kubectl.run("get", "node", "cp1", "--no-headers").stdout.split()
        assert line[:3] == ["cp1", "Ready", "control-plane"] and line[-1] == "v1.33.2"
        assert "kube-apiserver-cp1" in kubectl.run("get", "pods", "-n", "kube-system").stdout  # mirror pod

        code, out = kubeadm(cp, "1.33.2", "token", "create", "--print-join-command", capsys=capsys)
        assert code == 0, out
        match = re.match(r"^kubeadm join 127\.0\.0\.1:%d --token ([a-z0-9]{6}\.[a-z0-9]{16}) "
                         r"--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})$" % port, out.strip())
        assert match, out

        # Worker join: token discovery with the CA pin, then its kubelet registers with the token.
        join = tmp_path / "join.yaml"
        join.write_text(JOIN % {"port": port, "token": match.group(1), "hash": match.group(2)})
        bad = tmp_path / "bad-join.yaml"
        bad.write_text(JOIN % {"port": port, "token": match.group(1), "hash": "sha256:" + "0" * 64})
        code, out = kubeadm(worker, "1.33.2", "join", "--config", str(bad), capsys=capsys)
        assert code == 1 and "are pinned" in out
        code, out = kubeadm(worker, "1.33.2", "join", "--config", str(join), capsys=capsys)
        assert code == 0, out
        log = open(tmp_path / "kubelet-worker1.log", "wb")  # noqa: SIM115 (closed below)
        logs.append(log)
        kubelets.append(start_kubelet(worker, "1.33.2", log))
        wait_for(lambda: "worker1" in kubectl.run("get", "nodes", check=False).stdout)
        # TLS bootstrap: the worker authenticates with a certificate the controllers signed for its CSR, not with
        # the bootstrap token, so it keeps heartbeating after the token is deleted (expired).
        user = yaml.safe_load((worker / "etc/kubernetes/kubelet.conf").read_text())["users"][0]["user"]
        assert "token" not in user and user["client-certificate-data"]
        pem = worker / "var/lib/kubelet/pki/kubelet-client-current.pem"
        assert oct(pem.stat().st_mode & 0o777) == "0o600" and b"PRIVATE KEY" in pem.read_bytes()
        csrs = json.loads(kubectl.run("get", "csr", "-o", "json").stdout)["items"]
        assert [c["status"]["conditions"][0]["type"] for c in csrs] == ["Approved"]
        assert csrs[0]["spec"]["username"] == "system:bootstrap:" + match.group(1).split(".")[0]
        kubectl.run("delete", "secret", "-n", "kube-system", "bootstrap-token-" + match.group(1).split(".")[0])

        def heartbeat_after(stamp):
            node = json.loads(kubectl.run("get", "node", "worker1", "-o", "json").stdout)
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            return ready["lastHeartbeatTime"] > stamp

        deleted_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        wait_for(lambda: heartbeat_after(deleted_at), timeout=30)

        # Upgrades: refuse a jump of two minors and a target newer than kubeadm; accept one minor.
        code, out = kubeadm(cp, "1.35.0", "upgrade", "apply", "v1.35.0", "-y", capsys=capsys)
        assert code == 1 and "kubeadm can upgrade only 1 minor version at a time" in out
        code, out = kubeadm(cp, "1.33.2", "upgrade", "apply", "v1.34.1", "-y", capsys=capsys)
        assert code == 1 and "is higher than the kubeadm version" in out
        code, out = kubeadm(cp, "1.34.1", "upgrade", "plan", capsys=capsys)
        assert code == 0 and "kubeadm upgrade apply v1.34.1" in out
        before = (cp / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
        code, out = kubeadm(cp, "1.34.1", "upgrade", "apply", "v1.34.1", "-y", capsys=capsys)
        assert code == 0, out
        after = (cp / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
        assert "kube-apiserver:v1.33.2" in before and "kube-apiserver:v1.34.1" in after
        wait_for(lambda: b"restarting the apiserver" in (tmp_path / "kubelet-cp1.log").read_bytes())
        # /livez may still be answered by the old apiserver for a moment before the kubelet shim stops it,
        # so wait (bounded) for the restarted one to serve the upgraded ClusterConfiguration.
        wait_for(lambda: "kubernetesVersion: v1.34.1" in kubectl.run(
            "get", "configmap", "-n", "kube-system", "kubeadm-config", "-o", "jsonpath={.data.ClusterConfiguration}",
            check=False,
        ).stdout, timeout=60)

        # A worker upgrades its node configuration with kubelet.conf (it has no admin.conf), as kubeadm does.
        assert not (worker / "etc/kubernetes/admin.conf").exists()
        code, out = kubeadm(worker, "1.34.1", "upgrade", "node", capsys=capsys)
        assert code == 0, out
        assert "Skipping phase. Not a control plane node." in out and "successfully upgraded" in out
        assert not (worker / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()

        code, out = kubeadm(cp, "1.34.1", "certs", "check-expiration", capsys=capsys)
        assert code == 0 and "apiserver " in out and "admin.conf" in out

        code, out = kubeadm(worker, "1.33.2", "reset", "-f", capsys=capsys)
        assert code == 0 and not (worker / "etc/kubernetes/kubelet.conf").exists()
    finally:
        for proc in kubelets:
            stop(proc)
        for log in logs:
            log.close()


ENCRYPTION = secretbox_config(("key1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))

ENCRYPTION_ARGS = """apiServer:
  extraArgs:
  - {name: encryption-provider-config, value: /etc/kubernetes/enc/encryption.yaml}
  - {name: encryption-provider-config-automatic-reload, value: "true"}
  extraVolumes:
  - name: enc
    hostPath: /etc/kubernetes/enc
    mountPath: /etc/kubernetes/enc
    readOnly: true
    pathType: DirectoryOrCreate
networking:"""


def _apiserver_flags(root):
    pod = yaml.safe_load((root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    return [c for c in pod["spec"]["containers"][0]["command"] if c.startswith("--")]


def test_reconfigure_apiserver_with_init_phases(tmp_path, etcd, capsys):
    """kubeadm-reconfigure: `init phase control-plane apiserver` + `init phase upload-config kubeadm` turn on
    encryption at rest on a running control plane; `upgrade apply` keeps it (it regenerates from kubeadm-config)."""
    cp = tmp_path / "cp1"
    pki = cp / "etc/kubernetes/pki"
    (pki / "etcd").mkdir(parents=True)
    shutil.copy(etcd.etcd_ca_file, pki / "etcd/ca.crt")
    shutil.copy(etcd.etcd_client[0], pki / "apiserver-etcd-client.crt")
    shutil.copy(etcd.etcd_client[1], pki / "apiserver-etcd-client.key")
    (cp / "etc/kubernetes/enc").mkdir(parents=True)
    (cp / "etc/kubernetes/enc/encryption.yaml").write_text(ENCRYPTION)
    port = free_port()
    plain = INIT % {"port": port, "etcd": etcd.etcd_url}
    config = tmp_path / "init.yaml"
    config.write_text(plain)
    encrypted = tmp_path / "encrypted.yaml"
    encrypted.write_text(plain.replace("networking:", ENCRYPTION_ARGS, 1))
    manifest = cp / "etc/kubernetes/manifests/kube-apiserver.yaml"
    kubelet_log = tmp_path / "kubelet-cp1.log"
    with open(kubelet_log, "wb") as log:
        kubelet = start_kubelet(cp, "1.33.2", log)
        try:
            code, out = kubeadm(cp, "1.33.2", "init", "--config", str(config), capsys=capsys)
            assert code == 0, out
            assert "[control-plane] Creating static Pod manifest for \"kube-apiserver\"" in out
            kubectl = Kubectl(str(cp / "etc/kubernetes/admin.conf"))
            wait_for(lambda: " Ready " in kubectl.run("get", "node", "cp1", check=False).stdout, timeout=60)
            assert "last_config_info" not in kubectl.run("get", "--raw", "/metrics").stdout  # no encryption yet
            certs = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
            admin = (cp / "etc/kubernetes/admin.conf").read_bytes()

            # Same configuration: the manifest is rewritten byte for byte, so the kubelet keeps the apiserver.
            before = manifest.read_bytes()
            code, out = kubeadm(cp, "1.33.2", "init", "phase", "control-plane", "apiserver", "--config", str(config),
                                capsys=capsys)
            assert (code, out) == (0, "[control-plane] Creating static Pod manifest for \"kube-apiserver\"\n")
            assert manifest.read_bytes() == before

            # Changed extraArgs/extraVolumes: a new manifest, nothing else touched; the kubelet restarts the apiserver,
            # which then reports the encryption config it loaded on /metrics.
            code, out = kubeadm(cp, "1.33.2", "init", "phase", "control-plane", "apiserver", "--config",
                                str(encrypted), capsys=capsys)
            assert code == 0, out
            flags = _apiserver_flags(cp)
            assert "--encryption-provider-config=/etc/kubernetes/enc/encryption.yaml" in flags
            assert "--encryption-provider-config-automatic-reload=true" in flags
            assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == certs
            assert (cp / "etc/kubernetes/admin.conf").read_bytes() == admin
            wanted = "sha256:" + hashlib.sha256(ENCRYPTION.encode()).hexdigest()
            wait_for(lambda: 'hash="%s"} 1' % wanted in kubectl.run("get", "--raw", "/metrics", check=False).stdout,
                     timeout=60, interval=0.5, what="the restarted apiserver reports the encryption config")
            assert kubelet_log.read_bytes().count(b"restarting the apiserver") == 1
            kubectl.run("create", "secret", "generic", "s1", "--from-literal=k=v")
            raw = etcd.etcdctl("get", "/registry/secrets/default/s1", "--print-value-only")
            assert raw.startswith(b"k8s:enc:secretbox:v1:key1:")

            # The cluster's stored ClusterConfiguration follows, so joins and upgrades keep encryption.
            code, out = kubeadm(cp, "1.33.2", "init", "phase", "upload-config", "kubeadm", "--config", str(encrypted),
                                capsys=capsys)
            assert (code, out) == (0, "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" "
                                      "in the \"kube-system\" Namespace\n")
            stored = yaml.safe_load(kubectl.run("get", "configmap", "-n", "kube-system", "kubeadm-config", "-o",
                                                "jsonpath={.data.ClusterConfiguration}").stdout)
            assert {"name": "encryption-provider-config", "value": "/etc/kubernetes/enc/encryption.yaml"} in stored[
                "apiServer"]["extraArgs"]
            assert stored["apiServer"]["extraVolumes"][0]["hostPath"] == "/etc/kubernetes/enc"
            assert stored["kubernetesVersion"] == "v1.33.2"

            code, out = kubeadm(cp, "1.34.1", "upgrade", "apply", "v1.34.1", "-y", capsys=capsys)
            assert code == 0, out
            assert "--encryption-provider-config=/etc/kubernetes/enc/encryption.yaml" in _apiserver_flags(cp)
            pod = yaml.safe_load(manifest.read_text())
            assert pod["spec"]["containers"][0]["image"].endswith("kube-apiserver:v1.34.1")
            assert {"name": "enc", "mountPath": "/etc/kubernetes/enc", "readOnly": True} in pod["spec"]["containers"][
                0]["volumeMounts"]

            # `all` writes every component, like `kubeadm init`, with kubeadm's lines.
            code, out = kubeadm(cp, "1.34.1", "init", "phase", "control-plane", "all", "--config", str(encrypted),
                                capsys=capsys)
            assert code == 0, out
            assert out.splitlines() == [
                "[control-plane] Using manifest folder \"/etc/kubernetes/manifests\"",
                "[control-plane] Creating static Pod manifest for \"kube-apiserver\"",
                "[control-plane] Creating static Pod manifest for \"kube-controller-manager\"",
                "[control-plane] Creating static Pod manifest for \"kube-scheduler\""]
            scheduler = cp / "etc/kubernetes/manifests/kube-scheduler.yaml"
            scheduler.unlink()
            code, out = kubeadm(cp, "1.34.1", "init", "phase", "control-plane", "scheduler", "--config", str(config),
                                capsys=capsys)
            assert code == 0 and scheduler.exists(), out
        finally:
            stop(kubelet)


def test_init_phase_errors(tmp_path, capsys):
    code, out = kubeadm(tmp_path, "1.33.2", "init", "phase", "control-plane", "apiserver", capsys=capsys)
    assert code == 1 and "needs --config" in out
    code, out = kubeadm(tmp_path, "1.33.2", "init", "phase", "control-plane", "etcd", "--config", "x", capsys=capsys)
    assert code == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServr: {}\n")
    code, out = kubeadm(tmp_path, "1.33.2", "init", "phase", "control-plane", "apiserver", "--config", str(bad),
                        capsys=capsys)
    assert code == 1 and 'unknown field "apiServr"' in out
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.2\n"
                    "etcd: {external: {endpoints: ['https://127.0.0.1:2379']}}\n")
    code, out = kubeadm(tmp_path, "1.33.2", "init", "phase", "upload-config", "kubeadm", "--config", str(good),
                        capsys=capsys)
    assert code == 1 and "admin.conf" in out


def test_kubeadm_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersoin: v1.33.2\n")
    code, out = kubeadm(tmp_path, "1.33.2", "init", "--config", str(bad), capsys=capsys)
    assert code == 1 and 'unknown field "kubernetesVersoin"' in out
    code, out = kubeadm(tmp_path, "1.33.2", "config", "validate", "--config", str(bad), capsys=capsys)
    assert code == 1
    old = tmp_path / "old.yaml"
    old.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.31.0\n")
    code, out = kubeadm(tmp_path, "1.33.2", "init", "--config", str(old), capsys=capsys)
    assert code == 1 and "only supports deploying clusters with the control plane version >= 1.32.0" in out
    code, out = kubeadm(tmp_path, "1.33.2", "init", "--bogus-flag", capsys=capsys)
    assert code == 1
    code, out = kubeadm(tmp_path, "1.33.2", "reset", capsys=capsys)
    assert code == 1 and "-f/--force" in out
    code, out = kubeadm(tmp_path, "1.33.2", "token", "create", capsys=capsys)
    assert code == 1 and "is this a control-plane node" in out
