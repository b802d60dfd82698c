"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import resources

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.api.errors import add_error_handlers
from app.api.middleware import CrossSiteGuard, HttpMetrics, RequestBodyGuard, ResponseHeaders
from app.api.routes import health, presets, tasks, webhook
from app.core import metrics_export, tracing
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.webhook_signing import WEBHOOK_PREFIX
from app.storage import get_storage
from app.tasks import crud
from app.tasks.queueing import BrokerUnavailable, enqueue_processing, waiting_messages
from app.tasks.records import utcnow
from app.tasks.requeue import RequeueAfter, requeue_stale
from app.tasks.schema import assert_database_current

log = logging.getLogger(__name__)
# Room for the multipart envelope around a file of exactly MAX_UPLOAD_BYTES.
MULTIPART_OVERHEAD = 64 * 1024


async def _requeue_stale_forever(settings: Settings) -> None:
    def once() -> None:
        with session_scope() as session:
            crud.prune_deliveries(
                session=session, older_than=utcnow() - timedelta(seconds=2 * settings.WEBHOOK_TOLERANCE_SECONDS)
            )
            requeue_stale(
                session=session,
                enqueue=enqueue_processing,
                waiting=waiting_messages,
                after=RequeueAfter.from_settings(settings),
            )

    while True:
        await asyncio.sleep(settings.RECONCILE_INTERVAL_SECONDS)
        try:
            await run_in_threadpool(once)
        except (BrokerUnavailable, DBAPIError, PoolTimeout) as exc:
            log.warning("requeue: dependencies unavailable (%s); will retry", type(exc).__name__)
        except Exception:  # one bad round must not end re-enqueueing for the life of the process
            log.exception("requeue: round failed; will retry")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    settings.webhook_secret()  # fail at start-up, not at the first report
    await run_in_threadpool(assert_database_current)
    if settings.STORAGE_BACKEND == "filesystem":
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
    requeuer = asyncio.create_task(_requeue_stale_forever(settings))
    try:
        # In the process that serves the app (under --reload, the reloaded one, not its watcher).
        with metrics_export.metrics_port(settings):
            yield
    finally:
        requeuer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await requeuer


class FrontendFiles(StaticFiles):
    """The page's files. When results are served as signed URLs of the object store, the page's
    Content-Security-Policy admits images from that origin too (the thumbnails follow the 302)."""

    def __init__(self, *, directory: str, image_origin: str = "") -> None:
        super().__init__(directory=directory, html=True)
        self.image_origin = image_origin

    def file_response(self, full_path, stat_result, scope, status_code=200):  # type: ignore[no-untyped-def]
        if not self.image_origin or os.path.basename(full_path) != "index.html":
            return super().file_response(full_path, stat_result, scope, status_code)
        with open(full_path, encoding="utf-8") as fh:
            page = fh.read().replace("img-src 'self'", f"img-src 'self' {self.image_origin}", 1)
        return HTMLResponse(page, status_code=status_code)


def create_app() -> FastAPI:
    settings = get_settings()
    tracing.configure(settings, "api")
    app = FastAPI(
        title="imgproc",
        version="0.1.0",
        summary=(
            f"Upload images; get web-ready JPEGs (EXIF-oriented, RGB, {settings.output_spec.describe()})."
            if not settings.presets_configured
            else "Upload images; get every preset's sizes and formats (EXIF-oriented, sRGB): GET /api/presets."
        ),
        lifespan=lifespan,
        # FastAPI's own telemetry would trace every request as soon as a tracer provider is set,
        # also where OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names fastapi: the server spans are
        # app.core.tracing's (the upstream instrumentation), or none.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    routers = (health.router, tasks.router, presets.router, webhook.router)
    for router in routers:
        app.include_router(router)
    # The API's own routes, for what matches a path outside routing (the 405's Allow, the metrics'
    # route template of a guard's answer): FastAPI keeps an included router's routes wrapped.
    app.state.api_routes = [route for router in routers for route in router.routes]
    if settings.embedded:
        _add_metrics_route(app)
    add_error_handlers(app)

    frontend = resources.files("app") / "static" / "frontend"
    if frontend.is_dir():
        page = FrontendFiles(directory=str(frontend), image_origin=get_storage().public_origin())
        app.mount("/frontend", page, name="frontend")

        @app.get("/frontend", include_in_schema=False)
        def frontend_redirect() -> RedirectResponse:
            return RedirectResponse("/frontend/")

    # Outermost last: headers go on every response, the body guard's and the cross-site guard's too; the
    # body guard sees the raw body before anything parses it, and sits inside CORS so that an
    # allowed cross-origin client can read its 413 (a browser hides a response without CORS headers).
    app.add_middleware(CrossSiteGuard, allowed_origins=settings.CORS_ORIGINS, exempt_paths=(WEBHOOK_PREFIX,))
    app.add_middleware(
        RequestBodyGuard,
        max_bytes=settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD,
        advertised_limit=settings.MAX_UPLOAD_BYTES,
        min_bytes_per_second=settings.BODY_MIN_BYTES_PER_SECOND,
        grace_seconds=settings.BODY_GRACE_SECONDS,
    )
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=settings.CORS_ALLOW_CREDENTIALS,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["content-type"],
        )
    app.add_middleware(ResponseHeaders)
    # Outermost: every answer is counted, the other middleware's too.
    app.add_middleware(HttpMetrics, routes=app.state.api_routes)
    tracing.instrument_app(app)  # outside all of them: a request's span covers what they do
    return app


def _add_metrics_route(app: FastAPI) -> None:
    """GET /metrics on the API itself, in embedded mode only: one process tree on one machine,
    with no ingress in front, where a second port to find would only be in the way
    (app.core.metrics_export). Elsewhere the API's routes are what the ingress exposes, so
    metrics stay on IMGPROC_METRICS_PORT."""

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics_export.latest(), media_type=CONTENT_TYPE_LATEST)
