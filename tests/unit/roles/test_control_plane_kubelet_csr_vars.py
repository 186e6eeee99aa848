# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control_plane role's inputs to kubelet_csr_approve and the apiserver flag that goes with it, rendered from
the role's defaults and vars/main.yml as ansible-core does: which nodes (and addresses) may get a serving
certificate, and when kube-apiserver gets --kubelet-certificate-authority."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from role_vars import load_yaml, trusted

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "control_plane"

HOSTVARS = {
    "cp1": {"ansible_host": "192.168.1.11", "node_ip": "10.0.0.11"},
    "w1.example.com": {"ansible_host": "10.0.0.21"},
    "w2": {"ansible_host": "192.168.1.22", "node_ip": "10.0.0.22,fd00::22", "node_name": "worker-2"},
}
GROUPS = {"kube_control_plane": ["cp1"], "kube_node": ["w1.example.com", "w2"],
          "k8s_cluster": ["cp1", "w1.example.com", "w2"], "etcd": ["cp1"]}


def render(expression, **inventory):
    variables = {}
    variables.update(trusted(load_yaml(ROOT / "roles" / "cluster_defaults" / "defaults" / "main.yml")))
    variables.update(trusted(load_yaml(ROLE / "defaults" / "main.yml")))
    variables.update({"k8s_api_vip": "10.0.0.100", "inventory_hostname": "cp1", "inventory_hostname_short": "cp1"})
    variables.update(trusted(inventory))
    variables.update(trusted(load_yaml(ROLE / "vars" / "main.yml")))
    variables.update({"groups": GROUPS, "hostvars": HOSTVARS, **HOSTVARS["cp1"]})
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def test_every_cluster_node_with_its_node_name_and_addresses():
    assert render("{{ __control_plane_kubelet_csr_nodes }}") == [
        {"name": "cp1", "addresses": ["10.0.0.11", "cp1"]},
        # No node_ip: ansible_host; the inventory name is an allowed DNS name besides the short node name.
        {"name": "w1", "addresses": ["10.0.0.21", "w1.example.com"]},
        # node_name wins; a dual-stack node_ip gives both addresses (the kubelet's --node-ip takes both).
        {"name": "worker-2", "addresses": ["10.0.0.22", "fd00::22", "w2"]},
    ]


def _flags(**inventory):
    return render("{{ __control_plane_apiserver_args }}", **inventory)


def test_the_apiserver_verifies_kubelets_when_their_requests_are_approved():
    assert render("{{ __control_plane_kubelet_csr_approve }}") is True
    assert _flags()["kubelet-certificate-authority"] == "/etc/kubernetes/pki/ca.crt"


@pytest.mark.parametrize("inventory", [
    {"control_plane_kubelet_csr_approve": False},
    {"control_plane_kubelet_server_tls_bootstrap": False},
    # The KubeletConfiguration the template renders takes serverTLSBootstrap from the extra config over the switch.
    {"control_plane_kubelet_extra_config": {"serverTLSBootstrap": False}},
], ids=["approval-off", "bootstrap-off", "bootstrap-off-in-extra-config"])
def test_no_approval_no_kubelet_ca_flag(inventory):
    assert render("{{ __control_plane_kubelet_csr_approve }}", **inventory) is False
    assert "kubelet-certificate-authority" not in _flags(**inventory)
    # The rest of the flags is unchanged.
    assert _flags(**inventory)["profiling"] == "false"


def test_extra_config_can_turn_the_bootstrap_on_and_extra_args_win():
    on = {"control_plane_kubelet_server_tls_bootstrap": False,
          "control_plane_kubelet_extra_config": {"serverTLSBootstrap": True}}
    assert render("{{ __control_plane_kubelet_csr_approve }}", **on) is True
    assert _flags(control_plane_apiserver_extra_args={"kubelet-certificate-authority": "/srv/kubelet-ca.crt"})[
        "kubelet-certificate-authority"] == "/srv/kubelet-ca.crt"
    assert "kubelet-certificate-authority" not in _flags(
        control_plane_apiserver_extra_args={"kubelet-certificate-authority": None})
