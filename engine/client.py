"""A plain-Python client of the engine process, for the command line,
benchmarks and tests (the studio has its own Qt client)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.protocol import Message, ProtocolError, decode


@dataclass
class Reply:
    """Everything the engine sent for one command, with arrival times."""

    id: str
    events: list[tuple[float, Message]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    sent_at: float = 0.0

    @property
    def final(self) -> Message | None:
        for _, msg in reversed(self.events):
            if msg.type in ("result", "error"):
                return msg
        return None

    def token_times(self) -> list[float]:
        return [t for t, m in self.events if m.type == "token"]

    def text(self) -> str:
        return "".join(m.content.get("text", "") for _, m in self.events if m.type == "token")


class EngineProcess:
    """Starts ``python -m engine`` and matches events to commands by parent id."""

    def __init__(self, env: dict[str, str] | None = None, python: str = sys.executable,
                 cwd: str | None = None):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if cwd is not None:  # ``-m engine`` must still find the package
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([python, "-m", "engine"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd)
        self._replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self.orphans: "queue.Queue[Message]" = queue.Queue()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            t = time.perf_counter()
            try:
                msg = decode(line)
            except ProtocolError:
                continue
            with self._lock:
                reply = self._replies.get(msg.parent or "")
            if reply is None:
                self.orphans.put(msg)
                continue
            reply.events.append((t, msg))
            if msg.type in ("result", "error"):
                reply.done.set()
        with self._lock:  # the engine is gone: release every waiter
            for reply in self._replies.values():
                reply.done.set()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip())

    def send(self, type_: str, content: dict[str, Any] | None = None) -> Reply:
        msg = Message(type=type_, content=content or {})
        reply = Reply(id=msg.id)
        with self._lock:
            self._replies[msg.id] = reply
        reply.sent_at = time.perf_counter()
        self.send_raw(msg.encode())
        return reply

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, type_: str, content: dict[str, Any] | None = None,
                timeout: float = 600) -> Message:
        """Send and wait for the final event; raises if none comes."""
        reply = self.send(type_, content)
        if not reply.done.wait(timeout) or reply.final is None:
            raise TimeoutError(f"no answer to {type_} within {timeout}s "
                               f"(engine alive: {self.proc.poll() is None})")
        return reply.final

    def rss_mb(self) -> float:
        """The engine's resident memory now (VmRSS)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mb(self) -> float:
        """The engine's high-water mark of resident memory (VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def close(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            try:
                self.request("shutdown", timeout=timeout)
            except (OSError, TimeoutError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
