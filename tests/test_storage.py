"""Storage: atomic writes under server-made keys."""

from __future__ import annotations

import pytest

from app.storage import Storage


@pytest.mark.parametrize("keep_cached", [True, False])
def test_a_write_is_whole_and_leaves_no_temporary_file(tmp_path, keep_cached):
    storage = Storage(tmp_path)
    key = storage.new_original_key()
    data = bytes(range(256)) * 4096
    storage.write(key, data, keep_cached=keep_cached)
    assert storage.read(key) == data
    assert [path.name for path in (tmp_path / "originals").iterdir()] == [key.split("/")[1]]


def test_a_rewrite_replaces_the_file(tmp_path):
    storage = Storage(tmp_path)
    key = storage.result_key(7)
    storage.write(key, b"old")
    storage.write(key, b"new", keep_cached=False)
    assert storage.read(key) == b"new"


@pytest.mark.parametrize("key", ["../etc/passwd", "originals/../../x", "results/a/b.jpg", "other/x"])
def test_keys_that_could_leave_the_root_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        Storage(tmp_path).write(key, b"x")
