"""The storage contract: tests every backend must pass, given a `storage` fixture. Collected by
tests/unit/test_storage.py (the file system) and tests/integration/test_storage.py (S3 servers)."""

from __future__ import annotations

import io
import os
import time

import pytest

from app.storage import StorageUnavailable, new_original_key


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


class StorageContract:
    """Tests every backend must pass. A test module subclasses it (class Test...) beside its own
    `storage` fixture, so each backend runs the same tests."""

    def test_bytes_written_read_back_whole(self, storage):
        key = new_original_key()
        storage.write(key, b"hello")
        assert storage.read(key) == b"hello"
        assert storage.exists(key)
        assert storage.stat(key).size == 5
        assert b"".join(storage.iter_bytes(key)) == b"hello"

    @pytest.mark.parametrize("keep_cached", [True, False])
    def test_a_write_is_whole_with_or_without_keeping_it_cached(self, storage, keep_cached):
        key = new_original_key()
        data = bytes(range(256)) * 4096
        storage.write(key, data, keep_cached=keep_cached)
        assert storage.read(key) == data
        assert list(storage.list_keys("originals/")) == [key]

    def test_a_file_object_is_copied_in_chunks_including_a_multipart_sized_one(self, storage):
        data = os.urandom(9 * 1024 * 1024 + 123)  # above the 8 MiB multipart threshold
        key = new_original_key()
        storage.write(key, io.BytesIO(data))
        assert storage.read(key) == data
        assert storage.stat(key).size == len(data)

    def test_an_overwrite_replaces_the_object_and_changes_its_version(self, storage):
        key = "results/41.jpg"
        storage.write(key, b"first", content_type="image/jpeg")
        before = storage.stat(key)
        time.sleep(0.01)
        storage.write(key, b"second!", content_type="image/jpeg")
        after = storage.stat(key)
        assert storage.read(key) == b"second!"
        assert (after.size, after.version != before.version) == (7, True)
        assert list(storage.list_keys("results/")) == [key]  # one result key per task, not two

    def test_a_write_that_breaks_midway_leaves_the_old_object_or_none(self, storage):
        fresh, existing = new_original_key(), new_original_key()
        storage.write(existing, b"old")
        for key in (fresh, existing):
            with pytest.raises((OSError, StorageUnavailable)):
                storage.write(key, io.BufferedReader(Exploding(after=3 * 1024 * 1024)))
        assert not storage.exists(fresh)
        assert storage.read(existing) == b"old"
        assert sorted(storage.list_keys("originals/")) == [existing]  # no temporary or partial object visible

    def test_a_missing_object_is_file_not_found_and_deleting_it_is_fine(self, storage):
        key = new_original_key()
        with pytest.raises(FileNotFoundError):
            storage.read(key)
        with pytest.raises(FileNotFoundError):
            list(storage.iter_bytes(key))
        assert storage.stat(key) is None and not storage.exists(key)
        storage.delete(key)

    def test_delete_removes_the_object(self, storage):
        key = new_original_key()
        storage.write(key, b"x")
        storage.delete(key)
        assert not storage.exists(key)
        assert list(storage.list_keys("originals/")) == []

    @pytest.mark.parametrize(
        "key",
        ["../etc/passwd", "originals/../../x", "originals/a/b", "results/a/b.jpg", "other/x", "results/1.png", ""],
    )
    def test_only_server_made_keys_are_accepted(self, storage, key):
        for call in (storage.read, storage.stat, storage.delete, lambda k: storage.write(k, b"x")):
            with pytest.raises(ValueError, match="invalid storage key"):
                call(key)

    def test_the_store_answers_its_readiness_check(self, storage):
        storage.check()
