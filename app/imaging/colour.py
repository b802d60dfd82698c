"""Colour: any decoded Pillow mode -> a mode resampling takes, then sRGB through the image's ICC profile.

Resampling happens in one of four *working modes*: L, LA, RGB, RGBA (and CMYK, when a profile will
convert it). Pillow premultiplies alpha when resizing LA/RGBA, so transparency can be flattened
after the resize, on the small image.

ICC profiles are applied *after* resampling, to the smaller image: a transform costs ~16 ns a pixel
(RGB matrix-shaper; ~40 for a CMYK LUT profile), so converting the decode of a 12 MP PNG would cost
~200 ms against ~30 ms for its 1600x1200 output. Resampling in the source's encoding rather than in
sRGB's changes nothing visible: both are gamma-encoded, and neither is linear light.
"""

from __future__ import annotations

import functools
import io
import math

from PIL import Image, ImageChops, ImageCms

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})

_WITH_ALPHA = {"L": "LA", "RGB": "RGBA", "1": "LA"}
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}

_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_MAX = 65535


# Relative colorimetric keeps every colour that sRGB can show exactly where it is (a P3 or Adobe RGB
# photo's in-gamut colours do not move), and clips the rest; perceptual would desaturate the whole
# picture to make room, and matrix-shaper profiles (P3, Adobe RGB, sRGB: most photos) have no
# perceptual tables anyway, so LCMS would fall back to colorimetric for them. Black point
# compensation maps a CMYK profile's ink black (L* 10-20) to sRGB black rather than a washed-out
# grey, as Photoshop's default conversion does.
RENDERING_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
Transform = ImageCms.ImageCmsTransform
_TRANSFORM_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

# Profile colour space (ICC header) -> the working modes it applies to, and what each becomes.
_SRGB_MODE_FOR = {"RGB ": {"RGB": "RGB", "RGBA": "RGBA"}, "GRAY": {"L": "RGB", "LA": "RGBA"}, "CMYK": {"CMYK": "RGB"}}
# A profile that moves no colour of a 16x16x16 grid by more than this is sRGB in all but name
# (the camera and phone "sRGB IEC61966-2.1" profiles): its pixels are left exactly as decoded.
_SRGB_EQUIVALENT_TOLERANCE = 1
# Where Debian's libgs-common (scripts/system-packages, the Dockerfile) puts ghostscript's "Artifex
# CMYK SWOP Profile": the standard profile for CMYK sources that embed none. US Web Coated (SWOP) is
# what Photoshop assumes for untagged CMYK too. Free (AGPL, part of ghostscript); read by the caller
# (this package does no I/O) and passed to render_variants(cmyk_profile=...).
STANDARD_CMYK_PROFILE_PATH = "/usr/share/color/icc/ghostscript/default_cmyk.icc"
# Distinct profiles seen at once are few (sRGB, Display P3, Adobe RGB, a print profile or two);
# the bound keeps hostile uploads, each with a new profile, from growing the cache.
_CACHED_TRANSFORMS = 32


def prepare_for_srgb(image: Image.Image, *, cmyk_profile: bytes | None) -> tuple[Image.Image, Transform | None]:
    """The decoded ``image`` in a working mode, and the transform that takes it to sRGB once resampled.

    The transform comes from the embedded ICC profile; for CMYK without a usable one, from
    ``cmyk_profile`` (a standard press profile); None when the pixels are sRGB already (no profile,
    an sRGB-equivalent one, or one that is unreadable or does not fit the mode: ignored, as browsers
    do). CMYK with no profile at all falls back to Pillow's naive conversion, here.
    """
    embedded = image.info.get("icc_profile") or None
    if image.mode == "CMYK":
        transform = _transform_to_srgb(embedded, "CMYK") if embedded else None
        if transform is None and cmyk_profile:
            transform = _transform_to_srgb(cmyk_profile, "CMYK")
        # Pillow decodes Adobe's inverted CMYK and YCCK JPEGs (APP14 marker) to plain CMYK itself.
        return (image, transform) if transform is not None else (image.convert("RGB"), None)
    pixels = to_working_mode(image)
    return pixels, _transform_to_srgb(embedded, pixels.mode) if embedded else None


