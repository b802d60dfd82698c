"""Static checks of the Dockerfile (no Docker here): two stages, compilers only in the builder,
a numeric non-root user, tini as PID 1 in exec form, dependencies from a lock file with hashes
that matches pyproject.toml, and a build context that holds only what the image needs. The
image is built for real by scripts/images (tests/cluster/test_images.py)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.charts.rendering import ROOT
from tests.support.locks import _locked

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "clang", "libc6-dev", "python3-dev", "pkg-config")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages); continuation lines joined, heredoc bodies attached."""
    lines = text.splitlines()
    instructions: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
        keyword, _, args = line.strip().partition(" ")
        if heredoc := re.search(r"<<-?'?\"?([A-Z]+)'?\"?", args):
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            args += "\n" + "\n".join(body)
        instructions.append((keyword.upper(), args.strip()))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
    return global_args, stages


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_image_is_built_in_two_stages_from_python_3_11_slim(parsed):
    global_args, stages = parsed
    assert [s.name for s in stages] == ["builder", "runtime"]
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], stage.base)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    builder = stages[0]
    assert any("pip wheel" in run for run in builder.all("RUN"))


def test_the_dependency_layer_depends_on_the_lock_files_alone(parsed):
    # Editing the README, pyproject's metadata or the code must not rebuild every dependency wheel.
    steps = parsed[1][0].instructions
    dependencies = next(i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "-r requirements.lock" in args)
    copied = [args for keyword, args in steps[:dependencies] if keyword == "COPY"]
    assert copied == ["requirements.lock requirements-build.lock ./"]


def _pip_commands(run: str) -> list[list[str]]:
    """The arguments of each `pip ...` (or `/some/venv/bin/pip ...`) command in a RUN."""
    found = (re.search(r"(?:^|\s)(?:\S*/)?pip\s(.*)", part, re.S) for part in re.split(r"&&|;", run))
    return [shlex.split(match.group(1)) for match in found if match]


def cmd_arg(cmd: list[str], option: str) -> str:
    return cmd[cmd.index(option) + 1]


def test_every_download_is_checked_against_the_lock_hashes(parsed):
    builder, runtime = parsed[1]
    commands = [cmd for run in builder.all("RUN") for cmd in _pip_commands(run)]
    assert [cmd[0] for cmd in commands] == ["install", "install", "wheel", "install", "check"], commands
    for cmd in commands:
        if cmd[0] == "check" or "--no-index" in cmd:
            continue
        # The project's own wheel: no dependencies, and the locked setuptools as its backend.
        if cmd[-1] == ".":
            assert {"--no-deps", "--no-build-isolation"} <= set(cmd), cmd
            continue
        assert "--require-hashes" in cmd and "-r" in cmd, cmd
        assert cmd_arg(cmd, "-r") in ("requirements.lock", "requirements-build.lock"), cmd
    # imgproc itself (with the operator extra) from the wheel just built, and nothing else.
    (app,) = [cmd for cmd in commands if "--no-index" in cmd]
    assert app[0] == "install" and "--no-deps" in app and app[-1] == "imgproc[operator]"
    assert not [cmd for run in runtime.all("RUN") for cmd in _pip_commands(run)]


def test_both_stages_use_one_virtualenv_so_any_python_3_11_base_works(parsed):
    # The official image has /usr/local/bin/python, Debian's only /usr/bin/python3 (and PEP 668).
    global_args, (builder, runtime) = parsed
    assert builder.base == runtime.base == "${PYTHON_IMAGE}", "the venv's interpreter is in both"
    for stage in (builder, runtime):
        env = " ".join(stage.all("ENV"))
        assert "PATH=/opt/venv/bin:$PATH" in env and "VIRTUAL_ENV=/opt/venv" in env
    assert any("python3 -m venv /opt/venv" in run for run in builder.all("RUN"))
    # The build backend lives in a venv of its own, which the runtime stage does not copy.
    assert any("python3 -m venv /opt/build" in run for run in builder.all("RUN"))


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_the_lock_files_pin_every_package_with_hashes(lock):
    pins = _locked(ROOT / lock)
    assert pins
    for name, (_version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    header = (ROOT / lock).read_text().splitlines()[:3]
    assert any(line.strip() == "#    make lock" for line in header), "the lock names the command that regenerates it"


def _satisfied(requirements: list[str], pins: dict[str, tuple[str, list[str]]]) -> None:
    for requirement in map(Requirement, requirements):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is missing from the lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{name}=={pins[name][0]} does not satisfy {requirement}: run `make lock`"
        )


