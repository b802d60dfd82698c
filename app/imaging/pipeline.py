"""process(): untrusted image bytes -> web-ready JPEG, as fast as Pillow allows.

The order of work is chosen so the big image is touched as little as possible:

1. read the header only, refuse oversize canvases, read the EXIF orientation;
2. compute the output size in *displayed* orientation, then map it back to *stored* orientation;
3. JPEG: shrink-on-load (libjpeg DCT scaling to 1/2, 1/4, 1/8) to the smallest scale still >= the
   output size, so a 12 MP photo is decoded as 0.75 MP;
4. resample in the stored orientation (integer reduce() first when far apart, then LANCZOS);
5. flatten alpha on white, convert to RGB, and only then rotate/flip — all on the small image;
6. encode with no metadata at all.
"""

from __future__ import annotations

import io

from PIL import ExifTags, Image

from .colour import flatten_on_white, to_working_mode
from .decoding import DECODE_FAILURES, open_image, pillow_errors_as_image_errors
from .geometry import TRANSPOSE_FOR_ORIENTATION, displayed_size, fit_within
from .models import ProcessedImage, Spec

# resize(reducing_gap=1.5): a cheap integer reduce() (box average) while the image is still >= 1.5x
# the target per integer step, then LANCZOS for the rest. On a 2000x2000 -> 600x600 PNG that is 3x
# faster than a plain LANCZOS (22 vs 61 ms) at 41 dB PSNR from it. JPEGs rarely get here: DCT scaling
# already brought them within 2x of the target (unless capped at 1/8).
_REDUCING_GAP = 1.5
_RESAMPLE = Image.Resampling.LANCZOS

# Measured on 800x600 q85 outputs of photo-like 12 MP inputs: optimize=True (Huffman tables fitted to
# the image) takes the encode from ~1.4 to ~2.6 ms (~1.5% of the pipeline) and saves 4-8% of the
# bytes, which are served many times; progressive=True took ~5 ms and saved nothing beyond optimize.
_JPEG_OPTIMIZE = True
_JPEG_PROGRESSIVE = False

Box = tuple[float, float, float, float]


def process(data: bytes, spec: Spec) -> ProcessedImage:
    """Turn an uploaded image into a JPEG fitting ``spec``; raises only ImageError subclasses."""
    with pillow_errors_as_image_errors() as subject:
        image, source_format = open_image(data, max_pixels=spec.max_pixels)
        subject.format = source_format
        with image:
            source_width, source_height = image.size  # before draft() shrinks it
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
            jpeg = _encode_jpeg(upright, spec.quality)  # inside: `upright` may be `image` itself (1x1)
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
    Other formats ignore draft(). (Decoding to YCbCr to skip colour conversion was measured too: no
    gain within noise, since libjpeg-turbo's SIMD conversion is cheap, so the simpler RGB path stays.)
    """
    drafted = image.draft(None, stored_output_size)
    if drafted is not None:
        return drafted[1]
    return (0, 0, image.width, image.height)


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
    if pixels.mode != "RGB":
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
