"""Pure image processing: bytes + spec in, result out (stdlib + Pillow only; no I/O, no settings).

``inspect`` is the cheap upload-time check the API runs; ``process`` is what the worker runs to make
the web-ready JPEG. Both raise only :class:`ImageError` subclasses, whose ``str()`` is user-readable.
"""

from .errors import CorruptImageError, EmptyImageError, ImageError, ImageTooLargeError, UnsupportedImageError
from .models import ALLOWED_FORMATS, ImageInfo, ProcessedImage, Spec
from .pipeline import process
from .validation import inspect

__all__ = [
    "ALLOWED_FORMATS",
    "CorruptImageError",
    "EmptyImageError",
    "ImageError",
    "ImageInfo",
    "ImageTooLargeError",
    "ProcessedImage",
    "Spec",
    "UnsupportedImageError",
    "inspect",
    "process",
]
