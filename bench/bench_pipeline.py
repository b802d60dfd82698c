"""Benchmark of the pure pipeline (app.imaging.process) against a naive Pillow baseline, pyvips and a
"floor" (shrink-on-load decode + encode alone, i.e. what no Pillow pipeline can beat).

Run: ``python -m bench.bench_pipeline`` or ``python bench/bench_pipeline.py`` (about a minute).
Inputs are generated in-process, deterministically, with photo-like content so JPEG sizes and
decode costs are realistic (12 MP at q90 is ~4 MB, like a phone photo). Times are medians of
interleaved runs in this process. Peak memory is measured per variant in a fresh subprocess that
loads the same modules and input first; an idle such subprocess gives the baseline. PSNR compares
decoded outputs with Pillow alone (no numpy).

Other benches reuse :func:`pipeline_images_per_second` for the pipeline's ceiling on a given input.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # when run as a script rather than with -m
    sys.path.insert(0, str(_REPO_ROOT))

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat  # noqa: E402

from app.imaging import Spec, process  # noqa: E402

try:
    import pyvips
except Exception as exc:  # ImportError, or OSError when libvips itself cannot be loaded
    pyvips = None
    PYVIPS_UNAVAILABLE_REASON = f"{type(exc).__name__}: {exc}"
else:
    PYVIPS_UNAVAILABLE_REASON = ""

SPEC = Spec()  # 800x600, q85: the service's defaults
TIMED_RUNS = 12
WARMUP_RUNS = 1
HEADLINE_INPUT = "12MP JPEG 4000x3000"

Variant = Callable[[bytes], bytes]


# --------------------------------------------------------------------------- inputs


def _noise(size: tuple[int, int], mode: str, rng: random.Random) -> Image.Image:
    # Image.effect_noise() draws from C rand(), which we cannot seed: use Python's generator instead.
    bands = len(mode)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * bands))


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Deterministic RGB "photo": soft gradients and shapes, mid-frequency texture, sensor grain, edges."""
    rng = random.Random(seed)
    sketch_size = (max(1, width // 8), max(1, height // 8))
    bands = []
    for _ in range(3):
        linear = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(sketch_size)
        radial = Image.radial_gradient("L").resize(sketch_size)
        bands.append(Image.blend(linear, radial, rng.uniform(0.2, 0.8)))
    sketch = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(sketch)
    for _ in range(60):
        x0, y0 = rng.randrange(sketch_size[0]), rng.randrange(sketch_size[1])
        x1 = x0 + rng.randrange(1, sketch_size[0] // 3 + 2)
        y1 = y0 + rng.randrange(1, sketch_size[1] // 3 + 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    picture = sketch.filter(ImageFilter.GaussianBlur(1.5)).resize((width, height), Image.Resampling.BICUBIC)
    texture_size = (max(1, width // 3), max(1, height // 3))
    texture = _noise(texture_size, "RGB", rng).resize((width, height), Image.Resampling.BICUBIC)
    picture = Image.blend(picture, texture, 0.18)
    picture = Image.blend(picture, _noise((width, height), "L", rng).convert("RGB"), 0.06)
    draw = ImageDraw.Draw(picture)
    for _ in range(40):  # crisp edges, as in-focus detail
        points = [(rng.randrange(width), rng.randrange(height)) for _ in range(2)]
        draw.line(points, fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, 6))
    return picture


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)  # camera-like: baseline, 4:2:0
    return buffer.getvalue()


def _png_with_alpha(image: Image.Image) -> bytes:
    # A cut-out: opaque centre fading to fully transparent corners, colour kept under the alpha.
    alpha = Image.radial_gradient("L").resize(image.size).point(lambda v: max(0, min(255, (200 - v) * 3)))
    rgba = image.convert("RGBA")
    rgba.putalpha(alpha)
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    return buffer.getvalue()


def make_inputs() -> dict[str, bytes]:
    return {
        "24MP JPEG 6000x4000": _jpeg(photo_like(6000, 4000, seed=24)),
        HEADLINE_INPUT: _jpeg(photo_like(4000, 3000, seed=12)),
        "1080p JPEG 1920x1080": _jpeg(photo_like(1920, 1080, seed=1080)),
        "RGBA PNG 2000x2000": _png_with_alpha(photo_like(2000, 2000, seed=2000)),
    }


# --------------------------------------------------------------------------- variants


def naive_pillow(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((SPEC.max_width, SPEC.max_height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=SPEC.quality)
    return buffer.getvalue()


def ours(data: bytes) -> bytes:
    return process(data, SPEC).data


def vips_thumbnail(data: bytes) -> bytes:
    assert pyvips is not None
    thumbnail = pyvips.Image.thumbnail_buffer(data, SPEC.max_width, height=SPEC.max_height)
    return thumbnail.jpegsave_buffer(Q=SPEC.quality)


def make_floor(data: bytes) -> Variant:
    """Decode at the smallest JPEG scale >= target (full decode otherwise) + encode a target-size image."""
    target = _thumbnail_size(data)
    # Encode a real target-size picture (noise or a flat colour would make the encode unrealistically
    # slow or fast): a crop of the reduced decode, prepared outside the timed function. Preparing it
    # costs no more memory than one floor run, so it does not inflate the floor's peak RSS either.
    decoded = _draft_decode(data, target)
    prepared = (decoded if decoded.mode == "RGB" else decoded.convert("RGB")).crop((0, 0, *target))

    def floor(payload: bytes) -> bytes:
        _draft_decode(payload, target)
        buffer = io.BytesIO()
        prepared.save(buffer, "JPEG", quality=SPEC.quality)
        return buffer.getvalue()

    return floor


def make_lanczos_floor(data: bytes) -> Variant:
    """The floor plus the one resample a Lanczos-quality pipeline cannot skip: nothing else (no
    checks, no EXIF, no optimised Huffman tables). The best any such Pillow pipeline can do. The
    output size is worked out outside the timed function, as for the floor."""
    target = _thumbnail_size(data)

    def lanczos_floor(payload: bytes) -> bytes:
        image = _draft_decode(payload, target)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        buffer = io.BytesIO()
        rgb.resize(target, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=SPEC.quality)
        return buffer.getvalue()

    return lanczos_floor


def _draft_decode(data: bytes, target: tuple[int, int]) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", target)  # no-op for non-JPEG: full decode
    image.load()
    return image


def _thumbnail_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        probe = Image.new("1", image.size)
    probe.thumbnail((SPEC.max_width, SPEC.max_height))
    return probe.size


VARIANT_LABELS = {
    "naive": "(a) naive Pillow",
    "ours": "(b) app.imaging.process",
    "pyvips": "(c) pyvips thumbnail",
    "floor": "(d) floor: draft decode + encode",
    "lanczos_floor": "(e) floor + Lanczos resample",
}


def variant_names() -> list[str]:
    return ["naive", "ours", *(["pyvips"] if pyvips is not None else []), "floor", "lanczos_floor"]


def make_variant(name: str, data: bytes) -> Variant:
    fixed: dict[str, Variant] = {"naive": naive_pillow, "ours": ours, "pyvips": vips_thumbnail}
    per_input: dict[str, Callable[[bytes], Variant]] = {"floor": make_floor, "lanczos_floor": make_lanczos_floor}
    return per_input[name](data) if name in per_input else fixed[name]


def variants_for(data: bytes) -> dict[str, Variant]:
    return {name: make_variant(name, data) for name in variant_names()}


# --------------------------------------------------------------------------- timing


def _time_once(function: Variant, data: bytes) -> float:
    started = time.perf_counter()
    function(data)
    return (time.perf_counter() - started) * 1000


def median_ms(function: Variant, data: bytes, runs: int = TIMED_RUNS, warmup: int = WARMUP_RUNS) -> float:
    for _ in range(warmup):
        function(data)
    return statistics.median(_time_once(function, data) for _ in range(runs))


def pipeline_images_per_second(
    data: bytes, spec: Spec = SPEC, *, runs: int = TIMED_RUNS, warmup: int = WARMUP_RUNS
) -> float:
    """Images/s of app.imaging.process on ``data`` in this process (median of ``runs``), for reuse."""
    return 1000 / median_ms(lambda payload: process(payload, spec).data, data, runs, warmup)


def interleaved_samples_ms(variants: dict[str, Variant], data: bytes) -> dict[str, list[float]]:
    # Round-robin, so a noisy neighbour on a shared machine hurts all variants alike.
    for function in variants.values():
        for _ in range(WARMUP_RUNS):
            function(data)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(TIMED_RUNS):
        for name, function in variants.items():
            samples[name].append(_time_once(function, data))
    return samples


# --------------------------------------------------------------------------- peak memory


def _peak_rss_kib() -> int:
    """This process's peak resident set size, KiB.

    Linux's ru_maxrss is carried across fork+exec from the parent (a fresh child of this 400 MB
    benchmark reports 400 MB), so it cannot isolate one variant; VmHWM belongs to the exec'd image
    alone. ru_maxrss is the fallback elsewhere (KiB on Linux, bytes on macOS).
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _child_measure_rss(variant: str, input_path: str) -> None:
    """Child process: same modules and input as every other child, then one run of ``variant``."""
    Image.init()  # every plugin imported up front, so module loading is not charged to a variant
    data = Path(input_path).read_bytes()
    function = None if variant == "idle" else make_variant(variant, data)
    gc.collect()
    if function is not None:
        function(data)
    print(json.dumps({"peak_kib": _peak_rss_kib()}))


def peak_rss_kib(variant: str, input_path: Path) -> int:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-rss", variant, str(input_path)],
        cwd=_REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])["peak_kib"]


# --------------------------------------------------------------------------- quality


def psnr(reference_jpeg: bytes, candidate_jpeg: bytes) -> float:
    reference = Image.open(io.BytesIO(reference_jpeg)).convert("RGB")
    candidate = Image.open(io.BytesIO(candidate_jpeg)).convert("RGB")
    if candidate.size != reference.size:
        candidate = candidate.resize(reference.size, Image.Resampling.LANCZOS)
    squared_error = sum(ImageStat.Stat(ImageChops.difference(reference, candidate)).sum2)
    mean_squared_error = squared_error / (reference.width * reference.height * 3)
    return math.inf if mean_squared_error == 0 else 10 * math.log10(255**2 / mean_squared_error)


# --------------------------------------------------------------------------- report


@dataclass
class InputResult:
    name: str
    input_bytes: int
    samples_ms: dict[str, list[float]]
    idle_rss_kib: int
    peak_rss_kib: dict[str, int]
    psnr_ours_vs_naive: float
    output_bytes: dict[str, int]

    @property
    def ms(self) -> dict[str, float]:
        """Median ms per image of each variant."""
        return {name: statistics.median(values) for name, values in self.samples_ms.items()}

    def extra_rss_kib(self, variant: str) -> int:
        return max(1, self.peak_rss_kib[variant] - self.idle_rss_kib)


def measure_input(name: str, data: bytes, scratch: Path) -> InputResult:
    variants = variants_for(data)
    input_path = scratch / "input.bin"
    input_path.write_bytes(data)
    idle = peak_rss_kib("idle", input_path)
    peaks = {variant: peak_rss_kib(variant, input_path) for variant in variants}
    outputs = {variant: function(data) for variant, function in variants.items()}
    return InputResult(
        name=name,
        input_bytes=len(data),
        samples_ms=interleaved_samples_ms(variants, data),
        idle_rss_kib=idle,
        peak_rss_kib=peaks,
        psnr_ours_vs_naive=psnr(outputs["naive"], outputs["ours"]),
        output_bytes={variant: len(output) for variant, output in outputs.items() if variant != "floor"},
    )


def _print_table(result: InputResult) -> None:
    print(
        f"\n== {result.name}  ({result.input_bytes / 1e6:.2f} MB in; "
        f"idle child peak RSS {result.idle_rss_kib / 1024:.1f} MiB)"
    )
    print(f"{'variant':34} {'ms/img':>8} {'(min)':>7} {'img/s':>7} {'peak RSS':>10} {'- idle':>9} {'out KB':>7}")
    for variant, ms in result.ms.items():
        out = result.output_bytes.get(variant)
        print(
            f"{VARIANT_LABELS[variant]:34} {ms:8.1f} {min(result.samples_ms[variant]):7.1f} {1000 / ms:7.1f} "
            f"{result.peak_rss_kib[variant] / 1024:8.1f}Mi {result.extra_rss_kib(variant) / 1024:7.1f}Mi "
            f"{'' if out is None else f'{out / 1000:7.1f}'}"
        )
    note = "  (alpha: naive drops it, ours flattens on white)" if "PNG" in result.name else ""
    print(f"PSNR (b) vs (a): {result.psnr_ours_vs_naive:.2f} dB{note}")


def _time_ratio(result: InputResult, numerator: str, denominator: str) -> tuple[float, float]:
    """(ratio of the medians, median of the per-round ratios).

    Each round runs the variants back to back, so the per-round ratio cancels most of a noisy
    neighbour's effect; the verdicts use it, and the ratio of medians is printed alongside.
    """
    of_medians = result.ms[numerator] / result.ms[denominator]
    rounds = zip(result.samples_ms[numerator], result.samples_ms[denominator], strict=True)
    return of_medians, statistics.median(a / b for a, b in rounds)


def _verdicts(result: InputResult) -> list[tuple[str, str, bool]]:
    def timed(label: str, numerator: str, denominator: str, passes: Callable[[float], bool]) -> tuple[str, str, bool]:
        of_medians, paired = _time_ratio(result, numerator, denominator)
        return label, f"{paired:.2f}x per round (medians: {of_medians:.2f}x)", passes(paired)

    # The former target "naive/ours >= 2.5x" is retired (issue 14): the reduced-size decode plus the
    # encode alone is only 2.4-3.3x faster than naive here, so no resize at equal quality reaches it.
    # The speed-up is still printed, as information; the targets are the floor rows and the peers
    # benchmark (bench.bench_peers).
    speed_up = _time_ratio(result, "naive", "ours")[1]
    checks = [("(info) speed-up naive/ours, target retired", f"{speed_up:.2f}x per round", True)]
    if "pyvips" in result.ms:
        checks.append(timed("ours/pyvips <= 1 (ours <= pyvips)", "ours", "pyvips", lambda ratio: ratio <= 1))
    checks.append(timed("ours/floor <= 1.5x", "ours", "floor", lambda ratio: ratio <= 1.5))
    rss_ratio = result.extra_rss_kib("naive") / result.extra_rss_kib("ours")
    checks.append(("peak RSS (- idle) naive/ours >= 8x", f"{rss_ratio:.1f}x", rss_ratio >= 8))
    checks.append(
        ("PSNR ours vs naive >= 35 dB", f"{result.psnr_ours_vs_naive:.2f} dB", result.psnr_ours_vs_naive >= 35)
    )
    return checks


def _pyvips_description() -> str:
    if pyvips is None:
        return f"SKIPPED (variant (c) not measured): {PYVIPS_UNAVAILABLE_REASON}"
    return f"{pyvips.__version__} / libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child-rss", nargs=2, metavar=("VARIANT", "INPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        _child_measure_rss(*args.child_rss)
        return 0

    started = time.perf_counter()
    print(f"Pillow {Image.__version__}; pyvips {_pyvips_description()}")
    print(
        f"spec {SPEC}; median of {TIMED_RUNS} interleaved runs after {WARMUP_RUNS} warm-up; "
        "peak RSS = VmHWM of a fresh child after one run"
    )
    inputs = make_inputs()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        for name, data in inputs.items():
            result = measure_input(name, data, Path(scratch))
            _print_table(result)
            results.append(result)

    headline = next(result for result in results if result.name == HEADLINE_INPUT)
    print(f"\n== Targets ({HEADLINE_INPUT})")
    missed = 0
    for label, value, passed in _verdicts(headline):
        missed += not passed
        print(f"  {'PASS' if passed else 'MISS'}  {label:38} {value}")
    ceiling = _time_ratio(headline, "naive", "floor")[1]
    lanczos_ceiling = _time_ratio(headline, "naive", "lanczos_floor")[1]
    print(f"  (for scale: naive/floor = {ceiling:.2f}x per round: the speed-up if resize+encode were free;")
    print(f"   naive/(e) = {lanczos_ceiling:.2f}x: the most a Pillow pipeline with a Lanczos resample can reach)")
    print(f"\ntotal bench time {time.perf_counter() - started:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
