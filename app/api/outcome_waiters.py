"""In-process wake-ups for long polls: the webhook announces each outcome it applies, and status
requests waiting on that task (``?wait=``) re-read it at once instead of polling the database.

One API replica only knows the outcomes it applied itself; the others are seen by the waiter's
bounded re-check (IMGPROC_STATUS_WAIT_RECHECK_SECONDS), so with several replicas an outcome
reaches a waiter within that interval, and with one at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from app.core.metrics import STATUS_WAITERS


class Waiter:
    """One waiting request: woken from any thread, awaited on its own event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        with suppress(RuntimeError):  # the loop has already closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """True if woken within ``timeout`` seconds. Either way the next wait starts afresh, so a
        wake-up that arrives while the caller re-reads the task is kept for the next wait."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


_lock = threading.Lock()
_waiters: dict[int, set[Waiter]] = {}


def notify_outcome(task_id: int) -> None:
    """Wake every request waiting on ``task_id`` in this process (callable from any thread)."""
    with _lock:
        waiters = list(_waiters.get(task_id, ()))
    for waiter in waiters:
        waiter.wake()


@contextmanager
def waiting_for(task_id: int) -> Iterator[Waiter]:
    """Registers a waiter for the block (enter it *before* reading the task, so that an outcome
    applied between the read and the wait is not missed)."""
    waiter = Waiter(asyncio.get_running_loop())
    with _lock:
        _waiters.setdefault(task_id, set()).add(waiter)
    STATUS_WAITERS.inc()
    try:
        yield waiter
    finally:
        STATUS_WAITERS.dec()
        with _lock:
            waiting = _waiters.get(task_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del _waiters[task_id]


def waiting_count() -> int:
    with _lock:
        return sum(len(waiters) for waiters in _waiters.values())
