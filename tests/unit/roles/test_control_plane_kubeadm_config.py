# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control_plane role's kubeadm configuration, rendered by Ansible for a 3-control-plane inventory,
passes the real kubeadm's strict validation and says what the role promises.

The role writes the files with `validate: <kubeadm> config validate --config %s`; here that is the real
kubeadm 1.36 built from source by tests/harness/components.py (`make components`), so a file kubeadm
would refuse (an unknown or misspelt field, a wrong type, a duplicate key, a bad value) is never written
and the playbook fails. The test then reads every rendered file and checks what the role promises.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPONENTS = ROOT / "tests" / "harness" / "components.py"
KUBEADM_VERSION = "1.36.3"

CONTROL_PLANES = {"cp1": "10.0.0.11", "cp2": "10.0.0.12", "cp3": "10.0.0.13"}
WORKERS = {"w1": "10.0.0.21", "w2": "10.0.0.22"}

INVENTORY = """
all:
  vars:
    k8s_version: "1.36.2"
    k8s_api_vip: 10.0.0.100
    k8s_api_port: 8443
    k8s_pod_subnet: 10.244.0.0/16
    k8s_service_subnet: 10.96.0.0/12
    k8s_cluster_name: unit
    node_network: 10.0.0.0/24
  children:
    k8s_cluster:
      children:
        kube_control_plane:
          hosts:
%(cps)s
        kube_node:
          hosts:
%(workers)s
    etcd:
      hosts:
%(etcd)s
"""

PLAYBOOK = """
- name: Render the control_plane role's kubeadm configuration for every node (unit test)
  hosts: k8s_cluster
  connection: local
  gather_facts: false
  vars:
    out: "{{ lookup('ansible.builtin.env', 'RENDER_OUT') }}/{{ inventory_hostname }}"
    control_plane_config_dir: "{{ out }}"
    control_plane_audit_policy_file: "{{ out }}/audit/policy.yaml"
    control_plane_audit_log_dir: "{{ out }}/audit-log"
    control_plane_kubeadm_bin: "{{ lookup('ansible.builtin.env', 'KUBEADM_SHIM') }}"
    control_plane_cert_sans: [api.example.com]
    control_plane_apiserver_extra_args:
      event-ttl: 2h
      service-account-lookup: null
    control_plane_apiserver_extra_volumes:
      - {name: extra, hostPath: /srv/extra, mountPath: /srv/extra, readOnly: true, pathType: Directory}
    control_plane_kubelet_extra_config:
      maxPods: 150
    # The test host may be cgroup v1 (hybrid): the role's preflight would refuse it otherwise.
    control_plane_kubelet_fail_cgroup_v1: false
    control_plane_kubeadm_ignore_preflight_errors: [SystemVerification]
    __control_plane_action: none
    __control_plane_node: "{{ inventory_hostname }}"
  tasks:
    - name: Render the kubeadm configuration and the audit policy as the role does
      ansible.builtin.import_role:
        name: baremetal.kubernetes.control_plane
        tasks_from: configure.yml
      when: inventory_hostname in groups['kube_control_plane']

    - name: Create the output directory of the workers
      ansible.builtin.file:
        path: "{{ out }}"
        state: directory
        mode: "0700"

    - name: Render the join configuration (control-plane nodes with a certificate key, workers without)
      ansible.builtin.template:
        src: "{{ lookup('ansible.builtin.env', 'ROLE_DIR') }}/templates/kubeadm-join.yaml.j2"
        dest: "{{ out }}/kubeadm-join.yaml"
        mode: "0600"
        validate: "{{ control_plane_kubeadm_bin }} config validate --config %s"
      vars:
        __control_plane_join:
          endpoint: 10.0.0.100:8443
          token: abcdef.0123456789abcdef
          ca_hash: "sha256:{{ '0' * 64 }}"
          certificate_key: "{{ ('f' * 64) if inventory_hostname in groups['kube_control_plane'] else '' }}"
"""


