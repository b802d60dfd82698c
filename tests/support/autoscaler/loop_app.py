"""A small self-contained Celery app for the autoscaling loop test and the bench.

Same queue, task name and reliability settings as the real worker (app/core/celery_app.py):
acks_late, prefetch 1, reject_on_worker_lost. The task does real work (Pillow: build an image,
fit it into 800x600, encode a JPEG) plus a configurable sleep standing in for storage/network
time, and records itself under LOOP_RESULTS_DIR:

* ``running/<worker nodename>/<task id>`` exists while the task runs (the "is this pod busy?"
  question of the kubelet stand-in),
* ``results/<task id>.jpg`` is created exclusively (a second execution would fail loudly),
* ``executions.log`` gets one line per execution: ``<task id> <nodename> <start> <end>``.

Environment: LOOP_BROKER_URL, LOOP_RESULTS_DIR, LOOP_TASK_SECONDS (default 1.0).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from celery import Celery
from kombu import Queue
from PIL import Image

QUEUE = "imgproc"
TASK = "imgproc.process_image"

app = Celery("imgproc-loop", broker=os.environ.get("LOOP_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, routing_key=QUEUE)],
    task_default_routing_key=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
)


def results_dir() -> Path:
    return Path(os.environ["LOOP_RESULTS_DIR"])


@app.task(name=TASK, bind=True)
def process_image(self, seed: int) -> None:  # type: ignore[no-untyped-def]
    task_id, node = self.request.id, self.request.hostname
    root = results_dir()
    running = root / "running" / node / task_id
    running.parent.mkdir(parents=True, exist_ok=True)
    running.touch()
    started = time.time()
    try:
        image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
        image = Image.blend(image, Image.effect_noise((1600, 1200), 32 + seed % 32).convert("RGB"), 0.3)
        image.thumbnail((800, 600))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        time.sleep(float(os.environ.get("LOOP_TASK_SECONDS", "1.0")))
        with open(root / "results" / f"{task_id}.jpg", "xb") as out:  # exactly once, or fail
            out.write(buffer.getvalue())
        with open(root / "executions.log", "a") as log:
            log.write(f"{task_id} {node} {started:.3f} {time.time():.3f}\n")
    finally:
        running.unlink(missing_ok=True)
