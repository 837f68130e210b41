"""The ratings store: one SQLite file (WAL), opened through sqlite-utils.

Both processes open it: the engine writes replies with their provenance; the
studio writes conversations, turns and ratings itself, so a rating never
depends on the engine being alive. Migrations only ever add.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from engine import paths, pending

SCHEMA_VERSION = 5
VERDICTS = ("certainly_left", "likely_left", "tie", "likely_right", "certainly_right", "both_bad")


# How long a write waits for another writer (an import in another program, say) before it
# goes to the on-disk queue (engine/pending.py): short for a rating (the GUI waits), long for
# a reply (an engine worker thread waits).
RATE_WAIT_S = 5.0
REPLY_WAIT_S = float(os.environ.get("HAL_REPLY_WAIT_S", "60"))  # tests shorten it
BUSY_TIMEOUT_MS = 30000


class StoreError(Exception):
    """The store cannot be opened or written (newer schema, read-only, full disk)."""


class StoreBusy(StoreError):
    """Another connection held the store's write lock for longer than we waited."""


class StoreQueued(StoreError):
    """Not written yet, but safe: the write is in the queue beside the store (fsynced) and
    goes in, in order, as soon as the store is free. ``row_id`` is the id it will have."""

    def __init__(self, message: str, row_id: str | None = None):
        super().__init__(message)
        self.row_id = row_id


def damaged_message(path: Path, why: str) -> str:
    """One line: the store is damaged, nothing was written, and how to save what is left."""
    return (f"The studio store {path} is damaged ({why}); it was not opened, so nothing more is lost. "
            f"Recover every row that can still be read with: hal store recover --db {path} "
            f"(the damaged file is kept beside the recovered one)")


def save_error(exc: sqlite3.Error) -> StoreError:
    """A failed write as one clear sentence (the GUI shows it next to the rating)."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy(f"The studio store is busy: another program is writing to it ({text})")
    if "full" in text:
        why = "the disk is full; free some space and try again"
    elif "readonly" in text or "read-only" in text:
        why = "the data directory is read-only"
    else:
        why = text
    return StoreError(f"Could not save to the studio store: {why} (nothing was changed; {text})")


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or "malformed" in text or "not a database" in text


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _acknowledged(method):
    """A write the caller reports as saved: the files are checked before it and again
    after it commits, so a store whose file or WAL was deleted or replaced under it
    refuses the write instead of acknowledging a row it can no longer keep."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self.check_files()
        result = method(self, *args, **kwargs)
        self.check_files()
        return result

    return wrapper


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def _migrate_1(db: sqlite_utils.Database) -> None:
    db["conversations"].create({
        "id": str, "created_at": str, "title": str, "blind": int,
        "model_a": str, "model_b": str, "sampling": str,
    }, pk="id", if_not_exists=True)
    db["turns"].create({
        "id": str, "conversation_id": str, "idx": int, "prompt": str, "created_at": str,
        "blind": int, "a_side": str,
    }, pk="id", foreign_keys=[("conversation_id", "conversations", "id")], if_not_exists=True)
    db["replies"].create({
        "id": str, "turn_id": str, "slot": str, "side": str, "status": str,
        "text": str, "finish_reason": str, "error": str,
        "model_spec": str, "model_name": str, "model_path": str, "adapter": str, "backend": str,
        "chat_template_digest": str, "sampling": str, "seed": int,
        "prompt_tokens": int, "completion_tokens": int, "ttft_ms": float, "tok_s": float,
        "total_ms": float, "created_at": str, "superseded": int,
    }, pk="id", foreign_keys=[("turn_id", "turns", "id")], if_not_exists=True)
    db["ratings"].create({
        "id": str, "turn_id": str, "left_reply_id": str, "right_reply_id": str,
        "verdict": str, "note": str, "blind": int, "a_side": str,
        "created_at": str, "updated_at": str,
    }, pk="id", foreign_keys=[("turn_id", "turns", "id"), ("left_reply_id", "replies", "id"),
                              ("right_reply_id", "replies", "id")], if_not_exists=True)
    db["rating_history"].create({
        "id": str, "rating_id": str, "action": str, "snapshot": str, "at": str,
    }, pk="id", if_not_exists=True)
    db["turns"].create_index(["conversation_id", "idx"], if_not_exists=True)
    db["replies"].create_index(["turn_id"], if_not_exists=True)
    db["ratings"].create_index(["turn_id"], if_not_exists=True)


