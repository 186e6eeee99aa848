"""The encryption role run by ansible-playbook on the controller itself (one control-plane host,
local connection, the file under a temporary directory): key generation and reuse, supplied keys,
and every refusal with its message - and never a key in the output. molecule/cluster checks the
same role on three nodes against the simulated apiserver and the real etcd."""

from __future__ import annotations

import base64
import json
import sys

import pytest
import yaml

PLAY = """
- name: The encryption role on the controller
  hosts: kube_control_plane
  gather_facts: false
  roles:
    - role: baremetal.kubernetes.encryption
"""


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "enc" / "config.yaml"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "k8s_encryption_config_file": str(config)},
        "children": {"kube_control_plane": {"hosts": {"cp1": None}}}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    return config, inventory, playbook


def run(run_playbook, setup, *extra):
    _config, inventory, playbook = setup
    return run_playbook("-i", str(inventory), str(playbook), *extra)


def entries(config):
    return yaml.safe_load(config.read_text())["resources"][0]["providers"]


def test_a_key_is_generated_once_and_then_reused(run_playbook, setup):
    config = setup[0]
    first = run(run_playbook, setup, "-vv")
    assert first.returncode == 0, first.stdout[-3000:]
    assert oct(config.stat().st_mode & 0o777) == "0o600" and oct(config.parent.stat().st_mode & 0o777) == "0o700"
    (provider, settings), = entries(config)[0].items()
    key = settings["keys"][0]
    assert provider == "secretbox" and key["name"].startswith("key-")
    assert len(base64.b64decode(key["secret"])) == 32
    assert entries(config)[-1] == {"identity": {}}
    assert key["secret"] not in first.stdout + first.stderr
    text = config.read_text()
    again = run(run_playbook, setup, "-vv")
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    assert config.read_text() == text
    assert key["secret"] not in again.stdout + again.stderr


def test_supplied_keys_from_a_variable_and_a_file(run_playbook, setup, tmp_path):
    config = setup[0]
    one, two = base64.b64encode(b"\x01" * 32).decode(), base64.b64encode(b"\x02" * 32).decode()
    (tmp_path / "key2").write_text(two + "\n")
    keys = [{"name": "one", "secret": one}, {"name": "two", "secret_file": str(tmp_path / "key2")}]
    result = run(run_playbook, setup, "-e", json.dumps({"encryption_keys": keys}))
    assert result.returncode == 0, result.stdout[-3000:]
    keys_written = [{"name": "one", "secret": one}, {"name": "two", "secret": two}]
    assert entries(config)[0] == {"secretbox": {"keys": keys_written}}
    assert one not in result.stdout and two not in result.stdout
    # The same keys again: accepted, nothing changes; the first key differing: refused.
    assert "changed=0" in run(run_playbook, setup, "-e", json.dumps({"encryption_keys": keys})).stdout
    other = [{"name": "one", "secret": two}]
    refused = run(run_playbook, setup, "-e", json.dumps({"encryption_keys": other}))
    assert refused.returncode != 0
    out = " ".join(refused.stdout.split())
    assert "its first key (one) is not the key the control-plane nodes write with (one;" in out
    assert two not in refused.stdout


def test_a_short_key_is_refused_by_name_without_its_secret(run_playbook, setup):
    short = base64.b64encode(b"\x05" * 16).decode()
    result = run(run_playbook, setup, "-e", json.dumps({"encryption_keys": [{"name": "short", "secret": short}]}))
    assert result.returncode != 0
    assert "encryption key 'short' (secretbox): the secret must be base64 of 32 random bytes" in result.stdout
    assert short not in result.stdout
    assert not setup[0].exists()


@pytest.mark.parametrize(("extra", "phrase"), [
    ({"encryption_keys": [{"name": "a"}]}, "variable encryption_keys: it must be a list"),
    ({"encryption_keys": [{"name": "a", "secret": "x", "secret_file": "/y"}]}, "variable encryption_keys"),
    ({"k8s_encryption_provider": "kms"}, "variables encryption_kms_name / encryption_kms_endpoint"),
    ({"k8s_encryption_provider": "kms", "encryption_kms_name": "vault", "encryption_kms_endpoint": "tcp://x"},
     "unix:///path/to/plugin.sock"),
])
def test_bad_variables_are_refused_before_anything_is_written(run_playbook, setup, extra, phrase):
    result = run(run_playbook, setup, "-e", json.dumps(extra))
    assert result.returncode != 0
    assert phrase in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert "host cp1" in result.stdout
    assert not setup[0].exists()


def test_identity_and_kms_write_no_key(run_playbook, setup):
    config = setup[0]
    result = run(run_playbook, setup, "-e", "k8s_encryption_provider=identity")
    assert result.returncode == 0, result.stdout[-3000:]
    assert entries(config) == [{"identity": {}}]
    config.unlink()
    kms = {"k8s_encryption_provider": "kms", "encryption_kms_name": "vault",
           "encryption_kms_endpoint": "unix:///run/kms/plugin.sock"}
    result = run(run_playbook, setup, "-e", json.dumps(kms))
    assert result.returncode == 0, result.stdout[-3000:]
    assert entries(config) == [{"kms": {"apiVersion": "v2", "name": "vault", "endpoint": "unix:///run/kms/plugin.sock",
                                        "timeout": "3s"}}, {"identity": {}}]


def test_a_provider_switch_on_a_running_configuration_is_refused(run_playbook, setup):
    config = setup[0]
    assert run(run_playbook, setup).returncode == 0
    text = config.read_text()
    result = run(run_playbook, setup, "-e", "k8s_encryption_provider=aesgcm")
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "with secretbox" in out and "with aesgcm" in out and "Fix: set k8s_encryption_provider: secretbox" in out
    assert config.read_text() == text


def test_backup_path_on_the_controller_is_private(run_playbook, setup, tmp_path):
    backup = tmp_path / "backup" / "encryption-config.yaml"
    backup.parent.mkdir()
    result = run(run_playbook, setup, "-e", "encryption_backup_path=%s" % backup)
    assert result.returncode == 0, result.stdout[-3000:]
    assert backup.read_text() == setup[0].read_text()
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
