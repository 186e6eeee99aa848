# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for installed_packages: package_facts' ansible_facts.packages from one dpkg-query or rpm run."""

from __future__ import annotations

from unittest import mock

import pytest
from ansible.module_utils import basic

from ansible_collections.baremetal.kubernetes.plugins.filter.packages import missing_packages
from ansible_collections.baremetal.kubernetes.plugins.modules import installed_packages as mod
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import run_module

# dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n' (sorted by name, as dpkg does).
DPKG_OUTPUT = "".join(
    "%s\t%s\t%s\t%s\n" % row
    for row in [
        ("ii ", "conntrack", "1:1.4.7-1+b2", "amd64"),
        ("ii ", "dpkg", "1.21.22", "amd64"),
        ("iH ", "half-installed", "1.0-1", "amd64"),
        ("iU ", "unpacked", "1.0-1", "amd64"),
        ("iF ", "half-configured", "1.0-1", "amd64"),
        ("it ", "triggers-pending", "1.0-1", "amd64"),
        ("iW ", "triggers-awaited", "1.0-1", "amd64"),
        ("hi ", "kubelet", "1.36.2-1.1", "amd64"),
        ("ii ", "libc6", "2.36-9+deb12u10", "amd64"),
        ("ii ", "libc6", "2.36-9+deb12u10", "i386"),
        ("rc ", "oldtool", "0.9-2", "amd64"),
        ("ri ", "leaving", "2.1-1", "amd64"),
        ("un ", "purged", "", ""),
        ("pn ", "never-installed", "", ""),
        ("iHR", "reinst-required", "2.0-1", "amd64"),
        ("ii ", "tzdata", "2025b-0+deb12u1", "all"),
    ]
)

# rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n' (unsorted, as rpm prints).
RPM_OUTPUT = "".join(
    "%s\t%s\t%s\t%s\t%s\n" % row
    for row in [
        ("kernel", "(none)", "5.14.0", "503.14.1.el9_5", "x86_64"),
        ("kubelet", "(none)", "1.36.2", "150500.1.1", "x86_64"),
        ("openssl", "1", "3.2.2", "6.el9_5", "x86_64"),
        ("kernel", "(none)", "5.14.0", "503.15.1.el9_5", "x86_64"),
        ("glibc", "0", "2.34", "125.el9_5.1", "i686"),
        ("gpg-pubkey", "(none)", "fd431d51", "4ae0493b", "(none)"),
    ]
)


@pytest.fixture
def host():
    """The host's tools (``bins``) and the commands the module runs there (``calls``, ``results``)."""

    class Host:
        def __init__(self):
            self.bins = {"dpkg-query": "/usr/bin/dpkg-query", "rpm": "/usr/bin/rpm"}
            self.results = {"dpkg-query": (0, DPKG_OUTPUT, ""), "rpm": (0, RPM_OUTPUT, "")}
            self.calls = []

        def get_bin_path(self, module, name, *args, **kwargs):
            return self.bins.get(name)

        def run_command(self, module, argv, *args, **kwargs):
            self.calls.append((list(argv), kwargs))
            return self.results[argv[0].rsplit("/", 1)[-1]]

    fake = Host()
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", autospec=True, side_effect=fake.get_bin_path), \
            mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake.run_command):
        yield fake


def _facts(args=None, check_mode=False):
    kind, result = run_module(mod.main, args or {}, check_mode=check_mode)
    assert kind == "exit", result
    assert result["changed"] is False
    assert set(result) >= {"ansible_facts"}
    return result["ansible_facts"]["packages"]


