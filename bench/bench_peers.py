"""imgproc next to its peers: images/s and CPU seconds per image of every service process, and the
same for a set of variants from one upload against the same outputs asked of the peers.

    python -m bench.bench_peers [--images 60] [--concurrency 4] [--rows single,set] [--only imgproc-embedded,...]

Services, all on loopback, each on the same generated inputs (a 12 MP and a 1080p photo-like JPEG,
made in-process):

- imgproxy, built from its Go module against Debian's libvips (cached in ~/.cache/imgproc-bench);
  when the module cannot be fetched or built the bench says why and goes on without it;
- thumbor from PyPI in its own virtualenv (same cache), 2 processes (one per core), file loader,
  no storage and no result storage (every request does the work);
- imgproc embedded (`imgproc run`: SQLite, API + worker);
- imgproc in its production shape: PostgreSQL + Redis + `imgproc api` + a separate `imgproc worker`
  (servers started by the test fixtures' code on free loopback ports).

Two kinds of row (``--rows``):

- single: one output, fitting within 800x600 at JPEG quality 85. imgproc runs in its default
  configuration (no ``IMGPROC_PRESETS``).
- set: the issue's set of variants, 5 outputs: 160x160 cover WebP, 400x300 WebP, 800x600 JPEG +
  WebP, 1600x1200 AVIF, at JPEG 85, WebP 80, AVIF 60 (``SET_PRESETS``). imgproc makes them from one
  upload naming the 4 presets, its processes configured with them through ``IMGPROC_PRESETS`` (a
  stack of its own beside the single row's; with servers, the same PostgreSQL and Redis, another
  database and Redis database); a set is the upload, the wait and the download of every variant.
  A peer is asked for the same 5 outputs as 5 requests, one after the other, with the same
  qualities in the URL (thumbor: ``fit-in/WxH`` for contain, its centred crop ``WxH/center/middle``,
  no ``smart``, for cover, ``filters:format():quality()``; imgproxy: ``rs:fit``/``rs:fill`` +
  ``g:ce``, ``q:``, the format as the extension) and the same AVIF encoder speed as imgproc's (8).
  Before the rounds every peer is asked for each output once: an output it answers in another
  format (thumbor without an AVIF encoder falls back to JPEG) is reported unavailable for that
  peer, left out of its set, and its ratios are not judged. The report adds the ratios ours/peer
  against the issue's targets (CPU per set <= 0.5x, sets/s >= 2x) and the bytes of every variant.

One closed-loop client: ``--concurrency`` threads share ``--images`` requests (or sets; after one
warm-up per thread, not counted), each thread waiting for its image or set before sending the next.
All services run for the whole bench and the images are sent in ``--rounds`` rounds that alternate
between the services, so that a noisy neighbour slows them alike; figures are over all rounds. For
imgproc an image is: upload, wait for the task to end (long poll ``?wait=30``; a server without it
answers at once and the client then polls every 100 ms, like the page did), download the result.
Every run is bounded in time (``--time-limit``).

CPU = user + system time from /proc of every process of the service (children included; a process
that ends during a run keeps the last figure seen), divided by the images or sets done. The
client's own CPU is not counted, but it runs on the same cores for every service.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from app.core.config import Settings
from app.imaging.presets import Fit, OutputFormat, Preset
from bench.bench_pipeline import photo_like
from tests.fixtures.ports import free_port, wait_for_port
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.services import ServiceStack, embedded_env, running_stack, server_env
from tests.support.images import encode

CACHE = Path(os.environ.get("IMGPROC_BENCH_CACHE", Path.home() / ".cache" / "imgproc-bench"))
IMGPROXY_MODULE = "github.com/imgproxy/imgproxy/v3"
# The module proxy serves this version (others answered 403 when probed: ../shared peers notes).
IMGPROXY_VERSION = "v3.31.4"
THUMBOR_REQUIREMENT = "thumbor==7.8.0"
WIDTH, HEIGHT, QUALITY = 800, 600, 85
TERMINAL = ("completed", "failed")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LEGACY_POLL_SECONDS = 0.1


# --------------------------------------------------------------------------- the set row


SET_QUALITY: Mapping[OutputFormat, int] = {OutputFormat.JPEG: 85, OutputFormat.WEBP: 80, OutputFormat.AVIF: 60}
_WEBP, _JPEG, _AVIF = OutputFormat.WEBP, OutputFormat.JPEG, OutputFormat.AVIF
SET_PRESETS: tuple[Preset, ...] = (
    Preset(name="thumb", width=160, height=160, fit=Fit.COVER, formats=(_WEBP,), webp_quality=SET_QUALITY[_WEBP]),
    Preset(name="card", width=400, height=300, formats=(_WEBP,), webp_quality=SET_QUALITY[_WEBP]),
    Preset(
        name="web",
        width=800,
        height=600,
        formats=(_JPEG, _WEBP),
        jpeg_quality=SET_QUALITY[_JPEG],
        webp_quality=SET_QUALITY[_WEBP],
        default=True,  # a configuration needs one; the set's upload names all four
    ),
    Preset(name="full", width=1600, height=1200, formats=(_AVIF,), avif_quality=SET_QUALITY[_AVIF]),
)
AVIF_SPEED = 8  # libaom's speed in imgproc (app/imaging/encoding.py); the peers are given the same


@dataclass(frozen=True)
class SetOutput:
    """One output of the set: what a peer is asked for in one request."""

    preset: Preset
    format: OutputFormat

    @property
    def quality(self) -> int:
        return self.preset.quality(self.format)

    @property
    def label(self) -> str:
        return f"{self.preset.name} {self.format}"


def set_outputs(presets: Sequence[Preset]) -> tuple[SetOutput, ...]:
    return tuple(SetOutput(preset, output) for preset in presets for output in preset.formats)


def presets_config(presets: Sequence[Preset]) -> str:
    """The ``IMGPROC_PRESETS`` JSON that configures imgproc with ``presets``."""
    return json.dumps(
        [
            {
                "name": preset.name,
                "width": preset.width,
                "height": preset.height,
                "fit": str(preset.fit),
                "formats": [str(output) for output in preset.formats],
                "quality": {str(output): preset.quality(output) for output in preset.formats},
                "default": preset.default,
            }
            for preset in presets
        ]
    )


def describe_set(presets: Sequence[Preset]) -> str:
    return ", ".join(
        f"{p.name} {p.width}x{p.height} {p.fit} " + " + ".join(f"{f} q{p.quality(f)}" for f in p.formats)
        for p in presets
    )


# --------------------------------------------------------------------------- CPU accounting


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLOCK_TICKS


def _all_parents() -> dict[int, int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            parents[int(entry.name)] = stat[0]
    return parents


class CpuMeter:
    """CPU seconds per role over a window. ``roles`` maps a root pid to a labelling function
    (depth below the root -> role name); every descendant of a root is counted."""

    def __init__(self, roles: dict[int, Callable[[int], str]], interval: float = 0.5) -> None:
        self.roles = roles
        self.interval = interval
        self.start: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, daemon=True)

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        parents = _all_parents()
        found: dict[int, tuple[str, float]] = {}
        for pid in parents:
            depth, walker = 0, pid
            while walker not in self.roles and walker in parents and walker > 1:
                walker, depth = parents[walker], depth + 1
            if walker in self.roles and (stat := _proc_stat(pid)):
                found[pid] = (self.roles[walker](depth), stat[1])
        return found

    def _sample_forever(self) -> None:
        while not self._stop.wait(self.interval):
            self.last.update(self._snapshot())

    def __enter__(self) -> CpuMeter:
        self.start = {pid: cpu for pid, (_, cpu) in self._snapshot().items()}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(self._snapshot())

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (role, cpu) in self.last.items():
            totals[role] = totals.get(role, 0.0) + cpu - self.start.get(pid, 0.0)
        return totals


def flat(name: str) -> Callable[[int], str]:
    return lambda _depth: name


def tiered(*names: str) -> Callable[[int], str]:
    """The root is names[0], its children names[1], and so on (the last name for anything deeper)."""
    return lambda depth: names[min(depth, len(names) - 1)]


# --------------------------------------------------------------------------- the client


@dataclass
class LoadResult:
    images: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    status_requests: int = 0
    timed_out: bool = False

    def add(self, other: LoadResult) -> None:
        self.images += other.images
        self.failures += other.failures
        self.seconds += other.seconds
        self.status_requests += other.status_requests
        self.timed_out = self.timed_out or other.timed_out
        for role, cpu in other.cpu.items():
            self.cpu[role] = self.cpu.get(role, 0.0) + cpu

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_image(self) -> float:
        return sum(self.cpu.values()) / self.images if self.images else float("nan")


class Target:
    """One way of getting one image (or one set) through a service; ``fetch`` returns the bytes
    received, 0 for nothing."""

    roles: dict[int, Callable[[int], str]]

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        raise NotImplementedError

    def new_client(self) -> httpx.Client:
        raise NotImplementedError


def run_load(target: Target, *, images: int, concurrency: int, time_limit: float, settle: float = 0.0) -> LoadResult:
    """``settle``: seconds the CPU meter keeps counting after the last image, for work a target
    does after answering (a batch span exporter's next flush)."""
    result = LoadResult()
    lock = threading.Lock()
    remaining = [images]
    counters = {"status": 0}
    deadline = time.monotonic() + time_limit
    clients = [target.new_client() for _ in range(concurrency)]
    try:
        warm = [threading.Thread(target=target.fetch, args=(client, {"status": 0})) for client in clients]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join(time_limit)

        def loop(client: httpx.Client) -> None:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                try:
                    size = target.fetch(client, counters)
                except Exception as exc:  # counted and shown; the run goes on
                    with lock:
                        result.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                with lock:
                    if size > 0:
                        result.images += 1
                    else:
                        result.failures.append("empty output")

        with CpuMeter(target.roles) as meter:
            started = time.monotonic()
            threads = [threading.Thread(target=loop, args=(client,)) for client in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()) + 35)
            result.seconds = time.monotonic() - started
            time.sleep(settle)
        result.cpu = meter.by_role()
        result.timed_out = remaining[0] > 0
        result.status_requests = counters["status"]
    finally:
        for client in clients:
            client.close()
    return result


