"""The worker's report policy, in one place: how an outcome reaches the API's signed webhook.

* One delivery attempt at once, on a background thread, so that the HTTP round trip overlaps
  the next image instead of delaying it (``report_in_background``).
* Not acknowledged (the API down, a 5xx): the report becomes its own queued Celery task
  (``REPORT_OUTCOME``), retried with back-off up to MAX_REPORT_BACKOFF_SECONDS, forever: an
  accepted task must reach a terminal state once the API is back (``report_retry_countdown``).
* The API no longer knows the task (404: its owner deleted it while it ran): the result
  written for it is removed, and that is the end of it.
* A run killed at the hard time limit is reported from the worker's main process as a queued
  report, never over HTTP there (``queue_report``).
* Reports still on their way are waited for at a pool process's warm shutdown; one lost with a
  killed process leaves the task `processing`, and the API re-enqueues it (app.tasks.requeue).
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import httpx
from celery.signals import worker_process_shutdown

from app.core import tracing
from app.core.celery_app import REPORT_OUTCOME, get_celery_app
from app.core.config import Settings, get_settings
from app.core.webhook_signing import WEBHOOK_PATH, sign
from app.schemas import OutcomeReport
from app.storage import Storage, StorageUnavailable, delete_results
from worker.metrics import REPORT_DELIVERIES, REPORTS_PENDING

log = logging.getLogger(__name__)
# The app the worker's tasks are registered on (worker.tasks binds the same one at import).
celery_app = get_celery_app()
MAX_REPORT_BACKOFF_SECONDS = 60


class ReportNotDelivered(Exception):
    """The API did not acknowledge; the report must be retried."""


class TaskGone(Exception):
    """The API no longer knows the task (deleted by its owner)."""


@lru_cache
def _client() -> httpx.Client:
    # One keep-alive connection pool per worker process (created after the prefork fork).
    return httpx.Client(timeout=10.0)


def deliver(settings: Settings, body: bytes) -> dict:
    headers = {"Content-Type": "application/json", **sign(settings.webhook_secret(), body)}
    tracing.inject(headers)
    try:
        response = _client().post(settings.api_internal_url + WEBHOOK_PATH, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ReportNotDelivered(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code == 404:
        raise TaskGone(response.text)
    if response.status_code != 200:
        raise ReportNotDelivered(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def deliver_once(task_id: int, body: bytes, storage: Storage) -> str:
    """One delivery attempt (ReportNotDelivered if unacknowledged). A task its owner deleted
    while it was processed has no row left: its results go too."""
    try:
        deliver(get_settings(), body)
    except TaskGone:
        try:
            delete_results(storage, task_id)
        except StorageUnavailable as exc:
            log.warning("task %s: deleted task's result not removed (%s)", task_id, exc)
        return "gone"
    return "delivered"


def queue_report(body: str) -> None:
    """The report as its own queued, retried task."""
    celery_app.send_task(REPORT_OUTCOME, args=[body])


def report_retry_countdown(retries: int) -> int:
    return min(MAX_REPORT_BACKOFF_SECONDS, 2 ** min(retries, 6))


def report(outcome: OutcomeReport, storage: Storage) -> None:
    """One delivery attempt now; on failure the report becomes its own queued, retried task."""
    body = outcome.model_dump_json().encode()
    try:
        result = deliver_once(outcome.task_id, body, storage)
    except ReportNotDelivered as exc:
        log.warning("task %s: report not delivered (%s); queued for retry", outcome.task_id, exc)
        queue_report(body.decode())  # raising, it is counted as lost (_report_logging_errors)
        result = "queued"
    REPORT_DELIVERIES.labels("first", result).inc()


@lru_cache
def _reporter() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="report")


def _report_logging_errors(outcome: OutcomeReport, storage: Storage) -> None:
    try:
        with tracing.span("imgproc.report", **{"imgproc.task_id": outcome.task_id}):
            report(outcome, storage)
    except Exception:  # broker down as well: the API's re-enqueueing is the backstop
        REPORT_DELIVERIES.labels("first", "lost").inc()
        log.exception("task %s: report neither delivered nor queued", outcome.task_id)
    finally:
        REPORTS_PENDING.dec()


def report_in_background(outcome: OutcomeReport, storage: Storage) -> None:
    REPORTS_PENDING.inc()
    # In the run's context (its trace, the task id of its log lines), on the reporter's thread.
    _reporter().submit(contextvars.copy_context().run, _report_logging_errors, outcome, storage)


@worker_process_shutdown.connect
def flush_reports(**_: object) -> None:
    """Waits for reports still on their way (warm shutdown of a pool process)."""
    if _reporter.cache_info().currsize:
        _reporter().shutdown(wait=True)
        _reporter.cache_clear()
    tracing.flush()  # a pool process ends with os._exit: no exit hook would export its last spans
