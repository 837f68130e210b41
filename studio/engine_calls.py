"""Callbacks for one widget's own engine commands.

``EngineClient`` reports every command's events on shared signals; a view
that sends a few commands of its own wants only its answers. ``EngineCalls``
keeps the ids it sent and routes results, errors and progress to the
callbacks given with each call.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject

from studio.engine_client import EngineClient

Callback = Callable[[dict], None]


class EngineCalls(QObject):
    """Send commands and get each one's result, error or progress back by callback."""

    def __init__(self, client: EngineClient, parent: QObject | None = None):
        super().__init__(parent)
        self.client = client
        self._calls: dict[str, tuple[Callback | None, Callback | None, Callback | None]] = {}
        client.sig_result.connect(self.on_result)
        client.sig_error.connect(self.on_error)
        client.sig_progress.connect(self.on_progress)

    def supports(self, type_: str) -> bool:
        """Whether the running engine said (in its hello) that it knows this command."""
        return type_ in (self.client.info.get("capabilities") or [])

    def call(self, type_: str, content: dict | None = None, on_result: Callback | None = None,
             on_error: Callback | None = None, on_progress: Callback | None = None) -> str:
        command_id = self.client.send(type_, content or {})
        self._calls[command_id] = (on_result, on_error, on_progress)
        return command_id

    def cancel(self, command_id: str) -> None:
        self.client.cancel(command_id)

    def pending(self) -> list[str]:
        return list(self._calls)

    def on_result(self, command_id: str, content: dict) -> None:
        callbacks = self._calls.pop(command_id, None)
        if callbacks and callbacks[0]:
            callbacks[0](content)

    def on_error(self, command_id: str, content: dict) -> None:
        callbacks = self._calls.pop(command_id, None)
        if callbacks and callbacks[1]:
            callbacks[1](content)

    def on_progress(self, command_id: str, content: dict) -> None:
        callbacks = self._calls.get(command_id)
        if callbacks and callbacks[2]:
            callbacks[2](content)
