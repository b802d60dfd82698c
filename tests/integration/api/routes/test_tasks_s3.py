"""The task routes on the S3 backend (a real SeaweedFS): uploads land in the bucket, results
are a 302 to a signed URL (or streamed through the API when signed URLs are off), deletes
remove both objects, an outage is a 503 with nothing left behind."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.routes import tasks as tasks_routes
from app.storage import get_storage, result_key
from tests.fixtures.ports import free_port
from tests.support import images
from tests.support.tasks import complete, run_worker, upload


@pytest.fixture
def use_s3(configure, embedded, s3_server, s3_prefix, monkeypatch):
    """configure(**more) on top of the S3 settings of this test's prefix."""
    base = s3_server.settings_in_process(monkeypatch, s3_prefix)

    def apply(**more: object) -> None:
        configure(DATA_DIR=embedded, COOKIE_SECURE="false", **{**base, **more})

    apply()
    return apply


@pytest.fixture
def s3_client(use_s3, queue):
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver", follow_redirects=False) as client:
        yield client


def test_an_upload_is_stored_in_the_bucket_under_a_server_made_key(s3_client, s3_server, s3_prefix, queue):
    data = images.jpeg()
    response = upload(s3_client, data, name="../../etc/passwd.jpg")
    assert response.status_code == 200, response.text
    keys = s3_server.keys(s3_prefix)
    assert len(keys) == 1 and keys[0].startswith(f"{s3_prefix}originals/") and "passwd" not in keys[0]
    assert get_storage().read(keys[0].removeprefix(s3_prefix)) == data
    assert queue.sent == [response.json()["task_id"]]


def test_the_owner_is_redirected_to_a_short_lived_signed_url(s3_client, s3_server, s3_prefix):
    task_id = upload(s3_client, images.jpeg()).json()["task_id"]
    jpeg = images.jpeg(800, 600)
    complete(s3_client, task_id, jpeg)
    assert s3_client.get(f"/api/isReady/{task_id}").json()["result_path"] == f"results/{task_id}.jpg"  # legacy

    response = s3_client.get(f"/api/tasks/{task_id}/result")
    assert response.status_code == 302
    assert response.headers["cache-control"] == "private, no-store"
    location = response.headers["location"]
    assert location.startswith(f"{s3_server.endpoint_url}/{s3_server.bucket}/{s3_prefix}results/{task_id}.jpg?")
    assert "X-Amz-Expires=300" in location
    fetched = httpx.get(location)
    assert fetched.status_code == 200 and fetched.content == jpeg
    assert fetched.headers["content-type"] == "image/jpeg"
    # The ETag is ours, the same whichever way the bytes travel; a match is a 304, nothing signed.
    etag = response.headers["etag"]
    again = s3_client.get(f"/api/tasks/{task_id}/result", headers={"If-None-Match": etag})
    assert again.status_code == 304 and "location" not in again.headers


