# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node role's per-OS selection: which vars file each distribution gets, and what it then installs.

Only Debian 12 runs in our containers, so the Ubuntu and EL 9 paths are checked here: the candidate list of
the "Load the per-OS variables" task in tasks/os_vars.yml (imported by preflight.yml) is rendered
with each distribution's facts and resolved against roles/node/vars exactly as first_found does (first
existing file wins), then the role's
derived values (repository URL, key URL, package specs, containerd method, firewall) are rendered from
that file plus vars/main.yml and the role defaults.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from role_vars import load_yaml, trusted

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "node"

FACTS = {
    "debian12": {"distribution": "Debian", "distribution_major_version": "12", "distribution_version": "12.12",
                 "os_family": "Debian", "architecture": "x86_64"},
    "ubuntu2204": {"distribution": "Ubuntu", "distribution_major_version": "22", "distribution_version": "22.04",
                   "os_family": "Debian", "architecture": "x86_64"},
    "rocky9": {"distribution": "Rocky", "distribution_major_version": "9", "distribution_version": "9.6",
               "os_family": "RedHat", "architecture": "aarch64"},
    "archlinux": {"distribution": "Archlinux", "distribution_major_version": "NA", "distribution_version": "NA",
                  "os_family": "Archlinux", "architecture": "x86_64"},
}


def _select_task():
    tasks = load_yaml(ROLE / "tasks" / "os_vars.yml")
    [task] = [t for t in tasks if t.get("name") == "Load the per-OS variables"]
    return task


def _resolve(facts):
    """The vars file first_found picks for these facts, or None (the task then loads nothing)."""
    task = _select_task()
    assert task["ansible.builtin.include_vars"] == {"file": "{{ item }}"}
    assert "first_found" in task["loop"] and "__node_os_vars_candidates" in task["loop"]
    candidates = task["vars"]["__node_os_vars_candidates"]
    assert candidates["skip"] is True
    templar = Templar(loader=DataLoader(), variables={"ansible_facts": facts, "role_path": str(ROLE)})
    paths = [templar.template(trust_as_template(p)) for p in candidates["paths"]]
    for name in candidates["files"]:
        rendered = templar.template(trust_as_template(name))
        for path in paths:
            if (Path(path) / rendered).is_file():
                return Path(path) / rendered
    return None


def _render(facts, expression, **inventory):
    variables = {}
    variables.update(trusted(load_yaml(ROOT / "roles" / "cluster_defaults" / "defaults" / "main.yml")))
    variables.update(trusted(load_yaml(ROLE / "defaults" / "main.yml")))
    variables.update(trusted(inventory))
    variables.update(trusted(load_yaml(ROLE / "vars" / "main.yml")))
    variables.update(trusted(load_yaml(_resolve(facts))))
    variables.update({"ansible_facts": facts, "group_names": ["k8s_cluster", "kube_node"]})
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


@pytest.mark.parametrize("system, expected", [
    ("debian12", "Debian.yml"),
    ("ubuntu2204", "Debian.yml"),
    ("rocky9", "RedHat.yml"),
])
def test_each_supported_system_gets_its_family_file(system, expected):
    assert _resolve(FACTS[system]) == ROLE / "vars" / expected


def test_an_unknown_system_gets_no_file_and_the_preflight_refuses_it():
    assert _resolve(FACTS["archlinux"]) is None
    asserts = [t for t in load_yaml(ROLE / "tasks" / "preflight.yml")
               if t.get("name") == "Refuse an operating system this role does not know"]
    assert "__node_os_repo_kind is defined" in asserts[0]["ansible.builtin.assert"]["that"]


@pytest.mark.parametrize("system, tested", [("debian12", True), ("ubuntu2204", False), ("rocky9", False)])
def test_only_the_tested_system_runs_without_the_untested_warning(system, tested):
    platform = _render(FACTS[system], "{{ __node_platform }}")
    assert (platform in _render(FACTS[system], "{{ __node_tested_platforms }}")) is tested
    warn = [t for t in load_yaml(ROLE / "tasks" / "preflight.yml")
            if t.get("name") == "Warn that no test runs this operating system"]
    assert warn[0]["when"] == "__node_platform not in __node_tested_platforms"


