# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_versions.py."""

from __future__ import annotations

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _versions as versions
from ansible_collections.baremetal.kubernetes.plugins.module_utils._versions import (
    K8S_SUPPORTED_MINORS,
    minor_supported,
    parse_k8s_version,
    parse_semver,
    supported_range_text,
)

LOW, HIGH = K8S_SUPPORTED_MINORS


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("3.5.21", (3, 5, 21), id="plain"),
        pytest.param("0.0.0", (0, 0, 0), id="zeros"),
        pytest.param("10.20.30", (10, 20, 30), id="multi-digit"),
        pytest.param("3.6.0-rc.1", (3, 6, 0), id="prerelease"),
        pytest.param("1.0.0-alpha", (1, 0, 0), id="prerelease-alpha"),
        pytest.param("1.0.0-0.3.7", (1, 0, 0), id="prerelease-numeric"),
        pytest.param("1.0.0-x-y-z.--", (1, 0, 0), id="prerelease-hyphens"),
        pytest.param("1.0.0+20130313144700", (1, 0, 0), id="build-metadata"),
        pytest.param("1.0.0-beta+exp.sha.5114f85", (1, 0, 0), id="prerelease-and-build"),
        pytest.param("1.0.0+21AF26D3----117B344092BD", (1, 0, 0), id="build-mixed-case"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("3.5", None, id="two-parts"),
        pytest.param("3", None, id="one-part"),
        pytest.param("3.5.21.1", None, id="four-parts"),
        pytest.param("v3.5.21", None, id="leading-v"),
        pytest.param("03.5.21", None, id="leading-zero-major"),
        pytest.param("3.05.21", None, id="leading-zero-minor"),
        pytest.param("3.5.021", None, id="leading-zero-patch"),
        pytest.param("1.0.0-01", None, id="leading-zero-numeric-prerelease"),
        pytest.param("1.0.0-", None, id="empty-prerelease"),
        pytest.param("1.0.0+", None, id="empty-build"),
        pytest.param("1.0.0-rc..1", None, id="empty-prerelease-identifier"),
        pytest.param("1.0.0-rc_1", None, id="underscore-in-prerelease"),
        pytest.param(" 3.5.21", None, id="leading-space"),
        pytest.param("3.5.21 ", None, id="trailing-space"),
        pytest.param("a.b.c", None, id="letters"),
        pytest.param("-1.0.0", None, id="negative"),
        pytest.param(3.5, None, id="float"),
        pytest.param(3, None, id="int"),
    ],
)
def test_parse_semver(value, expected):
    assert parse_semver(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("1.34.2", (1, 34, 2), id="plain"),
        pytest.param("1.31.0", (1, 31, 0), id="patch-zero"),
        pytest.param("0.0.0", (0, 0, 0), id="zeros"),
        pytest.param("2.100.17", (2, 100, 17), id="multi-digit"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("1.34", None, id="two-parts"),
        pytest.param("1", None, id="one-part"),
        pytest.param("1.34.2.1", None, id="four-parts"),
        pytest.param("v1.34.2", None, id="leading-v"),
        pytest.param("V1.34.2", None, id="leading-capital-v"),
        pytest.param("01.34.2", None, id="leading-zero-major"),
        pytest.param("1.034.2", None, id="leading-zero-minor"),
        pytest.param("1.34.02", None, id="leading-zero-patch"),
        pytest.param("1.34.2-rc.0", None, id="prerelease-refused"),
        pytest.param("1.34.2+build", None, id="build-metadata-refused"),
        pytest.param("1.34.2-00", None, id="debian-revision-refused"),
        pytest.param(" 1.34.2", None, id="leading-space"),
        pytest.param("1.34.2 ", None, id="trailing-space"),
        pytest.param("1.34.x", None, id="wildcard"),
        pytest.param(1.34, None, id="yaml-float"),
    ],
)
def test_parse_k8s_version(value, expected):
    assert parse_k8s_version(value) == expected


def test_parse_k8s_version_returns_ints():
    parsed = parse_k8s_version("1.34.2")
    assert isinstance(parsed, tuple)
    assert all(isinstance(part, int) for part in parsed)


def test_parse_semver_returns_ints():
    parsed = parse_semver("3.5.21-rc.1")
    assert isinstance(parsed, tuple)
    assert all(isinstance(part, int) for part in parsed)


def test_supported_minors_is_an_ordered_pair_of_pairs():
    assert len(K8S_SUPPORTED_MINORS) == 2
    assert all(len(bound) == 2 for bound in K8S_SUPPORTED_MINORS)
    assert LOW <= HIGH


@pytest.mark.parametrize(
    "version, expected",
    [
        pytest.param((*LOW, 0), True, id="lowest-minor"),
        pytest.param((*HIGH, 0), True, id="highest-minor"),
        pytest.param((*HIGH, 99), True, id="highest-minor-any-patch"),
        pytest.param(LOW, True, id="two-tuple"),
        pytest.param((LOW[0], LOW[1] + 1, 5), True, id="inside"),
        pytest.param((LOW[0], LOW[1] - 1, 99), False, id="just-below"),
        pytest.param((HIGH[0], HIGH[1] + 1, 0), False, id="just-above"),
        pytest.param((LOW[0] - 1, 99, 0), False, id="previous-major"),
        pytest.param((HIGH[0] + 1, 0, 0), False, id="next-major"),
        pytest.param([*list(LOW), 0], True, id="list-input"),
    ],
)
def test_minor_supported(version, expected):
    assert minor_supported(version) is expected


def test_minor_supported_follows_the_constant(monkeypatch):
    monkeypatch.setattr(versions, "K8S_SUPPORTED_MINORS", ((1, 10), (1, 12)))
    assert minor_supported((1, 11, 0))
    assert not minor_supported((1, 13, 0))
    assert supported_range_text() == "1.10 to 1.12"


def test_supported_range_text():
    assert supported_range_text() == f"{LOW[0]}.{LOW[1]} to {HIGH[0]}.{HIGH[1]}"
    assert supported_range_text().count(" to ") == 1


def test_parsed_release_feeds_minor_supported():
    assert minor_supported(parse_k8s_version(f"{HIGH[0]}.{HIGH[1]}.0"))
    assert not minor_supported(parse_k8s_version(f"{HIGH[0]}.{HIGH[1] + 1}.0"))
