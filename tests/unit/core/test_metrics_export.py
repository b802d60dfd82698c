"""Multiprocess recording and its merge (app/core/metrics_export.py). The switch to multiprocess
mode is process-wide, so it runs in a child Python, which forks a grandchild as a prefork pool
does; the merge is read here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from app.core.metrics_export import DirectoriesCollector
from tests.support.metrics import Scraped

# Records in the directory it is given: 1 upload in the main process, 2 in a forked child, and a
# status waiter left counted by each; then checks that a late switch is refused.
RECORDER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from app.core import metrics_export

    directory = metrics_export.record_in(Path(sys.argv[1]))
    from app.core import metrics

    metrics.UPLOADS_ACCEPTED.inc()
    metrics.STATUS_WAITERS.inc()
    child = os.fork()
    if child == 0:
        metrics.UPLOADS_ACCEPTED.inc(2)
        metrics.STATUS_WAITERS.inc()
        os._exit(0)
    os.waitpid(child, 0)
    try:
        metrics_export.record_in(directory)
    except RuntimeError as exc:
        print("refused:", exc)
    print("pids:", os.getpid(), child)
    """
)


def record(directory: Path) -> tuple[str, list[int]]:
    done = subprocess.run(
        [sys.executable, "-c", RECORDER, str(directory)], capture_output=True, text=True, check=True, timeout=60
    )
    lines = done.stdout.splitlines()
    return lines[0], [int(pid) for pid in lines[-1].split()[1:]]


def merged(*directories: Path) -> Scraped:
    registry = CollectorRegistry()
    registry.register(DirectoriesCollector(directories))
    return Scraped(generate_latest(registry).decode())


def test_a_process_tree_records_in_its_wiped_directory_and_the_merge_sums_every_process(tmp_path):
    directory = tmp_path / "worker"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left by an earlier container")  # wiped at start
    refusal, pids = record(directory)
    assert refusal.startswith("refused: metrics defined before their directory was set")
    assert sorted(path.name for path in directory.glob("counter_*.db")) == sorted(f"counter_{pid}.db" for pid in pids)

    scraped = merged(directory)
    assert scraped.value("imgproc_uploads_accepted_total") == 3  # both processes, both gone now
    assert scraped.value("imgproc_status_waiters") == 0  # live gauges of dead processes are left out

    # A live gauge of a process still running counts; a second tree's directory adds up.
    (directory / f"gauge_livesum_{pids[1]}.db").rename(directory / f"gauge_livesum_{os.getpid()}.db")
    other = tmp_path / "api"
    shutil.copytree(directory, other)
    scraped = merged(directory, other)
    assert scraped.value("imgproc_uploads_accepted_total") == 6
    assert scraped.value("imgproc_status_waiters") == 2


def test_a_directory_not_made_yet_merges_to_nothing(tmp_path):
    assert merged(tmp_path / "worker-not-started").value("imgproc_uploads_accepted_total") == 0
