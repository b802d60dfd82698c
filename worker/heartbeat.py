"""A file the worker's main loop touches every few seconds; the Kubernetes probe
(`imgproc worker-probe`) checks its age. A hung event loop stops touching it, which
`celery inspect ping` (a broker round-trip per probe) would not detect any better."""

from __future__ import annotations

import time
from pathlib import Path

from celery import bootsteps

from app.core.config import get_settings

INTERVAL_SECONDS = 5.0


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()))


def heartbeat_age(path: Path, *, now: float | None = None) -> float | None:
    try:
        return (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return None


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(worker, **kwargs)
        self.path = get_settings().heartbeat_file
        self.entry = None

    def start(self, worker):  # type: ignore[no-untyped-def]
        touch(self.path)
        self.entry = worker.timer.call_repeatedly(INTERVAL_SECONDS, touch, (self.path,), priority=10)

    def stop(self, worker):  # type: ignore[no-untyped-def]
        if self.entry is not None:
            self.entry.cancel()
        self.path.unlink(missing_ok=True)
