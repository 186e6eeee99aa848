# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters ``encryption_configuration`` and ``encryption_entries``: kube-apiserver's
EncryptionConfiguration (apiserver.config.k8s.io/v1) built from, and read back into, an ordered
list of entries.

An entry is one way the apiserver can read stored data, in order of preference:
``{provider: secretbox|aesgcm|aescbc, name: <key name>, secret: <base64 key>}``,
``{provider: kms, name: <plugin name>, endpoint: unix:///..., timeout: 3s}`` or
``{provider: identity}``. The first entry writes; every entry reads. Consecutive keys of one
provider share that provider's ``keys`` list, and ``identity`` is appended last unless it is
already in the list, so data written before encryption stays readable.
"""

from __future__ import annotations

import base64
import binascii

import yaml
from ansible.errors import AnsibleFilterError

KEYED = ("secretbox", "aesgcm", "aescbc")
PROVIDERS = (*KEYED, "kms", "identity")
# Key lengths kube-apiserver accepts (k8s.io/apiserver/pkg/server/options/encryptionconfig):
# secretbox 32 bytes, aescbc 32 bytes, aesgcm 16, 24 or 32 bytes.
KEY_BYTES = {"secretbox": (32,), "aescbc": (32,), "aesgcm": (16, 24, 32)}
API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"


def _check_entry(entry, index):
    if not isinstance(entry, dict):
        raise AnsibleFilterError("encryption entry %d is not a dict" % index)
    provider = entry.get("provider")
    if provider not in PROVIDERS:
        raise AnsibleFilterError(
            "encryption entry %d: provider %r is not one of %s" % (index, provider, ", ".join(PROVIDERS))
        )
    if provider in KEYED:
        name, secret = entry.get("name"), entry.get("secret")
        if not name or ":" in str(name):
            raise AnsibleFilterError(
                "encryption entry %d (%s): the key name %r is empty or contains ':'" % (index, provider, name)
            )
        try:
            size = len(base64.b64decode(str(secret or ""), validate=True))
        except (binascii.Error, ValueError):
            size = -1
        if size not in KEY_BYTES[provider]:
            # The secret itself is never part of a message.
            raise AnsibleFilterError(
                "encryption key %r (%s): the secret must be base64 of %s random bytes"
                % (name, provider, " or ".join(str(n) for n in KEY_BYTES[provider]))
            )
    elif provider == "kms" and (not entry.get("name") or not str(entry.get("endpoint", "")).startswith("unix://")):
        raise AnsibleFilterError(
            "encryption entry %d (kms): needs a name and an endpoint unix:///path/to/socket" % index
        )


def encryption_configuration(entries, resources):
    """The EncryptionConfiguration document (a dict) for ``resources`` with ``entries`` in order."""
    if not isinstance(entries, list) or not entries:
        raise AnsibleFilterError("encryption_configuration needs a non-empty list of entries")
    if not isinstance(resources, list) or not resources or not all(isinstance(r, str) and r for r in resources):
        raise AnsibleFilterError("encryption_configuration needs a non-empty list of resource names")
    names = set()
    for index, entry in enumerate(entries):
        _check_entry(entry, index)
        if entry["provider"] in KEYED:
            if (entry["provider"], entry["name"]) in names:
                raise AnsibleFilterError(
                    "encryption key name %r appears twice for %s" % (entry["name"], entry["provider"])
                )
            names.add((entry["provider"], entry["name"]))
    providers = []
    for entry in entries:
        provider = entry["provider"]
        if provider in KEYED:
            key = {"name": str(entry["name"]), "secret": str(entry["secret"])}
            if providers and provider in providers[-1]:
                providers[-1][provider]["keys"].append(key)
            else:
                providers.append({provider: {"keys": [key]}})
        elif provider == "kms":
            providers.append(
                {
                    "kms": {
                        "apiVersion": "v2",
                        "name": str(entry["name"]),
                        "endpoint": str(entry["endpoint"]),
                        "timeout": str(entry.get("timeout") or "3s"),
                    }
                }
            )
        elif {"identity": {}} not in providers:
            providers.append({"identity": {}})
    if {"identity": {}} not in providers:
        providers.append({"identity": {}})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "resources": [{"resources": list(resources), "providers": providers}],
    }


def encryption_entries(config):
    """The ordered entries of a parsed EncryptionConfiguration (the inverse of encryption_configuration).

    Every resource block must list the same providers (the files this collection writes do); a
    file written otherwise is reported, not guessed at.
    """
    if not isinstance(config, dict) or config.get("kind") != KIND or config.get("apiVersion") != API_VERSION:
        raise AnsibleFilterError("not an %s (%s)" % (KIND, API_VERSION))
    blocks = config.get("resources") or []
    if not blocks:
        raise AnsibleFilterError("the %s has no resources" % KIND)
    first = blocks[0].get("providers") or []
    if any((block.get("providers") or []) != first for block in blocks[1:]):
        raise AnsibleFilterError(
            "the resource blocks of the %s use different providers; this collection writes one list" % KIND
        )
    entries = []
    for provider_block in first:
        if not isinstance(provider_block, dict) or len(provider_block) != 1:
            raise AnsibleFilterError("a provider of the %s is not a one-key mapping" % KIND)
        ((provider, settings),) = provider_block.items()
        settings = settings or {}
        if provider in KEYED:
            for key in settings.get("keys") or []:
                entries.append({"provider": provider, "name": key.get("name"), "secret": key.get("secret")})
        elif provider == "kms":
            entries.append(
                {
                    "provider": "kms",
                    "name": settings.get("name"),
                    "endpoint": settings.get("endpoint"),
                    "timeout": settings.get("timeout") or "3s",
                }
            )
        elif provider == "identity":
            entries.append({"provider": "identity"})
        else:
            raise AnsibleFilterError(
                "the %s uses the provider %r, which this collection does not manage" % (KIND, provider)
            )
    return entries


def _ident(entry):
    """What names an entry in messages and comparisons: ``provider:name`` (``identity`` alone)."""
    return "identity" if entry["provider"] == "identity" else "%s:%s" % (entry["provider"], entry.get("name"))


def _normal(entries):
    """Entries without repeats, ``identity`` last unless already listed (as encryption_configuration writes)."""
    seen, result = set(), []
    for entry in entries:
        if _ident(entry) not in seen:
            seen.add(_ident(entry))
            result.append(dict(entry))
    if "identity" not in seen:
        result.append({"provider": "identity"})
    return result


def _describe(entries):
    return "[%s]" % ", ".join(_ident(entry) for entry in entries)


ROTATION_STEPS = ("old keys only", "new key added second", "new key first", "old keys removed")


def rotation_stages(old, new):
    """The four configurations of a rotation from the entries ``old`` (its first writes) to the entry ``new``.

    0: as before; 1: ``new`` added second (every apiserver can read it, none writes it yet); 2: ``new``
    first (it writes), the old entries still read; 3: ``new`` alone (with identity last), once no stored
    object needs an old entry any more. Adjacent stages may be equal, e.g. when ``old`` is identity only.
    """
    return [
        _normal(old),
        _normal([*old[:1], new, *old[1:]]),
        _normal([new, *old]),
        _normal([new]),
    ]


def _node_entries(value):
    """A node's entries from its file's text, its parsed document or its entries; None without a file."""
    if value in (None, ""):
        return None, None
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise AnsibleFilterError("not YAML: %s" % getattr(error, "problem", error)) from None
    if isinstance(value, dict):
        return encryption_entries(value), list(value["resources"][0].get("resources") or [])
    return value, None


def encryption_rotation(nodes, record=None, new=None, provider=None, resources=None):
    """Where a key rotation stands, from the EncryptionConfiguration on every control-plane node.

    ``nodes`` maps each control-plane host to its file (text, parsed document or entries), or to None
    or "" when it has none. ``record`` is the rotation record the playbook keeps next to the file
    (``{state: in-progress|complete, from: [entries], to: entry, resources: [...]}``), the list of the
    nodes' copies, or None. ``new`` is
    the entry to rotate to when no rotation is in progress (a generated key, the KMS plugin or identity);
    ``provider`` and ``resources`` are what the inventory asks for.

    Returns ``{error, start, from, to, resources, stages, node_stages, step, summary}``. ``step`` is the
    lowest stage any node is at: the next thing to do is stage ``step + 1``. When the nodes are not in a
    state a rotation can start or continue from, ``error`` says why, naming hosts and keys but never a
    secret (so the caller can show it from a no_log task's result), and nothing else is returned.
    """
    try:
        return _rotation(nodes, record, new, provider, resources)
    except AnsibleFilterError as error:
        return {"error": str(error.message if hasattr(error, "message") else error)}


def _rotation(nodes, record, new, provider, resources):
    if not isinstance(nodes, dict) or not nodes:
        raise AnsibleFilterError("encryption_rotation needs the control-plane nodes' files")
    current, node_resources = {}, {}
    for host, value in nodes.items():
        try:
            entries, found = _node_entries(value)
        except AnsibleFilterError as error:
            raise AnsibleFilterError("%s: its EncryptionConfiguration cannot be read: %s" % (host, error)) from None
        current[host] = _normal(entries) if entries else None
        if found is not None:
            node_resources[host] = found
    missing = sorted(host for host, entries in current.items() if not entries)
    if missing:
        raise AnsibleFilterError(
            "%s ha%s no EncryptionConfiguration: site.yml writes it on every control-plane node first"
            % (", ".join(missing), "s" if len(missing) == 1 else "ve")
        )
    records = [r for r in (record if isinstance(record, list) else [record]) if isinstance(r, dict)]
    rotations = {repr((r.get("from"), r.get("to"))) for r in records}
    if len(rotations) > 1:
        raise AnsibleFilterError(
            "the control-plane nodes' rotation records name different rotations (%s): two rotations were "
            "started at once, or a record was copied by hand. Keep the record of the rotation whose new key "
            "the files hold on every node, or remove them all if no file holds a second key, and re-run"
            % "; ".join(sorted({"%s -> %s" % (_describe(r.get("from") or []), _ident(r.get("to") or {"provider": "?"}))
                                for r in records}))
        )
    # A record is written on one node after the other: if any copy is still in progress, the rotation is.
    in_progress = any(r.get("state") == "in-progress" for r in records)
    record = next((r for r in records if r.get("state") == "in-progress"), None)
    if in_progress:
        old, target = [dict(e) for e in record["from"]], dict(record["to"])
        resources = list(record.get("resources") or resources or [])
        if provider and target["provider"] != provider:
            raise AnsibleFilterError(
                "a rotation to %s is in progress (from %s); it must finish before another one starts. "
                "Set k8s_encryption_provider: %s and re-run to finish it"
                % (_ident(target), _describe(old), target["provider"])
            )
    else:
        texts = {}
        for host in sorted(current):
            texts.setdefault(repr(current[host]), []).append(host)
        if len(texts) > 1:
            raise AnsibleFilterError(
                "the control-plane nodes' EncryptionConfigurations differ and no rotation is in progress: %s. "
                "Put the file whose keys your Secrets use on every node (root, 0600) and re-run"
                % "; ".join("%s: %s" % (", ".join(hosts), _describe(current[hosts[0]])) for hosts in texts.values())
            )
        old = next(iter(current.values()))
        if not isinstance(new, dict) or "provider" not in new:
            raise AnsibleFilterError("encryption_rotation needs the new entry to start a rotation")
        target = dict(new)
        # identity is in every file (last, to read what was stored before encryption): as the target it
        # turns encryption off, and only the writer itself is nothing to rotate to.
        if _ident(target) == _ident(old[0]) or (target["provider"] != "identity"
                                                and _ident(target) in {_ident(entry) for entry in old}):
            raise AnsibleFilterError(
                "the nodes already use %s (%s): nothing to rotate to. KMS v2 plugins rotate their keys "
                "themselves; to turn encryption on, choose a provider other than identity"
                % (_ident(target), _describe(old))
            )
        _check_entry(target, 0)
        dropped = sorted({r for found in node_resources.values() for r in found} - set(resources or []))
        if dropped:
            raise AnsibleFilterError(
                "the nodes encrypt %s, which k8s_encryption_resources leaves out. A rotation can add resources "
                "but never drops one: its stored objects would become unreadable. List every resource the "
                "nodes encrypt" % ", ".join(dropped)
            )
    stages = rotation_stages(old, target)
    node_stages, lost = {}, []
    for host in sorted(current):
        matches = [index for index, stage in enumerate(stages) if stage == current[host]]
        if matches:
            node_stages[host] = matches[0]
        else:
            lost.append("%s: %s" % (host, _describe(current[host])))
    if lost:
        raise AnsibleFilterError(
            "a rotation from %s to %s is in progress, but these nodes hold a configuration that is none of its "
            "steps: %s. Put back the file of the step the other nodes are at (%s) and re-run"
            % (
                _describe(old),
                _ident(target),
                "; ".join(lost),
                ", ".join("%s: %s" % (h, _describe(current[h])) for h in sorted(node_stages)) or "none",
            )
        )
    if max(node_stages.values()) - min(node_stages.values()) > 1:
        raise AnsibleFilterError(
            "the control-plane nodes are more than one step apart in the rotation to %s: %s"
            % (_ident(target), ", ".join("%s at step %d" % item for item in sorted(node_stages.items())))
        )
    return {
        "error": None,
        "start": not in_progress,
        "from": old,
        "to": target,
        "writer": _ident(target),
        "resources": list(resources or []),
        "stages": stages,
        "node_stages": node_stages,
        "step": min(node_stages.values()),
        "summary": "%s -> %s; %s"
        % (
            _describe(old),
            _ident(target),
            ", ".join(
                "%s at step %d (%s)" % (host, stage, ROTATION_STEPS[stage])
                for host, stage in sorted(node_stages.items())
            ),
        ),
    }


class FilterModule:
    def filters(self):
        return {
            "encryption_configuration": encryption_configuration,
            "encryption_entries": encryption_entries,
            "encryption_rotation": encryption_rotation,
        }
