# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the address_interfaces filter (the interface that carries the API VIP)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.address_interfaces import (
    FilterModule,
    address_interfaces,
)


def _facts():
    """Shaped like ansible_facts with the network subset on a two-NIC node holding the VIP."""
    return {
        "interfaces": ["lo", "eth0", "bond-mgmt", "eth1.20"],
        "lo": {"device": "lo", "ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0"}},
        "eth0": {
            "device": "eth0",
            "ipv4": {"address": "10.123.40.11", "netmask": "255.255.255.0"},
            # keepalived's VIP as a /32: must not make eth0 match a different subnet by itself.
            "ipv4_secondaries": [{"address": "10.123.40.100", "netmask": "255.255.255.255"}],
            "ipv6": [{"address": "fe80::1%eth0", "prefix": "64", "scope": "link"}],
        },
        "bond_mgmt": {"device": "bond-mgmt", "ipv4": {"address": "192.168.50.5", "netmask": "255.255.254.0"}},
        "eth1.20": {
            "device": "eth1.20",
            "ipv6": [{"address": "2001:db8:20::5", "prefix": "64", "scope": "global"}],
        },
    }


@pytest.mark.parametrize(
    "address, expected",
    [
        ("10.123.40.100", ["eth0"]),
        (" 10.123.40.200 ", ["eth0"]),
        ("192.168.51.10", ["bond-mgmt"]),  # a /23 with a dashed device name
        ("2001:db8:20::100", ["eth1.20"]),
        ("127.0.0.5", ["lo"]),
        ("10.123.41.100", []),
        ("fe80::99", ["eth0"]),
    ],
)
def test_finds_the_interface_whose_subnet_contains_the_address(address, expected):
    assert address_interfaces(_facts(), address) == expected


def test_a_host_route_alone_does_not_count():
    facts = _facts()
    facts["eth0"]["ipv4"] = {"address": "10.9.9.9", "netmask": "255.255.255.0"}
    # Only the /32 VIP is left on 10.123.40.0/24: the node is not attached to that subnet.
    assert address_interfaces(facts, "10.123.40.100") == []


def test_interfaces_without_addresses_or_facts_are_skipped():
    facts = {"interfaces": ["eth0", "ghost"], "eth0": {"device": "eth0"}}
    assert address_interfaces(facts, "10.0.0.1") == []


@pytest.mark.parametrize("address", ["10.123.40.0/24", "not-an-ip", ""])
def test_refuses_a_malformed_address(address):
    with pytest.raises(AnsibleFilterError, match="is not an IP address"):
        address_interfaces(_facts(), address)


def test_refuses_something_other_than_facts():
    with pytest.raises(AnsibleFilterError, match="expects ansible_facts"):
        address_interfaces(["eth0"], "10.0.0.1")


def test_filter_is_registered():
    assert FilterModule().filters()["address_interfaces"] is address_interfaces
