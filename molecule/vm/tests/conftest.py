"""testinfra over SSH for the VM scenario.

molecule/conftest.py reaches the container scenarios' nodes with `podman exec`; a VM is reached as a
server is, over SSH, with the address, port and key create.yml wrote into Molecule's inventory. One
multiplexed SSH connection per VM instead of one Ansible ad-hoc run per command.
"""

import os

import pytest
from vm_ssh import close_all, ssh_host

# molecule.yml hands MOLECULE_VM_TAGS to Ansible as the tags to run (default: all). CI's reduced form
# (`make test-vm-kernel`) converges only the node role's swap and kernel steps; the tests of what the
# rest of the role installs cannot pass there and are deselected, by name, never counted as passed.
RUN_TAGS = {t.strip() for t in os.environ.get("MOLECULE_VM_TAGS", "all").split(",") if t.strip()}
WHOLE_ROLE = bool(RUN_TAGS & {"all", "node", "node_install"})
NOT_RUN = pytest.StashKey[str]()


def pytest_configure(config):
    config.addinivalue_line("markers", "whole_role: needs the node role's install and containerd steps")


def pytest_collection_modifyitems(config, items):
    if WHOLE_ROLE:
        return
    left_out = [item for item in items if item.get_closest_marker("whole_role")]
    if not left_out:
        return
    config.hook.pytest_deselected(items=left_out)
    items[:] = [item for item in items if item not in left_out]
    config.stash[NOT_RUN] = ("NOT RUN (MOLECULE_VM_TAGS=%s converged only those parts of the node role; "
                             "`make test-vm` runs them): %s"
                             % (",".join(sorted(RUN_TAGS)), ", ".join(item.name for item in left_out)))


def pytest_terminal_summary(terminalreporter, config):
    if NOT_RUN in config.stash:
        terminalreporter.write_line(config.stash[NOT_RUN])


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The VM under test, over SSH."""
    backend = _testinfra_host.backend
    return ssh_host(backend.ansible_runner, backend.get_hostname())


@pytest.fixture(scope="session", autouse=True)
def _close_ssh_connections():
    yield
    close_all()
