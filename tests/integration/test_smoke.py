"""`imgproc smoke` (the chart's `helm test`) against a running service."""

from __future__ import annotations

import pytest

from app.smoke import smoke
from tests.fixtures.services import embedded_env, running_stack


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


def test_the_first_health_check_waits_for_a_service_that_refuses_connections_at_first(monkeypatch):
    # As a new pod's traffic is refused until the NetworkPolicy enforcer has programmed it.
    import http.server
    import json
    import threading
    import time

    import httpx

    from app import smoke as smoke_module
    from tests.fixtures.ports import free_port

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"status": "healthy"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    servers = []

    def serve_later():
        time.sleep(1.5)
        server = http.server.HTTPServer(("127.0.0.1", port), Health)
        servers.append(server)
        server.serve_forever()

    threading.Thread(target=serve_later, daemon=True).start()
    started = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert smoke_module.first_health_check(client) == {"status": "healthy"}
    assert time.monotonic() - started >= 1.5
    servers[0].shutdown()

    monkeypatch.setattr(smoke_module, "CONNECT_PATIENCE", 0.5)
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5) as client,
        pytest.raises(httpx.ConnectError),
    ):
        smoke_module.first_health_check(client)
