"""Small, deterministic test images built in code for the imaging tests (no binary fixtures in the
repository); the shared encode/decode/jpeg are in tests/support/images.py."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from PIL import Image

from tests.support.images import decode, encode  # noqa: F401 - shared helpers, re-exported for the imaging tests

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)

EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825
GPS_LATITUDE_REF = 1
GPS_LATITUDE = 2

Corner = str  # "top-left", "top-right", "bottom-left", "bottom-right"


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Smooth, deterministic content (JPEG-friendly) in any 8-bit mode Pillow can convert RGB to."""
    width, height = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.new("L", size, 128)
    picture = Image.merge("RGB", (red, green, blue))
    return picture if mode == "RGB" else picture.convert(mode)


def with_marker(size: tuple[int, int], corner: Corner = "top-left", colour: tuple[int, int, int] = RED) -> Image.Image:
    """Blue canvas with a coloured block covering a quarter of each side, in one corner."""
    width, height = size
    image = Image.new("RGB", size, BLUE)
    block_width, block_height = max(1, width // 4), max(1, height // 4)
    left = 0 if corner.endswith("left") else width - block_width
    top = 0 if corner.startswith("top") else height - block_height
    image.paste(colour, (left, top, left + block_width, top + block_height))
    return image


def corner_pixel(image: Image.Image, corner: Corner) -> tuple[int, ...]:
    """The pixel in the middle of the corner block (an eighth of each side in from the corner)."""
    width, height = image.size
    x = width // 8 if corner.endswith("left") else width - 1 - width // 8
    y = height // 8 if corner.startswith("top") else height - 1 - height // 8
    return image.getpixel((x, y))


def is_close(actual: Sequence[int], expected: Sequence[int], tolerance: int = 24) -> bool:
    return len(actual) == len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def exif_with(orientation: int | None = None, *, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    exif[0x010F] = "TestCam"  # Make
    if gps:
        gps_ifd = exif.get_ifd(EXIF_GPS_IFD)
        gps_ifd[GPS_LATITUDE_REF] = "N"
        gps_ifd[GPS_LATITUDE] = (52.0, 22.0, 1.5)
    return exif


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    return encode(image, "JPEG", quality=95, exif=exif_with(orientation))


# ----------------------------------------------------------------------------- hand-made files


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bilevel_bomb(width: int, height: int) -> bytes:
    """A *valid* 1-bit PNG of zeros: kilobytes on disk, width*height pixels once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_chunk = max(1, (1 << 20) // len(row))
    parts = []
    for first_row in range(0, height, rows_per_chunk):
        parts.append(compressor.compress(row * min(rows_per_chunk, height - first_row)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims a huge canvas (RGB, 8-bit) over a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header is patched to claim another size (entropy data untouched)."""
    data = bytearray(encode(gradient((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (4, 4)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen descriptor
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)  # BITMAPINFOHEADER biWidth, biHeight
    return bytes(data)


def minimal_psd(width: int = 4, height: int = 4) -> bytes:
    """Photoshop file: RGB, 8-bit, raw pixel data, no resources or layers."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour-mode data, image resources, layers: all empty
    return header + sections + struct.pack(">H", 0) + bytes(3 * width * height)


def animated_gif(colours: Sequence[tuple[int, int, int]], size: tuple[int, int] = (16, 16)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def multipage_tiff(colours: Sequence[tuple[int, int, int]], size: tuple[int, int] = (16, 16)) -> bytes:
    pages = [Image.new("RGB", size, colour) for colour in colours]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def flip_bits(data: bytes, flips: Sequence[tuple[int, int]]) -> bytes:
    """XOR ``mask`` into the byte at ``position % len(data)`` for each (position, mask)."""
    mutated = bytearray(data)
    for position, mask in flips:
        mutated[position % len(mutated)] ^= mask
    return bytes(mutated)
