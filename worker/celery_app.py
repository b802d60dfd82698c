"""`celery -A worker.celery_app worker` entry: the shared Celery app plus worker-only steps."""

from __future__ import annotations

from app.core.celery_app import get_celery_app
from worker.heartbeat import HeartbeatStep

app = get_celery_app()
app.steps["worker"].add(HeartbeatStep)
