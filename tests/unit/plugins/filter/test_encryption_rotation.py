"""Filter encryption_rotation: where a key rotation stands, from every control-plane node's file."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from ansible_collections.baremetal.kubernetes.plugins.filter.encryption import (
    encryption_configuration,
    encryption_rotation,
    rotation_stages,
)

IDENTITY = {"provider": "identity"}
A = {"provider": "secretbox", "name": "a", "secret": base64.b64encode(b"\x01" * 32).decode()}
B = {"provider": "secretbox", "name": "b", "secret": base64.b64encode(b"\x02" * 32).decode()}
G = {"provider": "aesgcm", "name": "g", "secret": base64.b64encode(b"\x03" * 32).decode()}
KMS = {"provider": "kms", "name": "vault", "endpoint": "unix:///run/kms.sock", "timeout": "3s"}
NODES = ("cp1", "cp2", "cp3")


def error(*args):
    """The filter's refusal: a message in ``error`` and nothing else, never an exception."""
    plan = encryption_rotation(*args)
    assert set(plan) == {"error"} and plan["error"], plan
    return plan["error"]


def nodes(*configs):
    return dict(zip(NODES, configs))


def record(old, new, state="in-progress"):
    return {"state": state, "from": old, "to": new, "resources": ["secrets"]}


def test_stages_of_a_key_rotation():
    assert rotation_stages([A, IDENTITY], B) == [[A, IDENTITY], [A, B, IDENTITY], [B, A, IDENTITY], [B, IDENTITY]]


def test_stages_turning_encryption_on_and_off():
    assert rotation_stages([IDENTITY], B) == [[IDENTITY], [IDENTITY, B], [B, IDENTITY], [B, IDENTITY]]
    assert rotation_stages([A, IDENTITY], IDENTITY) == [[A, IDENTITY], [A, IDENTITY], [IDENTITY, A], [IDENTITY]]


def test_stages_keep_older_keys_until_the_end():
    assert rotation_stages([A, G, IDENTITY], B)[1:] == [[A, B, G, IDENTITY], [B, A, G, IDENTITY], [B, IDENTITY]]


def test_start_from_agreeing_nodes():
    plan = encryption_rotation(nodes([A, IDENTITY], [A, IDENTITY], [A, IDENTITY]), None, B, "secretbox", ["secrets"])
    assert plan["start"] and plan["step"] == 0
    assert plan["from"] == [A, IDENTITY] and plan["to"] == B
    assert plan["node_stages"] == {"cp1": 0, "cp2": 0, "cp3": 0}
    assert "secretbox:a" in plan["summary"] and A["secret"] not in plan["summary"]


def test_a_complete_record_starts_a_new_rotation():
    plan = encryption_rotation(nodes([B, IDENTITY]), record([A, IDENTITY], B, "complete"), G, "aesgcm")
    assert plan["start"] and plan["from"] == [B, IDENTITY] and plan["to"] == G


@pytest.mark.parametrize(
    "configs, step",
    [
        (([A, IDENTITY], [A, IDENTITY], [A, IDENTITY]), 0),  # recorded, interrupted before the first write
        (([A, B, IDENTITY], [A, IDENTITY], [A, IDENTITY]), 0),  # interrupted in step 3
        (([A, B, IDENTITY],) * 3, 1),  # interrupted after step 3
        (([B, A, IDENTITY], [A, B, IDENTITY], [A, B, IDENTITY]), 1),
        (([B, A, IDENTITY],) * 3, 2),  # interrupted in the re-write or its check
        (([B, IDENTITY], [B, A, IDENTITY], [B, A, IDENTITY]), 2),
        (([B, IDENTITY],) * 3, 3),  # interrupted after the last write, before the record was closed
    ],
)
def test_resume_from_every_step(configs, step):
    plan = encryption_rotation(nodes(*configs), record([A, IDENTITY], B), G, "secretbox")
    assert not plan["start"] and plan["step"] == step
    # Resuming never takes the new entry offered for a fresh start: no third key.
    assert plan["to"] == B


def test_resume_needs_the_same_provider():
    assert re.search(
        "rotation to secretbox:b is in progress.*k8s_encryption_provider: secretbox",
        error(nodes([A, B, IDENTITY]), record([A, IDENTITY], B), None, "aesgcm"),
    )


def test_nodes_that_differ_without_a_rotation_are_refused_by_name():
    message = error(nodes([A, IDENTITY], [B, IDENTITY], [A, IDENTITY]), None, G, "aesgcm")
    assert "cp1, cp3: [secretbox:a, identity]" in message and "cp2: [secretbox:b, identity]" in message
    assert A["secret"] not in message and B["secret"] not in message


