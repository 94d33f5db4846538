"""Polling with a deadline: every wait in the tests goes through ``wait_for``, so none sleeps a
fixed time and each failure says what it waited for and what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0  # generous: a loaded 2-core machine; normally each wait ends in well under that


def wait_for(what: str, probe: Callable[[], T], ok: Callable[[T], bool] = bool, *,
             deadline: float = DEADLINE, interval: float = 0.02) -> T:
    """Call ``probe`` until ``ok`` holds for its value (by default: the value is truthy) and
    return that value; after ``deadline`` seconds, fail with ``what`` and the last value.

    Raises AssertionError, so a caller may catch it to clean up (kill a process) and re-raise."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}"[:2000])
        time.sleep(interval)
