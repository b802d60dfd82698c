"""skaffold's loop on this machine's real cluster (skaffold.yaml's profile `cluster`): the image
built by buildah through skaffold's custom builder (`scripts/images skaffold`), pushed to the
cluster's loopback registry and pulled from there by its containerd, the chart deployed by
skaffold's helm deployer with k8s/values-local.yaml, the API answering through Traefik.

- `skaffold run -p cluster` deploys into a namespace of its own and the API answers; `skaffold
  delete` removes the release.
- `skaffold dev -p cluster` on a temporary copy of the tree: the first deploy answers, a change
  of the health message in the copy's app code is served within a bound, and SIGINT (Ctrl-C)
  makes skaffold remove the release.

Every step is bounded and timed (the timings are printed with the cluster suite's). skaffold
runs with a global config of its own (no metrics, no update check, no survey prompt) and an
artifact cache file of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.cluster import REPO_ROOT, TIMINGS, LiveCluster, _unavailable
from tests.support import waiting

PROFILE = "cluster"
HEALTH_MODULE = Path("app/api/routes/health.py")
HEALTH_MESSAGE = "Image processing service is running"

RUN_TIMEOUT = 900  # skaffold run: build, push, deploy, status check
FIRST_DEPLOY_TIMEOUT = 900  # skaffold dev until the API answers
CHANGE_TIMEOUT = 420  # source change until the new message is served
CLEANUP_TIMEOUT = 300  # SIGINT until skaffold has exited (the release uninstalled)
GONE_TIMEOUT = 180  # ... and the release's pods are gone


@pytest.fixture(scope="module")
def skaffold_bin(live_cluster: LiveCluster) -> Path:
    tools = Path(
        subprocess.run(
            [str(REPO_ROOT / "scripts" / "k8s-tools"), "--print"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    if not (tools / "skaffold").exists():
        _unavailable("skaffold is missing: run scripts/k8s-tools --cluster")
    return tools / "skaffold"


@pytest.fixture
def skaffold(skaffold_bin: Path, live_cluster: LiveCluster, tmp_path: Path) -> Callable[..., list[str]]:
    """argv builder: `skaffold <command> -p cluster` with this test's own global config (no metrics
    upload, no update check, no survey) and artifact cache (so a build is not skipped because an
    earlier run's cache says the image is in a registry that `cluster down` has emptied)."""
    config = tmp_path / "skaffold-global.yaml"
    config.write_text(
        "global:\n  collect-metrics: false\n  update-check: false\n"
        "  survey: {disable-prompt: true}\n  local-cluster: false\nkubeContexts: []\n"
    )

    def argv(command: str, *extra: str) -> list[str]:
        cache = ["--cache-file", str(tmp_path / "skaffold-cache")] if command in ("run", "dev") else []
        return [
            str(skaffold_bin),
            command,
            "-p",
            PROFILE,
            "--config",
            str(config),
            *cache,
            "--update-check=false",
            "--interactive=false",
            "--color=0",
            *extra,
        ]

    return argv


def skaffold_env(live_cluster: LiveCluster, namespace: str) -> dict[str, str]:
    """`scripts/cluster env`'s variables and where the profile puts the release: the namespace and
    an ingress host of its own (`<namespace>.imgproc.test`)."""
    return live_cluster.env | {"IMGPROC_NAMESPACE": namespace, "IMGPROC_INGRESS_HOST": f"{namespace}.imgproc.test"}


def health(live_cluster: LiveCluster, host: str) -> dict | None:
    """GET / through the ingress; None while nothing answers it (no route yet, pods starting)."""
    try:
        response = httpx.get(f"{live_cluster.url}/", headers={"Host": host}, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def wait_showing_log(what: str, seconds: float, probe: Callable[[], object], log: Path | None = None) -> object:
    """waiting.wait_until, failing with the end of skaffold's log."""
    try:
        return waiting.wait_until(probe, timeout=seconds, interval=0.5, what=what)
    except TimeoutError as error:
        tail = log.read_text(errors="replace")[-6000:] if log and log.exists() else ""
        raise AssertionError(f"{error}\n{tail}") from None


def release_gone(live_cluster: LiveCluster, namespace: str) -> bool:
    releases = live_cluster.helm("list", "-n", namespace, "-q", "-a").stdout.split()
    pods = live_cluster.get("pods", "-n", namespace)["items"]
    return not releases and not pods


def copy_tree(destination: Path) -> Path:
    """The checkout as git sees it (tracked and untracked files, ignored ones left out): what a
    developer's tree holds, without .venv, caches or data."""
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_skaffold_run_deploys_and_the_api_answers_through_the_ingress(
    live_cluster: LiveCluster, skaffold, tmp_path: Path
):
    namespace = live_cluster.new_namespace("skaffold-run")
    host = f"{namespace}.imgproc.test"
    env = skaffold_env(live_cluster, namespace)
    log = tmp_path / "skaffold-run.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            skaffold("run"), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT
        )
    TIMINGS["skaffold run -p cluster (build, push, deploy)"] = time.monotonic() - started
    assert result.returncode == 0, log.read_text(errors="replace")[-6000:]

    body = wait_showing_log("GET / through the ingress", 60, lambda: health(live_cluster, host), log)
    assert body == {"status": "healthy", "message": HEALTH_MESSAGE}
    # The API runs the image skaffold pushed, by digest, pulled from the loopback registry.
    api = live_cluster.get("deployment", "-n", namespace, "imgproc-api")
    image = api["spec"]["template"]["spec"]["containers"][0]["image"]
    registry = live_cluster.env["IMGPROC_REGISTRY"]
    assert image.startswith(f"{registry}/imgproc") and "@sha256:" in image, image
    catalog = httpx.get(f"http://{registry}/v2/imgproc/tags/list", timeout=5).json()
    assert catalog["tags"], catalog

    started = time.monotonic()
    deleted = subprocess.run(
        skaffold("delete"), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CLEANUP_TIMEOUT
    )
    assert deleted.returncode == 0, deleted.stdout[-4000:] + deleted.stderr[-4000:]
    wait_showing_log(
        "the release and its pods gone after skaffold delete",
        GONE_TIMEOUT,
        lambda: release_gone(live_cluster, namespace),
    )
    TIMINGS["skaffold delete (release and pods gone)"] = time.monotonic() - started


@pytest.fixture
def dev_tree(tmp_path: Path) -> Iterator[Path]:
    tree = copy_tree(tmp_path / "tree")
    yield tree
    shutil.rmtree(tree, ignore_errors=True)


def test_skaffold_dev_serves_a_source_change_and_ctrl_c_removes_the_release(
    live_cluster: LiveCluster, skaffold, dev_tree: Path, tmp_path: Path
):
    namespace = live_cluster.new_namespace("skaffold-dev")
    host = f"{namespace}.imgproc.test"
    log = tmp_path / "skaffold-dev.log"
    with log.open("w") as out:
        started = time.monotonic()
        dev = subprocess.Popen(
            skaffold("dev", "--port-forward=off"),
            cwd=dev_tree,
            env=skaffold_env(live_cluster, namespace),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = wait_showing_log(
            "skaffold dev's first deploy answering through the ingress",
            FIRST_DEPLOY_TIMEOUT,
            lambda: dev.poll() is None and health(live_cluster, host),
            log,
        )
        TIMINGS["skaffold dev: first deploy answering"] = time.monotonic() - started
        assert body == {"status": "healthy", "message": HEALTH_MESSAGE}
        wait_showing_log(
            "skaffold dev watching for changes",
            120,
            lambda: "Watching for changes" in log.read_text(errors="replace"),
            log,
        )

        # The change a developer makes: the health message, in the copy's app code.
        changed = f"{HEALTH_MESSAGE} (changed {uuid.uuid4().hex[:8]})"
        module = dev_tree / HEALTH_MODULE
        source = module.read_text()
        assert HEALTH_MESSAGE in source
        changed_at = time.monotonic()
        module.write_text(source.replace(HEALTH_MESSAGE, changed))
        body = wait_showing_log(
            "the changed message served through the ingress",
            CHANGE_TIMEOUT,
            lambda: dev.poll() is None and (b := health(live_cluster, host)) and b["message"] == changed and b,
            log,
        )
        TIMINGS["skaffold dev: source change -> served"] = time.monotonic() - changed_at
        assert body == {"status": "healthy", "message": changed}
        assert live_cluster.helm("list", "-n", namespace, "-q").stdout.split() == ["imgproc"]

        # Ctrl-C: skaffold uninstalls what it deployed, then exits.
        interrupted_at = time.monotonic()
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=CLEANUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"skaffold dev still running {CLEANUP_TIMEOUT} s after SIGINT\n"
                f"{log.read_text(errors='replace')[-6000:]}"
            ) from None
        TIMINGS["skaffold dev: Ctrl-C -> exited"] = time.monotonic() - interrupted_at
        wait_showing_log(
            "the release and its pods gone after Ctrl-C",
            GONE_TIMEOUT,
            lambda: release_gone(live_cluster, namespace),
            log,
        )
        TIMINGS["skaffold dev: Ctrl-C -> release and pods gone"] = time.monotonic() - interrupted_at
    finally:
        if dev.poll() is None:  # a failed step: let skaffold clean up still, within a bound
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait(timeout=30)
