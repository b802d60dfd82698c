from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def test_health_keeps_the_contract(client):
    response = client.get("/")
    assert response.json() == {"status": "healthy", "message": "Image processing service is running"}
    assert "set-cookie" not in response.headers  # probes must not mint users


def test_livez(client):
    assert client.get("/livez").status_code == 200


def test_readyz_reports_each_dependency(client):
    body = client.get("/readyz").json()
    assert body == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}


def test_readyz_is_503_when_the_broker_is_unreachable(configure, embedded):
    from app.main import create_app

    configure(BROKER_URL="redis://127.0.0.1:1/0")
    with TestClient(create_app()) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "unreachable", "storage": "ok"}


def test_readyz_is_503_when_the_object_store_is_unreachable(embedded, unreachable_s3):
    from app.main import create_app

    unreachable_s3()
    with TestClient(create_app()) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "unreachable"}


def test_the_app_refuses_to_start_on_an_unmigrated_database(configure, tmp_path):
    from app.main import create_app
    from app.tasks.schema import DatabaseNotMigrated

    configure(DATA_DIR=tmp_path / "fresh")
    with pytest.raises(DatabaseNotMigrated, match="imgproc migrate"), TestClient(create_app()):
        pass


def test_openapi_documents_errors_and_examples(client):
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/api/newTask"]["post"]
    assert {"200", "413", "415", "422", "429", "503"} <= set(upload["responses"])
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200
