"""The chart's pre-delete hook: delete the release's WorkerAutoscalers while the operator and its
credentials still exist.

kopf puts a finalizer on every object it runs a daemon for, and only a running operator takes it
off. ``helm uninstall`` deletes everything at once: the operator's ServiceAccount goes with it, so
its token is refused (401) before it can release the objects, and the WorkerAutoscaler, and with
it the namespace, would hang in Terminating. Run first, this hook lets the operator release them
normally, and takes the finalizer off itself when no operator answers in time (it is not
running, or `--no-hooks` history left one behind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from autoscaler.kube import Kube, KubeError
from autoscaler.settings import FINALIZER

log = logging.getLogger(__name__)


def delete_autoscalers(
    kube: Kube,
    namespace: str,
    selector: str,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 0.5,
) -> list[str]:
    """Delete the selected objects and wait until they are gone; return the ones left."""
    names = kube.autoscaler_names(namespace, selector)
    for name in names:
        kube.delete_autoscaler(namespace, name)
    deadline = clock() + timeout
    released = False
    while left := kube.autoscaler_names(namespace, selector):
        if clock() >= deadline:
            if released:
                return left
            # No operator released them: nothing else will, so do what it would have done.
            for name in left:
                log.warning(
                    "%s/%s: no operator released it within %.0f s; removing its finalizer", namespace, name, timeout
                )
                try:
                    kube.remove_finalizer(namespace, name, FINALIZER)
                except KubeError as exc:
                    log.warning("%s/%s: %s", namespace, name, exc)
            released, deadline = True, clock() + 10
        time.sleep(poll)
    log.info("deleted %d WorkerAutoscaler(s) in %s: %s", len(names), namespace, ", ".join(names) or "none")
    return []
