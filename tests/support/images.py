"""Small generated images for API and worker tests."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg(width: int = 1600, height: int = 1200, *, orientation: int | None = None, gps: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (30, 120, 200))
    image.paste((250, 20, 20), (0, 0, max(1, width // 4), max(1, height // 4)))  # marks the top-left
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def photo(width: int, height: int, *, quality: int = 90) -> bytes:
    """A JPEG with a photo's entropy (noise), so the worker spends real time on it."""
    noise = [Image.effect_noise((width, height), sigma) for sigma in (40, 50, 60)]
    return encode(Image.merge("RGB", noise), "JPEG", quality=quality)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def corrupt_png(width: int = 200, height: int = 100) -> bytes:
    """A PNG whose chunks and compression are intact but whose rows name a filter type that does
    not exist: accepted by the upload check (which does not decode), refused by the worker, so
    the task ends up `failed` with a reason."""
    data = bytearray(encode(Image.new("RGB", (width, height), (10, 20, 30)), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    invalid_filter = 9  # PNG defines 0-4
    payload = zlib.compress((bytes([invalid_filter]) + bytes(3 * width)) * height)
    chunk = struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    data[at - 4 : at + 8 + length] = chunk
    return bytes(data)
