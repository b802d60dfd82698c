"""imgproc next to its peers: images/s and CPU seconds per image of every service process.

    python -m bench.bench_peers [--images 60] [--concurrency 4] [--only imgproc-embedded,...]

Services, one at a time on loopback, each on the same generated inputs (a 12 MP and a 1080p
photo-like JPEG, made in-process), fitting within 800x600 at quality 85:

- imgproxy, built from its Go module against Debian's libvips (cached in ~/.cache/imgproc-bench);
  when the module cannot be fetched or built the bench says why and goes on without it;
- thumbor from PyPI in its own virtualenv (same cache), 2 processes (one per core), file loader,
  no storage and no result storage (every request does the work);
- imgproc embedded (`imgproc run`: SQLite, API + worker);
- imgproc in its production shape: PostgreSQL + Redis + `imgproc api` + a separate `imgproc worker`
  (servers started by the test fixtures' code on free loopback ports).

One closed-loop client: ``--concurrency`` threads share ``--images`` requests (after one warm-up
request per thread, not counted), each thread waiting for its image before sending the next. All
services run for the whole bench and the images are sent in ``--rounds`` rounds that alternate
between the services, so that a noisy neighbour slows them alike; figures are over all rounds. For
imgproc an image is: upload, wait for the task to end (long poll ``?wait=30``; a server without it
answers at once and the client then polls every 100 ms, like the page did), download the result.
Every run is bounded in time (``--time-limit``).

CPU = user + system time from /proc of every process of the service (children included; a process
that ends during a run keeps the last figure seen), divided by the images done. The client's own
CPU is not counted, but it runs on the same cores for every service.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.bench_pipeline import photo_like
from tests.fixtures.ports import free_port, wait_for_port
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.services import ServiceStack, embedded_env, running_stack, server_env
from tests.support.images import encode

CACHE = Path(os.environ.get("IMGPROC_BENCH_CACHE", Path.home() / ".cache" / "imgproc-bench"))
IMGPROXY_MODULE = "github.com/imgproxy/imgproxy/v3"
THUMBOR_REQUIREMENT = "thumbor==7.8.0"
WIDTH, HEIGHT, QUALITY = 800, 600, 85
TERMINAL = ("completed", "failed")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LEGACY_POLL_SECONDS = 0.1


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
    """One way of getting one image through a service; ``fetch`` returns the output's size."""

    roles: dict[int, Callable[[int], str]]

    def fetch(self, client: httpx.Client, counters: dict[str, int]) -> int:
        raise NotImplementedError

    def new_client(self) -> httpx.Client:
        raise NotImplementedError


def run_load(target: Target, *, images: int, concurrency: int, time_limit: float) -> LoadResult:
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
        deadline = time.monotonic() + 120
        while True:
            asked = time.monotonic()
            status = client.get(f"/api/isReady/{task_id}", params={"wait": 30}).json()
            counters["status"] += 1
            if status["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {status['status']}")
            if time.monotonic() - asked < LEGACY_POLL_SECONDS / 2:  # a server without long polls
                time.sleep(LEGACY_POLL_SECONDS)
        if status["status"] != "completed":
            raise RuntimeError(f"task {task_id} failed: {status['error']}")
        result = client.get(f"/api/tasks/{task_id}/result")
        result.raise_for_status()
        return len(result.content)


BENCH_LIMITS = {  # the bench is one client at a high rate; the quotas are not what is measured
    "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
    "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000",
    "IMGPROC_LOG_LEVEL": "WARNING",
}


@contextmanager
def imgproc_embedded(workdir: Path) -> Iterator[tuple[ServiceStack, dict[int, Callable[[int], str]]]]:
    env = {**embedded_env(workdir / "embedded"), **BENCH_LIMITS}
    with running_stack(env, workdir / "logs-embedded", workers=0, start_api=False) as stack:
        stack.start_embedded()
        assert stack.api is not None
        # `imgproc run` = the API; its child is the worker's main process; the pool below that.
        yield stack, {stack.api.pid: tiered("API", "worker main", "worker pool")}


@contextmanager
def imgproc_servers(workdir: Path) -> Iterator[tuple[ServiceStack, dict[int, Callable[[int], str]]]]:
    postgres = start_postgres()  # its own temp dir: the server runs as "postgres", workdir is 0700
    redis = start_redis()
    try:
        env = {**server_env(postgres.create_database("bench"), redis.url, workdir / "server"), **BENCH_LIMITS}
        with running_stack(env, workdir / "logs-server", workers=1) as stack:
            assert stack.api is not None and redis.process is not None and postgres.data_dir is not None
            postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
            yield (
                stack,
                {
                    stack.api.pid: flat("API"),
                    stack.workers[0].pid: tiered("worker main", "worker pool"),
                    postmaster: flat("PostgreSQL"),
                    redis.process.pid: flat("Redis"),
                },
            )
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
    conf.write_text(THUMBOR_CONF.format(root=str(inputs_dir), quality=QUALITY))
    port = free_port()
    argv = [str(binary), "-i", "127.0.0.1", "-p", str(port), "-c", str(conf), "-l", "error", "--processes", "2"]
    with spawned(argv, port, workdir / "thumbor.log") as process:
        yield f"http://127.0.0.1:{port}", {process.pid: flat("thumbor")}


def thumbor_path(name: str) -> str:
    return f"/unsafe/fit-in/{WIDTH}x{HEIGHT}/filters:quality({QUALITY})/{name}"


# --------------------------------------------------------------------------- imgproxy


