from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.db import get_engine
from app.schemas import Health, Readiness
from app.storage import StorageUnavailable, get_storage
from app.tasks.queueing import broker_reachable

router = APIRouter(tags=["health"])


@router.get("/", response_model=Health)
def health() -> Health:
    return Health(status="healthy", message="Image processing service is running")


@router.get("/livez", response_model=Health)
def livez() -> Health:
    """The process is up and serving; says nothing about its dependencies."""
    return Health(status="healthy", message="alive")


def _database_ok() -> bool:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _storage_ok() -> bool:
    try:
        get_storage().check()
        return True
    except StorageUnavailable:
        return False


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz() -> JSONResponse:
    """Ready when the database, the broker and the file storage all answer; 503 otherwise."""
    checks = {
        "database": "ok" if await run_in_threadpool(_database_ok) else "unreachable",
        "broker": "ok" if await run_in_threadpool(broker_reachable) else "unreachable",
        "storage": "ok" if await run_in_threadpool(_storage_ok) else "unreachable",
    }
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
