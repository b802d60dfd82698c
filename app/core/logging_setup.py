"""Logging set-up, called by entry points only; the ids that tie a log line to its task and trace."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from app.core import tracing
from app.core.config import Settings

# The task (our id, tasks.id) the worker's current run is about (worker.tasks); its log lines carry
# it. (An API request names its task on its span instead: tracing.set_task_id.)
_task_id: ContextVar[int | None] = ContextVar("imgproc_task_id", default=None)


@contextlib.contextmanager
def task_context(task_id: int) -> Iterator[None]:
    token = _task_id.set(task_id)
    try:
        yield
    finally:
        _task_id.reset(token)


class TaskAndTraceIds(logging.Filter):
    """Adds ``task_id``, ``trace_id`` and ``span_id`` to a record where they are known (the JSON
    formatter writes every added attribute as a field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (task_id := _task_id.get()) is not None:
            record.task_id = task_id
        if (ids := tracing.current_ids()) is not None:
            record.trace_id, record.span_id = ids
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.LOG_FORMAT == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(TaskAndTraceIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL.upper())
