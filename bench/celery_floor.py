"""What the queue alone costs per task: the service's exact Celery settings, one no-op task.

    python -m bench.celery_floor send COUNT DIRECTORY   # enqueue COUNT tasks
    python -m bench.celery_floor worker                 # run them (like `imgproc worker`)

Configured from IMGPROC_* like the service (same broker, acks_late, prefetch 1, prefork pool);
run it on its own IMGPROC_QUEUE_NAME so the service's worker never sees these tasks. Each task
only touches DIRECTORY/<n>.jpg, so bench_e2e times a drain of these exactly as it times a drain
of real results: by the files' modification times.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celery import Celery

from app.cli import worker_argv
from app.core import embedded_broker
from app.core.celery_app import celery_config
from app.core.config import get_settings

TOUCH = "imgproc.bench.touch"

embedded_broker.register()
app = Celery("imgproc-bench-floor")
app.conf.update(celery_config(get_settings()))


@app.task(name=TOUCH)
def touch(directory: str, number: int) -> None:
    Path(directory, f"{number}.jpg").touch()


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"]:
        count, directory = int(argv[1]), argv[2]
        Path(directory).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            app.send_task(TOUCH, args=[directory, number])
        return 0
    if argv[:1] == ["worker"]:
        app.worker_main(worker_argv(get_settings(), *argv[1:]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
