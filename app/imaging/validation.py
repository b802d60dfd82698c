"""inspect(): cheap upload-time validation, so the API can refuse bad files before queueing work."""

from __future__ import annotations

import zlib

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

_PNG_SIGNATURE_BYTES = 8
_PNG_CHUNK_FRAME_BYTES = 12  # length, type, CRC around each chunk's data
# The PNG check inflates the pixel stream and drops the output this much at a time, so a
# 50 MP image costs CPU proportional to its size but no more than this much memory.
_INFLATE_STEP_BYTES = 1 << 20

_GIF_HEADER_BYTES = 13  # signature, version, logical screen descriptor
_GIF_IMAGE_DESCRIPTOR_BYTES = 10
_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, 0x3B


def inspect(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Identify ``data`` by content and check it cheaply; raises only ImageError subclasses.

    Checks: format in ALLOWED_FORMATS, width*height <= ``max_pixels`` (from the header, nothing is
    decoded before that), and truncation/corruption — JPEG by a 1/8-scale decode, PNG by verify()
    (chunk CRCs up to IEND) and by inflating its compressed pixel stream, GIF by walking its blocks
    to the end of the first frame's data, WebP/TIFF/BMP by comparing the header's data extents with
    the size. Damage these cannot see (PNG filter bytes, LZW codes) is reported by process() as a
    failed task. Truncation is detected as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its
    default (False); this package never sets it.
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
    if image_format == "PNG":
        _check_png_pixel_stream(data)
    elif image_format == "GIF":
        _check_first_gif_frame(data)
    image.verify()


def _check_png_pixel_stream(data: bytes) -> None:
    """verify() checks chunk CRCs only: a cut or damaged compressed stream inside intact chunks
    passes it. Inflating the IDAT data (zlib.error on damage) finds both."""
    inflater = zlib.decompressobj()
    position = _PNG_SIGNATURE_BYTES
    while position + _PNG_CHUNK_FRAME_BYTES <= len(data) and not inflater.eof:
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            pending = data[position + 8 : position + 8 + length]
            while pending and not inflater.eof:
                inflater.decompress(pending, _INFLATE_STEP_BYTES)
                pending = inflater.unconsumed_tail
        position += _PNG_CHUNK_FRAME_BYTES + length
    if not inflater.eof:
        raise CorruptImageError("The PNG file is truncated: its compressed pixel data ends early.")


def _check_first_gif_frame(data: bytes) -> None:
    """Walk the GIF's blocks, without decoding them, to the end of the first image's data (the
    frame the service converts); a file cut before that point is refused."""
    position = _GIF_HEADER_BYTES + _colour_table_bytes(data[_GIF_HEADER_BYTES - 3])
    while True:
        introducer = _gif_byte(data, position)
        if introducer == _GIF_EXTENSION:  # label, then data sub-blocks
            position = _skip_gif_sub_blocks(data, position + 2)
        elif introducer == _GIF_IMAGE:  # descriptor, local colour table, LZW code size, sub-blocks
            flags = _gif_byte(data, position + _GIF_IMAGE_DESCRIPTOR_BYTES - 1)
            position += _GIF_IMAGE_DESCRIPTOR_BYTES + _colour_table_bytes(flags) + 1
            _skip_gif_sub_blocks(data, position)
            return
        elif introducer == _GIF_TRAILER:
            raise CorruptImageError("The GIF file contains no image.")
        else:
            raise CorruptImageError(f"The GIF file is corrupt (unexpected block 0x{introducer:02x}).")


def _colour_table_bytes(flags: int) -> int:
    return 3 * (2 << (flags & 0x07)) if flags & 0x80 else 0


def _gif_byte(data: bytes, position: int) -> int:
    if position >= len(data):
        raise CorruptImageError("The GIF file is truncated before the end of its first image.")
    return data[position]


def _skip_gif_sub_blocks(data: bytes, position: int) -> int:
    while size := _gif_byte(data, position):
        position += 1 + size
    return position + 1


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
