"""OpenTelemetry tracing: one upload is one trace, API request → enqueue → worker run (with its
stages) → report → webhook.

Off unless the standard OTEL_* variables name an exporter or an OTLP endpoint
(Settings.tracing_exporter). Off, no tracer provider is installed and nothing is instrumented:
the few spans of our own (``span``) go to the API's no-op tracer.

How the context travels between processes, all by the upstream instrumentations:
* API → worker: the Celery instrumentation writes ``traceparent`` into the task message's
  headers when the API publishes (its producer span) and reads it when a worker runs the task;
* worker → API: the report is one HTTPX request, whose instrumentation writes ``traceparent``
  into the webhook's headers (beside the signature, which covers its own headers and the body), and the
  FastAPI instrumentation continues the trace from them.
Entry points call ``configure`` once per process, before it forks (the SDK's batch processor
restarts its export thread in each prefork child by itself).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from app.core.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_NO_TRACER = trace.NoOpTracer()
_ENTRY_KINDS = (trace.SpanKind.SERVER, trace.SpanKind.CONSUMER, trace.SpanKind.PRODUCER)
# Routes whose spans would be only noise: probes and scrapes, every few seconds per pod.
_UNTRACED_URLS = "/livez,/readyz,/metrics"


# The client instrumentations by their OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names, imported only
# when tracing is on; "fastapi" is instrument_app's (the app is made after configure).
CLIENT_INSTRUMENTORS = {
    "celery": "opentelemetry.instrumentation.celery:CeleryInstrumentor",
    "httpx": "opentelemetry.instrumentation.httpx:HTTPXClientInstrumentor",
    "redis": "opentelemetry.instrumentation.redis:RedisInstrumentor",
    "botocore": "opentelemetry.instrumentation.botocore:BotocoreInstrumentor",
    "sqlalchemy": "opentelemetry.instrumentation.sqlalchemy:SQLAlchemyInstrumentor",
}


def client_instrumentor(name: str) -> type[BaseInstrumentor]:
    """The instrumentor class of one CLIENT_INSTRUMENTORS name, imported now."""
    module, _, cls = CLIENT_INSTRUMENTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer = _NO_TRACER
    instrumentors: list[BaseInstrumentor] = []
    instrumented: tuple[str, ...] = ()  # the names, fastapi's included


def enabled() -> bool:
    return _State.provider is not None


def configure(settings: Settings, role: str, *, exporter: SpanExporter | None = None) -> bool:
    """Installs a tracer provider and the client instrumentations (Celery, SQLAlchemy, Redis,
    botocore, HTTPX; less those OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names) in this process when
    the settings ask for tracing, before it makes its database engines. ``exporter`` (tests)
    replaces the configured one and leaves the global provider alone, so that ``stop`` can undo
    it all. Whether tracing is on."""
    kind = settings.tracing_exporter
    if enabled() or (kind is None and exporter is None):
        return enabled()
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create itself.
    resource = Resource.create({} if settings.OTEL_SERVICE_NAME else {SERVICE_NAME: f"imgproc-{role}"})
    # OTEL_TRACES_SAMPLER(_ARG), as the SDK reads them, decides below the entry points.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    sampler = _EntryPointsOnly(configured)
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=exporter is None)
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_exporter(kind)))
        trace.set_tracer_provider(provider)  # for any library's own spans
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _State.provider, _State.tracer = provider, provider.get_tracer("imgproc")
    # SQLAlchemy: the engines made from now on (app.core.db.make_engine). FastAPI: instrument_app.
    for name in settings.tracing_instrumentations:
        if name in CLIENT_INSTRUMENTORS:
            instrumentor = client_instrumentor(name)()
            # skip_dep_check: the SQLAlchemy instrumentation declares "< 2.1" while it works on the
            # 2.1 we pin (its statement spans are asserted in tests/integration/core/test_tracing.py).
            instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
            _State.instrumentors.append(instrumentor)
            if name == "sqlalchemy":
                _drop_connect_spans()
    _State.instrumented = settings.tracing_instrumentations
    return True


def _drop_connect_spans() -> None:
    """The SQLAlchemy instrumentation also wraps every Engine.connect in a span of its own: one
    per pool checkout, 7 of the 35 spans of an upload, timing only the checkout and the pool's
    pre-ping. The statements' spans carry what is worth seeing; these go (uninstrument's own
    unwrap of Engine.connect is then a no-op)."""
    from opentelemetry.instrumentation.utils import unwrap
    from sqlalchemy.engine import Engine

    unwrap(Engine, "connect")


def stop() -> None:
    """Tracing off again in this process (tests): instrumentations removed, spans exported."""
    for instrumentor in _State.instrumentors:
        instrumentor.uninstrument()
    _State.instrumentors.clear()
    if _State.provider is not None:
        _State.provider.shutdown()
    _State.provider, _State.tracer, _State.instrumented = None, _NO_TRACER, ()


class _EntryPointsOnly(Sampler):
    """Traces start only where work enters a process: a request (SERVER), a task run without a
    sender's context (CONSUMER), a message sent outside a request (PRODUCER: the API's
    re-enqueueing). A client call with no trace around it is dropped: the worker's Redis polls,
    its heartbeat, the broker's SQLite polling would otherwise each be a trace of their own,
    many per second, and bury the uploads."""

    def __init__(self, configured: Sampler) -> None:
        self._configured = configured

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):  # type: ignore[no-untyped-def]
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind not in _ENTRY_KINDS:
            return SamplingResult(Decision.DROP)
        return self._configured.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"EntryPointsOnly{{{self._configured.get_description()}}}"


def _exporter(kind: str | None) -> SpanExporter:
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # The endpoint, headers, timeout and compression: OTEL_EXPORTER_OTLP_*, read by the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def instrument_app(app: FastAPI) -> None:
    """Server spans for the API's requests, continuing a caller's trace (the worker's report);
    inside them, the client instrumentations only for the requests that are sampled."""
    if _State.provider is None:
        return
    app.add_middleware(_ClientSpansOnlyIfSampled)
    if "fastapi" in _State.instrumented:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # No span per ASGI message: an upload's body arrives in hundreds of them.
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_State.provider, excluded_urls=_UNTRACED_URLS, exclude_spans=["receive", "send"]
        )


@contextlib.contextmanager
def client_spans_only_if_sampled() -> Iterator[None]:
    """Runs the block with the client instrumentations (SQL statements, Redis commands, S3 and
    HTTP calls) switched off when the trace around it is not sampled. Their spans would not be
    recorded, yet each would be made and dropped (its attributes, a non-recording span, the
    context switches): 19 for one upload, status poll and report. Celery's instrumentation
    ignores the switch, so the decision still travels to the worker in the task message, and the
    report carries it by ``inject``."""
    if _State.provider is None or trace.get_current_span().is_recording():
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


class _ClientSpansOnlyIfSampled:
    """ASGI middleware: each request under ``client_spans_only_if_sampled`` (inside the server
    span, which the FastAPI instrumentation puts around every middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with client_spans_only_if_sampled():
            await self.app(scope, receive, send)


def inject(headers: dict[str, str]) -> None:
    """Writes the current trace context (``traceparent``) into an outgoing request's headers.
    The HTTPX instrumentation does it for a sampled trace (with its own client span); under
    ``client_spans_only_if_sampled`` it is off, and the callee must still learn that the trace
    is not sampled, or it would start one of its own."""
    if _State.provider is not None:
        from opentelemetry import propagate

        propagate.inject(headers)


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span of our own, child of the current one (a no-op while tracing is off)."""
    with _State.tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def set_task_id(task_id: int) -> None:
    """Names the task on the current span (the request's or the run's), to find its trace."""
    trace.get_current_span().set_attribute("imgproc.task_id", task_id)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, for the logs; None outside one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def flush(timeout_millis: int = 5000) -> None:
    """Exports what is still buffered (a process about to exit)."""
    if _State.provider is not None:
        _State.provider.force_flush(timeout_millis)
