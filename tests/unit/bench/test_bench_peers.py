"""The peers bench's pure parts: the URLs each peer is asked, imgproc's preset configuration."""

from __future__ import annotations

from app.imaging.presets import OutputFormat, parse_presets
from bench.bench_peers import (
    SET_PRESETS,
    SET_QUALITY,
    imgproxy_output_path,
    imgproxy_path,
    presets_config,
    set_outputs,
    thumbor_output_path,
    thumbor_path,
)

OUTPUTS = set_outputs(SET_PRESETS)


def test_the_set_is_the_issues_five_outputs_at_the_agreed_qualities() -> None:
    assert [(o.preset.name, o.preset.width, o.preset.height, str(o.preset.fit), str(o.format)) for o in OUTPUTS] == [
        ("thumb", 160, 160, "cover", "webp"),
        ("card", 400, 300, "contain", "webp"),
        ("web", 800, 600, "contain", "jpeg"),
        ("web", 800, 600, "contain", "webp"),
        ("full", 1600, 1200, "contain", "avif"),
    ]
    assert dict(SET_QUALITY) == {OutputFormat.JPEG: 85, OutputFormat.WEBP: 80, OutputFormat.AVIF: 60}
    assert all(output.quality == SET_QUALITY[output.format] for output in OUTPUTS)


def test_imgprocs_configuration_parses_back_to_the_set() -> None:
    assert parse_presets(presets_config(SET_PRESETS)) == SET_PRESETS
    assert len(OUTPUTS) <= 8  # IMGPROC_MAX_OUTPUTS_PER_TASK's default


def test_thumbor_urls() -> None:
    assert [thumbor_output_path("photo.jpg", output) for output in OUTPUTS] == [
        "/unsafe/160x160/center/middle/filters:format(webp):quality(80)/photo.jpg",
        "/unsafe/fit-in/400x300/filters:format(webp):quality(80)/photo.jpg",
        "/unsafe/fit-in/800x600/filters:format(jpeg):quality(85)/photo.jpg",
        "/unsafe/fit-in/800x600/filters:format(webp):quality(80)/photo.jpg",
        "/unsafe/fit-in/1600x1200/filters:format(avif):quality(60)/photo.jpg",
    ]


def test_imgproxy_urls() -> None:
    assert [imgproxy_output_path("photo.jpg", output) for output in OUTPUTS] == [
        "/insecure/rs:fill:160:160/g:ce/q:80/plain/local:///photo.jpg@webp",
        "/insecure/rs:fit:400:300/q:80/plain/local:///photo.jpg@webp",
        "/insecure/rs:fit:800:600/q:85/plain/local:///photo.jpg@jpg",
        "/insecure/rs:fit:800:600/q:80/plain/local:///photo.jpg@webp",
        "/insecure/rs:fit:1600:1200/q:60/plain/local:///photo.jpg@avif",
    ]


def test_the_single_rows_urls_are_unchanged() -> None:
    assert thumbor_path("photo.jpg") == "/unsafe/fit-in/800x600/filters:quality(85)/photo.jpg"
    assert imgproxy_path("photo.jpg") == "/insecure/rs:fit:800:600/q:85/plain/local:///photo.jpg@jpg"
