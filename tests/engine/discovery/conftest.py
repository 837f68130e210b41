"""Discovery tests: a fresh data dir per test, offline hub."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("HAL_STUDIO_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
