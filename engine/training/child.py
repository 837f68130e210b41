"""Rounds and evals in a child process, so the engine gives their memory back.

A round loads the base into transformers, builds a trainer, an optimiser and a
reference model, and parses corpora: several GB on the bundled model. Python
and glibc keep most of that after the objects are gone (the engine's allocator
settings keep freed memory below 1 GB untrimmed, see engine/malloc_tuning.py),
and torch, transformers and TRL stay imported. So the engine runs each round
(and each ``eval``) in a child process that exits when it is done: the
engine's memory after a round is what it was before.

The engine side (``run_in_child``) starts ``python -m engine.training.child``,
sends the job as one JSON line on its stdin and relays the child's events
(progress, metric, log) to the command's own state; ``cancel`` travels to the
child as a line on its stdin, and the child stops at the next step end as
before. The child writes its events as JSON lines to a pipe of their own
(its stdout goes to stderr: libraries print there) and ends with one
``result`` or ``error`` event. When the engine dies the child dies with it
(Linux: PR_SET_PDEATHSIG; elsewhere: stdin closing), as an in-process round
would: the round row then reads as failed and resumes from its last checkpoint.

``KINDS`` are the rounds that load torch models; ``reward-weights`` (a small
logistic refit) stays in the engine process. ``HAL_ROUND_IN_PROCESS=1`` runs
every round in the engine process as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.errors import EngineError

EVENTS_FD_ENV = "HAL_CHILD_EVENTS_FD"
PARENT_ENV = "HAL_CHILD_PARENT_PID"
IN_PROCESS_ENV = "HAL_ROUND_IN_PROCESS"
KINDS = ("dpo", "online", "reward-model")  # rounds that load torch models (reward-weights stays in process)


class ChildFailed(EngineError):
    kind = "round_process_died"


def enabled() -> bool:
    return os.environ.get(IN_PROCESS_ENV) != "1"


def give_back_memory() -> bool:
    """After an in-process round: collect garbage and hand free heap pages back to the
    system (glibc's malloc_trim(0); our allocator settings never trim below 1 GB on
    their own). Returns whether malloc_trim ran."""
    import gc

    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


# -- the engine's side ---------------------------------------------------------------------
def run_in_child(job: dict, state, store_path: str | Path) -> dict:
    """Run ``job`` ({"job": "round", kind, preset, config} or {"job": "eval", config}) in a
    child process; relay its events to ``state``; return its result or raise its error."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    read_fd, write_fd = os.pipe()
    env[EVENTS_FD_ENV], env[PARENT_ENV] = str(write_fd), str(os.getpid())
    try:
        proc = subprocess.Popen([sys.executable, "-m", "engine.training.child"], stdin=subprocess.PIPE,
                                stdout=2, env=env, pass_fds=(write_fd,))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    done = threading.Event()
    stdin_lock = threading.Lock()

    def send(line: str) -> None:
        with stdin_lock:
            try:
                proc.stdin.write((line + "\n").encode())
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the child has gone; its exit status says why

    def forward_cancel() -> None:
        while not done.wait(0.1):
            if state.cancelled():
                send("cancel")
                return

    send(json.dumps({**job, "db": str(store_path)}))
    watcher = threading.Thread(target=forward_cancel, name="child-cancel", daemon=True)
    watcher.start()
    final: tuple[str, dict] | None = None
    try:
        with os.fdopen(read_fd, "rb") as events:
            for line in events:
                try:
                    msg = json.loads(line)
                    type_, content = msg["t"], msg["c"]
                except (ValueError, KeyError, TypeError):
                    continue  # not ours; never fatal
                if type_ in ("result", "error"):
                    final = (type_, content)
                elif type_ == "progress":
                    state.progress(content.get("done", 0), content.get("total", 1), content.get("message", ""),
                                   force=True)
                elif type_ == "metric":
                    state.metric(content["name"], content["value"], content["step"])
                elif type_ == "log":
                    state.log(content.get("text", ""), content.get("level", "info"))
                else:
                    state.event(type_, content)
    finally:
        done.set()
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # wrote its last word but does not exit: end it
            proc.kill()
            code = proc.wait()
    if final is None:
        raise ChildFailed(f"The round's process ended without a result (exit status {code}); "
                          "the engine is fine. A round row it left reads as failed and can be resumed.")
    type_, content = final
    if type_ == "result":
        return content
    exc = EngineError(content.get("message") or "the round failed", content.get("detail") or "",
                      kind=content.get("kind") or "internal")
    if content.get("round_id"):
        exc.round_id = content["round_id"]
    raise exc


# -- the child's side ----------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill us when the engine dies (Linux), and check it is still there."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:
        os._exit(1)


def _read_control(state) -> None:
    """Lines from the engine: "cancel"; end of input means the engine is gone."""
    for line in sys.stdin:
        if line.strip() == "cancel":
            state.cancel()
    os._exit(1)


def _run(job: dict, state) -> dict:
    from engine.store import Store

    store = Store(job["db"])
    try:
        if job.get("job") == "eval":
            from engine.training import evaluate

            return evaluate.run(evaluate.make_config("default", job.get("config") or {}), state, store)
        from engine.training import kinds

        config = kinds.make_config(job["kind"], job.get("preset") or "default", job.get("config") or {})
        return kinds.run(job["kind"], config, state, store)
    finally:
        store.close()


def main() -> int:
    import traceback

    from engine.jobs import JobState
    from engine.malloc_tuning import tune

    _die_with_parent(int(os.environ.get(PARENT_ENV) or 0))
    tune()  # the engine's allocator settings: training runs on a worker thread there too
    out = os.fdopen(int(os.environ[EVENTS_FD_ENV]), "wb", buffering=0)
    lock = threading.Lock()

    def emit(type_: str, content: dict) -> None:
        data = (json.dumps({"t": type_, "c": content}, default=str) + "\n").encode()
        with lock:
            out.write(data)

    job = json.loads(sys.stdin.readline() or "{}")
    state = JobState(emit)
    state.started = time.monotonic()
    threading.Thread(target=_read_control, args=(state,), name="child-control", daemon=True).start()
    try:
        emit("result", _run(job, state))
    except EngineError as exc:
        emit("error", {**exc.as_content(), "round_id": getattr(exc, "round_id", None)})
    except MemoryError as exc:
        emit("error", {"kind": "out_of_memory", "message": "The round ran out of memory.",
                       "round_id": getattr(exc, "round_id", None)})
    except OSError as exc:  # a path that is too long, unreadable, not writable...
        from engine.server import os_message

        emit("error", {"kind": "os_error", "message": os_message(exc), "detail": traceback.format_exc(),
                       "round_id": getattr(exc, "round_id", None)})
    except BaseException as exc:  # noqa: BLE001 - everything becomes one error event
        emit("error", {"kind": "internal", "message": f"{type(exc).__name__}: {exc}",
                       "detail": traceback.format_exc(), "round_id": getattr(exc, "round_id", None)})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no waiting on library threads: our last word is written


if __name__ == "__main__":
    sys.exit(main())
