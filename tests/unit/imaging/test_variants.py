"""render_variants(): one decode, every (preset, format) variant; geometry, formats, alpha, animation."""

from __future__ import annotations

import io
import math
import time

import pytest
from PIL import Image, ImageChops, ImageFile, ImageOps

from app.imaging import ImageError, ImageTooLargeError
from app.imaging import variants as variants_module
from app.imaging.geometry import Placement, place
from app.imaging.presets import Fit, OutputFormat, Preset
from app.imaging.variants import AnimationLimits, RenderedSet, make_pictures, render_variants
from bench.bench_pipeline import photo_like
from tests.support.icc import display_p3_profile
from tests.support.imaging import (
    BLUE,
    RED,
    WHITE,
    corner_pixel,
    decode,
    encode,
    exif_with,
    gradient,
    is_close,
    jpeg_with_orientation,
    with_marker,
)

MAX_PIXELS = 50_000_000
JPEG, WEBP, AVIF = OutputFormat.JPEG, OutputFormat.WEBP, OutputFormat.AVIF
GREEN = (0, 255, 0)

# The set of the benchmark: a square thumbnail, a card, the page picture, a full-width one.
BENCH_SET = (
    Preset(name="thumb", width=160, height=160, fit=Fit.COVER, formats=(WEBP,)),
    Preset(name="card", width=400, height=300, formats=(WEBP,)),
    Preset(name="web", width=800, height=600, formats=(JPEG, WEBP), default=True),
    Preset(name="full", width=1600, height=1200, formats=(AVIF,)),
)


def render(data: bytes, *presets: Preset, **options: object) -> RenderedSet:
    return render_variants(data, presets, max_pixels=MAX_PIXELS, **options)  # type: ignore[arg-type]


def preset(name: str = "p", width: int = 800, height: int = 600, **fields: object) -> Preset:
    return Preset(name=name, width=width, height=height, **fields)  # type: ignore[arg-type]


