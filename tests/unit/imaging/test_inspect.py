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
from tests.support.images import corrupt_png
from tests.support.imaging import (
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


def test_png_whose_compressed_pixel_data_is_damaged_inside_intact_chunks_is_left_to_process() -> None:
    # The upload check no longer inflates the pixel stream; the worker's decode refuses it.
    data = bytearray(encode(gradient((64, 64)), "PNG"))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    payload = b"\x78\x9c" + b"\xff" * (length - 2)  # a zlib header, then garbage; CRC recomputed
    data[at + 4 : at + 4 + length] = payload
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    assert inspect(bytes(data), max_pixels=LIMIT).format == "PNG"
    with pytest.raises(CorruptImageError, match="PNG"):
        process(bytes(data), Spec())


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position < len(data):
        length = struct.unpack(">I", data[position : position + 4])[0]
        chunks.append((data[position + 4 : position + 8], data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def _png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    framed = (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + b"".join(framed)


def test_png_without_iend_is_truncated() -> None:
    chunks = _png_chunks(encode(gradient((64, 64)), "PNG"))
    with pytest.raises(CorruptImageError, match="PNG file is truncated"):
        inspect(_png_from([chunk for chunk in chunks if chunk[0] != b"IEND"]), max_pixels=LIMIT)


def test_png_without_image_data_is_corrupt() -> None:
    chunks = _png_chunks(encode(gradient((64, 64)), "PNG"))
    with pytest.raises(CorruptImageError, match="no image data"):
        inspect(_png_from([chunk for chunk in chunks if chunk[0] != b"IDAT"]), max_pixels=LIMIT)


def test_png_chunk_with_an_invalid_type_is_corrupt() -> None:
    chunks = _png_chunks(encode(gradient((64, 64)), "PNG"))
    chunks.insert(-1, (b"a\x00c!", b"x"))  # after the image data, where Pillow's open() does not look
    with pytest.raises(CorruptImageError, match="invalid chunk header"):
        inspect(_png_from(chunks), max_pixels=LIMIT)


def test_png_with_trailing_bytes_after_iend_is_accepted() -> None:
    assert inspect(encode(gradient((64, 64)), "PNG") + b"trailer", max_pixels=LIMIT).format == "PNG"


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(marker, body) for each segment before the first scan's data, and the rest from SOS on."""
    segments, position = [], 2
    while data[position + 1] != 0xDA:
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segments.append((data[position + 1], data[position + 4 : position + 2 + length]))
        position += 2 + length
    return segments, data[position:]


def _jpeg_from(segments: list[tuple[int, bytes]], rest: bytes) -> bytes:
    framed = (bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body for marker, body in segments)
    return b"\xff\xd8" + b"".join(framed) + rest


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.999, 0.9, 0.5, 0.2, 0.05])
def test_a_jpeg_cut_anywhere_is_refused(keep: float, progressive: bool) -> None:
    data = encode(gradient((256, 256)), "JPEG", progressive=progressive, exif=Image.Exif().tobytes())
    with pytest.raises(CorruptImageError, match="JPEG file is corrupt or truncated"):
        inspect(data[: int(len(data) * keep)], max_pixels=LIMIT)


def test_a_jpeg_cut_inside_its_headers_is_refused() -> None:
    data = encode(gradient((64, 64)), "JPEG")
    sos = data.index(b"\xff\xda")
    for end in (sos - 40, sos - 3, sos + 5):  # inside a Huffman table, just before the scan, in its header
        with pytest.raises(CorruptImageError, match="JPEG"):
            inspect(data[:end], max_pixels=LIMIT)


def test_jpeg_whose_quantisation_table_is_missing_is_corrupt() -> None:
    segments, rest = _jpeg_segments(encode(gradient((64, 64)), "JPEG"))
    without = [(marker, body) for marker, body in segments if marker != 0xDB]
    with pytest.raises(CorruptImageError, match="quantisation table 0 is used but never defined"):
        inspect(_jpeg_from(without, rest), max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("marker", "damage", "message"),
    [
        (0xC4, lambda body: body[:-3], "Huffman table segment has the wrong length"),
        (0xC0, lambda body: body[:7] + bytes([0x55]) + body[8:], "component list is invalid"),
    ],
    ids=["dht-short", "sof-sampling"],  # damage Pillow's header parser lets through
)
def test_jpeg_with_a_damaged_table_or_frame_header_is_corrupt(marker: int, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    segments, rest = _jpeg_segments(encode(gradient((64, 64)), "JPEG"))
    damaged = [(m, damage(body) if m == marker else body) for m, body in segments]
    with pytest.raises(CorruptImageError, match=message):
        inspect(_jpeg_from(damaged, rest), max_pixels=LIMIT)


def test_jpeg_with_garbage_between_segments_is_corrupt() -> None:
    data = encode(gradient((64, 64)), "JPEG")
    sos = data.index(b"\xff\xda")
    with pytest.raises(CorruptImageError, match="a marker was expected"):
        inspect(data[:sos] + b"garbage" + data[sos:], max_pixels=LIMIT)


def test_jpeg_whose_scan_comes_before_its_frame_header_is_corrupt() -> None:
    segments, rest = _jpeg_segments(encode(gradient((64, 64)), "JPEG"))
    frame = [segment for segment in segments if segment[0] == 0xC0]
    others = [segment for segment in segments if segment[0] != 0xC0]
    with pytest.raises(CorruptImageError, match="JPEG"):
        inspect(_jpeg_from(others, rest.replace(b"\xff\xd9", b"")) + _jpeg_from(frame, b"")[2:], max_pixels=LIMIT)


def test_jpeg_with_a_trailer_after_its_end_marker_is_accepted() -> None:
    data = encode(gradient((64, 64)), "JPEG") + b"camera maker's trailer \xff\xd8"
    assert inspect(data, max_pixels=LIMIT).format == "JPEG"
    assert process(data, Spec()).width == 64


def test_damage_inside_jpeg_compressed_data_is_left_to_process() -> None:
    # What the structural check cannot see: the entropy-coded bytes are never read at upload. The
    # worker's decode either refuses them (a failed task with a reason) or, as libjpeg does for
    # most bit errors, conceals them; both are a terminal outcome.
    data = bytearray(encode(gradient((256, 256)), "JPEG"))
    start = data.index(b"\xff\xda") + 20
    data[start : len(data) - 2] = bytes(len(data) - 2 - start)  # zeros: valid, meaningless codes
    assert inspect(bytes(data), max_pixels=LIMIT).format == "JPEG"
    try:
        assert process(bytes(data), Spec()).width == 256
    except ImageError as exc:
        assert "JPEG" in str(exc)


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
