# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The set_module_args / AnsibleExitJson / AnsibleFailJson pattern for module unit tests.

Usage::

    with set_module_args({"name": "w1"}), pytest.raises(AnsibleExitJson) as result:
        my_module.main()
    assert result.value.result["changed"] is False

``patched_exits()`` (a context manager, or use it in a fixture) turns
``exit_json``/``fail_json`` into exceptions carrying the result.
"""

from __future__ import annotations

import contextlib
import re
from unittest import mock

from ansible.module_utils import _internal as _module_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings

try:  # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args as _patch_module_args
except ImportError:  # pragma: no cover - older ansible-core
    _patch_module_args = None


class AnsibleExitJson(Exception):
    """exit_json was called; ``result`` holds its arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    """fail_json was called; ``result`` holds its arguments (``msg`` included)."""

    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def _collected_warnings(kwargs):
    """Like the real exit_json/fail_json: add what module.warn() collected as ``warnings`` and what
    module.deprecate() (or a deprecated alias) collected as ``deprecations``."""
    collected = list(warnings.get_warning_messages())
    if collected:
        kwargs["warnings"] = collected
    deprecations = list(warnings.get_deprecation_messages())
    if deprecations:
        kwargs["deprecations"] = deprecations


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    _collected_warnings(kwargs)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    _collected_warnings(kwargs)
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def set_module_args(args):
    """Expose ``args`` (plus the internal defaults) to AnsibleModule instances created in the block."""
    args = dict(args)
    # Warnings and deprecations are collected process-wide; start each module run with none.
    getattr(warnings, "_global_warnings", {}).clear()
    getattr(warnings, "_global_deprecations", {}).clear()
    args.setdefault("_ansible_remote_tmp", "/tmp")
    args.setdefault("_ansible_keep_remote_files", False)
    if _patch_module_args is not None:
        with _patch_module_args(args):
            yield
        return
    import json  # pragma: no cover - older ansible-core

    from ansible.module_utils.common.text.converters import to_bytes

    with mock.patch.object(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))):
        yield


@contextlib.contextmanager
def patched_exits():
    """Patch AnsibleModule.exit_json/fail_json to raise AnsibleExitJson/AnsibleFailJson.

    The module runs as on a target: once other tests imported controller code, ansible-core would send
    module.warn() to the controller's display instead of the result's ``warnings``.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.multiple(basic.AnsibleModule, exit_json=_exit_json, fail_json=_fail_json))
        if hasattr(_module_internal, "is_controller"):
            stack.enter_context(mock.patch.object(_module_internal, "is_controller", False))
        yield


def run_module(main, args, check_mode=False):
    """Run a module's ``main()`` with ``args``; return ``("exit", result)`` or ``("fail", result)``."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with set_module_args(args), patched_exits():
        try:
            main()
        except AnsibleExitJson as exc:
            return "exit", exc.result
        except AnsibleFailJson as exc:
            return "fail", exc.result
    raise AssertionError("module returned without exit_json/fail_json")


def deprecated_aliases(result):
    """{old option name: (version, collection)} for every deprecated alias a run was given."""
    found = {}
    for item in result.get("deprecations") or []:
        match = re.match(r"Alias '(\w+)' is deprecated", item["msg"])
        if match:
            found[match.group(1)] = (item.get("version"), item.get("collection_name"))
    return found
