"""Image tasks: upload, status (legacy and structured), listing, result download, delete."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from app import imaging
from app.api.deps import (
    CurrentUser,
    ReadingUser,
    SessionDep,
    SettingsDep,
    StorageDep,
    UploadingUser,
    UploadSlot,
    upload_limiter,
)
from app.api.errors import FileTooLarge, Refusal, Refused, TaskNotFound, TooManyRequests
from app.api.outcome_waiters import waiting_for
from app.api.uploads import UploadedFile, read_file_field
from app.core import replica, tracing
from app.core.config import Settings
from app.imaging.presets import OutputFormat, Preset, PresetError, choose_presets, output_count
from app.schemas import (
    ErrorResponse,
    IsReadyResponse,
    NewTaskResponse,
    TaskPublic,
    TasksPublic,
    is_ready,
    task_public,
)
from app.storage import Storage, StorageUnavailable, content_type_for, new_original_key, result_key, variants_prefix
from app.tasks import crud, outputs
from app.tasks.queueing import BrokerUnavailable, enqueue_processing
from app.tasks.records import Task, TaskStatus, User

log = logging.getLogger(__name__)
router = APIRouter(
    tags=["tasks"],
    responses={
        429: {"model": ErrorResponse, "description": "Too many requests (new sessions or uploads); see Retry-After."},
        503: {"model": ErrorResponse, "description": "A dependency is unavailable; see Retry-After."},
    },
)

TaskId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The task id returned by /api/newTask.")]
MAX_STATUS_WAIT_SECONDS = 30
# A result up to this size is read in one call and answered from memory. FileResponse hops to a
# thread for the open, for every 64 KiB read and for the close: measured on the 2-vCPU VM, a
# 100 KB result cost 3.3 ms of API CPU per download that way and 2.3-2.5 ms read at once
# (bench_peers downloads every image). Bigger ones (large presets) are streamed under the
# transport's flow control, so a slow reader holds at most this much of the API's memory.
WHOLE_RESULT_MAX_BYTES = 256 * 1024
_errors = {
    404: {"model": ErrorResponse, "description": "No such task for this user."},
}

# Display names only: control characters go, the length is bounded; never used as a path.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _display_name(name: str | None) -> str:
    return _UNPRINTABLE.sub("", name or "")[:255]


def _owned_task_on_primary(session: SessionDep, user: CurrentUser, task_id: int) -> Task:
    """The caller's task, read from the primary (for the routes that act on it); 404 otherwise."""
    task = crud.get_owned_task(session=session, owner=user, task_id=task_id)
    if task is None:
        raise TaskNotFound()
    return task


def _owned_task_for_status(session: Session, user: User, task_id: int) -> Task:
    """The caller's task for the status routes: a finished task may come from the read replica;
    a missing or unfinished one is read from the primary (app.core.replica says why). A finished
    task can still be deleted, so the primary confirms it is there (a probe, not the row): a
    task deleted a moment ago is never shown again from a replica that has not replayed it."""

    def final(task: Task | None) -> bool:
        return (
            task is not None
            and task.status.terminal
            and crud.owned_task_exists(session=session, owner=user, task_id=task_id)
        )

    task = replica.read(session, lambda s: crud.get_owned_task(session=s, owner=user, task_id=task_id), good=final)
    if task is None:
        raise TaskNotFound()
    return task


_UPLOAD_ERRORS = {
    imaging.EmptyImageError: (422, Refusal.EMPTY),
    imaging.CorruptImageError: (422, Refusal.CORRUPT),
    imaging.ImageTooLargeError: (422, Refusal.PIXELS),
    imaging.UnsupportedImageError: (415, Refusal.TYPE),
}


def _discard(storage: Storage, key: str) -> None:
    """Best effort on an error path: the error being answered matters more than this one."""
    try:
        storage.delete(key)
    except StorageUnavailable as exc:
        log.warning("could not remove %s: %s", key, exc)


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "title": "Body_new_task_api_newTask_post",
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "title": "File",
                        "type": "string",
                        "contentMediaType": "application/octet-stream",
                        "description": "The image: JPEG, PNG, WebP, GIF, BMP or TIFF.",
                    }
                },
            }
        }
    },
}


