"""testinfra over SSH for the VM scenario.

molecule/conftest.py reaches the container scenarios' nodes with `podman exec`; a VM is reached as a
server is, over SSH, with the address, port and key create.yml wrote into Molecule's inventory. One
multiplexed SSH connection per VM instead of one Ansible ad-hoc run per command.
"""

import pytest
from vm_ssh import close_all, ssh_host


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The VM under test, over SSH."""
    backend = _testinfra_host.backend
    return ssh_host(backend.ansible_runner, backend.get_hostname())


@pytest.fixture(scope="session", autouse=True)
def _close_ssh_connections():
    yield
    close_all()
