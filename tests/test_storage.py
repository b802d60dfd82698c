"""The storage contract, run against both backends: the file system, and real S3-compatible
servers that check signatures (SeaweedFS, and versitygw as the chart bundles it;
tests/fixtures/s3.py)."""

from __future__ import annotations

import io
import os
import ssl
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from app.core.config import Settings
from app.storage import Storage, StorageUnavailable, make_storage, new_original_key
from app.storage.filesystem import FileSystemStorage
from app.storage.s3 import S3Storage
from tests.fixtures.ports import free_port


@pytest.fixture(params=["filesystem", "seaweedfs", "versitygw"])
def storage(request, tmp_path, monkeypatch) -> Storage:
    if request.param == "filesystem":
        return FileSystemStorage(tmp_path / "storage")
    request.applymarker(pytest.mark.integration)
    server = request.getfixturevalue("s3_server" if request.param == "seaweedfs" else "versitygw_server")
    return make_storage(Settings(**server.settings_in_process(monkeypatch, request.getfixturevalue("s3_prefix"))))


def s3_storage(server, monkeypatch, **settings: object) -> S3Storage:
    storage = make_storage(Settings(**{**server.settings_in_process(monkeypatch), **settings}))
    assert isinstance(storage, S3Storage)
    return storage


class Exploding(io.RawIOBase):
    """A file object that breaks after `after` bytes: a client that vanished mid-upload."""

    def __init__(self, after: int) -> None:
        self.left = after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.left <= 0:
            raise OSError("connection reset by peer")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_bytes_written_read_back_whole(storage):
    key = new_original_key()
    storage.write(key, b"hello")
    assert storage.read(key) == b"hello"
    assert storage.exists(key)
    assert storage.stat(key).size == 5
    assert b"".join(storage.iter_bytes(key)) == b"hello"


@pytest.mark.parametrize("keep_cached", [True, False])
def test_a_write_is_whole_with_or_without_keeping_it_cached(storage, keep_cached):
    key = new_original_key()
    data = bytes(range(256)) * 4096
    storage.write(key, data, keep_cached=keep_cached)
    assert storage.read(key) == data
    assert list(storage.list_keys("originals/")) == [key]


def test_a_file_object_is_copied_in_chunks_including_a_multipart_sized_one(storage):
    data = os.urandom(9 * 1024 * 1024 + 123)  # above the 8 MiB multipart threshold
    key = new_original_key()
    storage.write(key, io.BytesIO(data))
    assert storage.read(key) == data
    assert storage.stat(key).size == len(data)


def test_an_overwrite_replaces_the_object_and_changes_its_version(storage):
    key = "results/41.jpg"
    storage.write(key, b"first", content_type="image/jpeg")
    before = storage.stat(key)
    time.sleep(0.01)
    storage.write(key, b"second!", content_type="image/jpeg")
    after = storage.stat(key)
    assert storage.read(key) == b"second!"
    assert (after.size, after.version != before.version) == (7, True)
    assert list(storage.list_keys("results/")) == [key]  # one result key per task, not two


def test_a_write_that_breaks_midway_leaves_the_old_object_or_none(storage):
    fresh, existing = new_original_key(), new_original_key()
    storage.write(existing, b"old")
    for key in (fresh, existing):
        with pytest.raises((OSError, StorageUnavailable)):
            storage.write(key, io.BufferedReader(Exploding(after=3 * 1024 * 1024)))
    assert not storage.exists(fresh)
    assert storage.read(existing) == b"old"
    assert sorted(storage.list_keys("originals/")) == [existing]  # no temporary or partial object visible


def test_a_missing_object_is_file_not_found_and_deleting_it_is_fine(storage):
    key = new_original_key()
    with pytest.raises(FileNotFoundError):
        storage.read(key)
    with pytest.raises(FileNotFoundError):
        list(storage.iter_bytes(key))
    assert storage.stat(key) is None and not storage.exists(key)
    storage.delete(key)


def test_delete_removes_the_object(storage):
    key = new_original_key()
    storage.write(key, b"x")
    storage.delete(key)
    assert not storage.exists(key)
    assert list(storage.list_keys("originals/")) == []


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "originals/../../x", "originals/a/b", "results/a/b.jpg", "other/x", "results/1.png", ""]
)
def test_only_server_made_keys_are_accepted(storage, key):
    for call in (storage.read, storage.stat, storage.delete, lambda k: storage.write(k, b"x")):
        with pytest.raises(ValueError, match="invalid storage key"):
            call(key)


def test_the_store_answers_its_readiness_check(storage):
    storage.check()


