"""ICC profiles and colour arithmetic for the colour tests, generated here (no profile files needed).

``matrix_shaper_profile`` writes an ICC v2 display profile from primaries, white point and tone
curve: what Display P3 and Adobe RGB (1998) are. Colorants are Bradford-adapted to the D50
connection space, as the ICC specification requires. ``standard_cmyk_profile`` is the press profile
the service uses for untagged CMYK (Debian's libgs-common, scripts/system-packages).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from app.imaging.colour import STANDARD_CMYK_PROFILE_PATH

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
Chromaticity = tuple[float, float]

D50_XYZ = (0.9642, 1.0, 0.8249)  # the ICC connection space's white, as in every profile header
D65: Chromaticity = (0.3127, 0.3290)

STANDARD_CMYK_PROFILE = Path(STANDARD_CMYK_PROFILE_PATH)

_BRADFORD: Matrix = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367), (0.0389, -0.0685, 1.0296))

# sRGB's piecewise curve as an ICC parametric curve (function type 3: g, a, b, c, d).
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
ADOBE_RGB_GAMMA = 563 / 256  # 2.19921875, exactly representable as the u8Fixed8 the spec gives


def display_p3_profile() -> bytes:
    """Display P3: DCI-P3 primaries, D65 white, the sRGB tone curve (Apple's phone and screen space)."""
    return matrix_shaper_profile("Display P3 (test)", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65, SRGB_CURVE)


def adobe_rgb_profile() -> bytes:
    """Adobe RGB (1998): wider greens, D65 white, a pure 563/256 gamma."""
    return matrix_shaper_profile("Adobe RGB (test)", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), D65, ADOBE_RGB_GAMMA)


def standard_cmyk_profile() -> bytes:
    if not STANDARD_CMYK_PROFILE.exists():
        message = f"{STANDARD_CMYK_PROFILE} is missing (apt-get install libgs-common; scripts/system-packages)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return STANDARD_CMYK_PROFILE.read_bytes()


# ----------------------------------------------------------------------------- the profile writer


