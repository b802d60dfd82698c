"""Encoders: a finished sRGB picture -> JPEG, WebP or AVIF bytes, with no metadata at all.

Derived images inherit the source's ``info`` dict, and Pillow's savers fall back to some of it (JPEG
writes ``info["comment"]``, AVIF ``info["icc_profile"]``, animated WebP ``info["background"]``), so
every encoder passes each of those explicitly, empty: no EXIF/GPS, XMP, ICC or comment ever reaches
an output, and the picture given is not modified. AVIF still
carries its colour signalling (an nclx box: BT.709 primaries, sRGB transfer), which is what sRGB
*is* for an AV1 decoder, not metadata.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from .presets import PILLOW_FORMAT, OutputFormat

# Measured on 800x600 q85 outputs of photo-like 12 MP inputs: optimize=True (Huffman tables fitted to
# the image) takes the encode from ~1.4 to ~2.6 ms (~1.5% of the pipeline) and saves 4-8% of the
# bytes, which are served many times; progressive=True took ~5 ms and saved nothing beyond optimize.
_JPEG_OPTIMIZE = True
_JPEG_PROGRESSIVE = False

# libwebp's method (effort) 0-6: 4 is libwebp's, Pillow's and imgproxy's default. On a 1600x1200
# photo-like picture method 6 took 2.5x the CPU (527 vs 213 ms) for 8% fewer bytes.
_WEBP_METHOD = 4

# libaom speed 0-10 (Pillow's default is 6). On a 1600x1200 photo-like picture at q60, one thread:
# speed 6 took 1276 ms CPU, 7 804 ms, 8 251 ms (+1.3% bytes against 6), 9 108 ms (+6% bytes).
# 8 is imgproxy's default too: a fifth of the CPU for about the same file is the right trade for a
# server that encodes every upload. One thread per encode: the worker pool's processes are the
# parallelism (Pillow's default, a thread per core in every process, would oversubscribe the CPUs).
_AVIF_SPEED = 8
_AVIF_THREADS = 1


def encode(image: Image.Image, output: OutputFormat, quality: int) -> bytes:
    """Encode an RGB (or, for WebP/AVIF, RGBA) picture."""
    buffer = io.BytesIO()
    image.save(buffer, PILLOW_FORMAT[output], **_options(output, quality))
    return buffer.getvalue()


def encode_animated_webp(frames: Sequence[Image.Image], durations: Sequence[int], loop: int, quality: int) -> bytes:
    """An animated WebP of equally sized RGBA ``frames``, each shown for its duration in ms;
    ``loop`` is the number of plays (0: forever)."""
    first, *rest = frames
    buffer = io.BytesIO()
    first.save(
        buffer,
        "WEBP",
        save_all=True,
        append_images=rest,
        duration=list(durations),
        loop=loop,
        background=(0, 0, 0, 0),  # shown around frames smaller than the canvas: none are
        **_options(OutputFormat.WEBP, quality),
    )
    return buffer.getvalue()


def _options(output: OutputFormat, quality: int) -> dict[str, object]:
    no_metadata = {"exif": b"", "icc_profile": None, "xmp": b""}
    if output is OutputFormat.JPEG:
        jpeg = {"optimize": _JPEG_OPTIMIZE, "progressive": _JPEG_PROGRESSIVE, "comment": b""}
        return {"quality": quality, **jpeg, **no_metadata}
    if output is OutputFormat.WEBP:
        return {"quality": quality, "method": _WEBP_METHOD, **no_metadata}
    return {"quality": quality, "speed": _AVIF_SPEED, "max_threads": _AVIF_THREADS, **no_metadata}