# --------------------------------------------------------------------------- imgproc


class ImgprocTarget(Target):
    def __init__(self, stack: ServiceStack, data: bytes, roles: dict[int, Callable[[int], str]]) -> None:
        self.stack, self.data, self.roles = stack, data, roles

    def new_client(self) -> httpx.Client:
        return self.stack.client()  # its own cookie jar: a user per client thread

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        response = client.post("/api/newTask", files={"file": ("photo.jpg", self.data, "image/jpeg")})
        response.raise_for_status()
        task_id = response.json()["task_id"]
        wait_for_outcome(client, f"/api/isReady/{task_id}", counters)
        result = client.get(f"/api/tasks/{task_id}/result")
        result.raise_for_status()
        return len(result.content)


def wait_for_outcome(client: httpx.Client, status_path: str, counters: dict[str, int]) -> dict:
    """The task's status once it has ended (long polls; a server without them is polled every
    100 ms); raises unless it completed."""
    deadline = time.monotonic() + 120
    while True:
        asked = time.monotonic()
        status = client.get(status_path, params={"wait": 30}).json()
        counters["status"] += 1
        if status["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{status_path}: still {status['status']}")
        if time.monotonic() - asked < LEGACY_POLL_SECONDS / 2:  # a server without long polls
            time.sleep(LEGACY_POLL_SECONDS)
    if status["status"] != "completed":
        raise RuntimeError(f"{status_path}: failed: {status['error']}")
    return status


