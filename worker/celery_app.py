"""`celery -A worker.celery_app worker` entry: the shared Celery app plus worker-only steps."""

from __future__ import annotations

from celery.signals import worker_init

from app.core import embedded_broker
from app.core.celery_app import get_celery_app
from app.core.config import get_settings
from worker.heartbeat import HeartbeatStep

app = get_celery_app()
app.steps["worker"].add(HeartbeatStep)


@worker_init.connect
def claim_broker_consumer(**_: object) -> None:
    """Embedded broker: take this worker's consumer lock before the pool forks, so the pool
    children hold it too and the worker's messages are re-delivered only once all of them are
    gone (app.core.embedded_broker). Celery's prefork pool already gives each child
    PR_SET_PDEATHSIG=SIGKILL, so they do not outlive the worker's main process."""
    url = get_settings().broker_url
    if url.startswith(embedded_broker.SCHEME + "+"):
        embedded_broker.claim_consumer(url.partition("+")[2])
