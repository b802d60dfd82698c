"""ORM models: anonymous users, their image tasks, and seen webhook deliveries."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self not in UNFINISHED


# A task in one of these still has a run to come; every other status is final.
UNFINISHED = (TaskStatus.PENDING, TaskStatus.PROCESSING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the cookie token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_owner_id_id", "owner_id", "id"),
        Index("ix_tasks_status_updated_at", "status", "updated_at"),
        # Ids are never reused (SQLite would otherwise hand a deleted newest id to the next task).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, name="task_status", values_callable=lambda e: [m.value for m in e]),
        default=TaskStatus.PENDING,
    )
    # Shown to the owner only; never used as a file name.
    filename: Mapped[str] = mapped_column(String(255), default="")
    source_key: Mapped[str] = mapped_column(String(255))
    source_format: Mapped[str] = mapped_column(String(16))
    original_size: Mapped[int] = mapped_column(BigInteger)
    # From the upload check (header), so a pending task can already show its dimensions.
    source_width: Mapped[int | None] = mapped_column(Integer, default=None)
    source_height: Mapped[int | None] = mapped_column(Integer, default=None)
    result_key: Mapped[str | None] = mapped_column(String(255), default=None)
    result_metadata: Mapped[str | None] = mapped_column(Text, default=None)  # JSON
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The presets asked for at upload, comma-separated, in the order given (None: a task from
    # before presets, made as the default configuration's presets).
    presets: Mapped[str | None] = mapped_column(String(1024), default=None)
    # Only the API's reads of a task show them, and those load them (crud.get_owned_task, crud.WITH_VARIANTS); "raise"
    # keeps the worker's claim and the requeue round's queries from paying one more SELECT each.
    variants: Mapped[list[Variant]] = relationship(lazy="raise", order_by="Variant.width.desc()", viewonly=True)
    # The worker (worker.heartbeat.WORKER_ID) whose run holds the task while it is processing:
    # when that worker's lease runs out (WorkerBeat), the task is handed back at once (app.tasks.requeue).
    claimed_by: Mapped[str | None] = mapped_column(String(255), default=None)


class WorkerBeat(Base):
    """A worker's lease on life, renewed every few seconds by its main process (worker.heartbeat):
    past ``alive_until`` without a renewal, the worker is dead and its runs with it."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    alive_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Variant(Base):
    """One stored output of a completed task: a preset in one format."""

    __tablename__ = "variants"

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    preset: Mapped[str] = mapped_column(String(32), primary_key=True)
    format: Mapped[str] = mapped_column(String(8), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    key: Mapped[str] = mapped_column(String(255))


class WebhookDelivery(Base):
    """Delivery ids already accepted, so a replayed request is refused."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
