"""The collection builds, installs, and its playbooks resolve from the installed copy."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(args, cwd, env=None):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_build_install_and_syntax_check_from_installed_copy(tmp_path):
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)], cwd=tmp_path)
    tarballs = list(tmp_path.glob("baremetal-kubernetes-*.tar.gz"))
    assert [t.name for t in tarballs] == ["baremetal-kubernetes-0.1.0.tar.gz"]

    with tarfile.open(tarballs[0]) as archive:
        names = archive.getnames()
    assert "playbooks/site.yml" in names
    assert "plugins/action/inventory_preflight.py" in names
    assert "roles/common/tasks/main.yml" in names
    # Tests, Molecule, CI and the checkout's collection link stay out of the tarball.
    for excluded in ("tests", "molecule", ".ci", ".collections", ".config", "Makefile"):
        assert not any(n == excluded or n.startswith(excluded + "/") for n in names), excluded

    install_dir = tmp_path / "collections"
    galaxy = str(BIN / "ansible-galaxy")
    run([galaxy, "collection", "install", "--force", "--no-deps", "-p", str(install_dir), str(tarballs[0])],
        cwd=tmp_path)
    assert (install_dir / "ansible_collections/baremetal/kubernetes/MANIFEST.json").is_file()

    # Outside the checkout, with only the installed copy (plus the ansible package's collections).
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(install_dir),
               ANSIBLE_CONFIG=str(tmp_path / "none.cfg"))
    inventory = REPO / "inventories" / "sample"
    result = run([str(BIN / "ansible-playbook"), "baremetal.kubernetes.site", "-i", str(inventory), "--syntax-check"],
                 cwd=tmp_path, env=env)
    assert "playbook: " in result.stdout
    doc = run([str(BIN / "ansible-doc"), "baremetal.kubernetes.inventory_preflight"], cwd=tmp_path, env=env)
    assert "MODULE baremetal.kubernetes.inventory_preflight" in doc.stdout
    assert "fail_on_problems" in doc.stdout
    assert str(install_dir) in doc.stdout