@dataclass(frozen=True)
class Made:
    """One output as received: its size in pixels and in bytes."""

    width: int
    height: int
    size: int


class ImgprocSetTarget(Target):
    """The set from imgproc: one upload naming the presets, one long poll on the task, then a GET
    of every variant it lists."""

    def __init__(
        self, stack: ServiceStack, data: bytes, roles: dict[int, Callable[[int], str]], presets: Sequence[Preset]
    ) -> None:
        self.stack, self.data, self.roles = stack, data, roles
        self.presets = ",".join(preset.name for preset in presets)
        self.outputs = {(output.preset.name, str(output.format)): output for output in set_outputs(presets)}
        self.made: dict[SetOutput, Made] = {}  # the outputs are the same every time: the last is kept

    def new_client(self) -> httpx.Client:
        return self.stack.client()

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        response = client.post(
            "/api/newTask",
            files={"file": ("photo.jpg", self.data, "image/jpeg")},
            data={"presets": self.presets},
        )
        response.raise_for_status()
        task_id = response.json()["task_id"]
        task = wait_for_outcome(client, f"/api/tasks/{task_id}", counters)
        listed = {(variant["preset"], variant["format"]): variant for variant in task["variants"]}
        if set(listed) != set(self.outputs):
            raise RuntimeError(f"task {task_id} made {sorted(listed)}, not {sorted(self.outputs)}")
        total = 0
        for key, variant in listed.items():
            result = client.get(variant["url"])
            result.raise_for_status()
            if len(result.content) != variant["size"]:
                raise RuntimeError(f"{variant['url']}: {len(result.content)} bytes, listed as {variant['size']}")
            self.made[self.outputs[key]] = Made(variant["width"], variant["height"], len(result.content))
            total += len(result.content)
        return total


BENCH_LIMITS = {  # the bench is one client at a high rate; the quotas are not what is measured
    "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
    "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000",
    "IMGPROC_LOG_LEVEL": "WARNING",
    # The test stacks re-check every 2 s. An idle API then spent 26-38 ms of CPU per second with
    # PostgreSQL, against about 9 at the default (10 s): 1 ms per image more at 25 images/s.
    "IMGPROC_RECONCILE_INTERVAL_SECONDS": str(Settings.model_fields["RECONCILE_INTERVAL_SECONDS"].default),
}


Roles = dict[int, Callable[[int], str]]
# Row kind -> the environment of the imgproc stack it runs on; every kind gets a stack of its own.
STACK_ENV: dict[str, dict[str, str]] = {
    "single": {},  # the default configuration: one preset, 800x600 contain JPEG q85
    "set": {"IMGPROC_PRESETS": presets_config(SET_PRESETS)},
}