IMGPROXY_WRAPPER_GO_MOD = "module imgproc.bench/imgproxy-build\n\ngo 1.24\n"


def build_imgproxy() -> tuple[Path | None, str]:
    """``go install module@latest`` refuses modules with replace directives (imgproxy has them), so
    the module's source is downloaded with ``go mod download`` from a throw-away wrapper module and
    built in place, where its own go.mod (replaces included) applies."""
    binary = CACHE / "bin" / "imgproxy"
    if binary.exists():
        return binary, "cached build"
    if shutil.which("go") is None:
        return None, "Go is not installed"
    if subprocess.run(["pkg-config", "--exists", "vips"], capture_output=True).returncode != 0:
        return None, "libvips-dev is not installed (pkg-config cannot find vips)"
    wrapper = CACHE / "imgproxy-wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "go.mod").write_text(IMGPROXY_WRAPPER_GO_MOD)
    print(f"fetching {IMGPROXY_MODULE} through the Go module proxy ...", flush=True)
    try:
        download = subprocess.run(
            ["go", "mod", "download", "-json", f"{IMGPROXY_MODULE}@latest"],
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
    build_dir = CACHE / f"imgproxy-src-{info.get('Version', 'latest')}"
    if not build_dir.exists():
        shutil.copytree(source, build_dir)
        for path in build_dir.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    print(f"building imgproxy {info.get('Version')} against libvips (several minutes) ...", flush=True)
    try:
        built = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
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
        "IMGPROXY_LOG_LEVEL": "error",
    }
    with spawned([str(binary)], port, workdir / "imgproxy.log", env=env) as process:
        yield f"http://127.0.0.1:{port}", {process.pid: flat("imgproxy")}


def imgproxy_path(name: str) -> str:
    return f"/insecure/rs:fit:{WIDTH}:{HEIGHT}/q:{QUALITY}/plain/local:///{name}@jpg"


# --------------------------------------------------------------------------- the report


@dataclass
class Row:
    service: str
    input: str
    result: LoadResult


ROLE_ORDER = ["API", "worker main", "worker pool", "PostgreSQL", "Redis", "thumbor", "imgproxy"]


def print_rows(rows: list[Row], concurrency: int) -> None:
    print(f"\n{'service':<28}{'input':<14}{'conc.':>6}{'images':>8}{'images/s':>10}{'CPU s/image':>13}  per process")
    for row in rows:
        result = row.result
        parts = [
            f"{role} {result.cpu[role] / result.images:.4f}"
            for role in ROLE_ORDER
            if role in result.cpu and result.images
        ]
        extra = ""
        if result.status_requests:
            extra += f"; {result.status_requests / max(result.images, 1):.2f} status requests/image"
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


# --------------------------------------------------------------------------- main


SERVICES = ("imgproxy", "thumbor", "imgproc-embedded", "imgproc-servers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="the images are sent in this many alternating rounds")
    parser.add_argument("--time-limit", type=float, default=180, help="seconds per service, input and round")
    parser.add_argument("--only", default=",".join(SERVICES), help=f"comma-separated subset of {SERVICES}")
    args = parser.parse_args(argv)
    wanted = [name for name in args.only.split(",") if name]
    unknown = set(wanted) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {sorted(unknown)}")

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

    notes: list[str] = []
    peers: dict[str, tuple[Callable, Callable[[str], str], Path]] = {}
    if "imgproxy" in wanted:
        binary, note = build_imgproxy()
        notes.append(f"imgproxy: {note}" if binary else f"imgproxy: NOT MEASURED — {note}")
        if binary:
            peers["imgproxy"] = (imgproxy, imgproxy_path, binary)
    if "thumbor" in wanted:
        binary, note = install_thumbor()
        notes.append(f"thumbor: {note}" if binary else f"thumbor: NOT MEASURED — {note}")
        if binary:
            peers["thumbor"] = (thumbor, thumbor_path, binary)
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
            targets: dict[tuple[str, str], Target] = {}
            for service, (start, path_for, binary) in peers.items():
                url, roles = running.enter_context(start(binary, inputs_dir, workdir))
                for label, (name, _) in inputs.items():
                    targets[service, label] = UrlTarget(url, path_for(name), roles)
            ours = {"imgproc-embedded": imgproc_embedded, "imgproc-servers": imgproc_servers}
            for service, start in ours.items():
                if service in wanted:
                    stack, roles = running.enter_context(start(workdir / service))
                    for label, (_, data) in inputs.items():
                        targets[service, label] = ImgprocTarget(stack, data, roles)
            totals = {key: LoadResult() for key in targets}
            per_round = [args.images // args.rounds + (i < args.images % args.rounds) for i in range(args.rounds)]
            for index, images in enumerate(per_round, 1):
                for label in inputs:
                    for (service, input_label), target in targets.items():
                        if input_label == label:
                            print(f"round {index}/{args.rounds}: {service}, {label}, {images} images", flush=True)
                            totals[service, label].add(measure(target, images))
            rows = [Row(service, label, result) for (service, label), result in totals.items()]
    finally:
        with suppress(OSError):
            shutil.rmtree(workdir, ignore_errors=True)

    print_rows(rows, args.concurrency)
    print("CPU = user+system of every process of the service, per image; the client is not counted.")
    reference = "imgproxy" if "imgproxy" in peers else "thumbor" if "thumbor" in peers else None
    if reference:
        if reference != "imgproxy":
            print("(imgproxy was not measured: the targets are checked against thumbor instead)")
        print_targets(rows, reference)
    return 1 if any(row.result.failures or row.result.timed_out for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
