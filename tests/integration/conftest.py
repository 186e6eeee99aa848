"""Helpers for integration tests that run ansible-playbook from the checkout."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBESIM = REPO / "tests" / "kubesim"
# The collection (as ansible_collections.baremetal.kubernetes) and kubesim, importable by every test.
for entry in (REPO / ".collections", KUBESIM):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))


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


MODULE_PLAY = """\
- name: Run one module and save its result
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Call the module
      %(module)s: %(args)s
      check_mode: %(check)s
      register: outcome
      ignore_errors: true
    - name: Save the result
      ansible.builtin.copy:
        content: "{{ outcome | to_json }}"
        dest: %(out)s
        mode: "0600"
"""


@pytest.fixture
def run_module(tmp_path, run_playbook):
    """Run one of the collection's modules through ansible-playbook on localhost: its result, plus
    ``_wall`` (seconds the whole ansible-playbook run took)."""

    def run(module_name, /, check=False, **args):
        out = tmp_path / ("%s-%d.json" % (module_name, time.monotonic_ns()))
        play = tmp_path / "play.yml"
        play.write_text(MODULE_PLAY % dict(module="baremetal.kubernetes.%s" % module_name, args=json.dumps(args),
                                           out=out, check=json.dumps(check)))
        started = time.monotonic()
        result = run_playbook("-i", "localhost,", str(play), timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(out.read_text())
        outcome["_wall"] = time.monotonic() - started
        return outcome

    return run