def matrix_shaper_profile(
    description: str,
    primaries: tuple[Chromaticity, Chromaticity, Chromaticity],
    white: Chromaticity,
    curve: float | Sequence[float],
) -> bytes:
    """An ICC v2.1 RGB display profile; ``curve`` is a gamma, or sRGB-style parametric parameters."""
    columns = _transposed(_multiply(_adaptation_to_d50(white), rgb_to_xyz_matrix(primaries, white)))
    trc = _curve_tag(curve)
    tags = [
        (b"desc", _text_description(description)),
        (b"cprt", b"text" + bytes(4) + b"No copyright: generated for tests\x00"),
        (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag(columns[0])),
        (b"gXYZ", _xyz_tag(columns[1])),
        (b"bXYZ", _xyz_tag(columns[2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, data = [], b""
    for signature, payload in tags:
        payload += bytes(-len(payload) % 4)  # tags start on 4-byte boundaries
        entries.append(struct.pack(">4sII", signature, offset + len(data), len(payload)))
        data += payload
    body = struct.pack(">I", len(tags)) + b"".join(entries) + data
    header = struct.pack(
        ">I4sI4s4s4s6H4s4sI4s4s8sI12s4s16s28s",
        128 + len(body),
        b"",
        0x02100000,  # version 2.1
        b"mntr",
        b"RGB ",
        b"XYZ ",
        2026,
        1,
        1,
        0,
        0,
        0,
        b"acsp",
        b"",
        0,
        b"",
        b"",
        bytes(8),
        0,  # perceptual
        b"".join(_s15fixed16(value) for value in D50_XYZ),
        b"",
        bytes(16),
        bytes(28),
    )
    return header + body


def _s15fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15fixed16(value) for value in xyz)


def _curve_tag(curve: float | Sequence[float]) -> bytes:
    if isinstance(curve, float | int):
        return b"curv" + bytes(4) + struct.pack(">IH", 1, round(curve * 256))  # u8Fixed8 gamma
    return b"para" + bytes(4) + struct.pack(">HH", 3, 0) + b"".join(_s15fixed16(value) for value in curve)


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    # ASCII part; then empty Unicode (language, count) and ScriptCode (code, count, 67 bytes) parts.
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(8) + bytes(3) + bytes(67)


# ----------------------------------------------------------------------------- colour arithmetic


def _xyz_of(chromaticity: Chromaticity) -> tuple[float, float, float]:
    x, y = chromaticity
    return x / y, 1.0, (1 - x - y) / y


def _multiply(a: Matrix, b: Matrix) -> Matrix:
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))  # type: ignore[return-value]


def _apply(matrix: Matrix, vector: Sequence[float]) -> tuple[float, float, float]:
    return tuple(sum(matrix[i][k] * vector[k] for k in range(3)) for i in range(3))  # type: ignore[return-value]


def _transposed(matrix: Matrix) -> Matrix:
    return tuple(zip(*matrix, strict=True))  # type: ignore[return-value]


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    cofactors = (
        (e * i - f * h, c * h - b * i, b * f - c * e),
        (f * g - d * i, a * i - c * g, c * d - a * f),
        (d * h - e * g, b * g - a * h, a * e - b * d),
    )
    return tuple(tuple(value / det for value in row) for row in cofactors)  # type: ignore[return-value]


def rgb_to_xyz_matrix(primaries: tuple[Chromaticity, Chromaticity, Chromaticity], white: Chromaticity) -> Matrix:
    """Linear RGB -> XYZ (relative to ``white``), from the primaries' chromaticities."""
    columns = _transposed(tuple(_xyz_of(primary) for primary in primaries))  # type: ignore[arg-type]
    scale = _apply(_inverse(columns), _xyz_of(white))
    return tuple(tuple(columns[i][j] * scale[j] for j in range(3)) for i in range(3))  # type: ignore[return-value]


def _adaptation_to_d50(white: Chromaticity) -> Matrix:
    source, target = _apply(_BRADFORD, _xyz_of(white)), _apply(_BRADFORD, D50_XYZ)
    gains = ((target[0] / source[0], 0, 0), (0, target[1] / source[1], 0), (0, 0, target[2] / source[2]))
    return _multiply(_inverse(_BRADFORD), _multiply(gains, _BRADFORD))  # type: ignore[arg-type]


_SRGB_TO_XYZ = rgb_to_xyz_matrix(((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65)
_D65_XYZ = _xyz_of(D65)


def _srgb_to_linear(value: float) -> float:
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def _lab_f(t: float) -> float:
    return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29


def srgb_to_lab(rgb: Sequence[int]) -> tuple[float, float, float]:
    """CIELAB (D65) of an 8-bit sRGB colour."""
    xyz = _apply(_SRGB_TO_XYZ, [_srgb_to_linear(channel / 255) for channel in rgb])
    fx, fy, fz = (_lab_f(value / white) for value, white in zip(xyz, _D65_XYZ, strict=True))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def mean_delta_e(first: Image.Image, second: Image.Image) -> float:
    """Mean CIE76 colour difference (ΔE*ab) between two same-sized sRGB pictures, pixel by pixel.
    CIE76 rather than CIEDE2000: it is the stricter of the two on saturated colours."""
    assert first.size == second.size
    cache: dict[tuple[int, ...], tuple[float, float, float]] = {}

    def lab(rgb: tuple[int, ...]) -> tuple[float, float, float]:
        if rgb not in cache:
            cache[rgb] = srgb_to_lab(rgb)
        return cache[rgb]

    pairs = zip(_pixels(first), _pixels(second), strict=True)
    total = sum(math.dist(lab(a), lab(b)) for a, b in pairs)
    return total / (first.width * first.height)


def _pixels(image: Image.Image) -> list[tuple[int, ...]]:
    data = image.convert("RGB").tobytes()
    return [tuple(data[index : index + 3]) for index in range(0, len(data), 3)]
