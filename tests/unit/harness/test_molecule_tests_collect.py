"""Every Molecule scenario's testinfra suite imports and collects without a cluster.

Those suites run only after a scenario's converge, half an hour into `make test`. A name one test file imports
from another, renamed in the other, is an ImportError there: collecting them here, in a second and without any
node, finds it before a commit. testinfra's plugin is left out: it would ask the scenario's inventory for hosts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SUITES = sorted(path.parent for path in (ROOT / "molecule").glob("*/tests") if any(path.glob("test_*.py")))


def test_there_are_suites_to_collect():
    assert {path.name for path in SUITES} >= {"cluster", "ha_endpoint", "vm"}


@pytest.mark.parametrize("scenario", SUITES, ids=[path.name for path in SUITES])
def test_the_suite_collects(scenario):
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:pytest11.testinfra", "-p", "no:cacheprovider", "--collect-only",
         "-q", "tests"], cwd=scenario, capture_output=True, text=True, timeout=120, check=False)
    assert collected.returncode == 0, collected.stdout[-4000:] + collected.stderr[-2000:]
    assert " collected" in collected.stdout.splitlines()[-1], collected.stdout[-2000:]