@contextmanager
def imgproc_embedded(
    workdir: Path, configs: Mapping[str, Mapping[str, str]]
) -> Iterator[dict[str, tuple[ServiceStack, Roles]]]:
    """One `imgproc run` per configuration (name -> extra environment)."""
    stacks: dict[str, tuple[ServiceStack, Roles]] = {}
    with ExitStack() as running:
        for name, extra in configs.items():
            env = {**embedded_env(workdir / f"embedded-{name}"), **BENCH_LIMITS, **extra}
            logs = workdir / f"logs-embedded-{name}"
            stack = running.enter_context(running_stack(env, logs, workers=0, start_api=False))
            stack.start_embedded()
            assert stack.api is not None
            # `imgproc run` = the API; its child is the worker's main process; the pool below that.
            stacks[name] = (stack, {stack.api.pid: tiered("API", "worker main", "worker pool")})
        yield stacks


@contextmanager
def imgproc_servers(
    workdir: Path, configs: Mapping[str, Mapping[str, str]]
) -> Iterator[dict[str, tuple[ServiceStack, Roles]]]:
    """An API and a worker per configuration (name -> extra environment), all on one PostgreSQL
    (a database each) and one Redis (a database number each)."""
    postgres = start_postgres()  # its own temp dir: the server runs as "postgres", workdir is 0700
    redis = start_redis()
    try:
        assert redis.process is not None and postgres.data_dir is not None
        postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
        stacks: dict[str, tuple[ServiceStack, Roles]] = {}
        with ExitStack() as running:
            for number, (name, extra) in enumerate(configs.items()):
                database = postgres.create_database("bench" if name == "single" else f"bench-{name}")
                broker = f"{redis.url.rsplit('/', 1)[0]}/{number}"
                env = {**server_env(database, broker, workdir / f"server-{name}"), **BENCH_LIMITS, **extra}
                stack = running.enter_context(running_stack(env, workdir / f"logs-server-{name}", workers=1))
                assert stack.api is not None
                stacks[name] = (
                    stack,
                    {
                        stack.api.pid: flat("API"),
                        stack.workers[0].pid: tiered("worker main", "worker pool"),
                        postmaster: flat("PostgreSQL"),
                        redis.process.pid: flat("Redis"),
                    },
                )
            yield stacks
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(redis.directory, ignore_errors=True)
        if postgres.data_dir is not None:
            shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)


# --------------------------------------------------------------------------- thumbor


