"""Behaviour of the common role on the preflight scenario's nodes."""

import pytest

NODES = {"pf-cp1": "10.123.20.11", "pf-cp2": "10.123.20.12", "pf-w1": "10.123.20.21"}


def test_hostname_is_node_name(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


@pytest.mark.parametrize("name,address", sorted(NODES.items()))
def test_every_node_resolves_and_answers_by_name(host, name, address):
    # /etc/hosts is the node's own file (--no-hosts): the role's block is what resolves the name.
    assert host.check_output("getent hosts %s", name).split()[0] == address
    assert host.run("ping -c 1 -W 2 %s", name).rc == 0


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
    assert "NTP=10.123.20.1" in conf.content_string
    assert "FallbackNTP=" in conf.content_string.splitlines()
    # systemd itself reads the drop-in: the effective configuration names our server.
    assert "NTP=10.123.20.1" in host.check_output("systemd-analyze cat-config systemd/timesyncd.conf")
    assert host.service("systemd-timesyncd").is_enabled
