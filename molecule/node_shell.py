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


# HAProxy's admin socket, read with the node's python3 (not every node has socat).
_SHOW_STAT = (
    "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.settimeout(5); "
    "s.connect('/run/haproxy/admin.sock'); s.sendall(b'show stat\\n'); d=b''\n"
    "while True:\n c=s.recv(65536)\n if not c: break\n d+=c\nprint(d.decode())\""
)


def haproxy_servers(node, backend="kube_apiservers"):
    """server name -> (status such as UP or DOWN, current sessions) of one HAProxy backend on ``node``."""
    servers = {}
    for line in node_exec(node, _SHOW_STAT).stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == backend and fields[1] not in ("BACKEND", "FRONTEND"):
            servers[fields[1]] = (fields[17], int(fields[4] or 0))
    return servers


def haproxy_states(node, backend="kube_apiservers"):
    """server name -> status (UP, DOWN, ...) of one HAProxy backend on ``node``."""
    return {name: state for name, (state, _sessions) in haproxy_servers(node, backend).items()}
