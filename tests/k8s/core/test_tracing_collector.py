"""Traces reach a real OTLP receiver: `imgproc run` (the API, and its worker in processes of its
own, the prefork pool's children included) exports to the OpenTelemetry Collector of
scripts/otelcol, and one upload arrives as one trace across both services; the worker's JSON log
line for the task carries the same ids. (In the k8s tier: the collector is one of the big
Go-built tools, built while the first phase runs.)"""

from __future__ import annotations

import json

from tests.fixtures.otelcol import wait_for_spans
from tests.fixtures.services import embedded_env, running_stack
from tests.support.images import jpeg
from tests.support.tasks import upload_accepted, wait_for_terminal

UPLOAD, WEBHOOK = "POST /api/newTask", "POST /api/webhook/task-complete"


def test_one_upload_arrives_as_one_trace_across_api_and_worker(tmp_path, otel_collector):
    env = embedded_env(tmp_path / "data") | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s, not 5 s
        "OTEL_RESOURCE_ATTRIBUTES": f"test.run={tmp_path.name}",
        "IMGPROC_LOG_FORMAT": "json",
    }
    with running_stack(env, tmp_path / "logs", workers=0, start_api=False) as stack:
        stack.start_embedded()
        with stack.client() as client:
            task_id = upload_accepted(client, jpeg(1600, 1200))
            assert wait_for_terminal(client, task_id, timeout=120)["status"] == "completed"

        # The API exports its spans as they end, the worker's run span ends after the webhook's:
        # wait for the whole trace (every span up to the root, and the run's stages), not the first part.
        spans = wait_for_spans(otel_collector, lambda spans: upload_trace(spans, task_id) is not None)
        worker_log = stack.logs("run")

    trace = upload_trace(spans, task_id)

    def chain(name: str) -> list[tuple[str, str]]:
        """(name, service) from the span called ``name`` up to the trace's root."""
        span = next(s for s in trace.values() if s["name"] == name)
        links = [(span["name"], span["service"])]
        while span["parent_id"]:
            span = trace[span["parent_id"]]
            links.append((span["name"], span["service"]))
        return links

    assert chain(WEBHOOK) == [
        (WEBHOOK, "imgproc-api"),
        ("POST", "imgproc-worker"),
        ("imgproc.report", "imgproc-worker"),
        ("run/imgproc.process_image", "imgproc-worker"),
        ("apply_async/imgproc.process_image", "imgproc-api"),
        (UPLOAD, "imgproc-api"),
    ]
    for stage in ("imgproc.read", "imgproc.render", "imgproc.store"):
        assert chain(stage)[1][0] == "run/imgproc.process_image", stage

    # The worker's line for the task, in its JSON log, names the task and the run's span.
    run = next(s for s in trace.values() if s["name"] == "run/imgproc.process_image")
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    (outcome,) = [line for line in lines if line.get("message") == f"task {task_id}: completed"]
    assert (outcome["task_id"], outcome["trace_id"], outcome["span_id"]) == (task_id, run["trace_id"], run["span_id"])


def upload_trace(spans: list[dict], task_id: int) -> dict[str, dict] | None:
    """The upload's trace by span id, once every span it needs has arrived, else None."""
    uploads = [s for s in spans if s["name"] == UPLOAD and s["attributes"].get("imgproc.task_id") == task_id]
    if not uploads:
        return None
    trace = {s["span_id"]: s for s in spans if s["trace_id"] == uploads[0]["trace_id"]}
    names = {s["name"] for s in trace.values()}
    if not names >= {WEBHOOK, "imgproc.read", "imgproc.render", "imgproc.store", "run/imgproc.process_image"}:
        return None
    if any(s["parent_id"] and s["parent_id"] not in trace for s in trace.values()):
        return None  # a parent still on its way
    return trace
