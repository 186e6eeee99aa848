# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common and node stages of site.yml on every cluster node. common: the hostname, every node in /etc/hosts,
time sync with our server only. node: containerd 2.x as kubeadm needs it, the pinned Kubernetes packages from
the signed mirror, held, and the OS settings; plus the container-only skips, which must be announced, and the
optional nftables firewall on cl-w2. Tests taking `host` run on every node.

Control-plane checks live in their own files next to this one.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
from node_shell import ansible_env, inventory_args

VERSION = "1.36.2"
DEB_VERSION = VERSION + "-1.1"
# The tag kubeadm 1.36 expects (its PauseVersion; tests/unit/roles/test_node_os_vars.py asks the real kubeadm).
PAUSE = "registry.cluster-test.invalid:5000/pause:3.10.2"
MIRROR = "10.123.70.5"
SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
# The Kubernetes nodes (cl-w3 joined in the scale test, which runs first), not cl-ops: the operator host of
# test_upgrade_timer.py is no cluster node.
NODES = {"cl-cp1": "10.123.70.11", "cl-cp2": "10.123.70.12", "cl-cp3": "10.123.70.13",
         "cl-w1": "10.123.70.21", "cl-w2": "10.123.70.22", "cl-w3": "10.123.70.23"}
testinfra_hosts = ["ansible://%s" % name for name in NODES]


