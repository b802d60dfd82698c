"""Figures for `scripts/reliability.py`: one JSON object per line, appended to the file named
by IMGPROC_TEST_RELIABILITY_REPORT. Without that variable, record() does nothing, so tests
call it unconditionally.

(The IMGPROC_TEST_ prefix is deliberate: tests/conftest.py removes every other IMGPROC_
variable from the environment before any test runs.)

Schema, by "kind" (every figure is an int unless noted):

  fault    name (str), faults (faults injected), accepted (uploads answered 200),
           completed, failed, failed_reasons ({reason: count}), lost (accepted but never
           terminal), duplicated (result files beyond one per completed task),
           redelivered (tasks executed more than once), refused (uploads answered 503 during
           the fault), server_errors (other 5xx), seconds (float, wall time of the scenario),
           recovery_seconds (float, optional: from the restart after a crash to the last
           stranded task completed; scripts/reliability.py holds it to 60 s)
  hostile  tried, refused (clean outcomes), 5xx
  load     uploads, users, workers, accepted, completed, failed, lost, duplicated,
           uploads_per_s (float), upload_p50_ms/upload_p95_ms/upload_p99_ms (float),
           complete_p50_ms/complete_p95_ms (float, upload sent -> task completed),
           errors ({status: count}), isolation_ok (bool), seconds (float)
  clients  name (str), and what the scenario measured, any of: status_requests, status_p95_ms,
           status_max_ms (float), status_refused (the well-behaved client's 5xx and timeouts),
           rss_before_mb/rss_growth_mb (float), most_accepted_kib, header_timeout_s,
           last_closed_s, body_grace_s, seconds (float), sent_kib, slow_endings ({how the
           hostile connections ended: "408", "503", "431", "closed", "held": count})
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "IMGPROC_TEST_RELIABILITY_REPORT"
KINDS = ("fault", "hostile", "load", "clients")


def record(kind: str, **figures: Any) -> None:
    """Appends {"kind": kind, **figures} as one line, if IMGPROC_TEST_RELIABILITY_REPORT is set."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    path = os.environ.get(ENV)
    if not path:
        return
    line = (json.dumps({"kind": kind, **figures}, sort_keys=True, default=str) + "\n").encode()
    # One write() on an O_APPEND descriptor: lines from concurrent writers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every record in the file (blank or broken lines are skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and item.get("kind") in KINDS:
            records.append(item)
    return records
