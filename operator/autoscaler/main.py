"""``imgproc operator`` / ``python -m autoscaler``: run kopf standalone in one namespace.

* liveness: ``http://0.0.0.0:<IMGPROC_OPERATOR_HEALTH_PORT>/healthz`` (kopf's probe server),
* metrics: prometheus_client on ``IMGPROC_OPERATOR_METRICS_PORT`` (``/metrics``),
* logs: kopf's JSON formatter when ``IMGPROC_LOG_FORMAT=json``.

``--standalone``: no peering objects and no peering RBAC. Run one replica with
``strategy: Recreate`` (two operators would both scale; the decisions are idempotent
absolute targets, so the harm is limited to duplicated events).
"""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from autoscaler.settings import OperatorConfig


def run() -> int:
    config = OperatorConfig.load()
    logging.getLogger().handlers.clear()  # app.cli may have installed its own handler: no duplicates
    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        verbose=config.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(config.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per liveness probe otherwise
    start_http_server(config.metrics_port)

    import autoscaler.handlers  # noqa: F401  # registers the handlers with kopf's default registry

    logging.getLogger(__name__).info(
        "serving WorkerAutoscalers in namespace %s (health :%d, metrics :%d)",
        config.namespace,
        config.health_port,
        config.metrics_port,
    )
    kopf.run(
        standalone=True,
        namespaces=[config.namespace],
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
    )
    return 0
