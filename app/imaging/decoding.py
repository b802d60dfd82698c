"""Opening untrusted bytes with Pillow, and turning every way that can fail into an ImageError.

Shared by :func:`app.imaging.inspect` and :func:`app.imaging.process` so both name formats and
failures the same way.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from .errors import CorruptImageError, EmptyImageError, ImageError, ImageTooLargeError, UnsupportedImageError
from .geometry import TRANSPOSE_FOR_ORIENTATION
from .models import ALLOWED_FORMATS

# Pillow names multi-picture JPEGs (most camera files with a preview) "MPO"; they are plain JPEGs to us.
_FORMAT_ALIASES = {"MPO": "JPEG"}

_ALLOWED_FOR_HUMANS = ", ".join(ALLOWED_FORMATS)

# Pillow reads the first 16 bytes to pick a plugin; its accept() functions look at no more.
_PREFIX_LENGTH = 16

# Things Pillow cannot read but people upload by mistake: naming them makes a better message.
_NON_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "GZIP"),
    (b"Rar!", "RAR"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_SVG_SNIFF_BYTES = 4096

# What Pillow and its codecs raise on hostile or damaged input (found by fuzzing: plugins also trip
# over IndexError, KeyError, ZeroDivisionError, assertions...). Deliberately not a bare `Exception`,
# so that control-flow exceptions such as Celery's SoftTimeLimitExceeded still reach the worker.
# Warning is included for callers running with `-W error`: a warning is then just another failure.
DECODE_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    zlib.error,
    EOFError,
    LookupError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RuntimeError,
    AssertionError,
    BufferError,
    Warning,
)

_MAX_REASON_CHARS = 200


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


@dataclass
class Subject:
    """What the block is working on, for error messages; set ``format`` once it is known."""

    format: str = "image"


@contextmanager
def pillow_errors_as_image_errors() -> Iterator[Subject]:
    """Let only ImageError out of the block: Pillow's many failure types become one of ours."""
    subject = Subject()
    try:
        yield subject
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Safety net: open_image() already turns Pillow's refusal at open() into our message, but a
        # decoder may still check later (a GIF frame reaching outside its canvas, for one).
        raise ImageTooLargeError(f"The image is too large to process safely ({_reason(exc)}).") from exc
    except MemoryError as exc:
        raise ImageTooLargeError("There is not enough memory to process this image.") from exc
    except DECODE_FAILURES as exc:
        message = f"The {subject.format} file is corrupt or truncated ({_reason(exc)})."
        raise CorruptImageError(message) from exc


@contextmanager
def _bomb_warning_silenced() -> Iterator[None]:
    # Pillow warns at open() for anything over its global MAX_IMAGE_PIXELS (~89 MP), before we get
    # to compare the size with *our* limit; the warning is noise either way: we refuse the image,
    # or the caller's limit allows it. Scoped to open() (header parsing only, microseconds) so the
    # process-wide filter list is touched as briefly as possible — catch_warnings is not
    # thread-safe before Python 3.14, and the worst a race can do here is drop or keep this filter.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_image(data: bytes, *, max_pixels: int) -> tuple[ImageFile.ImageFile, str]:
    """Identify ``data`` by content among ALLOWED_FORMATS and check its size from the header.

    Returns the lazy (undecoded) image and its format. Raises EmptyImageError, UnsupportedImageError,
    CorruptImageError or ImageTooLargeError; other Pillow failures propagate for
    :func:`pillow_errors_as_image_errors` to translate.
    """
    if not data:
        raise EmptyImageError("The file is empty (0 bytes).")
    try:
        with _bomb_warning_silenced():
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise _unidentified_image_error(data) from exc
    except Image.DecompressionBombError as exc:
        raise _too_large_for_pillow(data, max_pixels) from exc
    except DECODE_FAILURES as exc:
        claimed = _allowed_format_claimed_by(data[:_PREFIX_LENGTH]) or "image"
        raise CorruptImageError(f"The {claimed} file is corrupt or truncated ({_reason(exc)}).") from exc
    image_format = _FORMAT_ALIASES.get(image.format or "", image.format or "")
    if image_format not in ALLOWED_FORMATS:
        raise UnsupportedImageError(_unsupported_message(image_format))
    _check_pixel_limit(image.size, max_pixels)
    return image, image_format


