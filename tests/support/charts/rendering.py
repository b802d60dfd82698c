"""Running helm for the chart tests: constants, an isolated helm environment, and a
session-wide cache of `helm template` results."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "imgproc"
RELEASE = "rel"
NAMESPACE = "imgproc-test"
# The Kubernetes version the chart is rendered and validated for (kube-apiserver of the test bed).
KUBE_VERSION = "1.35.4"


def run_helm(bin_dir: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
        # No cluster: `helm template` must not reach one (lookup returns nothing).
        "KUBECONFIG": str(tmp / "no-kubeconfig"),
    }
    return subprocess.run([str(bin_dir / "helm"), *args], capture_output=True, text=True, env=env, timeout=120)


def template_args(values: dict[str, Any], values_file: Path) -> list[str]:
    values_file.write_text(json.dumps(values))
    return [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(values_file),
    ]


def notes_chart(tmp: Path) -> Path:
    """A copy of the chart whose NOTES.txt is rendered into a ConfigMap (`helm template` never
    renders NOTES; `helm install --dry-run` wants a cluster)."""
    import shutil

    copy_dir = tmp / "notes-chart"
    if not copy_dir.exists():
        shutil.copytree(CHART, copy_dir)
        notes = (copy_dir / "templates" / "NOTES.txt").read_text()
        (copy_dir / "templates" / "NOTES.txt").unlink()
        (copy_dir / "templates" / "_notes_for_tests.tpl").write_text(
            '{{- define "imgproc.testNotes" -}}\n' + notes + "\n{{- end }}\n"
        )
        (copy_dir / "templates" / "notes-for-tests.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            '  notes: {{ include "imgproc.testNotes" . | quote }}\n'
        )
    return copy_dir


class Renderer:
    """Session-wide cache of `helm template` results keyed by the values."""

    def __init__(self, bin_dir: Path, tmp: Path) -> None:
        self.bin_dir, self.tmp = bin_dir, tmp
        self._cache: dict[str, Any] = {}
        self._parsed: dict[str, list[dict[str, Any]]] = {}

    def _run(self, values: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        key = json.dumps([values, extra], sort_keys=True)
        if key not in self._cache:
            values_file = self.tmp / f"values-{len(self._cache)}.json"
            self._cache[key] = run_helm(self.bin_dir, self.tmp, *template_args(values, values_file), *extra)
        return self._cache[key]

    def render(self, values: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
        """The rendered objects (a fresh copy: tests may modify it)."""
        key = json.dumps([values, extra], sort_keys=True)
        if key not in self._parsed:
            result = self._run(values, *extra)
            assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
            self._parsed[key] = [doc for doc in yaml.load_all(result.stdout, Loader=SafeLoader) if doc]
        return copy.deepcopy(self._parsed[key])

    def notes(self, values: dict[str, Any]) -> str:
        """NOTES.txt as `helm install` would print it for these values."""
        values_file = self.tmp / f"notes-values-{len(self._cache)}.json"
        args = template_args(values, values_file)
        args[2] = str(notes_chart(self.tmp))
        result = run_helm(self.bin_dir, self.tmp, *args, "--show-only", "templates/notes-for-tests.yaml")
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)["data"]["notes"]

    def failure(self, values: dict[str, Any], *extra: str) -> str:
        result = self._run(values, *extra)
        assert result.returncode != 0, "helm template accepted values that must be rejected"
        return result.stderr
