# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""Failures, the same way in every module: raised where they happen, reported once by main().

Code below main() raises ``ModuleError`` (or a subclass) with a message and, when it has one, the partial result
a failed task still has to return (what was changed, what state is left behind). main() catches every exception
in one place and hands it to ``fail_from_error``, which makes the module's single fail_json call.
"""

from __future__ import annotations

import traceback


class ModuleError(Exception):
    """A failure the module reports as it is: ``msg``, plus the partial result known where it was raised."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


def fail_from_error(module, error, context, partial=None, expected=(), note=""):
    """Fail ``module`` for ``error``, an exception main() caught; never returns.

    - A ``ModuleError`` says what happened in its own words: its message, no traceback.
    - An error of a type in ``expected`` (a client's: the API, the kubeconfig) is "<context>: <error>", with the
      traceback for -vvv.
    - Anything else is a bug: "<context> failed unexpectedly: <type>: <error>", with the traceback.

    ``context`` names the module and what it worked on ("k8s_drain on node w1"). ``partial`` is what the module
    had done when it failed (e.g. that it cordoned a node); the error's own result is merged over it. ``note`` is
    added to the messages the module did not write itself, to say what state a failure leaves (the message of a
    ``ModuleError`` says that already).
    """
    result = dict(partial or {})
    if isinstance(error, ModuleError):
        result.update(error.result)
        module.fail_json(msg=error.msg, **result)
    if isinstance(error, tuple(expected)):
        msg = "%s: %s" % (context, error)
    else:
        msg = "%s failed unexpectedly: %s: %s" % (context, type(error).__name__, error)
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    module.fail_json(msg=msg + note, exception=details, **result)
