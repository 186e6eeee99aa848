"""`make ee`: the AWX/AAP execution environment's build context installs this collection with the tested
ansible-core, and ansible-builder's introspection finds the collection's own Python and system dependencies.
(Building the image needs its base image from a registry, which this machine cannot reach.)"""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(args, cwd=REPO):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_make_ee_writes_a_build_context_that_installs_this_collection(tmp_path):
    out = tmp_path / "ee"
    run(["make", "--no-print-directory", "ee", "VENV=%s" % BIN.parent, "EE_OUT=%s" % out])
    containerfile = (out / "Containerfile").read_text()
    # The ansible-core CI tests with, on the Python 3.11 it needs.
    pin = re.search(r"^ansible-core==\S+", (REPO / "requirements.txt").read_text(), re.M).group(0)
    assert 'ARG ANSIBLE_INSTALL_REFS="%s ansible-runner"' % pin in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile

    # The galaxy stage runs in /build, the context's _build: its requirements.yml installs the tarball built
    # from this checkout (--no-deps: galaxy.yml's dependencies come from Galaxy, which is out of reach here).
    installed = tmp_path / "collections"
    run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-r", "requirements.yml", "-p",
         str(installed)], cwd=out / "_build")
    manifest = installed / "ansible_collections" / "baremetal" / "kubernetes" / "MANIFEST.json"
    assert manifest.is_file()
    assert (manifest.parent / "playbooks" / "upgrade_scheduled.yml").is_file()

    # The builder stage's introspection: the collection brings netaddr, jmespath and the SSH client itself.
    deps = run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(installed)]).stdout
    assert "netaddr>=" in deps and "jmespath>=" in deps
    assert "openssh-clients [platform:rpm]" in deps
