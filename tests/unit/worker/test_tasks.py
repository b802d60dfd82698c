from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.schemas import OutcomeReport
from app.storage import new_original_key, result_key
from app.storage.filesystem import FileSystemStorage
from app.tasks import crud
from app.tasks.records import Task, TaskStatus, User
from tests.support import images
from tests.support.metrics import Counts, value


@pytest.fixture
def storage(embedded) -> FileSystemStorage:
    from app.core.config import get_settings

    return FileSystemStorage(get_settings().storage_dir)


def make_task(storage: FileSystemStorage, data: bytes) -> int:
    key = new_original_key()
    storage.write(key, data)
    with session_scope() as session:
        user = User(token_hash="0" * 64)
        session.add(user)
        session.commit()
        task = crud.create_task(
            session=session, owner=user, filename="x", source_key=key, source_format="JPEG", size=len(data)
        )
        return task.id


def test_pipeline_writes_the_result_under_the_task_id_and_reports_metadata(storage):
    from worker.tasks import run_pipeline

    data = images.jpeg(1600, 1200)
    outcome = run_pipeline(7, data, None, storage)
    assert outcome.status == "completed" and outcome.result_path == "results/7.jpg"
    result = storage.read("results/7.jpg")
    assert outcome.metadata.processed_size == len(result)
    assert (outcome.metadata.width, outcome.metadata.height) == (800, 600)
    assert outcome.metadata.original_size == len(data) and outcome.metadata.processing_ms > 0

    again = run_pipeline(7, data, None, storage)  # a re-run overwrites, never adds a file
    assert again.status == "completed"
    assert [p.name for p in (storage.root / "results").iterdir()] == ["7.jpg"]


def test_pipeline_turns_an_image_error_into_a_failed_outcome(storage):
    from worker.tasks import run_pipeline

    outcome = run_pipeline(8, images.jpeg()[:300], None, storage)
    assert outcome.status == "failed" and outcome.error
    assert not storage.exists("results/8.jpg")


def test_a_finished_task_is_not_processed_again(storage, monkeypatch):
    from worker import reporting, tasks

    task_id = make_task(storage, images.jpeg(64, 48))
    with session_scope() as session:
        crud.finish_task(
            session=session,
            task_id=task_id,
            status=TaskStatus.FAILED,
            result_key=None,
            result_metadata=None,
            error="earlier failure",
        )
    reported: list[OutcomeReport] = []
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: reported.append(outcome))
    assert tasks.process_image(task_id) == "already finished or deleted"
    assert tasks.process_image(task_id + 1000) == "already finished or deleted"  # deleted by its owner
    reporting.flush_reports()
    assert reported == []


def test_processing_marks_the_task_and_reports_the_outcome(storage, monkeypatch):
    from worker import reporting, tasks

    task_id = make_task(storage, images.jpeg(1000, 500))
    reported: list[OutcomeReport] = []
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: reported.append(outcome))
    assert tasks.process_image(task_id) == "completed"
    reporting.flush_reports()
    with session_scope() as session:
        task = session.get(Task, task_id)
        assert task.status is TaskStatus.PROCESSING and task.attempts == 1  # terminal via the webhook only
    assert reported[0].task_id == task_id and reported[0].metadata.width == 800


def test_an_undelivered_report_becomes_a_queued_retry(storage, monkeypatch, configure):
    from worker import reporting

    configure(API_INTERNAL_URL="http://127.0.0.1:1")  # nothing listens there
    sent: list[tuple] = []
    monkeypatch.setattr(reporting.celery_app, "send_task", lambda name, args: sent.append((name, args)))
    outcome = OutcomeReport(task_id=3, status="failed", error="x")
    reporting.report(outcome, storage)
    assert sent == [("imgproc.report_outcome", [outcome.model_dump_json()])]
    assert json.loads(sent[0][1][0])["task_id"] == 3


def test_a_storage_failure_ends_the_task_failed_with_a_reason(storage, monkeypatch):
    from worker import reporting, tasks

    task_id = make_task(storage, images.jpeg(64, 48))
    results = storage.root / "results"
    assert not results.exists()
    results.write_bytes(b"")  # a file where the results directory belongs: every write fails
    reported: list[OutcomeReport] = []
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: reported.append(outcome))
    assert tasks.process_image(task_id) == "failed"
    reporting.flush_reports()
    assert [(r.task_id, r.status) for r in reported] == [(task_id, "failed")]
    assert "could not finish" in reported[0].error