THUMBOR_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = 'thumbor.result_storages.no_storage'
QUALITY = {quality}
AVIF_SPEED = {avif_speed}
ALLOW_UNSAFE_URL = True
"""


def install_thumbor() -> tuple[Path | None, str]:
    venv = CACHE / "thumbor-venv"
    binary = venv / "bin" / "thumbor"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"installing {THUMBOR_REQUIREMENT} into {venv} ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", THUMBOR_REQUIREMENT],
                check=True,
                timeout=900,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            return None, f"pip install {THUMBOR_REQUIREMENT} failed: {stderr.decode(errors='replace')[-300:]}"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return binary, (version.stdout or version.stderr).strip()


class UrlTarget(Target):
    def __init__(self, base_url: str, path: str, roles: dict[int, Callable[[int], str]]) -> None:
        self.base_url, self.path, self.roles = base_url, path, roles

    def new_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        response = client.get(self.path)
        response.raise_for_status()
        if not response.headers.get("content-type", "").startswith("image/jpeg"):
            raise RuntimeError(f"not a JPEG: {response.headers.get('content-type')}")
        return len(response.content)


@contextmanager
def spawned(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM to the peer's whole process group (its own session), then SIGKILL: thumbor's
    forked processes outlive their parent when only the parent is signalled."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(process.pid):
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
        if not _group_alive(process.pid):
            break
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def thumbor(binary: Path, inputs_dir: Path, workdir: Path) -> Iterator[tuple[str, dict[int, Callable[[int], str]]]]:
    conf = workdir / "thumbor.conf"
    conf.write_text(THUMBOR_CONF.format(root=str(inputs_dir), quality=QUALITY, avif_speed=AVIF_SPEED))
    port = free_port()
    argv = [str(binary), "-i", "127.0.0.1", "-p", str(port), "-c", str(conf), "-l", "error", "--processes", "2"]
    with spawned(argv, port, workdir / "thumbor.log") as process:
        yield f"http://127.0.0.1:{port}", {process.pid: flat("thumbor")}


def thumbor_path(name: str) -> str:
    return f"/unsafe/fit-in/{WIDTH}x{HEIGHT}/filters:quality({QUALITY})/{name}"


def thumbor_output_path(name: str, output: SetOutput) -> str:
    """contain: ``fit-in`` (never enlarges); cover: thumbor's crop to fill, centred (no ``smart``:
    no feature detection)."""
    box = f"{output.preset.width}x{output.preset.height}"
    resize = f"fit-in/{box}" if output.preset.fit is Fit.CONTAIN else f"{box}/center/middle"
    return f"/unsafe/{resize}/filters:format({output.format}):quality({output.quality})/{name}"


class PeerSetTarget(Target):
    """The set from a peer: one GET per output, one after the other, each checked for its format.
    ``paths`` holds only the outputs the peer can make, ``made`` what it made of each when probed
    (probe_outputs: the outputs are the same every time)."""

    def __init__(
        self,
        base_url: str,
        paths: Mapping[SetOutput, str],
        made: Mapping[SetOutput, Made],
        roles: dict[int, Callable[[int], str]],
    ) -> None:
        self.base_url, self.roles = base_url, roles
        self.paths = {output: path for output, path in paths.items() if output in made}
        self.made = dict(made)

    def new_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        total = 0
        for output, path in self.paths.items():
            response = client.get(path)
            response.raise_for_status()
            answered = response.headers.get("content-type", "")
            if answered != output.format.media_type:
                raise RuntimeError(f"{output.label}: answered {answered}")
            total += len(response.content)
        return total


def probe_outputs(base_url: str, paths: Mapping[SetOutput, str]) -> tuple[dict[SetOutput, Made], dict[SetOutput, str]]:
    """Asks a peer for every output once (before the rounds, not measured): what it made of each
    (pixels and bytes), and why each of the others is unavailable (an error, or another format
    than the one asked for, which a peer without that encoder falls back to)."""
    made: dict[SetOutput, Made] = {}
    unavailable: dict[SetOutput, str] = {}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for output, path in paths.items():
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                unavailable[output] = f"{type(exc).__name__}: {exc}"
                continue
            answered = response.headers.get("content-type", "")
            if response.status_code != 200:
                unavailable[output] = f"HTTP {response.status_code} for {path}"
            elif answered != output.format.media_type:
                unavailable[output] = f"asked for {output.format}, answered {answered or 'no type'}"
            else:
                with Image.open(io.BytesIO(response.content)) as image:
                    made[output] = Made(image.width, image.height, len(response.content))
    return made, unavailable


# --------------------------------------------------------------------------- imgproxy


IMGPROXY_WRAPPER_GO_MOD = "module imgproc.bench/imgproxy-build\n\ngo 1.24\n"


def build_imgproxy() -> tuple[Path | None, str]:
    """``go install module@latest`` refuses modules with replace directives (imgproxy has them), so
    the module's source is downloaded with ``go mod download`` from a throw-away wrapper module and
    built in place, where its own go.mod (replaces included) applies."""
    binary = CACHE / "bin" / f"imgproxy-{IMGPROXY_VERSION}"
    if binary.exists():
        return binary, "cached build"
    if shutil.which("go") is None:
        return None, "Go is not installed"
    if subprocess.run(["pkg-config", "--exists", "vips"], capture_output=True).returncode != 0:
        return None, "libvips-dev is not installed (pkg-config cannot find vips; scripts/system-packages --bench)"
    wrapper = CACHE / "imgproxy-wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "go.mod").write_text(IMGPROXY_WRAPPER_GO_MOD)
    print(f"fetching {IMGPROXY_MODULE} through the Go module proxy ...", flush=True)
    try:
        download = subprocess.run(
            ["go", "mod", "download", "-json", f"{IMGPROXY_MODULE}@{IMGPROXY_VERSION}"],
            cwd=wrapper,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return None, "go mod download timed out after 300 s"
    try:
        info = json.loads(download.stdout or "{}")
    except json.JSONDecodeError:
        info = {}
    if download.returncode != 0 or info.get("Error") or not info.get("Dir"):
        reason = info.get("Error") or download.stderr.strip() or f"exit {download.returncode}"
        return None, f"the Go module proxy does not serve {IMGPROXY_MODULE}: {reason}"
    source = Path(info["Dir"])
    build_dir = CACHE / f"imgproxy-src-{IMGPROXY_VERSION}"
    if not build_dir.exists():
        shutil.copytree(source, build_dir)
        for path in build_dir.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    print(f"building imgproxy {info.get('Version')} against libvips (several minutes) ...", flush=True)
    try:
        built = subprocess.run(
            ["go", "build", "-trimpath", "-o", str(binary), "."],
            cwd=build_dir,
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "CGO_ENABLED": "1"},
        )
    except subprocess.TimeoutExpired:
        return None, "go build timed out after 1800 s"
    if built.returncode != 0:
        return None, f"go build failed: {built.stderr.strip()[-400:]}"
    return binary, f"{info.get('Version')} built from source"


@contextmanager
def imgproxy(binary: Path, inputs_dir: Path, workdir: Path) -> Iterator[tuple[str, dict[int, Callable[[int], str]]]]:
    port = free_port()
    env = {
        **os.environ,
        "IMGPROXY_BIND": f"127.0.0.1:{port}",
        "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(inputs_dir),
        "IMGPROXY_QUALITY": str(QUALITY),
        "IMGPROXY_AVIF_SPEED": str(AVIF_SPEED),
        "IMGPROXY_LOG_LEVEL": "error",
    }
    with spawned([str(binary)], port, workdir / "imgproxy.log", env=env) as process:
        yield f"http://127.0.0.1:{port}", {process.pid: flat("imgproxy")}


def imgproxy_path(name: str) -> str:
    return f"/insecure/rs:fit:{WIDTH}:{HEIGHT}/q:{QUALITY}/plain/local:///{name}@jpg"


IMGPROXY_EXTENSION = {OutputFormat.JPEG: "jpg", OutputFormat.WEBP: "webp", OutputFormat.AVIF: "avif"}


def imgproxy_output_path(name: str, output: SetOutput) -> str:
    """contain: ``rs:fit``; cover: ``rs:fill`` centred. Neither enlarges (imgproxy's default)."""
    box = f"{output.preset.width}:{output.preset.height}"
    resize = f"rs:fit:{box}" if output.preset.fit is Fit.CONTAIN else f"rs:fill:{box}/g:ce"
    return f"/insecure/{resize}/q:{output.quality}/plain/local:///{name}@{IMGPROXY_EXTENSION[output.format]}"


# --------------------------------------------------------------------------- the report


@dataclass
class Row:
    service: str
    input: str
    result: LoadResult
    kind: str = "single"
    made: dict[SetOutput, Made] = field(default_factory=dict)  # set rows: each output received
    unavailable: dict[SetOutput, str] = field(default_factory=dict)  # set rows: outputs the service cannot make


ROLE_ORDER = ["API", "worker main", "worker pool", "PostgreSQL", "Redis", "thumbor", "imgproxy"]


def print_rows(rows: list[Row], concurrency: int, unit: str = "image") -> None:
    counted = f"{unit + 's':>8}{unit + 's/s':>10}{'CPU s/' + unit:>13}"
    print(f"\n{'service':<28}{'input':<14}{'conc.':>6}{counted}  per process")
    for row in rows:
        result = row.result
        parts = [
            f"{role} {result.cpu[role] / result.images:.4f}"
            for role in ROLE_ORDER
            if role in result.cpu and result.images
        ]
        extra = ""
        if result.status_requests:
            extra += f"; {result.status_requests / max(result.images, 1):.2f} status requests/{unit}"
        if row.unavailable:
            extra += f"; {len(row.made)} of {len(row.made) + len(row.unavailable)} outputs"
        if result.failures:
            extra += f"; {len(result.failures)} FAILED (first: {result.failures[0]})"
        if result.timed_out:
            extra += "; TIME LIMIT reached"
        print(
            f"{row.service:<28}{row.input:<14}{concurrency:>6}{result.images:>8}{result.rate:>10.1f}"
            f"{result.cpu_per_image:>13.4f}  {', '.join(parts)}{extra}"
        )


def print_targets(rows: list[Row], reference: str) -> None:
    print(f"\ntargets, against {reference} in this run:")
    for row in rows:
        if not row.service.startswith("imgproc"):
            continue
        peer = next((r for r in rows if r.service == reference and r.input == row.input), None)
        if peer is None or not peer.result.images or not row.result.images:
            continue
        rate = row.result.rate / peer.result.rate
        cpu = row.result.cpu_per_image / peer.result.cpu_per_image
        api = row.result.cpu.get("API", 0.0) / sum(row.result.cpu.values())
        verdict = " ".join(
            f"{'PASS' if ok else 'MISS'} {label}"
            for ok, label in (
                (rate >= 0.9, f"images/s {rate:.2f}x (>= 0.9x)"),
                (cpu <= 1.15, f"CPU/image {cpu:.2f}x (<= 1.15x)"),
                (api <= 0.10, f"API share {api:.0%} (<= 10%)"),
            )
        )
        print(f"  {row.service:<28}{row.input:<14}{verdict}")


SET_TARGETS = {"rate": 2.0, "cpu": 0.5}  # the issue's: ours/peer sets/s >= 2x, CPU per set <= 0.5x


def print_set_ratios(rows: list[Row]) -> None:
    """Ours/peer within this run, per imgproc service, input and peer measured."""
    targets = f"sets/s >= {SET_TARGETS['rate']:g}x, CPU/set <= {SET_TARGETS['cpu']:g}x"
    print(f"\nset row, ours / peer in this run (targets: {targets}):")
    for row in rows:
        if not row.service.startswith("imgproc") or not row.result.images:
            continue
        for peer in rows:
            if peer.service.startswith("imgproc") or peer.input != row.input or not peer.result.images:
                continue
            rate = row.result.rate / peer.result.rate
            cpu = row.result.cpu_per_image / peer.result.cpu_per_image
            if peer.unavailable:  # the peer's set is smaller: figures shown, not judged
                missing = ", ".join(output.label for output in peer.unavailable)
                verdict = f"sets/s {rate:.2f}x, CPU/set {cpu:.2f}x (not judged: {peer.service} has no {missing})"
            else:
                verdict = " ".join(
                    f"{'PASS' if ok else 'MISS'} {label}"
                    for ok, label in (
                        (rate >= SET_TARGETS["rate"], f"sets/s {rate:.2f}x"),
                        (cpu <= SET_TARGETS["cpu"], f"CPU/set {cpu:.2f}x"),
                    )
                )
            print(f"  {row.service:<28}{row.input:<14}vs {peer.service:<10}{verdict}")


def print_set_bytes(rows: list[Row], outputs: Sequence[SetOutput]) -> None:
    """Per input, every output's pixels and bytes: imgproc's beside each peer's, and ours/peer."""
    for label in dict.fromkeys(row.input for row in rows):
        ours = next((r for r in rows if r.input == label and r.service.startswith("imgproc") and r.made), None)
        peers = [r for r in rows if r.input == label and not r.service.startswith("imgproc")]
        if ours is None:
            continue
        print(f"\nbytes per variant, {label} (imgproc: {ours.service}):")
        print(f"  {'output':<12}{'imgproc':>21}" + "".join(f"{peer.service:>21}{'ours/peer':>11}" for peer in peers))
        for output in outputs:
            made = ours.made.get(output)
            cells = f"  {output.label:<12}{_made(made):>21}"
            for peer in peers:
                theirs = peer.made.get(output)
                ratio = f"{made.size / theirs.size:.2f}x" if made and theirs and theirs.size else ""
                cells += f"{_made(theirs) if theirs else 'unavailable':>21}{ratio:>11}"
            print(cells)
        for other in rows:
            if other is not ours and other.input == label and other.service.startswith("imgproc") and other.made:
                differ = [o.label for o in outputs if other.made.get(o) != ours.made.get(o)]
                if differ:
                    print(f"  ({other.service} made other bytes for {', '.join(differ)})")
        for peer in peers:
            for output, reason in peer.unavailable.items():
                print(f"  {peer.service}: {output.label} unavailable: {reason}")


def _made(made: Made | None) -> str:
    return f"{made.width}x{made.height} {made.size:>9,}" if made else "-"


# --------------------------------------------------------------------------- main


SERVICES = ("imgproxy", "thumbor", "imgproc-embedded", "imgproc-servers")
ROWS = ("single", "set")
UNIT = {"single": "image", "set": "set"}


@dataclass(frozen=True)
class Peer:
    """How to start a peer and ask it for the single row's image and for each output of the set."""

    start: Callable[[Path, Path, Path], AbstractContextManager[tuple[str, Roles]]]
    path: Callable[[str], str]
    output_path: Callable[[str, SetOutput], str]
    binary: Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="images (single rows) or sets (set rows) per row")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="the images are sent in this many alternating rounds")
    parser.add_argument("--time-limit", type=float, default=180, help="seconds per service, input and round")
    parser.add_argument("--only", default=",".join(SERVICES), help=f"comma-separated subset of {SERVICES}")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    args = parser.parse_args(argv)
    wanted = [name for name in args.only.split(",") if name]
    unknown = set(wanted) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {sorted(unknown)}")
    requested = [kind for kind in args.rows.split(",") if kind]
    kinds = [kind for kind in ROWS if kind in requested]
    unknown = set(requested) - set(ROWS)
    if unknown or not kinds:
        parser.error(f"--rows: unknown {sorted(unknown)}; the rows are {ROWS}")

    workdir = Path(tempfile.mkdtemp(prefix="imgproc-peers-"))
    inputs_dir = workdir / "inputs"
    inputs_dir.mkdir()
    print("generating inputs ...", flush=True)
    inputs = {
        "12 MP JPEG": ("photo-12mp.jpg", encode(photo_like(4000, 3000, seed=12), "JPEG", quality=90)),
        "1080p JPEG": ("photo-1080p.jpg", encode(photo_like(1920, 1080, seed=7), "JPEG", quality=90)),
    }
    for name, data in inputs.values():
        (inputs_dir / name).write_bytes(data)
    for label, (_, data) in inputs.items():
        print(f"  {label}: {len(data):,} bytes")
    outputs = set_outputs(SET_PRESETS)
    if "set" in kinds:
        print(f"set: {describe_set(SET_PRESETS)} ({len(outputs)} outputs)")

    notes: list[str] = []
    peers: dict[str, Peer] = {}
    if "imgproxy" in wanted:
        binary, note = build_imgproxy()
        notes.append(f"imgproxy: {note}" if binary else f"imgproxy: NOT MEASURED — {note}")
        if binary:
            peers["imgproxy"] = Peer(imgproxy, imgproxy_path, imgproxy_output_path, binary)
    if "thumbor" in wanted:
        binary, note = install_thumbor()
        notes.append(f"thumbor: {note}" if binary else f"thumbor: NOT MEASURED — {note}")
        if binary:
            peers["thumbor"] = Peer(thumbor, thumbor_path, thumbor_output_path, binary)
    for note in notes:
        print(note)

    def measure(target: Target, images: int) -> LoadResult:
        return run_load(target, images=images, concurrency=args.concurrency, time_limit=args.time_limit)

    rows: list[Row] = []
    try:
        with ExitStack() as running:
            # Every service is up for the whole run, and the rounds alternate between them, so
            # that a neighbour's load on a shared machine hits them all alike (measured one at a
            # time, services drifted 2-3x apart between runs). Idle services cost little: the
            # embedded worker's broker poll, the reconcilers.
            targets: dict[tuple[str, str, str], Target] = {}
            unavailable: dict[tuple[str, str, str], dict[SetOutput, str]] = {}
            for service, peer in peers.items():
                url, roles = running.enter_context(peer.start(peer.binary, inputs_dir, workdir))
                for label, (name, _) in inputs.items():
                    if "single" in kinds:
                        targets[service, "single", label] = UrlTarget(url, peer.path(name), roles)
                    if "set" in kinds:
                        paths = {output: peer.output_path(name, output) for output in outputs}
                        made, missing = probe_outputs(url, paths)
                        for output, reason in missing.items():
                            print(f"{service}: {output.label} of the {label} is unavailable ({reason})")
                        if made:
                            targets[service, "set", label] = PeerSetTarget(url, paths, made, roles)
                            unavailable[service, "set", label] = missing
            ours = {"imgproc-embedded": imgproc_embedded, "imgproc-servers": imgproc_servers}
            for service, start in ours.items():
                if service in wanted:
                    stacks = running.enter_context(start(workdir / service, {kind: STACK_ENV[kind] for kind in kinds}))
                    for label, (_, data) in inputs.items():
                        for kind, (stack, roles) in stacks.items():
                            if kind == "single":
                                targets[service, kind, label] = ImgprocTarget(stack, data, roles)
                            else:
                                targets[service, kind, label] = ImgprocSetTarget(stack, data, roles, SET_PRESETS)
            totals = {key: LoadResult() for key in targets}
            per_round = [args.images // args.rounds + (i < args.images % args.rounds) for i in range(args.rounds)]
            for index, images in enumerate(per_round, 1):
                for label in inputs:
                    for (service, kind, input_label), target in targets.items():
                        if input_label == label:
                            name = service if kind == "single" else f"{service} {kind}"
                            print(f"round {index}/{args.rounds}: {name}, {label}, {images} {UNIT[kind]}s", flush=True)
                            totals[service, kind, label].add(measure(target, images))
            rows = [
                Row(
                    service,
                    label,
                    result,
                    kind,
                    made=dict(getattr(targets[service, kind, label], "made", {})),
                    unavailable=unavailable.get((service, kind, label), {}),
                )
                for (service, kind, label), result in totals.items()
            ]
    finally:
        with suppress(OSError):
            shutil.rmtree(workdir, ignore_errors=True)

    single = [row for row in rows if row.kind == "single"]
    if single:
        print_rows(single, args.concurrency)
        print("CPU = user+system of every process of the service, per image; the client is not counted.")
        reference = "imgproxy" if "imgproxy" in peers else "thumbor" if "thumbor" in peers else None
        if reference:
            if reference != "imgproxy":
                print("(imgproxy was not measured: the targets are checked against thumbor instead)")
            print_targets(single, reference)
    sets = [row for row in rows if row.kind == "set"]
    if sets:
        print(f"\nset row: {describe_set(SET_PRESETS)}")
        print("imgproc: one upload naming the 4 presets, one long poll, a GET per variant; a peer: a GET per output")
        print_rows(sets, args.concurrency, unit="set")
        print("CPU = user+system of every process of the service, per set; the client is not counted.")
        if "imgproxy" in wanted and "imgproxy" not in peers:
            print("(imgproxy was not measured: no set figures against it)")
        print_set_ratios(sets)
        print_set_bytes(sets, outputs)
    return 1 if any(row.result.failures or row.result.timed_out for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
