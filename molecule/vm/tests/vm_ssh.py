"""SSH to the scenario's VMs with the address, port and key create.yml wrote into Molecule's inventory."""

import functools
import os
import shutil
import subprocess
import tempfile

import testinfra

_CONTROL_DIR = tempfile.mkdtemp(prefix="vm-ssh-")
_opened = set()


@functools.lru_cache(maxsize=None)
def ssh_host(runner, name, timeout=10):
    """The VM `name` from the inventory of Molecule's testinfra `runner`, over SSH."""
    _opened.add((runner, name, timeout))
    v = runner.get_variables(name)
    return testinfra.get_host(
        "ssh://%s@%s:%s" % (v["ansible_user"], v["ansible_host"], v["ansible_port"]),
        ssh_identity_file=v["ansible_private_key_file"],
        # No "%" in it: testinfra %-formats the whole ssh command line.
        controlpath=os.path.join(_CONTROL_DIR, name),
        timeout=timeout,
        # A master connection to a VM that went down dies within about 10 s instead of hanging.
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        " -o ServerAliveInterval=5 -o ServerAliveCountMax=2",
    )


def close_all():
    """End every master connection and remove their directory (the end of the test session)."""
    for host in [ssh_host(*key) for key in _opened]:
        close_master(host)
    ssh_host.cache_clear()
    _opened.clear()
    shutil.rmtree(_CONTROL_DIR, ignore_errors=True)


def close_master(host):
    """End the multiplexed SSH connection to `host` (before a reboot), so the next command opens a new one."""
    subprocess.run(
        ["ssh", "-o", "ControlPath=%s" % host.backend.controlpath, "-O", "exit", "vm"],
        capture_output=True,
        timeout=15,
        check=False,
    )
