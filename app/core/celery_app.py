"""The one Celery app. The API imports it only to send tasks by name; the worker adds
the task modules through `include`, so API processes never import worker code."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from app.core import embedded_broker
from app.core.config import Settings, get_settings
from app.core.redis_client import celery_broker, uses_redis

PROCESS_IMAGE = "imgproc.process_image"
REPORT_OUTCOME = "imgproc.report_outcome"


def celery_config(settings: Settings) -> dict:
    broker_url, transport_options = celery_broker(settings)
    if uses_redis(settings):
        transport_options |= {
            "visibility_timeout": settings.VISIBILITY_TIMEOUT,
            "unacked_restore_interval": settings.UNACKED_RESTORE_INTERVAL,
            "unacked_restore_throttle": settings.UNACKED_RESTORE_THROTTLE,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "retry_on_timeout": True,
            "health_check_interval": 10,
        }
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.QUEUE_NAME,
        "task_queues": [Queue(settings.QUEUE_NAME, routing_key=settings.QUEUE_NAME)],
        "task_default_routing_key": settings.QUEUE_NAME,
        # A message is acknowledged only after the task ran; a worker killed mid-task
        # (child SIGKILL, OOM, node loss) leaves it to be delivered again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.TASK_SOFT_TIME_LIMIT,
        "task_time_limit": settings.TASK_TIME_LIMIT,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_concurrency": settings.WORKER_CONCURRENCY,
        # Task events cost a broker publish each; Flower switches them on when it connects
        # (its enable_events broadcast), so nothing is spent on them without a watcher.
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        # Reports the queue depth for the autoscaler: waiting messages stay in the list.
        "task_create_missing_queues": True,
    }


@lru_cache
def get_celery_app() -> Celery:
    settings = get_settings()
    embedded_broker.register()
    app = Celery("imgproc", include=["worker.tasks"])
    app.conf.update(celery_config(settings))
    return app