def test_dpkg_reports_installed_and_held_packages_in_package_facts_format(host):
    packages = _facts({"manager": "dpkg"})
    assert host.calls == [(["/usr/bin/dpkg-query", "-W", "-f",
                            "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
                           {"environ_update": {"LC_ALL": "C"}})]
    assert packages["conntrack"] == [{"name": "conntrack", "version": "1:1.4.7-1+b2", "arch": "amd64",
                                      "source": "apt"}]
    assert packages["kubelet"] == [{"name": "kubelet", "version": "1.36.2-1.1", "arch": "amd64", "source": "apt"}]
    assert packages["tzdata"] == [{"name": "tzdata", "version": "2025b-0+deb12u1", "arch": "all", "source": "apt"}]
    assert sorted(packages) == ["conntrack", "dpkg", "kubelet", "leaving", "libc6", "libc6:i386", "tzdata"]


def test_dpkg_leaves_out_half_installed_unpacked_config_files_and_removed_packages(host):
    packages = _facts({"manager": "dpkg"})
    # Selected for removal but still installed ("ri") is installed.
    assert packages["leaving"] == [{"name": "leaving", "version": "2.1-1", "arch": "amd64", "source": "apt"}]
    for name in ("half-installed", "unpacked", "half-configured", "triggers-pending", "triggers-awaited",
                 "reinst-required", "oldtool", "purged", "never-installed"):
        assert name not in packages


def test_dpkg_multi_arch_names_foreign_packages_like_python_apt(host):
    # python-apt (so package_facts) names a package of a foreign architecture name:arch; dpkg's arch is native.
    packages = _facts()
    assert packages["libc6"] == [{"name": "libc6", "version": "2.36-9+deb12u10", "arch": "amd64", "source": "apt"}]
    assert packages["libc6:i386"] == [{"name": "libc6:i386", "version": "2.36-9+deb12u10", "arch": "i386",
                                       "source": "apt"}]
    # On an arm64 host the amd64 packages are the foreign ones.
    arm = mod.parse_dpkg("ii \tdpkg\t1.21.22\tarm64\nii \tlibc6\t2.36-9\tamd64\nii \tlibc6\t2.36-9\tarm64\n")
    assert sorted(arm) == ["dpkg", "libc6", "libc6:amd64"]
    assert arm["libc6"][0]["arch"] == "arm64"
    # Without dpkg in the output the native architecture is unknown: both stay under the plain name.
    both = mod.parse_dpkg("ii \tlibc6\t2.36-9\tamd64\nii \tlibc6\t2.36-9\ti386\n")
    assert [entry["arch"] for entry in both["libc6"]] == ["amd64", "i386"]


def test_rpm_reports_epoch_release_and_every_installed_version(host):
    packages = _facts({"manager": "rpm"})
    assert host.calls == [(["/usr/bin/rpm", "-qa", "--qf", "%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"],
                           {"environ_update": {"LC_ALL": "C"}})]
    assert packages["kernel"] == [
        {"name": "kernel", "epoch": None, "version": "5.14.0", "release": "503.14.1.el9_5", "arch": "x86_64",
         "source": "rpm"},
        {"name": "kernel", "epoch": None, "version": "5.14.0", "release": "503.15.1.el9_5", "arch": "x86_64",
         "source": "rpm"},
    ]
    assert packages["openssl"] == [{"name": "openssl", "epoch": 1, "version": "3.2.2", "release": "6.el9_5",
                                    "arch": "x86_64", "source": "rpm"}]
    assert packages["glibc"][0]["epoch"] == 0
    assert packages["gpg-pubkey"][0]["arch"] is None
    assert sorted(packages) == ["glibc", "gpg-pubkey", "kernel", "kubelet", "openssl"]


def test_auto_prefers_dpkg_then_rpm(host):
    assert "libc6:i386" in _facts()
    assert [argv[0] for argv, _kwargs in host.calls] == ["/usr/bin/dpkg-query"]
    del host.bins["dpkg-query"]
    host.calls.clear()
    assert "openssl" in _facts({"manager": "auto"})
    assert [argv[0] for argv, _kwargs in host.calls] == ["/usr/bin/rpm"]


@pytest.mark.parametrize(("manager", "missing", "message"), [
    ("auto", ["dpkg-query", "rpm"], "installed_packages: neither dpkg-query nor rpm found on this host; set manager "
                                    "or use ansible.builtin.package_facts"),
    ("dpkg", ["dpkg-query"], "installed_packages: dpkg-query not found on this host (manager=dpkg)"),
    ("rpm", ["rpm"], "installed_packages: rpm not found on this host (manager=rpm)"),
])
def test_missing_tools_fail_with_the_fix(host, manager, missing, message):
    for name in missing:
        del host.bins[name]
    kind, result = run_module(mod.main, {"manager": manager})
    assert kind == "fail" and result["msg"] == message
    assert host.calls == []


def test_an_explicit_manager_does_not_fall_back(host):
    del host.bins["dpkg-query"]
    kind, result = run_module(mod.main, {"manager": "dpkg"})
    assert kind == "fail" and "dpkg-query not found" in result["msg"]
    assert host.calls == []


def test_a_failed_query_fails_with_its_stderr(host):
    host.results["dpkg-query"] = (2, "", "dpkg-query: error: parsing file '/var/lib/dpkg/status' near line 7\n")
    kind, result = run_module(mod.main, {})
    assert kind == "fail"
    assert result["msg"] == ("installed_packages: dpkg-query -W failed (rc=2): dpkg-query: error: parsing file "
                             "'/var/lib/dpkg/status' near line 7")
    host.results["rpm"] = (1, "", "error: rpmdb: BDB0113 Thread/process failed\n")
    kind, result = run_module(mod.main, {"manager": "rpm"})
    assert kind == "fail" and result["msg"] == ("installed_packages: rpm -qa failed (rc=1): error: rpmdb: BDB0113 "
                                                "Thread/process failed")


def test_unexpected_output_is_an_error(host):
    host.results["dpkg-query"] = (0, "ii \tconntrack\t1.4.7\n", "")
    kind, result = run_module(mod.main, {})
    assert kind == "fail" and result["msg"].startswith("installed_packages: unexpected dpkg-query output line 1")
    host.results["rpm"] = (0, "kernel\tx\t5.14.0\t1\tx86_64\n", "")
    kind, result = run_module(mod.main, {"manager": "rpm"})
    assert kind == "fail" and result["msg"] == "installed_packages: unexpected epoch 'x' for kernel in rpm output"


def test_empty_output_gives_no_packages(host):
    host.results["rpm"] = (0, "", "")
    assert _facts({"manager": "rpm"}) == {}


@pytest.mark.parametrize("manager", ["dpkg", "rpm"])
def test_check_mode_returns_the_same_facts(host, manager):
    assert _facts({"manager": manager}, check_mode=True) == _facts({"manager": manager})


def test_the_facts_feed_missing_packages_with_pins(host):
    deb = _facts({"manager": "dpkg"})
    assert missing_packages(["kubelet=1.36.2-1.1", "conntrack", "libc6"], deb) == []
    assert missing_packages(["kubelet=1.36.3-1.1", "conntrack=1:1.4.7-1+b2", "half-configured", "oldtool"], deb) == [
        "kubelet=1.36.3-1.1", "half-configured", "oldtool"]
    rpm = _facts({"manager": "rpm"})
    assert missing_packages(["kubelet=1.36.2-150500.1.1", "kubelet=1.36.2", "kernel=5.14.0-503.15.1.el9_5"], rpm) == []
    assert missing_packages(["kubelet=1.36.2-150500.1.2", "openssl=3.2.1", "cri-tools"], rpm) == [
        "kubelet=1.36.2-150500.1.2", "openssl=3.2.1", "cri-tools"]
