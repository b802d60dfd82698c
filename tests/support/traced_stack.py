"""`python -m tests.support.traced_stack`: API and worker in this one process, traced into the
SDK's in-memory exporter; uploads one image, waits for its outcome and prints every finished
span as a JSON line (tests/integration/core/test_tracing.py reads them).

A process of its own because tracing's instrumentations and the Celery app a worker's tasks are
registered on are process-wide. The settings come from the IMGPROC_* environment it is given.
"""

from __future__ import annotations

import json
import threading
import time

WEBHOOK_SPAN = "POST /api/webhook/task-complete"


def main() -> None:
    import httpx
    import uvicorn
    from celery.contrib.testing.worker import start_worker
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app.core import tracing
    from app.core.config import get_settings
    from app.tasks.schema import upgrade
    from tests.support import images

    settings = get_settings()
    exporter = InMemorySpanExporter()
    tracing.configure(settings, "stack", exporter=exporter)  # before any engine is made
    upgrade()
    from app.main import create_app
    from worker.tasks import celery_app

    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=settings.PORT, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            # An outside client's requests: no trace context of this process's HTTPX instrumentation.
            with (
                suppress_instrumentation(),
                httpx.Client(base_url=f"http://127.0.0.1:{settings.PORT}", timeout=60) as client,
            ):
                files = {"file": ("photo.jpg", images.jpeg(1600, 1200), "image/jpeg")}
                task_id = client.post("/api/newTask", files=files).raise_for_status().json()["task_id"]
                status = client.get(f"/api/isReady/{task_id}", params={"wait": 30}).json()["status"]
            # The outcome is visible once the webhook committed; its span ends just after.
            while time.monotonic() < deadline + 30 and not any(
                span.name == WEBHOOK_SPAN for span in exporter.get_finished_spans()
            ):
                time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(10)
    print(json.dumps({"task_id": task_id, "status": status}))
    for span in exporter.get_finished_spans():
        print(
            json.dumps(
                {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                    "attributes": dict(span.attributes),
                    "service": span.resource.attributes.get("service.name"),
                }
            )
        )


if __name__ == "__main__":
    main()
