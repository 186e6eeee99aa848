# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""Version parsing and the supported Kubernetes range, in one place.

Every check that asks "is this Kubernetes version supported?" reads
``K8S_SUPPORTED_MINORS`` from here: the inventory preflight, the roles (through
the ``k8s_supported_minors`` filter) and the upgrade skew checks.
"""

from __future__ import annotations

import re

# Inclusive range of Kubernetes minors this collection deploys and upgrades.
# kubeadm.k8s.io/v1beta4 (our kubeadm config format) is the default from 1.31 on.
K8S_SUPPORTED_MINORS = ((1, 31), (1, 37))

# The oldest external etcd kubeadm accepts (MinExternalEtcdVersion in cmd/kubeadm/app/constants/constants.go:
# 3.5.24 in every release from 1.31.14 to 1.37.2). `kubeadm init` and `upgrade apply` refuse an older one.
KUBEADM_MIN_EXTERNAL_ETCD = (3, 5, 24)

# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
SEMVER_RE = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

# Kubernetes release versions as pkgs.k8s.io and kubeadm spell them: 1.33.4
K8S_VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_semver(value):
    """Return (major, minor, patch) for a semver string, or None when it is not one."""
    match = SEMVER_RE.fullmatch(str(value)) if value is not None else None
    if not match:
        return None
    return int(match.group("major")), int(match.group("minor")), int(match.group("patch"))


def parse_k8s_version(value):
    """Return (major, minor, patch) for a plain ``X.Y.Z`` release version, or None."""
    match = K8S_VERSION_RE.fullmatch(str(value)) if value is not None else None
    if not match:
        return None
    return tuple(int(part) for part in match.groups())


def minor_supported(version):
    """True when the (major, minor, ...) tuple falls inside K8S_SUPPORTED_MINORS."""
    low, high = K8S_SUPPORTED_MINORS
    return low <= tuple(version[:2]) <= high


def supported_range_text():
    """The supported range for messages: '1.31 to 1.37'."""
    low, high = K8S_SUPPORTED_MINORS
    return "%d.%d to %d.%d" % (low + high)
