"""Waiting for something the system under test does on its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "",
             step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails the test with ``what`` (and the last value seen) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what or predicate} (last value {value!r})")
        time.sleep(step)
