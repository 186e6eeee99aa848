# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""Waiting, the same way in every module: the options, their checks, a deadline and the polling loop.

The options are named as in kubernetes.core: ``wait`` (poll until the condition holds), ``wait_timeout`` (seconds
in all) and ``wait_sleep`` (seconds between attempts). The ``baremetal.kubernetes.wait`` doc fragment documents
them; each module states its own defaults and, where it used other names before, those names as deprecated
aliases.

Clock and sleep are parameters, so unit tests run the loops on a fake clock without sleeping.
"""

from __future__ import annotations

import time
from collections import namedtuple

COLLECTION_NAME = "baremetal.kubernetes"
# The old option names (timeout, poll_interval) stay accepted, with a deprecation warning, until this release.
# They were never in a release, and the first one with a stable API should not start out carrying them.
OLD_NAMES_REMOVED_IN = "1.0.0"

Polled = namedtuple("Polled", "result attempts waited")


def _option(spec, old_name):
    if old_name:
        spec.update(aliases=[old_name], deprecated_aliases=[
            dict(name=old_name, version=OLD_NAMES_REMOVED_IN, collection_name=COLLECTION_NAME)])
    return spec


def deadline_argument_spec(timeout, old_name=None):
    """``wait_timeout`` alone, for a module that always runs to the end and takes it as its deadline."""
    return dict(wait_timeout=_option(dict(type="int", default=timeout), old_name))


def wait_argument_spec(timeout, sleep, wait=False, old_names=None):
    """``wait``, ``wait_timeout`` and ``wait_sleep`` with a module's defaults.

    ``old_names`` maps an option to the name the module gave it before (``{"wait_timeout": "timeout"}``); that
    name stays accepted as a deprecated alias.
    """
    old_names = old_names or {}
    spec = dict(wait=dict(type="bool", default=wait))
    spec.update(deadline_argument_spec(timeout, old_names.get("wait_timeout")))
    spec["wait_sleep"] = _option(dict(type="int", default=sleep), old_names.get("wait_sleep"))
    return spec


def check_wait_options(module, min_timeout=0):
    """Fail the module when ``wait_timeout`` is below ``min_timeout`` seconds or ``wait_sleep`` below 1 second."""
    params = module.params
    if params["wait_timeout"] < min_timeout:
        module.fail_json(msg="wait_timeout must be at least %d, got %d" % (min_timeout, params["wait_timeout"]))
    if params.get("wait_sleep") is not None and params["wait_sleep"] < 1:
        module.fail_json(msg="wait_sleep must be at least 1 second, got %d" % params["wait_sleep"])


class Deadline:
    """``seconds`` from now on a monotonic ``clock``: when a module has to stop."""

    def __init__(self, seconds, clock=None):
        # Looked up at call time, so that a test's patch of time.monotonic applies.
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.at = self.started + seconds

    def remaining(self):
        """Seconds left; 0 or less once the deadline has passed."""
        return self.at - self.clock()

    def expired(self):
        return self.remaining() <= 0

    def elapsed(self):
        return self.clock() - self.started


def poll(check, done, wait, deadline, interval, sleep=None):
    """Run ``check()`` until ``done(result)``, at most until ``deadline``; once only without ``wait``.

    Between two attempts it sleeps ``interval`` seconds, the last time only until the deadline: the last attempt
    starts at the deadline at the latest, and no sleep ends after it. Returns ``Polled(result, attempts, waited)``:
    the last result, how many times ``check`` ran and the seconds since the deadline was set.
    """
    sleep = sleep or time.sleep
    attempts = 0
    while True:
        attempts += 1
        result = check()
        if done(result) or not wait:
            break
        remaining = deadline.remaining()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
    return Polled(result, attempts, deadline.elapsed())
