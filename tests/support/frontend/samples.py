"""Generated files for the page tests and the README screenshot."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw


def picture(width: int, height: int, *, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A colourful gradient with a few shapes: looks like something in a thumbnail."""
    rng = random.Random(seed)
    hue = rng.random()
    top = tuple(int(255 * (0.5 + 0.5 * math.sin(2 * math.pi * (hue + k / 3)))) for k in range(3))
    bottom = tuple(int(255 * (0.5 + 0.5 * math.sin(2 * math.pi * (hue + 0.5 + k / 3)))) for k in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient)
    draw = ImageDraw.Draw(image)
    unit = min(width, height)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(unit // 12, unit // 4)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def truncated_png() -> bytes:
    return picture(64, 48)[:60]


def not_an_image() -> bytes:
    return b"just some text, not an image\n" * 4


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path