@router.post(
    "/api/newTask",
    response_model=NewTaskResponse,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        400: {"model": ErrorResponse, "description": "The multipart body could not be parsed."},
        413: {"model": ErrorResponse, "description": "The upload exceeds the size limit."},
        415: {"model": ErrorResponse, "description": "Not an image, or a format outside the allow-list."},
        422: {"description": "Empty, corrupt, too many pixels, or no `file` field."},
        429: {"model": ErrorResponse, "description": "Rate limit or unfinished-task cap reached."},
        408: {"model": ErrorResponse, "description": "The body arrived too slowly; the connection is closed."},
        503: {
            "model": ErrorResponse,
            "description": "Too many uploads in progress, or the queue, database or storage is unreachable;"
            " retry after Retry-After.",
        },
    },
)
async def new_task(
    request: Request,
    _slot: UploadSlot,
    user: UploadingUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> NewTaskResponse:
    """Upload an image (multipart field `file`); it is processed in the background. Poll
    /api/isReady/{task_id}, or wait for the outcome with `?wait=`."""
    # Cheap refusals first, before a byte of the body is read: the upload slot (503) and the
    # identity are dependencies, the rate limit and the pending cap come here (429); an oversized
    # Content-Length was refused by the middleware (413). Each gives its connection back.
    await run_in_threadpool(_admit_upload, user, session, settings)
    # Read in the event loop, into memory (the body is bounded in size and rate while it
    # streams), holding no database connection; then one hop to the thread pool for everything
    # that blocks, on a fresh connection.
    upload = await read_file_field(request, "file", max_bytes=settings.MAX_UPLOAD_BYTES, text_fields=("presets",))
    return await run_in_threadpool(_accept_upload, upload, user, session, storage, settings)


def _admit_upload(user: User, session: Session, settings: Settings) -> None:
    """The per-user limits, checked before the body is read. The pending cap is counted once,
    here: uploads of one user in flight together may pass it by as many as are in flight (an
    upload slot each), as two concurrent checks always could."""
    wait = upload_limiter().acquire(f"user:{user.id}")
    if wait:
        raise TooManyRequests("Upload rate limit reached; retry later.", wait, Refusal.RATE_LIMIT)
    try:
        unfinished = crud.count_unfinished_tasks(session=session, owner=user)
    finally:
        session.close()  # no connection held while the body arrives
    if unfinished >= settings.MAX_PENDING_TASKS_PER_USER:
        raise TooManyRequests(
            f"You already have {settings.MAX_PENDING_TASKS_PER_USER} unfinished tasks; wait for some to finish.",
            5,
            Refusal.PENDING_CAP,
        )


def _accept_upload(
    upload: UploadedFile, user: User, session: Session, storage: Storage, settings: Settings
) -> NewTaskResponse:
    data = upload.data
    if upload.too_large:
        raise FileTooLarge(settings.MAX_UPLOAD_BYTES)
    presets = _chosen_presets(upload.fields.get("presets", ""), settings)
    try:
        info = imaging.inspect(data, max_pixels=settings.output_spec.max_pixels)
    except imaging.ImageError as exc:
        status, refusal = _UPLOAD_ERRORS.get(type(exc), (422, Refusal.CORRUPT))
        raise Refused(status, str(exc), refusal) from exc

    source_key = new_original_key()
    # An unreachable store is a 503 (app.api.errors) with nothing stored (a write is atomic) and no row yet.
    storage.write(source_key, data, keep_cached=False)  # the API never reads an original again
    try:
        task = crud.create_task(
            session=session,
            owner=user,
            filename=_display_name(upload.filename),
            source_key=source_key,
            source_format=info.format,
            size=len(data),
            dimensions=(info.width, info.height),
            presets=outputs.stored_names(presets),
        )
    except Exception:
        _discard(storage, source_key)
        raise
    tracing.set_task_id(task.id)
    # Committed above, so the worker always finds the row it is sent.
    try:
        enqueue_processing(task.id)
    except BrokerUnavailable:
        # No row without a queued message: the upload is undone, and the client retries on the
        # 503 this becomes (app.api.errors).
        crud.delete_task(session=session, task=task)
        _discard(storage, source_key)
        raise
    return NewTaskResponse(task_id=task.id, message="Task created successfully")


def _chosen_presets(field: str, settings: Settings) -> tuple[Preset, ...]:
    """The upload's ``presets`` field (comma-separated names; none: the default presets).
    Unknown names and more outputs than MAX_OUTPUTS_PER_TASK are 422."""
    try:
        presets = choose_presets(settings.presets, outputs.parse_names(field))
    except PresetError as exc:
        raise Refused(422, f"{str(exc)[0].upper()}{str(exc)[1:]}.", Refusal.PRESETS) from exc
    count = output_count(presets)
    if count > settings.MAX_OUTPUTS_PER_TASK:
        raise Refused(
            422,
            f"These presets make {count} outputs (presets x formats); one upload may ask for at most"
            f" {settings.MAX_OUTPUTS_PER_TASK}.",
            Refusal.PRESETS,
        )
    return presets


StatusWait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_STATUS_WAIT_SECONDS,
        description=(
            "Long poll: wait up to this many seconds for the task to finish and answer as soon as it"
            " has (or with its current state when the time is up). 0, the default: answer at once."
        ),
    ),
]


