"""inspect(): cheap upload-time validation, so the API can refuse bad files before queueing work.

The check is structural: it reads headers, segment and chunk frames, never the compressed pixel data
(the worker decodes that, and reports damage there as a failed task with a reason). Its cost is
microseconds to a few milliseconds for a 12 MP upload, against ~57 ms for the 1/8-scale JPEG decode
it replaced.
"""

from __future__ import annotations

import re
import zlib

from PIL import ImageFile, TiffImagePlugin

from .decoding import open_image, pillow_errors_as_image_errors
from .errors import CorruptImageError
from .models import ImageInfo

_TIFF_DATA_LOCATIONS = (  # (offsets tag, byte-counts tag): strips, then tiles
    (TiffImagePlugin.STRIPOFFSETS, TiffImagePlugin.STRIPBYTECOUNTS),
    (324, 325),  # TileOffsets, TileByteCounts
)
_RIFF_HEADER_BYTES = 8

_PNG_SIGNATURE_BYTES = 8
_PNG_CHUNK_FRAME_BYTES = 12  # length, type, CRC around each chunk's data
_PNG_MAX_CHUNK_BYTES = 2**31 - 1  # the spec's limit on a chunk's length
_PNG_CHUNK_TYPE = re.compile(rb"[A-Za-z]{4}")

_GIF_HEADER_BYTES = 13  # signature, version, logical screen descriptor
_GIF_IMAGE_DESCRIPTOR_BYTES = 10
_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, 0x3B

# JPEG markers (ITU T.81 table B.1).
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS, _JPEG_DQT, _JPEG_DHT, _JPEG_TEM = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0x01
_JPEG_RST = range(0xD0, 0xD8)
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_MAX_COMPONENTS = 4
_JPEG_MAX_TABLE_ID = 3


