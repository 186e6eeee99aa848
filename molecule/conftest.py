"""Shared testinfra setup for the container scenarios.

Molecule hands testinfra its Ansible inventory, and the Ansible backend runs every command
as a full ad-hoc Ansible run (about a second each). The nodes are podman containers named
after their inventory hosts, so the tests talk to them with `podman exec` instead: the same
commands, the same nodes, an order of magnitude faster.
"""

import functools

import pytest
import testinfra


@functools.lru_cache(maxsize=None)
def _podman_host(name):
    return testinfra.get_host("podman://%s" % name)


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The node under test, reached through podman exec."""
    return _podman_host(_testinfra_host.backend.get_hostname())
