"""Helpers for integration tests that run ansible-playbook from the checkout."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "harness"
# The collection (as ansible_collections.baremetal.kubernetes) and the harness (realapi), importable by every test.
for entry in (REPO / ".collections", HARNESS):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import realapi  # noqa: E402


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


@pytest.fixture(scope="module")
def real_cluster(request, tmp_path_factory):
    """A real control plane (tests/harness/realapi.py) shared by the tests of one module.

    The module configures it with ``REAL_CLUSTER = dict(...)``: RealCluster's options, plus ``encryption_config``
    as the text of the --encryption-provider-config file. Missing binaries fail the tests ("run make components").
    """
    options = dict(getattr(request.module, "REAL_CLUSTER", {}))
    workdir = tmp_path_factory.mktemp("realapi")
    encryption = options.pop("encryption_config", None)
    if encryption is not None:
        path = workdir / "encryption.yaml"
        path.write_text(encryption)
        path.chmod(0o600)
        options["encryption_config"] = str(path)
    cluster = realapi.RealCluster(workdir / "cluster", **options)
    problem = None
    try:
        cluster.start()
    except realapi.HarnessError as exc:
        problem = str(exc)
    except BaseException:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if problem:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(problem, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
