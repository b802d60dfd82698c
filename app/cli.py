"""`imgproc` console script: one image, one entry point, a subcommand per role."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.core.config import get_settings
from app.core.logging_setup import configure_logging


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.tasks.schema import upgrade, wait_until_current

    if args.check:
        if not wait_until_current(wait_seconds=args.wait):
            print("database schema is not at the latest revision", file=sys.stderr)
            return 1
    else:
        upgrade(wait_seconds=args.wait)
    print("database is at the latest revision")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from app.server import uvicorn_options

    settings = get_settings()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.HOST,
        port=settings.PORT,
        # The h11 parser with a header size cap and deadline, and the proxies believed (app.server).
        **uvicorn_options(settings),
        root_path=settings.ROOT_PATH,
        log_config=None,
        timeout_graceful_shutdown=20,
        reload=getattr(args, "reload", False),
    )
    return 0


def worker_argv(settings, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "worker",
        f"--concurrency={settings.WORKER_CONCURRENCY}",
        f"--queues={settings.QUEUE_NAME}",
        f"--loglevel={settings.LOG_LEVEL}",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]


def cmd_worker(args: argparse.Namespace) -> int:
    from app.core import metrics_export

    settings = get_settings()
    # Metrics before anything defines one (app.core.metrics_export): in a directory of this
    # worker's own, served by this main process; or, started by `imgproc run`, in the one it was
    # given, which that process serves.
    served_here = bool(settings.METRICS_PORT) and not args.metrics_dir
    if args.metrics_dir:
        metrics_export.record_in(Path(args.metrics_dir))
    own_directory = metrics_export.process_directory(settings, "worker") if served_here else None
    if own_directory is not None:
        metrics_export.record_in(own_directory)

    from app.core import tracing

    tracing.configure(settings, "worker")  # in the main process, before the pool forks
    from worker.celery_app import app
    from worker.metrics import ReportRetriesWaiting

    settings.webhook_secret()  # refuse to start without a way to report outcomes
    if settings.STORAGE_BACKEND == "filesystem":
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
    else:
        from app.storage import get_storage

        get_storage()  # a wrong setting (the CA bundle) stops the worker now, not each task; no I/O
    if own_directory is None:
        app.worker_main(worker_argv(settings, *args.celery_args))
        return 0
    metrics_export.serve_directories([own_directory], ReportRetriesWaiting())
    try:
        with metrics_export.metrics_port(settings):
            app.worker_main(worker_argv(settings, *args.celery_args))
    finally:
        metrics_export.remove(own_directory)
    return 0


def cmd_worker_probe(args: argparse.Namespace) -> int:
    from worker.heartbeat import heartbeat_age

    age = heartbeat_age(get_settings().heartbeat_file)
    if age is None or age > args.max_age:
        print(f"worker heartbeat {'missing' if age is None else f'{age:.0f}s old'}", file=sys.stderr)
        return 1
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    from worker.celery_app import app

    settings = get_settings()
    argv = ["flower", f"--port={settings.FLOWER_PORT}", f"--url_prefix={settings.FLOWER_URL_PREFIX}"]
    if settings.FLOWER_BASIC_AUTH:
        argv.append(f"--basic_auth={settings.FLOWER_BASIC_AUTH}")
    app.start(argv)
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    if args.uninstall:
        from autoscaler.kube import Kube
        from autoscaler.settings import OperatorConfig
        from autoscaler.uninstall import delete_autoscalers

        kube = Kube.from_environment()
        try:
            left = delete_autoscalers(kube, OperatorConfig.load().namespace, args.uninstall, timeout=args.timeout)
        finally:
            kube.close()
        return 1 if left else 0
    from autoscaler.main import run

    return run() or 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from app.core.db import session_scope
    from app.tasks.queueing import enqueue_processing, waiting_messages
    from app.tasks.requeue import RequeueAfter, requeue_stale

    with session_scope() as session:
        ids = requeue_stale(
            session=session,
            enqueue=enqueue_processing,
            waiting=waiting_messages,
            after=RequeueAfter.from_settings(get_settings()),
        )
    print(f"re-enqueued {len(ids)} task(s)")
    return 0


def cmd_storage_migrate(args: argparse.Namespace) -> int:
    from app.storage import get_storage
    from app.storage.copy_to_bucket import run

    settings = get_settings()
    if settings.STORAGE_BACKEND != "s3":
        print("set IMGPROC_STORAGE_BACKEND=s3 and IMGPROC_S3_* for the bucket to copy into", file=sys.stderr)
        return 2
    source = Path(args.source) if args.source else settings.storage_dir
    return run(source.resolve(), get_storage(), dry_run=args.dry_run)


def cmd_smoke(args: argparse.Namespace) -> int:
    from app.smoke import smoke

    return smoke(args.url, timeout=args.timeout)


# `imgproc run`: how long the worker's warm shutdown may take after the API stopped. A task
# still running then is not lost: the worker is killed, and its unacknowledged message is
# handed back to the next worker at once (app.core.embedded_broker).
RUN_WORKER_GRACE_SECONDS = 10.0


def _entry_module() -> str:
    """The module this command runs as (`python -m <module>`), so that the worker is started
    the same way; the console script and `python -m app.cli` both give app.cli."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name if spec is not None and spec.name != "__main__" else "app.cli"


