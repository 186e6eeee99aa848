# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the missing_packages filter (skip a package manager run when nothing is missing)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.packages import FilterModule, missing_packages

# Shaped like ansible_facts.packages from package_facts (apt: full Debian version; rpm: version + release).
APT = {
    "conntrack": [{"name": "conntrack", "version": "1:1.4.7-1+b2", "arch": "amd64", "source": "apt"}],
    "kubelet": [{"name": "kubelet", "version": "1.36.2-1.1", "arch": "amd64", "source": "apt"}],
    "socat": [{"name": "socat", "version": "1.7.4.4-2", "arch": "amd64", "source": "apt"}],
}
RPM = {
    "kubelet": [{"name": "kubelet", "version": "1.36.2", "release": "150500.1.1", "epoch": None,
                 "arch": "x86_64", "source": "rpm"}],
}


def test_everything_installed_leaves_nothing():
    assert missing_packages(["conntrack", "socat"], APT) == []


def test_absent_names_are_returned_in_input_order():
    assert missing_packages(["nftables", "conntrack", "gnupg"], APT) == ["nftables", "gnupg"]


def test_a_pin_needs_exactly_that_version():
    assert missing_packages(["kubelet=1.36.2-1.1"], APT) == []
    assert missing_packages(["kubelet=1.36.3-1.1"], APT) == ["kubelet=1.36.3-1.1"]
    assert missing_packages(["kubeadm=1.36.2-1.1"], APT) == ["kubeadm=1.36.2-1.1"]


def test_rpm_versions_match_with_or_without_the_release():
    assert missing_packages(["kubelet=1.36.2", "kubelet=1.36.2-150500.1.1"], RPM) == []
    assert missing_packages(["kubelet=1.36.1"], RPM) == ["kubelet=1.36.1"]


def test_without_package_facts_everything_is_missing():
    assert missing_packages(["conntrack", "kubelet=1.36.2-1.1"], None) == ["conntrack", "kubelet=1.36.2-1.1"]


def test_a_malformed_facts_entry_counts_as_not_installed():
    assert missing_packages(["socat", "conntrack"], {"socat": [], "conntrack": ["junk"]}) == ["socat", "conntrack"]


@pytest.mark.parametrize("wanted", ["conntrack", None, {"conntrack": 1}])
def test_wanted_must_be_a_list(wanted):
    with pytest.raises(AnsibleFilterError, match="expects a list of package names"):
        missing_packages(wanted, APT)


def test_facts_must_be_a_dict():
    with pytest.raises(AnsibleFilterError, match=r"expects ansible_facts.packages \(a dict\), got list"):
        missing_packages(["socat"], ["socat"])


def test_registered_as_a_filter():
    assert FilterModule().filters()["missing_packages"] is missing_packages
