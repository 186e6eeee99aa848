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


class FilterModule:
    def filters(self):
        return {"encryption_configuration": encryption_configuration, "encryption_entries": encryption_entries}
