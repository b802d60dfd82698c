"""app.api.errors: the answers shaped outside the routes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/newTask", "POST"),
        ("POST", "/api/tasks/7", "DELETE, GET"),  # two routes on one path: both methods
        ("PUT", "/api/presets", "GET"),
    ],
)
def test_a_method_not_allowed_names_every_method_of_the_path(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["detail"] == "Method Not Allowed"
