"""`imgproc smoke` (the chart's `helm test`) against a running service."""

from __future__ import annotations

import pytest

from app.smoke import smoke
from tests.fixtures.services import embedded_env, running_stack

pytestmark = pytest.mark.integration


def test_smoke_passes_over_plain_http_with_the_clusters_secure_cookie(tmp_path):
    # The chart's defaults: COOKIE_SECURE on, and `helm test` calls the Service over http.
    env = {**embedded_env(tmp_path / "data"), "IMGPROC_COOKIE_SECURE": "true"}
    with running_stack(env, tmp_path / "logs") as stack:
        assert smoke(stack.url, timeout=60) == 0


def test_smoke_follows_the_signed_url_of_the_s3_backend(tmp_path, s3_server, s3_prefix, capsys):
    env = {**embedded_env(tmp_path / "data"), **s3_server.settings_env(s3_prefix), "IMGPROC_COOKIE_SECURE": "true"}
    with running_stack(env, tmp_path / "logs") as stack:
        assert smoke(stack.url, timeout=60) == 0
    assert "from a signed URL" in capsys.readouterr().out
