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

# `make test` (tests/harness/ci.sh test) runs molecule/vm's reduced form in the background, holding an
# exclusive lock on BAREMETAL_QUIET_LOCK until it ends. Verify, whose failover and upgrade bounds are timed,
# must start on a quiet machine, so it takes the lock first (ci.sh also waits for it before each scenario).
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
    path = os.environ.get("BAREMETAL_QUIET_LOCK")
    if not path:
        yield
        return
    started = time.monotonic()
    with open(path, "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > QUIET_LOCK_TIMEOUT_S:
                    pytest.fail("%s is still locked after %d s: a background job of `make test` (molecule/vm's "
                                "reduced form) did not end; see build/test-vm-kernel.log"
                                % (path, QUIET_LOCK_TIMEOUT_S))
                time.sleep(2)
        fcntl.flock(lock, fcntl.LOCK_UN)
    print("\nquiet machine: verify waited %.0f s for the background VM run to end" % (time.monotonic() - started))
    yield