def test_a_node_outside_the_recorded_rotation_is_named():
    assert re.search(
        r"cp2: \[secretbox:a, aesgcm:g, identity\]",
        error(nodes([A, B, IDENTITY], [A, G, IDENTITY], [A, IDENTITY]), record([A, IDENTITY], B)),
    )


def test_nodes_two_steps_apart_are_refused():
    assert re.search(
        "more than one step apart.*cp1 at step 2, cp2 at step 0",
        error(nodes([B, A, IDENTITY], [A, IDENTITY]), record([A, IDENTITY], B)),
    )


def test_a_node_without_a_file_is_named():
    assert re.search("cp2 has no EncryptionConfiguration", error(nodes([A, IDENTITY], None), None, B, "secretbox"))


@pytest.mark.parametrize("new", [A, KMS, IDENTITY])
def test_nothing_to_rotate_to(new):
    current = [KMS, IDENTITY] if new is KMS else [IDENTITY] if new is IDENTITY else [A, IDENTITY]
    assert re.search("nothing to rotate to", error(nodes(current), None, new, new["provider"]))


def test_turning_encryption_off_keeps_the_old_key_readable_until_the_re_write():
    plan = encryption_rotation(nodes([A, IDENTITY]), None, IDENTITY, "identity")
    assert plan["error"] is None and plan["writer"] == "identity"
    # Stage 1 adds nothing new (identity already reads); identity writes at stage 2, A goes only at stage 3.
    assert plan["stages"] == [[A, IDENTITY], [A, IDENTITY], [IDENTITY, A], [IDENTITY]]
    assert plan["step"] == 0


def test_a_bad_new_key_is_refused_without_showing_it():
    bad = {"provider": "secretbox", "name": "short", "secret": base64.b64encode(b"x" * 8).decode()}
    message = error(nodes([A, IDENTITY]), None, bad, "secretbox")
    assert re.search("'short'.*32 random bytes", message) and bad["secret"] not in message


def test_provider_switch_and_turning_encryption_on():
    plan = encryption_rotation(nodes([A, IDENTITY]), None, G, "aesgcm")
    assert plan["stages"][2] == [G, A, IDENTITY]
    plan = encryption_rotation(nodes([IDENTITY], [IDENTITY]), None, B, "secretbox")
    assert plan["stages"][1] == [IDENTITY, B] and plan["step"] == 0


def text(entries, resources=("secrets",)):
    return "# comment\n" + yaml.safe_dump(encryption_configuration(entries, list(resources)))


def test_nodes_given_as_file_texts_and_missing_files():
    plan = encryption_rotation({"cp1": text([A]), "cp2": text([A])}, None, B, "secretbox", ["secrets"])
    assert plan["error"] is None and plan["from"] == [A, IDENTITY]
    assert re.search("cp2 has no", error({"cp1": text([A]), "cp2": ""}, None, B, "secretbox", ["secrets"]))
    assert re.search("cp1: its EncryptionConfiguration cannot be read", error({"cp1": "kind: Pod"}, None, B))


def test_resources_may_grow_but_never_shrink():
    grown = encryption_rotation({"cp1": text([A])}, None, B, "secretbox", ["secrets", "configmaps"])
    assert grown["resources"] == ["secrets", "configmaps"]
    message = error({"cp1": text([A], ("secrets", "configmaps"))}, None, B, "secretbox", ["secrets"])
    assert "the nodes encrypt configmaps, which k8s_encryption_resources leaves out" in message


def test_a_resumed_rotation_keeps_its_recorded_resources():
    plan = encryption_rotation(nodes([A, B, IDENTITY]), record([A, IDENTITY], B), None, "secretbox", ["configmaps"])
    assert plan["resources"] == ["secrets"] and plan["writer"] == "secretbox:b"


def test_copies_of_the_record_caught_between_two_states_count_as_in_progress():
    copies = [record([A, IDENTITY], B, "complete"), record([A, IDENTITY], B)]
    plan = encryption_rotation(nodes([B, IDENTITY], [B, IDENTITY]), copies, G, "secretbox")
    assert not plan["start"] and plan["step"] == 3
    plan = encryption_rotation(nodes([B, IDENTITY]), [record([A, IDENTITY], B, "complete")] * 2, G, "aesgcm")
    assert plan["start"] and plan["to"] == G


def test_records_of_different_rotations_are_refused():
    copies = [record([A, IDENTITY], B), record([A, IDENTITY], G)]
    message = error(nodes([A, B, IDENTITY]), copies, None, "secretbox")
    assert "name different rotations" in message and "secretbox:b" in message and "aesgcm:g" in message
