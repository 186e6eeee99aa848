# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the static_pod_flags filter (what a kubeadm static Pod really runs with)."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.static_pod import FilterModule, static_pod_flags

# Shaped like kubeadm's /etc/kubernetes/manifests/kube-apiserver.yaml (trimmed).
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.11
    - --encryption-provider-config=/etc/kubernetes/encryption/config.yaml
    - --encryption-provider-config-automatic-reload=true
    - --tls-cipher-suites=A,B=C
    - --allow-privileged
    image: registry.k8s.io/kube-apiserver:v1.36.2
    name: kube-apiserver
  - name: sidecar
    command: [sidecar]
    args: ["--profiling=false", "positional", "--", "--profiling=true"]
"""


def test_flags_of_the_first_container_from_yaml_text():
    flags = static_pod_flags(MANIFEST)
    assert flags == {
        "advertise-address": "10.0.0.11",
        "encryption-provider-config": "/etc/kubernetes/encryption/config.yaml",
        "encryption-provider-config-automatic-reload": "true",
        # Only the first "=" separates name and value.
        "tls-cipher-suites": "A,B=C",
        # A boolean flag given alone.
        "allow-privileged": "true",
    }


def test_a_named_container_and_args_with_the_last_value_winning():
    assert static_pod_flags(yaml.safe_load(MANIFEST), "sidecar") == {"profiling": "true"}


def test_a_manifest_without_the_flag_lacks_it():
    lacking = MANIFEST.replace("    - --encryption-provider-config=/etc/kubernetes/encryption/config.yaml\n", "")
    assert "encryption-provider-config" not in static_pod_flags(lacking, "kube-apiserver")


@pytest.mark.parametrize(
    "manifest, container, message",
    [
        ("", None, "needs a manifest"),
        (None, None, "needs a manifest"),
        ("spec: [unclosed", None, "not YAML"),
        ("- a list", None, "not a Pod"),
        ("spec: {containers: []}", None, "no containers"),
        (MANIFEST, "etcd", "no container 'etcd' (it has kube-apiserver, sidecar)"),
    ],
)
def test_bad_manifests_are_named(manifest, container, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        static_pod_flags(manifest, container)


def test_the_filter_is_registered():
    assert FilterModule().filters()["static_pod_flags"] is static_pod_flags
