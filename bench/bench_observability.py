"""What seeing costs: CPU per image of imgproc with neither metrics served nor tracing, with metrics
served, and with tracing exported to a real collector, side by side in one run.

    python -m bench.bench_observability [--images 360] [--concurrency 4] [--rounds 6] [--input 1080p]

Five stacks in the production shape (`imgproc api` + one `imgproc worker`, a database each on one
PostgreSQL, a Redis database each on one Redis), differing only in:

- plain: no IMGPROC_METRICS_PORT (the counters are kept in each process's memory and served by
  nobody), no OTEL_* (no tracer installed);
- metrics: IMGPROC_METRICS_PORT on API and worker (the worker's pool children then record in
  prometheus_client's multiprocess files, the costly part), scraped by nobody;
- tracing: OTEL_EXPORTER_OTLP_ENDPOINT to the OpenTelemetry Collector of scripts/otelcol (built if
  missing), every span exported (OTLP/HTTP, batch processor);
- tracing-10%: the same, sampling one upload in ten (OTEL_TRACES_SAMPLER=parentbased_traceidratio,
  the chart's tracing.sampler and samplerArg): the other nine still get their server, task and
  stage spans (not recorded), but skip the client instrumentations (app.core.tracing.
  client_spans_only_if_sampled);
- tracing-no-db: every upload traced, without the span per SQL statement and Redis command
  (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sqlalchemy,redis, the chart's
  tracing.disabledInstrumentations): the chain from request to webhook, with the stages.

The client is bench_peers' (upload, one long poll, download), the images alternate between the
stacks in rounds, in an order shuffled per round; CPU = user + system of the stack's processes
(API, worker main, pool), not of PostgreSQL, Redis or the collector, counted until 6 s after the
stack's last image of the round (the exporter's next flush). Besides the totals, each stack is set
against plain round by round: the spread of those paired figures is the bench's noise. The
targets (issue #23): metrics <= 2 %, tracing with an exporter <= 5 % (judged for every tracing row).
Tracing off costs one no-op span per stage: its time is measured apart and printed against the CPU
per image. So is one span with a SQL statement's attributes, made and ended with no processor, and
made, ended and exported to the same collector: what each span of a trace costs by itself.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.bench_peers import (
    BENCH_LIMITS,
    ROLE_ORDER,
    ImgprocTarget,
    LoadResult,
    flat,
    photo_like,
    run_load,
    tiered,
)
from tests.fixtures.otelcol import start_collector, stop_collector
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.services import ServiceStack, running_stack, server_env
from tests.support.images import encode

INPUTS = {"1080p": (1920, 1080), "12mp": (4000, 3000)}
TARGETS = {"metrics": 0.02, "tracing": 0.05, "tracing-10%": 0.05, "tracing-no-db": 0.05}
# Every stack's CPU meter keeps counting this long after its last image: the batch span processor
# exports what is left of a round on its next flush, OTEL_BSP_SCHEDULE_DELAY (5 s by default) later.
SETTLE_SECONDS = 6.0
# The no-op spans a task run opens with tracing off: read, render, store, report (worker.tasks).
SPANS_PER_TASK = 4


@contextmanager
def stacks(workdir: Path) -> Iterator[tuple[dict[str, ServiceStack], str]]:
    """The stacks by name, and the collector's OTLP/HTTP endpoint."""
    postgres, redis = start_postgres(), start_redis()
    collector = start_collector(workdir / "otelcol")
    try:
        running: dict[str, ServiceStack] = {}
        with ExitStack() as started:
            for number, name in enumerate(("plain", "metrics", "tracing", "tracing-10%", "tracing-no-db")):
                database = postgres.create_database(f"obs{number}")
                env = {
                    **server_env(database, f"{redis.url.rsplit('/', 1)[0]}/{number}", workdir / name),
                    **BENCH_LIMITS,
                }
                worker_env: dict[str, str] = {}
                if name == "metrics":  # API and worker on one host: a port each
                    env["IMGPROC_METRICS_PORT"] = str(free_port())
                    worker_env["IMGPROC_METRICS_PORT"] = str(free_port())
                if name.startswith("tracing"):
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
                if name == "tracing-10%":
                    env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
                if name == "tracing-no-db":
                    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "sqlalchemy,redis"
                stack = started.enter_context(running_stack(env, workdir / f"logs-{name}", workers=0))
                stack.start_worker(env=worker_env)
                running[name] = stack
            yield running, collector.endpoint
    finally:
        stop_collector(collector)
        redis.stop()
        postgres.stop()
        shutil.rmtree(redis.directory, ignore_errors=True)
        if postgres.data_dir is not None:
            shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)


def noop_span_seconds(calls: int = 200_000) -> float:
    """One no-op span (tracing off), in seconds."""
    from app.core import tracing

    assert not tracing.enabled()
    started = time.perf_counter()
    for _ in range(calls):
        with tracing.span("imgproc.read"):
            pass
    return (time.perf_counter() - started) / calls


