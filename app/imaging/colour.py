"""Colour-mode normalisation: any decoded Pillow mode -> something resampling and JPEG can take.

Resampling happens in one of four *working modes*: L, LA, RGB, RGBA. Pillow premultiplies alpha when
resizing LA/RGBA, so transparency can be flattened after the resize, on the small image.
"""

from __future__ import annotations

import math

from PIL import Image

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})

_WITH_ALPHA = {"L": "LA", "RGB": "RGBA", "1": "LA"}
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}

_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_MAX = 65535


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
    # CMYK (no ICC handling: Pillow's naive conversion), YCbCr, LAB, HSV, RGBX, ...
    return image.convert("RGB")


def flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite LA/RGBA onto an opaque white background (L/RGB pass through)."""
    if image.mode not in ("LA", "RGBA"):
        return image
    background = Image.new(image.mode[:-1], image.size, "white")
    background.paste(image, (0, 0), image)  # an RGBA/LA mask means "use its alpha band"
    return background


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
