"""Prometheus metrics of the worker, every definition in one place (the API's and the shared ones:
app/core/metrics.py; recording across the prefork pool and serving: app/core/metrics_export.py).

Recorded in the pool children and, for a run killed at the hard time limit, in the main process;
a scrape of the main process sums them all (multiprocess mode), children that exited included.
"""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from celery.signals import task_retry, worker_process_shutdown
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.exc import DBAPIError

from app.core import metrics_export
from app.core.celery_app import PROCESS_IMAGE, REPORT_OUTCOME
from app.imaging import StageTimes
from app.storage import StorageUnavailable


class Failure(enum.StrEnum):
    """Why a task failed: the ``reason`` of imgproc_worker_tasks_total{outcome="failed"}."""

    IMAGE_EMPTY = "image_empty"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_TOO_LARGE = "image_too_large"  # over IMGPROC_MAX_IMAGE_PIXELS
    IMAGE_UNSUPPORTED = "image_unsupported"
    PRESETS_GONE = "presets_gone"  # the presets it asked for are no longer configured
    SOURCE_MISSING = "source_missing"  # the original is not in storage
    TIME_LIMIT = "time_limit"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # its runs kept dying with their worker
    WORKER_ERROR = "worker_error"  # an unexpected exception (a full disk, a bug)


TASKS = Counter(
    "imgproc_worker_tasks",
    "Image tasks run by the worker, by outcome: completed, failed (reason: worker.metrics.Failure), "
    "retried (reason: storage_unavailable, database_unavailable) or skipped (already finished or deleted).",
    ("outcome", "reason"),
)
QUEUE_WAIT = Histogram(
    "imgproc_worker_queue_wait_seconds",
    "Time from a task's message being sent (tasks.enqueued_at, re-sends included) to a worker claiming it.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
STAGE_DURATION = Histogram(
    "imgproc_worker_stage_duration_seconds",
    "Time a task spent in each stage: read (the original from storage), decode, resize, encode (all "
    "presets and formats together), store (every output written).",
    ("stage",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
REPORT_DELIVERIES = Counter(
    "imgproc_worker_report_deliveries",
    "Attempts to deliver an outcome report to the API's webhook, by attempt (first, retry) and result: "
    "delivered, gone (the task was deleted), queued (first attempt not acknowledged: a retry was queued), "
    "retrying (a retry not acknowledged: scheduled again), lost (not acknowledged and not queued either).",
    ("attempt", "result"),
)
REPORTS_PENDING = Gauge(
    "imgproc_worker_reports_pending",
    "Outcome reports handed to the background reporter whose first delivery attempt has not ended.",
    multiprocess_mode="livesum",
)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def observe_queue_wait(enqueued_at: datetime | None) -> None:
    if enqueued_at is not None:
        QUEUE_WAIT.observe(max(0.0, (datetime.now(UTC) - _aware(enqueued_at)).total_seconds()))


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Times the block as stage ``name`` when it succeeds (a failure is counted elsewhere)."""
    started = time.perf_counter()
    yield
    STAGE_DURATION.labels(name).observe(time.perf_counter() - started)


def observe_imaging(times: StageTimes) -> None:
    """The pure pipeline's own stages, as it measured them (app.imaging.StageTimes)."""
    for name in ("decode", "resize", "encode"):
        STAGE_DURATION.labels(name).observe(getattr(times, name))


@task_retry.connect
def _count_retry(sender: object = None, reason: object = None, **_: object) -> None:
    if getattr(sender, "name", None) != PROCESS_IMAGE:
        return
    if isinstance(reason, StorageUnavailable):
        why = "storage_unavailable"
    elif isinstance(reason, DBAPIError):
        why = "database_unavailable"
    else:
        why = "other"
    TASKS.labels("retried", why).inc()


@worker_process_shutdown.connect
def _forget_this_process(**_: object) -> None:
    """A pool child exits: its live gauges go (its counts stay)."""
    metrics_export.forget_process(os.getpid())


class ReportRetriesWaiting:
    """imgproc_worker_report_retries_waiting, read at scrape time in the worker's main process,
    which holds the queued report retries it has received until their countdown ends (Celery's
    own bookkeeping; a retry no worker has received yet is still in the queue)."""

    def collect(self) -> Iterable[Metric]:
        from celery.worker import state

        requests = list(state.requests.values())
        active = set(state.active_requests)
        waiting = sum(1 for request in requests if request.name == REPORT_OUTCOME and request not in active)
        yield GaugeMetricFamily(
            "imgproc_worker_report_retries_waiting",
            "Queued outcome-report retries this worker has received and not yet run (waiting for their countdown).",
            value=waiting,
        )