@pytest.mark.parametrize("keep_cached", [True, False])
def test_a_file_write_leaves_no_temporary_file(tmp_path, keep_cached):
    storage = FileSystemStorage(tmp_path)
    key = new_original_key()
    storage.write(key, b"x" * 100_000, keep_cached=keep_cached)
    storage.write(key, b"new", keep_cached=keep_cached)
    assert storage.read(key) == b"new"
    assert [path.name for path in (tmp_path / "originals").iterdir()] == [key.split("/")[1]]  # dot files too


def test_the_file_system_has_no_signed_urls(tmp_path):
    storage = FileSystemStorage(tmp_path)
    assert storage.signed_url("results/1.jpg", filename="x.jpg", cache_seconds=60) is None
    assert storage.local_path("results/1.jpg") == tmp_path / "results" / "1.jpg"


# --- S3 only ---------------------------------------------------------------------------

pytest_s3 = pytest.mark.integration


@pytest_s3
def test_keys_live_under_the_prefix(any_s3_server, monkeypatch, s3_prefix):
    storage = s3_storage(any_s3_server, monkeypatch, S3_PREFIX=s3_prefix.rstrip("/"))
    storage.write("results/5.jpg", b"x")
    assert any_s3_server.keys(s3_prefix) == [f"{s3_prefix}results/5.jpg"]
    assert list(storage.list_keys("results/")) == ["results/5.jpg"]


@pytest_s3
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


@pytest_s3
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


@pytest_s3
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


@pytest_s3
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


@pytest_s3
def test_signed_urls_can_be_switched_off(any_s3_server, monkeypatch):
    storage = s3_storage(any_s3_server, monkeypatch, S3_SIGNED_URLS="false")
    assert storage.signed_url("results/1.jpg", filename="a.jpg", cache_seconds=60) is None


@pytest_s3
def test_wrong_credentials_are_unavailable_not_a_crash(any_s3_server, monkeypatch):
    storage = s3_storage(any_s3_server, monkeypatch)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    storage._clients = None  # a process that started with the wrong secret
    with pytest.raises(StorageUnavailable):
        storage.write("results/1.jpg", b"x")
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_an_unreachable_store_is_storage_unavailable(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    storage = make_storage(Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_MAX_ATTEMPTS=1, S3_CONNECT_TIMEOUT=0.5,
                                    S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    for call in (storage.check, lambda: storage.write("results/1.jpg", b"x"),
                 lambda: storage.write("results/1.jpg", io.BytesIO(b"x")), lambda: storage.read("results/1.jpg"),
                 lambda: storage.stat("results/1.jpg"), lambda: storage.delete("results/1.jpg")):
        with pytest.raises(StorageUnavailable):
            call()
    assert time.monotonic() - started < 10  # fails fast: an upload gets its 503 promptly


@pytest_s3
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


def test_a_missing_ca_bundle_stops_the_processes_that_use_storage(tmp_path):
    settings = Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_CA_BUNDLE=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="IMGPROC_S3_CA_BUNDLE names no file"):
        make_storage(settings)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    storage = make_storage(Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_CA_BUNDLE=tmp_path / "ca.pem"))
    assert storage.ca_bundle == str(tmp_path / "ca.pem")



@pytest_s3
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


@pytest.mark.parametrize(
    "settings",
    [
        {},  # AWS, us-east-1, virtual hosts
        {"S3_REGION": "eu-west-1"},
        {"S3_BUCKET": "dotted.bucket"},  # not a host name: path style
        {"S3_FORCE_PATH_STYLE": "true"},
        {"S3_ENDPOINT_URL": "http://127.0.0.1:8333"},  # path style by default with an endpoint
        {"S3_ENDPOINT_URL": "http://s3.internal:8333", "S3_PUBLIC_ENDPOINT_URL": "https://files.example.org"},
        {"S3_ENDPOINT_URL": "https://files.example.org", "S3_FORCE_PATH_STYLE": "false"},
        {"S3_ENDPOINT_URL": "http://127.0.0.1:8333", "S3_FORCE_PATH_STYLE": "false"},  # no virtual host on an IP
    ],
)
def test_the_public_origin_is_where_signed_urls_point(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    storage = S3Storage(Settings(**{"STORAGE_BACKEND": "s3", "S3_BUCKET": "bucket", **settings}))
    url = urlsplit(storage.signed_url("results/1.jpg", filename="1.jpg", cache_seconds=1))
    assert storage.public_origin() == f"{url.scheme}://{url.netloc}"


def test_no_public_origin_without_signed_urls(tmp_path):
    assert S3Storage(Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_SIGNED_URLS=False)).public_origin() == ""
    assert FileSystemStorage(tmp_path).public_origin() == ""
