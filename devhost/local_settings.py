"""Which local settings file applies, and copying its `Values` into the environment like Core Tools does."""
from __future__ import annotations

import os
from pathlib import Path

from core.settings import SettingsError, apply_local_settings, read_local_settings

LOCAL_SETTINGS = "local.settings.json"
SAMPLE_SETTINGS = "local.settings.sample.json"


def choose_settings_file(script_root: Path, override: Path | None = None) -> Path | None:
    """`override` if given (it must exist), else local.settings.json, else the sample; None when neither exists."""
    if override is not None:
        if not override.is_file():
            raise SettingsError(f"{override}: settings file not found")
        return override
    for name in (LOCAL_SETTINGS, SAMPLE_SETTINGS):
        candidate = script_root / name
        if candidate.is_file():
            return candidate
    return None


def load_local_settings(script_root: Path, override: Path | None = None,
                        environ: dict[str, str] | None = None) -> Path | None:
    """Copy the chosen file's Values into `environ` (variables already set win); return the file used."""
    path = choose_settings_file(script_root, override)
    if path is not None:
        apply_local_settings(read_local_settings(path), os.environ if environ is None else environ)
    return path