def inspect(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Identify ``data`` by content and check its structure cheaply; raises only ImageError subclasses.

    Checks: format in ALLOWED_FORMATS, width*height <= ``max_pixels`` (from the header, nothing is
    decoded before that), and structure:

    - JPEG: every marker segment from SOI to the first scan, with consistent lengths; one frame
      header with a sane geometry and components; the quantisation tables it uses defined (DQT) and
      well formed, Huffman tables well formed; the scan header valid; and an EOI marker after it.
      The compressed data (and, in a progressive JPEG, the headers between later scans) is not read.
    - PNG: the chunk sequence from IHDR to IEND, each chunk's length inside the file and its CRC
      correct, at least one IDAT.
    - GIF: its blocks walked, without decoding them, to the end of the first image's data.
    - WebP/TIFF/BMP: the header's data extents against the file's size.

    So a file cut anywhere is refused here (for GIF: anywhere before the end of the first frame).
    Damage *inside* intact compressed data (a JPEG's entropy-coded bits or the segments between
    progressive scans, a PNG's zlib stream or filter bytes, GIF LZW codes) is not looked for:
    :func:`process` meets it while decoding, and the worker reports the task as failed with the
    reason. Truncation is detected as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its
    default (False); this package never sets it.
    """
    with pillow_errors_as_image_errors() as subject:
        image, image_format = open_image(data, max_pixels=max_pixels)
        subject.format = image_format
        with image:
            width, height = image.size
            _check_structure(image, image_format, data)
    return ImageInfo(format=image_format, width=width, height=height)


def _check_structure(image: ImageFile.ImageFile, image_format: str, data: bytes) -> None:
    if image_format == "JPEG":
        _check_jpeg_segments(data)
        return
    if image_format == "PNG":
        _check_png_chunks(data)
        return
    needed = _declared_data_end(image, image_format, data)
    if needed is not None and needed > len(data):
        raise CorruptImageError(
            f"The {image_format} file is truncated: its header describes {needed:,} bytes "
            f"but only {len(data):,} were received."
        )
    if image_format == "GIF":
        _check_first_gif_frame(data)
    image.verify()


# --------------------------------------------------------------------------- JPEG


def _jpeg_cut() -> CorruptImageError:
    return CorruptImageError("The JPEG file is corrupt or truncated (it ends before its end-of-image marker).")


def _jpeg_corrupt(what: str) -> CorruptImageError:
    return CorruptImageError(f"The JPEG file is corrupt or truncated ({what}).")


def _check_jpeg_segments(data: bytes) -> None:
    """Walk the marker segments from SOI to the first scan (ITU T.81 annex B), then find an EOI
    after it; see :func:`inspect`."""
    size = len(data)
    if data[:2] != b"\xff\xd8":
        raise _jpeg_corrupt("no start-of-image marker")
    position = 2
    frame_tables: set[int] | None = None  # quantisation tables the frame's components use
    defined_tables: set[int] = set()
    while True:
        if position >= size:
            raise _jpeg_cut()
        if data[position] != 0xFF:
            raise _jpeg_corrupt(f"a marker was expected at byte {position:,}")
        while position < size and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= size:
            raise _jpeg_cut()
        marker = data[position]
        position += 1
        if marker == _JPEG_EOI:
            raise _jpeg_corrupt("it contains no image data")
        if marker in _JPEG_RST or marker == _JPEG_TEM:  # no length field
            continue
        if marker in (_JPEG_SOI, 0x00):
            raise _jpeg_corrupt(f"unexpected marker 0xFF{marker:02X} at byte {position - 2:,}")
        if position + 2 > size:
            raise _jpeg_cut()
        length = int.from_bytes(data[position : position + 2], "big")
        end = position + length
        if length < 2:
            raise _jpeg_corrupt(f"a segment at byte {position - 2:,} declares {length} bytes")
        if end > size:
            raise _jpeg_cut()
        body = data[position + 2 : end]
        if marker in _JPEG_SOF:
            if frame_tables is not None:
                raise _jpeg_corrupt("more than one frame header")
            frame_tables = _jpeg_frame_tables(body)
        elif marker == _JPEG_DQT:
            defined_tables |= _jpeg_quantisation_tables(body)
        elif marker == _JPEG_DHT:
            _check_jpeg_huffman_tables(body)
        elif marker == _JPEG_SOS:
            if frame_tables is None:
                raise _jpeg_corrupt("a scan starts before the frame header")
            missing = frame_tables - defined_tables
            if missing:
                raise _jpeg_corrupt(f"quantisation table {min(missing)} is used but never defined")
            _check_jpeg_scan_header(body, length)
            # The compressed data is not walked (3 ms for 12 MP even with a C regex): entropy-coded
            # bytes cannot contain FF D9, so a file cut anywhere after here has no EOI after it.
            # Whatever follows that EOI (a second MPO picture, a camera's trailer) is not ours.
            if data.rfind(b"\xff\xd9", end) < 0:
                raise _jpeg_cut()
            return
        position = end


def _jpeg_frame_tables(body: bytes) -> set[int]:
    if len(body) < 6:
        raise _jpeg_corrupt("the frame header is too short")
    precision, components = body[0], body[5]
    width = int.from_bytes(body[3:5], "big")
    if precision not in (8, 12, 16) or width == 0:
        raise _jpeg_corrupt("the frame header is invalid")
    if not 1 <= components <= _JPEG_MAX_COMPONENTS or len(body) != 6 + 3 * components:
        raise _jpeg_corrupt("the frame header's component list is invalid")
    tables = set()
    for index in range(components):
        sampling, table = body[7 + 3 * index], body[8 + 3 * index]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 0x0F <= 4) or table > _JPEG_MAX_TABLE_ID:
            raise _jpeg_corrupt("the frame header's component list is invalid")
        tables.add(table)
    return tables


def _jpeg_quantisation_tables(body: bytes) -> set[int]:
    defined, position = set(), 0
    while position < len(body):
        precision, table = body[position] >> 4, body[position] & 0x0F
        if precision > 1 or table > _JPEG_MAX_TABLE_ID:
            raise _jpeg_corrupt("a quantisation table is invalid")
        position += 1 + 64 * (precision + 1)
        defined.add(table)
    if position != len(body) or not defined:
        raise _jpeg_corrupt("a quantisation table segment has the wrong length")
    return defined


def _check_jpeg_huffman_tables(body: bytes) -> None:
    position = 0
    while position < len(body):
        if position + 17 > len(body) or body[position] >> 4 > 1 or body[position] & 0x0F > _JPEG_MAX_TABLE_ID:
            raise _jpeg_corrupt("a Huffman table is invalid")
        codes = sum(body[position + 1 : position + 17])
        if codes > 256:
            raise _jpeg_corrupt("a Huffman table is invalid")
        position += 17 + codes
    if position != len(body) or not body:
        raise _jpeg_corrupt("a Huffman table segment has the wrong length")


def _check_jpeg_scan_header(body: bytes, length: int) -> None:
    components = body[0] if body else 0
    if not 1 <= components <= _JPEG_MAX_COMPONENTS or length != 6 + 2 * components:
        raise _jpeg_corrupt("a scan header is invalid")


# --------------------------------------------------------------------------- PNG


def _check_png_chunks(data: bytes) -> None:
    """Walk the chunks from IHDR to IEND, checking each frame and CRC; see :func:`inspect`."""
    view = memoryview(data)  # CRCs over slices of the upload without copying them
    position, size = _PNG_SIGNATURE_BYTES, len(data)
    first, image_chunks = True, 0
    while True:
        if position + _PNG_CHUNK_FRAME_BYTES > size:
            raise CorruptImageError("The PNG file is truncated: it ends before its IEND chunk.")
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if length > _PNG_MAX_CHUNK_BYTES or not _PNG_CHUNK_TYPE.fullmatch(kind):
            raise CorruptImageError(f"The PNG file is corrupt: invalid chunk header at byte {position:,}.")
        end = position + 8 + length
        if end + 4 > size:
            raise CorruptImageError("The PNG file is truncated: it ends before its IEND chunk.")
        if first and kind != b"IHDR":
            raise CorruptImageError("The PNG file is corrupt: it does not start with an IHDR chunk.")
        if zlib.crc32(view[position + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            name = kind.decode("ascii")
            raise CorruptImageError(f"The PNG file is corrupt: its {name} chunk at byte {position:,} fails its CRC.")
        first = False
        image_chunks += kind == b"IDAT"
        position = end + 4
        if kind == b"IEND":
            break
    if not image_chunks:
        raise CorruptImageError("The PNG file is corrupt: it contains no image data (IDAT).")


# --------------------------------------------------------------------------- GIF


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
