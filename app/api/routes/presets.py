"""The configured presets: what an upload may ask for in its `presets` field."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SettingsDep
from app.schemas import PresetPublic, PresetsPublic

router = APIRouter(tags=["presets"])


@router.get("/api/presets", response_model=PresetsPublic)
def list_presets(settings: SettingsDep) -> PresetsPublic:
    """The presets, in configured order; an upload that names none gets those marked default."""
    return PresetsPublic(
        items=[
            PresetPublic(
                name=preset.name,
                width=preset.width,
                height=preset.height,
                fit=preset.fit,
                formats=list(preset.formats),
                default=preset.default,
                animated=preset.animated,
            )
            for preset in settings.presets
        ],
        max_outputs_per_task=settings.MAX_OUTPUTS_PER_TASK,
    )
