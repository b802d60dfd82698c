"""`imgproc storage migrate` against a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import os

import pytest

from app.cli import main
from app.storage import get_storage


@pytest.fixture
def to_bucket(configure, tmp_path, s3_server, s3_prefix, monkeypatch):
    configure(DATA_DIR=tmp_path / "data", **s3_server.settings_in_process(monkeypatch, s3_prefix))
    storage_dir = tmp_path / "data" / "storage"
    (storage_dir / "originals").mkdir(parents=True)
    (storage_dir / "results").mkdir()
    return storage_dir


def test_files_are_copied_verified_and_a_second_run_copies_nothing(to_bucket, s3_server, s3_prefix, capsys):
    originals = {f"originals/{os.urandom(16).hex()}": os.urandom(1000 + i) for i in range(3)}
    results = {f"results/{i}.jpg": os.urandom(500 + i) for i in range(1, 3)}
    # The presets' layout: results/<id>/<preset>.<format>.
    results |= {"results/2/thumb.webp": os.urandom(300), "results/2/large.avif": os.urandom(400)}
    (to_bucket / "results" / "2").mkdir()
    for key, data in {**originals, **results}.items():
        (to_bucket / key).write_bytes(data)
    (to_bucket / "results" / ".3.jpg.abc123.tmp").write_bytes(b"half")  # an interrupted write
    (to_bucket / "originals" / "holiday photo.jpg").write_bytes(b"by hand")

    assert main(["storage", "migrate"]) == 0
    out = capsys.readouterr().out
    assert "copied 7 object(s)" in out and "2 file(s) ignored" in out and "0 size mismatch" in out
    storage = get_storage()
    for key, data in {**originals, **results}.items():
        assert storage.read(key) == data
    assert len(s3_server.keys(s3_prefix)) == 7
    assert storage.stat("results/2/large.avif") is not None
    assert (to_bucket / "results" / "1.jpg").exists()  # the file system is left as it was

    assert main(["storage", "migrate"]) == 0  # resumable: what is there already is skipped
    assert "copied 0 object(s) (0 bytes), 7 already there" in capsys.readouterr().out


def test_an_interrupted_copy_is_completed_by_the_next_run(to_bucket, capsys):
    data = os.urandom(4096)
    (to_bucket / "results" / "7.jpg").write_bytes(data)
    get_storage().write("results/7.jpg", data[:100])  # what a cut-short earlier copy might have left
    assert main(["storage", "migrate", "--dry-run"]) == 0
    assert "would copy results/7.jpg (4096 bytes)" in capsys.readouterr().out
    assert get_storage().stat("results/7.jpg").size == 100  # a dry run changes nothing
    assert main(["storage", "migrate"]) == 0
    assert get_storage().read("results/7.jpg") == data


def test_the_command_needs_the_s3_backend(configure, tmp_path, capsys):
    configure(DATA_DIR=tmp_path)
    assert main(["storage", "migrate"]) == 2
    assert "IMGPROC_STORAGE_BACKEND=s3" in capsys.readouterr().err
