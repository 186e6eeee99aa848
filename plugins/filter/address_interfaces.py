# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``address_interfaces``: which interfaces are attached to the subnet of an address."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported when the filter runs
    netaddr = None
    HAS_NETADDR = False


def _fact_key(device):
    """The key under which setup stores an interface's facts: ``-`` and ``:`` become ``_``, ``.`` stays."""
    return device.replace("-", "_").replace(":", "_")


def _networks(entry):
    """Every (IPNetwork, own address) of one interface's facts, IPv4 and IPv6."""
    found = []
    ipv4 = [entry.get("ipv4")] if isinstance(entry.get("ipv4"), dict) else []
    ipv4 += [item for item in entry.get("ipv4_secondaries") or [] if isinstance(item, dict)]
    for item in ipv4:
        address, netmask = item.get("address"), item.get("netmask")
        if address and netmask:
            found.append((netaddr.IPNetwork("%s/%s" % (address, netmask)), netaddr.IPAddress(address)))
    for item in entry.get("ipv6") or []:
        if isinstance(item, dict) and item.get("address") and item.get("prefix") is not None:
            address = str(item["address"]).split("%", maxsplit=1)[0]
            found.append((netaddr.IPNetwork("%s/%s" % (address, item["prefix"])), netaddr.IPAddress(address)))
    return found


def address_interfaces(facts, address):
    """Return the devices, in facts order, with a subnet that contains ``address``.

    ``facts`` is ``ansible_facts`` with the network subset. Host routes (/32, /128) and the
    address itself (a VIP keepalived already placed on the node) do not count: what matters
    is the subnet the node is attached to, not where the VIP happens to sit right now.
    """
    if not HAS_NETADDR:
        raise AnsibleFilterError("address_interfaces needs the Python library netaddr on the controller.")
    if not isinstance(facts, dict):
        raise AnsibleFilterError("address_interfaces expects ansible_facts, got %s" % type(facts).__name__)
    try:
        wanted = netaddr.IPAddress(str(address).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise AnsibleFilterError("address_interfaces: %r is not an IP address" % (address,)) from exc

    devices = []
    for device in facts.get("interfaces") or []:
        entry = facts.get(_fact_key(device))
        if not isinstance(entry, dict):
            continue
        for network, own in _networks(entry):
            if network.version != wanted.version or network.size <= 1 or own == wanted:
                continue
            if wanted in network and device not in devices:
                devices.append(entry.get("device", device))
    return devices


class FilterModule:
    """baremetal.kubernetes network filters."""

    def filters(self):
        return {"address_interfaces": address_interfaces}
