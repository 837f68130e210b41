"""The studio's one handle on the engine process: a QProcess and typed signals.

Widgets never touch the process. Lines from the engine's stdout are decoded
with ``engine.protocol`` and dispatched ``_handle_<type>`` style (as qtconsole
does); stderr lines go to ``sig_log`` and the last few are kept so a crash can
be explained.
"""

from __future__ import annotations

import os
import re
import sys
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

import engine
from engine.protocol import PROTOCOL_VERSION, Message, ProtocolError, decode

KNOWN_PROTOCOLS = frozenset({PROTOCOL_VERSION})
CONTROL_TYPES = ("hello", "ping", "cancel", "shutdown")
STATES = ("starting", "ready", "crashed", "stopped")
SIGNAL_HINTS = {  # what a researcher can make of the signal that ended the engine
    6: " It aborted (SIGABRT): native code stopped on a failed check or a memory error.",
    9: " It was killed (SIGKILL): the system does this when memory runs out, or someone ended it.",
    11: " It crashed in native code (SIGSEGV).",
    7: " It crashed in native code (SIGBUS): often a model file changed or was cut short while in use.",
}


# What Python's faulthandler prints after a native crash: stacks, not the cause.
_DUMP = re.compile(r"^(\s+File \"|Thread 0x|Current thread 0x|Extension modules:|<no Python frame>|"
                   r"Traceback \(most recent call last\)|\s*$)")
_REASON = re.compile(r"(?i)(\bfatal\b|error|assert|abort|\bfailed\b|out of memory|cannot allocate|\bkilled\b|"
                     r"segmentation fault|exception|bad_alloc)")
_GENERIC = "Fatal Python error"  # faulthandler's own headline ("... Aborted"): a last resort
FRESH_REASON_LINES = 20


def is_reason(line: str) -> bool:
    """A stderr line that reads like why the engine failed (not a stack line)."""
    return bool(_REASON.search(line)) and not _DUMP.match(line) and not line.startswith(_GENERIC)


def crash_reason(tail: list[str], reasons: list[str] | None = None) -> str:
    """The line that most likely names why the engine died: the last reason
    line seen (``reasons``, else found in ``tail``), skipping a stack dump and
    faulthandler's generic headline; else that headline; else the last line."""
    lines = [line.strip() for line in tail if not _DUMP.match(line)]
    found = list(reasons or []) or [line for line in lines if is_reason(line)]
    if found:
        return found[-1].strip()
    generic = [line for line in lines if line.startswith(_GENERIC)]
    return generic[-1] if generic else (lines[-1] if lines else "")


def default_command() -> list[str]:
    return [sys.executable, "-m", "engine"]


