# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The etcd role's pinned release checksums: well-formed, and present for the default etcd_version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
VARS = yaml.safe_load((ROOT / "roles" / "etcd" / "vars" / "main.yml").read_text(encoding="utf-8"))
PINNED = VARS["__etcd_release_checksums_pinned"]
DEFAULT_VERSION = yaml.safe_load(
    (ROOT / "roles" / "cluster_defaults" / "defaults" / "main.yml").read_text(encoding="utf-8")
)["etcd_version"]


def test_the_default_etcd_version_is_pinned_for_amd64_and_arm64():
    assert {"amd64", "arm64"} <= set(PINNED[DEFAULT_VERSION])


@pytest.mark.parametrize("version", sorted(PINNED))
def test_every_pinned_checksum_is_a_sha256(version):
    assert re.fullmatch(r"3\.[56]\.[0-9]+", version)
    for arch, checksum in PINNED[version].items():
        assert arch in ("amd64", "arm64")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", checksum), (version, arch, checksum)


def test_no_two_tarballs_share_a_checksum():
    values = [checksum for archs in PINNED.values() for checksum in archs.values()]
    assert len(values) == len(set(values))


def _checksum(version, arch, overrides):
    """__etcd_checksum as the role computes it, for etcd_version/arch and the inventory's etcd_release_checksums."""
    # Role vars come from a trusted file; ansible-core only renders templates marked as such.
    trusted = {name: trust_as_template(value) if isinstance(value, str) else value for name, value in VARS.items()}
    variables = dict(trusted, etcd_version=version, etcd_arch=arch, etcd_release_checksums=overrides)
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trusted["__etcd_checksum"])


def test_the_inventory_adds_versions_and_overrides_without_losing_the_pins():
    extra = {"3.4.23": {"amd64": "sha256:" + "1" * 64}, "3.5.21": {"arm64": "sha256:" + "2" * 64}}
    assert _checksum("3.4.23", "amd64", extra) == "sha256:" + "1" * 64
    assert _checksum("3.5.21", "arm64", extra) == "sha256:" + "2" * 64
    assert _checksum("3.5.21", "amd64", extra) == PINNED["3.5.21"]["amd64"]
    assert _checksum("3.5.21", "amd64", {}) == PINNED["3.5.21"]["amd64"]


def test_an_unpinned_version_or_arch_yields_no_checksum():
    assert _checksum("3.4.23", "amd64", {}) == ""
    assert _checksum("3.5.21", "s390x", {}) == ""
