"""`python -m tests.support.traced_stack`: API and worker in this one process, traced into the
SDK's in-memory exporter; uploads one image, waits for its outcome and prints every finished
span as a JSON line (tests/integration/core/test_tracing.py reads them). The first line has the
outcome, how many spans of each kind inside a trace were asked of the sampler (recorded or not)
and the ``traceparent`` the webhook arrived with. ``TRACED_STACK_TRACEPARENT`` is sent with the
upload and the status poll, as an outside caller's trace context.

A process of its own because tracing's instrumentations and the Celery app a worker's tasks are
registered on are process-wide. The settings come from the IMGPROC_* environment it is given.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time

from app.core.webhook_signing import WEBHOOK_PATH

WEBHOOK_SPAN = f"POST {WEBHOOK_PATH}"


def main() -> None:
    import httpx
    import uvicorn
    from celery.contrib.testing.worker import start_worker
    from opentelemetry import trace
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

    sampler = tracing._State.provider.sampler
    asked: collections.Counter[str] = collections.Counter()
    decide = sampler.should_sample

    def counting(parent_context, trace_id, name, kind=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if trace.get_current_span(parent_context).get_span_context().is_valid:  # not a broker poll
            asked[kind.name if kind else "INTERNAL"] += 1
        return decide(parent_context, trace_id, name, kind, *args, **kwargs)

    sampler.should_sample = counting  # the tracers made so far hold this very sampler
    app = create_app()
    webhook_traceparents: list[str] = []

    async def noting_the_webhook_context(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
            webhook_traceparents.append(dict(scope["headers"]).get(b"traceparent", b"").decode())
        await app(scope, receive, send)

    config = uvicorn.Config(noting_the_webhook_context, host="127.0.0.1", port=settings.PORT, log_config=None)
    server = uvicorn.Server(config)
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
                caller = os.environ.get("TRACED_STACK_TRACEPARENT")
                headers = {"traceparent": caller} if caller else {}
                response = client.post("/api/newTask", files=files, headers=headers)
                task_id = response.raise_for_status().json()["task_id"]
                status = client.get(f"/api/isReady/{task_id}", params={"wait": 30}, headers=headers).json()["status"]
            # The outcome is visible once the webhook committed; its span (if recorded) ends
            # just after.
            recorded = not caller or caller.endswith("-01")
            while (
                recorded
                and time.monotonic() < deadline + 30
                and not any(span.name == WEBHOOK_SPAN for span in exporter.get_finished_spans())
            ):
                time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(10)
    first = {"task_id": task_id, "status": status, "sampler_asked": asked, "webhook_traceparents": webhook_traceparents}
    print(json.dumps(first))
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