def centre(image: Image.Image) -> tuple[int, ...]:
    return image.getpixel((image.width // 2, image.height // 2))


def psnr(first: Image.Image, second: Image.Image) -> float:
    histogram = ImageChops.difference(first.convert("RGB"), second.convert("RGB")).histogram()
    squared = sum(count * (level % 256) ** 2 for level, count in enumerate(histogram))
    mse = squared / (3 * first.width * first.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ImageFile.load() that decodes (later load() calls are no-ops)."""
    calls: list[str] = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile) -> object:
        if self.tile:
            calls.append(f"{self.format} {self.size}")
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    return calls


# ----------------------------------------------------------------------------- the set


def test_every_format_of_every_preset_largest_first() -> None:
    rendered = render(encode(photo_like(2400, 1800, seed=1), "JPEG", quality=90), *BENCH_SET)

    assert [(v.preset, v.format, v.width, v.height) for v in rendered.variants] == [
        ("full", AVIF, 1600, 1200),
        ("web", JPEG, 800, 600),
        ("web", WEBP, 800, 600),
        ("card", WEBP, 400, 300),
        ("thumb", WEBP, 160, 160),
    ]
    assert (rendered.source_format, rendered.source_width, rendered.source_height) == ("JPEG", 2400, 1800)
    assert rendered.notes == ()
    assert rendered.variant("web", WEBP).data.startswith(b"RIFF")


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_the_original_is_decoded_once_for_the_whole_set(image_format: str, decode_calls: list[str]) -> None:
    data = encode(gradient((4000, 3000)), image_format)

    rendered = render(data, *BENCH_SET)

    # One decode, shrunk on load (JPEG) only as far as the largest variant allows: 1/2 for 1600x1200.
    assert decode_calls == [f"{image_format} {(2000, 1500) if image_format == 'JPEG' else (4000, 3000)}"]
    assert len(rendered.variants) == 5


def test_shrink_on_load_serves_the_largest_box_in_either_orientation(decode_calls: list[str]) -> None:
    data = encode(Image.new("RGB", (4000, 3000), RED), "JPEG", exif=exif_with(6))

    rendered = render(data, preset("tall", 1600, 2000), preset("small", 100, 100))

    assert decode_calls == ["JPEG (2000, 1500)"]  # displayed 1500x2000 is stored 2000x1500: 1/2
    assert [(v.width, v.height) for v in rendered.variants] == [(1500, 2000), (75, 100)]


def test_presets_need_distinct_names() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        render(encode(Image.new("RGB", (8, 8)), "PNG"), preset("a"), preset("a", 10, 10))
    with pytest.raises(ValueError, match="distinct names"):
        render(encode(Image.new("RGB", (8, 8)), "PNG"))


def test_limits_still_apply_before_anything_is_decoded(decode_calls: list[str]) -> None:
    with pytest.raises(ImageTooLargeError, match="the limit is 100 pixels"):
        render_variants(encode(Image.new("RGB", (20, 10)), "PNG"), BENCH_SET, max_pixels=100)
    assert decode_calls == []


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("source", "box", "fit", "expected"),
    [
        ((4000, 3000), (160, 160), Fit.COVER, (160, 160)),
        ((4000, 3000), (160, 160), Fit.CONTAIN, (160, 120)),
        ((3000, 4000), (1600, 900), Fit.COVER, (1600, 900)),
        ((3000, 4000), (1600, 900), Fit.CONTAIN, (675, 900)),
        ((1000, 300), (400, 400), Fit.COVER, (300, 300)),  # shorter than the box: the largest square, 1:1
        ((1000, 300), (400, 400), Fit.CONTAIN, (400, 120)),
        ((100, 100), (160, 90), Fit.COVER, (100, 56)),  # smaller both ways: the box's shape, not enlarged
        ((100, 100), (160, 90), Fit.CONTAIN, (90, 90)),
        ((120, 80), (800, 600), Fit.CONTAIN, (120, 80)),
        ((120, 80), (800, 600), Fit.COVER, (107, 80)),
        ((800, 600), (800, 600), Fit.COVER, (800, 600)),
        ((10000, 10), (160, 160), Fit.COVER, (10, 10)),
        ((1, 1), (160, 160), Fit.COVER, (1, 1)),
    ],
)
def test_cover_and_contain_sizes_never_enlarge(
    source: tuple[int, int], box: tuple[int, int], fit: Fit, expected: tuple[int, int]
) -> None:
    placement = place(source, 1, box, fit)
    assert placement.size == expected
    assert max(placement.scale) <= 1

    (variant,) = render(encode(Image.new("RGB", source, GREEN), "JPEG"), preset("p", *box, fit=fit)).variants
    assert (variant.width, variant.height) == expected


def test_cover_crops_the_centre() -> None:
    # Red bands on the left and right eighths, blue top and bottom: a square cover of a 4:3 picture
    # loses the sides; a 3:1 cover of it loses the top and bottom.
    source = Image.new("RGB", (1600, 1200), GREEN)
    source.paste(RED, (0, 0, 200, 1200))
    source.paste(RED, (1400, 0, 1600, 1200))
    data = encode(source, "PNG")

    square = decode(render(data, preset("sq", 300, 300, fit=Fit.COVER)).variants[0].data)
    band = Image.new("RGB", (1600, 1200), GREEN)
    band.paste(BLUE, (0, 0, 1600, 200))
    band.paste(BLUE, (0, 1000, 1600, 1200))
    wide = decode(render(encode(band, "PNG"), preset("wide", 600, 200, fit=Fit.COVER)).variants[0].data)

    for image in (square, wide):
        for corner in ("top-left", "top-right", "bottom-left", "bottom-right"):
            assert is_close(corner_pixel(image, corner), GREEN), corner
    assert square.size == (300, 300) and wide.size == (600, 200)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_cover_follows_exif_orientation_like_imageops_fit(orientation: int) -> None:
    stored = with_marker((640, 400), "top-left")
    stored.paste(GREEN, (560, 300, 640, 400))  # a second marker, bottom-right as stored
    data = jpeg_with_orientation(stored, orientation)
    upright = ImageOps.exif_transpose(decode(data))
    reference = ImageOps.fit(upright, (200, 150), Image.Resampling.LANCZOS)

    (variant,) = render(data, preset("c", 200, 150, fit=Fit.COVER)).variants
    output = decode(variant.data)

    assert output.size == (200, 150)
    assert psnr(output, reference) > 30


def test_a_cover_preset_made_from_a_larger_picture_is_still_centred() -> None:
    source = with_marker((1600, 1200), "top-right")
    rendered = render(encode(source, "PNG"), preset("big", 800, 600), preset("sq", 150, 150, fit=Fit.COVER))

    square = decode(rendered.variant("sq", JPEG).data)
    reference = ImageOps.fit(source, (150, 150), Image.Resampling.LANCZOS)
    assert psnr(square, reference) > 30


# ----------------------------------------------------------------------------- formats and metadata


def test_every_format_decodes_back_with_its_size_and_mode() -> None:
    rendered = render(encode(photo_like(900, 700, seed=3), "PNG"), preset("all", 400, 400, formats=(JPEG, WEBP, AVIF)))

    for output, pillow_format in ((JPEG, "JPEG"), (WEBP, "WEBP"), (AVIF, "AVIF")):
        variant = rendered.variant("all", output)
        image = decode(variant.data)
        assert (image.format, image.mode, image.size) == (pillow_format, "RGB", (400, 311))
        assert (variant.width, variant.height, variant.frames) == (400, 311, 1)


SECRET_MARKERS = (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"ICC_PROFILE", b"secret", b"iCCP", b"ICCP")


@pytest.mark.parametrize("source_format", ["JPEG", "PNG", "WEBP"])
def test_no_output_carries_metadata(source_format: str) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description secret="1"/></x:xmpmeta>'
    params: dict[str, object] = {"exif": exif_with(6, gps=True), "icc_profile": display_p3_profile(), "xmp": xmp}
    if source_format == "JPEG":
        params["comment"] = b"secret comment"
    data = encode(
        photo_like(300, 200, seed=4).convert("RGBA" if source_format != "JPEG" else "RGB"), source_format, **params
    )

    rendered = render(data, preset("m", 200, 200, formats=(JPEG, WEBP, AVIF)), preset("n", 64, 64, formats=(WEBP,)))

    for variant in rendered.variants:
        image = decode(variant.data)
        for key in ("exif", "icc_profile", "comment", "xmp", "XML:com.adobe.xmp"):
            assert key not in image.info, (variant.format, key)
        assert len(image.getexif()) == 0
        for marker in SECRET_MARKERS:
            assert marker not in variant.data, (variant.format, marker)
        assert (variant.width, variant.height) == ((133, 200) if variant.preset == "m" else (43, 64))  # upright


def test_avif_says_srgb() -> None:
    (variant,) = render(encode(photo_like(64, 64, seed=5), "PNG"), preset(formats=(AVIF,))).variants
    # colr box, nclx: BT.709 primaries (1), sRGB transfer (13), BT.601 matrix (6), full range.
    assert b"colrnclx\x00\x01\x00\x0d\x00\x06\x80" in variant.data


def test_quality_per_format() -> None:
    data = encode(photo_like(400, 300, seed=6), "PNG")
    low = render(data, preset(formats=(WEBP, AVIF), webp_quality=30, avif_quality=30)).variants
    high = render(data, preset(formats=(WEBP, AVIF), webp_quality=90, avif_quality=90)).variants
    for worse, better in zip(low, high, strict=True):
        assert len(worse.data) < len(better.data) / 2, worse.format


# ----------------------------------------------------------------------------- transparency


def half_transparent(size: tuple[int, int] = (400, 200)) -> Image.Image:
    """Left half opaque red; right half transparent with green underneath (to catch leaks)."""
    image = Image.new("RGBA", size, (0, 255, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, size[0] // 2, size[1]))
    return image


def left_and_right(image: Image.Image) -> tuple[tuple[int, ...], tuple[int, ...]]:
    y = image.height // 2
    return image.getpixel((image.width // 4, y)), image.getpixel((3 * image.width // 4, y))


@pytest.mark.parametrize("source_format", ["PNG", "WEBP"])
def test_alpha_is_kept_in_webp_and_avif_and_flattened_in_jpeg(source_format: str) -> None:
    rendered = render(
        encode(half_transparent(), source_format, lossless=True), preset("a", 200, 200, formats=tuple(OutputFormat))
    )

    jpeg = decode(rendered.variant("a", JPEG).data)
    assert jpeg.mode == "RGB"
    opaque, transparent = left_and_right(jpeg)
    assert is_close(opaque, RED) and is_close(transparent, WHITE, tolerance=8)
    for output in (WEBP, AVIF):
        image = decode(rendered.variant("a", output).data)
        assert image.mode == "RGBA", output
        opaque, transparent = left_and_right(image)
        assert is_close(opaque, (255, 0, 0, 255)), output
        assert transparent[3] == 0, output


def test_the_jpeg_background_is_configurable() -> None:
    rendered = render(encode(half_transparent(), "PNG"), preset(), background=(10, 20, 30))
    _, transparent = left_and_right(decode(rendered.variants[0].data))
    assert is_close(transparent, (10, 20, 30), tolerance=8)


def test_greyscale_with_alpha_on_a_coloured_background() -> None:
    image = Image.new("LA", (40, 20), (60, 0))
    image.paste((60, 255), (0, 0, 20, 20))
    rendered = render(encode(image, "PNG"), preset(formats=(JPEG, WEBP)), background=(200, 0, 0))

    opaque, transparent = left_and_right(decode(rendered.variant("p", JPEG).data))
    assert is_close(opaque, (60, 60, 60)) and is_close(transparent, (200, 0, 0), tolerance=8)
    assert decode(rendered.variant("p", WEBP).data).mode == "RGBA"


def test_an_opaque_alpha_channel_is_dropped() -> None:
    data = encode(photo_like(200, 100, seed=7).convert("RGBA"), "PNG")  # RGBA, every pixel opaque
    rendered = render(data, preset(formats=(WEBP, AVIF)))
    assert [decode(variant.data).mode for variant in rendered.variants] == ["RGB", "RGB"]


# ----------------------------------------------------------------------------- animation


FRAMES = [RED, BLUE, GREEN, WHITE]


def animation(
    image_format: str, colours: list[tuple[int, int, int]] = FRAMES, size: tuple[int, int] = (64, 48)
) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    durations = [100 + 20 * index for index in range(len(colours))]
    extra = {"lossless": True} if image_format == "WEBP" else {}
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=durations, loop=0, **extra)


def frames_of(data: bytes) -> list[tuple[tuple[int, ...], int]]:
    with Image.open(io.BytesIO(data)) as image:
        result = []
        for index in range(image.n_frames):
            image.seek(index)
            result.append((centre(image.convert("RGB")), image.info["duration"]))
        return result


@pytest.mark.parametrize("image_format", ["GIF", "PNG", "WEBP"])
def test_an_animated_preset_keeps_the_animation_in_webp(image_format: str) -> None:
    loop = preset("loop", 32, 32, formats=(WEBP, JPEG), animated=True)
    still = preset("still", 16, 16, formats=(WEBP,))

    rendered = render(animation(image_format), loop, still)

    animated = rendered.variant("loop", WEBP)
    assert (animated.width, animated.height, animated.frames) == (32, 24, 4)
    played = frames_of(animated.data)
    assert [duration for _, duration in played] == [100, 120, 140, 160]
    for (colour, _), expected in zip(played, FRAMES, strict=True):
        assert is_close(colour, expected)
    with Image.open(io.BytesIO(animated.data)) as image:
        assert image.info["loop"] == 0
    # Everything else is the first frame.
    for variant in (rendered.variant("loop", JPEG), rendered.variant("still", WEBP)):
        assert variant.frames == 1
        assert is_close(centre(decode(variant.data).convert("RGB")), RED)
    assert rendered.notes == ()


def test_a_gif_that_plays_once_still_plays_once() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)  # no loop extension
    (variant,) = render(data, preset(formats=(WEBP,), animated=True)).variants
    with Image.open(io.BytesIO(variant.data)) as image:
        assert image.info["loop"] == 1


def test_animation_over_the_limits_is_the_first_frame_with_a_note() -> None:
    data = animation("GIF", FRAMES * 3)
    loop = preset("loop", 32, 32, formats=(WEBP,), animated=True)

    by_frames = render(data, loop, animation=AnimationLimits(max_frames=10))
    by_pixels = render(data, loop, animation=AnimationLimits(max_pixels=64 * 48 * 11))

    for rendered in (by_frames, by_pixels):
        (variant,) = rendered.variants
        assert variant.frames == 1
        assert is_close(centre(decode(variant.data).convert("RGB")), RED)
        (note,) = rendered.notes
        assert "12 frames of 64x48" in note and "first frame" in note
    assert render(data, loop, animation=AnimationLimits(max_frames=12)).variants[0].frames == 12


def test_an_undecodable_later_frame_leaves_the_first_with_a_note() -> None:
    data = animation("GIF", FRAMES * 5)
    truncated = data[: len(data) * 2 // 3]
    (variant,) = render(truncated, preset(formats=(WEBP,), animated=True)).variants
    assert variant.frames == 1


@pytest.mark.parametrize("image_format", ["TIFF", "MPO"])
def test_pages_and_previews_are_not_animations(image_format: str) -> None:
    pages = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE)]
    data = encode(pages[0], image_format, save_all=True, append_images=pages[1:])
    (variant,) = render(data, preset(formats=(WEBP,), animated=True)).variants
    assert variant.frames == 1


# ----------------------------------------------------------------------------- resampling from larger pictures


def placements_of(source_size: tuple[int, int], presets: tuple[Preset, ...]) -> list[Placement]:
    chosen = [place(source_size, 1, (p.width, p.height), p.fit) for p in presets]
    return sorted(chosen, key=lambda placement: placement.size[0] * placement.size[1], reverse=True)


@pytest.mark.parametrize(("size", "seed"), [((4000, 3000), 12), ((1920, 1080), 7)], ids=["12MP", "1080p"])
def test_pictures_made_from_larger_ones_stay_within_the_psnr_bound(
    size: tuple[int, int], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The measurement behind MIN_CHAIN_RATIO, kept: each picture the set makes from a larger one
    # against the same picture made from the decode. The bound: 40 dB (measured: 43 dB and up;
    # the variants' own encoding error is 26-32 dB).
    decoded = Image.open(io.BytesIO(encode(photo_like(*size, seed=seed), "JPEG", quality=90)))
    decoded.draft("RGB", (size[0] // 2, size[1] // 2))  # as render_variants does for BENCH_SET's 1600x1200
    decoded.load()
    scale = decoded.width / size[0]
    placements = [
        Placement(tuple(edge * scale for edge in placement.region), placement.size)  # type: ignore[arg-type]
        for placement in placements_of(size, BENCH_SET)
    ]
    sources: list[tuple[int, int]] = []
    original_resize = Image.Image.resize

    def spy_resize(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        sources.append(self.size)
        return original_resize(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", spy_resize)
    chained = make_pictures(decoded, None, placements)
    monkeypatch.setattr(variants_module, "MIN_CHAIN_RATIO", math.inf)
    direct = make_pictures(decoded, None, placements)

    # Only the largest came from the decode; each other one from a larger picture of the set.
    assert sources[0] == decoded.size
    assert all(
        source in [picture.size for picture in chained[: index + 1]] for index, source in enumerate(sources[1:4])
    )
    assert sources[4:] == [decoded.size] * 4
    for from_larger, from_decode in zip(chained[1:], direct[1:], strict=True):
        assert psnr(from_larger, from_decode) >= 40, from_larger.size


def test_a_picture_too_close_in_size_is_made_from_the_decode() -> None:
    # 1000 -> 800 is 1.25x: below MIN_CHAIN_RATIO, so the 800-wide picture comes from the decode.
    decoded = photo_like(2000, 1500, seed=8)
    placements = placements_of(decoded.size, (preset("a", 1000, 750), preset("b", 800, 600)))
    chained = make_pictures(decoded, None, placements)
    direct = decoded.resize((800, 600), Image.Resampling.LANCZOS, reducing_gap=1.5)
    assert chained[1].tobytes() == direct.tobytes()


def test_errors_are_image_errors_for_sets_too() -> None:
    with pytest.raises(ImageError):
        render(b"not an image", *BENCH_SET)


# ----------------------------------------------------------------------------- stage times


@pytest.mark.parametrize("animated", [False, True], ids=["still", "animated"])
def test_each_stage_is_timed_within_the_call(animated: bool) -> None:
    """The worker exports these (imgproc_worker_stage_duration_seconds); they partition the call."""
    data = animation("GIF") if animated else encode(photo_like(1200, 900, seed=2), "JPEG")
    presets = (preset("loop", 32, 32, formats=(WEBP, JPEG), animated=True),) if animated else BENCH_SET
    started = time.perf_counter()
    times = render(data, *presets).times
    elapsed = time.perf_counter() - started
    assert times.decode > 0 and times.resize > 0 and times.encode > 0
    assert times.decode + times.resize + times.encode <= elapsed
