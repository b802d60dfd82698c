"""The lock files (requirements.lock, requirements-build.lock) read back: name -> (version, hashes)."""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name


def _locked(path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256...])} of a pip-compile/uv requirements file with hashes."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        name, _, version = spec.strip().partition("==")
        assert version, f"{path.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(name.split("[")[0])] = (version, [o.strip() for o in options])
    return pins
