"""playbooks/upgrade_timer.yml: a systemd timer on an operator host (cl-ops, in no cluster group) that runs the
scheduled upgrade against the cluster's inventory.

cl-ops gets what an operator host has: Python, ansible-core and its dependencies (the controller's own
distributions, copied in, run by cl-ops' python3), this collection (built from the checkout) and the collections
it depends on, the cluster's inventory and the SSH key for its nodes. Then the role is refused on bad input
(nothing written), run in check mode, applied and applied again (changed=0), and the service is started as the
timer would start it: the real ansible-playbook runs upgrade_scheduled.yml from cl-ops over SSH, outside its
window, and must end "nothing to do" with exit 0, its report written and nothing changed on the cluster.
Runs after test_upgrade.py (file order), on the upgraded cluster.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from kube import fetched_kubeconfig
from node_shell import ansible_env, inventory_args, node_exec, sh
from test_control_plane import RECAP
from test_upgrade import LOCK, OUTSIDE, flat, kubelet_versions

OPERATOR = "cl-ops"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
PLAYBOOK = str(PROJECT / "playbooks" / "upgrade_timer.yml")
# What ansible-playbook needs on the operator host (ansible-core's dependencies, and this collection's).
DISTRIBUTIONS = ["ansible-core", "jinja2", "markupsafe", "pyyaml", "cryptography", "cffi", "pycparser", "packaging",
                 "resolvelib", "netaddr", "jmespath"]
DEPENDENCIES = ["community/general", "community/crypto", "ansible/posix"]
INVENTORY = "/srv/cluster/inventory"
REPORT = "/var/log/k8s-upgrade/report.json"
UNITS = ["/etc/systemd/system/k8s-upgrade.service", "/etc/systemd/system/k8s-upgrade.timer"]
WRAPPER = """#!/bin/sh
# ansible-core as the test copied it in (the controller's distributions), run by this host's python3.
PYTHONPATH=/opt/ansible/site-packages exec python3 -m ansible.cli.playbook "$@"
"""


@pytest.fixture(scope="module")
def kubeconfig():
    return str(fetched_kubeconfig())


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """cl-ops as an operator host: ansible-playbook, the collections, the inventory and the key."""
    if sh("podman", "container", "exists", OPERATOR, check=False).returncode != 0:
        pytest.fail("molecule.yml has no platform %s (created up front, in no group) for this test" % OPERATOR)
    stage = tmp_path_factory.mktemp("operator")
    site = stage / "site-packages"
    for name in DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for entry in dist.files or []:
            source = Path(dist.locate_file(entry))
            if entry.parts[0] != ".." and source.is_file():
                (site / entry).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, site / entry)
    collections = stage / "collections" / "ansible_collections"
    # The collections the `ansible` package ships (requirements.txt), as on the controller.
    shipped = Path(importlib.metadata.distribution("ansible").locate_file("ansible_collections"))
    for dependency in DEPENDENCIES:
        shutil.copytree(shipped / dependency, collections / dependency, symlinks=True)
    sh("ansible-galaxy", "collection", "build", "--output-path", str(stage), str(PROJECT), timeout=300)
    (tarball,) = stage.glob("baremetal-kubernetes-*.tar.gz")
    ours = collections / "baremetal" / "kubernetes"
    ours.mkdir(parents=True)
    sh("tar", "-xzf", str(tarball), "-C", str(ours))
    # The cluster's inventory as the tests use it (the scale test's cl-w3 included), with the key where cl-ops
    # keeps it.
    inventory = stage / "inventory"
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    shutil.copytree(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent, inventory)
    for extra in sorted((ephemeral / "extra-inventory").glob("*.yml")):
        shutil.copy2(extra, inventory / extra.name)
    main = inventory / Path(os.environ["MOLECULE_INVENTORY_FILE"]).name
    main.write_text(main.read_text().replace(str(ephemeral / "ssh_key"), "/root/.ssh/cluster_key"))
    (stage / "ansible-playbook").write_text(WRAPPER)
    node_exec(OPERATOR, "rm -rf /opt/ansible /srv/cluster && mkdir -p /opt/ansible /srv/cluster /root/.ssh")
    for source, dest in ((site, "/opt/ansible/"), (stage / "collections", "/opt/ansible/"),
                         (inventory, "/srv/cluster/"), (stage / "ansible-playbook", "/usr/local/bin/ansible-playbook"),
                         (ephemeral / "ssh_key", "/root/.ssh/cluster_key")):
        sh("podman", "cp", str(source), "%s:%s" % (OPERATOR, dest), timeout=300)
    node_exec(OPERATOR, "chmod 0755 /usr/local/bin/ansible-playbook && chmod 0600 /root/.ssh/cluster_key")
    assert "core 2.19" in node_exec(OPERATOR, "/usr/local/bin/ansible-playbook --version").stdout
    return stage


def apply(stage, variables, *extra):
    """playbooks/upgrade_timer.yml from this host onto cl-ops (in group k8s_upgrade_operator)."""
    group = stage / "operators.yml"
    group.write_text(yaml.safe_dump({"all": {"children": {"k8s_upgrade_operator": {"hosts": {OPERATOR: {}}}}}}))
    values = stage / "timer-vars.json"
    values.write_text(json.dumps(variables))
    return sh("ansible-playbook", *inventory_args(), "-i", str(group), PLAYBOOK, "-e", "@%s" % values, *extra,
              timeout=300, check=False, env=ansible_env())


def timer_vars(**override):
    result = {
        "upgrade_timer_inventory": INVENTORY,
        "upgrade_timer_ansible_playbook": "/usr/local/bin/ansible-playbook",
        "upgrade_timer_extra_vars": {"control_plane_upgrade_window": OUTSIDE},
        "upgrade_timer_environment": {"ANSIBLE_COLLECTIONS_PATH": "/opt/ansible/collections",
                                      "ANSIBLE_HOST_KEY_CHECKING": "False"},
    }
    result.update(override)
    return result


def recap(run):
    return {m.group(1): dict(changed=int(m.group(3)), failed=int(m.group(5))) for m in RECAP.finditer(run.stdout)}


def units_present():
    return node_exec(OPERATOR, "ls %s 2>/dev/null || true" % " ".join(UNITS)).stdout.split()


def test_bad_input_is_refused_on_the_operator_host_before_anything_is_written(operator):
    run = apply(operator, timer_vars(upgrade_timer_inventory="/srv/nowhere.yml",
                                     upgrade_timer_on_calendar="Caturday 02:00",
                                     upgrade_timer_ansible_playbook="/opt/none/ansible-playbook"))
    assert run.returncode != 0
    out = flat(run)
    assert "host %s:" % OPERATOR in out, out[-3000:]
    for needle in ("upgrade_timer_inventory /srv/nowhere.yml does not exist on this host",
                   "upgrade_timer_ansible_playbook /opt/none/ansible-playbook is not an executable",
                   "upgrade_timer_on_calendar 'Caturday 02:00' is not a systemd calendar expression",
                   "Fix the variable in the inventory"):
        assert needle in out, (needle, out[-3000:])
    assert units_present() == []


def test_the_timer_is_installed_idempotently_and_its_run_does_a_real_scheduled_upgrade_check(operator, kubeconfig):
    check = apply(operator, timer_vars(), "--check")
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert units_present() == []
    first = apply(operator, timer_vars())
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first)[OPERATOR]["changed"] > 0
    again = apply(operator, timer_vars())
    assert again.returncode == 0 and recap(again)[OPERATOR]["changed"] == 0, again.stdout[-4000:]

    assert node_exec(OPERATOR, "systemctl is-enabled k8s-upgrade.timer; systemctl is-active k8s-upgrade.timer"
                     ).stdout.split() == ["enabled", "active"]
    # The next start is a Saturday (the default OnCalendar), give or take the randomized delay.
    elapse = node_exec(OPERATOR, "systemctl show -P NextElapseUSecRealtime k8s-upgrade.timer").stdout.strip()
    assert elapse.startswith("Sat "), elapse
    assert node_exec(OPERATOR, "stat -c '%a %U' /var/lib/k8s-upgrade/k8s-upgrade-vars.json").stdout.split() == \
        ["600", "root"]

    # Start the service as the timer does: oneshot, so systemctl returns when the run has ended (bounded).
    versions = kubelet_versions(kubeconfig)
    node_exec(OPERATOR, "rm -f %s" % REPORT)
    started = node_exec(OPERATOR, "timeout 600 systemctl start k8s-upgrade.service", timeout=660, check=False)
    journal = node_exec(OPERATOR, "journalctl -u k8s-upgrade.service -o cat --no-pager | tail -n 200").stdout
    assert started.returncode == 0, journal[-6000:]
    assert node_exec(OPERATOR, "systemctl show -P Result k8s-upgrade.service").stdout.strip() == "success"
    one_line = " ".join(journal.split())
    assert "upgrade: nothing to do - " in one_line and "is outside the maintenance window %s" % OUTSIDE in \
        one_line, journal[-4000:]
    report = json.loads(node_exec(OPERATOR, "cat %s" % REPORT).stdout)
    assert report["result"] == "nothing to do" and report["scheduled"] is True and report["window"] == OUTSIDE
    # The run reached the cluster (it read the lock on cl-cp1 over SSH) and changed nothing there.
    assert "cl-cp1" in journal
    assert node_exec("cl-cp1", "test -e %s" % LOCK, check=False).returncode != 0
    assert kubelet_versions(kubeconfig) == versions


def test_state_absent_removes_the_timer(operator):
    run = apply(operator, timer_vars(upgrade_timer_state="absent"))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert units_present() == []
    assert node_exec(OPERATOR, "systemctl is-active k8s-upgrade.timer", check=False).stdout.strip() != "active"
    again = apply(operator, timer_vars(upgrade_timer_state="absent"))
    assert again.returncode == 0 and recap(again)[OPERATOR]["changed"] == 0, again.stdout[-4000:]