def test_the_lock_matches_pyproject_dependencies_and_the_operator_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked(ROOT / "requirements.lock")
    _satisfied(project["dependencies"] + project["optional-dependencies"]["operator"], pins)
    # Extras of dependencies are locked too (uvicorn[standard] -> uvloop, celery[redis] -> redis).
    assert {"uvloop", "httptools", "redis"} <= pins.keys()
    # The test and bench extras stay out of the image.
    for extra in ("test", "bench"):
        for requirement in map(Requirement, project["optional-dependencies"][extra]):
            needed_at_run_time = {"pyyaml"}  # uvicorn[standard] reads YAML logging configs
            assert canonicalize_name(requirement.name) not in pins.keys() - needed_at_run_time, requirement


def test_the_build_lock_matches_the_build_system():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    _satisfied(build["requires"], _locked(ROOT / "requirements-build.lock"))


def test_make_lock_targets_the_image_python(parsed):
    # The lock is resolved for the interpreter and platform of the image, not the developer's.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock:", makefile, re.M)
    target = re.search(r"^LOCK_TARGET := (.*)$", makefile, re.M).group(1)
    version = re.fullmatch(r"python:(3\.\d+)-slim.*", parsed[0]["PYTHON_IMAGE"]).group(1)
    assert f"--python-version {version}" in target and "x86_64-manylinux" in target
    assert makefile.count("--generate-hashes") == 2


def test_final_stage_has_no_build_tools_and_no_sources(parsed):
    runtime = parsed[1][-1]
    for run in runtime.all("RUN"):
        words = set(re.split(r"[\s;&|]+", run))
        assert not words & set(BUILD_TOOLS), run
        assert not any(w.endswith("-dev") for w in words), run
        assert "pip" not in words, "the runtime stage installs no Python package itself"
    # The application arrives in the builder's virtualenv, not as a source tree or wheel files.
    assert runtime.all("COPY") == ["--from=builder /opt/venv /opt/venv"]


def test_final_stage_runs_as_a_numeric_non_root_user(parsed):
    runtime = parsed[1][-1]
    user = runtime.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can be verified"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # USER comes after every RUN: nothing runs as root at container start.
    keywords = [kw for kw, _ in runtime.instructions]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_tini_is_pid_1_and_imgproc_the_entrypoint(parsed):
    runtime = parsed[1][-1]
    assert any("apt-get install" in r and "tini" in r.split() for r in runtime.all("RUN"))
    assert runtime.last("ENTRYPOINT") == '["tini", "--", "imgproc"]'
    assert runtime.last("CMD") == '["api"]'


def test_python_environment(parsed):
    env = " ".join(parsed[1][-1].all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert "IMGPROC_HOST=0.0.0.0" in env


def test_the_operator_extra_exists_and_the_console_script_is_imgproc():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "operator" in project["optional-dependencies"]
    assert project["scripts"]["imgproc"] == "app.cli:main"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching pattern wins, "!" re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path] + [path[:i] for i in range(len(path)) if path[i] == "/"]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            ignored = not negated
    return ignored


def test_build_context_holds_only_what_the_image_needs(parsed):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [shlex.split(args)[:-1] for args in parsed[1][0].all("COPY")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source, patterns), f"{source} is excluded from the build context"
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "charts/imgproc/values.yaml",
        "app/__pycache__/x.pyc",
        "data/imgproc.sqlite3",
        "k8s/kind.yaml",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
