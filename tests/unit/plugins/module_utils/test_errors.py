# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_errors.py: a failure and its partial result, turned into fail_json once."""

from __future__ import annotations

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import ModuleError, fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._etcd import EtcdError
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import CLIENT_ERRORS, K8sApiError


class Failed(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs["msg"])
        self.kwargs = kwargs


class FakeModule:
    def fail_json(self, **kwargs):
        raise Failed(kwargs)


def fail(error, *args, **kwargs):
    """What fail_from_error passes to fail_json for ``error``, raised and caught as main() does."""
    with pytest.raises(Failed) as failed:
        try:
            raise error
        except Exception as exc:  # pylint: disable=broad-except  # main() catches every error the same way
            fail_from_error(FakeModule(), exc, *args, **kwargs)
    return failed.value.kwargs


def test_a_module_error_returns_its_message_and_the_partial_result():
    kwargs = fail(ModuleError("node w1 is still cordoned", refused_pods=["web"]), "k8s_drain on node w1",
                  dict(cordoned=True, refused_pods=[], duration=1.5), note=". never added")
    assert kwargs == dict(msg="node w1 is still cordoned", cordoned=True, refused_pods=["web"], duration=1.5)


def test_an_etcd_error_is_a_module_error_with_its_details():
    kwargs = fail(EtcdError("etcdctl endpoint status failed", rc=1, stderr="Error: x"), "etcd_health")
    assert kwargs == dict(msg="etcdctl endpoint status failed", rc=1, stderr="Error: x")


def test_a_client_error_names_the_context_and_keeps_the_traceback():
    kwargs = fail(K8sApiError("cannot reach https://vip:6443: refused"), "k8s_drain on node w1",
                  dict(cordoned=True), expected=CLIENT_ERRORS, note=". Node w1 is still cordoned (unschedulable).")
    assert kwargs["msg"] == ("k8s_drain on node w1: cannot reach https://vip:6443: refused. "
                             "Node w1 is still cordoned (unschedulable).")
    assert kwargs["cordoned"] is True
    assert "Traceback" in kwargs["exception"] and "K8sApiError" in kwargs["exception"]


def test_anything_else_is_a_bug_reported_with_its_type_and_the_partial_result():
    kwargs = fail(KeyError("metadata"), "k8s_storage_rewrite", dict(rewritten={"secrets": 3}),
                  expected=CLIENT_ERRORS, note=". So far: rewritten secrets 3")
    assert kwargs["msg"] == "k8s_storage_rewrite failed unexpectedly: KeyError: 'metadata'. So far: rewritten secrets 3"
    assert kwargs["rewritten"] == {"secrets": 3}
    assert "raise error" in kwargs["exception"]


def test_without_a_partial_result_only_the_message_is_returned():
    message = "expected_hash must be 'sha256:' followed by 64 hex digits"
    assert fail(ModuleError(message), "apiserver_encryption_status") == dict(msg=message)
