"""Output presets: the allow-listed, named outputs an upload is turned into, and their configuration.

The configuration (what ``IMGPROC_PRESETS`` holds) is a JSON list of objects::

    [{"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
     {"name": "web", "width": 800, "height": 600, "formats": ["jpeg", "webp"],
      "quality": {"jpeg": 85, "webp": 80}, "default": true}]

:func:`parse_presets` refuses a wrong configuration with one message naming the first fault, so a
service can stop at start-up instead of failing uploads later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from PIL import features

from .models import MAX_JPEG_QUALITY, MAX_OUTPUT_SIDE, Spec


class Fit(StrEnum):
    """How the source fills a preset's box; neither ever enlarges the source."""

    CONTAIN = "contain"  # the whole picture, inside the box (aspect ratio kept)
    COVER = "cover"  # the box's aspect ratio, filled: a centred crop of the picture


class OutputFormat(StrEnum):
    """The formats a preset can ask for; the value is also the file extension and the media subtype."""

    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"


# Pillow's name for each output format, and the feature that says this build can write it.
PILLOW_FORMAT = {OutputFormat.JPEG: "JPEG", OutputFormat.WEBP: "WEBP", OutputFormat.AVIF: "AVIF"}
_PILLOW_FEATURE = {OutputFormat.JPEG: "jpg", OutputFormat.WEBP: "webp", OutputFormat.AVIF: "avif"}

# What the peers default to: imgproxy quality 80, with webp=79 and avif=63 per format
# (IMGPROXY_QUALITY, IMGPROXY_FORMAT_QUALITY); thumbor QUALITY 80, WebP the same unless
# WEBP_QUALITY is set, and no AVIF of its own. Ours: JPEG keeps today's 85; WebP 80 and AVIF 60
# were chosen to match its fidelity: on 800x600 photo-like outputs (bench.bench_pipeline.photo_like,
# two seeds) JPEG q85, WebP q80 and AVIF q60 all came within 0.1 dB PSNR of each other (29.5-30.1
# dB) at 94, 63 and 53 KB, where AVIF at imgproxy's 63 was 10% larger for +0.1 dB.
DEFAULT_QUALITY: Mapping[OutputFormat, int] = {OutputFormat.JPEG: 85, OutputFormat.WEBP: 80, OutputFormat.AVIF: 60}
# JPEG stops at 95 (models.MAX_JPEG_QUALITY); WebP and AVIF take the full scale.
MAX_QUALITY: Mapping[OutputFormat, int] = {
    OutputFormat.JPEG: MAX_JPEG_QUALITY,
    OutputFormat.WEBP: 100,
    OutputFormat.AVIF: 100,
}

PRESET_NAME = re.compile(r"[a-z0-9-]{1,32}")

_KEYS = ("name", "width", "height", "fit", "formats", "quality", "default", "animated")


class PresetError(ValueError):
    """A preset configuration is wrong; ``str()`` names the first fault, for a start-up message."""


def writable_formats() -> frozenset[OutputFormat]:
    """The output formats this Pillow build can encode (checked each call: cheap, and testable)."""
    return frozenset(output for output in OutputFormat if features.check(_PILLOW_FEATURE[output]))