def span_seconds(endpoint: str, spans: int = 20_000) -> tuple[float, float]:
    """One span with a SQL statement's attributes made and ended by the SDK, in seconds: with no
    processor, and with the batch processor exporting to the collector over OTLP/HTTP as the
    stacks do (its queue large enough that none is dropped, and flushed before the clock stops)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {
        "db.system": "postgresql",
        "db.name": "imgproc",
        "db.user": "imgproc",
        "db.statement": "SELECT tasks.id, tasks.status FROM tasks WHERE tasks.id = %(id_1)s AND tasks.owner_id = %(o)s",
        "net.peer.name": "127.0.0.1",
        "net.peer.port": 5432,
    }

    def per_span(provider: TracerProvider) -> float:
        tracer = provider.get_tracer("bench")
        started = time.process_time()
        for _ in range(spans):
            with tracer.start_as_current_span("SELECT imgproc", attributes=attributes):
                pass
        provider.force_flush()
        return (time.process_time() - started) / spans

    exporting = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    exporting.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=spans + 1))
    try:
        return per_span(TracerProvider()), per_span(exporting)
    finally:
        exporting.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=360, help="images per stack, over all rounds")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--input", choices=sorted(INPUTS), default="1080p")
    parser.add_argument("--time-limit", type=float, default=180, help="seconds per stack and round")
    args = parser.parse_args(argv)

    data = encode(photo_like(*INPUTS[args.input], seed=7), "JPEG", quality=90)
    workdir = Path(tempfile.mkdtemp(prefix="imgproc-observability-"))
    totals: dict[str, LoadResult] = {}
    rounds: list[dict[str, LoadResult]] = []
    try:
        with stacks(workdir) as (running, endpoint):
            targets = {}
            for name, stack in running.items():
                assert stack.api is not None
                roles = {stack.api.pid: flat("API"), stack.workers[0].pid: tiered("worker main", "worker pool")}
                targets[name] = ImgprocTarget(stack, data, roles)
                totals[name] = LoadResult()
            per_round = [args.images // args.rounds + (i < args.images % args.rounds) for i in range(args.rounds)]
            order = list(targets)
            for index, images in enumerate(per_round, 1):
                random.Random(index).shuffle(order)  # no stack always runs first, or after the same one
                round_result: dict[str, LoadResult] = {}
                for name in order:
                    print(f"round {index}/{args.rounds}: {name}, {images} images", flush=True)
                    round_result[name] = run_load(
                        targets[name],
                        images=images,
                        concurrency=args.concurrency,
                        time_limit=args.time_limit,
                        settle=SETTLE_SECONDS,
                    )
                    totals[name].add(round_result[name])
                rounds.append(round_result)
            made, exported = span_seconds(endpoint)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    plain = totals["plain"]
    print(f"\n{args.input} JPEG, concurrency {args.concurrency}, {args.rounds} alternating rounds")
    print(f"{'stack':<12}{'images':>8}{'images/s':>10}{'CPU s/image':>13}{'vs plain':>10}  per process")
    for name, result in totals.items():
        parts = ", ".join(f"{role} {result.cpu[role] / result.images:.4f}" for role in ROLE_ORDER if role in result.cpu)
        overhead = result.cpu_per_image / plain.cpu_per_image - 1
        failed = f"; {len(result.failures)} FAILED (first: {result.failures[0]})" if result.failures else ""
        figures = f"{result.images:>8}{result.rate:>10.1f}{result.cpu_per_image:>13.4f}{overhead:>+10.1%}"
        print(f"{name:<12}{figures}  {parts}{failed}")
    print("\nvs plain, round by round (each stack against plain in the same round; median [min, max]):")
    for name in TARGETS:
        paired = sorted(r[name].cpu_per_image / r["plain"].cpu_per_image - 1 for r in rounds)
        figures = ", ".join(f"{overhead:+.1%}" for overhead in paired)
        print(f"  {name:<14}{statistics.median(paired):+.1%} [{paired[0]:+.1%}, {paired[-1]:+.1%}]  ({figures})")
    for name, limit in TARGETS.items():
        overhead = totals[name].cpu_per_image / plain.cpu_per_image - 1
        print(f"{'PASS' if overhead <= limit else 'MISS'} {name}: {overhead:+.1%} CPU per image (<= {limit:.0%})")
    noop = noop_span_seconds()
    share = SPANS_PER_TASK * noop / plain.cpu_per_image
    print(
        f"tracing off: {noop * 1e6:.2f} µs per no-op span, {SPANS_PER_TASK} per task = {share:.4%} of the CPU per image"
    )
    print(
        f"one span (a SQL statement's attributes): {made * 1e6:.1f} µs made, {exported * 1e6:.1f} µs made and exported"
        f" (OTLP/HTTP, batch processor) = {exported / plain.cpu_per_image:.3%} of plain's CPU per image"
    )
    return 1 if any(result.failures or result.timed_out for result in totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
