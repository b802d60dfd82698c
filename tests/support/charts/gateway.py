"""The Gateway API CRDs scripts/k8s-tools copies into its bin directory, by kind."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

GATEWAY_CRDS = "gateway-api-standard-install.yaml"


@functools.cache
def gateway_crds(bin_dir: Path) -> dict[str, dict[str, Any]]:
    path = bin_dir / GATEWAY_CRDS
    if not path.exists():
        pytest.skip(f"{path} is missing: run scripts/k8s-tools")
    return {doc["spec"]["names"]["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}
