"""Request/response models; the shapes of the public contract live here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.tasks.records import Task, TaskStatus

Status = Literal["pending", "processing", "completed", "failed"]


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["File is not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF)."])


class Health(BaseModel):
    status: str = Field(examples=["healthy"])
    message: str = Field(examples=["Image processing service is running"])


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(examples=[{"database": "ok", "broker": "ok", "storage": "ok"}])


class NewTaskResponse(BaseModel):
    task_id: int = Field(examples=[42])
    message: str = Field(examples=["Task created successfully"])


class TaskMetadata(BaseModel):
    """Facts about a finished image. Sizes are bytes; dimensions are pixels."""

    model_config = ConfigDict(extra="ignore")

    original_size: int = Field(ge=0, examples=[2481023])
    processed_size: int | None = Field(default=None, ge=0, examples=[98112])
    original_width: int | None = Field(default=None, examples=[4000])
    original_height: int | None = Field(default=None, examples=[3000])
    width: int | None = Field(default=None, examples=[800])
    height: int | None = Field(default=None, examples=[600])
    source_format: str | None = Field(default=None, examples=["JPEG"])
    processing_ms: float | None = Field(default=None, examples=[41.7])


class IsReadyResponse(BaseModel):
    """The legacy status shape; `metadata` is a JSON-encoded TaskMetadata."""

    id: int
    status: Status
    result_path: str | None = Field(examples=["results/42.jpg"])
    metadata: str = Field(examples=['{"original_size": 2481023, "processed_size": 98112}'])
    error: str | None = None


class TaskPublic(BaseModel):
    id: int
    status: Status
    filename: str
    created_at: datetime
    updated_at: datetime
    error: str | None
    metadata: TaskMetadata
    result_path: str | None
    result_url: str | None = Field(examples=["/api/tasks/42/result"])


class TasksPublic(BaseModel):
    items: list[TaskPublic]
    total: int
    limit: int
    offset: int


class OutcomeReport(BaseModel):
    """What the worker reports to /api/webhook/task-complete."""

    model_config = ConfigDict(extra="forbid")

    task_id: int = Field(ge=1)
    status: Literal["completed", "failed"]
    # Informational only: the API derives the location from the id and never trusts this. Kept
    # because reports are validated strictly and older workers (or their queued retries) send it.
    result_path: str | None = None
    metadata: TaskMetadata | None = None
    error: str | None = Field(default=None, max_length=2000)


class WebhookAck(BaseModel):
    task_id: int
    status: Status
    applied: bool = Field(description="False when the task had already finished (a duplicate report).")


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def task_metadata(task: Task) -> TaskMetadata:
    if task.result_metadata:
        stored = json.loads(task.result_metadata)
        return TaskMetadata.model_validate({**stored, "original_size": task.original_size})
    return TaskMetadata(
        original_size=task.original_size,
        source_format=task.source_format,
        original_width=task.source_width,
        original_height=task.source_height,
    )


def result_url(task: Task, root_path: str = "") -> str | None:
    return f"{root_path}/api/tasks/{task.id}/result" if task.status is TaskStatus.COMPLETED else None


def task_public(task: Task, root_path: str = "") -> TaskPublic:
    return TaskPublic(
        id=task.id,
        status=task.status.value,
        filename=task.filename,
        created_at=_aware(task.created_at),
        updated_at=_aware(task.updated_at),
        error=task.error,
        metadata=task_metadata(task),
        result_path=task.result_key if task.status is TaskStatus.COMPLETED else None,
        result_url=result_url(task, root_path),
    )


def is_ready(task: Task) -> IsReadyResponse:
    metadata = task_metadata(task).model_dump()
    return IsReadyResponse(
        id=task.id,
        status=task.status.value,
        result_path=task.result_key if task.status is TaskStatus.COMPLETED else None,
        metadata=json.dumps(metadata),
        error=task.error,
    )
