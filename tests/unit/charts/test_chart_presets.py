"""config.presets in charts/imgproc: one list, in the ConfigMap API and workers both read, in a
shape the app's own parser accepts; the schema refuses what the app would; NOTES shows how."""

from __future__ import annotations

from app.imaging.presets import OutputFormat, parse_presets
from tests.support.charts.manifests import by_kind
from tests.support.charts.rendering import RELEASE

PRESETS = [
    {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
    {"name": "web", "width": 800, "height": 600, "formats": ["jpeg", "webp"], "quality": {"webp": 75}, "default": True},
    {"name": "large", "width": 1600, "height": 1200, "formats": ["avif"]},
]


def config_data(objects) -> dict[str, str]:  # type: ignore[no-untyped-def]
    [config] = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == f"{RELEASE}-imgproc"]
    return config["data"]


def test_the_presets_reach_api_and_workers_as_the_app_reads_them(render):
    data = config_data(render({"config": {"presets": PRESETS, "maxOutputsPerTask": 5}}))
    presets = parse_presets(data["IMGPROC_PRESETS"])
    assert [(p.name, p.width, p.height, p.fit, p.formats, p.default) for p in presets] == [
        ("thumb", 160, 160, "cover", (OutputFormat.WEBP,), False),
        ("web", 800, 600, "contain", (OutputFormat.JPEG, OutputFormat.WEBP), True),
        ("large", 1600, 1200, "contain", (OutputFormat.AVIF,), False),
    ]
    assert presets[1].quality(OutputFormat.WEBP) == 75
    assert data["IMGPROC_MAX_OUTPUTS_PER_TASK"] == "5"


def test_no_presets_leave_the_apps_default(render):
    data = config_data(render({}))
    assert "IMGPROC_PRESETS" not in data and data["IMGPROC_MAX_OUTPUTS_PER_TASK"] == "8"


def test_the_schema_refuses_what_the_app_would(helm_fails):
    for preset, message in [
        ({"name": "Thumb", "width": 1, "height": 1}, "'Thumb' does not match pattern"),
        ({"name": "t", "width": 1, "height": 1, "formats": ["gif"]}, "at '/config/presets/0/formats/0'"),
        ({"name": "t", "width": 0, "height": 1}, "at '/config/presets/0/width'"),
        ({"name": "t", "width": 1, "height": 1, "crop": True}, "additional properties 'crop' not allowed"),
        ({"name": "t", "width": 1, "height": 1, "quality": {"jpeg": 99}}, "at '/config/presets/0/quality/jpeg'"),
    ]:
        error = helm_fails({"config": {"presets": [preset]}})
        assert message in error, error


def test_notes_show_an_upload_naming_the_presets(notes):
    text = notes({"config": {"presets": PRESETS}})
    assert "-F presets=thumb,web,large $IMGPROC_URL/api/newTask" in text
    assert "/api/tasks/2/results/thumb" in text
    assert "presets=" not in notes({})
