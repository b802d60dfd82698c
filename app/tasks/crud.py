"""Queries over the models. Every task lookup that a client can trigger is by owner."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload, selectinload

from app.tasks.records import UNFINISHED, Task, TaskStatus, User, Variant, WebhookDelivery, WorkerBeat, utcnow


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_user_by_token_hash(*, session: Session, token_hash: str) -> User | None:
    return session.scalar(select(User).where(User.token_hash == token_hash))


def create_user(*, session: Session) -> tuple[User, str]:
    """A new anonymous user and the cookie token (returned once, stored only hashed)."""
    token = secrets.token_urlsafe(32)  # 256 bits
    user = User(token_hash=hash_token(token))
    session.add(user)
    session.commit()
    return user, token


def create_task(
    *,
    session: Session,
    owner: User,
    filename: str,
    source_key: str,
    source_format: str,
    size: int,
    dimensions: tuple[int, int] | None = None,
    presets: str | None = None,
) -> Task:
    width, height = dimensions or (None, None)
    task = Task(
        presets=presets,
        owner_id=owner.id,
        filename=filename,
        source_key=source_key,
        source_format=source_format,
        original_size=size,
        source_width=width,
        source_height=height,
        enqueued_at=utcnow(),
    )
    session.add(task)
    session.commit()
    return task


# What a read of a page of tasks shows: the tasks with their variants (one more SELECT).
WITH_VARIANTS = selectinload(Task.variants)


def get_owned_task(*, session: Session, owner: User, task_id: int) -> Task | None:
    # One task: its variants joined into the same query (one round trip, and one span when traced),
    # where a page of tasks loads them with a second query (WITH_VARIANTS), as a join would repeat rows.
    query = select(Task).where(Task.id == task_id, Task.owner_id == owner.id).options(joinedload(Task.variants))
    return session.scalars(query).unique().one_or_none()


def owned_task_exists(*, session: Session, owner: User, task_id: int) -> bool:
    """Whether the user still has the task (one primary-key probe, no row loaded)."""
    query = select(Task.id).where(Task.id == task_id, Task.owner_id == owner.id)
    return session.scalar(query) is not None


def list_owned_tasks(
    *, session: Session, owner: User, limit: int, offset: int
) -> tuple[list[Task], tuple[int, int | None]]:
    """A page of the user's tasks, newest first, and their task_watermark (the total is its count)."""
    watermark = task_watermark(session=session, owner=owner)
    tasks = session.scalars(
        select(Task)
        .where(Task.owner_id == owner.id)
        .order_by(Task.id.desc())
        .limit(limit)
        .offset(offset)
        .options(WITH_VARIANTS)
    ).all()
    return list(tasks), watermark


def task_watermark(*, session: Session, owner: User) -> tuple[int, int | None]:
    """How many tasks the user has and the newest id: changes with every creation and deletion."""
    count, newest = session.execute(
        select(func.count(), func.max(Task.id)).select_from(Task).where(Task.owner_id == owner.id)
    ).one()
    return count, newest


def count_unfinished_tasks(*, session: Session, owner: User) -> int:
    query = select(func.count()).select_from(Task).where(Task.owner_id == owner.id, Task.status.in_(UNFINISHED))
    return session.scalar(query) or 0


class Claim(NamedTuple):
    source_key: str
    presets: str | None  # Task.presets
    enqueued_at: datetime | None = None  # when its message was last sent (the queue wait starts)


def start_processing(*, session: Session, task_id: int, max_attempts: int, worker: str | None = None) -> Claim | None:
    """Moves a task that is not finished (or gone) to processing, held by ``worker``, in one
    statement, and returns what the run needs. None for a finished or deleted task (a duplicate
    delivery), and for one already tried ``max_attempts`` times (still unfinished: see
    :func:`task_status`)."""
    row = session.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.status.in_(UNFINISHED),
            Task.attempts < max_attempts,
        )
        .values(status=TaskStatus.PROCESSING, attempts=Task.attempts + 1, updated_at=utcnow(), claimed_by=worker)
        .returning(Task.source_key, Task.presets, Task.enqueued_at)
    ).one_or_none()
    session.commit()
    return None if row is None else Claim(*row)


def release_attempt(*, session: Session, task_id: int) -> None:
    """Gives back the attempt a run claimed when it stops for an outage of a dependency (the
    store unreachable): that run did not die with its worker, and must not count towards
    ``max_attempts``. The task stays `processing` until its retry claims it again."""
    session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.PROCESSING, Task.attempts > 0)
        .values(attempts=Task.attempts - 1, updated_at=utcnow())
    )
    session.commit()


def finish_task(
    *,
    session: Session,
    task_id: int,
    status: TaskStatus,
    result_key: str | None,
    result_metadata: str | None,
    error: str | None,
    commit: bool = True,
) -> bool:
    """Records a terminal outcome once. A late or repeated report of a finished task is a no-op."""
    result = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(UNFINISHED))
        .values(
            status=status,
            result_key=result_key,
            result_metadata=result_metadata,
            error=error,
            updated_at=utcnow(),
        )
    )
    if commit:
        session.commit()
    return result.rowcount == 1


