"""Value types shared by the API and the worker: the processing spec and its results."""

from __future__ import annotations

from dataclasses import dataclass

# Content decides the format (never the file name or the declared content type); anything Pillow
# recognises outside this tuple is refused by name.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# Above 95 Pillow's encoder mostly grows the file (100 turns parts of the compression off) for no
# visible gain: the one cap, for the settings and for code that builds a Spec itself.
MAX_JPEG_QUALITY = 95

# A box side longer than this is a typo, not a web image (8K is 7680 wide); it also bounds the
# size asked of the decoder. The one cap, for Spec and for presets.
MAX_OUTPUT_SIDE = 8192


def _require_positive_int(name: str, value: object) -> None:
    # bool is an int subclass; Spec(max_width=True) is a bug, not a 1-pixel box.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Spec.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Spec:
    """What to make: a JPEG fitting in ``max_width`` x ``max_height`` (never upscaled).

    The one definition of an output and its limits: the settings build one (``Settings.output_spec``,
    validated when the settings are read), the worker makes it, the API describes it (``describe``).
    The defaults here are the settings' defaults."""

    max_width: int = 800
    max_height: int = 600
    quality: int = 85
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        # An invalid spec is a programming/configuration error, so it fails here, loudly, with a
        # ValueError — which lets process() promise that only ImageError escapes it.
        for name in ("max_width", "max_height", "quality", "max_pixels"):
            _require_positive_int(name, getattr(self, name))
        if self.quality > MAX_JPEG_QUALITY:
            raise ValueError(f"Spec.quality must be 1..{MAX_JPEG_QUALITY}, got {self.quality}")
        for name in ("max_width", "max_height"):
            if getattr(self, name) > MAX_OUTPUT_SIDE:
                raise ValueError(f"Spec.{name} must be 1..{MAX_OUTPUT_SIDE}, got {getattr(self, name)}")

    def describe(self) -> str:
        """The output in words, for the API's description."""
        return f"within {self.max_width}x{self.max_height}, quality {self.quality}"


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: the detected format and the stored (un-rotated) dimensions."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class ProcessedImage:
    """A web-ready JPEG and where it came from.

    ``width``/``height`` are the output's; ``source_*`` are the input's header values, i.e. the same
    numbers :func:`app.imaging.inspect` reports (before EXIF orientation is applied).
    """

    data: bytes
    width: int
    height: int
    source_format: str
    source_width: int
    source_height: int
