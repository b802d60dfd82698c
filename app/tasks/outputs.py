"""A task's outputs: which presets it asked for, which output is its one legacy result, and
where each is stored. Shared by the API (it derives every key itself, whatever a report says)
and the worker."""

from __future__ import annotations

from collections.abc import Sequence

from app.imaging.presets import OutputFormat, Preset, choose_presets
from app.storage import result_key


def parse_names(field: str) -> tuple[str, ...] | None:
    """The comma-separated names of the upload's ``presets`` field; None when it names none
    (app.imaging.presets.choose_presets then takes the default presets)."""
    names = tuple(name.strip() for name in field.split(",") if name.strip())
    return names or None


def stored_names(presets: Sequence[Preset]) -> str:
    return ",".join(preset.name for preset in presets)


def presets_of(configured: Sequence[Preset], stored: str | None) -> tuple[Preset, ...]:
    """The presets a task asked for (Task.presets; None, a task from before presets: the
    defaults). PresetError when one of them is no longer configured."""
    return choose_presets(configured, tuple(stored.split(",")) if stored else None)


def primary(presets: Sequence[Preset]) -> tuple[str, OutputFormat]:
    """The output the legacy fields show (result_path, /result, the metadata's sizes): the JPEG of
    the first preset that makes one (older clients expect a JPEG), else the first preset's first
    format."""
    with_jpeg = next((preset for preset in presets if OutputFormat.JPEG in preset.formats), None)
    if with_jpeg is not None:
        return with_jpeg.name, OutputFormat.JPEG
    return presets[0].name, presets[0].formats[0]


def variant_key(task_id: int, preset: str, output: OutputFormat, presets: Sequence[Preset]) -> str:
    """Derived from the task id, so a re-run overwrites and never duplicates. The primary JPEG
    keeps the key every result had before presets (``results/<id>.jpg``), so result_path stays
    what older clients know."""
    if (preset, output) == primary(presets) and output is OutputFormat.JPEG:
        return result_key(task_id)
    return f"results/{task_id}/{preset}.{output.value}"
