"""One upload is one trace: API request → enqueue → worker run (read, render, store) → report →
webhook, recorded by the SDK's in-memory exporter in a process running API and worker
(tests/support/traced_stack.py), over the embedded broker and over Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.redis import fresh_redis_db

REPO = Path(__file__).resolve().parents[3]
SAMPLED = 0x01  # the sampled bit of traceparent's flags (W3C Trace Context)


def run_traced_upload(tmp_path: Path, otel: dict[str, str] | None = None, **settings: str) -> tuple[dict, list[dict]]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("IMGPROC_", "OTEL_"))}
    env |= {
        "IMGPROC_DATA_DIR": str(tmp_path / "data"),
        "IMGPROC_COOKIE_SECURE": "false",
        "IMGPROC_PORT": str(free_port()),
    }
    env |= {f"IMGPROC_{name}": value for name, value in settings.items()} | (otel or {})
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.traced_stack"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, *spans = (json.loads(line) for line in done.stdout.splitlines())
    return first, spans


def one(spans: list[dict], **match: object) -> dict:
    found = [span for span in spans if all(span[key] == value for key, value in match.items())]
    assert len(found) == 1, f"{match}: {len(found)} spans among {sorted(s['name'] for s in spans)}"
    return found[0]


@pytest.fixture(params=["embedded", "redis"])
def broker(request) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {"BROKER_URL": fresh_redis_db(request.getfixturevalue("redis_server"))}


def test_an_upload_is_one_trace_from_the_request_to_the_webhook(tmp_path, broker):
    outcome, spans = run_traced_upload(tmp_path, **broker)
    assert outcome["status"] == "completed"

    upload = one(spans, name="POST /api/newTask", kind="SERVER")
    assert upload["parent_id"] is None  # the client sent no context: the trace starts here
    assert upload["attributes"]["imgproc.task_id"] == outcome["task_id"]
    trace = [span for span in spans if span["trace_id"] == upload["trace_id"]]

    enqueue = one(trace, name="apply_async/imgproc.process_image", kind="PRODUCER")
    run = one(trace, name="run/imgproc.process_image", kind="CONSUMER")
    assert enqueue["parent_id"] == upload["span_id"]
    assert run["parent_id"] == enqueue["span_id"]  # carried in the message's headers
    assert run["attributes"]["imgproc.task_id"] == outcome["task_id"]
    for stage in ("imgproc.read", "imgproc.render", "imgproc.store", "imgproc.report"):
        assert one(trace, name=stage)["parent_id"] == run["span_id"], stage
    render = one(trace, name="imgproc.render")["attributes"]
    assert render["imgproc.decode_seconds"] > 0 and render["imgproc.variants"] == 1

    report = one(trace, name="imgproc.report")
    post = one(trace, name="POST", kind="CLIENT")
    webhook = one(trace, name="POST /api/webhook/task-complete", kind="SERVER")
    assert post["parent_id"] == report["span_id"]
    assert webhook["parent_id"] == post["span_id"]  # carried in the webhook's headers
    assert webhook["attributes"]["imgproc.task_id"] == outcome["task_id"]

    # The client instrumentations: the task row's INSERT inside the request; the broker's own
    # traffic inside the enqueue (Redis commands, or the embedded broker's SQLite statements).
    statements = [span for span in trace if span["attributes"].get("db.system") == "sqlite"]
    assert any(s["name"].startswith("INSERT") and s["parent_id"] == upload["span_id"] for s in statements)
    assert not [s for s in spans if s["name"] == "connect"]  # a pool checkout is no statement
    assert outcome["sampler_asked"]["CLIENT"] >= len(statements)
    (webhook_context,) = outcome["webhook_traceparents"]
    _version, trace_id, parent_id, flags = webhook_context.split("-")
    assert (trace_id, parent_id, int(flags, 16) & SAMPLED) == (post["trace_id"], post["span_id"], SAMPLED)
    broker_system = "redis" if broker else "sqlite"
    assert any(
        s["parent_id"] == enqueue["span_id"] and s["attributes"].get("db.system") == broker_system for s in trace
    ), broker_system

    # Only requests start traces: the status poll is its own; the worker's broker polls and
    # heartbeats, client calls outside any trace, are none.
    roots = [span for span in spans if span["parent_id"] is None]
    assert sorted(span["name"] for span in roots) == ["GET /api/isReady/{task_id}", "POST /api/newTask"]
    assert {span["service"] for span in spans} == {"imgproc-stack"}


def test_without_the_statement_spans_the_chain_stays_whole(tmp_path, redis_server):
    """The chart's tracing.disabledInstrumentations: [sqlalchemy, redis], the cheap trace."""
    otel = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy,redis"}
    outcome, spans = run_traced_upload(tmp_path, otel, BROKER_URL=fresh_redis_db(redis_server))
    assert outcome["status"] == "completed"

    upload = one(spans, name="POST /api/newTask", kind="SERVER")
    trace = {span["span_id"]: span for span in spans if span["trace_id"] == upload["trace_id"]}
    webhook = one(list(trace.values()), name="POST /api/webhook/task-complete", kind="SERVER")
    chain, span = [webhook["name"]], webhook
    while span["parent_id"]:
        span = trace[span["parent_id"]]
        chain.append(span["name"])
    assert chain == [
        "POST /api/webhook/task-complete",
        "POST",
        "imgproc.report",
        "run/imgproc.process_image",
        "apply_async/imgproc.process_image",
        "POST /api/newTask",
    ]
    assert not [span["name"] for span in spans if "db.system" in span["attributes"]]


def test_an_unsampled_upload_skips_the_client_instrumentations(tmp_path, redis_server):
    """A trace the sampler left out (here the caller's, flagged unsampled): the SQL statements,
    Redis commands and the report's HTTP call are not even offered to the sampler, and the
    decision still travels with the task and the report, so the webhook starts no trace of its
    own."""
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    otel = {"TRACED_STACK_TRACEPARENT": f"00-{caller_trace}-00f067aa0ba902b7-00"}
    outcome, spans = run_traced_upload(tmp_path, otel, BROKER_URL=fresh_redis_db(redis_server))
    assert outcome["status"] == "completed"
    assert spans == []
    assert "CLIENT" not in outcome["sampler_asked"]
    assert outcome["sampler_asked"]["SERVER"] >= 3  # upload, status poll, webhook: asked, dropped
    (webhook_context,) = outcome["webhook_traceparents"]
    _version, trace_id, _parent_id, flags = webhook_context.split("-")
    assert (trace_id, int(flags, 16) & SAMPLED) == (caller_trace, 0)