# The common stage (roles/common), which site.yml runs before this one on the same nodes.
def test_hostname_is_the_inventory_name(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


def test_every_node_resolves_and_answers_by_name(host):
    # /etc/hosts is the node's own file (--no-hosts): the role's block is what resolves the names.
    script = "; ".join("getent hosts %s; ping -c 1 -W 2 -q %s >/dev/null && echo answered %s" % (n, n, n)
                       for n in NODES)
    lines = host.run(script).stdout.splitlines()
    resolved = {fields[1]: fields[0] for fields in (line.split() for line in lines) if fields[0] != "answered"}
    assert resolved == NODES
    assert ["answered %s" % name for name in NODES] == [line for line in lines if line.startswith("answered")]


def test_etc_hosts_block_lists_each_node_once(host):
    content = host.file("/etc/hosts").content_string
    assert content.count("# BEGIN baremetal.kubernetes cluster nodes") == 1
    block = content.split("# BEGIN baremetal.kubernetes cluster nodes")[1].split("# END")[0]
    lines = sorted(line.split() for line in block.strip().splitlines())
    assert lines == sorted([address, name] for name, address in NODES.items())
    assert "127.0.0.1\tlocalhost" in content


def test_timesyncd_uses_only_our_servers(host):
    assert host.package("systemd-timesyncd").is_installed
    conf = host.file("/etc/systemd/timesyncd.conf.d/baremetal-kubernetes.conf")
    assert conf.mode == 0o644
    assert "NTP=10.123.70.1" in conf.content_string
    assert "FallbackNTP=" in conf.content_string.splitlines()
    # systemd itself reads the drop-in: the effective configuration names our server.
    assert "NTP=10.123.70.1" in host.check_output("systemd-analyze cat-config systemd/timesyncd.conf")
    assert host.service("systemd-timesyncd").is_enabled


def test_containerd_runs_with_systemd_cgroups_and_the_pinned_sandbox_image(host):
    assert host.service("containerd").is_running
    assert host.service("containerd").is_enabled
    config = host.file("/etc/containerd/config.toml")
    assert config.mode == 0o600
    assert "SystemdCgroup = true" in config.content_string
    assert 'sandbox = "%s"' % PAUSE in config.content_string
    # What containerd 2.x itself parsed from that file, not just the file.
    dump = host.run("containerd config dump")
    assert dump.rc == 0, dump.stderr
    assert "SystemdCgroup = true" in dump.stdout
    assert "sandbox = '%s'" % PAUSE in dump.stdout
    assert "config_path = '/etc/containerd/certs.d'" in dump.stdout


def test_the_cri_plugin_is_loaded_and_answers_on_the_crictl_endpoint(host):
    crictl = host.file("/etc/crictl.yaml").content_string
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert "image-endpoint: unix:///run/containerd/containerd.sock" in crictl
    assert host.socket("unix:///run/containerd/containerd.sock").is_listening
    plugins = host.check_output("ctr --address /run/containerd/containerd.sock plugins ls")
    cri = [line for line in plugins.splitlines() if "io.containerd.grpc.v1" in line and " cri " in line]
    assert cri and cri[0].split()[-1] == "ok", plugins
    # The CRI's own namespace exists once the plugin runs; containerd answers over the socket crictl uses.
    version = host.run("ctr --address /run/containerd/containerd.sock version")
    assert version.rc == 0 and "Server:" in version.stdout, version.stderr
    # The cri-tools package of the minor's repository (tests/harness/components.yml: cri_tools).
    assert host.check_output("crictl --version") == "crictl version v1.36.0"


def test_the_registry_mirror_is_configured(host):
    hosts_toml = host.file("/etc/containerd/certs.d/registry.k8s.io/hosts.toml").content_string
    assert '[host."http://%s:5000"]' % MIRROR in hosts_toml
    assert 'capabilities = ["pull", "resolve"]' in hosts_toml
    # The sandbox image's private registry name resolves only through its mirror, and the image was pulled.
    private = host.file("/etc/containerd/certs.d/registry.cluster-test.invalid:5000/hosts.toml").content_string
    assert '[host."http://%s:5000"]' % MIRROR in private
    assert PAUSE in host.check_output("crictl images -o json")


def test_kubernetes_packages_are_installed_at_the_exact_version_and_held(host):
    for name in ("kubeadm", "kubelet", "kubectl"):
        assert host.package(name).version == DEB_VERSION
    assert host.package("cri-tools").version == "1.36.0-1.1"
    assert set(host.check_output("apt-mark showhold").split()) >= {"kubeadm", "kubelet", "kubectl", "cri-tools"}
    assert host.check_output("kubeadm version -o short") == "v" + VERSION
    assert host.check_output("kubelet --version") == "Kubernetes v" + VERSION


def test_the_repository_is_signed_by_its_own_key_and_apt_verified_it(host):
    assert not host.file("/etc/apt/sources.list.d/kubernetes.list").exists
    source = host.file("/etc/apt/sources.list.d/kubernetes.sources").content_string
    assert "URIs: http://%s:8080/core:/stable:/v1.36/deb/" % MIRROR in source
    assert "Suites: /" in source
    assert "Signed-By: /etc/apt/keyrings/kubernetes-apt-keyring.gpg" in source
    keyring = host.file("/etc/apt/keyrings/kubernetes-apt-keyring.gpg")
    assert keyring.exists and keyring.mode == 0o644
    # Dearmoured: an OpenPGP binary packet, not "-----BEGIN PGP".
    assert not host.check_output("head -c 20 /etc/apt/keyrings/kubernetes-apt-keyring.gpg | base64").startswith("LS0t")
    # apt keeps a repository's InRelease only after gpgv accepted it; check it against exactly that key...
    inrelease = host.check_output("ls /var/lib/apt/lists/%s*_InRelease" % MIRROR)
    ok = host.run("gpgv --keyring /etc/apt/keyrings/kubernetes-apt-keyring.gpg %s", inrelease)
    assert ok.rc == 0, ok.stderr
    # ...and it is not signed by any key apt trusts globally (signed-by is what makes it valid).
    other = host.run("gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg %s", inrelease)
    assert other.rc != 0
    policy = host.check_output("apt-cache policy kubeadm")
    assert "http://%s:8080/core:/stable:/v1.36/deb" % MIRROR in policy


def test_sysctl_drop_in_and_namespaced_values(host):
    content = host.file("/etc/sysctl.d/90-baremetal-kubernetes.conf").content_string
    for line in ("fs.inotify.max_user_instances = 8192", "fs.inotify.max_user_watches = 524288",
                 "net.bridge.bridge-nf-call-ip6tables = 1", "net.bridge.bridge-nf-call-iptables = 1",
                 "net.ipv4.ip_forward = 1"):
        assert line in content.splitlines()
    # Per-network-namespace keys are applied in the node's own namespace.
    assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
    assert host.check_output("sysctl -n net.bridge.bridge-nf-call-iptables") == "1"


def test_kernel_modules_at_boot(host):
    lines = host.file("/etc/modules-load.d/baremetal-kubernetes.conf").content_string.splitlines()
    assert "overlay" in lines and "br_netfilter" in lines


def test_swap_stays_off_across_boots(host):
    for line in host.file("/etc/fstab").content_string.splitlines():
        fields = line.split()
        assert line.lstrip().startswith("#") or len(fields) < 3 or fields[2] != "swap", line
    units = host.run("systemctl list-units --type=swap --state=active --plain --no-legend").stdout.strip()
    assert units == ""
    assert "no zram swap" in host.file("/etc/systemd/zram-generator.conf").content_string


@pytest.fixture(scope="module")
def node_stage_check_run():
    """The node stage again, in check mode, on one converged node: its output and recap."""
    if not os.environ.get("MOLECULE_INVENTORY_FILE"):
        pytest.fail("MOLECULE_INVENTORY_FILE is not set: run this through `molecule verify -s cluster`")
    # With the scale test's extra inventory: cl-w3 belongs to the cluster by now, as in /etc/hosts.
    run = subprocess.run(
        ["ansible-playbook", *inventory_args(), str(SCENARIO / "converge.yml"), "--check",
         "--limit", "localhost,cl-w1"],
        capture_output=True, text=True, timeout=900, env=ansible_env("node"), cwd=str(PROJECT),
        check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run.stdout


def test_steps_that_cannot_apply_in_a_container_say_so(node_stage_check_run):
    out = " ".join(node_stage_check_run.split())
    assert "SKIPPED swapoff on cl-w1: it runs in a container (podman)" in out
    assert "SKIPPED modprobe overlay br_netfilter on cl-w1: it runs in a container (podman)" in out
    assert ("SKIPPED applying the kernel-global sysctls fs.inotify.max_user_instances, fs.inotify.max_user_watches"
            " on cl-w1: it runs in a container (podman)") in out


def test_a_converged_node_needs_no_change(node_stage_check_run):
    recap = [line for line in node_stage_check_run.splitlines() if line.startswith("cl-w1")]
    # Name the tasks that would change, so a failure says where to look.
    changed, task = [], None
    for line in node_stage_check_run.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed: [cl-w1"):
            changed.append(task)
    assert recap and "changed=0" in recap[-1] and "failed=0" in recap[-1], (recap, changed)


def _probe(source, target_ip, port):
    """True when source can open a TCP connection to target_ip:port within 3 s."""
    code = ("import socket,sys\ns=socket.socket();s.settimeout(3)\n"
            "sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)")
    result = subprocess.run(["podman", "exec", source, "python3", "-c", code, target_ip, str(port)],
                            capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def test_the_worker_firewall_lets_in_only_the_documented_ports():
    w2 = testinfra.get_host("podman://cl-w2")
    assert w2.service("baremetal-kubernetes-firewall").is_enabled
    table = w2.check_output("nft list table inet baremetal_kubernetes")
    assert "policy drop" in table and "10250" in table and "30000-32767" in table
    assert "6443" not in table  # a worker has no apiserver
    # flannel's VXLAN port (node_firewall_node_ports) from the cluster's nodes only, cl-w3 included since the
    # scale test (test_control_plane.py) added it.
    nodes = ", ".join("10.123.70.%d" % i for i in (11, 12, 13, 21, 22, 23))
    assert "ip saddr { %s } udp dport 8472 accept" % nodes in table, table
    # Listeners on an allowed NodePort and on a port nobody opened; probed from cl-w1.
    listeners = []
    try:
        for port in (30080, 9099):
            w2.run("systemd-run --unit probe-%d --collect python3 -m http.server %d --bind 10.123.70.22" % (port, port))
            listeners.append(port)
        deadline = time.monotonic() + 20
        while not all(w2.socket("tcp://10.123.70.22:%d" % p).is_listening for p in listeners):
            assert time.monotonic() < deadline, "the probe listeners did not start"
            time.sleep(0.5)
        assert w2.socket("tcp://10.123.70.22:9099").is_listening
        assert _probe("cl-w1", "10.123.70.22", 30080)
        assert not _probe("cl-w1", "10.123.70.22", 9099)
        # The node itself still reaches its own port (loopback and established traffic are allowed).
        assert w2.run("curl -sf -o /dev/null --max-time 3 http://10.123.70.22:9099/").rc == 0
    finally:
        for port in listeners:
            w2.run("systemctl stop probe-%d" % port)
    # cl-w1 has no firewall: the same port is open there.
    assert testinfra.get_host("podman://cl-w1").run("nft list table inet baremetal_kubernetes").rc != 0