async def _task_when_ready(
    request: Request, session: Session, user: User, task_id: int, wait: float, recheck: float
) -> Task:
    """The owned task, once it is terminal or ``wait`` seconds have passed. While waiting no
    database connection is held; the task is re-read when the webhook announces its outcome (this
    replica) and every ``recheck`` seconds (outcomes applied by other replicas), and a client that
    went away stops the wait."""
    if wait <= 0:
        return await run_in_threadpool(_owned_task_for_status, session, user, task_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with waiting_for(task_id) as waiter:  # before the first read: no outcome slips in between
        task = await run_in_threadpool(_owned_task_for_status_releasing_connection, session, user, task_id)
        while not task.status.terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await waiter.wait(min(remaining, recheck))
            if await request.is_disconnected():
                break
            task = await run_in_threadpool(_owned_task_for_status_releasing_connection, session, user, task_id)
    return task


def _owned_task_for_status_releasing_connection(session: Session, user: User, task_id: int) -> Task:
    """Reads the task in a fresh transaction and gives the connection back to the pool."""
    try:
        return _owned_task_for_status(session, user, task_id)
    finally:
        session.close()


@router.get("/api/isReady/{task_id}", response_model=IsReadyResponse, responses=_errors)
async def is_ready_status(
    task_id: TaskId,
    request: Request,
    user: ReadingUser,
    session: SessionDep,
    settings: SettingsDep,
    wait: StatusWait = 0,
) -> IsReadyResponse:
    """Legacy status shape: `metadata` is a JSON-encoded string. `?wait=N` waits for the outcome."""
    task = await _task_when_ready(request, session, user, task_id, wait, settings.STATUS_WAIT_RECHECK_SECONDS)
    return is_ready(task)


@router.get("/api/tasks", response_model=TasksPublic)
def list_tasks(
    request: Request,
    user: ReadingUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> TasksPublic:
    """The caller's tasks, newest first."""

    def page(s: Session) -> tuple[list[Task], tuple[int, int | None]]:
        return crud.list_owned_tasks(session=s, owner=user, limit=limit, offset=offset)

    def final(answer: tuple[list[Task], tuple[int, int | None]]) -> bool:
        # The replica's page stands when every row on it is finished (it cannot change any
        # more) and the user has the same tasks there as on the primary (same count and newest
        # id: none created or deleted since), checked with one index-only query.
        tasks, watermark = answer
        return all(t.status.terminal for t in tasks) and watermark == crud.task_watermark(session=session, owner=user)

    tasks, (total, _) = replica.read(session, page, good=final)
    root = request.scope.get("root_path", "")
    return TasksPublic(items=[task_public(t, root) for t in tasks], total=total, limit=limit, offset=offset)


@router.get("/api/tasks/{task_id}", response_model=TaskPublic, responses=_errors)
async def get_task(
    task_id: TaskId,
    request: Request,
    user: ReadingUser,
    session: SessionDep,
    settings: SettingsDep,
    wait: StatusWait = 0,
) -> TaskPublic:
    """One task. `?wait=N` waits up to N seconds for it to finish."""
    task = await _task_when_ready(request, session, user, task_id, wait, settings.STATUS_WAIT_RECHECK_SECONDS)
    return task_public(task, request.scope.get("root_path", ""))


@router.get(
    "/api/tasks/{task_id}/result",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The processed image (the first preset's JPEG)."},
        302: {"description": "S3 backend with signed URLs on: the image is at `Location`, for a short while."},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        409: {"model": ErrorResponse, "description": "The task has not completed."},
        **_errors,
    },
)
def get_result(
    task_id: TaskId, request: Request, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> Response:
    task = _completed_task(session, user, task_id)
    extension = PurePosixPath(task.result_key).suffix
    return _serve(request, storage, task.result_key, etag=f"{task.id}", filename=f"imgproc-{task.id}{extension}")


# What a browser that says nothing explicit gets last: every browser decodes JPEG.
_NEGOTIATED = (OutputFormat.AVIF, OutputFormat.WEBP, OutputFormat.JPEG)
_EXTENSIONS = {output.value: output for output in OutputFormat} | {"jpg": OutputFormat.JPEG}


@router.get(
    "/api/tasks/{task_id}/results/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {output.media_type: {} for output in OutputFormat},
            "description": "One variant: `{preset}.{ext}` names the format, `{preset}` alone lets `Accept`"
            " choose (AVIF, then WebP, then JPEG, among those made); `Vary: Accept`.",
        },
        302: {"description": "S3 backend with signed URLs on: the image is at `Location`, for a short while."},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        409: {"model": ErrorResponse, "description": "The task has not completed."},
        **_errors,
    },
)
def get_variant(
    task_id: TaskId,
    name: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,32}(\.(jpeg|jpg|webp|avif))?$")],
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    task = _completed_task(session, user, task_id)
    preset, _, extension = name.partition(".")
    made = {OutputFormat(v.format): v for v in task.variants if v.preset == preset}
    if not made:
        raise HTTPException(404, f"Task {task.id} has no variant {preset!r}.")
    negotiated = not extension
    if negotiated:
        accept = request.headers.get("accept", "")
        chosen = next(
            (o for o in _NEGOTIATED if o in made and (o is OutputFormat.JPEG or o.media_type in accept)),
            next(o for o in _NEGOTIATED if o in made),  # none the client named: the one there is
        )
    else:
        chosen = _EXTENSIONS[extension]
        if chosen not in made:
            raise HTTPException(404, f"Task {task.id} has no {chosen} of {preset!r}.")
    variant = made[chosen]
    headers = {"Vary": "Accept"} if negotiated else {}
    return _serve(
        request,
        storage,
        variant.key,
        etag=f"{task.id}-{preset}-{chosen}",
        filename=f"imgproc-{task.id}-{preset}.{chosen.value}",
        extra_headers=headers,
    )


def _completed_task(session: Session, user: User, task_id: int) -> Task:
    task = _owned_task_on_primary(session, user, task_id)  # another user's task: 404 before anything is signed
    if task.status is not TaskStatus.COMPLETED or not task.result_key:
        raise HTTPException(409, f"Task {task.id} is {task.status.value}; no result yet.")
    return task


def _serve(
    request: Request,
    storage: Storage,
    key: str,
    *,
    etag: str,
    filename: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """A stored result: 304 on a matching ETag, a 302 to a signed URL (S3), the bytes (small ones),
    the file, or a stream."""
    stored = storage.stat(key)
    if stored is None:
        raise TaskNotFound()
    media_type = content_type_for(key)
    etag = f'"{etag}-{stored.size}-{stored.version}"'
    # Results are private to their owner: browsers may cache them, shared caches may not.
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400", **(extra_headers or {})}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    url = storage.signed_url(key, filename=filename, cache_seconds=86400)
    if url is not None:
        # The redirect outlives its URL if cached: never stored. The store's answer carries
        # private caching bounded by the URL's lifetime (named in the signed URL).
        headers |= {"Cache-Control": "private, no-store"}
        return RedirectResponse(url, status_code=302, headers=headers)
    attachment = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if stored.size <= WHOLE_RESULT_MAX_BYTES:
        try:
            data = storage.read(key)
        except FileNotFoundError as exc:
            raise TaskNotFound() from exc
        return Response(data, media_type=media_type, headers=headers | attachment)
    path = storage.local_path(key)
    if path is not None:
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise TaskNotFound() from exc
        return FileResponse(path, media_type=media_type, headers=headers, filename=filename, stat_result=stat)
    try:
        chunks = storage.iter_bytes(key)
        first = next(chunks, b"")  # a missing object or an outage surfaces here, before the status line
    except FileNotFoundError as exc:
        raise TaskNotFound() from exc

    def body():  # type: ignore[no-untyped-def]
        yield first
        yield from chunks

    headers |= {"Content-Length": str(stored.size), **attachment}
    return StreamingResponse(body(), media_type=media_type, headers=headers)


@router.delete("/api/tasks/{task_id}", status_code=204, responses=_errors)
def delete_task(task_id: TaskId, user: CurrentUser, session: SessionDep, storage: StorageDep) -> Response:
    """Removes the task, its original and every result."""
    task = _owned_task_on_primary(session, user, task_id)
    storage.check()  # an outage is a 503 with the task kept, not a row gone and its objects left behind
    keys = [task.source_key, result_key(task.id), *storage.list_keys(variants_prefix(task.id))]
    crud.delete_task(session=session, task=task)
    for key in keys:
        _discard(storage, key)
    return Response(status_code=204)
