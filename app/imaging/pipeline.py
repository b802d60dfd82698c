"""process(): untrusted image bytes -> the one web-ready JPEG a :class:`Spec` describes.

The single-output form of :func:`app.imaging.variants.render_variants`: the Spec is the default
preset ``web`` (contain, JPEG), and the result is that one variant with the source's header values.
"""

from __future__ import annotations

from .models import ProcessedImage, Spec
from .presets import Preset
from .variants import render_variants


def process(data: bytes, spec: Spec) -> ProcessedImage:
    """Turn an uploaded image into a JPEG fitting ``spec``; raises only ImageError subclasses."""
    rendered = render_variants(data, (Preset.from_spec(spec),), max_pixels=spec.max_pixels)
    (jpeg,) = rendered.variants
    return ProcessedImage(
        data=jpeg.data,
        width=jpeg.width,
        height=jpeg.height,
        source_format=rendered.source_format,
        source_width=rendered.source_width,
        source_height=rendered.source_height,
    )
