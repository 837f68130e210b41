"""Small per-user preferences (recent models, last sampling) in the data directory.

A JSON file rather than QSettings so that ``HAL_STUDIO_DATA`` isolates tests
and scripts completely. A damaged file is ignored, never fatal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine import paths

MAX_RECENT = 8


class Prefs:
    def __init__(self, path: Path | None = None):
        self.path = path or paths.data_dir() / "studio-prefs.json"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._data = {}

    def get(self, key: str, default=None):
        return self._data.get(key, default)

    def set(self, key: str, value) -> None:
        self._data[key] = value
        self._save()

    def recent(self, kind: str) -> list[str]:
        items = self._data.get(f"recent_{kind}", [])
        return [p for p in items if isinstance(p, str)]

    def add_recent(self, kind: str, path: str) -> None:
        items = [path] + [p for p in self.recent(kind) if p != path]
        self.set(f"recent_{kind}", items[:MAX_RECENT])

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self._data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # preferences are a convenience; never block the researcher
