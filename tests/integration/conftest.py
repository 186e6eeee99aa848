"""Helpers for integration tests that run ansible-playbook from the checkout."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_playbook():
    """Run ansible-playbook from the repository root (so its ansible.cfg applies)."""

    def run(*args, timeout=180, env=None):
        full_env = dict(os.environ)
        full_env.update({"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"})
        full_env.update(env or {})
        bindir = Path(sys.executable).parent
        return subprocess.run(
            [str(bindir / "ansible-playbook"), *args],
            cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
        )

    return run
