"""Shared testinfra setup for the container scenarios.

Molecule hands testinfra its Ansible inventory, and the Ansible backend runs every command
as a full ad-hoc Ansible run (about a second each). The nodes are podman containers named
after their inventory hosts, so the tests talk to them with `podman exec` instead: the same
commands, the same nodes, an order of magnitude faster.
"""

import fcntl
import functools
import os
import time

import pytest
import testinfra

# `make test` (tests/harness/ci.sh test) runs molecule/vm's reduced form and the checks in the background, each
# holding an exclusive lock until it ends; BAREMETAL_QUIET_LOCK names those locks (colon-separated). The first
# scenario's create, check mode, converge and idempotence may run next to the checks: nothing there is timed.
# Verify, whose failover and upgrade bounds are timed, must start on a quiet machine, so it waits for every lock.
QUIET_LOCK_TIMEOUT_S = 1800


@functools.lru_cache(maxsize=None)
def _podman_host(name):
    return testinfra.get_host("podman://%s" % name)


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The node under test, reached through podman exec."""
    return _podman_host(_testinfra_host.backend.get_hostname())


@pytest.fixture(scope="session", autouse=True)
def _quiet_machine():
    """Wait (bounded) until no background test job of `make test` runs any more."""
    paths = [p for p in os.environ.get("BAREMETAL_QUIET_LOCK", "").split(":") if p]
    started = time.monotonic()
    for path in paths:
        with open(path, "a") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - started > QUIET_LOCK_TIMEOUT_S:
                        pytest.fail("%s is still locked after %d s: a background job of `make test` (molecule/vm's "
                                    "reduced form, or the checks) did not end; see build/test-vm-kernel.log and "
                                    "build/checks.log" % (path, QUIET_LOCK_TIMEOUT_S))
                    time.sleep(2)
            fcntl.flock(lock, fcntl.LOCK_UN)
    if paths:
        print("\nquiet machine: verify waited %.0f s for the background jobs to end" % (time.monotonic() - started))
    yield
