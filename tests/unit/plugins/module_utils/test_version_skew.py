# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_version_skew.py: the Kubernetes version skew policy."""

from __future__ import annotations

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils._version_skew import (
    check_skew,
    image_tag_version,
    minor_distance,
    parse_kube_version,
    upgrade_step_problem,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("v1.34.2", (1, 34, 2)),
        ("1.34.2", (1, 34, 2)),
        ("v1.34.0-rc.1", (1, 34, 0)),
        ("v1.34.2+k3s1", (1, 34, 2)),
        ("v1.34", None),
        ("1.34.x", None),
        ("", None),
        (None, None),
        ("v01.34.2", None),
    ],
)
def test_parse_kube_version(value, expected):
    assert parse_kube_version(value) == expected


@pytest.mark.parametrize(
    "image, expected",
    [
        ("registry.k8s.io/kube-apiserver:v1.34.2", (1, 34, 2)),
        ("localhost:5000/kube-scheduler:v1.33.0", (1, 33, 0)),
        ("registry.k8s.io/kube-apiserver:v1.34.2@sha256:abc", (1, 34, 2)),
        ("localhost:5000/kube-scheduler", None),
        ("registry.k8s.io/pause:3.10", None),
        (None, None),
    ],
)
def test_image_tag_version(image, expected):
    assert image_tag_version(image) == expected


def test_minor_distance_across_majors():
    assert minor_distance((1, 34, 0), (1, 31, 9)) == 3
    assert minor_distance((1, 31, 0), (1, 34, 0)) == -3
    assert minor_distance((2, 0, 0), (1, 34, 0)) == float("inf")


API = {"cp1": "v1.34.2"}


@pytest.mark.parametrize(
    "apiservers, components, kubelets, max_skew, expected",
    [
        # kubelets against one apiserver
        pytest.param(API, {}, {"w1": "v1.34.2"}, 3, [], id="equal"),
        pytest.param(API, {}, {"w1": "v1.34.9"}, 3, [], id="newer-patch-same-minor-is-fine"),
        pytest.param(API, {}, {"w1": "v1.31.0"}, 3, [], id="three-minors-older-is-the-limit"),
        pytest.param(API, {}, {"w1": "v1.30.14"}, 3, ["kubelet on w1 is 1.30.14, 4 minor versions older"],
                     id="four-minors-older"),
        pytest.param(API, {}, {"w1": "v1.35.0"}, 3, ["kubelet on w1 is 1.35.0, newer than the oldest"],
                     id="kubelet-one-minor-newer"),
        pytest.param(API, {}, {"w1": "v1.33.0"}, 1, [], id="tightened-window-ok"),
        pytest.param(API, {}, {"w1": "v1.32.0"}, 1, ["2 minor versions older", "at most 1 allowed"],
                     id="tightened-window-violated"),
        pytest.param(API, {}, {"w1": "v1.30.0"}, 9, ["4 minor versions older", "at most 3 allowed"],
                     id="window-never-wider-than-policy"),
        pytest.param(API, {}, {"w1": "v1.34.0"}, 0, [], id="zero-skew-equal-minor"),
        pytest.param(API, {}, {"w1": "2.0.0"}, 3, ["kubelet on w1 is 2.0.0, newer"], id="newer-major"),
        pytest.param(API, {}, {"w1": "v0.34.0"}, 3, ["different major minor versions older"], id="older-major"),
        pytest.param(API, {}, {"w1": "garbage"}, 3, ["kubelet on w1 reports an unparsable version"],
                     id="unparsable-kubelet"),
        # HA apiservers: measured against the OLDEST
        pytest.param({"cp1": "v1.34.0", "cp2": "v1.33.5"}, {}, {"w1": "v1.34.0"}, 3,
                     ["kubelet on w1 is 1.34.0, newer than the oldest kube-apiserver (1.33.5 on cp2)"],
                     id="kubelet-newer-than-oldest-apiserver-mid-upgrade"),
        pytest.param({"cp1": "v1.34.0", "cp2": "v1.33.5"}, {}, {"w1": "v1.30.0"}, 3,
                     [], id="window-from-oldest-apiserver"),
        pytest.param({"cp1": "v1.34.0", "cp2": "v1.33.5"}, {}, {}, 3, [], id="apiservers-one-minor-apart"),
        pytest.param({"cp1": "v1.35.0", "cp2": "v1.33.5"}, {}, {}, 3,
                     ["kube-apiserver instances are 2 minor versions apart (1.35.0 on cp1, 1.33.5 on cp2)"],
                     id="apiservers-two-minors-apart"),
        # controller-manager / scheduler
        pytest.param(API, {"kcm-cp1": ("kube-controller-manager", "v1.33.0")}, {}, 3, [], id="kcm-one-older"),
        pytest.param(API, {"kcm-cp1": ("kube-controller-manager", "v1.32.0")}, {}, 3,
                     ["kube-controller-manager kcm-cp1 is 1.32.0, 2 minor versions older"], id="kcm-two-older"),
        pytest.param({"cp1": "v1.34.0", "cp2": "v1.33.0"}, {"sched-cp1": ("kube-scheduler", "v1.34.0")}, {}, 3,
                     ["kube-scheduler sched-cp1 is 1.34.0, newer than the oldest kube-apiserver (1.33.0 on cp2)"],
                     id="scheduler-newer-than-oldest-apiserver"),
        pytest.param(API, {"sched-cp1": ("kube-scheduler", "v1.34.7")}, {}, 3, [], id="scheduler-newer-patch-ok"),
        # no data
        pytest.param({}, {}, {"w1": "v1.34.0"}, 3, ["no kube-apiserver version known"], id="no-apiserver"),
        pytest.param({"cp1": "nope"}, {}, {}, 3, ["kube-apiserver cp1 reports an unparsable version"],
                     id="unparsable-apiserver"),
    ],
)
def test_check_skew(apiservers, components, kubelets, max_skew, expected):
    problems = check_skew(apiservers, components, kubelets, max_skew)
    if not expected:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        for needle in expected:
            assert needle in problems[0]


def test_check_skew_reports_every_problem():
    problems = check_skew({"cp1": "v1.34.0"}, {"s": ("kube-scheduler", "v1.35.0")},
                          {"w1": "v1.35.0", "w2": "v1.29.0", "w3": "v1.34.1"})
    assert len(problems) == 3


@pytest.mark.parametrize(
    "current, target, problem",
    [
        ("1.33.4", "1.33.4", None),
        ("1.33.4", "1.33.9", None),
        ("1.33.4", "1.34.0", None),
        ("v1.33.4", "v1.34.2", None),
        ("1.33.4", "1.35.0", "2 minor versions ahead of the running 1.33.4; upgrade one minor at a time (next: 1.34)"),
        ("1.33.4", "1.33.3", "downgrades are not supported"),
        ("1.33.4", "1.32.9", "downgrades are not supported"),
        ("1.33", "1.34.0", "cannot compare"),
    ],
)
def test_upgrade_step_problem(current, target, problem):
    result = upgrade_step_problem(current, target)
    if problem is None:
        assert result is None
    else:
        assert problem in result