def test_a_task_whose_attempts_all_died_is_failed_not_run_again(storage, monkeypatch, configure):
    from worker import reporting, tasks

    configure(MAX_TASK_ATTEMPTS=3)
    task_id = make_task(storage, images.jpeg(64, 48))
    with session_scope() as session:
        # Three deliveries claimed it and died with their worker (OOM, hard time limit).
        session.execute(update(Task).where(Task.id == task_id).values(status=TaskStatus.PROCESSING, attempts=3))
        session.commit()
    ran: list[bytes] = []
    monkeypatch.setattr(tasks, "run_pipeline", lambda _id, source, _storage: ran.append(source))
    reported: list[OutcomeReport] = []
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: reported.append(outcome))
    assert tasks.process_image(task_id) == "failed"
    reporting.flush_reports()
    assert ran == []
    assert [(r.task_id, r.status) for r in reported] == [(task_id, "failed")]
    assert "attempted 3 times" in reported[0].error


@pytest.mark.parametrize("path", ["report", "queued retry"])
def test_the_result_of_a_task_deleted_while_it_ran_is_removed(storage, monkeypatch, path):
    from worker import reporting, tasks
    from worker.reporting import TaskGone

    storage.write(result_key(5), b"jpeg")

    def task_gone(_settings, _body):  # the API answers 404: its owner deleted it meanwhile
        raise TaskGone("Task not found.")

    monkeypatch.setattr(reporting, "deliver", task_gone)
    queued: list = []
    monkeypatch.setattr(reporting.celery_app, "send_task", lambda *args, **kwargs: queued.append(args))
    outcome = OutcomeReport(task_id=5, status="completed", result_path="results/5.jpg")
    if path == "report":
        reporting.report(outcome, storage)
    else:
        assert tasks.report_outcome.run(outcome.model_dump_json()) == "gone"
    assert not storage.exists(result_key(5))
    assert queued == []


def test_an_unreachable_object_store_retries_the_run_instead_of_failing_it(storage, monkeypatch, unreachable_s3):
    """The store is down (connection refused): no outcome, the task stays processing with its
    attempt given back (an outage is not a run that died), and the run is retried later."""
    from celery.exceptions import Retry

    from app.storage import StorageUnavailable
    from worker import reporting, tasks

    task_id = make_task(storage, images.jpeg(64, 48))
    unreachable_s3(MAX_TASK_ATTEMPTS=2)
    reported: list[OutcomeReport] = []
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: reported.append(outcome))
    for _ in range(4):  # more outages than MAX_TASK_ATTEMPTS: still never failed
        with pytest.raises((Retry, StorageUnavailable)):  # called directly, Celery re-raises the cause
            tasks.process_image(task_id)
    reporting.flush_reports()
    assert reported == []
    with session_scope() as session:
        task = session.get(Task, task_id)
        assert task.status is TaskStatus.PROCESSING and task.attempts == 0


def test_a_retry_schedules_itself_with_back_off(storage, monkeypatch):
    from app.storage import StorageUnavailable
    from worker import tasks

    task_id = make_task(storage, images.jpeg(64, 48))

    def down(*_args):
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(tasks, "outcome_for", down)
    scheduled: list[dict] = []

    def fake_retry(**kwargs):
        scheduled.append(kwargs)
        return RuntimeError("retry scheduled")

    monkeypatch.setattr(tasks.process_image, "retry", fake_retry)
    with pytest.raises(RuntimeError, match="retry scheduled"):
        tasks.process_image(task_id)
    assert scheduled[0]["countdown"] == 1 and scheduled[0]["max_retries"] is None
    assert isinstance(scheduled[0]["exc"], StorageUnavailable)


# --- metrics (worker/metrics.py) -------------------------------------------------------------

STAGES = ("read", "decode", "resize", "encode", "store")


def tasks_counted(outcome: str, reason: str) -> tuple[str, dict[str, str]]:
    return ("imgproc_worker_tasks_total", {"outcome": outcome, "reason": reason})


def test_a_completed_run_counts_its_outcome_queue_wait_and_every_stage(storage, monkeypatch):
    from worker import reporting, tasks

    task_id = make_task(storage, images.jpeg(1000, 500))
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: None)
    counts = Counts(
        tasks_counted("completed", ""),
        tasks_counted("skipped", "already_finished"),
        ("imgproc_worker_queue_wait_seconds_count", {}),
        *(("imgproc_worker_stage_duration_seconds_count", {"stage": stage}) for stage in STAGES),
    )
    assert tasks.process_image(task_id) == "completed"
    assert tasks.process_image(task_id + 1000) == "already finished or deleted"
    reporting.flush_reports()
    assert list(counts.changes().values()) == [1, 1, 1, 1, 1, 1, 1, 1]