def _is_int(value: object) -> bool:
    # bool is an int subclass: `"width": true` is a mistake, not a 1-pixel box.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Preset:
    """One named output: a box, how to fit it, and the formats to encode, each with its quality.

    ``default`` presets are made when an upload names none. ``animated`` keeps an animated
    source's frames in the WebP output (the other formats, and WebP beyond the animation limits,
    get the first frame). Invalid fields raise PresetError at construction.
    """

    name: str
    width: int
    height: int
    fit: Fit = Fit.CONTAIN
    formats: tuple[OutputFormat, ...] = (OutputFormat.JPEG,)
    jpeg_quality: int = DEFAULT_QUALITY[OutputFormat.JPEG]
    webp_quality: int = DEFAULT_QUALITY[OutputFormat.WEBP]
    avif_quality: int = DEFAULT_QUALITY[OutputFormat.AVIF]
    default: bool = False
    animated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PRESET_NAME.fullmatch(self.name):
            raise PresetError(f"preset name {self.name!r} must be 1-32 characters of a-z, 0-9 and '-'")
        for side in ("width", "height"):
            value = getattr(self, side)
            if not _is_int(value) or not 1 <= value <= MAX_OUTPUT_SIDE:
                raise self._error(f"{side} must be an integer from 1 to {MAX_OUTPUT_SIDE}, got {value!r}")
        if self.fit not in tuple(Fit):
            raise self._error(f"fit must be one of {_listed(Fit)}, got {self.fit!r}")
        # Normalised, so a preset built from JSON strings equals one built from the enums.
        object.__setattr__(self, "fit", Fit(self.fit))
        object.__setattr__(self, "formats", self._checked_formats())
        for output in OutputFormat:
            value = self.quality(output)
            if not _is_int(value) or not 1 <= value <= MAX_QUALITY[output]:
                raise self._error(f"{output} quality must be an integer from 1 to {MAX_QUALITY[output]}, got {value!r}")
        for flag in ("default", "animated"):
            if not isinstance(getattr(self, flag), bool):
                raise self._error(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.animated and OutputFormat.WEBP not in self.formats:
            raise self._error("animated needs webp among the formats (only WebP output keeps the animation)")

    @classmethod
    def from_spec(cls, spec: Spec) -> Preset:
        """The single-JPEG output a Spec describes, as the default preset ``web``."""
        return cls(name="web", width=spec.max_width, height=spec.max_height, jpeg_quality=spec.quality, default=True)

    def quality(self, output: OutputFormat) -> int:
        return getattr(self, f"{output}_quality")

    def _error(self, message: str) -> PresetError:
        return PresetError(f"preset {self.name!r}: {message}")

    def _checked_formats(self) -> tuple[OutputFormat, ...]:
        if isinstance(self.formats, str) or not isinstance(self.formats, Sequence) or not self.formats:
            raise self._error(f"formats must be a non-empty list of {_listed(OutputFormat)}, got {self.formats!r}")
        formats = tuple(_known_format(value, self._error) for value in self.formats)
        duplicated = sorted({output for output in formats if formats.count(output) > 1})
        if duplicated:
            raise self._error(f"formats lists {_listed(duplicated)} more than once")
        unwritable = [output for output in formats if output not in writable_formats()]
        if unwritable:
            writable = _listed(output for output in OutputFormat if output in writable_formats())
            raise self._error(f"this Pillow build cannot write {_listed(unwritable)} (it writes {writable})")
        return formats


def _known_format(value: object, error: Callable[[str], PresetError]) -> OutputFormat:
    if isinstance(value, str) and value in tuple(OutputFormat):
        return OutputFormat(value)
    raise error(f"unknown format {value!r}; the formats are {_listed(OutputFormat)}")


def _listed(values: Iterable[object]) -> str:
    return ", ".join(str(value) for value in values)


# The configuration with no IMGPROC_PRESETS: today's single output, 800x600 contain JPEG q85.
DEFAULT_PRESETS: tuple[Preset, ...] = (Preset.from_spec(Spec()),)


def parse_presets(configuration: str | bytes | Sequence[object]) -> tuple[Preset, ...]:
    """The presets of a JSON configuration (text, or the list already decoded), in their order.

    Raises PresetError naming the first fault: invalid JSON, not a non-empty list of objects, an
    unknown or missing key, any field Preset refuses, a duplicate name, or no preset marked default.
    """
    items = _decoded(configuration)
    presets = []
    for index, item in enumerate(items):
        where = f"presets[{index}]"
        if not isinstance(item, Mapping):
            raise PresetError(f"{where} must be an object, got {item!r}")
        unknown = [key for key in item if key not in _KEYS]
        if unknown:
            raise PresetError(f"{where}: unknown key {unknown[0]!r}; the keys are {_listed(_KEYS)}")
        missing = [key for key in ("name", "width", "height") if key not in item]
        if missing:
            raise PresetError(f"{where}: {missing[0]!r} is required")
        presets.append(_preset_from(item))  # its errors name the preset
    names = [preset.name for preset in presets]
    duplicated = next((name for name in names if names.count(name) > 1), None)
    if duplicated:
        raise PresetError(f"preset name {duplicated!r} is used more than once")
    if not any(preset.default for preset in presets):
        raise PresetError('no preset is marked "default": true (uploads that name no preset need one)')
    return tuple(presets)


def _preset_from(item: Mapping[str, object]) -> Preset:
    def error(message: str) -> PresetError:
        return PresetError(f"preset {item['name']!r}: {message}")

    fields = {key: value for key, value in item.items() if key != "quality"}
    qualities = item.get("quality", {})
    if not isinstance(qualities, Mapping):
        raise error(f"quality must be an object of format: quality, got {qualities!r}")
    for key, value in qualities.items():
        fields[f"{_known_format(key, error)}_quality"] = value
    preset = Preset(**fields)  # type: ignore[arg-type] - Preset checks every field's type itself
    unused = [key for key in qualities if key not in preset.formats]
    if unused:
        raise error(f"quality is given for {unused[0]}, which is not among its formats")
    return preset


def _decoded(configuration: str | bytes | Sequence[object]) -> Sequence[object]:
    if isinstance(configuration, str | bytes):
        try:
            configuration = json.loads(configuration)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise PresetError(f"presets are not valid JSON ({exc})") from None
    if isinstance(configuration, str | bytes) or not isinstance(configuration, Sequence) or not configuration:
        raise PresetError(f"presets must be a non-empty JSON list of objects, got {configuration!r:.80}")
    return configuration


def output_count(presets: Iterable[Preset]) -> int:
    """Presets x formats: the encodes and stored files they make."""
    return sum(len(preset.formats) for preset in presets)


def choose_presets(configured: Sequence[Preset], names: Iterable[str] | None) -> tuple[Preset, ...]:
    """The presets an upload asks for by name (each once, in configured order), or the default ones.

    Raises PresetError naming the unknown names and the allowed ones.
    """
    if names is None:
        return tuple(preset for preset in configured if preset.default)
    wanted = set(names)
    unknown = sorted(wanted - {preset.name for preset in configured})
    if unknown:
        allowed = _listed(preset.name for preset in configured)
        raise PresetError(f"unknown preset {_listed(unknown)}; the presets are {allowed}")
    return tuple(preset for preset in configured if preset.name in wanted)
