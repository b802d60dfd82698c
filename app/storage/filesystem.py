"""The file-system backend: a directory shared by API and workers (the embedded default). It keeps
its OSError semantics (a full disk fails the task with a reason)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.storage import CHUNK, StorageUnavailable, StoredObject, check_key


class FileSystemStorage:
    backend = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        keep_cached: bool = True,
    ) -> None:
        """Atomic: readers see the old file or the whole new one, never a partial write.

        ``keep_cached=False``: once the data is on disk (fsync), its pages leave this machine's page
        cache. For a file this process will not read again (the API and the originals: the worker
        reads them, usually on another node). Measured on the 2-vCPU development VM, writing a 4 MB
        original costs 6-8 ms of CPU when the kernel has to find fresh pages for it and 1.5 ms when
        the pages of the previous upload are handed back this way; reading it back from disk costs
        the worker about 1 ms more than from the cache.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                if isinstance(data, bytes | bytearray | memoryview):
                    fh.write(data)
                else:
                    while chunk := data.read(CHUNK):
                        fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
                if not keep_cached and hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def stat(self, key: str) -> StoredObject | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return StoredObject(size=st.st_size, version=str(st.st_mtime_ns))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with open(self.path(key), "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def signed_url(self, key: str, *, filename: str, cache_seconds: int) -> str | None:
        return None

    def public_origin(self) -> str:
        return ""

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"{self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"{self.root} is not a writable directory")

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if base.is_dir():
            for path in sorted(base.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    yield f"{prefix.rstrip('/')}/{path.name}"
