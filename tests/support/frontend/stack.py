"""The embedded service (API + one worker) for the page tests and the screenshot script."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fixtures.services import ServiceStack, embedded_env, running_stack


def start_ready_worker(stack: ServiceStack, timeout: float = 60) -> None:
    """Starts a worker and waits until Celery says it is consuming.

    Uploads before that moment race the worker's declaration of the queue in the SQLite
    broker (kombu's get-or-create is locked per process only): the API can answer 503 and
    the worker can die on a UNIQUE constraint. Waiting keeps the page tests deterministic."""
    worker = stack.start_worker()
    name = f"worker{len(stack.workers) - 1}"
    deadline = time.monotonic() + timeout
    while " ready." not in stack.logs(name):
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}:\n{stack.logs(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker not ready after {timeout}s:\n{stack.logs(name)}")
        time.sleep(0.1)


@contextmanager
def embedded_stack(base: Path, **settings: object) -> Iterator[ServiceStack]:
    """settings: IMGPROC_ names without the prefix, e.g. MAX_UPLOAD_BYTES=1_000_000."""
    env = {**embedded_env(base / "data"), **{f"IMGPROC_{k}": str(v) for k, v in settings.items()}}
    with running_stack(env, base / "logs", workers=0) as stack:
        start_ready_worker(stack)
        yield stack
