"""Process configuration (from IMGPROC_* via app.core.config) and kopf's operator settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import kopf

from autoscaler import GROUP

# Our own finalizer name instead of kopf.zalando.org/KopfFinalizerMarker.
FINALIZER = f"{GROUP}/finalizer"

POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str
    health_port: int
    metrics_port: int
    log_format: str  # "text" | "json"
    log_level: str

    @classmethod
    def load(cls) -> OperatorConfig:
        from app.core.config import get_settings  # allowed by the house style's boundary table

        settings = get_settings()
        namespace = settings.OPERATOR_NAMESPACE
        if not namespace and POD_NAMESPACE_FILE.exists():
            namespace = POD_NAMESPACE_FILE.read_text().strip()
        if not namespace:
            raise SystemExit("IMGPROC_OPERATOR_NAMESPACE is not set and no in-cluster namespace was found")
        return cls(
            namespace,
            settings.OPERATOR_HEALTH_PORT,
            settings.OPERATOR_METRICS_PORT,
            settings.LOG_FORMAT,
            settings.LOG_LEVEL.upper(),
        )


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings for a single-namespace, least-privilege operator."""
    # Events: only the explicit kopf.info/warn calls (scale changes, problem transitions);
    # kopf's own per-handler log lines are not posted (posting.loggers is False by default).
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    settings.posting.reporting_component = "imgproc-autoscaler"
    # The Role is namespaced: no CRD/namespace watching (it would need cluster-wide RBAC).
    # The CRD must exist when the operator starts; the chart installs it first (crds/).
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Re-establish watches regularly so a silently dropped connection cannot go unnoticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 15
    settings.networking.request_timeout = 30
