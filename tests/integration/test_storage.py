"""The storage contract on real S3-compatible servers that check signatures (SeaweedFS, and
versitygw as the chart bundles it; tests/fixtures/s3.py), and what only S3 has: signed URLs,
credentials, TLS with a private CA."""

from __future__ import annotations

import os
import ssl
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from app.core.config import Settings
from app.storage import Storage, StorageUnavailable, make_storage
from app.storage.s3 import S3Storage
from tests.support.storage_contract import StorageContract


@pytest.fixture(params=["seaweedfs", "versitygw"])
def storage(request, monkeypatch) -> Storage:
    server = request.getfixturevalue("s3_server" if request.param == "seaweedfs" else "versitygw_server")
    return make_storage(Settings(**server.settings_in_process(monkeypatch, request.getfixturevalue("s3_prefix"))))


def s3_storage(server, monkeypatch, **settings: object) -> S3Storage:
    storage = make_storage(Settings(**{**server.settings_in_process(monkeypatch), **settings}))
    assert isinstance(storage, S3Storage)
    return storage


def test_keys_live_under_the_prefix(any_s3_server, monkeypatch, s3_prefix):
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix.rstrip("/"))
    storage.write("results/5.jpg", b"x")
    assert any_s3_server.keys(s3_prefix) == [f"{s3_prefix}results/5.jpg"]
    assert list(storage.list_keys("results/")) == ["results/5.jpg"]


def test_a_signed_url_serves_the_object_with_the_named_headers(any_s3_server, monkeypatch, s3_prefix):
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix, S3_SIGNED_URL_SECONDS=120)
    storage.write("results/9.jpg", b"\xff\xd8jpeg", content_type="image/jpeg")
    url = storage.signed_url("results/9.jpg", filename="imgproc-9.jpg", cache_seconds=86400)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=120" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"\xff\xd8jpeg"
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == 'attachment; filename="imgproc-9.jpg"'
    assert response.headers["cache-control"] == "private, max-age=120"


def _tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_tampered_signed_url_is_refused_by_the_server(any_s3_server, monkeypatch, s3_prefix):
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix)
    storage.write("results/10.jpg", b"secret")
    storage.write("results/11.jpg", b"other")
    url = storage.signed_url("results/10.jpg", filename="a.jpg", cache_seconds=60)
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert httpx.get(_tampered(url, **{"X-Amz-Signature": flipped})).status_code == 403
    assert httpx.get(_tampered(url, **{"X-Amz-Expires": "604800"})).status_code == 403
    other = url.replace("results/10.jpg", "results/11.jpg")  # someone else's object, same signature
    assert httpx.get(other).status_code == 403


def test_an_expired_signed_url_is_refused_by_the_server(any_s3_server, monkeypatch, s3_prefix):
    # 3 s, not 1: X-Amz-Date has whole seconds, so a URL lives between 2 and 3 s, and the first
    # request must land inside that on a busy machine.
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix, S3_SIGNED_URL_SECONDS=3)
    storage.write("results/12.jpg", b"x")
    signed = time.monotonic()
    url = storage.signed_url("results/12.jpg", filename="a.jpg", cache_seconds=60)
    assert httpx.get(url).status_code == 200
    time.sleep(max(0.0, signed + 4.5 - time.monotonic()))
    assert httpx.get(url).status_code == 403


def test_signed_urls_name_the_public_endpoint_and_still_verify(any_s3_server, monkeypatch, s3_prefix):
    """Signed by a second client set up for the host browsers reach (here: localhost instead of
    127.0.0.1, the same server), so the signature covers the public host."""
    public = any_s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix, S3_PUBLIC_ENDPOINT_URL=public)
    storage.write("results/13.jpg", b"x")
    url = storage.signed_url("results/13.jpg", filename="a.jpg", cache_seconds=60)
    assert url.startswith(public + "/")
    assert httpx.get(url).status_code == 200
    assert httpx.get(url.replace("localhost", "127.0.0.1")).status_code == 403  # host is signed


def test_signed_urls_can_be_switched_off(any_s3_server, monkeypatch):
    storage = s3_storage(any_s3_server, monkeypatch, S3_SIGNED_URLS="false")
    assert storage.signed_url("results/1.jpg", filename="a.jpg", cache_seconds=60) is None


def test_wrong_credentials_are_unavailable_not_a_crash(any_s3_server, monkeypatch):
    storage = s3_storage(any_s3_server, monkeypatch)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    storage._clients = None  # a process that started with the wrong secret
    with pytest.raises(StorageUnavailable):
        storage.write("results/1.jpg", b"x")
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_the_client_is_made_once_per_process_and_again_after_a_fork(any_s3_server, monkeypatch, s3_prefix):
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix)
    storage.write("results/20.jpg", b"parent")
    first = storage.client
    assert storage.client is first  # one client, reused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a Celery prefork child: its own client, which works
        try:
            os.close(read)
            ok = storage.client is not first and storage.read("results/20.jpg") == b"parent"
            storage.write("results/21.jpg", b"child")
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert storage.read("results/21.jpg") == b"child"
    assert storage.client is first


def test_an_endpoint_with_a_private_ca_is_verified_with_the_configured_bundle(tmp_path, monkeypatch):
    from tests.fixtures.s3 import S3Server, make_private_ca

    server = S3Server(tmp_path / "tls-s3", tls=make_private_ca(tmp_path / "ca"))
    server.start()
    try:
        storage = s3_storage(server, monkeypatch, S3_CA_BUNDLE=str(server.tls[0]))
        assert storage.endpoint_url.startswith("https://")
        storage.write("results/1.jpg", b"over tls")
        assert storage.read("results/1.jpg") == b"over tls"
        url = storage.signed_url("results/1.jpg", filename="a.jpg", cache_seconds=60)
        assert httpx.get(url, verify=ssl.create_default_context(cafile=server.tls[0])).content == b"over tls"
        untrusting = s3_storage(server, monkeypatch, S3_MAX_ATTEMPTS=1)  # the system CAs only
        with pytest.raises(StorageUnavailable, match="SSL|certificate"):
            untrusting.read("results/1.jpg")
    finally:
        server.stop()


class TestS3Storage(StorageContract):
    """The contract on each S3 server. (its tests: tests/support/storage_contract.py)"""
