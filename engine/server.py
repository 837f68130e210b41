"""The engine's read loop: one JSON line in, events out, nothing kills it.

The reader handles control (hello, ping, cancel, shutdown) at once and hands
every other command to a worker thread, so cancel never waits behind work.
Protocol (v1), command types and their content:

- ``hello`` {} -> result {protocol, engine_version, capabilities, pid}
- ``ping`` {} -> result {}
- ``cancel`` {target: id} -> result {found}; the target stops at its next step
- ``shutdown`` {} -> result {}; then the engine exits
- ``load`` {model: {source, adapter, backend}} -> result {info}
- ``generate`` {model, messages: [{role, content}], sampling: {temperature,
  top_p, top_k, min_p, repeat_penalty, repeat_last_n, max_tokens, seed, stop,
  system_prompt} (engine/models/base.py Sampling: defaults, ranges, order),
  persist?: {turn_id, slot, side}} -> token {text}* then result {text,
  finish_reason, reply_id, stats, model, sampling, looping, loop_reason}
  (the loop flag: engine/scoring/loops.py; stored on the reply row too)
- ``models`` {} -> result {bundled, loaded}
Every event carries the command's id as ``parent``; failures are ``error``
events {kind, message, detail}. A command whose id is already running is
refused (``duplicate_id``). A line that is not valid text (a lone UTF-16
surrogate) is refused (``bad_encoding``); if the reader itself ever fails the
engine exits with code 70, so the studio shows its crash banner.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Callable

from engine import __version__, faults
from engine.errors import EngineError
from engine.jobs import JobState
from engine.protocol import PROTOCOL_VERSION, Message, ProtocolError, decode, error_content

Handler = Callable[["Engine", Message, JobState], dict]
READER_FAILED_EXIT = 70  # EX_SOFTWARE: the reader died, the studio shows its crash banner
CLOSE_TIMEOUT_S = 30.0  # shutdown waits this long for jobs to stop, then exits anyway
COMMANDS: dict[str, Handler] = {}
CONTROL = ("hello", "ping", "cancel", "shutdown")


def command(name: str) -> Callable[[Handler], Handler]:
    """Register a worker-thread command handler under a message type."""

    def wrap(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return wrap


class Engine:
    """Serves one client over a pair of byte streams."""

    def __init__(self, out: BinaryIO, store_path: str | None = None, max_workers: int = 8):
        self._out = out
        self._out_lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._jobs_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._store_path = store_path
        self._store = None
        self._models = None
        self._state_lock = threading.Lock()
        self.stopping = threading.Event()
        self._faults = faults.from_env()  # None unless a test asked for one

    # -- lazily built services (keep start-up instant) -------------------------
    @property
    def store(self):
        with self._state_lock:
            if self._store is None:
                from engine.store import Store

                self._store = Store(self._store_path)
            return self._store

    @property
    def models(self):
        with self._state_lock:
            if self._models is None:
                from engine.models.pool import ModelPool

                self._models = ModelPool()
            return self._models

    # -- output ---------------------------------------------------------------
    def emit(self, type_: str, content: dict, parent: str | None = None) -> None:
        """Never raises: an event that cannot be encoded becomes an error event saying so."""
        try:
            data = Message(type=type_, content=content, parent=parent).encode()
        except Exception as exc:  # content that is not JSON (a handler's bug): still answer
            data = Message(type="error", parent=parent, content=error_content(
                "internal", f"could not encode a {type_!r} event: {type(exc).__name__}: {exc}")).encode()
        with self._out_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.stopping.set()  # the client is gone

    def error(self, parent: str | None, kind: str, message: str, detail: str = "",
              cause: BaseException | None = None) -> None:
        content = error_content(kind, message, detail)
        round_id = getattr(cause, "round_id", None)  # set when a training round failed
        if isinstance(round_id, str):
            content["round_id"] = round_id
        self.emit("error", content, parent)

    # -- input ----------------------------------------------------------------
    def handle_line(self, line: bytes) -> str | None:
        """Never raises: every failure becomes an error event. Returns the message's type."""
        try:
            msg = decode(line)
        except ProtocolError as exc:
            self.error(exc.msg_id, exc.kind, exc.message)
            return None
        except Exception as exc:  # decode is pure; this is a bug, still no crash
            self.error(None, "internal", f"could not read message: {exc}")
            return None
        try:
            if msg.type in CONTROL:
                self._control(msg)
            elif msg.type in COMMANDS:
                self._submit(msg)
            else:
                self.error(msg.id, "unknown_type", f"unknown message type {msg.type!r}")
        except Exception as exc:
            self.error(msg.id, "internal", str(exc), traceback.format_exc())
        return msg.type

    def _control(self, msg: Message) -> None:
        if msg.type == "hello":
            self.emit("result", {"protocol": PROTOCOL_VERSION, "engine_version": __version__,
                                 "capabilities": sorted(COMMANDS) + list(CONTROL),
                                 "pid": os.getpid()}, msg.id)
        elif msg.type == "ping":
            self.emit("result", {}, msg.id)
        elif msg.type == "cancel":
            target = msg.content.get("target")
            if not isinstance(target, str):
                self.error(msg.id, "bad_request", "cancel needs content.target (a command id)")
                return
            with self._jobs_lock:
                job = self._jobs.get(target)
            if job:
                job.cancel()
            self.emit("result", {"found": job is not None}, msg.id)
        elif msg.type == "shutdown":
            with self._jobs_lock:
                for job in self._jobs.values():
                    job.cancel()
            self.emit("result", {}, msg.id)
            self.stopping.set()

    def _submit(self, msg: Message) -> None:
        state = JobState(lambda t, c: self.emit(t, c, msg.id))
        with self._jobs_lock:
            if msg.id in self._jobs:  # else cancel would reach only one of the two
                duplicate = True
            else:
                duplicate = False
                self._jobs[msg.id] = state
        if duplicate:
            self.error(msg.id, "duplicate_id", f"a command with id {msg.id[:80]!r} is still running; "
                       "an id must be unique among running commands")
            return
        self._pool.submit(self._run, msg, state)

    def _run(self, msg: Message, state: JobState) -> None:
        try:
            with self._faults.around(msg.type) if self._faults else contextlib.nullcontext():
                result = COMMANDS[msg.type](self, msg, state)
            self.emit("result", result or {}, msg.id)
        except EngineError as exc:
            self.error(msg.id, exc.kind, exc.message, exc.detail, exc)
        except MemoryError as exc:
            self.error(msg.id, "out_of_memory", "The engine ran out of memory for this command.", cause=exc)
        except UnicodeDecodeError as exc:  # a file the command read is not UTF-8 text: bad input, not a bug
            self.error(msg.id, "bad_request", f"A file is not valid UTF-8 text ({exc.reason} at byte {exc.start}); "
                       "save it as UTF-8 and try again.", traceback.format_exc(), exc)
        except OSError as exc:  # a path that is too long, unreadable, not writable...
            self.error(msg.id, "os_error", os_message(exc), traceback.format_exc(), exc)
        except Exception as exc:
            self.error(msg.id, "internal", f"{type(exc).__name__}: {exc}", traceback.format_exc(), exc)
        finally:
            with self._jobs_lock:
                self._jobs.pop(msg.id, None)

    def active_jobs(self) -> list[str]:
        with self._jobs_lock:
            return list(self._jobs)

    def close(self) -> None:
        with self._jobs_lock:
            for job in self._jobs.values():
                job.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._models is not None:
            self._models.close()
        if self._store is not None:
            self._store.close()


