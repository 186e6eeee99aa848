# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``missing_packages``: which of the wanted packages the package facts do not show installed."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def _installed_versions(entries):
    """Every installed version string of one package name (package_facts lists one entry per version)."""
    versions = set()
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and entry.get("version") is not None:
            version = str(entry["version"])
            versions.add(version)
            if entry.get("release"):
                versions.add("%s-%s" % (version, entry["release"]))
    return versions


def missing_packages(wanted, installed=None):
    """Return the entries of ``wanted`` that ``installed`` (``ansible_facts.packages``) does not show.

    An entry is a package name (``conntrack``) or an apt-style pin (``kubelet=1.36.2-1.1``), which counts as
    installed only with exactly that version. Without package facts (None or undefined: the facts were not
    gathered, e.g. a role run on its own) every entry is missing, so the caller's package task runs as usual:
    the filter only ever lets a caller skip work that is provably done.
    """
    if isinstance(wanted, str) or not isinstance(wanted, (list, tuple)):
        raise AnsibleFilterError("missing_packages expects a list of package names, got %r" % (wanted,))
    if installed is None:
        return list(wanted)
    if not isinstance(installed, Mapping):
        raise AnsibleFilterError("missing_packages expects ansible_facts.packages (a dict), got %s"
                                 % type(installed).__name__)
    missing = []
    for entry in wanted:
        name, _sep, version = str(entry).partition("=")
        versions = _installed_versions(installed.get(name))
        if not versions or (version and version not in versions):
            missing.append(entry)
    return missing


class FilterModule:
    """Package filters."""

    def filters(self):
        return {"missing_packages": missing_packages}
