# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubeadm config validator: good configs pass, typos and wrong types fail like kubeadm."""

from __future__ import annotations

import pytest
from kubesim.kubeadm_config import ConfigError, load

GOOD_V1BETA4 = """
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 24h0m0s
  usages: [signing, authentication]
  groups: [system:bootstrappers:kubeadm:default-node-token]
nodeRegistration:
  name: cp1
  criSocket: unix:///run/containerd/containerd.sock
  taints: []
  kubeletExtraArgs:
  - {name: node-ip, value: 10.123.0.11}
localAPIEndpoint: {advertiseAddress: 10.123.0.11, bindPort: 6443}
skipPhases: [addon/kube-proxy]
timeouts: {controlPlaneComponentHealthCheck: 4m0s}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.33.2
controlPlaneEndpoint: 10.123.0.100:6443
clusterName: lab
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, dnsDomain: cluster.local}
etcd:
  external:
    endpoints: [https://10.123.0.11:2379, https://10.123.0.12:2379]
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
apiServer:
  certSANs: [10.123.0.100, k8s.lab]
  extraArgs:
  - {name: encryption-provider-config, value: /etc/kubernetes/enc/config.yaml}
  - {name: encryption-provider-config-automatic-reload, value: "true"}
  extraVolumes:
  - name: enc
    hostPath: /etc/kubernetes/enc
    mountPath: /etc/kubernetes/enc
    readOnly: true
    pathType: DirectoryOrCreate
controllerManager: {extraArgs: [{name: bind-address, value: 0.0.0.0}]}
proxy: {disabled: false}
encryptionAlgorithm: ECDSA-P256
certificateValidityPeriod: 8760h
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
serverTLSBootstrap: true
rotateCertificates: true
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}}
evictionHard: {memory.available: 100Mi}
shutdownGracePeriod: 30s
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: 10.244.0.0/16
conntrack: {maxPerCore: 0}
"""

GOOD_JOIN = """
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.123.0.100:6443
    token: abcdef.0123456789abcdef
    caCertHashes: [sha256:0000000000000000000000000000000000000000000000000000000000000000]
nodeRegistration: {name: cp2, kubeletExtraArgs: [{name: node-ip, value: 10.123.0.12}]}
controlPlane:
  localAPIEndpoint: {advertiseAddress: 10.123.0.12, bindPort: 6443}
  certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
"""

GOOD_V1BETA3 = """
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.31.4
apiServer:
  timeoutForControlPlane: 4m0s
  extraArgs: {encryption-provider-config: /etc/kubernetes/enc/config.yaml}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery: {bootstrapToken: {token: abcdef.0123456789abcdef, unsafeSkipCAVerification: true}, timeout: 5m0s}
nodeRegistration: {kubeletExtraArgs: {node-ip: 10.0.0.1}}
"""


def test_good_configs_pass():
    docs = load(GOOD_V1BETA4)
    assert set(docs) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                         "KubeProxyConfiguration"}
    assert load(GOOD_JOIN)["JoinConfiguration"]["controlPlane"]["localAPIEndpoint"]["bindPort"] == 6443
    assert set(load(GOOD_V1BETA3)) == {"ClusterConfiguration", "JoinConfiguration"}


@pytest.mark.parametrize("old,new,message", [
    ("clusterName: lab", "clustername: lab", 'unknown field "clustername"'),
    ("  certSANs:", "  certSans:", 'unknown field "apiServer.certSans"'),
    ("bindPort: 6443}", "bindPort: \"6443\"}",
     "cannot unmarshal string into Go struct field localAPIEndpoint.bindPort"),
    ("serverTLSBootstrap: true", "serverTLSBootstrap: yes-please", "field serverTLSBootstrap of type bool"),
    ("  - {name: node-ip, value: 10.123.0.11}", "    node-ip: 10.123.0.11",
     "cannot unmarshal object into Go struct field nodeRegistration.kubeletExtraArgs of type array"),
    ("cgroupDriver: systemd", "cgroupDriver: systemd\ncgroupsDriver: systemd", 'unknown field "cgroupsDriver"'),
    ("mode: nftables", "mode: nftables\nmasqueradeAll: true", 'unknown field "masqueradeAll"'),
    ("kubernetesVersion: v1.33.2", "kubernetesVersion: v1.33", "kubernetesVersion: Invalid value"),
    ("kubernetesVersion: v1.33.2", "kubernetesVersion: 1.33", "cannot unmarshal number into Go struct field "
     "kubernetesVersion of type string"),
    ("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33", "networking.podSubnet: Invalid value"),
    ("token: abcdef.0123456789abcdef", "token: abcdef-0123456789abcdef", "the bootstrap token is invalid"),
    ("shutdownGracePeriod: 30s", "shutdownGracePeriod: 30 seconds", 'invalid duration "30 seconds"'),
    ("clusterName: lab", "clusterName: lab\nclusterName: lab2", 'key "clusterName" already set in map'),
    ("    endpoints: [https://10.123.0.11:2379, https://10.123.0.12:2379]", "    endpoints: []",
     "empty etcd.external.endpoints"),
    ("kind: ClusterConfiguration", "kind: ClusterConfig", 'no kind "ClusterConfig" is registered'),
])
def test_bad_v1beta4_configs_fail(old, new, message):
    assert old in GOOD_V1BETA4
    with pytest.raises(ConfigError) as error:
        load(GOOD_V1BETA4.replace(old, new, 1))
    assert message in str(error.value)


@pytest.mark.parametrize("old,new,message", [
    # v1beta4-only fields are unknown in v1beta3, and v1beta3's map-form extraArgs is not a list.
    ("kubernetesVersion: v1.31.4", "kubernetesVersion: v1.31.4\nproxy: {disabled: true}", 'unknown field "proxy"'),
    ("  extraArgs: {encryption-provider-config: /etc/kubernetes/enc/config.yaml}",
     "  extraArgs: [{name: a, value: b}]", "cannot unmarshal array into Go struct field apiServer.extraArgs"),
    ("discovery: {", "dryRun: true\ndiscovery: {", 'unknown field "dryRun"'),
])
def test_bad_v1beta3_configs_fail(old, new, message):
    with pytest.raises(ConfigError) as error:
        load(GOOD_V1BETA3.replace(old, new, 1))
    assert message in str(error.value)


def test_v1beta4_rejects_v1beta3_only_fields():
    with pytest.raises(ConfigError, match=r'unknown field "apiServer\.timeoutForControlPlane"'):
        load(GOOD_V1BETA4.replace("  certSANs:", "  timeoutForControlPlane: 4m0s\n  certSANs:", 1))
    no_discovery = GOOD_JOIN[:GOOD_JOIN.index("discovery:")] + "discovery: {tlsBootstrapToken: x}\n"
    with pytest.raises(ConfigError, match="bootstrapToken or file must be set"):
        load(no_discovery)
