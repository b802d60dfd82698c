"""The worker's outcome reports (signed; not routed by the Ingress)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app.api.deps import SessionDep, SettingsDep
from app.api.errors import TaskNotFound
from app.api.outcome_waiters import notify_outcome
from app.core.webhook_signing import WEBHOOK_PATH, SignatureError, verify
from app.schemas import ErrorResponse, OutcomeReport, WebhookAck
from app.storage import result_key
from app.tasks import crud
from app.tasks.records import TaskStatus

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
        raise HTTPException(401, f"Webhook rejected: {exc}.") from exc
    try:
        report = OutcomeReport.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(422, f"Invalid report: {exc.errors()[0]['msg']}") from exc

    def apply() -> WebhookAck:
        # One transaction: the delivery id and the outcome are recorded together.
        if not crud.record_delivery(session=session, delivery_id=delivery.delivery_id):
            session.rollback()
            raise HTTPException(401, "Webhook rejected: delivery already received (replay).")
        reported = TaskStatus(report.status)
        applied = crud.finish_task(
            session=session,
            task_id=report.task_id,
            status=reported,
            # The result location is derived from the id, whatever the report says.
            result_key=result_key(report.task_id) if reported is TaskStatus.COMPLETED else None,
            result_metadata=report.metadata.model_dump_json() if report.metadata else None,
            error=(report.error or "processing failed") if reported is TaskStatus.FAILED else None,
            commit=False,
        )
        status = reported if applied else crud.task_status(session=session, task_id=report.task_id)
        session.commit()
        if applied:
            notify_outcome(report.task_id)  # after the commit: a woken waiter reads the outcome
        if status is None:
            raise TaskNotFound()
        return WebhookAck(task_id=report.task_id, status=status.value, applied=applied)

    return await run_in_threadpool(apply)
