"""A set of variants from one decode (render_variants) against the same outputs each made from a
fresh decode, one request per output, as imgproxy and thumbor make them.

Run: ``python -m bench.bench_variants`` (about half a minute). The set is the issue's: 160x160 cover
WebP, 400x300 WebP, 800x600 JPEG + WebP, 1600x1200 AVIF, on generated photo-like 12 MP and 1080p
JPEGs (q90, like a camera's). Prints CPU seconds (process time, medians of interleaved runs; every
encoder runs on one thread) and the bytes of each variant. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # when run as a script rather than with -m
    sys.path.insert(0, str(_REPO_ROOT))

from app.imaging.presets import Fit, OutputFormat, Preset  # noqa: E402
from app.imaging.variants import RenderedSet, render_variants  # noqa: E402
from bench.bench_pipeline import photo_like  # noqa: E402
from tests.support.images import encode  # noqa: E402

MAX_PIXELS = 50_000_000
SET = (
    Preset(name="thumb", width=160, height=160, fit=Fit.COVER, formats=(OutputFormat.WEBP,)),
    Preset(name="card", width=400, height=300, formats=(OutputFormat.WEBP,)),
    Preset(name="web", width=800, height=600, formats=(OutputFormat.JPEG, OutputFormat.WEBP), default=True),
    Preset(name="full", width=1600, height=1200, formats=(OutputFormat.AVIF,)),
)
# One request per output: the same preset with only that format.
REQUESTS = tuple(
    Preset(name=preset.name, width=preset.width, height=preset.height, fit=preset.fit, formats=(output,))
    for preset in SET
    for output in preset.formats
)


def inputs() -> dict[str, bytes]:
    return {
        "12 MP JPEG 4000x3000": encode(photo_like(4000, 3000, seed=12), "JPEG", quality=90),
        "1080p JPEG 1920x1080": encode(photo_like(1920, 1080, seed=7), "JPEG", quality=90),
    }


def one_decode(data: bytes) -> RenderedSet:
    return render_variants(data, SET, max_pixels=MAX_PIXELS)


def fresh_decodes(data: bytes) -> list[RenderedSet]:
    return [render_variants(data, (request,), max_pixels=MAX_PIXELS) for request in REQUESTS]


def cpu_seconds(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each way (median; default 5)")
    runs = parser.parse_args().runs
    described = (f"{p.name} {p.width}x{p.height} {p.fit} {'+'.join(p.formats)}" for p in SET)
    print(f"set: {', '.join(described)}")
    for name, data in inputs().items():
        fresh_decodes(data)  # warm-up: imports, codec initialisation
        together, separately = [], []
        for _ in range(runs):  # interleaved, so drift in the machine's load hits both alike
            together.append(cpu_seconds(lambda data=data: one_decode(data)))
            separately.append(cpu_seconds(lambda data=data: fresh_decodes(data)))
        set_cpu, separate_cpu = statistics.median(together), statistics.median(separately)
        print(f"\n{name} ({len(data):,} bytes), CPU seconds, median of {runs}:")
        print(f"  one decode, the whole set       {set_cpu:6.3f}")
        print(f"  a fresh decode for each output  {separate_cpu:6.3f}   ({len(REQUESTS)} decodes)")
        print(f"  ratio                           {set_cpu / separate_cpu:6.2f}")
        single = {(v.preset, v.format): v for rendered in fresh_decodes(data) for v in rendered.variants}
        print("  variant              size        bytes (set)   bytes (fresh decode)")
        for variant in one_decode(data).variants:
            alone = single[(variant.preset, variant.format)]
            label = f"{variant.preset} {variant.format}"
            size = f"{variant.width}x{variant.height}"
            print(f"  {label:<20} {size:<11} {len(variant.data):>11,}   {len(alone.data):>11,}")


if __name__ == "__main__":
    main()
