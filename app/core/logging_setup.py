"""Logging set-up, called by entry points only."""

from __future__ import annotations

import logging

from app.core.config import Settings


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.LOG_FORMAT == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL.upper())
