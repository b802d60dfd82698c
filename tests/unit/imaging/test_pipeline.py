"""process(): formats, colour modes, orientation, geometry, metadata stripping and refusals."""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Callable

import pytest
from PIL import GifImagePlugin, Image, ImageCms, ImageFile, ImageOps, features

from app.imaging import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    ProcessedImage,
    Spec,
    UnsupportedImageError,
    process,
)
from app.imaging.geometry import fit_within
from tests.support.imaging import (
    BLUE,
    RED,
    WHITE,
    animated_gif,
    bmp_declaring,
    corner_pixel,
    decode,
    encode,
    exif_with,
    gif_declaring,
    gradient,
    is_close,
    jpeg_declaring,
    jpeg_with_orientation,
    minimal_psd,
    multipage_tiff,
    png_bilevel_bomb,
    png_declaring,
    with_marker,
)

SPEC = Spec()


def output_of(data: bytes, spec: Spec = SPEC) -> tuple[ProcessedImage, Image.Image]:
    result = process(data, spec)
    image = decode(result.data)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert image.size == (result.width, result.height)
    return result, image


def centre(image: Image.Image) -> tuple[int, ...]:
    return image.getpixel((image.width // 2, image.height // 2))


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ImageFile.load() that decodes: refusing "from the header" keeps it empty."""
    calls: list[str] = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile) -> object:
        if self.tile:  # still encoded (later load() calls are no-ops)
            calls.append(f"{self.format} {self.size}")
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    return calls


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((4000, 3000), (800, 600)),
        ((3000, 4000), (450, 600)),
        ((1600, 1200), (800, 600)),
        ((6000, 4000), (800, 533)),
        ((1920, 1080), (800, 450)),
        ((2000, 2000), (600, 600)),
        ((10000, 10), (800, 1)),
        ((10, 10000), (1, 600)),
        ((801, 600), (800, 599)),
        ((800, 600), (800, 600)),
        ((200, 100), (200, 100)),
        ((1, 1), (1, 1)),
    ],
)
def test_fit_within_keeps_aspect_ratio_and_never_upscales(source: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_within(source, 800, 600) == expected


@pytest.mark.parametrize(
    ("size", "image_format", "expected"),
    [
        ((4000, 3000), "JPEG", (800, 600)),
        ((3000, 4000), "JPEG", (450, 600)),
        ((1600, 1200), "PNG", (800, 600)),
        ((1600, 1200), "JPEG", (800, 600)),
        ((10000, 10), "PNG", (800, 1)),
        ((10, 10000), "PNG", (1, 600)),
        ((10000, 10), "JPEG", (800, 1)),
        ((200, 100), "JPEG", (200, 100)),
        ((1, 1), "PNG", (1, 1)),
        ((1, 1), "JPEG", (1, 1)),
    ],
)
def test_output_size(size: tuple[int, int], image_format: str, expected: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, (40, 160, 90)), image_format)

    result, image = output_of(data)

    assert image.size == expected
    assert (result.source_width, result.source_height) == size
    assert result.source_format == image_format
    assert is_close(centre(image), (40, 160, 90))


def test_custom_box_is_respected() -> None:
    _, image = output_of(encode(gradient((400, 300)), "PNG"), Spec(max_width=100, max_height=100))
    assert image.size == (100, 75)


def test_downscaled_jpeg_keeps_its_content_in_place() -> None:
    # Shrink-on-load plus resampling must not shift or crop: the marker stays in its corner.
    data = encode(with_marker((2400, 1800), "bottom-right"), "JPEG", quality=95)

    _, image = output_of(data)

    assert image.size == (800, 600)
    assert is_close(corner_pixel(image, "bottom-right"), RED)
    assert is_close(corner_pixel(image, "top-left"), BLUE)


@pytest.mark.parametrize(
    ("size", "orientation", "decoded", "output"),
    [
        ((4000, 3000), 1, (1000, 750), (800, 600)),  # 1/4: 1/8 would be 500x375 < 800x600
        ((1600, 1200), 1, (800, 600), (800, 600)),  # 1/2 lands exactly on the target
        ((1700, 1200), 1, (850, 600), (800, 565)),
        ((800, 600), 1, (800, 600), (800, 600)),  # nothing to shrink
        ((4000, 1000), 6, (1000, 250), (150, 600)),  # target box swapped into stored orientation
        ((4000, 1000), 1, (1000, 250), (800, 200)),
    ],
)
def test_jpeg_is_shrunk_on_load_to_the_smallest_scale_not_below_the_output(
    size: tuple[int, int],
    orientation: int,
    decoded: tuple[int, int],
    output: tuple[int, int],
    decode_calls: list[str],
) -> None:
    data = encode(Image.new("RGB", size, RED), "JPEG", exif=exif_with(orientation))

    result = process(data, SPEC)

    assert decode_calls == [f"JPEG {decoded}"]
    assert (result.width, result.height) == output


# ----------------------------------------------------------------------------- orientation

# Where a marker stored in the top-left corner is displayed, for each EXIF orientation.
MARKER_CORNER_AFTER_ORIENTATION = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = with_marker((64, 48), "top-left")
    data = jpeg_with_orientation(stored, orientation)

    _, image = output_of(data)

    assert image.size == ((48, 64) if orientation >= 5 else (64, 48))
    expected_corner = MARKER_CORNER_AFTER_ORIENTATION[orientation]
    assert is_close(corner_pixel(image, expected_corner), RED)
    for corner in set(MARKER_CORNER_AFTER_ORIENTATION.values()) - {expected_corner}:
        assert is_close(corner_pixel(image, corner), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    data = jpeg_with_orientation(with_marker((64, 48), "top-left"), orientation)
    reference = ImageOps.exif_transpose(decode(data))

    _, image = output_of(data)

    assert image.size == reference.size
    for corner in MARKER_CORNER_AFTER_ORIENTATION.values():
        assert is_close(corner_pixel(image, corner), corner_pixel(reference, corner))


@pytest.mark.parametrize(("orientation", "expected"), [(1, (800, 600)), (6, (450, 600)), (8, (450, 600))])
def test_orientation_is_taken_into_account_when_fitting(orientation: int, expected: tuple[int, int]) -> None:
    data = jpeg_with_orientation(with_marker((1600, 1200), "top-left"), orientation)

    result, image = output_of(data)

    assert image.size == expected
    assert (result.source_width, result.source_height) == (1600, 1200)  # as stored in the header
    assert is_close(corner_pixel(image, MARKER_CORNER_AFTER_ORIENTATION[orientation]), RED)


def test_orientation_from_xmp_when_there_is_no_exif() -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    data = encode(with_marker((64, 48), "top-left"), "JPEG", quality=95, xmp=xmp)

    _, image = output_of(data)

    assert image.size == (48, 64)
    assert is_close(corner_pixel(image, "top-right"), RED)


@pytest.mark.parametrize("image_format", ["PNG", "WEBP", "TIFF"])
def test_orientation_in_other_formats(image_format: str) -> None:
    data = encode(with_marker((64, 48), "top-left"), image_format, exif=exif_with(8))

    _, image = output_of(data)

    assert image.size == (48, 64)
    assert is_close(corner_pixel(image, "bottom-left"), RED)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("bad_exif", [b"Exif\x00\x00MM\x00*garbage", b"Exif\x00\x00" + bytes(40)])
def test_damaged_exif_is_ignored_not_fatal(bad_exif: bytes) -> None:
    data = encode(with_marker((64, 48), "top-left"), "JPEG", quality=95, exif=bad_exif)

    _, image = output_of(data)

    assert image.size == (64, 48)
    assert is_close(corner_pixel(image, "top-left"), RED)


# ----------------------------------------------------------------------------- formats and modes


def rgba_half_transparent(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half opaque red, right half fully transparent (with green underneath, to catch leaks)."""
    image = Image.new("RGBA", size, (0, 255, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, size[0] // 2, size[1]))
    return image


def left_and_right(image: Image.Image) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return image.getpixel((image.width // 4, image.height // 2)), image.getpixel(
        (3 * image.width // 4, image.height // 2)
    )


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_allowed_format_is_processed(image_format: str) -> None:
    data = encode(Image.new("RGB", (1000, 500), (200, 40, 40)), image_format)

    result, image = output_of(data)

    assert result.source_format == image_format
    assert image.size == (800, 400)
    assert is_close(centre(image), (200, 40, 40), tolerance=30)  # GIF palettes quantise


@pytest.mark.parametrize("image_format", ["PNG", "WEBP", "TIFF"])
def test_alpha_is_flattened_on_white(image_format: str) -> None:
    data = encode(rgba_half_transparent(), image_format)

    _, image = output_of(data)

    opaque, transparent = left_and_right(image)
    assert is_close(opaque, RED)
    assert is_close(transparent, WHITE, tolerance=8)


def test_partial_alpha_is_blended_with_white() -> None:
    data = encode(Image.new("RGBA", (8, 8), (255, 0, 0, 128)), "PNG")

    _, image = output_of(data)

    assert is_close(centre(image), (255, 127, 127), tolerance=12)


def test_alpha_is_flattened_on_white_when_downscaled() -> None:
    data = encode(rgba_half_transparent((1600, 400)), "PNG")

    _, image = output_of(data)

    assert image.size == (800, 200)
    opaque, transparent = left_and_right(image)
    assert is_close(opaque, RED)
    assert is_close(transparent, WHITE, tolerance=8)


def test_la_transparency_becomes_white() -> None:
    image = Image.new("LA", (40, 20), (0, 0))
    image.paste((60, 255), (0, 0, 20, 20))

    _, output = output_of(encode(image, "PNG"))

    opaque, transparent = left_and_right(output)
    assert is_close(opaque, (60, 60, 60))
    assert is_close(transparent, WHITE, tolerance=8)


def test_palette_image_with_transparent_index_becomes_white() -> None:
    image = Image.new("P", (40, 20), 1)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.paste(0, (0, 0, 20, 20))  # left half: index 0 (red); right half: index 1 (green), transparent

    _, output = output_of(encode(image, "PNG", transparency=1))

    opaque, transparent = left_and_right(output)
    assert is_close(opaque, RED)
    assert is_close(transparent, WHITE, tolerance=8)


def test_gif_with_transparency_becomes_white() -> None:
    image = Image.new("P", (40, 20), 1)
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.paste(0, (0, 0, 20, 20))

    _, output = output_of(encode(image, "GIF", transparency=1))

    opaque, transparent = left_and_right(output)
    assert is_close(opaque, BLUE)
    assert is_close(transparent, WHITE, tolerance=8)


def test_rgb_png_with_transparent_colour_key_becomes_white() -> None:
    image = Image.new("RGB", (40, 20), (0, 255, 0))
    image.paste(RED, (0, 0, 20, 20))

    _, output = output_of(encode(image, "PNG", transparency=(0, 255, 0)))

    opaque, transparent = left_and_right(output)
    assert is_close(opaque, RED)
    assert is_close(transparent, WHITE, tolerance=8)


def test_bilevel_image() -> None:
    image = Image.new("1", (40, 20), 1)
    image.paste(0, (0, 0, 20, 20))

    _, output = output_of(encode(image, "PNG"))

    black, white = left_and_right(output)
    assert is_close(black, (0, 0, 0))
    assert is_close(white, WHITE)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "TIFF", "BMP"])
def test_greyscale(image_format: str) -> None:
    _, output = output_of(encode(Image.new("L", (30, 30), 100), image_format))
    assert is_close(centre(output), (100, 100, 100))


def test_palette_image() -> None:
    image = Image.new("RGB", (30, 30), (10, 200, 30)).convert("P")
    _, output = output_of(encode(image, "PNG"))
    assert is_close(centre(output), (10, 200, 30))


def test_palette_bmp() -> None:
    image = Image.new("RGB", (30, 30), (10, 200, 30)).convert("P")
    _, output = output_of(encode(image, "BMP"))
    assert is_close(centre(output), (10, 200, 30))


def test_cmyk_jpeg() -> None:
    image = Image.new("CMYK", (40, 20), (255, 0, 0, 0))  # pure cyan
    image.paste((0, 0, 0, 0), (20, 0, 40, 20))  # paper white

    _, output = output_of(encode(image, "JPEG", quality=95))

    cyan, paper = left_and_right(output)
    assert is_close(cyan, (0, 255, 255))
    assert is_close(paper, WHITE)


def test_rgb_coded_jpeg() -> None:
    # keep_rgb writes an Adobe marker saying "no YCbCr transform": libjpeg must not colour-convert.
    data = encode(Image.new("RGB", (32, 32), (20, 120, 220)), "JPEG", keep_rgb=True, quality=95)
    _, output = output_of(data)
    assert is_close(centre(output), (20, 120, 220))


def test_progressive_jpeg_is_shrunk_on_load() -> None:
    data = encode(with_marker((1600, 1200), "top-right"), "JPEG", progressive=True)
    _, output = output_of(data)
    assert output.size == (800, 600)
    assert is_close(corner_pixel(output, "top-right"), RED)


def test_multi_picture_jpeg_counts_as_jpeg() -> None:
    first, second = Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)
    data = encode(first, "MPO", save_all=True, append_images=[second])

    result, output = output_of(data)

    assert result.source_format == "JPEG"
    assert is_close(centre(output), RED)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (30, 10))
    image.paste(0, (0, 0, 10, 10))
    image.paste(128 * 257, (10, 0, 20, 10))
    image.paste(65535, (20, 0, 30, 10))
    data = encode(image, "PNG")
    assert decode(data).mode == "I;16"

    _, output = output_of(data)

    assert is_close(output.getpixel((5, 5)), (0, 0, 0), tolerance=6)
    assert is_close(output.getpixel((15, 5)), (128, 128, 128), tolerance=6)
    assert is_close(output.getpixel((25, 5)), WHITE, tolerance=6)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((0, 32896, 65535), (0, 128, 255)),  # 16-bit range
        ((0, 100, 255), (0, 100, 255)),  # 8-bit range stays as is
        ((-1000, 0, 1000), (0, 128, 255)),  # anything else is stretched
    ],
)
def test_32_bit_integer_tiff(values: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    image = Image.new("I", (30, 10))
    for index, value in enumerate(values):
        image.paste(value, (10 * index, 0, 10 * index + 10, 10))
    data = encode(image, "TIFF")
    assert decode(data).mode.startswith("I")

    _, output = output_of(data)

    for index, level in enumerate(expected):
        assert is_close(output.getpixel((10 * index + 5, 5)), (level,) * 3, tolerance=6)


@pytest.mark.parametrize(
    ("values", "expected"),
    [((0.0, 0.5, 1.0), (0, 128, 255)), ((0.0, 100.0, 255.0), (0, 100, 255))],
)
def test_float_tiff(values: tuple[float, float, float], expected: tuple[int, int, int]) -> None:
    image = Image.new("F", (30, 10))
    for index, value in enumerate(values):
        image.paste(value, (10 * index, 0, 10 * index + 10, 10))
    data = encode(image, "TIFF")
    assert decode(data).mode == "F"

    _, output = output_of(data)

    for index, level in enumerate(expected):
        assert is_close(output.getpixel((10 * index + 5, 5)), (level,) * 3, tolerance=6)


def test_animated_gif_uses_the_first_frame_only(monkeypatch: pytest.MonkeyPatch) -> None:
    visited_frames: list[int] = []
    original_seek = GifImagePlugin.GifImageFile._seek

    def spy_seek(self: GifImagePlugin.GifImageFile, frame: int, update_image: bool = True) -> None:
        visited_frames.append(frame)
        original_seek(self, frame, update_image)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", spy_seek)
    data = animated_gif([RED, BLUE, (0, 255, 0)] * 20)

    result, output = output_of(data)

    assert result.source_format == "GIF"
    assert is_close(centre(output), RED)
    assert visited_frames == [0]  # the 59 other frames were never parsed


def test_animated_webp_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (BLUE, RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    _, output = output_of(data)
    assert is_close(centre(output), BLUE)


def test_multipage_tiff_uses_the_first_page() -> None:
    _, output = output_of(multipage_tiff([(0, 255, 0), RED, BLUE]))
    assert is_close(centre(output), (0, 255, 0))


def test_polyglot_jpeg_with_zip_appended_is_a_jpeg_and_the_payload_is_dropped() -> None:
    # Decision: the content is a valid JPEG, so it is accepted; re-encoding drops whatever trails it.
    payload = b"PK\x03\x04" + b"not really a zip, but it would be appended like one" * 20
    data = encode(Image.new("RGB", (64, 64), RED), "JPEG") + payload

    result, output = output_of(data)

    assert result.source_format == "JPEG"
    assert is_close(centre(output), RED)
    assert b"PK\x03\x04" not in result.data


def test_a_gif_whatever_it_is_called_is_processed_as_a_gif() -> None:
    # There is no name to be fooled by: a GIF uploaded as "photo.jpg" arrives as the same bytes.
    result, _ = output_of(encode(Image.new("RGB", (8, 8), RED), "GIF"))
    assert result.source_format == "GIF"


# ----------------------------------------------------------------------------- output properties


def qtables_at(quality: int) -> dict[int, list[int]]:
    return decode(encode(Image.new("RGB", (16, 16)), "JPEG", quality=quality)).quantization


@pytest.mark.parametrize("quality", [85, 60])
def test_output_quality_comes_from_the_spec(quality: int) -> None:
    result = process(encode(gradient((64, 64)), "PNG"), Spec(quality=quality))
    assert decode(result.data).quantization == qtables_at(quality)
    assert decode(result.data).quantization != qtables_at(quality + 10)


def test_default_output_is_quality_85_baseline() -> None:
    result = process(encode(gradient((64, 64)), "PNG"), SPEC)
    output = decode(result.data)
    assert output.quantization == qtables_at(85)
    assert not output.info.get("progressive")


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def assert_no_metadata(jpeg: bytes) -> None:
    output = decode(jpeg)
    for key in ("exif", "icc_profile", "comment", "xmp", "XML:com.adobe.xmp", "photoshop"):
        assert key not in output.info, key
    assert len(output.getexif()) == 0
    for marker in (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"ICC_PROFILE", b"\xff\xfe", b"secret"):
        assert marker not in jpeg, marker


def test_output_has_no_exif_gps_xmp_icc_or_comment_from_jpeg() -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description secret="1"/></x:xmpmeta>'
    data = encode(
        gradient((64, 48)),
        "JPEG",
        exif=exif_with(6, gps=True),
        icc_profile=srgb_profile(),
        comment=b"secret comment",
        xmp=xmp,
    )
    source = decode(data)
    assert source.getexif().get_ifd(0x8825), "precondition: the input carries GPS"
    assert {"icc_profile", "comment", "xmp"} <= set(source.info)

    result = process(data, SPEC)

    assert_no_metadata(result.data)


def test_output_has_no_metadata_from_png() -> None:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta secret='1'/>")
    data = encode(gradient((64, 48)), "PNG", exif=exif_with(1, gps=True), icc_profile=srgb_profile(), pnginfo=text)

    assert_no_metadata(process(data, SPEC).data)


def test_gif_comment_is_not_copied_into_the_jpeg() -> None:
    # Pillow >= 9.4 writes im.info["comment"] when saving a JPEG; GIF comments land exactly there.
    data = encode(Image.new("RGB", (16, 16), RED), "GIF", comment=b"secret comment")
    assert decode(data).info.get("comment") == b"secret comment"

    assert_no_metadata(process(data, SPEC).data)


def test_unscaled_jpeg_is_still_cleaned() -> None:
    # Nothing to resize, rotate or convert: the decoded image itself is what gets encoded.
    data = encode(Image.new("RGB", (1, 1), RED), "JPEG", exif=exif_with(1, gps=True), comment=b"secret")
    result = process(data, SPEC)
    assert (result.width, result.height) == (1, 1)
    assert_no_metadata(result.data)


# ----------------------------------------------------------------------------- refusals


def test_empty_input() -> None:
    with pytest.raises(EmptyImageError, match="empty"):
        process(b"", SPEC)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"hello, this is plain text\n" * 10, None),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n", "EPS"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
        (minimal_psd(), "PSD"),
    ],
)
def test_non_images_and_foreign_formats_are_unsupported(data: bytes, named: str | None) -> None:
    with pytest.raises(UnsupportedImageError) as raised:
        process(data, SPEC)
    message = str(raised.value)
    assert "JPEG, PNG, WEBP, GIF, BMP, TIFF" in message
    if named:
        assert named in message