def _migrate_2(db: sqlite_utils.Database) -> None:
    """Scores next to replies; training rounds, preference pairs and adapters."""
    db["scores"].create({
        "id": str, "reply_id": str, "judge": str, "questionnaire": str, "weights": str,
        "score": float, "probability": float, "traits": str, "created_at": str,
    }, pk="id", if_not_exists=True)
    db["rounds"].create({
        "id": str, "kind": str, "status": str, "config": str, "lineage": str, "metrics": str,
        "verdict": str, "error": str, "checkpoint_dir": str, "adapter_id": str,
        "parent_adapter_id": str, "created_at": str, "finished_at": str,
    }, pk="id", if_not_exists=True)
    db["pairs"].create({
        "id": str, "pair_set": str, "round_id": str, "prompt": str, "chosen": str,
        "rejected": str, "chosen_score": float, "rejected_score": float, "source": str,
        "rating_id": str, "judge": str, "questionnaire": str, "weights": str, "weight": float,
        "created_at": str,
    }, pk="id", if_not_exists=True)
    db["adapters"].create({
        "id": str, "name": str, "base_model": str, "peft_path": str, "gguf_path": str,
        "round_id": str, "usable": int, "lineage": str, "created_at": str,
    }, pk="id", if_not_exists=True)
    db["scores"].create_index(["reply_id"], if_not_exists=True)
    db["pairs"].create_index(["pair_set"], if_not_exists=True)


def _migrate_3(db: sqlite_utils.Database) -> None:
    """Results: blind side-swapped repeats of rated pairs (rater consistency),
    the prompt set a turn came from, and where imported ratings came from."""
    db["repeat_ratings"].create({
        "id": str, "original_rating_id": str, "turn_id": str, "left_reply_id": str,
        "right_reply_id": str, "verdict": str, "note": str, "blind": int, "created_at": str,
    }, pk="id", if_not_exists=True)  # no FK to ratings: a deleted original keeps its repeats
    db["repeat_ratings"].create_index(["original_rating_id"], if_not_exists=True)
    if "prompt_set" not in db["turns"].columns_dict:
        db.execute("ALTER TABLE turns ADD COLUMN prompt_set TEXT")
    db["rating_origins"].create({
        "rating_id": str, "source": str, "source_key": str, "rater": str, "line": int,
        "imported_at": str,
    }, pk="rating_id", if_not_exists=True)


# Sampling settings a reply row's ``sampling`` JSON holds since schema 4, and what
# every earlier reply was generated with (these samplers did not exist yet).
SAMPLING_ADDED = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "repeat_last_n": 64, "stop": []}


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Loop flags on replies (engine.scoring.loops, computed when a reply is
    stored; earlier replies are flagged here), and the new sampling settings
    written into earlier replies' ``sampling`` with the values they ran with."""
    from engine.scoring.loops import loop_reason

    columns = db["replies"].columns_dict
    if "looping" not in columns:
        db.execute("ALTER TABLE replies ADD COLUMN looping INTEGER")
    if "loop_reason" not in columns:
        db.execute("ALTER TABLE replies ADD COLUMN loop_reason TEXT")
    for reply_id, text in db.execute("SELECT id, text FROM replies WHERE looping IS NULL").fetchall():
        reason = loop_reason(text or "")
        db.execute("UPDATE replies SET looping=?, loop_reason=? WHERE id=?", [int(reason is not None), reason,
                                                                              reply_id])
    for key, value in SAMPLING_ADDED.items():
        db.execute(f"UPDATE replies SET sampling = json_set(sampling, '$.{key}', json(?)) "
                   f"WHERE json_valid(sampling) AND json_type(sampling) = 'object' "
                   f"AND json_type(sampling, '$.{key}') IS NULL", [json.dumps(value)])


