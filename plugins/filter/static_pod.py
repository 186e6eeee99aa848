# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``static_pod_flags``: the ``--name=value`` flags of a static Pod manifest's container."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None


def _document(manifest):
    if isinstance(manifest, dict):
        return manifest
    if not isinstance(manifest, str) or not manifest.strip():
        raise AnsibleFilterError("static_pod_flags needs a manifest (its YAML text or the parsed Pod)")
    try:
        document = yaml.safe_load(manifest)
    except yaml.YAMLError as error:
        raise AnsibleFilterError("the manifest is not YAML: %s" % getattr(error, "problem", error)) from None
    if not isinstance(document, dict):
        raise AnsibleFilterError("the manifest is not a Pod (a YAML mapping)")
    return document


def static_pod_flags(manifest, container=None):
    """{flag name: value} of the container's command and args (the first container without ``container``).

    A flag without ``=value`` maps to ``"true"``, as a boolean flag given alone means; the executable and
    positional arguments are left out. A flag given twice keeps its last value (the one the binary uses).
    """
    document = _document(manifest)
    containers = (document.get("spec") or {}).get("containers") or []
    if not isinstance(containers, list) or not containers:
        raise AnsibleFilterError("the manifest has no containers (spec.containers)")
    if container is None:
        chosen = containers[0]
    else:
        chosen = next((c for c in containers if isinstance(c, dict) and c.get("name") == container), None)
        if chosen is None:
            raise AnsibleFilterError(
                "the manifest has no container %r (it has %s)"
                % (container, ", ".join(str(c.get("name")) for c in containers if isinstance(c, dict)) or "none")
            )
    flags = {}
    for word in list(chosen.get("command") or []) + list(chosen.get("args") or []):
        word = str(word)
        if not word.startswith("--") or word == "--":
            continue
        name, sep, value = word[2:].partition("=")
        flags[name] = value if sep else "true"
    return flags


class FilterModule:
    def filters(self):
        return {"static_pod_flags": static_pod_flags}
