"""Originals and results on a shared file system, addressed by server-made keys only."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

# Keys are made here (task ids, random tokens), never from client input; the pattern is
# a second line of defence against a key that could climb out of the storage root.
_KEY = re.compile(r"^(originals|results)/[A-Za-z0-9_-]{1,64}(\.jpg)?$")


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    @staticmethod
    def new_original_key() -> str:
        return f"originals/{secrets.token_hex(16)}"

    @staticmethod
    def result_key(task_id: int) -> str:
        # Derived from the task id: a re-run overwrites the same file, never a second one.
        return f"results/{task_id}.jpg"

    def write(self, key: str, data: bytes) -> None:
        """Atomic: readers see the old file or the whole new one, never a partial write."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