def _migrate_5(db: sqlite_utils.Database) -> None:
    """Blind evaluation: who gave a rating (``ratings.rater``: empty or NULL is the
    researcher, ``llm:<model>`` an LLM rater, any other name a colleague's sheet),
    the pairs of each blind eval run with the key to their sides, and every answer
    an LLM rater gave (both orders), consistent or not."""
    if "rater" not in db["ratings"].columns_dict:
        db.execute("ALTER TABLE ratings ADD COLUMN rater TEXT")
    db["blind_runs"].create({
        "id": str, "conversation_id": str, "created_at": str, "adapter": str, "adapter_path": str,
        "base": str, "prompt_set": str, "prompt_digest": str, "settings": str, "n_pairs": int,
    }, pk="id", if_not_exists=True)
    db["blind_pairs"].create({  # the key: which side (A or B) holds the adapter's reply
        "id": str, "run_id": str, "idx": int, "turn_id": str, "prompt_id": str,
        "a_reply_id": str, "b_reply_id": str, "adapter_side": str, "created_at": str,
    }, pk="id", if_not_exists=True)
    db["rater_answers"].create({
        "id": str, "pair_id": str, "rater": str, "shown": str, "verdict": str, "raw": str,
        "error": str, "created_at": str,
    }, pk="id", if_not_exists=True)
    db["blind_pairs"].create_index(["run_id", "idx"], if_not_exists=True)
    db["rater_answers"].create_index(["pair_id"], if_not_exists=True)


# Append-only: a new feature adds _migrate_N with the next free N.
MIGRATIONS = {1: _migrate_1, 2: _migrate_2, 3: _migrate_3, 4: _migrate_4, 5: _migrate_5}


class _WaitsForQueuedReply(Exception):
    """A rating of a reply that is itself still in the queue: it queues behind it."""


RESEARCHER = ""  # ratings.rater of the researcher's own ratings (legacy rows: NULL); shown as "me"


