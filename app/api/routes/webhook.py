"""The worker's outcome reports (signed; not routed by the Ingress)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app import crud
from app.api.deps import SessionDep, SettingsDep
from app.core.webhook_signing import SignatureError, verify
from app.models import TaskStatus
from app.schemas import ErrorResponse, OutcomeReport, WebhookAck
from app.storage import Storage

router = APIRouter(tags=["internal"])


@router.post(
    "/api/webhook/task-complete",
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
        keep = timedelta(seconds=2 * settings.WEBHOOK_TOLERANCE_SECONDS)
        if not crud.record_delivery(session=session, delivery_id=delivery.delivery_id, keep=keep):
            raise HTTPException(401, "Webhook rejected: delivery already received (replay).")
        task = crud.get_task(session=session, task_id=report.task_id)
        if task is None:
            raise HTTPException(404, "Task not found.")
        applied = crud.finish_task(
            session=session,
            task_id=task.id,
            status=TaskStatus(report.status),
            # The result location is derived from the id, whatever the report says.
            result_key=Storage.result_key(task.id) if report.status == "completed" else None,
            result_metadata=report.metadata.model_dump_json() if report.metadata else None,
            error=(report.error or "processing failed") if report.status == "failed" else None,
        )
        session.refresh(task)
        return WebhookAck(task_id=task.id, status=task.status.value, applied=applied)

    return await run_in_threadpool(apply)
