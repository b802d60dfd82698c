"""The worker's outcome reports (signed; not routed by the Ingress)."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, SettingsDep
from app.api.errors import TaskNotFound
from app.api.outcome_waiters import notify_outcome
from app.core import tracing
from app.core.config import Settings
from app.core.metrics import WEBHOOK_REPORTS
from app.core.webhook_signing import WEBHOOK_PATH, SignatureError, verify
from app.imaging.presets import PresetError
from app.schemas import ErrorResponse, OutcomeReport, WebhookAck
from app.storage import result_key
from app.tasks import crud, outputs
from app.tasks.records import TaskStatus, Variant

log = logging.getLogger(__name__)
router = APIRouter(tags=["internal"])


@router.post(
    WEBHOOK_PATH,
    response_model=WebhookAck,
    responses={
        401: {"model": ErrorResponse, "description": "Unsigned, wrongly signed, stale or replayed."},
        404: {"model": ErrorResponse, "description": "The task no longer exists."},
        422: {"model": ErrorResponse, "description": "Signed, but not a valid report."},
    },
)
async def task_complete(request: Request, session: SessionDep, settings: SettingsDep) -> WebhookAck:
    """Called by workers with an HMAC-SHA256 signature. Idempotent: a report for a task
    that has already finished changes nothing."""
    body = await request.body()
    try:
        delivery = verify(
            settings.webhook_secret(),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            tolerance=settings.WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError as exc:
        WEBHOOK_REPORTS.labels("refused", "signature").inc()
        raise HTTPException(401, f"Webhook rejected: {exc}.") from exc
    try:
        report = OutcomeReport.model_validate_json(body)
    except ValidationError as exc:
        WEBHOOK_REPORTS.labels("refused", "invalid").inc()
        raise HTTPException(422, f"Invalid report: {exc.errors()[0]['msg']}") from exc
    tracing.set_task_id(report.task_id)

    def apply() -> WebhookAck:
        # One transaction: the delivery id and the outcome are recorded together.
        if not crud.record_delivery(session=session, delivery_id=delivery.delivery_id):
            session.rollback()
            WEBHOOK_REPORTS.labels("refused", "replay").inc()
            raise HTTPException(401, "Webhook rejected: delivery already received (replay).")
        reported = TaskStatus(report.status)
        key, variants = _outputs(session, settings, report) if reported is TaskStatus.COMPLETED else (None, [])
        applied = crud.finish_task(
            session=session,
            task_id=report.task_id,
            status=reported,
            result_key=key,
            # The notes ride along in the stored JSON; the legacy metadata (TaskMetadata) ignores them.
            result_metadata=(
                json.dumps(
                    {**report.metadata.model_dump(mode="json"), **({"notes": report.notes} if report.notes else {})}
                )
                if report.metadata
                else None
            ),
            error=(report.error or "processing failed") if reported is TaskStatus.FAILED else None,
            commit=False,
        )
        if applied and variants:
            crud.record_variants(session=session, variants=variants)
        status = reported if applied else crud.task_status(session=session, task_id=report.task_id)
        session.commit()
        if applied:
            notify_outcome(report.task_id)  # after the commit: a woken waiter reads the outcome
            WEBHOOK_REPORTS.labels("applied", reported.value).inc()
        else:
            WEBHOOK_REPORTS.labels("ignored", "task_gone" if status is None else "already_finished").inc()
        if status is None:
            raise TaskNotFound()
        return WebhookAck(task_id=report.task_id, status=status.value, applied=applied)

    return await run_in_threadpool(apply)


def _outputs(session: Session, settings: Settings, report: OutcomeReport) -> tuple[str, list[Variant]]:
    """The completed task's result key and variant rows. Every key is derived from the task id
    and its presets, whatever the report says; a variant the task did not ask for is dropped. A
    report without variants (a worker from before presets) has the one legacy result."""
    if not report.variants:
        return result_key(report.task_id), []
    try:
        presets = outputs.presets_of(settings.presets, crud.task_presets(session=session, task_id=report.task_id))
    except PresetError:
        presets = ()
    formats = {preset.name: preset.formats for preset in presets}
    variants = [
        Variant(
            task_id=report.task_id,
            preset=v.preset,
            format=v.format.value,
            width=v.width,
            height=v.height,
            size=v.size,
            key=outputs.variant_key(report.task_id, v.preset, v.format, presets),
        )
        for v in report.variants
        if v.format in formats.get(v.preset, ())
    ]
    if len(variants) < len(report.variants):
        log.warning("task %s: report names outputs it did not ask for; dropped", report.task_id)
    if not variants:
        return result_key(report.task_id), []
    return outputs.variant_key(report.task_id, *outputs.primary(presets), presets), variants
