"""Tracing's switch, its sampler, its API server spans and the ids in the logs (the chain across
API and worker: tests/integration/core/test_tracing.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from pydantic import ValidationError

from app.core import tracing
from app.core.config import TRACING_INSTRUMENTATIONS, Settings
from app.core.logging_setup import TaskAndTraceIds, task_context

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("variables", "exporter"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),  # the SDK's default endpoint, localhost:4318
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, None),
        ({"OTEL_SERVICE_NAME": "imgproc"}, None),  # naming the service alone switches nothing on
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_name_an_exporter(monkeypatch, variables, exporter):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert Settings().tracing_exporter == exporter


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
    ],
)
def test_an_exporter_or_protocol_the_image_lacks_stops_the_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


@pytest.mark.parametrize(
    ("disabled", "installed"),
    [
        ("", ("fastapi", "celery", "httpx", "redis", "botocore", "sqlalchemy")),
        ("sqlalchemy,redis", ("fastapi", "celery", "httpx", "botocore")),
        (" redis , sqlalchemy,", ("fastapi", "celery", "httpx", "botocore")),
    ],
)
def test_otel_python_disabled_instrumentations_leaves_those_out(monkeypatch, disabled, installed):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", disabled)
    assert Settings().tracing_instrumentations == installed


def test_an_unknown_instrumentation_to_disable_stops_the_start(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "sqlalchemy,psycopg")
    with pytest.raises(ValidationError, match="OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: unknown psycopg"):
        Settings()


def test_every_instrumentation_named_is_one_tracing_installs():
    """The names Settings accepts are those configure and instrument_app act on, each importable
    (the image has every instrumentation package)."""
    assert set(tracing.CLIENT_INSTRUMENTORS) | {"fastapi"} == set(TRACING_INSTRUMENTATIONS)
    for name in tracing.CLIENT_INSTRUMENTORS:
        assert issubclass(tracing.client_instrumentor(name), BaseInstrumentor), name


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(Settings(), "api", exporter=exporter)
    yield exporter
    tracing.stop()


def test_off_nothing_is_recorded_and_the_app_is_not_instrumented(embedded):
    from app.main import create_app

    assert not tracing.configure(Settings(), "api") and not tracing.enabled()
    with tracing.span("imgproc.read") as span:
        assert not span.is_recording()
    assert tracing.current_ids() is None
    assert not getattr(create_app(), "_is_instrumented_by_opentelemetry", False)


def test_requests_are_server_spans_and_probes_are_not_traced(embedded, spans):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as client:
        assert client.get("/").status_code == 200
        assert client.get("/livez").status_code == 200
        client.get("/api/tasks/12345")  # a 404, still a request
    names = [(span.name, span.kind, span.attributes.get("http.status_code")) for span in spans.get_finished_spans()]
    assert ("GET /", trace.SpanKind.SERVER, 200) in names
    assert ("GET /api/tasks/{task_id}", trace.SpanKind.SERVER, 404) in names
    assert not [name for name in names if "livez" in name[0]]
    assert not [name for name in names if name[0].endswith((" http receive", " http send"))]
    resource = spans.get_finished_spans()[0].resource.attributes
    assert resource["service.name"] == "imgproc-api"


def test_the_sampler_starts_traces_at_entry_points_only():
    sampler = tracing._EntryPointsOnly(ALWAYS_ON)
    decide = lambda kind, parent=None: sampler.should_sample(parent, 1, "x", kind).decision  # noqa: E731
    for entry in (trace.SpanKind.SERVER, trace.SpanKind.CONSUMER, trace.SpanKind.PRODUCER):
        assert decide(entry) is Decision.RECORD_AND_SAMPLE, entry
    for outside in (trace.SpanKind.CLIENT, trace.SpanKind.INTERNAL):  # a broker poll, a heartbeat
        assert decide(outside) is Decision.DROP, outside
    parent = trace.set_span_in_context(
        trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=False, trace_flags=trace.TraceFlags(1)))
    )
    assert decide(trace.SpanKind.CLIENT, parent) is Decision.RECORD_AND_SAMPLE  # inside a trace


def test_our_spans_nest_and_stop_undoes_it_all(spans):
    request_span = tracing._State.tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER)
    with request_span, tracing.span("imgproc.store", **{"imgproc.task_id": 3}):
        trace_id, span_id = tracing.current_ids()
    store, request = spans.get_finished_spans()
    assert (store.name, store.parent.span_id) == ("imgproc.store", request.context.span_id)
    assert (trace_id, span_id) == (format(store.context.trace_id, "032x"), format(store.context.span_id, "016x"))
    assert store.attributes["imgproc.task_id"] == 3

    tracing.stop()
    assert not tracing.enabled()
    with tracing.span("imgproc.store") as span:
        assert not span.is_recording()


def test_json_log_lines_carry_the_task_and_the_trace(spans):
    from pythonjsonlogger.json import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("%(levelname)s %(message)s"))
    handler.addFilter(TaskAndTraceIds())
    log = logging.getLogger("test.tracing")
    log.addHandler(handler)
    try:
        log.warning("outside")
        with tracing._State.tracer.start_as_current_span("run", kind=trace.SpanKind.CONSUMER), task_context(42):
            log.warning("inside")
            ids = tracing.current_ids()
    finally:
        log.removeHandler(handler)
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert not {"task_id", "trace_id", "span_id"} & outside.keys()
    assert (inside["task_id"], inside["trace_id"], inside["span_id"]) == (42, *ids)
