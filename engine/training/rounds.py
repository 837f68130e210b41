"""A round's life in the store: one at a time, its row, its checkpoints, its adapter.

The round row is written before work starts and updated as it goes, so a crash
leaves a row that says where it stopped and which checkpoint it can resume
from. Adapters are written under a temporary name and renamed into place only
when complete (PEFT files and the GGUF LoRA twin), then listed as usable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import traceback
import uuid
from pathlib import Path

from engine import paths
from engine.errors import EngineError
from engine.store import new_id, now

STATUSES = ("running", "done", "cancelled", "failed")
_lock = threading.Lock()


class RoundBusy(EngineError):
    kind = "round_busy"


class DiskFull(EngineError):
    kind = "disk_full"


def rounds_dir() -> Path:
    path = paths.data_dir() / "rounds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive(what: str):
    """Only one round at a time, in this process and across processes (a lock file)."""
    if not _lock.acquire(blocking=False):
        raise RoundBusy("Another round is running; wait for it or cancel it before starting "
                        f"a new one ({what}).")
    lock_file = paths.data_dir() / "round.lock"
    try:
        for _ in range(2):
            try:
                fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, json.dumps({"pid": os.getpid(), "what": what}).encode())
                os.close(fd)
                break
            except FileExistsError:
                try:
                    other = json.loads(lock_file.read_text() or "{}")
                except (OSError, ValueError):
                    other = {}
                if other.get("pid") and _pid_alive(int(other["pid"])) and other["pid"] != os.getpid():
                    raise RoundBusy(f"Another round is running (process {other['pid']}: "
                                    f"{other.get('what', '?')}); one round at a time.") from None
                lock_file.unlink(missing_ok=True)  # left by a process that died
        else:
            raise RoundBusy("Could not take the round lock.")
        try:
            yield
        finally:
            lock_file.unlink(missing_ok=True)
    finally:
        _lock.release()


def check_disk(folder: Path, need_mb: float) -> None:
    """Refuse to start with too little free space for checkpoints and the adapter."""
    free = shutil.disk_usage(folder).free / 2**20
    if free < need_mb:
        raise DiskFull(f"Only {free:.0f} MB free in {folder}; this round needs about "
                       f"{need_mb:.0f} MB for checkpoints and its adapter. Free some space first.")


def is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class RoundRecord:
    """The ``rounds`` row of one round (new, or an old one being resumed)."""

    def __init__(self, store, kind: str, config: dict, parent_adapter_id: str | None = None,
                 resume_id: str | None = None):
        self.store = store
        if resume_id:
            row = store.db["rounds"].get(resume_id)
            if row["status"] not in ("cancelled", "failed", "running"):
                raise EngineError(f"round {resume_id} is {row['status']}; only a cancelled or "
                                  "failed round can be resumed", kind="bad_request")
            self.id, self.kind = resume_id, row["kind"]
            self.checkpoint_dir = Path(row["checkpoint_dir"])
            self.lineage = json.loads(row["lineage"] or "{}")
            store._update("rounds", self.id, {"status": "running", "error": None, "finished_at": None})
            return
        self.id, self.kind, self.lineage = new_id(), kind, {}
        self.checkpoint_dir = rounds_dir() / self.id / "checkpoints"
        store._insert("rounds", {
            "id": self.id, "kind": kind, "status": "running", "config": json.dumps(config),
            "lineage": "{}", "metrics": "{}", "verdict": None, "error": None,
            "checkpoint_dir": str(self.checkpoint_dir), "adapter_id": None,
            "parent_adapter_id": parent_adapter_id, "created_at": now(), "finished_at": None})

    @property
    def folder(self) -> Path:
        return self.checkpoint_dir.parent

    def set_lineage(self, lineage: dict) -> None:
        self.lineage = lineage
        self.store._update("rounds", self.id, {"lineage": json.dumps(lineage)})

    def set(self, **values) -> None:
        enc = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in values.items()}
        self.store._update("rounds", self.id, enc)

    def finish(self, status: str, error: str | None = None, **values) -> None:
        assert status in STATUSES
        self.set(status=status, error=error, finished_at=now(), **values)

    def fail_from(self, exc: BaseException) -> None:
        try:  # the error event names the round, so the studio can offer its resume
            exc.round_id = self.id
        except AttributeError:  # an exception type that refuses new attributes
            pass
        if is_disk_full(exc):
            from engine.training.callbacks import drop_partial_checkpoints, last_checkpoint

            drop_partial_checkpoints(self.checkpoint_dir)
            last = last_checkpoint(self.checkpoint_dir)
            reason = ("The disk filled up while saving; the round stopped. "
                      + (f"Last good checkpoint kept: {Path(last).name}." if last else
                         "No checkpoint was complete."))
        elif isinstance(exc, EngineError):
            reason = exc.message
        else:
            reason = f"{type(exc).__name__}: {exc}"
        self.finish("failed", reason)
        self.store._update("rounds", self.id, {"metrics": json.dumps(
            {**self.metrics(), "traceback": traceback.format_exception_only(type(exc), exc)[-1]})})

    def metrics(self) -> dict:
        return json.loads(self.store.db["rounds"].get(self.id)["metrics"] or "{}")


def refuse_if_busy() -> None:
    """RoundBusy at once when a live process holds the round lock (the engine asks before
    it starts a round's child process, whose imports take seconds)."""
    try:
        other = json.loads((paths.data_dir() / "round.lock").read_text() or "{}")
    except (OSError, ValueError):
        return
    if other.get("pid") and _pid_alive(int(other["pid"])):
        raise RoundBusy(f"Another round is running (process {other['pid']}: {other.get('what', '?')}); "
                        "one round at a time.")


def _lock_alive() -> bool:
    """Whether a live process holds the round lock."""
    try:
        other = json.loads((paths.data_dir() / "round.lock").read_text() or "{}")
    except (OSError, ValueError):
        return False
    return bool(other.get("pid")) and _pid_alive(int(other["pid"]))


def decode_round(row: dict) -> dict:
    out = dict(row)
    for key in ("config", "lineage", "metrics", "verdict"):
        if isinstance(out.get(key), str) and out[key]:
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                pass
    if out.get("status") == "running" and not _lock_alive():
        out["status"] = "failed"  # its process died without saying so
        out["error"] = out.get("error") or "The engine stopped while this round ran; resume it."
    return out


def list_rounds(store, limit: int = 200) -> list[dict]:
    rows = store.db.query("SELECT * FROM rounds ORDER BY created_at DESC LIMIT ?", [limit])
    return [decode_round(dict(r)) for r in rows]


def get_round(store, round_id: str) -> dict:
    from sqlite_utils.db import NotFoundError

    try:
        return decode_round(store.db["rounds"].get(round_id))
    except NotFoundError:
        raise EngineError(f"no round {round_id!r}", kind="not_found") from None


# -- adapters ------------------------------------------------------------------
def write_adapter(store, model, round_id: str, base_model: str, base_gguf: str | None,
                  lineage: dict, name: str = "") -> dict:
    """Save PEFT files and the GGUF LoRA into a temp folder, rename, then list it."""
    adapter_id = new_id()
    root = paths.adapters_dir()
    final = root / adapter_id
    tmp = root / f".tmp-{adapter_id}-{uuid.uuid4().hex[:6]}"
    gguf_path, gguf_error = None, None
    try:
        model.save_pretrained(str(tmp))
        if base_gguf:
            try:
                from engine.models.gguf_lora import convert_peft_to_gguf

                convert_peft_to_gguf(tmp, base_gguf, tmp / "adapter.gguf")
                gguf_path = str(final / "adapter.gguf")
            except EngineError as exc:
                if is_disk_full(exc):
                    raise
                gguf_error = exc.message
        meta = {"adapter_id": adapter_id, "round_id": round_id, "base_model": base_model,
                "base_gguf": base_gguf, "lineage": lineage, "gguf_error": gguf_error,
                "created_at": now()}
        (tmp / "hal_adapter.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = {"id": adapter_id, "name": name or _default_name(store, round_id), "base_model": base_model,
           "peft_path": str(final), "gguf_path": gguf_path, "round_id": round_id, "usable": 1,
           "lineage": json.dumps({**lineage, "gguf_error": gguf_error}), "created_at": now()}
    store._insert("adapters", row)
    return row


def _default_name(store, round_id: str) -> str:
    """ "DPO round 3 · default": the round's kind, its number among rounds of that kind and
    its preset ("custom" when its settings match none); editable later (hal adapters rename)."""
    from engine.results.names import default_adapter_name
    from engine.training import kinds

    preset = None
    try:
        row = store.db.execute("SELECT kind, config FROM rounds WHERE id=?", [round_id]).fetchone()
        if row:
            preset = kinds.preset_of(row[0], json.loads(row[1] or "{}"))
    except Exception:  # noqa: BLE001 - a name is never worth failing a finished round
        preset = None
    try:
        return default_adapter_name(store, round_id, preset)
    except Exception:  # noqa: BLE001
        return f"round {round_id[:8]}"


def list_adapters(store, usable_only: bool = True) -> list[dict]:
    sql = "SELECT * FROM adapters" + (" WHERE usable=1" if usable_only else "") + " ORDER BY created_at DESC"
    out = []
    from engine.results.names import AdapterNames

    names = AdapterNames(store)
    for r in store.db.query(sql):
        r = dict(r)
        r["lineage"] = json.loads(r["lineage"] or "{}")
        r["exists"] = Path(r["peft_path"]).is_dir()
        r["display_name"] = names.by_key.get(r["id"], r["name"] or r["id"])
        out.append(r)
    return out


def get_adapter(store, adapter_id: str) -> dict:
    """An adapter row by id; a unique prefix of an id, its folder or its GGUF LoRA file
    are accepted too (an adapter folder that was never listed gives an unlisted row)."""
    from engine.models.spec import resolve_adapter_ref

    rows = list(store.db["adapters"].rows_where("id = ?", [adapter_id]))
    if not rows:
        try:
            path = resolve_adapter_ref(adapter_id)
        except EngineError as exc:
            raise EngineError(f"no adapter {adapter_id!r}: {exc.message}", kind="not_found") from None
        folder = path.parent if path.is_file() else path
        rows = list(store.db["adapters"].rows_where("id = ? OR peft_path = ?",
                                                    [folder.name, str(folder)]))
        if not rows:
            if not (folder / "adapter_config.json").is_file():
                raise EngineError(f"{folder} is not a PEFT adapter folder (no adapter_config.json)",
                                  kind="not_found")
            return {"id": None, "peft_path": str(folder), "gguf_path": next(
                (str(p) for p in sorted(folder.glob("*.gguf"))), None), "lineage": {}}
    row = dict(rows[0])
    row["lineage"] = json.loads(row["lineage"] or "{}")
    return row


def sweep_temp_adapters() -> None:
    """Temp folders from a process that died while writing an adapter are never listed; remove them."""
    for tmp in paths.adapters_dir().glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
