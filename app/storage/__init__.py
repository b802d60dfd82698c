"""Originals and results, addressed by server-made keys only: the interface (`Storage`), the keys,
and the one storage object of a process. One module per backend:

- app.storage.filesystem: a directory shared by API and workers (the embedded default);
- app.storage.s3: an S3-compatible bucket (AWS, SeaweedFS, versitygw, ...), so API and workers
  share no volume;

and app.storage.copy_to_bucket, the `imgproc storage migrate` copy from the first to the second.

Both keep the same promises: a reader sees the old object or the whole new one, never part
of one; keys come from `new_original_key`/`result_key` and nothing else; a missing object is
FileNotFoundError. An unreachable or refusing object store is StorageUnavailable (retry later:
the API answers 503, the worker retries the run). The file system keeps its OSError semantics
(a full disk fails the task with a reason, as it always did).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol, TypeVar

from app.core.config import Settings, get_settings
from app.core.metrics import STORAGE_ERRORS, STORAGE_OPERATION_DURATION

T = TypeVar("T")

# Keys are made here (task ids, random tokens), never from client input; the pattern is
# a second line of defence against a key that could climb out of the storage root.
KEY_PATTERN = re.compile(
    r"^(originals|results)/[A-Za-z0-9_-]{1,64}(\.jpg)?$"  # an original; a result from before presets
    r"|^results/[0-9]{1,19}/[a-z0-9-]{1,32}\.(jpeg|webp|avif)$"  # a preset's variant
)
_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".avif": "image/avif"}
CHUNK = 1024 * 1024


class StorageUnavailable(Exception):
    """The store cannot be reached or refuses to work right now: retry later."""


@dataclass(frozen=True)
class StoredObject:
    size: int
    # Changes whenever the content may have changed (mtime for files, the S3 ETag for objects).
    version: str


def check_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def new_original_key() -> str:
    return f"originals/{secrets.token_hex(16)}"


def result_key(task_id: int) -> str:
    # Derived from the task id: a re-run overwrites the same object, never a second one.
    return f"results/{task_id}.jpg"


def variants_prefix(task_id: int) -> str:
    """Where a task's preset variants are (app.tasks.outputs.variant_key)."""
    return f"results/{task_id}/"


def content_type_for(key: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(key).suffix, "application/octet-stream")


def delete_results(storage: Storage, task_id: int) -> None:
    """Every result of a task: the legacy one and each variant."""
    for key in [result_key(task_id), *storage.list_keys(variants_prefix(task_id))]:
        storage.delete(key)


class Storage(Protocol):
    backend: str

    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        keep_cached: bool = True,
    ) -> None:
        """Atomic. `data` may be a file object: it is copied in chunks, not read whole.
        ``keep_cached=False`` is a hint that this process will not read the object again (the
        file system drops its pages from the page cache; S3 has nothing to drop)."""

    def read(self, key: str) -> bytes: ...

    def stat(self, key: str) -> StoredObject | None: ...

    def exists(self, key: str) -> bool: ...

    def iter_bytes(self, key: str) -> Iterator[bytes]: ...

    def local_path(self, key: str) -> Path | None:
        """The file behind a key when there is one (the API then serves it with FileResponse)."""

    def signed_url(self, key: str, *, filename: str, cache_seconds: int) -> str | None:
        """A short-lived URL a browser can fetch the object from, or None (stream it instead)."""

    def public_origin(self) -> str:
        """scheme://host of the URLs signed_url hands out, "" when it hands out none (the results
        come from the API itself). The page admits images from it (Content-Security-Policy)."""

    def delete(self, key: str) -> None:
        """Removes the object; a missing one is fine."""

    def check(self) -> None:
        """Raises StorageUnavailable unless the store answers (readiness)."""

    def list_keys(self, prefix: str) -> Iterator[str]: ...


def make_storage(settings: Settings) -> Storage:
    # Imported here: the backends import this module's interface.
    from app.storage.filesystem import FileSystemStorage
    from app.storage.s3 import S3Storage

    if settings.STORAGE_BACKEND == "s3":
        return S3Storage(settings)
    return FileSystemStorage(settings.storage_dir)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, StorageUnavailable):
        return "unavailable"
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    return "other"


class MeteredStorage:
    """A backend whose calls to the store are timed (imgproc_storage_operation_duration_seconds)
    and whose failures are counted (imgproc_storage_errors_total): one wrapper at the interface,
    the same for every backend. What needs no call to the store (local_path, signed_url: S3
    signs locally, public_origin) passes straight through."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.backend = inner.backend

    def _measured(self, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        except Exception as exc:
            STORAGE_ERRORS.labels(self.backend, operation, _error_kind(exc)).inc()
            raise
        finally:
            STORAGE_OPERATION_DURATION.labels(self.backend, operation).observe(time.perf_counter() - started)

    def _measured_stream(self, operation: str, items: Iterator[T]) -> Iterator[T]:
        """Times the wait for the first item (the store's answer; what follows is paced by whoever
        consumes the stream) and counts a failure at any point."""
        try:
            first = self._measured(operation, lambda: next(items, None))
            if first is None:
                return
            yield first
            try:
                yield from items
            except Exception as exc:
                STORAGE_ERRORS.labels(self.backend, operation, _error_kind(exc)).inc()
                raise
        finally:
            close = getattr(items, "close", None)  # a consumer that stops early frees the store's stream now
            if close is not None:
                close()

    def write(self, key: str, data: bytes | BinaryIO, **options: Any) -> None:
        """Storage.write; ``options`` (content_type, keep_cached) go to the backend as given."""
        self._measured("write", lambda: self.inner.write(key, data, **options))

    def read(self, key: str) -> bytes:
        return self._measured("read", lambda: self.inner.read(key))

    def stat(self, key: str) -> StoredObject | None:
        return self._measured("stat", lambda: self.inner.stat(key))

    def exists(self, key: str) -> bool:
        return self._measured("exists", lambda: self.inner.exists(key))

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        return self._measured_stream("stream", self.inner.iter_bytes(key))

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def signed_url(self, key: str, *, filename: str, cache_seconds: int) -> str | None:
        return self.inner.signed_url(key, filename=filename, cache_seconds=cache_seconds)

    def public_origin(self) -> str:
        return self.inner.public_origin()

    def delete(self, key: str) -> None:
        self._measured("delete", lambda: self.inner.delete(key))

    def check(self) -> None:
        self._measured("check", self.inner.check)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return self._measured_stream("list", self.inner.list_keys(prefix))


@lru_cache
def get_storage() -> Storage:
    """The process's one storage object (and so its one S3 client), metered."""
    return MeteredStorage(make_storage(get_settings()))
