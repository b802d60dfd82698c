"""Property: whatever the bytes, inspect(), process() and render_variants() raise nothing but
ImageError subclasses."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.imaging import ImageError, Spec, inspect, process
from app.imaging.presets import Fit, OutputFormat, Preset
from app.imaging.variants import AnimationLimits, render_variants
from tests.support.imaging import encode, exif_with, flip_bits, gradient

# Mutated TIFFs make Pillow warn about every odd tag; the noise says nothing about the property.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Small limits keep a mutated header from sending the decoder after a 50 MP canvas.
FUZZ_SPEC = Spec(max_width=64, max_height=64, max_pixels=250_000)
# A set that takes every path: two sizes (one made from the other), cover, every format, animation.
FUZZ_SET = (
    Preset(name="big", width=64, height=64, formats=(OutputFormat.JPEG, OutputFormat.WEBP), animated=True),
    Preset(name="small", width=16, height=16, fit=Fit.COVER, formats=tuple(OutputFormat)),
)
FUZZ_ANIMATION = AnimationLimits(max_frames=8, max_pixels=FUZZ_SPEC.max_pixels)
FUZZ_SETTINGS = settings(
    deadline=None,  # shared 2-core machine: wall-clock deadlines would only add flakiness
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def seeds() -> dict[str, bytes]:
    rgba = gradient((24, 16), "RGBA")
    return {
        "jpeg": encode(gradient((24, 16)), "JPEG", exif=exif_with(6, gps=True)),
        "png": encode(rgba, "PNG"),
        "png-palette": encode(gradient((24, 16)).convert("P"), "PNG", transparency=3),
        "gif": encode(
            gradient((24, 16)).convert("P"), "GIF", save_all=True, append_images=[Image.new("P", (24, 16), 5)]
        ),
        "bmp": encode(gradient((24, 16)), "BMP"),
        "tiff": encode(rgba, "TIFF", compression="tiff_deflate"),
        "webp": encode(rgba, "WEBP"),
        "webp-animated": encode(rgba, "WEBP", save_all=True, append_images=[Image.new("RGBA", (24, 16), 9)]),
        "apng": encode(rgba, "PNG", save_all=True, append_images=[Image.new("RGBA", (24, 16), 9)]),
    }


def assert_only_image_errors(data: bytes) -> None:
    runs = (
        lambda: inspect(data, max_pixels=FUZZ_SPEC.max_pixels),
        lambda: process(data, FUZZ_SPEC),
        lambda: render_variants(data, FUZZ_SET, max_pixels=FUZZ_SPEC.max_pixels, animation=FUZZ_ANIMATION),
    )
    for run in runs:
        try:
            run()
        except ImageError as exc:
            assert str(exc)  # always a reason the user can read


@settings(FUZZ_SETTINGS, max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    assert_only_image_errors(data)


@settings(FUZZ_SETTINGS, max_examples=200)
@given(seed=st.sampled_from(sorted(seeds())), prefix=st.binary(min_size=1, max_size=64))
def test_known_signature_followed_by_garbage(seed: str, prefix: bytes) -> None:
    assert_only_image_errors(seeds()[seed][:16] + prefix)


mutations = st.tuples(
    st.sampled_from(sorted(seeds())),
    st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 16), st.integers(1, 255)), max_size=6),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
)


def mutate(seed: str, flips: list[tuple[int, int]], keep: float | None) -> bytes:
    data = flip_bits(seeds()[seed], flips)
    return data if keep is None else data[: int(len(data) * keep)]


@settings(FUZZ_SETTINGS, max_examples=1000)
@given(mutations)
def test_mutated_valid_images(mutation: tuple[str, list[tuple[int, int]], float | None]) -> None:
    assert_only_image_errors(mutate(*mutation))


@pytest.mark.filterwarnings("error")
@settings(FUZZ_SETTINGS, max_examples=300)
@given(mutations)
def test_mutated_valid_images_with_warnings_as_errors(
    mutation: tuple[str, list[tuple[int, int]], float | None],
) -> None:
    # A caller running with -W error turns Pillow's UserWarnings into exceptions; still ImageError only.
    assert_only_image_errors(mutate(*mutation))


@pytest.mark.parametrize("seed", sorted(seeds()))
def test_seeds_are_valid(seed: str) -> None:
    assert process(seeds()[seed], FUZZ_SPEC).data
    rendered = render_variants(seeds()[seed], FUZZ_SET, max_pixels=FUZZ_SPEC.max_pixels, animation=FUZZ_ANIMATION)
    assert len(rendered.variants) == 5
