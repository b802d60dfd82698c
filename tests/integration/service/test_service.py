"""The whole path with real processes: API + worker on PostgreSQL + Redis (with results on the
file system or in a real S3-compatible store), and embedded."""

from __future__ import annotations

import json
import random
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.services import embedded_env, running_stack, server_env
from tests.support import images
from tests.support.tasks import wait_for_terminal


@pytest.fixture
def server_stack(pg_database, redis_server, tmp_path):
    redis_db = f"{redis_server.rsplit('/', 1)[0]}/{random.randint(1, 15)}"
    with running_stack(server_env(pg_database, redis_db, tmp_path / "data"), tmp_path / "logs") as stack:
        yield stack


@pytest.fixture
def s3_stack(pg_database, redis_server, s3_server, s3_prefix, tmp_path):
    """API and worker share no directory: originals and results live in the bucket only."""
    redis_db = f"{redis_server.rsplit('/', 1)[0]}/{random.randint(1, 15)}"
    env = {
        **server_env(pg_database, redis_db, tmp_path / "data"),
        **s3_server.settings_env(s3_prefix),
        "IMGPROC_S3_SIGNED_URL_SECONDS": "3",
    }
    with running_stack(env, tmp_path / "logs") as stack:
        yield stack


@pytest.fixture
def embedded_stack(tmp_path):
    with running_stack(embedded_env(tmp_path / "data"), tmp_path / "logs") as stack:
        yield stack


def round_trip(stack) -> None:
    with stack.client() as client:
        source = images.jpeg(2400, 1200, orientation=6, gps=True)  # rotated: 1200x2400 upright
        created = client.post("/api/newTask", files={"file": ("p.jpg", source, "image/jpeg")})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        status = wait_for_terminal(client, task_id, timeout=60)
        assert status["status"] == "completed", (status, stack.logs("worker0"))
        metadata = json.loads(status["metadata"])
        assert metadata["original_size"] == len(source)
        assert (metadata["original_width"], metadata["original_height"]) == (2400, 1200)
        assert (metadata["width"], metadata["height"]) == (300, 600)

        result = client.get(f"/api/tasks/{task_id}/result", follow_redirects=True)
        assert result.status_code == 200
        assert metadata["processed_size"] == len(result.content)
        image = images.decode(result.content)
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.size == (300, 600)
        assert not image.getexif() and "exif" not in image.info
        # EXIF orientation 6 means "rotate 90° clockwise": the red top-left marker ends up top-right.
        assert image.getpixel((image.width - 10, 10))[0] > 200
        assert image.getpixel((10, 10))[0] < 100


def test_round_trip_on_postgresql_and_redis(server_stack):
    round_trip(server_stack)


def test_round_trip_in_embedded_mode(embedded_stack):
    round_trip(embedded_stack)


def test_a_bad_image_that_passes_upload_checks_ends_failed_with_a_reason(server_stack):
    # Valid headers and checksums, garbage pixel data: only decoding finds it, in the worker.
    with server_stack.client() as client:
        created = client.post("/api/newTask", files={"file": ("x.png", images.corrupt_png(), "image/png")})
        assert created.status_code == 200, created.text
        status = wait_for_terminal(client, created.json()["task_id"])
    assert status["status"] == "failed" and "corrupt" in status["error"]
    assert server_stack.workers[0].poll() is None  # the worker survived


def test_two_users_are_isolated_end_to_end(server_stack):
    with server_stack.client() as alice, server_stack.client() as bob:
        task_id = alice.post("/api/newTask", files={"file": ("a.jpg", images.jpeg(), "image/jpeg")}).json()["task_id"]
        wait_for_terminal(alice, task_id)
        for path in (f"/api/isReady/{task_id}", f"/api/tasks/{task_id}", f"/api/tasks/{task_id}/result"):
            assert bob.get(path).status_code == 404
        assert bob.delete(f"/api/tasks/{task_id}").status_code == 404
        assert bob.get("/api/tasks").json()["total"] == 0
        assert alice.get(f"/api/tasks/{task_id}/result").status_code == 200


def test_a_chunked_upload_is_cut_off_while_it_streams(tmp_path):
    """Over a real socket: the 413 arrives long before the client has sent everything."""
    import select
    import socket

    limit = 2 * 1024 * 1024
    env = {**embedded_env(tmp_path / "data"), "IMGPROC_MAX_UPLOAD_BYTES": str(limit)}
    with running_stack(env, tmp_path / "logs", workers=0) as stack:
        sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
        head = (
            "POST /api/newTask HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        sock.sendall(head.encode())
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\xff" * 65536
        sent = 0
        answer = b""
        try:
            while sent < 32 * limit:
                if select.select([sock], [], [], 0)[0]:
                    answer = sock.recv(65536)
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not answer:
            answer = sock.recv(65536)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # What the client got out before the answer includes the loopback socket buffers
    # (several MiB), hence the margin; a server that read the whole body would take all 64 MiB.
    assert sent < 8 * limit, f"client sent {sent} bytes before the refusal"


def test_round_trip_on_postgresql_redis_and_s3(s3_stack, s3_server, s3_prefix):
    round_trip(s3_stack)
    assert not (s3_stack.storage_dir).exists()  # nothing went through a local directory
    assert {k.split("/")[-2] for k in s3_server.keys(s3_prefix)} == {"originals", "results"}


def _signed(client: httpx.Client, task_id: int) -> str:
    response = client.get(f"/api/tasks/{task_id}/result")
    assert response.status_code == 302, response.text
    return response.headers["location"]


def test_on_s3_the_download_is_a_signed_url_that_the_store_checks(s3_stack):
    with s3_stack.client() as alice, s3_stack.client() as bob:
        created = alice.post("/api/newTask", files={"file": ("p.jpg", images.jpeg(1200, 900), "image/jpeg")})
        task_id = created.json()["task_id"]
        assert wait_for_terminal(alice, task_id, timeout=60)["status"] == "completed", s3_stack.logs("worker0")
        # Another user's task: 404 from the API, before any URL is made.
        foreign = bob.get(f"/api/tasks/{task_id}/result")
        assert foreign.status_code == 404 and "location" not in foreign.headers

        url = _signed(alice, task_id)
        fetched = httpx.get(url)
        assert fetched.status_code == 200 and images.decode(fetched.content).size == (800, 600)

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        assert httpx.get(urlunsplit(parts._replace(query=urlencode(query)))).status_code == 403  # tampered

        time.sleep(4)  # IMGPROC_S3_SIGNED_URL_SECONDS=3
        assert httpx.get(url).status_code == 403  # expired
        assert httpx.get(_signed(alice, task_id)).status_code == 200  # the owner just asks again
