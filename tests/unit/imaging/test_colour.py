"""Colour: embedded ICC profiles (Display P3, Adobe RGB, CMYK) come out as sRGB, compared with a
reference ImageCms conversion by mean ΔE; and the naive result (profile ignored) fails the same bar."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageCms

from app.imaging import colour
from app.imaging.presets import OutputFormat, Preset
from app.imaging.variants import render_variants
from tests.support.icc import (
    adobe_rgb_profile,
    display_p3_profile,
    matrix_shaper_profile,
    mean_delta_e,
    standard_cmyk_profile,
)
from tests.support.imaging import decode, encode

MAX_PIXELS = 1_000_000
# Mean ΔE*ab (CIE76) below 1 is invisible side by side; 2 is the bar for "the same colours":
# converted outputs must be well under it (half), the naive ones above it.
DELTA_E_BAR = 2.0
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


PATCH = 16


def colour_chart() -> Image.Image:
    """sRGB truth: 12 hues at full, dark and pastel saturation, and a grey ramp, in 16x16 patches."""
    chart = Image.new("HSV", (12 * PATCH, 4 * PATCH))
    for column in range(12):
        hue = column * 256 // 12
        shades = [(hue, 255, 255), (hue, 255, 150), (hue, 110, 235), (0, 0, 20 + column * 20)]
        for row, shade in enumerate(shades):
            chart.paste(shade, (PATCH * column, PATCH * row, PATCH * (column + 1), PATCH * (row + 1)))
    return chart.convert("RGB")


def patch_delta_e(first: Image.Image, second: Image.Image) -> float:
    """Mean ΔE over the central half of every patch: the colours, without the few pixels at patch
    edges where every lossy codec's chroma subsampling blurs one patch into the next."""
    centres = [
        (
            PATCH * column + PATCH // 4,
            PATCH * row + PATCH // 4,
            PATCH * column + 3 * PATCH // 4,
            PATCH * row + 3 * PATCH // 4,
        )
        for column in range(first.width // PATCH)
        for row in range(first.height // PATCH)
    ]
    return sum(mean_delta_e(first.crop(box), second.crop(box)) for box in centres) / len(centres)


def profile(data: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(data))


def encoded_in(space: bytes, truth: Image.Image, mode: str = "RGB") -> Image.Image:
    """``truth``'s colours as pixel values of another colour space (what a camera would store)."""
    pixels = ImageCms.profileToProfile(
        truth, SRGB, profile(space), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode=mode
    )
    del pixels.info["icc_profile"]  # ImageCms tags its output; each test says what the file carries
    return pixels


def reference_srgb(pixels: Image.Image, space: bytes) -> Image.Image:
    """The reference conversion: ImageCms, relative colorimetric with black point compensation."""
    return ImageCms.profileToProfile(
        pixels,
        profile(space),
        SRGB,
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
    )


def rendered(data: bytes, output: OutputFormat = OutputFormat.JPEG, **options: object) -> Image.Image:
    preset = Preset(
        name="p", width=800, height=600, formats=(output,), jpeg_quality=95, webp_quality=95, avif_quality=90
    )
    (variant,) = render_variants(data, [preset], max_pixels=MAX_PIXELS, **options).variants  # type: ignore[arg-type]
    return decode(variant.data)


# ----------------------------------------------------------------------------- RGB profiles


RGB_SPACES = {"display-p3": display_p3_profile, "adobe-rgb": adobe_rgb_profile}


@pytest.mark.parametrize("space", sorted(RGB_SPACES))
def test_the_generated_profiles_round_trip_the_chart(space: str) -> None:
    # The profiles themselves are right: every chart colour is inside both gamuts, so sRGB -> space
    # -> sRGB gives the chart back.
    truth = colour_chart()
    assert patch_delta_e(reference_srgb(encoded_in(RGB_SPACES[space](), truth), RGB_SPACES[space]()), truth) < 0.5


@pytest.mark.parametrize("output", list(OutputFormat))
@pytest.mark.parametrize("space", sorted(RGB_SPACES))
def test_rgb_profiles_are_converted_to_srgb(space: str, output: OutputFormat) -> None:
    space_profile = RGB_SPACES[space]()
    pixels = encoded_in(space_profile, colour_chart())
    reference = reference_srgb(pixels, space_profile)

    converted = rendered(encode(pixels, "PNG", icc_profile=space_profile), output)
    naive = rendered(encode(pixels, "PNG"), output)  # the same pixels, read as if they were sRGB

    assert patch_delta_e(converted, reference) < DELTA_E_BAR / 2
    assert patch_delta_e(naive, reference) > DELTA_E_BAR


def test_a_p3_jpeg_from_a_phone_is_converted() -> None:
    p3 = display_p3_profile()
    pixels = encoded_in(p3, colour_chart())
    data = encode(pixels, "JPEG", quality=95, icc_profile=p3, subsampling=0)
    reference = reference_srgb(decode(data), p3)

    assert patch_delta_e(rendered(data), reference) < DELTA_E_BAR / 2
    assert patch_delta_e(decode(data), reference) > DELTA_E_BAR


def test_alpha_survives_the_conversion() -> None:
    p3 = display_p3_profile()
    pixels = encoded_in(p3, colour_chart()).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(pixels.size)
    pixels.putalpha(alpha)

    output = rendered(encode(pixels, "PNG", icc_profile=p3), OutputFormat.WEBP)

    assert output.mode == "RGBA"
    assert ImageChops.difference(output.getchannel("A"), alpha).getextrema()[1] <= 1
    opaque_reference = reference_srgb(pixels.convert("RGB"), p3)
    bottom_row = (0, pixels.height - PATCH, pixels.width, pixels.height)  # where the gradient is opaque
    assert patch_delta_e(output.convert("RGB").crop(bottom_row), opaque_reference.crop(bottom_row)) < DELTA_E_BAR / 2


def test_an_srgb_profile_leaves_the_pixels_as_they_are() -> None:
    # Most camera and phone JPEGs carry an sRGB profile: converting through it would only cost time.
    pixels = colour_chart()
    srgb_profile = SRGB.tobytes()
    assert (
        rendered(encode(pixels, "PNG", icc_profile=srgb_profile)).tobytes() == rendered(encode(pixels, "PNG")).tobytes()
    )


@pytest.mark.parametrize(
    "bad_profile",
    [b"not an ICC profile at all", display_p3_profile()[:200], b"\x00" * 128],
    ids=["garbage", "truncated", "zeros"],
)
def test_an_unreadable_profile_is_ignored(bad_profile: bytes) -> None:
    pixels = colour_chart()
    assert (
        rendered(encode(pixels, "PNG", icc_profile=bad_profile)).tobytes() == rendered(encode(pixels, "PNG")).tobytes()
    )


def test_a_profile_of_another_colour_space_is_ignored() -> None:
    pixels = colour_chart()
    cmyk_profile_on_rgb = encode(pixels, "PNG", icc_profile=standard_cmyk_profile())
    assert rendered(cmyk_profile_on_rgb).tobytes() == rendered(encode(pixels, "PNG")).tobytes()


def test_transforms_are_built_once_per_profile_and_the_cache_is_bounded() -> None:
    data = encode(
        colour_chart(),
        "PNG",
        icc_profile=matrix_shaper_profile("once", ((0.7, 0.3), (0.2, 0.7), (0.15, 0.05)), (0.3127, 0.329), 2.0),
    )
    rendered(data)
    before = colour._transform_to_srgb.cache_info()
    rendered(data)
    after = colour._transform_to_srgb.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 0)
    assert after.maxsize == 32


# ----------------------------------------------------------------------------- CMYK


@pytest.fixture(scope="module")
def cmyk_space() -> bytes:
    return standard_cmyk_profile()


@pytest.fixture(scope="module")
def cmyk_pixels(cmyk_space: bytes) -> Image.Image:
    return encoded_in(cmyk_space, colour_chart(), mode="CMYK")


def cmyk_jpeg(pixels: Image.Image, **params: object) -> bytes:
    # Pillow writes CMYK as Adobe does: inverted, with an APP14 "Adobe" marker saying so.
    data = encode(pixels, "JPEG", quality=95, **params)
    assert adobe_marker_at(data) >= 0 and decode(data).mode == "CMYK"
    return data


def adobe_marker_at(data: bytes) -> int:
    """Where the APP14 "Adobe" segment starts (FF EE, 2 length bytes, "Adobe"), or -1."""
    at = data.find(b"\xff\xee")
    return at if at >= 0 and data[at + 4 : at + 9] == b"Adobe" else -1


def test_cmyk_with_its_embedded_profile(cmyk_space: bytes, cmyk_pixels: Image.Image) -> None:
    data = cmyk_jpeg(cmyk_pixels, icc_profile=cmyk_space)
    reference = reference_srgb(decode(data), cmyk_space)

    assert patch_delta_e(rendered(data), reference) < DELTA_E_BAR / 2
    assert patch_delta_e(decode(data).convert("RGB"), reference) > DELTA_E_BAR  # Pillow's naive conversion


def test_untagged_cmyk_goes_through_the_standard_profile(cmyk_space: bytes, cmyk_pixels: Image.Image) -> None:
    data = cmyk_jpeg(cmyk_pixels)
    reference = reference_srgb(decode(data), cmyk_space)

    assert patch_delta_e(rendered(data, cmyk_profile=cmyk_space), reference) < DELTA_E_BAR / 2
    assert patch_delta_e(rendered(data), reference) > DELTA_E_BAR  # no standard profile given: naive


def test_an_embedded_cmyk_profile_wins_over_the_standard_one(cmyk_space: bytes, cmyk_pixels: Image.Image) -> None:
    data = cmyk_jpeg(cmyk_pixels, icc_profile=cmyk_space)
    stand_in = b"not a profile"  # would be ignored anyway; the embedded one is used first
    assert rendered(data, cmyk_profile=stand_in).tobytes() == rendered(data).tobytes()


def ycck_jpeg(cmyk: Image.Image) -> bytes:
    """A YCCK JPEG (Adobe transform 2) that Pillow decodes to ``cmyk``.

    Pillow cannot write YCCK, so the components are computed here and written as "CMYK", then the
    APP14 transform byte is set to 2. On decode libjpeg turns Y, Cb, Cr into R, G, B and stores
    (255-R, 255-G, 255-B, K); Pillow then inverts all four (Adobe polarity). So the file must hold
    the YCbCr of (C, M, Y) and 255-K; and Pillow inverts what it writes, hence the 255 - v below.
    """
    cyan, magenta, yellow, black = cmyk.split()
    luma, blue_difference, red_difference = Image.merge("RGB", (cyan, magenta, yellow)).convert("YCbCr").split()
    stored = [luma, blue_difference, red_difference, black.point(lambda v: 255 - v)]
    written = Image.merge("CMYK", [band.point(lambda v: 255 - v) for band in stored])
    data = bytearray(encode(written, "JPEG", quality=95))
    data[adobe_marker_at(data) + 15] = 2  # FF EE, length, "Adobe", version, flags0, flags1, then the transform
    return bytes(data)


def test_ycck_jpeg_is_decoded_and_converted(cmyk_space: bytes, cmyk_pixels: Image.Image) -> None:
    data = ycck_jpeg(cmyk_pixels)
    decoded = decode(data)
    assert decoded.mode == "CMYK" and decoded.info["adobe_transform"] == 2
    # Pillow + libjpeg read back the ink values (within the JPEG's rounding).
    assert max(high for _, high in ImageChops.difference(decoded, cmyk_pixels).getextrema()) <= 8
    reference = reference_srgb(cmyk_pixels, cmyk_space)

    assert patch_delta_e(rendered(data, cmyk_profile=cmyk_space), reference) < DELTA_E_BAR / 2
    assert patch_delta_e(decoded.convert("RGB"), reference) > DELTA_E_BAR


def test_cmyk_paper_and_ink(cmyk_space: bytes) -> None:
    swatches = Image.new("CMYK", (4 * PATCH, PATCH))
    for index, ink in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 0, 255)]):
        swatches.paste(ink, (PATCH * index, 0, PATCH * (index + 1), PATCH))

    output = rendered(cmyk_jpeg(swatches), cmyk_profile=cmyk_space)

    paper, cyan, magenta, black = (output.getpixel((PATCH * index + PATCH // 2, PATCH // 2)) for index in range(4))
    assert min(paper) >= 250  # paper white is white (relative colorimetric)
    assert max(black) <= 40  # full K is near black (black point compensation), not a grey
    assert cyan[0] < 60 and cyan[2] > 180 and 100 < cyan[1] < 200  # press cyan, not (0, 255, 255)
    assert magenta[0] > 180 and magenta[1] < 60


def test_the_conversion_uses_relative_colorimetric() -> None:
    assert colour.RENDERING_INTENT is ImageCms.Intent.RELATIVE_COLORIMETRIC
