"""Engine and session factories. Created on first use, never at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.core.config import get_settings


def configure_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # API and worker are separate processes on one file: WAL lets readers run beside the
    # writer and busy_timeout makes writers queue instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(
    url: str, *, connect_timeout: int = 3, give_up_after_ms: int | None = None, pooled: bool = True
) -> Engine:
    """`give_up_after_ms` bounds a statement and unacknowledged traffic on PostgreSQL (for a
    server that is only a shortcut, such as a read replica, which may hang rather than refuse).
    `pooled=False` keeps no connection open between uses (for a process that forks).
    ``sqlalchemy.create_engine`` is looked up at each call: with tracing on, it is the
    instrumented one (app.core.tracing), which gives the engine its statement spans."""
    if url.startswith("sqlite"):
        engine = sqlalchemy.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 15},
            **({} if pooled else {"poolclass": NullPool}),
        )
        event.listen(engine, "connect", configure_sqlite)
        return engine
    pool: dict[str, object] = (
        {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10, "pool_timeout": 5}  # pre-ping: survive a restart
        if pooled
        else {"poolclass": NullPool}
    )
    connect_args = {"connect_timeout": connect_timeout, **_bounded(give_up_after_ms)}
    return sqlalchemy.create_engine(url, connect_args=connect_args, **pool)


def _bounded(ms: int | None) -> dict[str, object]:
    if ms is None:
        return {}
    return {
        "options": f"-c statement_timeout={ms}",  # the server gives up on a slow statement
        "tcp_user_timeout": ms,  # the client gives up on a server that stopped answering
        "keepalives": 1,
        "keepalives_idle": max(1, ms // 1000),
        "keepalives_interval": 1,
        "keepalives_count": 2,
    }


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    if settings.embedded:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for code outside a request (worker, the API's re-enqueueing); commits are explicit."""
    with get_sessionmaker()() as session:
        yield session