def test_galaxy_metadata_claims_only_the_tested_systems():
    # Galaxy's platform names: "Debian" with codenames. Ubuntu and EL values exist but no test runs them.
    codenames = {"12": "bookworm", "13": "trixie"}
    tested = {("Debian", codenames[p.split()[1]]) for p in load_yaml(ROLE / "vars" / "main.yml")[
        "__node_tested_platforms"]}
    for meta in sorted((ROOT / "roles").glob("*/meta/main.yml")):
        claimed = {(p["name"], str(v)) for p in load_yaml(meta)["galaxy_info"].get("platforms", [])
                   for v in p["versions"]}
        assert claimed <= tested, (meta.parent.parent.name, claimed - tested)


def test_every_os_file_defines_the_same_names():
    debian = load_yaml(ROLE / "vars" / "Debian.yml")
    redhat = load_yaml(ROLE / "vars" / "RedHat.yml")
    assert sorted(debian) == sorted(redhat)


@pytest.mark.parametrize("system", ["debian12", "ubuntu2204"])
def test_debian_family_uses_the_deb_repository_and_the_distribution_containerd(system):
    facts = FACTS[system]
    base = "http://10.0.0.5:8080/"
    assert _render(facts, "{{ __node_kubernetes_repo_url }}", k8s_version="1.36.2",
                   node_kubernetes_repo_base_url=base) == "http://10.0.0.5:8080/core:/stable:/v1.36/deb/"
    assert _render(facts, "{{ __node_kubernetes_key_url }}", k8s_version="1.36.2",
                   node_kubernetes_repo_base_url=base) == "http://10.0.0.5:8080/core:/stable:/v1.36/deb/Release.key"
    assert _render(facts, "{{ __node_kubernetes_specs }}", k8s_version="1.36.2") == [
        "kubeadm=1.36.2-1.1", "kubelet=1.36.2-1.1", "kubectl=1.36.2-1.1", "cri-tools=1.36.0-1.1"]
    assert _render(facts, "{{ __node_kubernetes_pins }}", k8s_version="1.36.2") == _render(
        facts, "{{ __node_kubernetes_specs }}", k8s_version="1.36.2")
    assert _render(facts, "{{ __node_containerd_method }}") == "package"
    assert _render(facts, "{{ __node_firewall }}") == "nftables"
    assert "conntrack" in _render(facts, "{{ __node_os_packages }}")


def test_el9_uses_the_rpm_repository_the_release_containerd_and_firewalld():
    facts = FACTS["rocky9"]
    assert _render(facts, "{{ __node_kubernetes_repo_url }}", k8s_version="1.35.1") == (
        "https://pkgs.k8s.io/core:/stable:/v1.35/rpm/")
    assert _render(facts, "{{ __node_kubernetes_key_url }}", k8s_version="1.35.1") == (
        "https://pkgs.k8s.io/core:/stable:/v1.35/rpm/repodata/repomd.xml.key")
    assert _render(facts, "{{ __node_kubernetes_specs }}", k8s_version="1.35.1") == [
        "kubeadm-1.35.1", "kubelet-1.35.1", "kubectl-1.35.1", "cri-tools-1.35.0"]
    # The pins the package facts are compared with (missing_packages: RPM versions match without release).
    assert _render(facts, "{{ __node_kubernetes_pins }}", k8s_version="1.35.1") == [
        "kubeadm=1.35.1", "kubelet=1.35.1", "kubectl=1.35.1", "cri-tools=1.35.0"]
    assert _render(facts, "{{ __node_containerd_method }}") == "release"
    assert _render(facts, "{{ __node_firewall }}") == "firewalld"
    assert _render(facts, "{{ __node_arch }}") == "arm64"
    assert {"conntrack-tools", "python3-dnf-plugin-versionlock"} <= set(_render(facts, "{{ __node_os_packages }}"))