def task_presets(*, session: Session, task_id: int) -> str | None:
    return session.scalar(select(Task.presets).where(Task.id == task_id))


def task_status(*, session: Session, task_id: int) -> TaskStatus | None:
    return session.scalar(select(Task.status).where(Task.id == task_id))


# The two databases the service runs on; both spell "insert unless present" the same way.
_INSERT_FOR_DIALECT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def record_delivery(*, session: Session, delivery_id: str) -> bool:
    """Remembers a webhook delivery id in the current transaction; False if it was seen
    before (a replay). One statement: no savepoint round trips on every report."""
    insert = _INSERT_FOR_DIALECT[session.get_bind().dialect.name]
    recorded = session.scalar(
        insert(WebhookDelivery)
        .values(id=delivery_id, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.id])
        .returning(WebhookDelivery.id)
    )
    return recorded is not None


def prune_deliveries(*, session: Session, older_than: datetime) -> None:
    """Delivery ids only matter within the signature's time window."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.received_at < older_than))
    session.commit()


def stale_unfinished_tasks(
    *, session: Session, older_than: datetime, pending_older_than: datetime, limit: int = 500
) -> list[Task]:
    """Tasks that should have finished by now: their message may have been lost. Processing
    ones sent before ``older_than``, pending ones (never claimed) sent before ``pending_older_than``.

    Locked until the transaction ends (PostgreSQL; SQLite has one writer anyway), and rows
    another transaction holds are skipped: every API replica re-enqueues (app.tasks.requeue), and without the
    lock two of them could re-send the same task before either recorded it."""
    sent_at = func.coalesce(Task.enqueued_at, Task.created_at)
    query = (
        select(Task)
        .where(
            or_(
                and_(Task.status == TaskStatus.PROCESSING, sent_at < older_than),
                and_(Task.status == TaskStatus.PENDING, sent_at < pending_older_than),
            )
        )
        .order_by(Task.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def record_beat(*, session: Session, worker: str, alive_until: datetime) -> None:
    """The worker's lease, renewed (one row per worker, only that worker writes it)."""
    renewed = update(WorkerBeat).where(WorkerBeat.name == worker).values(alive_until=alive_until)
    if not session.execute(renewed).rowcount:
        session.add(WorkerBeat(name=worker, alive_until=alive_until))
    session.commit()


def forget_worker(*, session: Session, worker: str) -> None:
    """The worker stopped cleanly: everything it ran is finished or back in the queue."""
    session.execute(delete(WorkerBeat).where(WorkerBeat.name == worker))
    session.commit()


def tasks_of_dead_workers(*, session: Session, now: datetime, limit: int = 500) -> list[Task]:
    """Processing tasks held by a worker whose lease ran out: the run died with it. A worker
    that stopped cleanly has no row (:func:`forget_worker`); one that never wrote a heartbeat is
    left to the age rule (:func:`stale_unfinished_tasks`). Locked like that one."""
    query = (
        select(Task)
        .join(WorkerBeat, WorkerBeat.name == Task.claimed_by)
        .where(Task.status == TaskStatus.PROCESSING, WorkerBeat.alive_until < now)
        .order_by(Task.id)
        .limit(limit)
        .with_for_update(of=Task, skip_locked=True)
    )
    return list(session.scalars(query))


def hand_back(*, session: Session, task_ids: list[int]) -> None:
    """Tasks re-sent because their worker died: pending again, held by nobody. Only those still
    processing: one whose report landed since it was looked up (SQLite locks no rows) stays
    finished."""
    if task_ids:
        session.execute(
            update(Task)
            .where(Task.id.in_(task_ids), Task.status == TaskStatus.PROCESSING)
            .values(status=TaskStatus.PENDING, claimed_by=None, enqueued_at=utcnow())
        )
        session.commit()


def prune_workers(*, session: Session, now: datetime) -> None:
    """Rows of dead workers (killed, so they never said goodbye) that hold no task any more."""
    holding = select(Task.claimed_by).where(Task.status == TaskStatus.PROCESSING, Task.claimed_by.is_not(None))
    session.execute(delete(WorkerBeat).where(WorkerBeat.alive_until < now, WorkerBeat.name.not_in(holding)))
    session.commit()


def touch_enqueued(*, session: Session, task_ids: list[int]) -> None:
    if task_ids:
        session.execute(update(Task).where(Task.id.in_(task_ids)).values(enqueued_at=utcnow()))
        session.commit()


def record_variants(*, session: Session, variants: list[Variant]) -> None:
    """The outputs of a completed task, in the transaction whose :func:`finish_task` applied. That
    happens once per task (a terminal status is never left; a second report of the task waits for
    the first one's row lock and then matches nothing), so there are none to replace: a re-run's
    report is not applied, its files overwrite the same keys."""
    session.add_all(variants)


def variants_of(*, session: Session, task_id: int) -> list[Variant]:
    return list(session.scalars(select(Variant).where(Variant.task_id == task_id).order_by(Variant.width.desc())))


def delete_task(*, session: Session, task: Task) -> None:
    session.delete(task)
    session.commit()
