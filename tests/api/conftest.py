from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from app.tasks.records import Task


@dataclass
class RecordingQueue:
    """Stands in for the broker in API tests and checks the commit-before-enqueue rule:
    at enqueue time, the row must already be visible to a separate connection."""

    database_url: str
    sent: list[int] = field(default_factory=list)
    fail: bool = False

    def __call__(self, task_id: int) -> None:
        from app.tasks.queueing import BrokerUnavailable

        engine = create_engine(self.database_url)
        with engine.connect() as other_connection:
            visible = other_connection.scalar(select(Task.id).where(Task.id == task_id))
        engine.dispose()
        assert visible == task_id, "task enqueued before its row was committed"
        if self.fail:
            raise BrokerUnavailable("broker down (test)")
        self.sent.append(task_id)


@pytest.fixture
def queue(embedded, monkeypatch: pytest.MonkeyPatch) -> RecordingQueue:
    from app.api.routes import tasks
    from app.core.config import get_settings

    recorder = RecordingQueue(get_settings().database_url)
    monkeypatch.setattr(tasks, "enqueue_processing", recorder)
    return recorder


@pytest.fixture
def client(queue) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def make_client(queue) -> Iterator:
    """Several independent clients (cookie jars) on one app."""
    from app.main import create_app

    app = create_app()
    clients: list[TestClient] = []

    def new() -> TestClient:
        test_client = TestClient(app, base_url="http://testserver")
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield new
    for test_client in clients:
        test_client.__exit__(None, None, None)
