"""Thin Celery wrappers: load by id, call the pure pipeline, store, report (how a report is
delivered and retried: worker.reporting)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from celery import Task as CeleryTask
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.exc import DBAPIError

from app import imaging
from app.core import tracing
from app.core.celery_app import PROCESS_IMAGE, REPORT_OUTCOME, get_celery_app
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.logging_setup import task_context
from app.imaging.presets import PresetError
from app.imaging.variants import AnimationLimits
from app.schemas import OutcomeReport, TaskMetadata, VariantReport
from app.storage import Storage, StorageUnavailable, get_storage
from app.tasks import crud, outputs
from worker import metrics
from worker.heartbeat import WORKER_ID
from worker.metrics import Failure
from worker.reporting import (
    ReportNotDelivered,
    deliver_once,
    queue_report,
    report_in_background,
    report_retry_countdown,
)

log = logging.getLogger(__name__)
celery_app = get_celery_app()
# An unreachable store: the run is retried (not failed) with back-off up to this long.
MAX_STORAGE_BACKOFF_SECONDS = 30
TIME_LIMIT_REASON = "processing took longer than the time limit"
_IMAGE_FAILURES = {
    imaging.EmptyImageError: Failure.IMAGE_EMPTY,
    imaging.CorruptImageError: Failure.IMAGE_CORRUPT,
    imaging.ImageTooLargeError: Failure.IMAGE_TOO_LARGE,
    imaging.UnsupportedImageError: Failure.IMAGE_UNSUPPORTED,
}


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """A stage of a run: a span in its trace and a sample of its duration histogram."""
    with tracing.span(f"imgproc.{name}"), metrics.stage(name):
        yield


@lru_cache
def cmyk_profile(path: Path) -> bytes | None:
    """Read once per process."""
    try:
        return path.read_bytes()
    except OSError as exc:
        log.warning("no CMYK profile at %s (%s): CMYK images without one get a naive conversion", path, exc)
        return None


def run_pipeline(task_id: int, source: bytes, task_presets: str | None, storage: Storage) -> OutcomeReport:
    """Pure processing (every preset asked for, from one decode) plus the writes; every declared
    image error becomes a failed outcome."""
    started = time.perf_counter()
    settings = get_settings()
    try:
        presets = outputs.presets_of(settings.presets, task_presets)
    except PresetError as exc:  # the configuration changed since the upload
        return failed(task_id, f"the presets asked for are no longer configured ({exc})", Failure.PRESETS_GONE)
    # One span for the pure pipeline, its own stages as attributes: they interleave per variant
    # (resize, encode, resize, ...), and the pipeline stays free of anything but image work.
    with tracing.span("imgproc.render") as render:
        try:
            rendered = imaging.render_variants(
                source,
                presets,
                max_pixels=settings.output_spec.max_pixels,
                background=settings.jpeg_background,
                cmyk_profile=cmyk_profile(settings.CMYK_PROFILE_PATH),
                animation=AnimationLimits(settings.ANIMATION_MAX_FRAMES, settings.ANIMATION_MAX_PIXELS),
            )
        except imaging.ImageError as exc:
            return failed(task_id, str(exc), _IMAGE_FAILURES.get(type(exc), Failure.IMAGE_CORRUPT))
        if render.is_recording():
            render.set_attributes(
                {f"imgproc.{name}_seconds": getattr(rendered.times, name) for name in ("decode", "resize", "encode")}
                | {"imgproc.variants": len(rendered.variants), "imgproc.source_format": rendered.source_format}
            )
    metrics.observe_imaging(rendered.times)
    with stage("store"):
        for variant in rendered.variants:
            key = outputs.variant_key(task_id, variant.preset, variant.format, presets)
            storage.write(key, variant.data, content_type=variant.format.media_type)
    primary = rendered.variant(*outputs.primary(presets))
    metadata = TaskMetadata(
        original_size=len(source),
        processed_size=len(primary.data),
        original_width=rendered.source_width,
        original_height=rendered.source_height,
        width=primary.width,
        height=primary.height,
        source_format=rendered.source_format,
        processing_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    metrics.TASKS.labels("completed", "").inc()
    return OutcomeReport(
        task_id=task_id,
        status="completed",
        result_path=outputs.variant_key(task_id, primary.preset, primary.format, presets),
        metadata=metadata,
        variants=[
            VariantReport(preset=v.preset, format=v.format, width=v.width, height=v.height, size=len(v.data))
            for v in rendered.variants
        ],
        notes=list(rendered.notes),
    )


def failed(task_id: int, reason: str, cause: Failure) -> OutcomeReport:
    """A failed outcome, counted under ``cause`` (every failure's report is made here, once)."""
    metrics.TASKS.labels("failed", cause).inc()
    return OutcomeReport(task_id=task_id, status="failed", error=reason)


def outcome_for(task_id: int, claim: crud.Claim, storage: Storage) -> OutcomeReport:
    """Whatever happens after the claim ends in an outcome, so no task is left `processing`."""
    try:
        with stage("read"):
            source = storage.read(claim.source_key)
        return run_pipeline(task_id, source, claim.presets, storage)
    except FileNotFoundError:
        return failed(task_id, "the uploaded file is missing from storage", Failure.SOURCE_MISSING)
    except SoftTimeLimitExceeded:
        return failed(task_id, TIME_LIMIT_REASON, Failure.TIME_LIMIT)
    except StorageUnavailable:
        raise  # an outage, not this image's fault: the run is retried (process_image)
    except Exception as exc:  # storage failing (disk full), or a bug: reported, not retried forever
        log.exception("task %s: unexpected failure", task_id)
        return failed(task_id, f"the worker could not finish this image ({type(exc).__name__})", Failure.WORKER_ERROR)


class ProcessImageTask(CeleryTask):
    def on_failure(self, exc, task_id, args, kwargs, einfo):  # type: ignore[no-untyped-def]
        # At the hard time limit Celery kills the pool process (code stuck in C never saw the
        # soft limit), acknowledges the message and calls this in the worker's main process.
        # A rerun would only time out again: report the failure now, as a queued report so that
        # the main process never waits on HTTP.
        if isinstance(exc, TimeLimitExceeded) and args:
            queue_report(failed(args[0], TIME_LIMIT_REASON, Failure.TIME_LIMIT).model_dump_json())


# Database hiccups (PostgreSQL restart) are retried; image errors are not exceptions here.
@celery_app.task(
    name=PROCESS_IMAGE,
    base=ProcessImageTask,
    bind=True,
    autoretry_for=(DBAPIError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=None,
)
def process_image(self: CeleryTask, task_id: int) -> str:
    tracing.set_task_id(task_id)  # on the run's span (the Celery instrumentation's)
    with task_context(task_id), tracing.client_spans_only_if_sampled():
        return _process_image(self, task_id)


def _process_image(self: CeleryTask, task_id: int) -> str:
    settings = get_settings()
    storage = get_storage()
    with session_scope() as session:
        claim = crud.start_processing(
            session=session, task_id=task_id, max_attempts=settings.MAX_TASK_ATTEMPTS, worker=WORKER_ID
        )
        status = crud.task_status(session=session, task_id=task_id) if claim is None else None
    if claim is not None:
        if not self.request.retries:  # a Celery retry waited for its back-off, not for the queue
            metrics.observe_queue_wait(claim.enqueued_at)
        try:
            outcome = outcome_for(task_id, claim, storage)
        except StorageUnavailable as exc:
            # Not the task's fault: give the attempt back and run it again later. Nothing was
            # reported; a result half-written cannot exist (writes are atomic).
            with session_scope() as session:
                crud.release_attempt(session=session, task_id=task_id)
            countdown = min(MAX_STORAGE_BACKOFF_SECONDS, 2 ** min(self.request.retries, 5))
            log.warning("task %s: storage unavailable (%s); retrying in %ss", task_id, exc, countdown)
            raise self.retry(countdown=countdown, exc=exc, max_retries=None) from exc
    elif status is not None and not status.terminal:
        # Every earlier run died with its worker (OOM, a crash) or its report was lost each time.
        outcome = failed(
            task_id,
            f"processing was attempted {settings.MAX_TASK_ATTEMPTS} times and never finished",
            Failure.ATTEMPTS_EXHAUSTED,
        )
    else:
        metrics.TASKS.labels("skipped", "already_finished").inc()
        return "already finished or deleted"  # a redelivered or re-enqueued duplicate
    report_in_background(outcome, storage)
    # One line per task run (with its task_id and trace ids in JSON logs): its outcome and why.
    log.info("task %s: %s%s", task_id, outcome.status, f" ({outcome.error})" if outcome.error else "")
    return outcome.status


@celery_app.task(name=REPORT_OUTCOME, bind=True, max_retries=None)
def report_outcome(self: CeleryTask, body: str) -> str:
    task_id = OutcomeReport.model_validate_json(body).task_id
    tracing.set_task_id(task_id)
    try:
        with task_context(task_id), tracing.client_spans_only_if_sampled():
            result = deliver_once(task_id, body.encode(), get_storage())
    except ReportNotDelivered as exc:
        metrics.REPORT_DELIVERIES.labels("retry", "retrying").inc()
        raise self.retry(countdown=report_retry_countdown(self.request.retries), exc=exc) from exc
    metrics.REPORT_DELIVERIES.labels("retry", result).inc()
    return result
