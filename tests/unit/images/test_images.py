"""scripts/images and k8s/images checked without building anything: shellcheck, the documented
verbs, the user ids the subcharts set, the entrypoints' variables. The real builds are
tests/cluster/test_images.py."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.support.charts.rendering import ROOT

SCRIPT = ROOT / "scripts" / "images"
IMAGES = ROOT / "k8s" / "images"
ENTRYPOINTS = sorted(IMAGES.glob("*/docker-entrypoint.sh"))


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def test_the_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        _missing("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT), *map(str, ENTRYPOINTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_script_documents_every_verb_it_accepts():
    text = SCRIPT.read_text()
    verbs = set(re.findall(r"^  ([a-z-]+)(?: \| [a-z|-]+)?\)", text, re.M)) - {"-h"}
    documented = set(re.findall(r"^#   scripts/images (?:--refresh )?([a-z]+)", text, re.M))
    assert verbs - {"help"} == documented
    usage = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "scripts/images app [TAG]" in usage.stderr
    assert subprocess.run([str(SCRIPT), "no-such-verb"], capture_output=True).returncode == 2


def _containerfile_ids(name: str) -> tuple[str, int, int]:
    """(USER, --uid of useradd, --gid of groupadd) in k8s/images/<name>/Containerfile."""
    text = (IMAGES / name / "Containerfile").read_text()
    user = re.search(r"^USER (\S+)$", text, re.M).group(1)
    return (
        user,
        int(re.search(r"useradd [^\n]*--uid (\d+)", text).group(1)),
        int(re.search(r"groupadd [^\n]*--gid (\d+)", text).group(1)),
    )


def _values(subchart: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / "charts" / "imgproc" / "charts" / subchart / "values.yaml").read_text())


@pytest.mark.parametrize(
    ("image", "subchart", "pod_context"),
    [
        ("postgres", "postgresql", ("primary", "podSecurityContext")),
        ("redis", "redis", ("podSecurityContext",)),
    ],
)
def test_the_local_images_run_as_the_ids_the_subcharts_set(image, subchart, pod_context):
    context = _values(subchart)
    for key in pod_context:
        context = context[key]
    user, uid, gid = _containerfile_ids(image)
    assert user == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert (uid, gid) == (context["runAsUser"], context["fsGroup"])


def test_the_postgres_entrypoint_reads_every_variable_the_subchart_sets():
    template = (ROOT / "charts/imgproc/charts/postgresql/templates/statefulset.yaml").read_text()
    names = set(re.findall(r"- name: (POSTGRES_\w+|PGDATA)", template))
    assert names >= {"POSTGRES_USER", "POSTGRES_PASSWORD_FILE", "POSTGRES_DB", "PGDATA"}
    entrypoint = (IMAGES / "postgres" / "docker-entrypoint.sh").read_text()
    for name in names:
        base = name.removesuffix("_FILE")
        assert f"file_env {base}" in entrypoint or f"${name}" in entrypoint, name


def test_the_skaffold_verb_needs_skaffolds_image_name(tmp_path):
    # While a build holds the store's lock (held here): the mistake is told at once, not after
    # the lock's wait (flock -w 1800).
    store = tmp_path / "images"
    store.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "IMAGE"} | {"IMGPROC_IMAGES_DIR": str(store)}
    with (store / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = subprocess.run([str(SCRIPT), "skaffold"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "IMAGE is not set" in result.stderr


def test_the_store_size_survives_files_vanishing_under_du(tmp_path):
    # GNU du prints the total and exits 1 when a file vanishes during its walk (an unlocked
    # `import` or `archive` in the same store). Every build verb ends by measuring the store:
    # here `debian`, whose image the fake buildah reports as present, so nothing is built.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "du": 'echo "du: cannot access \'x\': No such file or directory" >&2\nprintf "42\\t%s\\n" "$2"\nexit 1',
        "buildah": "exit 0",
    }.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    env = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "IMGPROC_IMAGES_DIR": str(tmp_path / "images"),
        "IMGPROC_BUILDAH_DRIVER": "vfs",
    }
    result = subprocess.run([str(SCRIPT), "debian"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("localhost/imgproc-debian:bookworm-") and "is up to date" in result.stderr
