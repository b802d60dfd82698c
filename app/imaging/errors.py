"""Declared failures of the imaging package.

Every error a caller can see from :func:`inspect` or :func:`process` is an :class:`ImageError`;
``str(exc)`` is written for the person who uploaded the file, so it can be shown verbatim.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class: the bytes cannot be turned into a web-ready JPEG."""


class EmptyImageError(ImageError):
    """Zero bytes were given."""


class UnsupportedImageError(ImageError):
    """Not an image, or an image format outside the allow-list."""


class ImageTooLargeError(ImageError):
    """The pixel count is over the limit (checked from the header, before decoding)."""


class CorruptImageError(ImageError):
    """The data claims to be an allowed format but is truncated or damaged."""