def _missing_source(storage: FileSystemStorage, task_id: int) -> None:
    with session_scope() as session:
        key = session.get(Task, task_id).source_key
    storage.delete(key)


def _results_unwritable(storage: FileSystemStorage, _task_id: int) -> None:
    (storage.root / "results").write_bytes(b"")  # a file where the directory belongs


@pytest.mark.parametrize(
    ("data", "spoil", "reason"),
    [
        (images.jpeg()[:300], None, "image_corrupt"),
        (b"hello, this is text", None, "image_unsupported"),
        (images.jpeg(64, 48), _missing_source, "source_missing"),
        (images.jpeg(64, 48), _results_unwritable, "worker_error"),
    ],
    ids=["corrupt", "not-an-image", "source-missing", "store-failing"],
)
def test_a_failed_run_is_counted_under_its_reason(storage, monkeypatch, data, spoil, reason):
    from worker import reporting, tasks

    task_id = make_task(storage, data)
    if spoil is not None:
        spoil(storage, task_id)
    monkeypatch.setattr(reporting, "report", lambda outcome, _storage: None)
    counts = Counts(tasks_counted("failed", reason), tasks_counted("completed", ""))
    assert tasks.process_image(task_id) == "failed"
    reporting.flush_reports()
    assert list(counts.changes().values()) == [1, 0]


def test_retries_are_counted_by_their_cause(embedded):
    from celery.signals import task_retry
    from sqlalchemy.exc import OperationalError

    from app.storage import StorageUnavailable
    from worker import tasks

    counts = Counts(tasks_counted("retried", "storage_unavailable"), tasks_counted("retried", "database_unavailable"))
    task_retry.send(sender=tasks.process_image, reason=StorageUnavailable("down"))
    task_retry.send(sender=tasks.process_image, reason=OperationalError("SELECT 1", {}, Exception("gone")))
    task_retry.send(sender=tasks.report_outcome, reason=StorageUnavailable("not an image task"))
    assert list(counts.changes().values()) == [1, 1]


def test_report_deliveries_are_counted_by_result_and_the_pending_ones_return_to_zero(storage, monkeypatch, configure):
    from worker import reporting

    configure(API_INTERNAL_URL="http://127.0.0.1:1")  # nothing listens there
    results = ("delivered", "queued", "lost")
    counts = Counts(*(("imgproc_worker_report_deliveries_total", {"attempt": "first", "result": r}) for r in results))
    pending = value("imgproc_worker_reports_pending")
    sent: list[str] = []
    monkeypatch.setattr(reporting.celery_app, "send_task", lambda name, args: sent.append(name))
    reporting.report_in_background(OutcomeReport(task_id=3, status="failed", error="x"), storage)
    reporting.flush_reports()

    def broker_down(name: str, args: list) -> None:
        raise OSError("broker down too")

    monkeypatch.setattr(reporting.celery_app, "send_task", broker_down)
    reporting.report_in_background(OutcomeReport(task_id=4, status="failed", error="x"), storage)
    reporting.flush_reports()
    monkeypatch.setattr(reporting, "deliver", lambda _settings, _body: {})
    reporting.report_in_background(OutcomeReport(task_id=5, status="failed", error="x"), storage)
    reporting.flush_reports()
    assert sent == ["imgproc.report_outcome"]
    assert list(counts.changes().values()) == [1, 1, 1]
    assert value("imgproc_worker_reports_pending") == pending


def test_report_retries_waiting_are_read_from_the_workers_own_bookkeeping(monkeypatch):
    from celery.worker import state

    from worker.metrics import ReportRetriesWaiting

    class Request:
        def __init__(self, name: str) -> None:
            self.name = name

    waiting, running, image = Request("imgproc.report_outcome"), Request("imgproc.report_outcome"), Request("x")
    monkeypatch.setattr(state, "requests", {"a": waiting, "b": running, "c": image})
    monkeypatch.setattr(state, "active_requests", {running})
    [family] = ReportRetriesWaiting().collect()
    assert family.name == "imgproc_worker_report_retries_waiting"
    assert [sample.value for sample in family.samples] == [1]
