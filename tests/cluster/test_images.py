"""The local cluster's images (scripts/images): the app image from the Dockerfile on a Debian
base, and PostgreSQL/Redis images from Debian's packages that must honour the contract of the
chart's subcharts.

These tests build for real with buildah (root, mmdebstrap, Debian's mirror and PyPI; cached
after the first run in scripts/images' state directory) and then run each image as the chart
would: the chart's own env, command, volume mounts (contents made as the kubelet makes them),
user and probe commands, with nothing written to the root file system (readOnlyRootFilesystem).
The checks that build nothing are tests/unit/images.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.fixtures.processes import terminate
from tests.fixtures.registry import running_registry
from tests.support.charts.rendering import ROOT, Renderer
from tests.support.locks import _locked

SCRIPT = ROOT / "scripts" / "images"
IMAGES = ROOT / "k8s" / "images"
ENTRYPOINTS = sorted(IMAGES.glob("*/docker-entrypoint.sh"))
POSTGRES_IMAGE = "localhost/imgproc-postgres:15-debian"
REDIS_IMAGE = "localhost/imgproc-redis:7-debian"
BUILD_TIMEOUT = 1800


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# --- real builds -------------------------------------------------------------------------------


def images(*args: str, timeout: float = BUILD_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"scripts/images {shlex.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """Image names by role, built (or found cached) by scripts/images."""
    if os.geteuid() != 0:
        _missing("buildah and mmdebstrap run as root here")
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed (apt-get install {tool})")
    names = {role: images(role).stdout.strip() for role in ("app", "postgres", "redis")}
    names["base"] = images("base").stdout.strip()
    return names


@pytest.fixture(scope="module")
def chart(k8s_tools_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart's default rendering, by (kind, name)."""
    objects = Renderer(k8s_tools_bin, tmp_path_factory.mktemp("helm")).render({})
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def image_config(image: str) -> dict[str, Any]:
    return json.loads(images("buildah", "inspect", "--type", "image", image).stdout)["OCIv1"]["config"]


@contextlib.contextmanager
def container(image: str) -> Iterator[str]:
    name = images("buildah", "from", "--pull-never", image).stdout.strip()
    try:
        yield name
    finally:
        images("buildah", "rm", name, check=False)


def run(name: str, script: str, *, user: str, volumes: list[str] = (), timeout: float = 300) -> str:
    """`bash -c script` in the working container; its output (stdout and stderr)."""
    args = ["buildah", "run", "--user", user]
    for volume in volumes:
        args += ["--volume", volume]
    result = images(*args, name, "--", "bash", "-c", f"exec 2>&1; {script}", timeout=timeout, check=False)
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def root_fs_writes(name: str) -> list[str]:
    """Files with content in the container's own layer: what a read-only root would refuse.
    (Empty files and directories are the mount points buildah makes for --volume.)"""
    if images("driver").stdout.strip() == "vfs":
        return []
    merged = Path(images("buildah", "mount", name).stdout.strip())
    try:
        diff = merged.parent / "diff"
        assert diff.is_dir(), f"no overlay upper directory next to {merged}"
        return sorted(
            str(p.relative_to(diff))
            for p in diff.rglob("*")
            if p.is_symlink() or (p.is_file() and p.stat().st_size > 0)
        )
    finally:
        images("buildah", "umount", name, check=False)


def kubelet_volumes(pod: dict[str, Any], container_spec: dict[str, Any], objects: dict, tmp: Path) -> list[str]:
    """--volume options for the container's volumeMounts, filled as the kubelet would: emptyDir
    and claims as group-writable directories of fsGroup, Secrets and ConfigMaps as files."""
    fs_group = pod["securityContext"].get("fsGroup", 0)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]} if "spec" in pod else {}
    options = []
    for mount in container_spec["volumeMounts"]:
        host = tmp / mount["name"]
        host.mkdir()
        volume = volumes.get(mount["name"], {"persistentVolumeClaim": {}})
        if "secret" in volume:
            secret = objects[("Secret", volume["secret"]["secretName"])]
            for key in secret["data"]:
                (host / key).write_text(secrets.token_urlsafe(24))
                os.chmod(host / key, volume["secret"].get("defaultMode", 0o644))
                os.chown(host / key, 0, fs_group)
        elif "configMap" in volume:
            for key, text in objects[("ConfigMap", volume["configMap"]["name"])]["data"].items():
                (host / key).write_text(text)
        os.chown(host, 0, fs_group)
        os.chmod(host, 0o2777 if mount["mountPath"] == "/tmp" else 0o2775)
        options.append(f"{host}:{mount['mountPath']}:{'ro' if mount.get('readOnly') else 'rw'}")
    return options


