"""Presets: the model, the JSON configuration's refusals (one message each), and choosing by name."""

from __future__ import annotations

import json

import pytest
from PIL import features

from app.imaging import Spec
from app.imaging.presets import (
    DEFAULT_PRESETS,
    Fit,
    OutputFormat,
    Preset,
    PresetError,
    choose_presets,
    parse_presets,
    writable_formats,
)

WEB = {"name": "web", "width": 800, "height": 600, "default": True}


def configuration(*presets: dict[str, object]) -> str:
    return json.dumps(list(presets))


def with_web(**fields: object) -> str:
    return configuration({**WEB, **fields})


def test_the_default_configuration_is_todays_single_jpeg() -> None:
    (web,) = DEFAULT_PRESETS
    assert web == Preset(name="web", width=800, height=600, fit=Fit.CONTAIN, formats=(OutputFormat.JPEG,), default=True)
    assert web.quality(OutputFormat.JPEG) == 85
    assert web == Preset.from_spec(Spec())
    assert parse_presets(configuration(WEB)) == DEFAULT_PRESETS


def test_a_full_configuration_is_parsed_in_order() -> None:
    presets = parse_presets(
        configuration(
            {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
            {**WEB, "formats": ["jpeg", "webp", "avif"], "quality": {"jpeg": 80, "avif": 50}},
            {"name": "loop", "width": 400, "height": 300, "formats": ["webp"], "animated": True},
        )
    )

    thumb, web, loop = presets
    assert (thumb.fit, thumb.formats, thumb.default) == (Fit.COVER, (OutputFormat.WEBP,), False)
    assert web.formats == (OutputFormat.JPEG, OutputFormat.WEBP, OutputFormat.AVIF)
    assert [web.quality(output) for output in web.formats] == [80, 80, 50]  # webp keeps its default
    assert loop.animated


def test_default_qualities_per_format() -> None:
    preset = Preset(name="all", width=1, height=1, formats=tuple(OutputFormat))
    assert {output: preset.quality(output) for output in OutputFormat} == {"jpeg": 85, "webp": 80, "avif": 60}


def test_a_decoded_list_is_accepted_too() -> None:
    assert parse_presets([WEB]) == DEFAULT_PRESETS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "presets are not valid JSON"),
        ("[{", "presets are not valid JSON"),
        ("[]", "presets must be a non-empty JSON list of objects, got []"),
        ('{"name": "web"}', "presets must be a non-empty JSON list of objects"),
        ('"web"', "presets must be a non-empty JSON list of objects, got 'web'"),
        ("[1]", "presets[0] must be an object, got 1"),
        (with_web(heigth=3), "presets[0]: unknown key 'heigth'; the keys are name, width, height, fit, formats"),
        (configuration({"name": "web", "width": 800}), "presets[0]: 'height' is required"),
        (with_web(name="Web"), "preset name 'Web' must be 1-32 characters of a-z, 0-9 and '-'"),
        (with_web(name="a" * 33), "must be 1-32 characters"),
        (with_web(name=""), "must be 1-32 characters"),
        (with_web(name=7), "preset name 7 must be"),
        (with_web(width=0), "preset 'web': width must be an integer from 1 to 8192, got 0"),
        (with_web(height=8193), "preset 'web': height must be an integer from 1 to 8192, got 8193"),
        (with_web(width=800.5), "width must be an integer from 1 to 8192, got 800.5"),
        (with_web(width=True), "width must be an integer from 1 to 8192, got True"),
        (with_web(width="800"), "width must be an integer from 1 to 8192, got '800'"),
        (with_web(fit="fill"), "preset 'web': fit must be one of contain, cover, got 'fill'"),
        (with_web(formats=[]), "preset 'web': formats must be a non-empty list of jpeg, webp, avif, got []"),
        (with_web(formats="jpeg"), "formats must be a non-empty list of jpeg, webp, avif, got 'jpeg'"),
        (with_web(formats=["png"]), "preset 'web': unknown format 'png'; the formats are jpeg, webp, avif"),
        (with_web(formats=["JPEG"]), "unknown format 'JPEG'"),
        (with_web(formats=["jpeg", "webp", "jpeg"]), "preset 'web': formats lists jpeg more than once"),
        (with_web(quality=85), "preset 'web': quality must be an object of format: quality, got 85"),
        (with_web(quality={"png": 80}), "preset 'web': unknown format 'png'"),
        (with_web(quality={"webp": 80}), "preset 'web': quality is given for webp, which is not among its formats"),
        (with_web(quality={"jpeg": 96}), "preset 'web': jpeg quality must be an integer from 1 to 95, got 96"),
        (with_web(quality={"jpeg": 0}), "jpeg quality must be an integer from 1 to 95, got 0"),
        (with_web(formats=["webp"], quality={"webp": 101}), "webp quality must be an integer from 1 to 100, got 101"),
        (with_web(default="yes"), "preset 'web': default must be true or false, got 'yes'"),
        (with_web(animated=1), "preset 'web': animated must be true or false, got 1"),
        (with_web(animated=True), "preset 'web': animated needs webp among the formats"),
        (configuration(WEB, WEB), "preset name 'web' is used more than once"),
        (configuration({**WEB, "default": False}), 'no preset is marked "default": true'),
    ],
)
def test_every_configuration_error_is_one_clear_message(text: str, message: str) -> None:
    with pytest.raises(PresetError) as raised:
        parse_presets(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_format_this_pillow_cannot_write_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real_check = features.check
    monkeypatch.setattr(features, "check", lambda feature: feature != "avif" and real_check(feature))
    assert OutputFormat.AVIF not in writable_formats()

    with pytest.raises(PresetError) as raised:
        parse_presets(with_web(formats=["jpeg", "avif"]))

    assert str(raised.value) == "preset 'web': this Pillow build cannot write avif (it writes jpeg, webp)"


def test_this_pillow_writes_every_format() -> None:
    # The service's image pins Pillow 13, which writes AVIF itself; a build without it is refused above.
    assert writable_formats() == frozenset(OutputFormat)


def test_presets_are_values() -> None:
    first, second = parse_presets(with_web()), parse_presets(with_web(formats=("jpeg",)))
    assert first == second and hash(first) == hash(second)
    with pytest.raises(AttributeError):
        first[0].width = 10  # type: ignore[misc]


@pytest.mark.parametrize("fields", [{"max_width": 8193}, {"max_height": 10_000}], ids=["width", "height"])
def test_spec_shares_the_presets_size_cap(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"Spec\.max_(width|height) must be 1\.\.8192"):
        Spec(**fields)


# ----------------------------------------------------------------------------- choosing


CONFIGURED = parse_presets(
    configuration(
        {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
        WEB,
        {"name": "full", "width": 1600, "height": 1200, "formats": ["avif"], "default": True},
    )
)


def test_an_upload_naming_no_presets_gets_the_default_ones() -> None:
    assert [preset.name for preset in choose_presets(CONFIGURED, None)] == ["web", "full"]


def test_named_presets_come_once_each_in_configured_order() -> None:
    assert [preset.name for preset in choose_presets(CONFIGURED, ["full", "thumb", "full"])] == ["thumb", "full"]


def test_unknown_names_are_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(PresetError) as raised:
        choose_presets(CONFIGURED, ["thumb", "hero", "banner"])
    assert str(raised.value) == "unknown preset banner, hero; the presets are thumb, web, full"
