"""How metrics are recorded across processes and served (the definitions: app/core/metrics.py,
worker/metrics.py).

* A process tree whose metrics are served records them in a directory of its own
  (prometheus_client's multiprocess mode): the Celery worker's prefork children each write their
  own files there, which outlive them, so a scrape of the main process sees every child's counts,
  those of children that exited or were killed included. ``record_in`` wipes the directory first:
  a restarted container keeps /tmp (an emptyDir) and its pid (1), and old counts must not come
  back. One directory per process tree (``process_directory``), so two workers on one host never
  wipe each other's.
* ``imgproc worker``: its main process serves its directory on IMGPROC_METRICS_PORT.
* ``imgproc api``: one process (uvicorn without --workers, app/server.py); it serves its own
  metrics on IMGPROC_METRICS_PORT from memory, no directory needed.
* ``imgproc run`` (embedded): the API and the worker record in two directories of one tree, and
  the API serves both merged, on ``/metrics`` of the API itself (there is no ingress in front of
  it) and on IMGPROC_METRICS_PORT if set.
* Nothing served (the port 0 and not embedded): no directory, no file writes; the metrics stay
  in memory where nobody reads them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector, generate_latest, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.core.config import Settings

# The modules that define metrics: they must be imported after the directory is set, or their
# values would live in memory, invisible to the scrape.
_METRIC_MODULES = ("app.core.metrics", "worker.metrics")
_recording_in: Path | None = None
_served: CollectorRegistry = REGISTRY  # what /metrics and the metrics port answer with


def process_directory(settings: Settings, role: str) -> Path:
    """The directory of this process tree: ``<IMGPROC_METRICS_DIR>/imgproc-metrics-<role>-<pid>``
    (default: the system's temporary directory)."""
    base = settings.METRICS_DIR or Path(tempfile.gettempdir())
    return (base / f"imgproc-metrics-{role}-{os.getpid()}").resolve()


def record_in(directory: Path) -> Path:
    """Switches this process (and the processes it forks or starts later) to multiprocess
    metrics in ``directory``, wiped first. Call before anything defines a metric."""
    global _recording_in
    loaded = [name for name in _METRIC_MODULES if name in sys.modules]
    if loaded:
        raise RuntimeError(f"metrics defined before their directory was set: {loaded}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # prometheus_client reads this variable itself, in this process and in every child that
    # inherits the environment (the prefork pool, the worker `imgproc run` starts); the one
    # place it is set, from the settings (IMGPROC_METRICS_DIR) via process_directory.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if "prometheus_client.values" in sys.modules:  # imported already: its value class was chosen then
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    _recording_in = directory
    return directory


def forget_process(pid: int) -> None:
    """A process of the tree is ending: its live gauges (in-flight counts) go with it; its
    counters and histograms stay, so the totals survive it."""
    if _recording_in is not None:
        mark_process_dead(pid, str(_recording_in))


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DirectoriesCollector:
    """Every metric recorded in ``directories``, each series summed over the processes that wrote
    it. A live gauge of a process that died without saying so (a SIGKILLed pool child never runs
    its shutdown signal) is left out: it counted what that process had in hand."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = list(directories)

    def files(self) -> list[str]:
        found = []
        for directory in self.directories:
            for path in directory.glob("*.db"):
                kind, _, rest = path.stem.partition("_")
                mode, _, pid = rest.rpartition("_")
                if kind == "gauge" and mode.startswith("live") and pid.isdigit() and not _alive(int(pid)):
                    continue
                found.append(str(path))
        return found

    def collect(self) -> Iterable[Metric]:
        return MultiProcessCollector.merge(self.files(), accumulate=True)


def serve_directories(directories: Sequence[Path], *collectors: Any) -> CollectorRegistry:
    """Makes the merged ``directories`` (plus ``collectors`` and this process's own CPU and
    memory) what this process serves."""
    global _served
    registry = CollectorRegistry()
    registry.register(DirectoriesCollector(directories))
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    _served = registry
    return registry


def latest() -> bytes:
    """The exposition of what this process serves (its own registry unless serve_directories said
    otherwise: a process uvicorn's --reload started serves only itself)."""
    return generate_latest(_served)


@contextlib.contextmanager
def metrics_port(settings: Settings) -> Iterator[None]:
    """prometheus_client's HTTP server on IMGPROC_METRICS_HOST:IMGPROC_METRICS_PORT for the block
    (nothing with the port 0), answering with what this process serves (``latest``)."""
    if not settings.METRICS_PORT:
        yield
        return
    server, thread = start_http_server(settings.METRICS_PORT, addr=settings.METRICS_HOST, registry=_served)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
