"""The `imgproc` console script's roles that other tests do not start."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from app.cli import build_parser, main
from tests.fixtures.ports import free_port
from tests.fixtures.services import imgproc


def test_every_role_is_a_subcommand():
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {"api", "worker", "migrate", "flower", "operator", "worker-probe", "smoke", "run"} <= set(commands)


def test_unknown_options_are_refused_except_for_the_worker(capsys):
    with pytest.raises(SystemExit):
        main(["migrate", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_worker_probe_follows_the_heartbeat(tmp_path):
    env = {**os.environ, "IMGPROC_DATA_DIR": str(tmp_path), "IMGPROC_WORKER_HEARTBEAT_FILE": str(tmp_path / "hb")}
    probe = imgproc("worker-probe", "--max-age", "30")
    assert subprocess.run(probe, env=env, capture_output=True).returncode == 1  # no heartbeat yet
    (tmp_path / "hb").write_text("x")
    assert subprocess.run(probe, env=env, capture_output=True).returncode == 0
    old = time.time() - 120
    os.utime(tmp_path / "hb", (old, old))
    stale = subprocess.run(probe, env=env, capture_output=True, text=True)
    assert stale.returncode == 1 and "old" in stale.stderr


def test_flower_serves_under_its_prefix_behind_basic_auth(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "IMGPROC_DATA_DIR": str(tmp_path),
        "IMGPROC_FLOWER_PORT": str(port),
        "IMGPROC_FLOWER_BASIC_AUTH": "admin:s3cret-pass",
    }
    flower = subprocess.Popen(imgproc("flower"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/flower/"
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert anonymous.status_code == 401
        authorised = httpx.get(url, auth=("admin", "s3cret-pass"), timeout=10, follow_redirects=True)
        assert authorised.status_code == 200 and "Flower" in authorised.text
    finally:
        flower.terminate()
        flower.wait(timeout=15)
