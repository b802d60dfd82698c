"""Request/response models; the shapes of the public contract live here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.imaging.presets import Fit, OutputFormat
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


class PresetPublic(BaseModel):
    name: str = Field(examples=["card"])
    width: int = Field(examples=[400])
    height: int = Field(examples=[300])
    fit: Fit
    formats: list[OutputFormat]
    default: bool
    animated: bool


class PresetsPublic(BaseModel):
    items: list[PresetPublic]
    max_outputs_per_task: int = Field(description="Presets x formats one upload may ask for.")


class VariantPublic(BaseModel):
    preset: str = Field(examples=["card"])
    format: OutputFormat
    width: int = Field(examples=[400])
    height: int = Field(examples=[300])
    size: int = Field(description="Bytes.", examples=[21873])
    url: str = Field(examples=["/api/tasks/42/results/card.webp"])
    main: bool = Field(description="The main result: what result_url serves and the metadata describes.")


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
    variants: list[VariantPublic] = Field(default_factory=list, description="Largest first.")
    notes: list[str] = Field(
        default_factory=list,
        description="Where the outputs are less than asked for.",
        examples=[["'anim' is the first frame only: the animation has 400 frames, more than 300."]],
    )
    srcset: dict[OutputFormat, str] = Field(
        default_factory=dict,
        description="Per format, a ready `srcset` of the variants with the main result's aspect ratio.",
        examples=[{"webp": "/api/tasks/42/results/card.webp 400w, /api/tasks/42/results/web.webp 800w"}],
    )


class TasksPublic(BaseModel):
    items: list[TaskPublic]
    total: int
    limit: int
    offset: int


class VariantReport(BaseModel):
    """One output the worker stored; the API derives its key from the task and these names."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(max_length=32)
    format: OutputFormat
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    size: int = Field(ge=0)


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
    # Empty from workers older than presets: their one result is the legacy results/<id>.jpg.
    variants: list[VariantReport] = Field(default_factory=list, max_length=64)
    # Where the outputs are less than asked for (an animation kept as its first frame, and why).
    notes: list[str] = Field(default_factory=list, max_length=16)


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


def variant_url(task_id: int, preset: str, output: OutputFormat | str, root_path: str = "") -> str:
    return f"{root_path}/api/tasks/{task_id}/results/{preset}.{OutputFormat(output).value}"


def _variants(task: Task, root_path: str) -> tuple[list[VariantPublic], dict[OutputFormat, str]]:
    if task.status is not TaskStatus.COMPLETED:
        return [], {}
    variants = [
        VariantPublic(
            preset=v.preset,
            format=OutputFormat(v.format),
            width=v.width,
            height=v.height,
            size=v.size,
            url=variant_url(task.id, v.preset, v.format, root_path),
            main=v.key == task.result_key,
        )
        for v in task.variants
    ]
    # One srcset is one picture at several widths: the variants shaped like the main result
    # (a `cover` thumbnail of another shape is a different crop, left out).
    main = next((v for v in task.variants if v.key == task.result_key), None)
    main_id = (main.preset, OutputFormat(main.format)) if main else None
    # A width once per srcset (HTML forbids two candidates with one width descriptor): a source
    # smaller than several boxes makes equal variants; the main result's is kept, else the smallest.
    srcset: dict[OutputFormat, dict[int, VariantPublic]] = {}
    for v in sorted(variants, key=lambda v: ((v.preset, v.format) != main_id, v.size)):
        if main is None or abs(v.width * main.height - v.height * main.width) <= max(v.width, v.height):
            srcset.setdefault(v.format, {}).setdefault(v.width, v)
    return variants, {
        output: ", ".join(f"{v.url} {width}w" for width, v in sorted(by_width.items()))
        for output, by_width in srcset.items()
    }


def task_public(task: Task, root_path: str = "") -> TaskPublic:
    variants, srcset = _variants(task, root_path)
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
        variants=variants,
        notes=json.loads(task.result_metadata).get("notes", []) if task.result_metadata else [],
        srcset=srcset,
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