@pytest.mark.parametrize("image_format", ["ICO", "PPM", "PCX", "SGI", "TGA", "QOI"])
def test_formats_pillow_reads_but_we_do_not_allow(image_format: str) -> None:
    data = encode(Image.new("RGB", (16, 16), RED), image_format)
    with pytest.raises(UnsupportedImageError) as raised:
        process(data, SPEC)
    if image_format != "TGA":  # TGA has no signature to recognise it by
        assert image_format in str(raised.value)


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_is_named_as_unsupported() -> None:
    with pytest.raises(UnsupportedImageError, match="AVIF"):
        process(encode(Image.new("RGB", (16, 16), RED), "AVIF"), SPEC)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_images_raise_image_error(image_format: str) -> None:
    data = encode(gradient((64, 64)), image_format)
    with pytest.raises(ImageError):
        process(data[: len(data) // 2], SPEC)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_truncated_jpeg_and_png_are_corrupt(image_format: str) -> None:
    data = encode(gradient((64, 64)), image_format)
    with pytest.raises(CorruptImageError, match=f"{image_format}.*(truncated|corrupt)"):
        process(data[: len(data) * 2 // 3], SPEC)


def test_header_only_png_is_corrupt_not_unsupported() -> None:
    data = encode(gradient((16, 16)), "PNG")
    with pytest.raises(CorruptImageError, match="PNG"):
        process(data[:20], SPEC)


def test_limit_comes_from_the_spec() -> None:
    data = encode(Image.new("RGB", (20, 10)), "PNG")
    assert process(data, Spec(max_pixels=200)).width == 20
    with pytest.raises(ImageTooLargeError, match=r"20x10 = 200 pixels; the limit is 199 pixels"):
        process(data, Spec(max_pixels=199))


@pytest.mark.parametrize(
    ("width", "height"),
    [(20000, 20000), (10000, 10000), (8000, 8000)],  # over Pillow's error, warning, and neither
)
def test_png_bombs_are_refused_from_the_header(width: int, height: int, decode_calls: list[str]) -> None:
    bomb = png_bilevel_bomb(width, height)
    assert len(bomb) < 200_000  # kilobytes that would decode to hundreds of megapixels

    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # must not even warn
            with pytest.raises(ImageTooLargeError):
                process(bomb, SPEC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert decode_calls == []
    assert peak < 2_000_000


@pytest.mark.parametrize(
    "make", [jpeg_declaring, png_declaring, gif_declaring, bmp_declaring], ids=lambda make: make.__name__
)
@pytest.mark.parametrize(("width", "height"), [(60000, 60000), (9000, 6000)])
def test_huge_dimensions_in_tiny_files(
    make: Callable[[int, int], bytes], width: int, height: int, decode_calls: list[str]
) -> None:
    with pytest.raises(ImageTooLargeError):
        process(make(width, height), SPEC)
    assert decode_calls == []


def test_our_limit_applies_even_above_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between Pillow's warning and error thresholds the image is fine by our spec: no warning leaks,
    # and it is processed; beyond Pillow's error threshold it is refused as too large.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    spec = Spec(max_pixels=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert process(encode(Image.new("RGB", (40, 40)), "PNG"), spec).width == 40  # 1600 > 1000
    with pytest.raises(ImageTooLargeError):
        process(encode(Image.new("RGB", (50, 50)), "PNG"), spec)  # 2500 > 2 * 1000


def test_global_pillow_settings_are_left_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    with pytest.raises(ImageTooLargeError):
        process(png_declaring(10000, 10000), SPEC)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before


# ----------------------------------------------------------------------------- spec


@pytest.mark.parametrize(
    "fields",
    [
        {"max_width": 0},
        {"max_height": -1},
        {"quality": 0},
        {"quality": 96},  # the cap is 95 (Pillow advises against more)
        {"max_pixels": 0},
        {"max_width": 1.5},
        {"max_width": True},
    ],
)
def test_invalid_spec_is_a_value_error_at_construction(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Spec"):
        Spec(**fields)  # type: ignore[arg-type]


def test_processed_image_is_complete() -> None:
    data = encode(Image.new("RGB", (1600, 900), RED), "WEBP")
    result = process(data, SPEC)
    assert result == ProcessedImage(
        data=result.data, width=800, height=450, source_format="WEBP", source_width=1600, source_height=900
    )
    assert result.data.startswith(b"\xff\xd8\xff")
