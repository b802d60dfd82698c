"""inspect(): cheap upload-time validation, so the API can refuse bad files before queueing work."""

from __future__ import annotations

from PIL import ImageFile, TiffImagePlugin

from .decoding import open_image, pillow_errors_as_image_errors
from .errors import CorruptImageError
from .models import ImageInfo

# libjpeg's smallest DCT scale: decoding at 1/8 still walks all entropy-coded data (so truncation
# shows) while doing 1/64 of the IDCT and colour work.
_SMALLEST_JPEG_DRAFT = (1, 1)

_TIFF_DATA_LOCATIONS = (  # (offsets tag, byte-counts tag): strips, then tiles
    (TiffImagePlugin.STRIPOFFSETS, TiffImagePlugin.STRIPBYTECOUNTS),
    (324, 325),  # TileOffsets, TileByteCounts
)
_RIFF_HEADER_BYTES = 8


def inspect(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Identify ``data`` by content and check it cheaply; raises only ImageError subclasses.

    Checks: format in ALLOWED_FORMATS, width*height <= ``max_pixels`` (from the header, nothing is
    decoded before that), and truncation/corruption — JPEG by a 1/8-scale decode, PNG by verify()
    (chunk CRCs up to IEND), WebP/TIFF/BMP by comparing the header's data extents with the size.
    GIF gets header checks only; process() still catches what slips through. Truncation is detected
    as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its default (False); this package never
    sets it.
    """
    with pillow_errors_as_image_errors() as subject:
        image, image_format = open_image(data, max_pixels=max_pixels)
        subject.format = image_format
        with image:
            width, height = image.size  # before draft() shrinks it
            _check_integrity(image, image_format, data)
    return ImageInfo(format=image_format, width=width, height=height)


def _check_integrity(image: ImageFile.ImageFile, image_format: str, data: bytes) -> None:
    if image_format == "JPEG":
        image.draft(None, _SMALLEST_JPEG_DRAFT)
        image.load()
        return
    needed = _declared_data_end(image, image_format, data)
    if needed is not None and needed > len(data):
        raise CorruptImageError(
            f"The {image_format} file is truncated: its header describes {needed:,} bytes "
            f"but only {len(data):,} were received."
        )
    image.verify()


def _declared_data_end(image: ImageFile.ImageFile, image_format: str, data: bytes) -> int | None:
    """Byte offset where the header says the pixel data ends, when the format makes that cheap."""
    if image_format == "TIFF":
        return _tiff_data_end(image)
    if image_format == "WEBP":
        return _riff_end(data)
    if image_format == "BMP":
        return _raw_tiles_end(image)
    return None


def _as_tuple(value: object) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple) and all(isinstance(item, int) for item in value):
        return value
    return ()


def _tiff_data_end(image: ImageFile.ImageFile) -> int | None:
    tags = getattr(image, "tag_v2", None)
    if tags is None:
        return None
    for offsets_tag, counts_tag in _TIFF_DATA_LOCATIONS:
        offsets, counts = _as_tuple(tags.get(offsets_tag)), _as_tuple(tags.get(counts_tag))
        if offsets and len(offsets) == len(counts):
            return max(offset + count for offset, count in zip(offsets, counts, strict=True))
    return None


def _riff_end(data: bytes) -> int | None:
    # RIFF: "RIFF", little-endian size of everything after these 8 bytes, "WEBP", chunks.
    if len(data) < _RIFF_HEADER_BYTES:
        return None
    return int.from_bytes(data[4:8], "little") + _RIFF_HEADER_BYTES


def _raw_tiles_end(image: ImageFile.ImageFile) -> int | None:
    ends = []
    for tile in image.tile:
        args = tile.args
        if tile.codec_name != "raw" or not isinstance(args, tuple) or len(args) < 2:
            return None  # compressed (RLE) data: its length is not in the header
        stride = args[1]
        if not isinstance(stride, int) or stride <= 0 or tile.extents is None:
            return None
        ends.append(tile.offset + stride * (tile.extents[3] - tile.extents[1]))
    return max(ends, default=None)
