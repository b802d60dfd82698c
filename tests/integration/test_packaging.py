"""The wheel the Dockerfile installs carries every role and its data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_the_api_worker_operator_migrations_and_page(tmp_path):
    build_dir_existed = (ROOT / "build").exists()
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
            check=True,
            capture_output=True,
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        if not build_dir_existed:  # setuptools builds in the source tree
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("imgproc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"app/main.py", "worker/tasks.py", "autoscaler/main.py"} <= names
    assert "app/migrations/versions/0001_initial.py" in names and "app/migrations/env.py" in names
    assert "app/static/frontend/index.html" in names
    assert not any(name.startswith(("operator/", "tests/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "imgproc = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