class EngineClient(QObject):
    """Starts ``python -m engine``, speaks the wire protocol, reports its health."""

    sig_token = Signal(str, str)
    """A piece of streamed reply text: (command id, text)."""
    sig_progress = Signal(str, dict)
    """Progress of a command: (command id, {done, total, message, ...})."""
    sig_metric = Signal(str, dict)
    """A training or scoring metric: (command id, {name, value, step})."""
    sig_result = Signal(str, dict)
    """A command finished: (command id, result content)."""
    sig_error = Signal(str, dict)
    """A command failed: (command id, {kind, message, detail}). Also sent for
    every command in flight when the engine dies (kind ``engine_crashed``)."""
    sig_log = Signal(str)
    """One line of the engine's stderr (or an engine ``log`` event)."""
    sig_state_changed = Signal(str)
    """The engine's health: starting, ready, crashed or stopped."""

    def __init__(self, parent: QObject | None = None, command: list[str] | None = None,
                 env: dict[str, str] | None = None, hello_timeout_s: float = 60.0):
        super().__init__(parent)
        self._command = list(command or default_command())
        self._extra_env = dict(env or {})
        self._hello_timeout_ms = int(hello_timeout_s * 1000)
        self._proc: QProcess | None = None
        self._state = "stopped"
        self._stdout_buf = b""
        self._stderr_buf = b""
        self._stderr_tail: deque[str] = deque(maxlen=80)
        # reason lines kept apart (a stack dump can push them out of the tail), each with
        # the count of plain (non-dump) lines before it: a reason long since followed by
        # ordinary output is stale
        self._reasons: deque[tuple[int, str]] = deque(maxlen=4)
        self._plain_lines = 0
        self._in_flight: dict[str, str] = {}  # command id -> type
        self._pending: list[Message] = []  # sent before the hello was answered
        self._hello_id: str | None = None
        self._expect_exit = False
        self.info: dict = {}  # the hello reply: protocol, engine_version, capabilities, pid
        self.crash_message = ""
        self._hello_timer = QTimer(self)
        self._hello_timer.setSingleShot(True)
        self._hello_timer.timeout.connect(self.on_hello_timeout)

    # -- public API --------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    def pid(self) -> int:
        return int(self._proc.processId()) if self._proc is not None else 0

    def in_flight(self) -> dict[str, str]:
        return dict(self._in_flight)

    def stderr_tail(self) -> list[str]:
        """The engine's last stderr lines (kept to explain a crash)."""
        return [line for line in self._stderr_tail if line.strip()]

    def crash_reason(self) -> str:
        """The engine's stderr line that most likely says why it died."""
        fresh = [text for n, text in self._reasons if self._plain_lines - n <= FRESH_REASON_LINES]
        return crash_reason(list(self._stderr_tail), fresh)

    def start(self) -> None:
        """Start the engine process (a no-op while one is running)."""
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            return
        self._stdout_buf = self._stderr_buf = b""
        self._stderr_tail.clear()
        self._reasons.clear()
        self._plain_lines = 0
        self._expect_exit = False
        self.info = {}
        self.crash_message = ""
        proc = QProcess(self)
        proc.setProcessEnvironment(self._environment())
        proc.readyReadStandardOutput.connect(lambda p=proc: self._on_stdout(p))
        proc.readyReadStandardError.connect(lambda p=proc: self._on_stderr(p))
        proc.started.connect(lambda p=proc: self._on_started(p))
        proc.finished.connect(lambda code, status, p=proc: self._on_finished(p, code, status))
        proc.errorOccurred.connect(lambda err, p=proc: self._on_process_error(p, err))
        self._proc = proc
        self._set_state("starting")
        proc.start(self._command[0], self._command[1:])

    def send(self, type_: str, content: dict | None = None) -> str:
        """Send a command and return its id; events for it carry that id."""
        msg = Message(type=type_, content=dict(content or {}))
        if type_ not in CONTROL_TYPES:
            self._in_flight[msg.id] = type_
        if self._state == "ready":
            self._write(msg)
        elif self._state == "starting":
            self._pending.append(msg)
        else:
            QTimer.singleShot(0, lambda: self._fail(msg.id, "engine_not_running",
                                                    "The engine is not running; restart it first."))
        return msg.id

    def cancel(self, command_id: str) -> None:
        """Ask the engine to stop a command at its next step."""
        if command_id in self._in_flight and self._state == "ready":
            self._write(Message(type="cancel", content={"target": command_id}))
        elif any(m.id == command_id for m in self._pending):
            self._pending = [m for m in self._pending if m.id != command_id]
            self._fail(command_id, "cancelled", "Cancelled before it was sent.")

    def restart(self) -> None:
        """Stop the engine if it runs (in-flight commands fail) and start a new one."""
        self._stop_process(reason="The engine was restarted.")
        self.start()

    def shutdown(self, wait_ms: int = 3000) -> None:
        """Ask the engine to exit, then make sure it has."""
        self._stop_process(reason="The engine was shut down.", wait_ms=wait_ms)

    # -- process plumbing -----------------------------------------------------------
    def _environment(self) -> QProcessEnvironment:
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        root = str(Path(engine.__file__).resolve().parent.parent)
        old = env.value("PYTHONPATH", "")
        env.insert("PYTHONPATH", root + (os.pathsep + old if old else ""))
        for key, value in self._extra_env.items():
            env.insert(key, value)
        return env

    def _stop_process(self, reason: str, wait_ms: int = 3000) -> None:
        proc = self._proc
        self._pending.clear()
        if proc is None or proc.state() == QProcess.ProcessState.NotRunning:
            self._fail_all("engine_stopped", reason)
            if self._state not in ("crashed", "stopped"):
                self._set_state("stopped")
            return
        self._expect_exit = True
        if self._state == "ready":
            self._write(Message(type="shutdown"))
        proc.closeWriteChannel()
        if not proc.waitForFinished(wait_ms):
            proc.kill()
            proc.waitForFinished(2000)
        self._fail_all("engine_stopped", reason)

    def _write(self, msg: Message) -> None:
        if self._proc is not None:
            self._proc.write(msg.encode())

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.sig_state_changed.emit(state)

    def _fail(self, command_id: str, kind: str, message: str, detail: str = "") -> None:
        self._in_flight.pop(command_id, None)
        self.sig_error.emit(command_id, {"kind": kind, "message": message, "detail": detail})

    def _fail_all(self, kind: str, message: str, detail: str = "") -> None:
        for command_id in list(self._in_flight):
            self._fail(command_id, kind, message, detail)

    def _crash(self, message: str) -> None:
        """Declare the engine dead: kill what is left, fail what was in flight."""
        self.crash_message = message
        self._hello_timer.stop()
        self._pending.clear()
        proc = self._proc
        if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
            self._expect_exit = True
            proc.kill()
        self._fail_all("engine_crashed", message, "\n".join(self._stderr_tail))
        self._set_state("crashed")

    # -- slots --------------------------------------------------------------------
    def _on_started(self, proc: QProcess) -> None:
        if proc is not self._proc:
            return
        hello = Message(type="hello")
        self._hello_id = hello.id
        self._write(hello)
        self._hello_timer.start(self._hello_timeout_ms)

    def on_hello_timeout(self) -> None:
        if self._state == "starting":
            self._crash(f"The engine did not answer within {self._hello_timeout_ms // 1000} s.")

    def _on_stdout(self, proc: QProcess) -> None:
        if proc is not self._proc:
            return
        self._stdout_buf += bytes(proc.readAllStandardOutput().data())
        *lines, self._stdout_buf = self._stdout_buf.split(b"\n")
        for line in lines:
            if line.strip():
                self._dispatch_line(line)
            if proc is not self._proc or self._state == "crashed":
                return

    def _on_stderr(self, proc: QProcess) -> None:
        if proc is not self._proc:
            return
        self._stderr_buf += bytes(proc.readAllStandardError().data())
        *lines, self._stderr_buf = self._stderr_buf.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            self._stderr_tail.append(text)
            if not _DUMP.match(text):
                self._plain_lines += 1
            if is_reason(text):
                self._reasons.append((self._plain_lines, text))
            self.sig_log.emit(text)

    def _on_process_error(self, proc: QProcess, error: QProcess.ProcessError) -> None:
        if proc is self._proc and error == QProcess.ProcessError.FailedToStart:
            self._crash(f"The engine could not be started ({' '.join(self._command)}): "
                        f"{proc.errorString()}")

    def _on_finished(self, proc: QProcess, code: int, status: QProcess.ExitStatus) -> None:
        if proc is not self._proc:
            return
        self._on_stdout(proc)  # results that arrived just before the exit
        self._on_stderr(proc)  # the last words matter most
        self._hello_timer.stop()
        if self._expect_exit:
            if self._state != "crashed":
                self._fail_all("engine_stopped", "The engine was stopped.")
                self._set_state("stopped")
            return
        crashed = status == QProcess.ExitStatus.CrashExit
        how = f"signal {code}" if crashed else f"exit code {code}"
        self._crash(f"The engine stopped ({how}).{SIGNAL_HINTS.get(code, '') if crashed else ''}")

    # -- messages -----------------------------------------------------------------
    def _dispatch_line(self, line: bytes) -> None:
        try:
            msg = decode(line)
        except ProtocolError as exc:
            if self._state == "starting" and exc.kind == "bad_version":
                self._refuse_protocol(exc.message)
            else:
                self.sig_log.emit(f"[studio] unreadable line from the engine ({exc.kind}): "
                                  f"{exc.message}")
            return
        handler = getattr(self, f"_handle_{msg.type}", None)
        if handler is None:
            self.sig_log.emit(f"[studio] ignored engine message of type {msg.type!r}")
            return
        handler(msg)

    def _refuse_protocol(self, what: str) -> None:
        known = ", ".join(str(v) for v in sorted(KNOWN_PROTOCOLS))
        self._crash(f"The engine speaks a protocol this studio does not know ({what}); "
                    f"this studio knows version {known}. Update the studio or the engine.")

    def _handle_result(self, msg: Message) -> None:
        if msg.parent is not None and msg.parent == self._hello_id:
            self._hello_timer.stop()
            version = msg.content.get("protocol")
            if version not in KNOWN_PROTOCOLS:
                self._refuse_protocol(f"protocol {version!r}")
                return
            self.info = dict(msg.content)
            self._set_state("ready")
            pending, self._pending = self._pending, []
            for queued in pending:
                self._write(queued)
            return
        if msg.parent in self._in_flight:
            del self._in_flight[msg.parent]
            self.sig_result.emit(msg.parent, msg.content)

    def _handle_error(self, msg: Message) -> None:
        content = {"kind": str(msg.content.get("kind", "error")),
                   "message": str(msg.content.get("message", "")),
                   "detail": str(msg.content.get("detail", ""))}
        if msg.parent is not None and msg.parent == self._hello_id:
            self._crash(f"The engine refused the hello: {content['message']}")
            return
        if msg.parent and msg.parent in self._in_flight:
            del self._in_flight[msg.parent]
            self.sig_error.emit(msg.parent, content)
        else:
            self.sig_log.emit(f"[engine error] {content['kind']}: {content['message']}")

    def _handle_token(self, msg: Message) -> None:
        self.sig_token.emit(msg.parent or "", str(msg.content.get("text", "")))

    def _handle_progress(self, msg: Message) -> None:
        self.sig_progress.emit(msg.parent or "", msg.content)

    def _handle_metric(self, msg: Message) -> None:
        self.sig_metric.emit(msg.parent or "", msg.content)

    def _handle_log(self, msg: Message) -> None:
        level = msg.content.get("level", "info")
        self.sig_log.emit(f"[{level}] {msg.content.get('text', '')}")

    def _handle_state(self, msg: Message) -> None:
        self.sig_log.emit(f"[engine state] {msg.content}")
