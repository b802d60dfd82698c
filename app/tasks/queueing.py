"""Sending work to the worker by task name (the API never imports worker code)."""

from __future__ import annotations

from kombu.exceptions import ChannelError, OperationalError

from app.core.celery_app import PROCESS_IMAGE, get_celery_app

# Fail fast when the broker is down: the client gets a 503 instead of a hung request.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.5}


class BrokerUnavailable(Exception):
    pass


def enqueue_processing(task_id: int) -> None:
    try:
        get_celery_app().send_task(PROCESS_IMAGE, args=[task_id], retry=True, retry_policy=_PUBLISH_RETRY)
    except (OperationalError, OSError, ConnectionError) as exc:
        raise BrokerUnavailable(str(exc)) from exc


def waiting_messages() -> int:
    """Messages waiting in the processing queue (Redis LLEN; a row count on SQLite)."""
    app = get_celery_app()
    try:
        with app.connection_for_write() as connection:
            declared = connection.default_channel.queue_declare(app.conf.task_default_queue, passive=True)
    except ChannelError:
        # 404 NOT_FOUND: Redis keeps no key for an empty list, so an empty (or wiped) queue
        # does not exist. Nothing waits.
        return 0
    except (OperationalError, OSError, ConnectionError) as exc:
        raise BrokerUnavailable(str(exc)) from exc
    return declared.message_count


def broker_reachable(timeout: float = 2.0) -> bool:
    try:
        with get_celery_app().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # any failure means "not ready"; the probe only reports it
        return False