def to_srgb(image: Image.Image, transform: Transform | None) -> Image.Image:
    """Apply the transform from :func:`prepare_for_srgb` (None: ``image`` is sRGB already)."""
    return image if transform is None else ImageCms.applyTransform(image, transform)


@functools.lru_cache(maxsize=_CACHED_TRANSFORMS)
def _transform_to_srgb(profile_bytes: bytes, mode: str) -> Transform | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
        output_mode = _SRGB_MODE_FOR.get(profile.profile.xcolor_space, {}).get(mode)
        if output_mode is None:
            return None
        flags = _TRANSFORM_FLAGS | (ImageCms.Flags.COPY_ALPHA if mode.endswith("A") else 0)
        transform = ImageCms.buildTransform(profile, _SRGB, mode, output_mode, RENDERING_INTENT, flags)
        if mode != "CMYK" and _is_srgb_equivalent(transform, mode):
            return None
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):  # a damaged profile is ignored
        return None
    return transform


def _is_srgb_equivalent(transform: Transform, mode: str) -> bool:
    steps = range(0, 256, 17)
    if mode.startswith("L"):
        probe = Image.new("L", (16, 1))
        probe.putdata(list(steps))
        expected = probe.convert("RGB")
    else:
        probe = Image.new("RGB", (16 * 16, 16))
        probe.putdata([(red, green, blue) for red in steps for green in steps for blue in steps])
        expected = probe
    if mode.endswith("A"):
        probe = probe.convert(mode)
    converted = ImageCms.applyTransform(probe, transform).convert("RGB")
    largest_change = max(high for _, high in ImageChops.difference(converted, expected).getextrema())
    return largest_change <= _SRGB_EQUIVALENT_TOLERANCE


def to_working_mode(image: Image.Image) -> Image.Image:
    """Return ``image`` (or a converted copy) in a working mode; alpha is kept only if it is there.

    High-bit-depth greyscale (I;16*, I, F) is scaled into 0..255 rather than clipped, so a 16-bit PNG
    does not come out white. A transparent colour key on those modes is ignored (rare; not worth a
    per-pixel pass).
    """
    mode = image.mode
    if mode in WORKING_MODES and not (mode in _WITH_ALPHA and "transparency" in image.info):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if mode in _WITH_ALPHA:  # 1, L, RGB, the latter two with a tRNS colour key
        return image.convert(_WITH_ALPHA[mode] if "transparency" in image.info else "L")
    if mode in _PREMULTIPLIED:
        return image.convert(_PREMULTIPLIED[mode])
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_bit_depth_to_l(image)
    # YCbCr, LAB, HSV, RGBX, ... (CMYK is prepare_for_srgb's)
    return image.convert("RGB")


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite LA/RGBA onto an opaque sRGB ``background`` (L/RGB pass through)."""
    if image.mode not in ("LA", "RGBA"):
        return image
    if image.mode == "LA" and len(set(background)) > 1:  # a coloured background needs colour
        image = image.convert("RGBA")
    canvas = Image.new(image.mode[:-1], image.size, background if image.mode == "RGBA" else background[0])
    canvas.paste(image, (0, 0), image)  # an RGBA/LA mask means "use its alpha band"
    return canvas


def _value_range(image: Image.Image) -> tuple[float, float]:
    """The range the samples are meant to span; guessed from the extrema for I and F."""
    if image.mode.startswith("I;16"):
        return 0.0, float(_SIXTEEN_BIT_MAX)
    low, high = image.getextrema()
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, float(_EIGHT_BIT_MAX)
    if image.mode == "F" and low >= 0 and high <= 1:  # normalised float data
        return 0.0, 1.0
    if low >= 0 and high <= _EIGHT_BIT_MAX:
        return 0.0, float(_EIGHT_BIT_MAX)
    if low >= 0 and high <= _SIXTEEN_BIT_MAX:
        return 0.0, float(_SIXTEEN_BIT_MAX)
    return float(low), float(high)  # anything else (e.g. signed or 32-bit): stretch


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    low, high = _value_range(image)
    wide = image if image.mode in ("I", "F") else image.convert("I")
    scale = _EIGHT_BIT_MAX / (high - low) if high > low else 0.0
    offset = -low * scale
    # point() on I/F applies the linear map in C; convert("L") then clips and rounds to 8 bits.
    return wide.point(lambda value: value * scale + offset).convert("L")
