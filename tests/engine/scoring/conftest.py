"""Fixtures for the scoring tests: a fresh data dir per test, small hand-made files,
and the shared HAL data when it is present (tests needing it skip otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.scoring import shared_data_dir


@pytest.fixture(autouse=True)
def _fresh_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("HAL_STUDIO_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def shared() -> Path:
    path = shared_data_dir()
    if not (path / "turing_gpt5_train.csv").is_file():
        pytest.skip(f"the shared HAL data is not at {path} (set HAL_SHARED_DATA)")
    return path