def _check_pixel_limit(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse from the header, before any pixel is decoded (decompression bombs, absurd canvases)."""
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImageError(f"The image header declares an empty canvas ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large_message(width, height, max_pixels))


def _too_large_message(width: int, height: int, limit: int) -> str:
    return f"The image is {width}x{height} = {width * height:,} pixels; the limit is {limit:,} pixels."


def _too_large_for_pillow(data: bytes, max_pixels: int) -> ImageTooLargeError:
    """Pillow refused in open() (over 2x Image.MAX_IMAGE_PIXELS): phrase it like our own refusal."""
    size = _header_size(data)
    if size is None:
        return ImageTooLargeError("The image's dimensions are too large to process safely.")
    width, height = size
    # Normally our limit is the lower one; if the caller configured a higher one, Pillow's still holds.
    return ImageTooLargeError(_too_large_message(width, height, min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)))


def _header_size(data: bytes) -> tuple[int, int] | None:
    # Image.open() = plugin factory + Pillow's bomb check; the factory alone parses the header.
    format_name = _allowed_format_claimed_by(data[:_PREFIX_LENGTH])
    if format_name is None:
        return None
    factory = Image.OPEN[format_name][0]
    try:
        with _bomb_warning_silenced(), factory(io.BytesIO(data), "") as image:
            return image.size
    except (Image.DecompressionBombError, *DECODE_FAILURES):
        return None


def _unsupported_message(format_name: str) -> str:
    return f"{format_name} files are not supported; please upload one of: {_ALLOWED_FOR_HUMANS}."


def _unidentified_image_error(data: bytes) -> ImageError:
    prefix = data[:_PREFIX_LENGTH]
    claimed = _allowed_format_claimed_by(prefix)
    if claimed:
        return CorruptImageError(f"The file starts like a {claimed} image but its header is damaged or truncated.")
    foreign = _foreign_format(data)
    if foreign:
        return UnsupportedImageError(_unsupported_message(foreign))
    return UnsupportedImageError(f"The file is not a recognised image; please upload one of: {_ALLOWED_FOR_HUMANS}.")


def _accepts(format_name: str, prefix: bytes) -> bool:
    entry = Image.OPEN.get(format_name)
    if entry is None or entry[1] is None:
        return False
    try:
        # accept() may also return a str ("recognised, but the codec is missing") — not a yes.
        return entry[1](prefix) is True
    except DECODE_FAILURES:
        return False


def _allowed_format_claimed_by(prefix: bytes) -> str | None:
    Image.init()
    return next((name for name in ALLOWED_FORMATS if _accepts(name, prefix)), None)


def _foreign_format(data: bytes) -> str | None:
    """Name the format of a file we refuse, if we can tell cheaply; None for "not an image"."""
    for signature, name in _NON_IMAGE_SIGNATURES:
        if data.startswith(signature):
            return name
    recognised_by_pillow = _pillow_format_outside_allow_list(data)
    if recognised_by_pillow:
        return recognised_by_pillow
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC/HEIF"
    if _looks_like_svg(data):
        return "SVG"
    return None


def _pillow_format_outside_allow_list(data: bytes) -> str | None:
    Image.init()
    prefix = data[:_PREFIX_LENGTH]
    candidates = [name for name in Image.OPEN if name not in ALLOWED_FORMATS and _accepts(name, prefix)]
    if not candidates:
        return None
    # Some signatures are only two bytes long; opening (header only, never decoding) confirms it.
    try:
        with _bomb_warning_silenced():
            image = Image.open(io.BytesIO(data), formats=candidates)
    except (MemoryError, Image.DecompressionBombError, *DECODE_FAILURES):
        return None
    with image:
        return image.format


def _looks_like_svg(data: bytes) -> bool:
    head = data[:_SVG_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") and b"<svg" in head


def exif_orientation(image: Image.Image) -> int:
    """EXIF (or XMP) orientation 1..8 as ImageOps.exif_transpose reads it; 1 if absent or unreadable."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except DECODE_FAILURES:
        return 1  # damaged EXIF must not cost the user their picture; show it as stored
    return orientation if isinstance(orientation, int) and orientation in TRANSPOSE_FOR_ORIENTATION else 1
