# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_wait.py: the wait options and the polling loop, on a fake clock."""

from __future__ import annotations

import time

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    deadline_argument_spec,
    poll,
    wait_argument_spec,
)


class FakeTime:
    """A clock that only sleeping (and ``work``) moves; it records every sleep."""

    def __init__(self, now=1000.0):
        self.now = now
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0, "slept %r" % seconds
        self.sleeps.append(seconds)
        self.now += seconds

    def work(self, seconds):
        self.now += seconds


@pytest.fixture
def fake(monkeypatch):
    fake = FakeTime()

    def real_sleep(_seconds):
        raise AssertionError("poll slept for real")

    monkeypatch.setattr(time, "sleep", real_sleep)
    return fake


def checker(fake, results, takes=0.0):
    """A check returning ``results`` in turn (the last one again after that), taking ``takes`` seconds each."""
    calls = []

    def check():
        calls.append(fake.now)
        fake.work(takes)
        return results[min(len(calls), len(results)) - 1]

    return check, calls


def run(fake, results, wait=True, timeout=12, interval=5, takes=0.0):
    check, calls = checker(fake, results, takes)
    deadline = Deadline(timeout, fake.clock)
    polled = poll(check, bool, wait, deadline, interval, fake.sleep)
    return polled, calls, deadline


def test_done_at_once_neither_sleeps_nor_repeats(fake):
    polled, _calls, _deadline = run(fake, [True])
    assert polled == (True, 1, 0.0) and fake.sleeps == []


def test_polls_until_done(fake):
    polled, _calls, _deadline = run(fake, [False, False, "ready"])
    assert polled.result == "ready" and polled.attempts == 3
    assert fake.sleeps == [5, 5] and polled.waited == 10.0


def test_the_last_sleep_ends_at_the_deadline_and_the_last_attempt_starts_there(fake):
    polled, calls, deadline = run(fake, [False])
    assert fake.sleeps == [5, 5, 2]
    assert calls == [1000.0, 1005.0, 1010.0, 1012.0] and calls[-1] == deadline.at
    assert polled == (False, 4, 12.0)


def test_a_slow_check_shortens_the_sleeps_and_no_sleep_passes_the_deadline(fake):
    polled, calls, deadline = run(fake, [False], takes=4)
    # 1000-1004 check, sleep 5; 1009-1013 check: past the deadline (1012), no more sleep.
    assert calls == [1000.0, 1009.0] and fake.sleeps == [5]
    assert polled.attempts == 2 and polled.waited == 13.0
    for start, slept in zip(calls, fake.sleeps):
        assert start + 4 + slept <= deadline.at


def test_without_wait_it_checks_once(fake):
    polled, _calls, _deadline = run(fake, [False, True], wait=False)
    assert polled == (False, 1, 0.0) and fake.sleeps == []


def test_a_zero_timeout_checks_once(fake):
    polled, _calls, _deadline = run(fake, [False, True], timeout=0)
    assert polled.attempts == 1 and fake.sleeps == []


def test_the_sleep_never_exceeds_the_interval(fake):
    polled, _calls, _deadline = run(fake, [False], timeout=10, interval=3)
    assert fake.sleeps == [3, 3, 3, 1] and polled.attempts == 5


def test_done_decides_not_truthiness(fake):
    check, _calls = checker(fake, [{"healthy": False}, {"healthy": True}])
    polled = poll(check, lambda report: report["healthy"], True, Deadline(60, fake.clock), 2, fake.sleep)
    assert polled.result == {"healthy": True} and polled.attempts == 2 and fake.sleeps == [2]


def test_deadline(fake):
    deadline = Deadline(30, fake.clock)
    assert deadline.started == 1000.0 and deadline.at == 1030.0
    assert deadline.remaining() == 30 and not deadline.expired() and deadline.elapsed() == 0
    fake.work(29.5)
    assert deadline.remaining() == 0.5 and not deadline.expired()
    fake.work(0.5)
    assert deadline.expired() and deadline.elapsed() == 30.0
    fake.work(5)
    assert deadline.remaining() == -5 and deadline.expired()


def test_deadline_reads_time_monotonic_when_no_clock_is_given(monkeypatch):
    monkeypatch.setattr(time, "monotonic", lambda: 7.0)
    assert Deadline(3).at == 10.0


# -- argument specs ------------------------------------------------------------------------------

DEPRECATED = dict(version="1.0.0", collection_name="baremetal.kubernetes")


def test_wait_argument_spec_with_the_module_defaults():
    assert wait_argument_spec(timeout=120, sleep=2) == dict(
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
        wait_sleep=dict(type="int", default=2),
    )
    assert wait_argument_spec(timeout=0, sleep=2, wait=True)["wait"] == dict(type="bool", default=True)


def test_old_names_become_deprecated_aliases():
    spec = wait_argument_spec(timeout=300, sleep=5, old_names=dict(wait_timeout="timeout", wait_sleep="poll_interval"))
    assert spec["wait"] == dict(type="bool", default=False)
    assert spec["wait_timeout"] == dict(type="int", default=300, aliases=["timeout"],
                                        deprecated_aliases=[dict(name="timeout", **DEPRECATED)])
    assert spec["wait_sleep"] == dict(type="int", default=5, aliases=["poll_interval"],
                                      deprecated_aliases=[dict(name="poll_interval", **DEPRECATED)])


def test_deadline_argument_spec_has_wait_timeout_only():
    assert deadline_argument_spec(timeout=1800) == dict(wait_timeout=dict(type="int", default=1800))
    assert deadline_argument_spec(timeout=300, old_name="timeout") == dict(
        wait_timeout=dict(type="int", default=300, aliases=["timeout"],
                          deprecated_aliases=[dict(name="timeout", **DEPRECATED)]))


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, **params):
        self.params = params

    def fail_json(self, msg, **_kwargs):
        raise Failed(msg)


@pytest.mark.parametrize("params, min_timeout, message", [
    (dict(wait_timeout=0, wait_sleep=1), 0, None),
    (dict(wait_timeout=-1, wait_sleep=1), 0, "wait_timeout must be at least 0, got -1"),
    (dict(wait_timeout=0, wait_sleep=1), 1, "wait_timeout must be at least 1, got 0"),
    (dict(wait_timeout=10, wait_sleep=0), 0, "wait_sleep must be at least 1 second, got 0"),
    (dict(wait_timeout=1), 1, None),  # a module without wait_sleep (k8s_drain, k8s_storage_rewrite)
])
def test_check_wait_options(params, min_timeout, message):
    module = FakeModule(**params)
    if message is None:
        check_wait_options(module, min_timeout=min_timeout)
    else:
        with pytest.raises(Failed, match=message):
            check_wait_options(module, min_timeout=min_timeout)
