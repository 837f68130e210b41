"""Where the studio keeps its files: one data directory per user.

``HAL_STUDIO_DATA`` overrides the location (tests and scripts use it).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

APP = "hal-studio"


def data_dir() -> Path:
    override = os.environ.get("HAL_STUDIO_DATA")
    path = Path(override) if override else Path(user_data_dir(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Derived files (dequantized weights, rating caches); safe to delete."""
    override = os.environ.get("HAL_STUDIO_CACHE")
    if override:
        path = Path(override)
    elif os.environ.get("HAL_STUDIO_DATA"):
        path = Path(os.environ["HAL_STUDIO_DATA"]) / "cache"
    else:
        path = Path(user_cache_dir(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return data_dir() / "studio.sqlite3"


def adapters_dir() -> Path:
    path = data_dir() / "adapters"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """The repository's resources/ folder (questionnaires, prompt sets)."""
    return Path(__file__).resolve().parent.parent / "resources"
