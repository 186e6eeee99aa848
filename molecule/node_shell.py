"""Host-side helpers for the scenarios' testinfra tests: bounded commands and bounded waits.

pytest puts this directory on sys.path (molecule/conftest.py lives here), so tests import it as
`node_shell`.
"""

from __future__ import annotations

import subprocess
import time


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
