"""Output size arithmetic and EXIF orientation, as pure functions of integers."""

from __future__ import annotations

from PIL import Image

# EXIF Orientation (tag 0x0112) -> the transpose that displays the stored pixels upright; the same
# table as PIL.ImageOps.exif_transpose. 1 (and any unknown value) means "as stored".
TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATIONS_SWAPPING_AXES = frozenset({5, 6, 7, 8})


def swaps_axes(orientation: int) -> bool:
    """True when displaying upright exchanges width and height (the 90/270-degree cases)."""
    return orientation in _ORIENTATIONS_SWAPPING_AXES


def displayed_size(stored_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Size as the viewer sees it; also maps a displayed size back to stored (the swap is its own inverse)."""
    width, height = stored_size
    return (height, width) if swaps_axes(orientation) else (width, height)


def _div_round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def fit_within(size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """Largest size with ``size``'s aspect ratio inside the box; never larger than ``size``, never 0.

    Integer arithmetic, so 4000x3000 -> 800x600 exactly, and 10000x10 -> 800x1 rather than 800x0.
    """
    width, height = size
    if width <= max_width and height <= max_height:
        return width, height
    if width * max_height >= height * max_width:  # wider than the box: width is the binding side
        return max_width, max(1, _div_round_half_up(height * max_width, width))
    return max(1, _div_round_half_up(width * max_height, height)), max_height