def pod_parts(sts: dict[str, Any]) -> tuple[dict, dict, str]:
    pod = {
        "securityContext": sts["spec"]["template"]["spec"]["securityContext"],
        "spec": sts["spec"]["template"]["spec"],
    }
    (spec,) = pod["spec"]["containers"]
    context = spec["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    return pod, spec, f"{context['runAsUser']}:{context['runAsGroup']}"


def probe(spec: dict[str, Any]) -> str:
    commands = {json.dumps(spec[p]["exec"]["command"]) for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert len(commands) == 1, "one probe command for all three"
    return shlex.join(json.loads(commands.pop()))


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec["env"] if "value" in e}


def exports(env: dict[str, str]) -> str:
    return "; ".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def serve(start: str, ready: str, checks: str, stop_signal: str) -> str:
    """Start the server in the background, wait until the chart's probe passes, run the checks,
    stop it with its stop signal, and wait for a clean exit."""
    return f"""
        set -euo pipefail
        {start} &
        pid=$!
        for _ in $(seq 240); do {ready} >/dev/null 2>&1 && break; sleep 0.5; done
        {ready}
        echo PROBE-OK
        {checks}
        kill -{stop_signal} $pid
        wait $pid
        echo STOPPED-CLEANLY
    """


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_app_image_runs_imgproc_under_tini_as_uid_10001_with_the_locked_versions(built):
    config = image_config(built["app"])
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["tini", "--", "imgproc"] and config["Cmd"] == ["api"]
    with container(built["app"]) as name:
        out = run(
            name,
            "tini -- imgproc --help && echo === && pip freeze --all && echo === && "
            "for c in gcc cc g++ make; do if command -v $c; then exit 7; fi; done",
            user="10001:10001",
        )
    usage, freeze, _ = out.split("===\n")
    assert "worker" in usage and "migrate" in usage
    installed = {}
    for line in freeze.splitlines():  # name==version, or `imgproc @ file:///wheels/...` for the app
        name, version = re.split(r"==| @ ", line, maxsplit=1)[0], line.partition("==")[2]
        installed[canonicalize_name(name)] = version
    locked = {name: version for name, (version, _) in _locked(ROOT / "requirements.lock").items()}
    assert {k: installed.get(k) for k in locked} == locked, "the image holds exactly the locked versions"
    assert set(installed) - set(locked) == {"imgproc", "pip", "setuptools"}


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_local_base_is_debian_bookworm_python_3_11(built):
    with container(built["base"]) as name:
        out = run(
            name,
            "python3 -c 'import sys, venv; print(sys.version_info[:2])'; . /etc/os-release; echo $VERSION_CODENAME",
            user="0:0",
        )
    assert out.split() == ["(3,", "11)", "bookworm"]


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_postgres_image_initialises_the_chart_database_and_restarts_on_it(built, chart, tmp_path):
    sts = chart[("StatefulSet", "rel-postgresql")]
    pod, spec, user = pod_parts(sts)
    config = image_config(built["postgres"])
    assert config["User"] == user and config["StopSignal"] == "SIGINT"
    volumes = kubelet_volumes(pod, spec, chart, tmp_path)
    start = shlex.join(config["Entrypoint"] + config["Cmd"]) + " > /tmp/postgres.log 2>&1"
    env = exports(env_of(spec))
    app = 'PGPASSWORD="$(cat "$APP_PASSWORD_FILE")" psql -h 127.0.0.1 -U "$APP_USER" -d "$POSTGRES_DB" -XAtq'
    admin = 'PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" psql -h 127.0.0.1 -U postgres -d "$POSTGRES_DB" -XAtq'
    first = f"""
        {app} -c "select current_user, pg_get_userbyid(datdba), current_setting('server_encoding')
                  from pg_database where datname = current_database()"
        {app} -c "select rolsuper from pg_roles where rolname = current_user"
        {app} -c "create table kept (x int); insert into kept values (42)"
        {admin} -c "select 'admin-ok'"
        if PGPASSWORD=wrong psql -h 127.0.0.1 -U postgres -d postgres -XAtqc 'select 1'; then exit 9; fi
        echo WRONG-PASSWORD-REFUSED
    """
    with container(built["postgres"]) as name:
        out = run(name, f"{env}; " + serve(start, probe(spec), first, "INT"), user=user, volumes=volumes)
        log = (tmp_path / "tmp" / "postgres.log").read_text()
        again = run(
            name,
            f"{env}; " + serve(start, probe(spec), f'{app} -c "select x from kept"', "INT"),
            user=user,
            volumes=volumes,
        )
        log_again = (tmp_path / "tmp" / "postgres.log").read_text()
        writes = root_fs_writes(name)
    assert "imgproc|imgproc|UTF8" in out and "\nf\n" in out and "admin-ok" in out, out
    assert "WRONG-PASSWORD-REFUSED" in out and "STOPPED-CLEANLY" in out, out
    assert "sourcing /docker-entrypoint-initdb.d/10-app-role.sh" in log, log
    assert "init process complete" in log
    assert "42" in again.split() and "init process complete" not in log_again, log_again
    pgdata = Path(env_of(spec)["PGDATA"])
    assert pgdata.parent == Path("/var/lib/postgresql/data"), "a subdirectory of the data volume"
    assert (tmp_path / "data" / pgdata.name / "PG_VERSION").read_text().strip() == "15"
    assert writes == [], "the image writes outside its volumes (readOnlyRootFilesystem)"


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_redis_image_runs_the_chart_command_with_auth_and_aof_and_keeps_data(built, chart, tmp_path):
    sts = chart[("StatefulSet", "rel-redis-master")]
    pod, spec, user = pod_parts(sts)
    assert image_config(built["redis"])["User"] == user
    volumes = kubelet_volumes(pod, spec, chart, tmp_path)
    start = shlex.join(spec["command"] + spec["args"])
    env = exports(env_of(spec) | {"REDISCLI_AUTH": secrets.token_urlsafe(24)})
    cli = "redis-cli -h 127.0.0.1 -p 6379"
    first = f"""
        {cli} set kept 42
        {cli} config get appendonly
        {cli} config get maxmemory-policy
        env -u REDISCLI_AUTH {cli} get kept || true
    """
    with container(built["redis"]) as name:
        out = run(name, f"{env}; " + serve(start, probe(spec), first, "TERM"), user=user, volumes=volumes)
        again = run(name, f"{env}; " + serve(start, probe(spec), f"{cli} get kept", "TERM"), user=user, volumes=volumes)
        writes = root_fs_writes(name)
    assert "PROBE-OK" in out and "appendonly\nyes" in out and "maxmemory-policy\nnoeviction" in out, out
    assert "NOAUTH" in out, "a client without the password is refused"
    assert "42" in again.split() and "STOPPED-CLEANLY" in again, again
    assert any((tmp_path / "data" / "appendonlydir").iterdir())
    assert writes == [], "the image writes outside its volumes (readOnlyRootFilesystem)"


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[str]:
    """A throwaway containerd (its own root, state and socket; no CRI): the socket's path."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        _missing("containerd is not installed (apt-get install containerd)")
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f"""version = 2
root = "{tmp_path}/root"
state = "{tmp_path}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
""")
    with open(tmp_path / "containerd.log", "w") as log:
        process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if socket.exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert socket.exists(), (tmp_path / "containerd.log").read_text()
        yield str(socket)
    finally:
        terminate(process, timeout=20)
        subprocess.run(["umount", "-R", str(tmp_path / "state")], capture_output=True)


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_import_puts_an_image_into_containerd_where_it_runs_read_only_as_its_user(built, containerd):
    result = subprocess.run(
        [str(SCRIPT), "import", built["redis"]],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"CONTAINERD_ADDRESS": containerd},
    )
    assert result.returncode == 0, result.stderr
    ctr = ["ctr", "--address", containerd, "-n", "k8s.io"]
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert built["redis"] in listed.split()
    ran = subprocess.run(
        [
            *ctr,
            "run",
            "--rm",
            "--read-only",
            "--net-host",
            built["redis"],
            "imgproc-import-test",
            "sh",
            "-c",
            "id -u; id -g; touch /etc/x 2>/dev/null || echo read-only",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.stdout.split() == ["999", "1000", "read-only"], ran.stdout + ran.stderr


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_app_image_serves_an_upload_round_trip_read_only_with_the_chart_mounts(built, chart, tmp_path):
    # Embedded mode (SQLite, in-process worker): no PostgreSQL/Redis needed, yet the real image,
    # its user, the API Deployment's mounts and a read-only root.
    deployment = chart[("Deployment", "rel-imgproc-api")]
    pod = {
        "securityContext": deployment["spec"]["template"]["spec"]["securityContext"],
        "spec": deployment["spec"]["template"]["spec"],
    }
    (spec,) = pod["spec"]["containers"]
    context = spec["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    user = f"{context['runAsUser']}:{context['runAsGroup']}"
    volumes = kubelet_volumes(pod, spec, chart, tmp_path)
    script = """
        set -euo pipefail
        export IMGPROC_DATA_DIR=/tmp/imgproc
        tini -- imgproc run > /tmp/app.log 2>&1 &
        pid=$!
        trap 'cat /tmp/app.log' ERR
        up='import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/livez", timeout=2)'
        for _ in $(seq 240); do python -c "$up" 2>/dev/null && break; sleep 0.5; done
        imgproc smoke --url http://127.0.0.1:8000 --timeout 120
        echo SMOKE-OK
        kill -TERM $pid
        wait $pid || true
    """
    with container(built["app"]) as name:
        out = run(name, script, user=user, volumes=volumes)
        writes = root_fs_writes(name)
    assert "SMOKE-OK" in out, out
    assert writes == [], "the image writes outside its volumes (readOnlyRootFilesystem)"


def test_prune_keeps_the_current_images_the_newest_app_images_and_everything_not_ours(tmp_path):
    if os.geteuid() != 0 or shutil.which("buildah") is None:
        _missing("buildah runs as root here")
    env = os.environ | {"IMGPROC_IMAGES_DIR": str(tmp_path / "store"), "IMGPROC_IMAGES_KEEP": "2"}

    def store(*args: str) -> str:
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def commit(image: str) -> None:  # a tiny image of one file, each with its own creation time
        name = store("buildah", "from", "scratch").strip()
        (tmp_path / "file").write_text(image)
        store("buildah", "copy", name, str(tmp_path / "file"), "/file")
        store("buildah", "commit", "--rm", name, image)

    for tag in ("a", "b", "c"):
        commit(f"localhost/imgproc:{tag}")
    commit("localhost/imgproc-debian:bookworm-000000000000")  # superseded recipe
    commit("localhost/imgproc-redis:7-debian")
    commit("localhost/someone-else:1")
    store("buildah", "tag", "localhost/imgproc:c", "localhost/imgproc:c-again")  # a kept image's other tag
    working = store("buildah", "from", "localhost/someone-else:1").strip()  # e.g. the cluster's add-on build
    store("prune")
    remaining = set(store("buildah", "images", "--format", "{{.Name}}:{{.Tag}}").split())
    assert remaining == {
        "localhost/imgproc:b",
        "localhost/imgproc:c",
        "localhost/imgproc:c-again",
        "localhost/imgproc-redis:7-debian",
        "localhost/someone-else:1",
    }
    assert working in store("buildah", "containers", "--format", "{{.ContainerName}}").split()
    archive = tmp_path / "redis.tar"
    store("archive", "localhost/imgproc-redis:7-debian", str(archive))
    assert archive.stat().st_size > 0
    store("buildah", "rm", "--all")
    store("buildah", "rmi", "--all", "--force")


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_a_rebuild_after_a_code_change_installs_the_new_code(built, tmp_path):
    # The layer cache must notice the change: buildah 1.28 reused a `RUN --mount=from=builder`
    # install after the builder stage had changed, and shipped the previous wheel.
    tree = tmp_path / "repo"
    for path in (
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "requirements-build.lock",
        "app",
        "worker",
        "operator",
        "scripts",
        "k8s/images/base",
    ):
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, tree / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / path)
    token = secrets.token_hex(8)
    with open(tree / "app" / "__init__.py", "a") as init:
        init.write(f"# rebuild probe {token}\n")
    image = "localhost/imgproc:rebuild-probe"
    try:
        result = subprocess.run(
            [str(tree / "scripts" / "images"), "app", "rebuild-probe"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        with container(image) as name:
            installed = run(name, "cat /opt/venv/lib/python3.11/site-packages/app/__init__.py", user="10001:10001")
        assert token in installed
    finally:
        images("buildah", "rmi", image, check=False)


# --- skaffold's custom builder (skaffold.yaml's profile cluster) ----------------------------------


@pytest.fixture
def registry(k8s_tools_bin: Path, tmp_path: Path) -> Iterator[str]:
    """distribution's registry on a free loopback port (as scripts/cluster runs it)."""
    binary = k8s_tools_bin / "registry"
    if not binary.exists():
        _missing("the registry is missing: run scripts/k8s-tools --cluster")
    with running_registry(binary, tmp_path / "registry") as address:
        yield address


def registry_manifest(registry: str, repository: str, tag: str) -> dict[str, Any] | None:
    response = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        timeout=10,
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    return response.json() if response.status_code == 200 else None


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_skaffold_verb_builds_image_pushes_it_over_plain_http_and_drops_the_local_copy(built, registry, tmp_path):
    # skaffold's custom build contract: $IMAGE (name and tag skaffold chose), $PUSH_IMAGE,
    # $BUILD_CONTEXT; the Dockerfile is built on the local base like the app's.
    context = tmp_path / "context"
    context.mkdir()
    token = secrets.token_hex(8)
    (context / "Dockerfile").write_text("ARG PYTHON_IMAGE\nFROM ${PYTHON_IMAGE}\nCOPY probe.txt /probe.txt\n")
    (context / "probe.txt").write_text(token)
    image = f"{registry}/imgproc-probe:{token}"

    def build(push: bool) -> None:
        env = os.environ | {"IMAGE": image, "PUSH_IMAGE": str(push).lower(), "BUILD_CONTEXT": str(context)}
        result = subprocess.run(
            [str(SCRIPT), "skaffold"], cwd=context, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
        assert result.returncode == 0, result.stderr[-4000:]

    try:
        build(push=False)  # skaffold build --push=false: kept in the store, nothing pushed
        assert images("buildah", "inspect", "--type", "image", image, check=False).returncode == 0
        assert registry_manifest(registry, "imgproc-probe", token) is None

        build(push=True)
        assert images("buildah", "inspect", "--type", "image", image, check=False).returncode != 0
        manifest = registry_manifest(registry, "imgproc-probe", token)
        assert manifest is not None
        # The top layer is the Dockerfile's COPY, with the context's file in it.
        layer = httpx.get(f"http://{registry}/v2/imgproc-probe/blobs/{manifest['layers'][-1]['digest']}", timeout=30)
        assert layer.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(layer.content)) as tar:
            assert tar.extractfile("probe.txt").read().decode() == token
    finally:
        images("buildah", "rmi", image, check=False)