def test_an_explicit_key_url_and_method_win_over_the_os_defaults():
    facts = FACTS["rocky9"]
    assert _render(facts, "{{ __node_kubernetes_key_url }}", node_kubernetes_repo_key_url="https://m/k.key") == (
        "https://m/k.key")
    assert _render(facts, "{{ __node_containerd_method }}", node_containerd_install_method="package") == "package"


@pytest.mark.parametrize("version, image", [
    ("1.33.4", "registry.k8s.io/pause:3.10"),
    ("1.35.4", "registry.k8s.io/pause:3.10.1"),
    ("1.36.2", "registry.k8s.io/pause:3.10.2"),
])
def test_the_sandbox_image_follows_the_kubernetes_minor(version, image):
    assert _render(FACTS["debian12"], "{{ __node_sandbox_image }}", k8s_version=version) == image


@pytest.mark.parametrize("version", ["1.36.3", "1.37.2"])
def test_the_sandbox_image_is_the_one_the_real_kubeadm_lists(version):
    """The real kubeadm of each built release (tests/harness/components.py) names the same pause image."""
    found = subprocess.run([sys.executable, str(ROOT / "tests" / "harness" / "components.py"), "path", "kubernetes",
                            version], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.fail("the real kubeadm %s is not built: run `make components` (%s)" % (version, found.stderr.strip()))
    listed = subprocess.run([str(Path(found.stdout.strip()) / "bin" / "kubeadm"), "config", "images", "list",
                             "--kubernetes-version", "v" + version], capture_output=True, text=True, timeout=60,
                            check=True).stdout.split()
    pause = [image for image in listed if image.startswith("registry.k8s.io/pause:")]
    assert [_render(FACTS["debian12"], "{{ __node_sandbox_image }}", k8s_version=version)] == pause


def test_the_sandbox_image_can_come_from_a_private_registry_or_be_set_outright():
    facts = FACTS["debian12"]
    assert _render(facts, "{{ __node_sandbox_image }}", k8s_version="1.36.2",
                   node_containerd_sandbox_registry="reg.local:5000") == "reg.local:5000/pause:3.10.2"
    assert _render(facts, "{{ __node_sandbox_image }}", node_containerd_sandbox_image="x/pause:9") == "x/pause:9"


def test_every_supported_minor_has_a_sandbox_image():
    from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import K8S_SUPPORTED_MINORS

    (low_major, low), (high_major, high) = K8S_SUPPORTED_MINORS
    assert low_major == high_major == 1
    tags = load_yaml(ROLE / "vars" / "main.yml")["__node_pause_tags"]
    assert sorted(tags) == sorted("1.%d" % minor for minor in range(low, high + 1))


def test_worker_firewall_ports():
    facts = FACTS["debian12"]
    assert _render(facts, "{{ __node_firewall_ports }}") == [
        "22/tcp", "10250/tcp", "10256/tcp", "30000-32767/tcp", "30000-32767/udp"]
    assert _render(facts, "{{ __node_firewall_vrrp }}") is False


def test_node_ports_are_open_to_every_cluster_node_by_its_node_ip_else_its_ansible_host():
    hostvars = {"cp1": {"ansible_host": "192.168.1.11", "node_ip": "10.0.0.11"},
                "w1": {"ansible_host": "10.0.0.21"},
                "w2": {"ansible_host": "192.168.1.22", "node_ip": "10.0.0.22,fd00::22"}}
    groups = {"k8s_cluster": ["cp1", "w1", "w2"]}
    facts = FACTS["debian12"]
    assert _render(facts, "{{ node_firewall_node_ports }}") == ["8472/udp"]
    assert _render(facts, "{{ __node_firewall_node_sources }}", groups=groups, hostvars=hostvars) == [
        "10.0.0.11", "10.0.0.21", "10.0.0.22", "fd00::22"]
