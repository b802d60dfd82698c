"""kopf wiring only: settings at startup, one daemon per WorkerAutoscaler, probe, cleanup.

Why a daemon and not a timer: ``@kopf.timer(interval=...)`` fixes the interval at
registration, but ``spec.pollingInterval`` is per object and may change at runtime. The
daemon's body is kopf's *live* view of the object, so each iteration re-reads the spec and
sleeps ``pollingInterval`` on the ``stopped`` flag (deletion and shutdown wake it at once).
A 1 s timer that skips until due would also work but logs "Timer succeeded" every second and
re-enters kopf's handler machinery for nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from autoscaler import GROUP, PLURAL, VERSION, metrics
from autoscaler.kube import Kube
from autoscaler.reconcile import Autoscaler
from autoscaler.scaling import DEFAULT_POLLING_INTERVAL
from autoscaler.settings import configure

log = logging.getLogger(__name__)


@kopf.on.startup()
def start_operator(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    memo.kube = Kube.from_environment()
    memo.autoscalers = {}  # (namespace, name) -> Autoscaler; shared by every object's memo copy


@kopf.daemon(GROUP, VERSION, PLURAL, id="scale-worker", cancellation_timeout=5.0, backoff=5.0)
async def scale_worker(
    body: kopf.Body,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    autoscaler = memo.autoscalers.setdefault((namespace, name), Autoscaler(namespace, name, memo.kube))
    autoscaler.logger = logger
    try:
        while not stopped:
            try:
                interval = await autoscaler.poll(body)
            except Exception as exc:  # a bug or an API outage must not stop scaling for good
                logger.exception("poll failed; retrying")
                try:
                    interval = await autoscaler.poll_failed(body, exc)
                except Exception:  # the API server itself is unreachable: the log is all we have
                    interval = DEFAULT_POLLING_INTERVAL
            await stopped.wait(interval)
    finally:
        autoscaler.close()
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            memo.autoscalers.pop((namespace, name), None)
            metrics.forget(namespace, name)


@kopf.on.probe(id="autoscalers")
def count_autoscalers(memo: kopf.Memo, **_: Any) -> int:
    return len(getattr(memo, "autoscalers", {}))


@kopf.on.cleanup()
def release_finalizers(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf puts a finalizer on every object that has a daemon. Take it off on shutdown so a
    WorkerAutoscaler deleted while no operator runs (``helm uninstall``, namespace deletion)
    does not hang in Terminating; the next operator start puts it back."""
    kube: Kube | None = getattr(memo, "kube", None)
    if kube is None:
        return
    for namespace, name in list(getattr(memo, "autoscalers", {})):
        try:
            kube.remove_finalizer(namespace, name, settings.persistence.finalizer)
        except Exception as exc:  # best effort; shutdown goes on
            log.warning("%s/%s: finalizer not removed: %s", namespace, name, exc)
    kube.close()
