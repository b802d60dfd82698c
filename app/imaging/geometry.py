"""Output size arithmetic, cover crops and EXIF orientation, as pure functions of numbers."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .presets import Fit

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


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Placement:
    """What a preset shows of the source and at what size, both in the source's *stored*
    orientation (the EXIF transpose comes after resampling, on the small image).

    ``region`` is in source pixels, fractional for a scaled centre crop (resampling from a
    fractional box keeps the geometry exact); integers when nothing is scaled.
    """

    region: Box
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel, horizontally and vertically (1 or less: never enlarged)."""
        left, top, right, bottom = self.region
        return self.size[0] / (right - left), self.size[1] / (bottom - top)


def place(stored_size: tuple[int, int], orientation: int, box: tuple[int, int], fit: Fit) -> Placement:
    """Where a ``box``-sized preset (as displayed) falls on a source of ``stored_size``.

    contain: the whole source, fitted inside the box. cover: the box's aspect ratio, centred;
    when the source is smaller than the box, the largest centred crop of that aspect ratio at its
    own size (a cover preset promises a shape, so a small source gives a smaller picture of the
    same shape, never a stretched or enlarged one).
    """
    displayed = displayed_size(stored_size, orientation)
    if fit is Fit.CONTAIN:
        return Placement((0, 0, *stored_size), displayed_size(fit_within(displayed, *box), orientation))
    crop, output = _cover(displayed, *box)
    return Placement(_centred(stored_size, displayed_size(crop, orientation)), displayed_size(output, orientation))


def _cover(size: tuple[int, int], box_width: int, box_height: int) -> tuple[tuple[float, float], tuple[int, int]]:
    """(crop size, output size) of a centred cover crop, in the same orientation as ``size``."""
    width, height = size
    if width * box_height >= height * box_width:  # wider than the box: full height, width cropped
        if height >= box_height:
            return (height * box_width / box_height, height), (box_width, box_height)
        crop = (min(width, max(1, _div_round_half_up(height * box_width, box_height))), height)
    else:
        if width >= box_width:
            return (width, width * box_height / box_width), (box_width, box_height)
        crop = (width, min(height, max(1, _div_round_half_up(width * box_height, box_width))))
    return crop, crop  # smaller than the box: whole pixels, shown as they are


def _centred(size: tuple[int, int], crop: tuple[float, float]) -> Box:
    """The ``crop``-sized box centred in ``size``; on whole pixels when the crop is whole."""
    width, height = size
    crop_width, crop_height = crop
    if isinstance(crop_width, int) and isinstance(crop_height, int):
        left, top = (width - crop_width) // 2, (height - crop_height) // 2
    else:
        left, top = (width - crop_width) / 2, (height - crop_height) / 2
    return (left, top, left + crop_width, top + crop_height)
