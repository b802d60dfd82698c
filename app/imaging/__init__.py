"""Pure image processing: bytes + presets in, encoded variants out (stdlib + Pillow only; no I/O,
no settings).

``inspect`` is the cheap upload-time check the API runs; ``render_variants`` is what the worker runs
to make every (preset, format) variant of an upload from one decode, and ``process`` its single-JPEG
form for a :class:`Spec`. Presets come from configuration through ``parse_presets`` (one clear
message per mistake) and from an upload's choice through ``choose_presets``. All of them raise only
:class:`ImageError` subclasses for the image's faults, whose ``str()`` is user-readable.
"""

from .colour import STANDARD_CMYK_PROFILE_PATH
from .errors import CorruptImageError, EmptyImageError, ImageError, ImageTooLargeError, UnsupportedImageError
from .models import ALLOWED_FORMATS, ImageInfo, ProcessedImage, Spec
from .pipeline import process
from .presets import (
    DEFAULT_PRESETS,
    Fit,
    OutputFormat,
    Preset,
    PresetError,
    choose_presets,
    parse_presets,
    writable_formats,
)
from .validation import inspect
from .variants import AnimationLimits, RenderedSet, StageTimes, Variant, render_variants

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_PRESETS",
    "STANDARD_CMYK_PROFILE_PATH",
    "AnimationLimits",
    "CorruptImageError",
    "EmptyImageError",
    "Fit",
    "ImageError",
    "ImageInfo",
    "ImageTooLargeError",
    "OutputFormat",
    "Preset",
    "PresetError",
    "ProcessedImage",
    "RenderedSet",
    "Spec",
    "StageTimes",
    "UnsupportedImageError",
    "Variant",
    "choose_presets",
    "inspect",
    "parse_presets",
    "process",
    "render_variants",
    "writable_formats",
]
