# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node role on a QEMU VM: the kernel-level steps it skips in containers, done for real.

prepare.yml checked the fresh VM first (swap on, br_netfilter absent, ip_forward 0, the default
inotify limit), so the state found before the reboot is the role's work. Then the VM is rebooted and
the same state must come back from what the role wrote to disk (fstab, modules-load.d, sysctl.d).
The tests run in file order: the reboot test sits between the two halves. Tests marked whole_role
check what the rest of the node role installs (containerd, the Kubernetes packages); CI's reduced form
converges only the swap and kernel steps and leaves them out by name (conftest.py).
"""

from __future__ import annotations

import time

import pytest
from vm_ssh import close_master

VERSION = "1.36.2"
CONTAINERD = "2.2.10"
RUNC = "1.3.7"
MODULES = ("br_netfilter", "overlay")
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
    "fs.inotify.max_user_watches": "524288",
    "fs.inotify.max_user_instances": "8192",
}
# Measured 76-184 s under TCG on a loaded 2-core host.
REBOOT_TIMEOUT = 480


def loaded_modules(host):
    return {name for name in MODULES if host.file("/sys/module/%s" % name).is_directory}


def swap_areas(host):
    return host.check_output("swapon --show --noheadings")


def test_it_is_a_virtual_machine_not_a_container(host):
    assert host.check_output("systemd-detect-virt") in ("qemu", "kvm")
    assert host.run("systemd-detect-virt --container").rc != 0


def test_the_role_loaded_the_kernel_modules(host):
    assert loaded_modules(host) == set(MODULES)
    lines = host.file("/etc/modules-load.d/baremetal-kubernetes.conf").content_string.splitlines()
    assert set(MODULES) <= set(lines)


def test_the_role_applied_every_sysctl_including_the_kernel_global_ones(host):
    for key, value in SYSCTLS.items():
        assert host.check_output("sysctl -n %s", key) == value, key


def test_the_role_turned_swap_off_and_commented_out_the_fstab_entry(host):
    assert swap_areas(host) == ""
    fstab = host.file("/etc/fstab").content_string.splitlines()
    assert "# swap disabled for Kubernetes by baremetal.kubernetes: /swapfile none swap sw 0 0" in fstab
    assert "/swapfile none swap sw 0 0" not in fstab


def test_reboot(host):
    """Reboot the VM inside verify and wait for it, bounded; later tests see the new boot."""
    before = host.check_output("cat /proc/sys/kernel/random/boot_id")
    # Detached, so the SSH session ends cleanly before systemd takes the network down.
    host.run("systemd-run --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot")
    close_master(host)
    started = time.monotonic()
    deadline = started + REBOOT_TIMEOUT
    after = before
    while time.monotonic() < deadline:
        time.sleep(5)
        try:
            result = host.run("cat /proc/sys/kernel/random/boot_id")
        except RuntimeError:  # ssh exits 255 while the VM is down
            continue
        if result.rc == 0 and result.stdout.strip() not in ("", before):
            after = result.stdout.strip()
            break
    assert after != before, "the VM did not come back within %d s" % REBOOT_TIMEOUT
    state = host.run("timeout 120 systemctl is-system-running --wait")
    print("reboot: back on SSH after %.0f s, systemd %s" % (time.monotonic() - started, state.stdout.strip()))
    assert state.stdout.strip() in ("running", "degraded"), state.stdout + host.run("systemctl --failed").stdout


def test_after_the_reboot_swap_stays_off(host):
    assert swap_areas(host) == ""
    assert host.check_output("tail -n +2 /proc/swaps") == ""
    assert host.run("systemctl list-units --type=swap --state=active --plain --no-legend").stdout.strip() == ""


def test_after_the_reboot_the_modules_and_sysctls_come_back(host):
    assert loaded_modules(host) == set(MODULES)
    for key, value in SYSCTLS.items():
        assert host.check_output("sysctl -n %s", key) == value, key


@pytest.mark.whole_role
def test_containerd_runs_with_systemd_cgroups(host):
    containerd = host.service("containerd")
    assert containerd.is_running and containerd.is_enabled
    # The release the inventory pins (molecule.yml), with its runc, not Debian's containerd 1.6.
    assert "v" + CONTAINERD in host.check_output("containerd --version").split()
    assert host.check_output("runc --version").splitlines()[0] == "runc version %s" % RUNC
    config = host.file("/etc/containerd/config.toml")
    assert config.mode == 0o600
    assert "SystemdCgroup = true" in config.content_string
    # What containerd itself parsed from that file, not just the file.
    dump = host.run("containerd config dump")
    assert dump.rc == 0, dump.stderr
    assert "SystemdCgroup = true" in dump.stdout
    # And the running daemon: its CRI plugin loaded, answering on the socket crictl is configured for.
    plugins = host.check_output("ctr --address /run/containerd/containerd.sock plugins ls")
    cri = [line for line in plugins.splitlines() if "io.containerd.grpc.v1" in line and " cri " in line]
    assert cri and cri[0].split()[-1] == "ok", plugins
    # The overlayfs snapshotter works on this kernel (in a container it depends on the host's).
    snapshotters = [line for line in plugins.splitlines() if "io.containerd.snapshotter.v1" in line]
    assert any(" overlayfs " in line and line.split()[-1] == "ok" for line in snapshotters), plugins


@pytest.mark.whole_role
def test_kubelet_is_installed_at_the_version_and_held(host):
    for name in ("kubeadm", "kubelet", "kubectl"):
        assert host.package(name).version == VERSION + "-1.1"
    held = set(host.check_output("apt-mark showhold").split())
    assert {"kubeadm", "kubelet", "kubectl", "cri-tools"} <= held
    assert host.service("kubelet").is_enabled


@pytest.mark.whole_role
@pytest.mark.parametrize("unit", ["containerd", "kubelet"])
def test_units_are_enabled_for_the_next_boot(host, unit):
    assert host.service(unit).is_enabled