def test_each_variant_is_its_own_signed_url_and_a_delete_removes_them_all(use_s3, queue, s3_server, s3_prefix):
    presets = [
        {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp", "avif"]},
        {"name": "web", "width": 800, "height": 600, "formats": ["jpeg"], "default": True},
    ]
    use_s3(PRESETS=json.dumps(presets))
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver", follow_redirects=False) as client:
        files = {"file": ("p.jpg", images.jpeg(1200, 900), "image/jpeg")}
        task_id = client.post("/api/newTask", files=files, data={"presets": "thumb,web"}).json()["task_id"]
        run_worker(client, task_id)
        assert sorted(k.removeprefix(s3_prefix) for k in s3_server.keys(s3_prefix) if "results" in k) == [
            f"results/{task_id}.jpg",
            f"results/{task_id}/thumb.avif",
            f"results/{task_id}/thumb.webp",
        ]
        for variant in client.get(f"/api/tasks/{task_id}").json()["variants"]:
            response = client.get(variant["url"])
            assert response.status_code == 302
            fetched = httpx.get(response.headers["location"])
            assert fetched.headers["content-type"] == f"image/{variant['format']}"
            assert len(fetched.content) == variant["size"]
        negotiated = client.get(f"/api/tasks/{task_id}/results/thumb", headers={"accept": "image/avif"})
        assert negotiated.status_code == 302 and negotiated.headers["vary"] == "Accept"
        assert "/thumb.avif?" in negotiated.headers["location"]
        assert client.delete(f"/api/tasks/{task_id}").status_code == 204
    assert s3_server.keys(s3_prefix) == []


def test_another_users_task_is_404_before_anything_is_signed(use_s3, queue, monkeypatch):
    from app.main import create_app
    from app.storage.s3 import S3Storage

    signed: list[str] = []
    real = S3Storage.signed_url
    monkeypatch.setattr(S3Storage, "signed_url", lambda self, key, **kw: signed.append(key) or real(self, key, **kw))
    app = create_app()
    signed.clear()  # the page's image origin is worked out once at start-up
    with TestClient(app, follow_redirects=False) as alice, TestClient(app, follow_redirects=False) as bob:
        task_id = upload(alice, images.jpeg()).json()["task_id"]
        complete(alice, task_id, images.jpeg(80, 60))
        assert bob.get(f"/api/tasks/{task_id}/result").status_code == 404
        assert signed == []
        assert alice.get(f"/api/tasks/{task_id}/result").status_code == 302
        assert signed == [f"results/{task_id}.jpg"]


@pytest.mark.parametrize("whole_max", [tasks_routes.WHOLE_RESULT_MAX_BYTES, 0], ids=["from-memory", "streamed"])
def test_with_signed_urls_off_the_api_sends_the_bytes_with_etag_and_caching(use_s3, queue, monkeypatch, whole_max):
    from app.main import create_app

    monkeypatch.setattr(tasks_routes, "WHOLE_RESULT_MAX_BYTES", whole_max)
    use_s3(S3_SIGNED_URLS="false")
    with TestClient(create_app(), follow_redirects=False) as client:
        task_id = upload(client, images.jpeg()).json()["task_id"]
        jpeg = images.jpeg(800, 600)
        complete(client, task_id, jpeg)
        response = client.get(f"/api/tasks/{task_id}/result")
        assert response.status_code == 200 and response.content == jpeg
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["content-length"] == str(len(jpeg))
        assert response.headers["cache-control"] == "private, max-age=86400"
        etag = response.headers["etag"]
        assert client.get(f"/api/tasks/{task_id}/result", headers={"If-None-Match": etag}).status_code == 304
        complete_again = images.jpeg(640, 480)  # a re-run overwrote the result: a new ETag
        get_storage().write(result_key(task_id), complete_again, content_type="image/jpeg")
        changed = client.get(f"/api/tasks/{task_id}/result", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.content == complete_again and changed.headers["etag"] != etag


def test_a_result_missing_from_the_bucket_is_404(s3_client):
    task_id = upload(s3_client, images.jpeg()).json()["task_id"]
    complete(s3_client, task_id, b"x")
    get_storage().delete(result_key(task_id))
    assert s3_client.get(f"/api/tasks/{task_id}/result").status_code == 404


def test_delete_removes_the_row_and_both_objects(s3_client, s3_server, s3_prefix):
    task_id = upload(s3_client, images.jpeg()).json()["task_id"]
    complete(s3_client, task_id, b"result")
    assert len(s3_server.keys(s3_prefix)) == 2
    assert s3_client.delete(f"/api/tasks/{task_id}").status_code == 204
    assert s3_client.get(f"/api/tasks/{task_id}").status_code == 404
    assert s3_server.keys(s3_prefix) == []


def test_an_unreachable_store_is_503_at_upload_with_no_row_and_nothing_stored(use_s3, queue):
    from app.main import create_app

    use_s3(S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", S3_MAX_ATTEMPTS=1, S3_CONNECT_TIMEOUT=0.5)
    with TestClient(create_app()) as client:
        response = upload(client, images.jpeg())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {"detail": "File storage is unavailable; retry shortly."}
        assert client.get("/api/tasks").json()["total"] == 0
        assert queue.sent == []


def test_delete_during_an_outage_is_503_and_keeps_the_task(use_s3, queue, s3_server, s3_prefix):
    from app.main import create_app

    with TestClient(create_app()) as client:
        task_id = upload(client, images.jpeg()).json()["task_id"]
        use_s3(S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", S3_MAX_ATTEMPTS=1, S3_CONNECT_TIMEOUT=0.5)
        response = client.delete(f"/api/tasks/{task_id}")
        assert response.status_code == 503 and response.headers["retry-after"]
        assert json.loads(response.text)["detail"]
        assert client.get(f"/api/tasks/{task_id}").status_code == 200
    assert len(s3_server.keys(s3_prefix)) == 1


def test_the_page_admits_images_from_the_signed_url_origin_only_when_signing(use_s3, s3_server, queue):
    from app.main import create_app

    with TestClient(create_app()) as client:
        page = client.get("/frontend/")
    assert page.status_code == 200
    assert f"img-src 'self' {s3_server.endpoint_url} blob: data:" in page.text
    use_s3(S3_SIGNED_URLS="false")
    with TestClient(create_app()) as client:
        assert "img-src 'self' blob: data:" in client.get("/frontend/").text
