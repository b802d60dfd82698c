"""process(): untrusted image bytes -> web-ready JPEG, as fast as Pillow allows.

The order of work is chosen so the big image is touched as little as possible:

1. read the header only, refuse oversize canvases, read the EXIF orientation;
2. compute the output size in *displayed* orientation, then map it back to *stored* orientation;
3. JPEG: shrink-on-load (libjpeg DCT scaling to 1/2, 1/4, 1/8) to the smallest scale still >= the
   output size, so a 12 MP photo is decoded as 0.75 MP;
4. resample in the stored orientation (integer reduce() first when far apart, then LANCZOS);
5. flatten alpha on white, convert to RGB (JPEGs stay in YCbCr), only then rotate/flip — all on the
   small image;
6. encode with no metadata at all.
"""

from __future__ import annotations

import io

from PIL import ExifTags, Image, JpegImagePlugin

from .colour import flatten_on_white, to_working_mode
from .decoding import DECODE_FAILURES, check_pixel_limit, open_image, pillow_errors_as_image_errors
from .geometry import TRANSPOSE_FOR_ORIENTATION, displayed_size, fit_within
from .models import ProcessedImage, Spec

# resize(reducing_gap=3.0): integer reduce() down to >= 3x the target, then LANCZOS. Pillow documents
# 3.0 as indistinguishable from a full LANCZOS; the JPEG path rarely needs it (DCT scaling already
# brought the image within 2x), PNG/GIF/... and 8x-capped JPEGs do.
_REDUCING_GAP = 3.0
_RESAMPLE = Image.Resampling.LANCZOS

# Measured on 800x600 output (bench/bench_pipeline.py): optimize=True (Huffman tables for this image)
# costs ~1 ms and saves ~8% of bytes; progressive=True costs 3-4x the encode time and saved nothing
# more on top of optimize, so it is off.
_JPEG_OPTIMIZE = True
_JPEG_PROGRESSIVE = False

Box = tuple[float, float, float, float]

_RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))
# Modes libjpeg encodes as they are; YCbCr is what it would convert RGB into anyway.
_JPEG_NATIVE_MODES = frozenset({"RGB", "YCbCr"})


def process(data: bytes, spec: Spec) -> ProcessedImage:
    """Turn an uploaded image into a JPEG fitting ``spec``; raises only ImageError subclasses."""
    with pillow_errors_as_image_errors():
        image, source_format = open_image(data)
        with image:
            source_width, source_height = image.size  # before draft() shrinks it
            check_pixel_limit((source_width, source_height), spec.max_pixels)
            if source_format != "JPEG":
                # No shrink-on-load for these; decode now so a decode failure is not mistaken for
                # damaged EXIF below (PNG's getexif() would decode anyway, to find a trailing eXIf).
                image.load()
            orientation = exif_orientation(image)
            output_size = fit_within(displayed_size(image.size, orientation), spec.max_width, spec.max_height)
            stored_output_size = displayed_size(output_size, orientation)
            source_box = _shrink_on_load(image, stored_output_size)
            image.load()
            upright = _render(image, stored_output_size, source_box, orientation)
        jpeg = _encode_jpeg(upright, spec.quality)
    return ProcessedImage(
        data=jpeg,
        width=upright.width,
        height=upright.height,
        source_format=source_format,
        source_width=source_width,
        source_height=source_height,
    )


def exif_orientation(image: Image.Image) -> int:
    """EXIF (or XMP) orientation 1..8 as ImageOps.exif_transpose reads it; 1 if absent or unreadable."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except DECODE_FAILURES:
        return 1  # damaged EXIF must not cost the user their picture; show it as stored
    return orientation if isinstance(orientation, int) and orientation in TRANSPOSE_FOR_ORIENTATION else 1


def _shrink_on_load(image: Image.Image, stored_output_size: tuple[int, int]) -> Box:
    """For JPEG, ask libjpeg for the smallest 1/1..1/8 scale still >= the output size.

    Returns the source region to resample from, in decoded pixels: DCT scaling rounds the decoded
    size up, so the true image spans a fractional box, and resampling from it keeps geometry exact.
    YCbCr-coded JPEGs are also kept in YCbCr (JPEG's own colour space) all the way to the encoder,
    which skips a colour conversion on each side. Other formats ignore draft().
    """
    decode_mode = "YCbCr" if _is_ycbcr_coded_jpeg(image) else None
    drafted = image.draft(decode_mode, stored_output_size)
    if drafted is not None:
        return drafted[1]
    return (0, 0, image.width, image.height)


def _is_ycbcr_coded_jpeg(image: Image.Image) -> bool:
    """libjpeg's own guess (jdapimin.c, default_decompress_parms) of a 3-component JPEG's colour space.

    Asking libjpeg for YCbCr output from an RGB-coded file is an error, so this must agree with it.
    """
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or image.mode != "RGB" or image.layers != 3:
        return False
    if "jfif" in image.info:
        return True
    adobe_transform = image.info.get("adobe_transform")
    if adobe_transform is not None:
        return adobe_transform != 0
    component_ids = tuple(layer[0] for layer in image.layer)
    return component_ids != _RGB_COMPONENT_IDS


def _render(
    image: Image.Image,
    stored_output_size: tuple[int, int],
    source_box: Box,
    orientation: int,
) -> Image.Image:
    pixels = to_working_mode(image)
    if pixels.size != stored_output_size:
        pixels = pixels.resize(stored_output_size, _RESAMPLE, box=source_box, reducing_gap=_REDUCING_GAP)
    pixels = flatten_on_white(pixels)
    if pixels.mode not in _JPEG_NATIVE_MODES:
        pixels = pixels.convert("RGB")
    transpose = TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return pixels.transpose(transpose) if transpose is not None else pixels


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    # Derived images inherit the source's info dict, and JPEG save writes info["comment"] (Pillow >= 9.4);
    # emptying it and passing empty exif/ICC leaves the output free of EXIF/GPS, XMP, ICC and comments.
    image.info = {}
    buffer = io.BytesIO()
    image.save(
        buffer,
        "JPEG",
        quality=quality,
        optimize=_JPEG_OPTIMIZE,
        progressive=_JPEG_PROGRESSIVE,
        exif=b"",
        icc_profile=None,
    )
    return buffer.getvalue()
