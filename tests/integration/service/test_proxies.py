"""Per-address limits see the real client only behind a configured proxy."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.services import embedded_env, running_stack


def new_session_statuses(url: str, forwarded_for: list[str]) -> list[int]:
    statuses = []
    for address in forwarded_for:
        with httpx.Client(base_url=url) as client:  # no cookie: each request asks for a new identity
            statuses.append(client.get("/api/tasks", headers={"X-Forwarded-For": address}).status_code)
    return statuses


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        ('["127.0.0.1"]', [200, 200, 200, 200]),  # the proxy is believed: four distinct clients
        ("[]", [200, 200, 429, 429]),  # spoofed header from an untrusted peer: one client
        # The default trusts nobody, loopback included: in embedded mode (`make run`) clients
        # connect on loopback themselves and used to pose as any address they liked.
        (None, [200, 200, 429, 429]),
    ],
    ids=["trusted-proxy", "untrusted-peer", "default"],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path, trusted, expected):
    env = {**embedded_env(tmp_path / "data"), "IMGPROC_NEW_USERS_PER_MINUTE_PER_IP": "2"}
    if trusted is not None:
        env["IMGPROC_TRUSTED_PROXIES"] = trusted
    with running_stack(env, tmp_path / "logs", workers=0) as stack:
        assert new_session_statuses(stack.url, ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]) == expected
