"""What a job sees of the engine: progress, metrics, logs and a cancel flag.

Jobs are plain functions ``run(config, state)``; they know nothing about
pipes, so tests drive them with ``RecordingState`` and no process.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

Emit = Callable[[str, dict], None]


class JobState:
    """The engine-side handle of one running command."""

    def __init__(self, emit: Emit, progress_interval_s: float = 0.1):
        self._emit = emit
        self._cancel = threading.Event()
        self._interval = progress_interval_s
        self._last_progress = 0.0
        self.started = time.monotonic()

    # -- control --------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- reporting ------------------------------------------------------------
    def progress(self, done: float, total: float, message: str = "", force: bool = False) -> None:
        """Throttled: at most one event per interval, plus the final one."""
        t = time.monotonic()
        if not force and done < total and t - self._last_progress < self._interval:
            return
        self._last_progress = t
        elapsed = t - self.started
        eta = elapsed / done * (total - done) if done > 0 and total >= done else None
        self._emit("progress", {"done": done, "total": total, "message": message,
                                "elapsed_s": round(elapsed, 3),
                                "eta_s": None if eta is None else round(eta, 1)})

    def metric(self, name: str, value: float, step: int) -> None:
        self._emit("metric", {"name": name, "value": value, "step": step})

    def log(self, text: str, level: str = "info") -> None:
        self._emit("log", {"level": level, "text": text})

    def token(self, text: str) -> None:
        self._emit("token", {"text": text})

    def event(self, type_: str, content: dict[str, Any]) -> None:
        self._emit(type_, content)


class RecordingState(JobState):
    """A JobState that keeps every event in a list (for tests)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        super().__init__(lambda t, c: self.events.append((t, c)), progress_interval_s=0.0)

    def of_type(self, type_: str) -> list[dict]:
        return [c for t, c in self.events if t == type_]
