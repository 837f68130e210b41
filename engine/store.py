"""The ratings store: one SQLite file (WAL), opened through sqlite-utils.

Both processes open it: the engine writes replies with their provenance; the
studio writes conversations, turns and ratings itself, so a rating never
depends on the engine being alive. Migrations only ever add.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from engine import paths

SCHEMA_VERSION = 4
VERDICTS = ("certainly_left", "likely_left", "tie", "likely_right", "certainly_right", "both_bad")


class StoreError(Exception):
    """The store cannot be opened or written (newer schema, read-only, full disk)."""


def save_error(exc: sqlite3.Error) -> StoreError:
    """A failed write as one clear sentence (the GUI shows it next to the rating)."""
    text = str(exc)
    if "full" in text:
        why = "the disk is full; free some space and try again"
    elif "readonly" in text or "read-only" in text:
        why = "the data directory is read-only"
    else:
        why = text
    return StoreError(f"Could not save to the studio store: {why} (nothing was changed; {text})")


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


def _migrate_4(db: sqlite_utils.Database) -> None:
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
MIGRATIONS = {1: _migrate_1, 2: _migrate_2, 3: _migrate_3, 4: _migrate_4}
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
            self._refuse_newer()  # before anything writes, WAL mode included
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:  # OSError: the data folder cannot be made
            raise StoreError(f"Cannot open the studio store {self.path}: {exc}") from None

    # -- schema ---------------------------------------------------------------
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
    def create_conversation(self, model_a: dict, model_b: dict, sampling: dict,
                            blind: bool, title: str = "") -> str:
        return self._insert("conversations", {
            "id": new_id(), "created_at": now(), "title": title[:200], "blind": int(blind),
            "model_a": json.dumps(model_a), "model_b": json.dumps(model_b),
            "sampling": json.dumps(sampling)})

    def add_turn(self, conversation_id: str, prompt: str, blind: bool, a_side: str) -> str:
        if a_side not in ("left", "right"):
            raise ValueError("a_side must be left or right")
        with self._lock:
            idx = self.db.execute("SELECT COUNT(*) FROM turns WHERE conversation_id=?",
                                  [conversation_id]).fetchone()[0]
            return self._insert("turns", {
                "id": new_id(), "conversation_id": conversation_id, "idx": idx, "prompt": prompt,
                "created_at": now(), "blind": int(blind), "a_side": a_side})

    def add_reply(self, turn_id: str, slot: str, side: str, text: str, finish_reason: str,
                  model_spec: dict, model_info: dict, sampling: dict, stats: dict,
                  status: str = "done", error: str = "") -> str:
        """Record a reply and everything needed to say how it was made."""
        with self._lock:
            # One unit (a savepoint also nests in a caller's transaction): a failed insert
            # must not leave the previous reply marked superseded.
            self._write("SAVEPOINT add_reply")
            try:
                self._write("UPDATE replies SET superseded=1 WHERE turn_id=? AND slot=?", [turn_id, slot])
                reply_id = self._insert_reply(turn_id, slot, side, text, finish_reason, model_spec,
                                              model_info, sampling, stats, status, error)
            except BaseException:
                if self.db.conn.in_transaction:  # SQLITE_FULL may already have rolled it all back
                    self.db.execute("ROLLBACK TO add_reply")
                    self.db.execute("RELEASE add_reply")
                raise
            self._write("RELEASE add_reply")
            return reply_id

    def _insert_reply(self, turn_id, slot, side, text, finish_reason, model_spec, model_info,
                      sampling, stats, status, error) -> str:
        return self._insert("replies", {
                "id": new_id(), "turn_id": turn_id, "slot": slot, "side": side, "status": status,
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

    # -- ratings ---------------------------------------------------------------
    def rate(self, turn_id: str, left_reply_id: str, right_reply_id: str, verdict: str,
             note: str = "", blind: bool = False, a_side: str = "left") -> str:
        """Save (or replace) the verdict on a turn; the old one goes to history."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        with self._lock, self.db.conn:
            self._write("BEGIN IMMEDIATE")
            for reply_id in (left_reply_id, right_reply_id):
                if not self.db.execute("SELECT 1 FROM replies WHERE id=?", [reply_id]).fetchone():
                    raise StoreError(f"reply {reply_id} is not in the store")
            old = self.rating_for_turn(turn_id)
            stamp = now()
            if old:
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
        return row

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