def _die_with_parent(parent: int):  # type: ignore[no-untyped-def]
    """preexec_fn for the embedded worker: the kernel SIGKILLs it when `imgproc run` dies,
    however it dies (kill -9 included), so it is never left running as an orphan. It has its
    own session (Ctrl-C reaches only `imgproc run`, which stops it warmly), so a signal to
    `imgproc run`'s process group would not reach it otherwise. Its pool children get the same
    from Celery's prefork pool."""
    from billiard.util import set_pdeathsig

    def arm() -> None:
        set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return arm


def _hold_run_lock(data_dir):  # type: ignore[no-untyped-def]
    """One `imgproc run` per data directory: a second one would add a second worker. The lock
    goes with the process, however it ends (the descriptor is not inherited by the worker)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def cmd_run(args: argparse.Namespace) -> int:
    """Embedded mode: migrate, start a worker beside the API, stop both on Ctrl-C."""
    from app.core import metrics_export

    settings = get_settings()
    if _hold_run_lock(settings.DATA_DIR.resolve()) is None:
        print(f"imgproc run: another `imgproc run` uses {settings.DATA_DIR.resolve()}", file=sys.stderr)
        return 1
    # The API and its worker record metrics in two directories of one tree, and the API serves
    # both merged on /metrics (app.core.metrics_export); set before anything defines a metric.
    metrics_tree = metrics_export.process_directory(settings, "run")
    worker_metrics = metrics_tree / "worker"
    metrics_export.serve_directories([metrics_export.record_in(metrics_tree / "api"), worker_metrics])

    from app.tasks.schema import upgrade

    upgrade()
    settings.webhook_secret()  # create the shared key before two processes race for it
    worker = subprocess.Popen(
        [sys.executable, "-m", _entry_module(), "worker", f"--metrics-dir={worker_metrics}"],
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - no threads run yet
    )
    try:
        print(f"imgproc: http://{settings.HOST}:{settings.PORT}/frontend/  (API docs: /docs)", flush=True)
        # uvicorn re-raises SIGTERM with the default handler after its shutdown, which would
        # skip the `finally` below and orphan the worker; exit normally instead.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        return cmd_api(args)
    finally:
        stop_worker(worker, grace=RUN_WORKER_GRACE_SECONDS)
        metrics_export.remove(metrics_tree)


def stop_worker(worker: subprocess.Popen, *, grace: float) -> None:
    """Celery's warm shutdown (to the main process only: it stops its pool itself), then the
    whole worker session killed once the grace is over."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="run a Celery worker (other options go to `celery worker`)")
    worker.add_argument(
        "--metrics-dir",
        help="record metrics in this directory (wiped at start) for the process that started the worker to "
        "serve (`imgproc run` does); the worker then opens no metrics port",
    )
    worker.set_defaults(func=cmd_worker)
    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.add_argument("--wait", type=float, default=0, help="seconds to wait for the database to come up")
    migrate.add_argument(
        "--check", action="store_true", help="change nothing; wait (up to --wait) until another process migrated"
    )
    migrate.set_defaults(func=cmd_migrate)
    probe = sub.add_parser("worker-probe", help="exit 0 iff the worker heartbeat is fresh")
    probe.add_argument("--max-age", type=float, default=60)
    probe.set_defaults(func=cmd_worker_probe)
    sub.add_parser("flower", help="run Celery Flower").set_defaults(func=cmd_flower)
    operator = sub.add_parser("operator", help="run the autoscaling operator")
    operator.add_argument(
        "--uninstall",
        metavar="SELECTOR",
        help="instead: delete the WorkerAutoscalers matching this label selector and wait until "
        "the operator released them (the chart's pre-delete hook)",
    )
    operator.add_argument("--timeout", type=float, default=60, help="with --uninstall: seconds to wait")
    operator.set_defaults(func=cmd_operator)
    sub.add_parser("reconcile", help="re-enqueue stale unfinished tasks once").set_defaults(func=cmd_requeue)
    storage = sub.add_parser("storage", help="file storage maintenance")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True)
    storage_migrate = storage_sub.add_parser(
        "migrate", help="copy originals and results from the file system into the S3 bucket (resumable)"
    )
    storage_migrate.add_argument(
        "--source", help="the storage directory to copy from (default: IMGPROC_STORAGE_DIR or <DATA_DIR>/storage)"
    )
    storage_migrate.add_argument("--dry-run", action="store_true", help="list what would be copied, copy nothing")
    storage_migrate.set_defaults(func=cmd_storage_migrate)
    smoke = sub.add_parser("smoke", help="check a running API: health and one upload round trip")
    smoke.add_argument("--url", required=True)
    smoke.add_argument("--timeout", type=float, default=120)
    smoke.set_defaults(func=cmd_smoke)
    run = sub.add_parser("run", help="embedded mode: migrate, API and a worker in one command")
    run.add_argument("--reload", action="store_true", help="reload the API when code changes")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "worker":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_args = extra
    configure_logging(get_settings())
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
