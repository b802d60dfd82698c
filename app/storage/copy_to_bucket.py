"""`imgproc storage migrate`: copies the originals and results of a file-system installation
into the configured bucket, for users moving to the S3 backend.

Resumable: an object already in the bucket with the file's size is skipped, so a run stopped
half-way (or failed on an outage) is simply run again. Every copy is verified by reading the
object's size back. Files whose names are not keys this service makes (temporary files of
an interrupted write, anything put there by hand) are skipped and listed. Nothing is deleted
from the file system: remove it once the service runs on the bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.storage import KEY_PATTERN, Storage, StorageUnavailable, content_type_for
from app.storage.filesystem import FileSystemStorage

KINDS = ("originals", "results")


@dataclass
class MigrationReport:
    copied: int = 0
    skipped: int = 0  # already in the bucket with the same size
    ignored: list[str] = field(default_factory=list)  # not a key of ours
    mismatched: list[str] = field(default_factory=list)  # size read back differs
    bytes_copied: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatched


def _files(root: Path) -> list[tuple[str, Path]]:
    """originals/<key>, results/<id>.jpg (before presets) and results/<id>/<preset>.<ext>."""
    found = []
    for kind in KINDS:
        directory = root / kind
        if directory.is_dir():
            found.extend(
                (path.relative_to(root).as_posix(), path) for path in sorted(directory.rglob("*")) if path.is_file()
            )
    return found


def migrate(
    source: FileSystemStorage, target: Storage, *, dry_run: bool = False, progress: Callable[[str], None] = print
) -> MigrationReport:
    if target.backend == source.backend:
        raise ValueError("the target is the file system too: set IMGPROC_STORAGE_BACKEND=s3 and the bucket")
    report = MigrationReport()
    for key, path in _files(source.root):
        if not KEY_PATTERN.fullmatch(key):
            report.ignored.append(str(path))
            continue
        size = path.stat().st_size
        existing = target.stat(key)
        if existing is not None and existing.size == size:
            report.skipped += 1
            continue
        if dry_run:
            progress(f"would copy {key} ({size} bytes)")
            report.copied += 1
            continue
        content_type = content_type_for(key)
        with open(path, "rb") as fh:
            target.write(key, fh, content_type=content_type)
        stored = target.stat(key)
        if stored is None or stored.size != size:
            report.mismatched.append(key)
            progress(f"MISMATCH {key}: {size} bytes on disk, {stored.size if stored else 'none'} in the bucket")
            continue
        report.copied += 1
        report.bytes_copied += size
        if report.copied % 100 == 0:
            progress(f"copied {report.copied} objects ...")
    return report


def run(source_dir: Path, target: Storage, *, dry_run: bool = False) -> int:
    if not source_dir.is_dir():
        print(f"no such directory: {source_dir}")
        return 2
    try:
        report = migrate(FileSystemStorage(source_dir), target, dry_run=dry_run)
    except StorageUnavailable as exc:
        print(f"storage unavailable: {exc}; nothing is lost, run the command again")
        return 1
    verb = "would copy" if dry_run else "copied"
    print(
        f"{verb} {report.copied} object(s) ({report.bytes_copied} bytes), {report.skipped} already there, "
        f"{len(report.ignored)} file(s) ignored, {len(report.mismatched)} size mismatch(es)"
    )
    for path in report.ignored:
        print(f"ignored (not a key of this service): {path}")
    return 0 if report.ok else 1
