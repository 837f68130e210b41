"""Writes the store could not take in time, kept on disk until it can.

A rating or a finished reply is never lost to a lock: :class:`engine.store.Store`
retries with backoff, and if another writer still holds the store (a long import
by another program, say) the write goes here, to ``<store>.pending.jsonl`` beside
the store, fsynced before the caller is told. The next write through any Store on
that file, and the studio's timer (started at launch when the queue is not empty),
apply the queue first, in order, so a later rating never lands before an earlier one.

Both processes (studio and engine) share the file; ``<store>.pending.lock`` (an
advisory ``flock``) serialises appends and replays.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: appends are single writes; replays are rarer
    fcntl = None


def queue_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".pending.jsonl")


@contextlib.contextmanager
def _locked(db_path: Path):
    lock = db_path.with_name(db_path.name + ".pending.lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if fcntl:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fcntl:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append(db_path: Path, entry: dict) -> None:
    """Add one write to the queue; on disk (fsynced) when this returns."""
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    with _locked(db_path):
        fd = os.open(queue_path(db_path), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def entries(db_path: Path) -> list[dict]:
    """What is queued (readable lines only)."""
    path = queue_path(db_path)
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


def has_pending(db_path: Path) -> bool:
    try:
        return queue_path(db_path).stat().st_size > 0
    except OSError:
        return False


def pending_ids(db_path: Path, op: str) -> set[str]:
    return {str(e.get("id")) for e in entries(db_path) if e.get("op") == op}


def replay(db_path: Path, apply) -> tuple[int, int]:
    """Apply queued writes in order with ``apply(entry)``, which returns True when
    written (or already there), False when the store is still busy (stop; keep it and
    the rest), or raises for an entry that can never be written (moved aside to
    ``<store>.pending-failed.jsonl`` with the reason). Returns (written, left)."""
    if not has_pending(db_path):
        return 0, 0
    with _locked(db_path):
        items = entries(db_path)
        done = 0
        failed = []
        for i, item in enumerate(items):
            try:
                ok = apply(item)
            except Exception as exc:  # noqa: BLE001 - kept aside with its reason, never dropped
                failed.append({**item, "failed": str(exc)})
                done = i + 1
                continue
            if not ok:
                break
            done = i + 1
        rest = items[done:]
        if failed:
            with open(db_path.with_name(db_path.name + ".pending-failed.jsonl"), "a",
                      encoding="utf-8") as fh:
                for item in failed:
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        path = queue_path(db_path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for item in rest:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return done - len(failed), len(rest)