def _hosts(nodes):
    return "\n".join("            %s: {ansible_host: %s, node_ip: %s}" % (n, a, a) for n, a in nodes.items())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubeadm-config")
    (tmp / "inventory.yml").write_text(INVENTORY % {
        "cps": _hosts(CONTROL_PLANES), "workers": _hosts(WORKERS),
        "etcd": "\n".join("        %s: {}" % n for n in CONTROL_PLANES)})
    (tmp / "render.yml").write_text(PLAYBOOK)
    shim = _real_kubeadm()
    out = tmp / "out"
    out.mkdir()
    env = dict(os.environ, RENDER_OUT=str(out), KUBEADM_SHIM=str(shim), ROLE_DIR=str(ROOT / "roles" / "control_plane"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_HOME=str(tmp / "ansible-home"))
    playbook = Path(sys.executable).parent / "ansible-playbook"
    result = subprocess.run([str(playbook), "-i", str(tmp / "inventory.yml"), str(tmp / "render.yml")],
                            capture_output=True, text=True, env=env, cwd=str(tmp), timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return out


def _real_kubeadm():
    found = subprocess.run([sys.executable, str(COMPONENTS), "path", "kubernetes", KUBEADM_VERSION],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.fail("the real kubeadm %s is not built: run `make components` (%s)"
                    % (KUBEADM_VERSION, found.stderr.strip()))
    return Path(found.stdout.strip()) / "bin" / "kubeadm"


def _load(path):
    """The documents of a rendered kubeadm configuration file, by kind."""
    docs = {}
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["kind"] not in docs, "%s: two %s documents" % (path, doc["kind"])
        docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("node", sorted(CONTROL_PLANES))
def test_init_configuration_passes_the_strict_validator(rendered, node):
    docs = _load(rendered / node / "kubeadm-config.yaml")
    assert sorted(docs) == ["ClusterConfiguration", "InitConfiguration", "KubeProxyConfiguration",
                            "KubeletConfiguration"]
    init = docs["InitConfiguration"]
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["localAPIEndpoint"] == {"advertiseAddress": CONTROL_PLANES[node], "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == node
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": CONTROL_PLANES[node]}]
    assert init["nodeRegistration"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane",
                                                   "effect": "NoSchedule"}]


def test_cluster_configuration(rendered):
    cluster = _load(rendered / "cp1" / "kubeadm-config.yaml")["ClusterConfiguration"]
    assert cluster["controlPlaneEndpoint"] == "10.0.0.100:8443"
    assert cluster["kubernetesVersion"] == "v1.36.2"
    assert cluster["clusterName"] == "unit"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12",
                                     "dnsDomain": "cluster.local"}
    assert cluster["etcd"] == {"external": {
        "endpoints": ["https://%s:2379" % a for a in CONTROL_PLANES.values()],
        "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
        "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key"}}
    sans = cluster["apiServer"]["certSANs"]
    assert sans[0] == "10.0.0.100"
    assert set(CONTROL_PLANES.values()) | set(CONTROL_PLANES) | {"api.example.com"} <= set(sans)


def test_extra_args_are_v1beta4_lists_with_hardening_and_overrides(rendered):
    cluster = _load(rendered / "cp2" / "kubeadm-config.yaml")["ClusterConfiguration"]
    api = cluster["apiServer"]["extraArgs"]
    assert all(set(arg) == {"name", "value"} and isinstance(arg["value"], str) for arg in api)
    flags = {arg["name"]: arg["value"] for arg in api}
    assert [arg["name"] for arg in api] == sorted(flags)
    assert flags["profiling"] == "false"
    assert flags["audit-policy-file"].endswith("/cp2/audit/policy.yaml")
    assert flags["audit-log-path"].endswith("/cp2/audit-log/audit.log")
    assert flags["audit-log-maxage"] == "30" and flags["audit-log-maxbackup"] == "10"
    assert flags["tls-min-version"] == "VersionTLS12"
    assert flags["event-ttl"] == "2h"  # an extra arg
    # serverTLSBootstrap with the role's approval (control_plane_kubelet_csr_approve): the apiserver verifies the
    # kubelets' serving certificates against the cluster CA that signs them.
    assert flags["kubelet-certificate-authority"] == "/etc/kubernetes/pki/ca.crt"
    assert "service-account-lookup" not in flags  # null removes a hardening flag
    assert {"name": "profiling", "value": "false"} in cluster["controllerManager"]["extraArgs"]
    assert {"name": "profiling", "value": "false"} in cluster["scheduler"]["extraArgs"]
    volumes = {v["name"]: v for v in cluster["apiServer"]["extraVolumes"]}
    assert volumes["audit-policy"]["readOnly"] is True
    assert volumes["audit-log"]["readOnly"] is False
    assert volumes["extra"]["hostPath"] == "/srv/extra"
    # Secrets encryption at rest, wired through the ClusterConfiguration so kubeadm upgrade keeps it.
    assert flags["encryption-provider-config"] == "/etc/kubernetes/encryption/config.yaml"
    assert flags["encryption-provider-config-automatic-reload"] == "true"
    assert volumes["encryption-config"] == {
        "name": "encryption-config", "hostPath": "/etc/kubernetes/encryption",
        "mountPath": "/etc/kubernetes/encryption", "readOnly": True, "pathType": "DirectoryOrCreate"}


def test_kubelet_and_kube_proxy_configuration(rendered):
    docs = _load(rendered / "cp3" / "kubeadm-config.yaml")
    kubelet = docs["KubeletConfiguration"]
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["serverTLSBootstrap"] is True and kubelet["rotateCertificates"] is True
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet["maxPods"] == 150  # control_plane_kubelet_extra_config
    assert kubelet["failCgroupV1"] is False  # control_plane_kubelet_fail_cgroup_v1
    assert docs["InitConfiguration"]["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    proxy = docs["KubeProxyConfiguration"]
    assert proxy["clusterCIDR"] == "10.244.0.0/16" and proxy["mode"] == "iptables"


def test_audit_policy_is_written(rendered):
    policy = (rendered / "cp1" / "audit" / "policy.yaml").read_text()
    assert "kind: Policy" in policy and "level: Metadata" in policy
    assert oct((rendered / "cp1" / "audit" / "policy.yaml").stat().st_mode & 0o777) == "0o600"
    assert oct((rendered / "cp1" / "kubeadm-config.yaml").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("node", sorted(CONTROL_PLANES) + sorted(WORKERS))
def test_join_configuration_passes_the_strict_validator(rendered, node):
    join = _load(rendered / node / "kubeadm-join.yaml")["JoinConfiguration"]
    address = {**CONTROL_PLANES, **WORKERS}[node]
    assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": "10.0.0.100:8443",
                                                   "token": "abcdef.0123456789abcdef",
                                                   "caCertHashes": ["sha256:" + "0" * 64]}
    assert join["nodeRegistration"]["name"] == node
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": address}]
    assert join["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    if node in CONTROL_PLANES:
        assert join["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": address, "bindPort": 6443},
                                        "certificateKey": "f" * 64}
    else:
        assert "controlPlane" not in join


@pytest.mark.parametrize("mutate, message", [
    # The map form of extraArgs (v1beta3) under v1beta4.
    (lambda docs: docs["ClusterConfiguration"]["scheduler"].update(extraArgs={"profiling": "false"}),
     "extraArgs"),
    # A misspelt field.
    (lambda docs: docs["KubeletConfiguration"].update(failCgroupV2=False), "failCgroupV2"),
], ids=["v1beta3-extra-args-map", "unknown-kubelet-field"])
def test_the_real_kubeadm_refuses_what_it_should(rendered, tmp_path, mutate, message):
    """The validation above is not vacuous: the same kubeadm refuses a broken variant of the file."""
    docs = _load(rendered / "cp1" / "kubeadm-config.yaml")
    mutate(docs)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(list(docs.values())))
    result = subprocess.run([str(_real_kubeadm()), "config", "validate", "--config", str(broken)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr + result.stdout
