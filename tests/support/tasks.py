"""Helpers the tests share to make, upload and complete tasks."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import update

from app import crud
from app.core.db import session_scope
from app.models import Task, TaskStatus, User, utcnow


def make_tasks(count: int, *, age_seconds: int, status: TaskStatus = TaskStatus.PENDING) -> list[int]:
    with session_scope() as session:
        user = User(token_hash=secrets.token_hex(32))
        session.add(user)
        session.commit()
        ids = []
        for _ in range(count):
            task = crud.create_task(
                session=session, owner=user, filename="", source_key="originals/x", source_format="PNG", size=1
            )
            ids.append(task.id)
        session.execute(
            update(Task)
            .where(Task.id.in_(ids))
            .values(status=status, enqueued_at=utcnow() - timedelta(seconds=age_seconds))
        )
        session.commit()
    return ids
