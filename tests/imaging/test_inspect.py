"""inspect(): cheap upload-time identification, size limit and truncation checks."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image, ImageFile

from app.imaging import (
    ALLOWED_FORMATS,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageInfo,
    ImageTooLargeError,
    Spec,
    UnsupportedImageError,
    inspect,
    process,
)
from tests.utils.images import corrupt_png

from .images import (
    RED,
    animated_gif,
    encode,
    gradient,
    jpeg_declaring,
    jpeg_with_orientation,
    minimal_psd,
    multipage_tiff,
    png_bilevel_bomb,
    png_declaring,
    with_marker,
)

LIMIT = 50_000_000


def test_allowed_formats() -> None:
    assert ALLOWED_FORMATS == ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


@pytest.mark.parametrize("image_format", ALLOWED_FORMATS)
def test_identifies_every_allowed_format_by_content(image_format: str) -> None:
    data = encode(gradient((64, 48)), image_format)
    assert inspect(data, max_pixels=LIMIT) == ImageInfo(format=image_format, width=64, height=48)


@pytest.mark.parametrize(
    ("data", "image_format"),
    [
        (animated_gif([RED, (0, 0, 255)], size=(20, 10)), "GIF"),
        (multipage_tiff([RED, (0, 0, 255)], size=(20, 10)), "TIFF"),
        (encode(Image.new("CMYK", (20, 10)), "JPEG"), "JPEG"),
        (encode(Image.new("I;16", (20, 10)), "PNG"), "PNG"),
        (encode(Image.new("RGBA", (20, 10)), "WEBP", lossless=True), "WEBP"),
        (encode(Image.new("P", (20, 10)), "BMP"), "BMP"),
    ],
)
def test_identifies_variants(data: bytes, image_format: str) -> None:
    assert inspect(data, max_pixels=LIMIT) == ImageInfo(format=image_format, width=20, height=10)


def test_reports_stored_dimensions_not_the_oriented_ones() -> None:
    data = jpeg_with_orientation(with_marker((64, 48)), 6)
    assert inspect(data, max_pixels=LIMIT) == ImageInfo("JPEG", 64, 48)


def test_agrees_with_process_on_the_source() -> None:
    data = encode(gradient((1000, 700)), "JPEG")
    info = inspect(data, max_pixels=LIMIT)
    result = process(data, Spec())
    assert (info.format, info.width, info.height) == (
        result.source_format,
        result.source_width,
        result.source_height,
    )


def test_multi_picture_jpeg_is_reported_as_jpeg() -> None:
    frames = [Image.new("RGB", (16, 8), colour) for colour in (RED, (0, 0, 255))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert inspect(data, max_pixels=LIMIT).format == "JPEG"


def test_empty() -> None:
    with pytest.raises(EmptyImageError):
        inspect(b"", max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"just some text", None),
        (b"%PDF-1.4\n", "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (minimal_psd(), "PSD"),
        (encode(Image.new("RGB", (16, 16)), "ICO"), "ICO"),
    ],
)
def test_unsupported(data: bytes, named: str | None) -> None:
    with pytest.raises(UnsupportedImageError) as raised:
        inspect(data, max_pixels=LIMIT)
    if named:
        assert str(raised.value).startswith(f"{named} files are not supported")


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageTooLargeError, match="64x48 = 3,072 pixels; the limit is 3,000 pixels"):
        inspect(encode(gradient((64, 48)), "PNG"), max_pixels=3000)
    assert inspect(encode(gradient((64, 48)), "PNG"), max_pixels=3072).width == 64


@pytest.mark.parametrize("bomb", [png_bilevel_bomb(20000, 20000), png_declaring(10000, 10000)])
def test_bombs(bomb: bytes) -> None:
    with pytest.raises(ImageTooLargeError):
        inspect(bomb, max_pixels=LIMIT)


def test_huge_jpeg_header() -> None:
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        inspect(jpeg_declaring(60000, 60000), max_pixels=LIMIT)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.2])
def test_truncated_jpeg_is_corrupt(keep: float) -> None:
    data = encode(gradient((256, 256)), "JPEG")
    with pytest.raises(CorruptImageError, match="JPEG file is corrupt or truncated"):
        inspect(data[: int(len(data) * keep)], max_pixels=LIMIT)


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.1])
def test_truncated_png_is_corrupt(keep: float) -> None:
    data = encode(gradient((256, 256)), "PNG")
    with pytest.raises(CorruptImageError, match="PNG"):
        inspect(data[: int(len(data) * keep)], max_pixels=LIMIT)


def test_png_with_a_damaged_chunk_is_corrupt() -> None:
    data = bytearray(encode(gradient((64, 64)), "PNG"))
    data[data.index(b"IDAT") + 10] ^= 0xFF  # the CRC no longer matches
    with pytest.raises(CorruptImageError):
        inspect(bytes(data), max_pixels=LIMIT)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize(
    ("image_format", "params"),
    [("WEBP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_deflate"}), ("BMP", {})],
)
def test_truncation_is_caught_from_the_header_for_other_formats(image_format: str, params: dict) -> None:
    data = encode(gradient((64, 64)), image_format, **params)
    with pytest.raises(CorruptImageError, match=image_format):
        inspect(data[: len(data) - 100], max_pixels=LIMIT)


@pytest.mark.parametrize("keep", [0.95, 0.5, 0.1])
def test_truncated_gif_is_corrupt(keep: float) -> None:
    data = encode(gradient((64, 64)), "GIF")
    with pytest.raises(CorruptImageError, match="GIF"):
        inspect(data[: int(len(data) * keep)], max_pixels=LIMIT)


def test_a_gif_cut_after_its_first_frame_is_accepted() -> None:
    # Only the first frame is converted; damage after it is not the upload's business.
    first, second = gradient((64, 64)), gradient((64, 64)).rotate(90)
    animated = encode(first, "GIF", save_all=True, append_images=[second])
    cut = animated[:-20]  # inside the second frame
    assert inspect(cut, max_pixels=LIMIT).format == "GIF"
    assert process(cut, Spec()).width == 64


def test_png_whose_compressed_pixel_data_is_damaged_inside_intact_chunks_is_corrupt() -> None:
    data = bytearray(encode(gradient((64, 64)), "PNG"))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    payload = b"\x78\x9c" + b"\xff" * (length - 2)  # a zlib header, then garbage; CRC recomputed
    data[at + 4 : at + 4 + length] = payload
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    with pytest.raises(CorruptImageError, match="PNG"):
        inspect(bytes(data), max_pixels=LIMIT)


def test_damage_only_a_decode_can_see_is_left_to_process() -> None:
    # Documented limit of the upload check: valid compression around invalid PNG filter bytes.
    data = corrupt_png()
    assert inspect(data, max_pixels=LIMIT).format == "PNG"
    with pytest.raises(ImageError):
        process(data, Spec())


def test_polyglot_jpeg_is_accepted() -> None:
    data = encode(gradient((32, 32)), "JPEG") + b"PK\x03\x04" + bytes(200)
    assert inspect(data, max_pixels=LIMIT).format == "JPEG"


def test_inspect_leaves_global_state_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    inspect(encode(gradient((32, 32)), "JPEG"), max_pixels=LIMIT)
    with pytest.raises(ImageTooLargeError):
        inspect(png_declaring(20000, 20000), max_pixels=LIMIT)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
