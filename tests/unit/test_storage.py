"""The storage contract (tests/support/storage_contract.py) on the file system, and the S3
backend's settings checks that need no server; the S3 servers' run is tests/integration/test_storage.py."""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import pytest

from app.core.config import Settings
from app.storage import MeteredStorage, Storage, StorageUnavailable, make_storage, new_original_key
from app.storage.filesystem import FileSystemStorage
from app.storage.s3 import S3Storage
from tests.fixtures.ports import free_port
from tests.support.metrics import Counts
from tests.support.storage_contract import StorageContract


@pytest.fixture(params=["filesystem", "metered"])
def storage(request, tmp_path) -> Storage:
    """The file system, bare and through the metrics wrapper every process uses (get_storage):
    the wrapper keeps every promise of the contract."""
    backend = FileSystemStorage(tmp_path / "storage")
    return MeteredStorage(backend) if request.param == "metered" else backend


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


# --- S3, no server ---------------------------------------------------------------------------


def test_an_unreachable_store_is_storage_unavailable(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    storage = make_storage(
        Settings(
            STORAGE_BACKEND="s3",
            S3_BUCKET="b",
            S3_MAX_ATTEMPTS=1,
            S3_CONNECT_TIMEOUT=0.5,
            S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        )
    )
    started = time.monotonic()
    for call in (
        storage.check,
        lambda: storage.write("results/1.jpg", b"x"),
        lambda: storage.write("results/1.jpg", io.BytesIO(b"x")),
        lambda: storage.read("results/1.jpg"),
        lambda: storage.stat("results/1.jpg"),
        lambda: storage.delete("results/1.jpg"),
    ):
        with pytest.raises(StorageUnavailable):
            call()
    assert time.monotonic() - started < 10  # fails fast: an upload gets its 503 promptly


def test_storage_calls_are_timed_and_their_failures_counted_by_kind(tmp_path, monkeypatch):
    storage = MeteredStorage(FileSystemStorage(tmp_path))
    key = new_original_key()

    def seconds(operation: str) -> tuple[str, dict[str, str]]:
        return ("imgproc_storage_operation_duration_seconds_count", {"backend": "filesystem", "operation": operation})

    def errors(operation: str, error: str) -> tuple[str, dict[str, str]]:
        return ("imgproc_storage_errors_total", {"backend": "filesystem", "operation": operation, "error": error})

    counts = Counts(
        seconds("write"),
        seconds("read"),
        seconds("stream"),
        seconds("list"),
        errors("read", "not_found"),
        errors("stream", "not_found"),
        errors("check", "unavailable"),
    )
    storage.write(key, b"data")
    assert storage.read(key) == b"data"
    assert b"".join(storage.iter_bytes(key)) == b"data"
    assert list(storage.list_keys("originals/")) == [key]
    with pytest.raises(FileNotFoundError):
        storage.read("results/1.jpg")
    with pytest.raises(FileNotFoundError):
        list(storage.iter_bytes("results/1.jpg"))
    monkeypatch.setattr(FileSystemStorage, "check", lambda _self: (_ for _ in ()).throw(StorageUnavailable("down")))
    with pytest.raises(StorageUnavailable):
        storage.check()
    assert list(counts.changes().values()) == [1, 2, 2, 1, 1, 1, 1]


def test_a_missing_ca_bundle_stops_the_processes_that_use_storage(tmp_path):
    settings = Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_CA_BUNDLE=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="IMGPROC_S3_CA_BUNDLE names no file"):
        make_storage(settings)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    storage = make_storage(Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_CA_BUNDLE=tmp_path / "ca.pem"))
    assert storage.ca_bundle == str(tmp_path / "ca.pem")


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


class TestFileSystemStorage(StorageContract):
    """The contract on the file system. (its tests: tests/support/storage_contract.py)"""
