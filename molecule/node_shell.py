"""Host-side helpers for the scenarios' testinfra tests: bounded commands and bounded waits.

pytest puts this directory on sys.path (molecule/conftest.py lives here), so tests import it as
`node_shell`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def sh(*args, timeout=60, check=True, **kwargs):
    """Run a host command, bounded by timeout; raise with its output when check and it fails."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (" ".join(args), result.returncode, result.stdout,
                                                        result.stderr))
    return result


def node_exec(node, command, timeout=60, check=True):
    """A bash command inside a node container."""
    return sh("podman", "exec", node, "bash", "-c", command, timeout=timeout, check=check)


def wait_for(predicate, timeout, interval=0.1):
    """Call predicate until it returns a truthy value or timeout passes: (value, seconds waited)."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(interval)


def ansible_env(tags="all"):
    """Environment for an ansible-playbook run from a test: plain default-callback output to parse,
    running exactly ``tags`` (comma-separated)."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(PROJECT / ".collections"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(PROJECT / "roles"))
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_FORCE_COLOR", None)  # Molecule forces colour; the tests parse plain output
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    # A scenario's molecule.yml may set [tags] run for converge, and ansible-playbook adds --tags to
    # that list: a test's --tags would run every stage. The tags go here instead, replacing the list
    # (an empty value would run nothing at all).
    env["ANSIBLE_RUN_TAGS"] = tags
    return env


def inventory_args():
    """-i arguments for a test's ansible-playbook run: the scenario inventory, then every extra
    inventory file a test added under $MOLECULE_EPHEMERAL_DIRECTORY/extra-inventory (a scaled-out
    node stays in the inventory for the tests after it, as it would in an operator's)."""
    args = ["-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    for extra in sorted((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "extra-inventory").glob("*.yml")):
        args += ["-i", str(extra)]
    return args
