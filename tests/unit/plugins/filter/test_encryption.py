"""Filters encryption_configuration / encryption_entries: the EncryptionConfiguration kube-apiserver reads."""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.baremetal.kubernetes.plugins.filter.encryption import (
    encryption_configuration,
    encryption_entries,
)

K1 = base64.b64encode(b"\x01" * 32).decode()
K2 = base64.b64encode(b"\x02" * 32).decode()
K16 = base64.b64encode(b"\x03" * 16).decode()


def test_one_secretbox_key_then_identity():
    config = encryption_configuration([{"provider": "secretbox", "name": "key1", "secret": K1}], ["secrets"])
    assert config == {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [{"secretbox": {"keys": [{"name": "key1", "secret": K1}]}}, {"identity": {}}],
            }
        ],
    }


def test_keys_of_one_provider_share_its_list_in_order():
    entries = [
        {"provider": "secretbox", "name": "new", "secret": K2},
        {"provider": "secretbox", "name": "old", "secret": K1},
    ]
    providers = encryption_configuration(entries, ["secrets", "configmaps"])["resources"][0]["providers"]
    assert providers == [
        {"secretbox": {"keys": [{"name": "new", "secret": K2}, {"name": "old", "secret": K1}]}},
        {"identity": {}},
    ]


def test_a_provider_switch_keeps_both_and_identity_last():
    entries = [
        {"provider": "aesgcm", "name": "g1", "secret": K16},
        {"provider": "secretbox", "name": "key1", "secret": K1},
    ]
    providers = encryption_configuration(entries, ["secrets"])["resources"][0]["providers"]
    assert [next(iter(p)) for p in providers] == ["aesgcm", "secretbox", "identity"]


def test_identity_first_writes_plaintext_and_is_not_repeated():
    entries = [{"provider": "identity"}, {"provider": "secretbox", "name": "key1", "secret": K1}]
    providers = encryption_configuration(entries, ["secrets"])["resources"][0]["providers"]
    assert [next(iter(p)) for p in providers] == ["identity", "secretbox"]


def test_kms_v2():
    entries = [{"provider": "kms", "name": "vault", "endpoint": "unix:///run/kms/socket.sock"}]
    providers = encryption_configuration(entries, ["secrets"])["resources"][0]["providers"]
    assert providers[0] == {
        "kms": {"apiVersion": "v2", "name": "vault", "endpoint": "unix:///run/kms/socket.sock", "timeout": "3s"}
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"provider": "secretbox", "name": "k", "secret": K16}, "base64 of 32 random bytes"),
        ({"provider": "aescbc", "name": "k", "secret": "not base64!"}, "base64 of 32 random bytes"),
        ({"provider": "aesgcm", "name": "k", "secret": base64.b64encode(b"x" * 20).decode()}, "16 or 24 or 32"),
        ({"provider": "secretbox", "name": "a:b", "secret": K1}, "contains ':'"),
        ({"provider": "rot13", "name": "k"}, "is not one of"),
        ({"provider": "kms", "name": "vault", "endpoint": "tcp://x"}, "unix:///"),
    ],
)
def test_bad_entries_are_refused_without_the_secret(entry, message):
    with pytest.raises(AnsibleFilterError, match=message) as caught:
        encryption_configuration([entry], ["secrets"])
    if entry.get("secret"):
        assert str(entry["secret"]) not in str(caught.value)


def test_duplicate_key_names_are_refused():
    entries = [
        {"provider": "secretbox", "name": "k", "secret": K1},
        {"provider": "secretbox", "name": "k", "secret": K2},
    ]
    with pytest.raises(AnsibleFilterError, match="appears twice"):
        encryption_configuration(entries, ["secrets"])


@pytest.mark.parametrize("resources", [[], None, [""], "secrets"])
def test_resources_must_be_a_non_empty_list(resources):
    with pytest.raises(AnsibleFilterError, match="resource names"):
        encryption_configuration([{"provider": "identity"}], resources)


@pytest.mark.parametrize(
    "entries",
    [
        [{"provider": "secretbox", "name": "key1", "secret": K1}, {"provider": "identity"}],
        [
            {"provider": "aesgcm", "name": "g1", "secret": K16},
            {"provider": "secretbox", "name": "n", "secret": K2},
            {"provider": "secretbox", "name": "o", "secret": K1},
            {"provider": "identity"},
        ],
        [{"provider": "identity"}, {"provider": "aescbc", "name": "c", "secret": K1}],
        [{"provider": "kms", "name": "vault", "endpoint": "unix:///s.sock", "timeout": "5s"}, {"provider": "identity"}],
    ],
)
def test_entries_round_trip(entries):
    assert encryption_entries(encryption_configuration(entries, ["secrets"])) == entries


def test_entries_refuse_a_foreign_file():
    with pytest.raises(AnsibleFilterError, match="not an EncryptionConfiguration"):
        encryption_entries({"kind": "Pod"})
    config = encryption_configuration([{"provider": "secretbox", "name": "k", "secret": K1}], ["secrets"])
    config["resources"].append({"resources": ["configmaps"], "providers": [{"identity": {}}]})
    with pytest.raises(AnsibleFilterError, match="different providers"):
        encryption_entries(config)
