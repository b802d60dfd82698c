"""Static checks of the Dockerfile (no Docker here): two stages, compilers only in the builder,
a numeric non-root user, tini as PID 1 in exec form, and a build context that holds only what
the image needs."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest

from tests.charts.rendering import ROOT

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


def test_the_dependency_layer_depends_on_pyproject_alone(parsed):
    # Editing the README or the code must not rebuild every dependency wheel.
    steps = parsed[1][0].instructions
    dependencies = next(i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "-r requirements.txt" in args)
    copied = [args for keyword, args in steps[:dependencies] if keyword == "COPY"]
    assert copied == ["pyproject.toml ./"]


def test_final_stage_has_no_build_tools_and_no_sources(parsed):
    runtime = parsed[1][-1]
    for run in runtime.all("RUN"):
        words = set(re.split(r"[\s;&|]+", run))
        assert not words & set(BUILD_TOOLS), run
        assert not any(w.endswith("-dev") for w in words), run
    # The application arrives as wheels from the builder, not as a source tree.
    assert runtime.all("COPY") == []
    (install,) = [r for r in runtime.all("RUN") if "pip install" in r]
    assert "--mount=type=bind,from=builder" in install and "--no-index" in install
    assert '"imgproc[operator]"' in install


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
        candidates = [path] + [path[: i] for i in range(len(path)) if path[i] == "/"]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            ignored = not negated
    return ignored


def test_build_context_holds_only_what_the_image_needs(parsed):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [shlex.split(args)[:-1] for args in parsed[1][0].all("COPY")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source, patterns), f"{source} is excluded from the build context"
    for path in (".git/config", ".venv/bin/python", "tests/conftest.py", "charts/imgproc/values.yaml",
                 "app/__pycache__/x.pyc", "data/imgproc.sqlite3", "k8s/kind.yaml"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
