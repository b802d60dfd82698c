"""render_variants(): one upload -> every (preset, format) variant it needs, from a single decode.

What imgproxy and thumbor do per request (a full decode for every size and format), this does once
per upload, touching the big image as little as possible:

1. read the header only, refuse oversize canvases, read the EXIF orientation;
2. place every preset on the source (contain or cover, in *stored* orientation);
3. JPEG: shrink-on-load (libjpeg DCT scaling to 1/2, 1/4, 1/8) to the smallest scale still large
   enough for the *largest* variant, then decode, once;
4. make each preset's picture, largest first: resampled from the decode, or from a larger picture
   already made when that is visually the same (see MIN_CHAIN_RATIO); pictures resampled from the
   decode are then converted to sRGB through the source's ICC profile (colour.py), so the
   conversion runs once, on a small image, and the pictures made from them inherit it;
5. per format: JPEG flattens alpha on the background, WebP/AVIF keep it; rotate/flip upright (on
   the small picture); encode with no metadata;
6. animated presets re-read the frames of an animated source for their WebP (within limits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageFile

from .colour import Transform, flatten, prepare_for_srgb, to_srgb
from .decoding import DECODE_FAILURES, exif_orientation, open_image, pillow_errors_as_image_errors
from .encoding import encode, encode_animated_webp
from .geometry import TRANSPOSE_FOR_ORIENTATION, Box, Placement, place
from .presets import OutputFormat, Preset

# resize(reducing_gap=1.5): a cheap integer reduce() (box average) while the image is still >= 1.5x
# the target per integer step, then LANCZOS for the rest. On a 2000x2000 -> 600x600 PNG that is 3x
# faster than a plain LANCZOS (22 vs 61 ms) at 41 dB PSNR from it. JPEGs rarely get here: DCT scaling
# already brought them within 2x of the target (unless capped at 1/8).
_REDUCING_GAP = 1.5
_RESAMPLE = Image.Resampling.LANCZOS

# A picture may be resampled from a larger one already made, instead of from the decode, when the
# larger one has at least this many pixels per output pixel along each axis (and covers its region).
# Measured (tests/unit/imaging/test_variants.py keeps the bound): on photo-like 12 MP and 1080p
# JPEGs, with and without 3000 one-pixel lines drawn over them, resampling 160/400/800-wide outputs
# from a picture 1.5x to 5x larger gave 43.2-54 dB PSNR against resampling them from the decode (the
# ratios of the 4-preset set are 1.875 to 4). The variants' own encoding error is 26-32 dB (JPEG q85,
# WebP q80), so the difference is far below what the codec already changes: visually equal. Below
# 1.5x a second Lanczos pass softens detail that sits near the smaller picture's resolution limit
# (white noise, the worst case: 29-31 dB at 1.01-1.1x against 36-49 dB at 1.5x and 2x), and the
# CPU saved is small, so those come from the decode.
MIN_CHAIN_RATIO = 1.5
_EDGE_TOLERANCE = 1e-6  # regions are computed in floating point from the same integers


@dataclass(frozen=True)
class AnimationLimits:
    """How much animation an ``animated`` preset may keep: frames, and decoded pixels over all frames
    (canvas width x height x frames). Beyond either, its WebP is the first frame (with a note).

    Only one decoded frame is held at a time (plus each preset's small resampled ones), so the cost
    is CPU: the defaults allow a 10 s clip at 30 fps, or 150 MP of frames (150 frames of 1000x1000
    noise, the worst case, took 5 s CPU here into one 400x300 animated WebP).
    """

    max_frames: int = 300
    max_pixels: int = 150_000_000


@dataclass(frozen=True)
class Variant:
    """One encoded output: ``frames`` is more than 1 for an animated WebP."""

    preset: str
    format: OutputFormat
    width: int
    height: int
    data: bytes
    frames: int = 1


@dataclass(frozen=True)
class StageTimes:
    """Seconds one :func:`render_variants` call spent in each stage (a monotonic clock, no I/O; the
    worker exports them): ``decode`` (header, EXIF, the decode and its colour preparation; every
    frame of an animation), ``resize`` (every preset's picture, sRGB conversion included) and
    ``encode`` (every output, with its flattening and rotation)."""

    decode: float = 0.0
    resize: float = 0.0
    encode: float = 0.0


class _Stopwatch:
    """Adds the time since the previous lap to the stage that just ended."""

    def __init__(self) -> None:
        self.seconds = {"decode": 0.0, "resize": 0.0, "encode": 0.0}
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._mark
        self._mark = now

    def times(self) -> StageTimes:
        return StageTimes(**self.seconds)


@dataclass(frozen=True)
class RenderedSet:
    """Every variant of one upload, largest first, and the source's header values (as
    :func:`app.imaging.inspect` reports them, before EXIF orientation).

    ``notes`` say, for the person who uploaded the file, where the set is less than asked for (an
    animation kept as its first frame, and why); ``times`` how long each stage took.
    """

    variants: tuple[Variant, ...]
    source_format: str
    source_width: int
    source_height: int
    notes: tuple[str, ...] = ()
    times: StageTimes = StageTimes()

    def variant(self, preset: str, output: OutputFormat) -> Variant:
        for variant in self.variants:
            if (variant.preset, variant.format) == (preset, output):
                return variant
        raise KeyError(f"no {output} variant of preset {preset!r}")


WHITE = (255, 255, 255)
# Formats whose frames are an animation (a multi-page TIFF is a document; an MPO JPEG's second
# picture is a preview).
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})


def render_variants(
    data: bytes,
    presets: Sequence[Preset],
    *,
    max_pixels: int,
    background: tuple[int, int, int] = WHITE,
    cmyk_profile: bytes | None = None,
    animation: AnimationLimits = AnimationLimits(),  # noqa: B008 - frozen, so one shared default is safe
) -> RenderedSet:
    """Decode ``data`` once and encode every format of every preset; raises only ImageError subclasses.

    ``background`` is what JPEG variants show under transparency (sRGB). ``cmyk_profile`` is the
    ICC profile for CMYK sources that embed none (without one they get Pillow's naive conversion).
    Presets must have distinct names (ValueError otherwise: a programming error, not the image's).
    """
    names = [preset.name for preset in presets]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"render_variants needs presets with distinct names, got {names}")
    clock = _Stopwatch()
    with pillow_errors_as_image_errors() as subject:
        image, source_format = open_image(data, max_pixels=max_pixels)
        subject.format = source_format
        with image:
            source_size = image.size  # before draft() shrinks it
            if source_format != "JPEG":
                # No shrink-on-load for these; decode now so a decode failure is not mistaken for
                # damaged EXIF below (PNG's getexif() would decode anyway, to find a trailing eXIf).
                image.load()
            orientation = exif_orientation(image)
            placements = {
                preset.name: place(source_size, orientation, (preset.width, preset.height), preset.fit)
                for preset in presets
            }
            decoded_box = _shrink_on_load(image, _decode_size_needed(source_size, placements.values()))
            image.load()
            pixels, transform = prepare_for_srgb(image, cmyk_profile=cmyk_profile)
            clock.lap("decode")
            ordered = sorted(presets, key=lambda preset: _area(placements[preset.name].size), reverse=True)
            scale = (decoded_box[2] / source_size[0], decoded_box[3] / source_size[1])
            pictures = make_pictures(pixels, transform, [_scaled(placements[p.name], scale) for p in ordered])
            clock.lap("resize")
            variants = [
                _variant(preset, output, picture, orientation, background)
                for preset, picture in zip(ordered, pictures, strict=True)
                for output in preset.formats
            ]
            clock.lap("encode")
            notes: list[str] = []
            # Animated presets got a still WebP above: it stays if the animation cannot be kept, and
            # it has to be made before the frames are read (seeking reuses the decoded frame).
            animated = [preset for preset in ordered if preset.animated]
            if animated and source_format in _ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1:
                animations = _animate(image, animated, placements, orientation, animation, notes, clock)
                variants = [animations.get((v.preset, v.format), v) for v in variants]
    return RenderedSet(tuple(variants), source_format, *source_size, notes=tuple(notes), times=clock.times())


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _decode_size_needed(source_size: tuple[int, int], placements: Iterable[Placement]) -> tuple[int, int]:
    """The smallest whole-image size whose scale is enough for every placement's output."""
    needed_width = needed_height = 0
    for placement in placements:
        left, top, right, bottom = placement.region
        # Multiplied before dividing, so a whole-image placement gives exactly its output size.
        width = placement.size[0] * source_size[0] / (right - left)
        height = placement.size[1] * source_size[1] / (bottom - top)
        needed_width = max(needed_width, math.ceil(width - _EDGE_TOLERANCE))
        needed_height = max(needed_height, math.ceil(height - _EDGE_TOLERANCE))
    return needed_width, needed_height


def _shrink_on_load(image: ImageFile.ImageFile, needed: tuple[int, int]) -> Box:
    """For JPEG, ask libjpeg for the smallest 1/1..1/8 scale still >= ``needed``.

    Returns the whole source's box in decoded pixels: DCT scaling rounds the decoded size up, so
    the true image spans a fractional box, and resampling from it keeps geometry exact. Other
    formats ignore draft(). (Decoding to YCbCr to skip colour conversion was measured too: no gain
    within noise, since libjpeg-turbo's SIMD conversion is cheap, so the simpler RGB path stays.)
    """
    drafted = image.draft(None, needed)
    if drafted is not None:
        return drafted[1]
    return (0, 0, image.width, image.height)


def _scaled(placement: Placement, scale: tuple[float, float]) -> Placement:
    """The placement with its region in decoded pixels (after shrink-on-load)."""
    if scale == (1, 1):
        return placement
    left, top, right, bottom = placement.region
    return Placement((left * scale[0], top * scale[1], right * scale[0], bottom * scale[1]), placement.size)


@dataclass(frozen=True)
class _Picture:
    placement: Placement  # in decoded pixels
    image: Image.Image  # sRGB, stored orientation, alpha kept


def make_pictures(
    pixels: Image.Image, transform: Transform | None, placements: Sequence[Placement]
) -> list[Image.Image]:
    """Each placement's sRGB picture (stored orientation, alpha kept), made in the order given,
    largest first: from the smallest picture already made that is still MIN_CHAIN_RATIO times
    finer and covers it (the cheapest resample), else from ``pixels`` (the decode) and then
    through ``transform`` to sRGB."""
    made: list[_Picture] = []
    for placement in placements:
        source = _smallest_source_for(placement, made)
        if source is None:
            image = to_srgb(_resampled(pixels, placement.region, placement.size), transform)
        else:
            image = _resampled(source.image, _region_within(placement, source.placement), placement.size)
        made.append(_Picture(placement, image))
    return [picture.image for picture in made]


def _smallest_source_for(placement: Placement, made: list[_Picture]) -> _Picture | None:
    """The smallest picture already made that covers ``placement``'s region with at least
    MIN_CHAIN_RATIO times its pixels per axis, if any."""
    width_scale, height_scale = placement.scale
    usable = [
        picture
        for picture in made
        if _covers(picture.placement.region, placement.region)
        and picture.placement.scale[0] >= MIN_CHAIN_RATIO * width_scale
        and picture.placement.scale[1] >= MIN_CHAIN_RATIO * height_scale
    ]
    return min(usable, key=lambda picture: _area(picture.placement.size), default=None)


def _covers(outer: Box, inner: Box) -> bool:
    return (
        outer[0] <= inner[0] + _EDGE_TOLERANCE
        and outer[1] <= inner[1] + _EDGE_TOLERANCE
        and outer[2] >= inner[2] - _EDGE_TOLERANCE
        and outer[3] >= inner[3] - _EDGE_TOLERANCE
    )


def _region_within(placement: Placement, source: Placement) -> Box:
    """``placement``'s region in the pixels of ``source``'s picture."""
    x_scale, y_scale = source.scale
    left, top = source.region[0], source.region[1]
    region = placement.region
    return (
        max(0.0, (region[0] - left) * x_scale),
        max(0.0, (region[1] - top) * y_scale),
        min(float(source.size[0]), (region[2] - left) * x_scale),
        min(float(source.size[1]), (region[3] - top) * y_scale),
    )


def _resampled(image: Image.Image, region: Box, size: tuple[int, int]) -> Image.Image:
    """``region`` of ``image`` at ``size``: a plain crop (or ``image`` itself) when nothing scales."""
    left, top, right, bottom = region
    if (right - left, bottom - top) == size and all(float(edge).is_integer() for edge in region):
        whole = (0, 0, *image.size)
        return image if tuple(region) == whole else image.crop(tuple(int(edge) for edge in region))
    return image.resize(size, _RESAMPLE, box=region, reducing_gap=_REDUCING_GAP)


def _variant(
    preset: Preset,
    output: OutputFormat,
    picture: Image.Image,
    orientation: int,
    background: tuple[int, int, int],
) -> Variant:
    upright = _upright(_for_format(picture, output, background), orientation)
    data = encode(upright, output, preset.quality(output))
    return Variant(preset.name, output, upright.width, upright.height, data)


def _for_format(picture: Image.Image, output: OutputFormat, background: tuple[int, int, int]) -> Image.Image:
    """JPEG: alpha flattened on ``background``, RGB. WebP/AVIF: RGB, or RGBA when any pixel is
    not opaque (an opaque alpha plane would cost AVIF an encode and bytes for nothing)."""
    if output is OutputFormat.JPEG:
        flattened = flatten(picture, background)
        return flattened if flattened.mode == "RGB" else flattened.convert("RGB")
    with_alpha = picture.mode in ("LA", "RGBA")
    if with_alpha and picture.getextrema()[-1][0] == 255:
        with_alpha = False
    mode = "RGBA" if with_alpha else "RGB"
    return picture if picture.mode == mode else picture.convert(mode)


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    transpose = TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image.transpose(transpose) if transpose is not None else image


# ----------------------------------------------------------------------------- animation


def _animate(
    image: ImageFile.ImageFile,
    presets: list[Preset],
    placements: dict[str, Placement],
    orientation: int,
    limits: AnimationLimits,
    notes: list[str],
    clock: _Stopwatch,
) -> dict[tuple[str, OutputFormat], Variant]:
    """Animated WebP variants for ``presets`` from every frame of ``image``, or {} (and a note)
    when the animation is over the limits or a later frame cannot be decoded: their WebP then
    stays the first frame. Frames are read once each, for all the animated presets together."""
    frame_count = image.n_frames  # type: ignore[attr-defined]
    decoded_pixels = frame_count * image.width * image.height
    if frame_count > limits.max_frames or decoded_pixels > limits.max_pixels:
        notes.append(
            f"The animation has {frame_count:,} frames of {image.width}x{image.height} "
            f"({decoded_pixels:,} pixels); the limits are {limits.max_frames:,} frames and "
            f"{limits.max_pixels:,} pixels, so the WebP variants show its first frame."
        )
        return {}
    frames: dict[str, list[Image.Image]] = {preset.name: [] for preset in presets}
    durations: list[int] = []
    try:
        for index in range(frame_count):
            image.seek(index)
            pixels, transform = prepare_for_srgb(image, cmyk_profile=None)
            rgba = pixels.convert("RGBA")  # a copy even if RGBA already: the next seek() reuses the frame
            clock.lap("decode")
            for preset in presets:
                placement = placements[preset.name]
                picture = to_srgb(_resampled(rgba, placement.region, placement.size), transform)
                frames[preset.name].append(_upright(picture, orientation))
            clock.lap("resize")
            durations.append(round(image.info.get("duration", 0)))
    except DECODE_FAILURES:
        notes.append(f"Frame {index + 1} of the animation cannot be decoded: the WebP variants show its first frame.")
        return {}
    # GIF without a loop extension plays once; Pillow then leaves "loop" out (WebP: 0 = forever).
    loop = image.info.get("loop", 1)
    animations = {}
    for preset in presets:
        first = frames[preset.name][0]
        data = encode_animated_webp(frames[preset.name], durations, loop, preset.quality(OutputFormat.WEBP))
        clock.lap("encode")
        animations[(preset.name, OutputFormat.WEBP)] = Variant(
            preset.name, OutputFormat.WEBP, first.width, first.height, data, frames=frame_count
        )
    return animations