def os_message(exc: OSError) -> str:
    """``File name too long: 'xxxx…'``: what the system refused, and which path."""
    what = exc.strerror or type(exc).__name__
    name = exc.filename
    if name is None:
        return f"{what} ({exc})" if str(exc) and str(exc) != what else what
    shown = str(name)
    return f"{what}: {shown[:200]!r}" + ("…" if len(shown) > 200 else "")


def read_lines(stream: BinaryIO, max_bytes: int):
    """Yield lines; a line longer than max_bytes is yielded cut short (the
    decoder then refuses it) while the rest of it is skipped, in bounded memory."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # drain the rest of the over-long line
                rest = stream.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


def take_protocol_channel() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 at stderr, so
    prints from Python or native libraries can never corrupt a message."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "wb", buffering=0)


# Modules whose import registers command handlers; a feature that is not
# built yet is simply absent.
COMMAND_MODULES = ("engine.commands", "engine.training.commands", "engine.scoring.commands",
                   "engine.results.commands", "engine.discovery.commands")


def register_commands() -> None:
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    from engine.malloc_tuning import tune
    from engine.protocol import MAX_LINE_BYTES

    tune()  # before any thread: jobs (training) run on worker threads
    register_commands()

    out = take_protocol_channel()
    faulthandler.enable(sys.stderr, all_threads=True)  # a native crash leaves its stacks in the log
    engine = Engine(out, store_path=os.environ.get("HAL_STUDIO_DB"))
    print(f"hal engine {__version__} ready (pid {os.getpid()})", file=sys.stderr, flush=True)
    reader_failed = threading.Event()

    def reader() -> None:
        try:
            for line in read_lines(sys.stdin.buffer, MAX_LINE_BYTES):
                type_ = engine.handle_line(line)
                if engine._faults:
                    engine._faults.after_read(type_)
                if engine.stopping.is_set():
                    break
        except BaseException:  # a reader that cannot read must not leave a deaf engine behind
            reader_failed.set()
            print("hal engine: FATAL error in the message reader; the engine stops so the studio can "
                  "restart it:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
        finally:
            engine.stopping.set()

    threading.Thread(target=reader, name="reader", daemon=True).start()
    engine.stopping.wait()
    closer = threading.Thread(target=engine.close, name="close", daemon=True)
    closer.start()
    closer.join(CLOSE_TIMEOUT_S)
    if closer.is_alive():
        print(f"hal engine: jobs still running {CLOSE_TIMEOUT_S:.0f} s after shutdown "
              f"({', '.join(engine.active_jobs()) or 'none listed'}); exiting without them",
              file=sys.stderr, flush=True)
    sys.stderr.flush()
    os._exit(READER_FAILED_EXIT if reader_failed.is_set() else 0)  # native threads must not hold the exit
