"""A corpus of nasty files, generated here, through the real service (API + worker on
PostgreSQL + Redis): each gets a clear 4xx at upload or ends `failed` with a reason, or is
a legitimate image that completes with a clean output; never a 5xx; the worker survives
and its memory stays bounded."""

from __future__ import annotations

import io
import random
import struct
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.services import running_stack, server_env
from tests.support import images
from tests.support.report import record
from tests.support.tasks import wait_for_terminal

WORKER_MEMORY_LIMIT = 512 * 1024 * 1024  # half the chart's default worker limit (1 GiB)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def png_bomb(side: int) -> bytes:
    return images.encode(Image.new("1", (side, side)), "PNG", optimize=True)


def bmp_claiming(width: int, height: int) -> bytes:
    """A 60-byte BMP whose header claims a huge 24-bit canvas."""
    header = struct.pack("<2sIHHI", b"BM", 54 + 6, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\0" * 6


def animated_gif(frames: int) -> bytes:
    rng = random.Random(1)
    sequence = [Image.new("P", (16, 16), rng.randrange(256)) for _ in range(frames)]
    buffer = io.BytesIO()
    sequence[0].save(buffer, "GIF", save_all=True, append_images=sequence[1:], duration=10, loop=0)
    return buffer.getvalue()


def jpeg_with_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.html", "<script>alert(1)</script>")
    return images.jpeg(320, 240) + archive.getvalue()


def cmyk_jpeg() -> bytes:
    return images.encode(Image.new("CMYK", (400, 300), (0, 255, 255, 0)), "JPEG")


def png_16bit() -> bytes:
    return images.encode(Image.linear_gradient("L").resize((300, 200)).convert("I;16"), "PNG")


# name -> (bytes, file name sent, outcomes allowed: a set of upload statuses and/or "completed"/"failed")
CORPUS = {
    "truncated-jpeg": (lambda: truncated(images.jpeg(1200, 900)), "a.jpg", {422, "failed"}),
    "truncated-png": (lambda: truncated(images.encode(Image.effect_noise((300, 300), 50), "PNG")), "a.png", {422}),
    "text-named-jpg": (lambda: b"just some text\n" * 10, "a.jpg", {415}),
    "html-named-png": (lambda: b"<html><script>alert(1)</script></html>", "a.png", {415}),
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "a.pdf", {415}),
    "svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "a.svg", {415}),
    "eps": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "a.eps", {415}),
    "gif-js-polyglot": (lambda: b"GIF89a/*\x00\x00*/=1;alert(1)//", "a.gif", {415, 422}),
    "jpeg-with-zip-appended": (jpeg_with_zip, "a.jpg", {"completed"}),
    "png-bomb-20000": (lambda: png_bomb(20000), "bomb.png", {422}),
    "png-bomb-10000": (lambda: png_bomb(10000), "bomb.png", {422}),
    "bmp-claims-60000x60000": (lambda: bmp_claiming(60000, 60000), "a.bmp", {422}),
    "animated-gif-3000-frames": (lambda: animated_gif(3000), "a.gif", {"completed"}),
    "cmyk-jpeg": (cmyk_jpeg, "a.jpg", {"completed"}),
    "16-bit-png": (png_16bit, "a.png", {"completed"}),
    "exif-gps": (lambda: images.jpeg(640, 480, gps=True), "a.jpg", {"completed"}),
    "zero-bytes": (lambda: b"", "a.jpg", {422}),
    "non-utf8-name": (lambda: images.jpeg(64, 48), "caf\udce9.jpg", {"completed"}),
    "path-traversal-name": (lambda: images.jpeg(64, 48), "../../etc/passwd", {"completed"}),
}


def peak_rss_of_children(pid: int) -> int:
    """Largest VmHWM (peak resident set) among a process's children, in bytes."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]) * 1024)
    return peak


@pytest.fixture(scope="module")
def outcomes(postgres_server, redis_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    env = server_env(postgres_server.create_database("hostile"), redis_server.rsplit("/", 1)[0] + "/14", base / "data")
    results: dict[str, object] = {}
    with running_stack(env, base / "logs") as stack, stack.client() as client:
        for name, (make, filename, _allowed) in CORPUS.items():
            data = make()
            response = client.post(
                "/api/newTask", files={"file": (filename.encode("utf-8", "surrogateescape").decode("latin-1"), data)}
            )
            if response.status_code != 200:
                assert response.headers["content-type"] == "application/json"
                results[name] = (response.status_code, response.json()["detail"])
                continue
            status = wait_for_terminal(client, response.json()["task_id"], timeout=60)
            detail = status["error"] if status["status"] == "failed" else None
            if status["status"] == "completed":
                result = client.get(f"/api/tasks/{status['id']}/result")
                decoded = images.decode(result.content)
                detail = (decoded.size, decoded.mode, bool(decoded.getexif()), decoded.info.get("comment"))
            results[name] = (status["status"], detail)
        worker = stack.workers[0]
        results["_worker_alive"] = worker.poll() is None
        results["_worker_peak_rss"] = peak_rss_of_children(worker.pid)
    return results


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_hostile_file_gets_a_clean_outcome(outcomes, name):
    outcome, detail = outcomes[name]
    allowed = CORPUS[name][2]
    assert outcome in allowed, (outcome, detail)
    if isinstance(outcome, int):
        assert 400 <= outcome < 500 and isinstance(detail, str) and len(detail) > 10
    elif outcome == "failed":
        assert detail
    else:
        size, mode, has_exif, comment = detail
        assert size[0] <= 800 and size[1] <= 600 and mode == "RGB"
        assert not has_exif and comment is None


def test_the_worker_survives_the_corpus_within_its_memory_limit(outcomes):
    print(f"worker peak RSS: {outcomes['_worker_peak_rss'] / 2**20:.0f} MiB")
    assert outcomes["_worker_alive"]
    assert 0 < outcomes["_worker_peak_rss"] < WORKER_MEMORY_LIMIT


def test_hostile_summary_has_no_server_errors(outcomes):
    tried = len(CORPUS)
    server_errors = sum(1 for name in CORPUS if isinstance(outcomes[name][0], int) and outcomes[name][0] >= 500)
    clean = sum(1 for name in CORPUS if outcomes[name][0] in CORPUS[name][2])
    record("hostile", tried=tried, refused=clean, **{"5xx": server_errors})
    assert server_errors == 0 and clean == tried