class _SerialDatabase(sqlite_utils.Database):
    """The engine's worker threads share one connection: every statement, and a
    query with the SAVEPOINT sqlite-utils wraps it in, runs under the store's
    lock. Interleaved, one thread's RELEASE ended another's savepoint (a
    "no such savepoint" error) and a rollback could take a write that another
    thread had already reported as saved."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self._serial = lock
        super().__init__(conn)

    def execute(self, sql, parameters=None):
        with self._serial:
            return super().execute(sql, parameters)

    def query(self, sql, params=None):
        with self._serial:  # rows are read before the lock is let go
            return iter(list(super().query(sql, params)))


class Store:
    """Thread-safe access to the studio's SQLite file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else paths.db_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                                   isolation_level=None)
            self.db = _SerialDatabase(conn, self._lock)
            self.db.execute("PRAGMA busy_timeout=30000")
            self._refuse_damaged()  # before anything reads a bad page or writes
            self._refuse_newer()  # before anything writes, WAL mode included
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            try:
                self.flag_loops()
            except sqlite3.DatabaseError as exc:  # read-only or full: readers compute missing flags anyway
                if _is_damage(exc):
                    raise
            self._files = {"db": _identity(self.path), "wal": _identity(self._wal_path)}
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise StoreError(damaged_message(self.path, " ".join(str(exc).split()))) from None
            raise StoreError(f"Cannot open the studio store {self.path}: {exc}") from None
        except OSError as exc:  # the data folder cannot be made
            raise StoreError(f"Cannot open the studio store {self.path}: {exc}") from None

    # -- the files under it -------------------------------------------------------
    @property
    def _wal_path(self) -> Path:
        return Path(str(self.path) + "-wal")

    def check_files(self) -> None:
        """StoreError when the store file or its WAL is no longer the one this store opened
        (deleted, or replaced by another file): writes would go to a file nobody can read back."""
        for key, path in (("db", self.path), ("wal", self._wal_path)):
            known, current = self._files.get(key), _identity(path)
            if known is None:
                self._files[key] = current  # the WAL appears with the first write
                continue
            if current != known:
                what = "was deleted" if current is None else "was replaced by another file"
                name = "its write-ahead log " + path.name if key == "wal" else "the store file " + path.name
                raise StoreError(
                    f"The studio store changed under the studio: {name} {what} while it was open, so "
                    f"nothing more can be saved safely (this was not saved). Close the studio and start "
                    f"it again; check {self.path.parent} for what removed the file.")

    # -- schema ---------------------------------------------------------------
    def _refuse_damaged(self) -> None:
        """``PRAGMA quick_check`` (every page and row format, not index contents): a store with
        garbage or zeroed pages is refused here rather than failing in the middle of a read."""
        rows = [r[0] for r in self.db.execute("PRAGMA quick_check(5)").fetchall()]
        if rows != ["ok"]:
            self.db.conn.close()
            why = "; ".join(" ".join(str(r).split()) for r in rows)  # one line, whatever sqlite wrote
            raise StoreError(damaged_message(self.path, "PRAGMA quick_check: " + why[:300]))

    def _refuse_newer(self) -> None:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = has_meta and self.db.execute(
            "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"This store was written by a newer studio (schema {current}; this one knows "
                f"{SCHEMA_VERSION}). It was left untouched: update the studio to open it.")

    def _migrate(self) -> None:
        with self._lock:
            self.db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"This store was written by a newer studio (schema {current}; this one knows "
                    f"{SCHEMA_VERSION}). It was left untouched: update the studio to open it.")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                with self.db.conn:
                    self.db.execute("BEGIN IMMEDIATE")
                    MIGRATIONS[version](self.db)
                    self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                                    [str(version)])

    def flag_loops(self) -> int:
        """Give a loop flag to reply rows written without one (raw inserts such as
        imports); returns how many. Readers also compute a missing flag (_decode)."""
        from engine.scoring.loops import loop_reason

        with self._lock:
            rows = self.db.execute("SELECT id, text FROM replies WHERE looping IS NULL").fetchall()
            if not rows:
                return 0
            with self.db.conn:
                for reply_id, text in rows:
                    reason = loop_reason(text or "")
                    self.db.execute("UPDATE replies SET looping=?, loop_reason=? WHERE id=? AND looping IS NULL",
                                    [int(reason is not None), reason, reply_id])
            return len(rows)

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    def _insert(self, table: str, row: dict) -> str:
        """Plain INSERT (sqlite-utils' insert commits on its own, which would
        split our explicit transactions)."""
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._lock:
            try:
                self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
            except sqlite3.OperationalError as exc:
                raise save_error(exc) from None
        return row["id"]

    def _write(self, sql: str, params: list | None = None) -> None:
        """Run one writing statement; a read-only or full store becomes a StoreError."""
        try:
            self.db.execute(sql, params or [])
        except sqlite3.OperationalError as exc:
            raise save_error(exc) from None

    def _update(self, table: str, row_id: str, values: dict) -> None:
        sets = ", ".join(f"{k}=?" for k in values)
        try:
            self.db.execute(f"UPDATE {table} SET {sets} WHERE id=?", [*values.values(), row_id])
        except sqlite3.OperationalError as exc:
            raise save_error(exc) from None

    # -- conversations and turns -----------------------------------------------
    @_acknowledged
    def create_conversation(self, model_a: dict, model_b: dict, sampling: dict,
                            blind: bool, title: str = "") -> str:
        return self._insert("conversations", {
            "id": new_id(), "created_at": now(), "title": title[:200], "blind": int(blind),
            "model_a": json.dumps(model_a), "model_b": json.dumps(model_b),
            "sampling": json.dumps(sampling)})

    @_acknowledged
    def add_turn(self, conversation_id: str, prompt: str, blind: bool, a_side: str) -> str:
        if a_side not in ("left", "right"):
            raise ValueError("a_side must be left or right")
        with self._lock:
            idx = self.db.execute("SELECT COUNT(*) FROM turns WHERE conversation_id=?",
                                  [conversation_id]).fetchone()[0]
            return self._insert("turns", {
                "id": new_id(), "conversation_id": conversation_id, "idx": idx, "prompt": prompt,
                "created_at": now(), "blind": int(blind), "a_side": a_side})

    @_acknowledged
    def add_reply(self, turn_id: str, slot: str, side: str, text: str, finish_reason: str,
                  model_spec: dict, model_info: dict, sampling: dict, stats: dict,
                  status: str = "done", error: str = "", reply_id: str | None = None,
                  wait_s: float | None = None) -> str:
        """Record a reply and everything needed to say how it was made. While another
        writer holds the store it retries for ``wait_s`` (REPLY_WAIT_S); then the reply goes
        to the on-disk queue and StoreQueued (with its id) is raised: it is not lost."""
        args = {"turn_id": turn_id, "slot": slot, "side": side, "text": text,
                "finish_reason": finish_reason, "model_spec": model_spec, "model_info": model_info,
                "sampling": sampling, "stats": stats, "status": status, "error": error,
                "reply_id": reply_id or new_id()}
        if self._queue_first():
            self._queue("reply", args)
        try:
            return self._patiently(lambda: self._add_reply_now(**args),
                                   REPLY_WAIT_S if wait_s is None else wait_s)
        except StoreBusy as exc:
            self._queue("reply", args, exc)

    def _add_reply_now(self, turn_id, slot, side, text, finish_reason, model_spec, model_info,
                       sampling, stats, status, error, reply_id, replay: bool = False) -> str:
        with self._lock:
            if replay and self.db.execute("SELECT 1 FROM replies WHERE id=?", [reply_id]).fetchone():
                return reply_id  # written before the queue was rewritten
            # One unit (a savepoint also nests in a caller's transaction): a failed insert
            # must not leave the previous reply marked superseded.
            self._write("SAVEPOINT add_reply")
            try:
                self._write("UPDATE replies SET superseded=1 WHERE turn_id=? AND slot=?", [turn_id, slot])
                reply_id = self._insert_reply(turn_id, slot, side, text, finish_reason, model_spec,
                                              model_info, sampling, stats, status, error, reply_id)
            except BaseException:
                if self.db.conn.in_transaction:  # SQLITE_FULL may already have rolled it all back
                    self.db.execute("ROLLBACK TO add_reply")
                    self.db.execute("RELEASE add_reply")
                raise
            self._write("RELEASE add_reply")
            return reply_id

    def _insert_reply(self, turn_id, slot, side, text, finish_reason, model_spec, model_info,
                      sampling, stats, status, error, reply_id=None) -> str:
        from engine.scoring.loops import loop_reason

        reason = loop_reason(text or "")
        return self._insert("replies", {
                "looping": int(reason is not None), "loop_reason": reason,
                "id": reply_id or new_id(), "turn_id": turn_id, "slot": slot, "side": side, "status": status,
                "text": text, "finish_reason": finish_reason, "error": error,
                "model_spec": json.dumps(model_spec), "model_name": model_info.get("name", ""),
                "model_path": str(model_info.get("path", "")),
                "adapter": model_spec.get("adapter") or "", "backend": model_info.get("backend", ""),
                "chat_template_digest": model_info.get("chat_template_digest", ""),
                "sampling": json.dumps(sampling), "seed": int(sampling.get("seed", 0)),
                "prompt_tokens": stats.get("prompt_tokens"),
                "completion_tokens": stats.get("completion_tokens"),
                "ttft_ms": stats.get("ttft_ms"), "tok_s": stats.get("tok_s"),
                "total_ms": stats.get("total_ms"), "created_at": now(), "superseded": 0})

    # -- waiting for other writers, and the queue -----------------------------------------
    def _patiently(self, attempt, wait_s: float):
        """Run a write, retrying with backoff while another connection holds the store,
        for up to ``wait_s`` seconds; then StoreBusy. Each try waits in SQLite's busy
        handler for at most a second, so the whole wait stays near ``wait_s``."""
        deadline = time.monotonic() + max(0.0, wait_s)
        delay = 0.02
        while True:
            left = deadline - time.monotonic()
            with self._lock:
                self.db.execute(f"PRAGMA busy_timeout={int(max(0.01, min(left, 1.0)) * 1000)}")
                try:
                    return attempt()
                except sqlite3.OperationalError as exc:
                    if not isinstance(save_error(exc), StoreBusy):
                        raise
                    busy = save_error(exc)
                except StoreBusy as exc:
                    busy = exc
                finally:
                    self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if time.monotonic() + delay > deadline:
                raise busy
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _queue_first(self) -> bool:
        """True when earlier writes are still queued (after trying them): a new write
        then queues too, so nothing overtakes an earlier one."""
        if not pending.has_pending(self.path):
            return False
        self.flush_pending()
        return pending.has_pending(self.path)

    def _queue(self, op: str, args: dict, cause: Exception | None = None):
        row_id = args.get("reply_id") if op == "reply" else args.get("turn_id")
        try:
            pending.append(self.path, {"op": op, "id": row_id, "args": args, "queued_at": now()})
        except OSError as exc:
            raise StoreError(f"Could not save to the studio store: it is busy{f' ({cause})' if cause else ''}"
                             f" and the queue beside it cannot be written either ({exc}); "
                             "nothing was saved") from None
        what = "this reply" if op == "reply" else "this rating"
        raise StoreQueued(f"The studio store is busy (another program is writing to it, for example an "
                          f"import): {what} is kept in the queue beside the store and is written as soon "
                          "as the store is free", row_id)

    def pending_writes(self) -> int:
        """How many writes wait in the queue."""
        return len(pending.entries(self.path))

    def flush_pending(self, wait_s: float = 0.5) -> tuple[int, int]:
        """Write what the queue holds, in order, while the store lets us; returns
        (written, still queued). An entry that can never be written (its turn was
        deleted, say) is moved to ``<store>.pending-failed.jsonl`` with the reason."""
        def apply(entry: dict) -> bool:
            args = entry.get("args") or {}
            try:
                if entry.get("op") == "reply":
                    self._patiently(lambda: self._add_reply_now(**args, replay=True), wait_s)
                elif entry.get("op") == "rate":
                    self._patiently(lambda: self._rate_now(**args, replay=True), wait_s)
                else:
                    raise StoreError(f"unknown queued write {entry.get('op')!r}")
            except StoreBusy:
                return False
            return True
        return pending.replay(self.path, apply)

    # -- ratings ---------------------------------------------------------------
    @_acknowledged
    def rate(self, turn_id: str, left_reply_id: str, right_reply_id: str, verdict: str,
             note: str = "", blind: bool = False, a_side: str = "left", wait_s: float | None = None) -> str:
        """Save (or replace) the verdict on a turn; the old one goes to history. While another
        writer holds the store it retries for ``wait_s`` (RATE_WAIT_S); then the rating goes
        to the on-disk queue and StoreQueued is raised: it is kept, not lost."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        args = {"turn_id": turn_id, "left_reply_id": left_reply_id, "right_reply_id": right_reply_id,
                "verdict": verdict, "note": note, "blind": bool(blind), "a_side": a_side}
        if self._queue_first():
            self._queue("rate", args)
        try:
            return self._patiently(lambda: self._rate_now(**args), RATE_WAIT_S if wait_s is None else wait_s)
        except StoreBusy as exc:
            self._queue("rate", args, exc)
        except _WaitsForQueuedReply:
            self._queue("rate", args)

    def _rate_now(self, turn_id, left_reply_id, right_reply_id, verdict, note, blind, a_side,
                  replay: bool = False) -> str:
        with self._lock, self.db.conn:
            self._write("BEGIN IMMEDIATE")
            for reply_id in (left_reply_id, right_reply_id):
                if not self.db.execute("SELECT 1 FROM replies WHERE id=?", [reply_id]).fetchone():
                    if not replay and reply_id in pending.pending_ids(self.path, "reply"):
                        raise _WaitsForQueuedReply(reply_id)
                    raise StoreError(f"reply {reply_id} is not in the store")
            old = self.rating_for_turn(turn_id)
            stamp = now()
            if old:
                same = (old["left_reply_id"], old["right_reply_id"], old["verdict"], old["note"] or "",
                        bool(old["blind"]), old["a_side"])
                if replay and same == (left_reply_id, right_reply_id, verdict, note, bool(blind), a_side):
                    return old["id"]  # written before the queue was rewritten
                self._history(old, "replaced")
                self._update("ratings", old["id"], {
                    "left_reply_id": left_reply_id, "right_reply_id": right_reply_id,
                    "verdict": verdict, "note": note, "blind": int(blind), "a_side": a_side,
                    "updated_at": stamp})
                return old["id"]
            row = {"id": new_id(), "turn_id": turn_id, "left_reply_id": left_reply_id,
                   "right_reply_id": right_reply_id, "verdict": verdict, "note": note,
                   "blind": int(blind), "a_side": a_side, "created_at": stamp, "updated_at": stamp}
            return self._insert("ratings", row)

    @_acknowledged
    def set_note(self, rating_id: str, note: str) -> None:
        with self._lock, self.db.conn:
            self._write("BEGIN IMMEDIATE")
            old = self.db["ratings"].get(rating_id)
            self._history(old, "note")
            self._update("ratings", rating_id, {"note": note, "updated_at": now()})

    def _history(self, old: dict, action: str) -> None:
        self._insert("rating_history", {"id": new_id(), "rating_id": old["id"], "action": action,
                                          "snapshot": json.dumps(old), "at": now()})

    def rating_for_turn(self, turn_id: str, rater: str = RESEARCHER) -> dict | None:
        """The rating ``rater`` gave this turn (by default the researcher's own)."""
        rows = list(self.db["ratings"].rows_where("turn_id = ? AND COALESCE(rater, '') = ?",
                                                  [turn_id, rater or ""]))
        return rows[0] if rows else None

    def rate_as(self, rater: str, turn_id: str, left_reply_id: str, right_reply_id: str, verdict: str,
                note: str = "", blind: bool = True) -> tuple[str, bool]:
        """Save another rater's verdict on a turn (an LLM, a colleague's sheet) beside the
        researcher's own; that rater's earlier verdict on the turn goes to history.
        Returns (rating id, changed: False when the same verdict was stored already)."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        with self._lock, self.db.conn:
            self._write("BEGIN IMMEDIATE")
            old = self.rating_for_turn(turn_id, rater)
            stamp = now()
            if old:
                if (old["verdict"], old["left_reply_id"], old["right_reply_id"], old["note"]) == (
                        verdict, left_reply_id, right_reply_id, note):
                    return old["id"], False
                self._history(old, "replaced")
                self._update("ratings", old["id"], {
                    "left_reply_id": left_reply_id, "right_reply_id": right_reply_id,
                    "verdict": verdict, "note": note, "blind": int(blind), "updated_at": stamp})
                return old["id"], True
            row = {"id": new_id(), "turn_id": turn_id, "left_reply_id": left_reply_id,
                   "right_reply_id": right_reply_id, "verdict": verdict, "note": note,
                   "blind": int(blind), "a_side": "left", "created_at": stamp, "updated_at": stamp,
                   "rater": rater or None}
            return self._insert("ratings", row), True

    # -- reading ---------------------------------------------------------------
    def conversations(self, limit: int = 500) -> list[dict]:
        sql = """SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.conversation_id=c.id) AS n_turns,
                 (SELECT COUNT(*) FROM ratings r JOIN turns t ON r.turn_id=t.id
                  WHERE t.conversation_id=c.id) AS n_ratings,
                 (SELECT prompt FROM turns t WHERE t.conversation_id=c.id ORDER BY idx LIMIT 1)
                  AS first_prompt
                 FROM conversations c ORDER BY created_at DESC LIMIT ?"""
        return [self._decode(dict(r)) for r in self.db.query(sql, [limit])]

    def conversation(self, conversation_id: str) -> dict:
        """A conversation with its turns, each turn's current replies and rating."""
        conv = self._decode(self.db["conversations"].get(conversation_id))
        turns = []
        for turn in self.db["turns"].rows_where("conversation_id=?", [conversation_id],
                                                order_by="idx"):
            replies = {r["slot"]: self._decode(r) for r in self.db["replies"].rows_where(
                "turn_id=? AND superseded=0", [turn["id"]])}
            turns.append({**turn, "replies": replies, "rating": self.rating_for_turn(turn["id"])})
        conv["turns"] = turns
        return conv

    def ratings(self) -> list[dict]:
        return list(self.db["ratings"].rows_where(order_by="created_at"))

    def reply(self, reply_id: str) -> dict:
        return self._decode(self.db["replies"].get(reply_id))

    @staticmethod
    def _decode(row: dict) -> dict:
        for key in ("model_a", "model_b", "sampling", "model_spec"):
            if isinstance(row.get(key), str) and row[key]:
                row[key] = json.loads(row[key])
        if "looping" in row and row["looping"] is None and "text" in row:  # written without a flag
            from engine.scoring.loops import loop_reason

            reason = loop_reason(row["text"] or "")
            row["looping"], row["loop_reason"] = int(reason is not None), reason
        return row

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
