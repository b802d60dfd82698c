"""Polling, in the two meanings the tests need:

- `wait_until(predicate, timeout=, what=)`: the value of predicate() once truthy, else TimeoutError:
  for something that must happen.
- `true_within(condition, timeout)`: whether condition() became true in time, a bool, never an
  error: for a test that asserts on the answer (or on its absence).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "") -> T:
    """Polls until predicate() is truthy and returns its value; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s: {what or predicate}")
        time.sleep(interval)


def true_within(condition: Callable[[], bool], timeout: float, period: float = 0.2) -> bool:
    """Whether condition() became true within `timeout` s (checked once more at the end); never raises."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return condition()
