"""Ratings into the store from another studio, a hand-written file or a study's CSV.

Three formats are read. All of them only ever add rows (nothing stored changes) and
report every line they skipped with the reason; a line that cannot be read never
stops the rest.

1. Bundle (what ``hal ratings export --format bundle`` writes). The first line is a
   header ``{"format": "hal-ratings-bundle", "bundle_schema": 1, "store_schema": 3, ...}``;
   each further line is ``{"kind": "conversation"|"turn"|"reply"|"rating"|"repeat_rating",
   "row": {...}}`` with the store's columns. Rows keep their ids, so importing a bundle
   twice, or a bundle of ratings this store already has, adds nothing. Every row is
   checked before it is stored (plain values only, ids as text, a reply's ``model_spec``
   a JSON object with a text ``source``), so a damaged row is reported with its line
   instead of breaking the results later.

2. Minimal JSONL, easy to write by hand (for instance from a published study). One vote
   a line::

     {"model_left": "HAL-8B", "model_right": "Llama-8B", "verdict": "likely_left",
      "blind": true, "prompt": "how was your weekend?", "left_text": "...",
      "right_text": "...", "rated_at": "2025-03-01T10:00:00Z"}

   Required: model_left, model_right, verdict. Optional: blind (default true), prompt,
   left_text, right_text, rated_at, note, prompt_set, left_adapter, right_adapter, rater,
   id. A line's identity is its content (or its ``id``): importing the same file again
   adds nothing, while identical lines in one file (two raters, same pair) stay separate
   votes.

3. CSV with a header line (the form A/B studies keep): one vote a row, A is the left
   side and B the right. Column names are matched without regard to case, spaces or
   hyphens; the first name listed is the documented one, the others are accepted too:

   ==================  ===========================================================
   model_a, model_b    who answered on each side (required; also model_left/right)
   verdict             Certainly A, Likely A, Tie, Likely B, Certainly B, Both bad
                       (required; also winner, preference)
   conversation_a/_b   each side's conversation as text (kept as the reply text;
                       also conversation_a_transcript, transcript_a, left_text).
                       A JSON list of {"role", "content"} messages is written out
                       as "role: content" lines, its first user message as prompt.
   prompt, rated_at (also timestamp, tstamp), blind (true/false/1/0/yes/no),
   note, rater (also annotator, judge), id (also rating_id, question_id),
   prompt_set, adapter_a, adapter_b
   ==================  ===========================================================

Verdicts in any format: the store's names (certainly_left, likely_left, tie,
likely_right, certainly_right, both_bad) or the A/B names above, in any case, with
spaces, hyphens or underscores. ``rated_at``: ISO 8601 (a time without an offset is
UTC) or Unix seconds. A time that cannot be read (a typo, or a year such as 0001 or
9999 that an offset pushes out of range) does not drop the vote: it is kept without
its time (it takes the import's time and the file's order, which online Elo uses) and
the report says so. A vote with the same model and adapter on both sides is imported
and reported as self-vs-self: it enters no win rate, leaderboard or Elo.

Limits: the file must be a regular file of at most 1 GiB, and a line (a CSV record)
at most 8 MiB; longer lines are skipped and reported. Votes are written in short
transactions (half a second each, then a pause of 0.11 s), so a rating given in the
studio, or a reply the engine stores, gets in while a long import runs. Each vote
(bundle: each rating with its turn, conversation and replies) goes in whole or not at
all. If the store refuses writes part-way (a full disk, a read-only file) the import
stops with one line saying how many ratings were saved; importing the file again adds
the rest.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sqlite3
import stat
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from engine.results.exports import _TABLES, BUNDLE_FORMAT, BUNDLE_KINDS, BUNDLE_SCHEMA
from engine.store import VERDICTS, now

MINIMAL_REQUIRED = ("model_left", "model_right", "verdict")
MINIMAL_FIELDS = set(MINIMAL_REQUIRED) | {"blind", "prompt", "left_text", "right_text", "rated_at",
                                          "note", "prompt_set", "left_adapter", "right_adapter",
                                          "rater", "id"}
MAX_LINE_BYTES = 8 * 2**20
MAX_FILE_BYTES = 2**30
CHUNK_SECONDS = 0.5  # longest write transaction of an import
PAUSE_SECONDS = 0.11  # then this long with the store free (SQLite's busy wait polls every <= 100 ms)

# CSV header names -> the minimal format's field (the first of each is the documented one)
CSV_COLUMNS = {
    "model_left": ("model_a", "model_left", "model_1"),
    "model_right": ("model_b", "model_right", "model_2"),
    "verdict": ("verdict", "winner", "preference", "choice"),
    "left_text": ("conversation_a", "conversation_a_transcript", "transcript_a", "left_text", "text_a"),
    "right_text": ("conversation_b", "conversation_b_transcript", "transcript_b", "right_text", "text_b"),
    "prompt": ("prompt", "question"),
    "rated_at": ("rated_at", "timestamp", "tstamp", "time", "created_at"),
    "blind": ("blind",),
    "note": ("note", "notes", "comment"),
    "rater": ("rater", "annotator", "judge", "rater_id"),
    "id": ("id", "rating_id", "question_id", "vote_id"),
    "prompt_set": ("prompt_set",),
    "left_adapter": ("adapter_a", "left_adapter"),
    "right_adapter": ("adapter_b", "right_adapter"),
}
AB_VERDICTS = {"certainly_a": "certainly_left", "likely_a": "likely_left", "tie": "tie",
               "likely_b": "likely_right", "certainly_b": "certainly_right", "both_bad": "both_bad",
               "both_are_bad": "both_bad", "bothbad": "both_bad", "tie_(bothbad)": "both_bad",
               "a_certainly": "certainly_left", "a_likely": "likely_left",
               "b_likely": "likely_right", "b_certainly": "certainly_right"}


class ImportFormatError(ValueError):
    """The whole file is refused: foreign, from an unknown schema, too large or unreadable."""


class _UnitRefused(Exception):
    """A bundle rating was refused: its unit is rolled back."""


class ImportStopped(ValueError):
    """The store refused writes part-way (full disk, read-only file): one line says what
    was saved; every saved vote is whole."""


# -- reading the file ---------------------------------------------------------------------
def _open(path: Path):
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except IsADirectoryError:
        raise ImportFormatError(f"{path} is a folder; ratings import reads a file") from None
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImportFormatError(f"{path} is not a regular file (a device, pipe or socket); "
                                    "ratings import reads a file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImportFormatError(f"{path.name} is larger than {_size(MAX_FILE_BYTES)} "
                                    f"({_size(st.st_size)}); split it and import the parts")
    except BaseException:
        fh.close()
        raise
    return fh


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _lines(fh, after: int = 0):
    """(line number, text or None, why it was not read) for the lines after line ``after``
    (the file position is just past it); lines over the cap are skipped without holding
    them, and reading stops at the file cap even if the file grows."""
    total, lineno = fh.tell(), after
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        total += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                raw = fh.readline(MAX_LINE_BYTES)
                total += len(raw)
                if total > MAX_FILE_BYTES:
                    raise ImportFormatError(f"stopped reading at {_size(MAX_FILE_BYTES)}: the file grew "
                                            "past the import limit")
            yield lineno, None, f"line longer than {_size(MAX_LINE_BYTES)}; not read"
            continue
        if total > MAX_FILE_BYTES:
            raise ImportFormatError(f"stopped reading at {_size(MAX_FILE_BYTES)}: the file grew past "
                                    "the import limit")
        try:
            yield lineno, raw.decode("utf-8"), None
        except UnicodeDecodeError:
            yield lineno, None, "not UTF-8 text"


def _loads(text: str):
    """JSON, or raise ValueError with a short reason (deep nesting included)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    except ValueError:
        raise ValueError("not valid JSON") from None


def import_file(store, path: str | Path) -> dict:
    """Merge a ratings file into the store; returns what was added and what was skipped why."""
    path = Path(path)
    with _open(path) as fh:
        first = None
        for lineno, text, problem in _lines(fh):
            if text is not None and not text.strip():
                continue
            if text is None:
                if problem == "not UTF-8 text":
                    raise ImportFormatError(f"{path.name} is not a text file; ratings import reads "
                                            "JSONL or CSV")
                raise ImportFormatError(f"{path.name}: the first line is longer than "
                                        f"{_size(MAX_LINE_BYTES)}, the limit for one line; nothing was imported")
            first = (lineno, text)
            break
        if first is None:
            raise ImportFormatError(f"{path.name} is empty")
        try:
            head = _loads(first[1])
        except ValueError:
            head = None
        if head is None:
            if _looks_like_csv(first[1]):
                return _import_csv(store, path, fh)
            raise ImportFormatError(f"{path.name} is not JSONL: the first line is not a JSON object; "
                                    "import takes a HAL ratings bundle, the minimal JSONL format or a "
                                    "CSV with a header line")
        if not isinstance(head, dict):
            raise ImportFormatError(f"{path.name}: the first line is not a JSON object")
        if head.get("format") == BUNDLE_FORMAT:
            return _import_bundle(store, path, head, _lines(fh, first[0]))
        if "format" in head:
            raise ImportFormatError(f"{path.name} is a {str(head['format'])[:80]!r} file, not a HAL "
                                    "ratings bundle; nothing was imported")
        if "kind" in head and "row" in head:
            raise ImportFormatError(f"{path.name} has bundle rows but no header line: it comes from an "
                                    "older or unknown exporter; re-export it from a current studio")
        if all(k in head for k in MINIMAL_REQUIRED):
            fh.seek(0)
            return _import_votes(store, path, "minimal", _minimal_items(_lines(fh)))
        keys = ", ".join(sorted(str(k)[:40] for k in head)[:8]) or "none"
        raise ImportFormatError(f"{path.name} is neither a HAL ratings bundle nor the minimal ratings "
                                f"format (first line's keys: {keys}; need model_left, model_right, verdict)")


def _looks_like_csv(line: str) -> bool:
    return any(sep in line for sep in (",", ";", "\t"))


def _report(path: Path, fmt: str) -> dict:
    return {"file": str(path), "format": fmt, "imported": 0, "already_stored": 0,
            "skipped": [], "kept_without_time": [], "self_votes": [], "notes": []}


def _skip(report: dict, lineno: int, reason: str, kind: str = "bad", **extra) -> None:
    report["skipped"].append({"line": lineno, **extra, "reason": reason, "kind": kind})


def exit_code(report: dict) -> int:
    """0: every line was imported or is already stored; 3: some lines were skipped as bad."""
    return 3 if any(s.get("kind", "bad") == "bad" for s in report["skipped"]) else 0


# -- writing in short transactions ----------------------------------------------------------
def _why(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the store is read-only (its file or folder cannot be written)"
    if "locked" in text or "busy" in text:
        return "another program kept the store locked"
    return f"the store refused the write ({text})"


class _Writer:
    """Writes whole votes in transactions of at most CHUNK_SECONDS, with the store left
    free for PAUSE_SECONDS between them, so other writers are never shut out for long."""

    def __init__(self, store):
        self.store, self.saved, self.in_tx, self.lineno = store, 0, 0, 0
        self._t0 = 0.0

    def _fatal(self, exc: sqlite3.Error) -> ImportStopped:
        where = f"at line {self.lineno}" if self.lineno else "before the first line"
        saved = (f"{self.saved} ratings from earlier lines were saved, each whole; importing the file "
                 "again adds the rest" if self.saved else "nothing was imported")
        return ImportStopped(f"import stopped {where}: {_why(exc)}; {saved}")

    def _begin(self) -> None:
        self.store._lock.acquire()
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.store._lock.release()
            raise self._fatal(exc) from None
        self._t0 = time.monotonic()

    def _end(self, commit: bool) -> None:
        conn = self.store.db.conn
        try:
            if conn.in_transaction:
                conn.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            self.store._lock.release()

    def __enter__(self):
        self._begin()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._end(True)
            except sqlite3.Error as err:
                self.in_tx = 0
                raise self._fatal(err) from None
            self.saved += self.in_tx
        else:
            with contextlib.suppress(sqlite3.Error):
                self._end(False)
        return False

    @contextlib.contextmanager
    def unit(self, lineno: int, savepoint: bool = True):
        """One vote: all its rows or none. With ``savepoint`` an IntegrityError refuses just
        this vote (raised to the caller as ValueError); without one (a minimal vote, whose
        ids were checked first, so it cannot collide) it ends the import like any other
        store error, with this transaction rolled back."""
        self.lineno = lineno
        db = self.store.db
        try:
            if savepoint:
                db.execute("SAVEPOINT vote")
            yield
            if savepoint:
                db.execute("RELEASE vote")
        except sqlite3.IntegrityError as exc:
            if not savepoint:
                self._abort()
                raise self._fatal(exc) from None
            db.execute("ROLLBACK TO vote")
            db.execute("RELEASE vote")
            raise ValueError(f"refused by the store: {exc}") from None
        except sqlite3.Error as exc:
            self._abort()
            raise self._fatal(exc) from None
        except BaseException:
            if savepoint:
                db.execute("ROLLBACK TO vote")
                db.execute("RELEASE vote")
            else:
                self._abort()
            raise

    def _abort(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.store.db.conn.in_transaction:
                self.store.db.conn.execute("ROLLBACK")
        self.in_tx = 0

    def added(self, ratings: int = 1) -> None:
        self.in_tx += ratings

    def breathe(self) -> None:
        """Commit and let other writers in once this transaction is old enough."""
        if time.monotonic() - self._t0 < CHUNK_SECONDS:
            return
        try:
            self._end(True)
        except sqlite3.Error as exc:
            self.in_tx = 0
            raise self._fatal(exc) from None
        self.saved += self.in_tx
        self.in_tx = 0
        time.sleep(PAUSE_SECONDS)
        self._begin()


def _exists(store, table: str, row_id) -> bool:
    return store.db.execute(f"SELECT 1 FROM {table} WHERE id=?", [row_id]).fetchone() is not None


def _put(store, table: str, row: dict) -> None:
    cols = ", ".join(row)
    store.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})",
                     list(row.values()))


def _columns(store, table: str) -> list[str]:
    return [d[0] for d in store.db.execute(f"SELECT * FROM {table} LIMIT 0").description]


def _deleted_here(store, rating_id: str) -> bool:
    return store.db.execute("SELECT 1 FROM rating_history WHERE rating_id=? AND action='deleted'",
                            [rating_id]).fetchone() is not None


# -- bundles -------------------------------------------------------------------------------
_REFS = {"turn": [("conversation_id", "conversations")],
         "reply": [("turn_id", "turns")],
         "rating": [("turn_id", "turns"), ("left_reply_id", "replies"), ("right_reply_id", "replies")],
         "repeat_rating": [("original_rating_id", "ratings"), ("left_reply_id", "replies"),
                           ("right_reply_id", "replies")]}
_JSON_OBJECT_COLUMNS = {"conversation": ("model_a", "model_b", "sampling"), "reply": ("sampling",)}


def _json_object(value, col: str) -> str | None:
    """None if ``value`` is empty or text holding a JSON object, else why not."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return f"{col!r} must be JSON text, not {type(value).__name__}"
    try:
        parsed = _loads(value)
    except ValueError as exc:
        return f"{col!r} is {exc}"
    if not isinstance(parsed, dict):
        return f"{col!r} must hold a JSON object, not {type(parsed).__name__}"
    return None


def row_problem(kind: str, row: dict) -> str | None:
    """Why a bundle row's values cannot be stored as they are (None: they can)."""
    for col, value in row.items():
        if value is not None and not isinstance(value, (str, int, float)):
            return f"field {str(col)[:40]!r} holds a {type(value).__name__}; bundle rows hold plain values"
    if not isinstance(row.get("id"), str) or not row["id"]:
        return "'id' must be non-empty text"
    for col, _parent in _REFS.get(kind, []):
        if row.get(col) is not None and not isinstance(row[col], str):
            return f"{col!r} must be text"
    for col in _JSON_OBJECT_COLUMNS.get(kind, ()):
        why = _json_object(row.get(col), col)
        if why:
            return why
    if kind == "reply":
        spec = row.get("model_spec")
        if not isinstance(spec, str) or not spec:
            return "'model_spec' is missing; a reply needs the model that wrote it"
        try:
            parsed = _loads(spec)
        except ValueError as exc:
            return f"'model_spec' is {exc}"
        if not isinstance(parsed, dict):
            return f"'model_spec' must hold a JSON object, not {type(parsed).__name__}"
        if not isinstance(parsed.get("source"), str) and not (row.get("model_name") or "").strip():
            return "'model_spec' names no source (text) and 'model_name' is empty: the reply's model is unknown"
        if parsed.get("adapter") is not None and not isinstance(parsed["adapter"], str):
            return "'model_spec' adapter must be text"
        for col in ("model_name", "adapter", "text", "side", "slot"):
            if row.get(col) is not None and not isinstance(row[col], str):
                return f"{col!r} must be text"
    if kind in ("rating", "repeat_rating"):
        if row.get("verdict") not in VERDICTS:
            return f"unknown verdict {str(row.get('verdict'))[:80]!r}"
        for col in ("created_at", "note"):
            if row.get(col) is not None and not isinstance(row[col], str):
                return f"{col!r} must be text"
    if kind == "turn" and row.get("a_side") not in (None, "left", "right"):
        return "'a_side' must be left or right"
    return None


def _bundle_row_problem(store, kind: str, row: dict, refused: dict) -> str | None:
    """Why a checked bundle row cannot be added here (None: it can)."""
    table = _TABLES[kind]
    if _exists(store, table, row["id"]):
        return "already stored"
    for col, parent in _REFS.get(kind, []):
        ref = row.get(col)
        if ref in refused:
            return f"{kind} refers to a {parent[:-1]} ({col}={ref!r}) that was skipped (line {refused[ref]})"
        if not ref or not _exists(store, parent, ref):
            return (f"{kind} refers to a {parent[:-1]} ({col}={ref!r}) that is neither in the file nor "
                    "stored")
    if kind == "rating" and _deleted_here(store, row["id"]):
        return "deleted in this studio earlier (kept in rating history); not brought back"
    if kind == "rating":  # one rating per turn and rater (the researcher's: rater empty)
        other = store.db.execute("SELECT id FROM ratings WHERE turn_id=? AND COALESCE(rater, '')=?",
                                 [row["turn_id"], row.get("rater") or ""]).fetchone()
        if other:
            return f"its turn already has another rating here ({other[0]}); the stored one was kept"
    return None


def _bundle_units(items: list) -> list[list]:
    """Each rating with the conversation, turn and replies it needs (and its repeats), in
    file order; rows no rating needs come after, parents first."""
    first: dict[tuple, tuple] = {}
    for it in items:
        first.setdefault((it[1], it[2]["id"]), it)
    repeats = defaultdict(list)
    for it in items:
        if it[1] == "repeat_rating":
            repeats[it[2].get("original_rating_id")].append(it)
    used, units = set(), []
    for it in items:
        if it[1] != "rating":
            continue
        row = it[2]
        turn = first.get(("turn", row.get("turn_id")))
        conv = turn and first.get(("conversation", turn[2].get("conversation_id")))
        members = [conv, turn, first.get(("reply", row.get("left_reply_id"))),
                   first.get(("reply", row.get("right_reply_id"))), it, *repeats.get(row["id"], [])]
        unit, here = [], set()
        for m in members:  # a parent shared by several ratings goes with each (stored once)
            if m is not None and id(m) not in here:
                here.add(id(m))
                used.add(id(m))
                unit.append(m)
        units.append(unit)
    order = {k: i for i, k in enumerate(BUNDLE_KINDS)}
    rest = sorted((it for it in items if id(it) not in used), key=lambda t: (order[t[1]], t[0]))
    return units + [[it] for it in rest]


def _import_bundle(store, path: Path, header: dict, lines) -> dict:
    schema = header.get("bundle_schema")
    if not isinstance(schema, int) or schema < 1:
        raise ImportFormatError(f"{path.name} is a HAL ratings bundle of an older, unsupported schema "
                                f"({str(schema)[:40]!r}); re-export it from a current studio")
    if schema > BUNDLE_SCHEMA:
        raise ImportFormatError(f"{path.name} was written by a newer studio (bundle schema {schema}, "
                                f"this one reads {BUNDLE_SCHEMA}); update the studio to import it")
    report = _report(path, "bundle")
    ignored: Counter = Counter()
    columns = {kind: _columns(store, table) for kind, table in _TABLES.items()}
    items, refused = [], {}
    for lineno, text, problem in lines:
        if text is None:
            _skip(report, lineno, problem)
            continue
        if not text.strip():
            continue
        try:
            item = _loads(text)
        except ValueError as exc:
            _skip(report, lineno, str(exc))
            continue
        if not isinstance(item, dict) or item.get("kind") not in BUNDLE_KINDS \
                or not isinstance(item.get("row"), dict) or not item["row"].get("id"):
            _skip(report, lineno, "not a bundle row (needs kind, row.id)")
            continue
        kind, row = item["kind"], item["row"]
        ignored.update(str(k)[:40] for k in row if k not in columns[kind])
        clean = {c: row.get(c) for c in columns[kind] if c in row}
        why = row_problem(kind, clean)
        if why:
            rid = clean.get("id")
            if isinstance(rid, str):
                refused.setdefault(rid, lineno)
            _skip(report, lineno, f"{kind}: {why}", **({"id": rid} if isinstance(rid, str) else {}))
            continue
        items.append((lineno, kind, clean))
    stamp = now()
    with _Writer(store) as writer:
        for unit in _bundle_units(items):
            skipped: list[tuple] = []
            added = 0
            try:
                with writer.unit(unit[0][0]):
                    for lineno, kind, row in unit:
                        writer.lineno = lineno
                        reason = _bundle_row_problem(store, kind, row, refused)
                        if reason == "already stored":
                            if kind == "rating":
                                report["already_stored"] += 1
                                skipped.append((lineno, "rating already stored (duplicate)", "duplicate",
                                                row["id"]))
                            continue
                        if not reason:
                            try:
                                _put(store, _TABLES[kind], row)
                            except sqlite3.IntegrityError as exc:
                                reason = f"refused by the store: {exc}"
                        if reason:
                            skipped.append((lineno, reason, "deleted_here" if "deleted in this" in reason
                                            else "bad", row["id"]))
                            if kind == "rating":  # the vote goes in whole or not at all
                                raise _UnitRefused
                            refused.setdefault(row["id"], lineno)
                            continue
                        if kind == "rating":
                            _put(store, "rating_origins", {
                                "rating_id": row["id"], "source": path.name, "source_key": row["id"],
                                "rater": None, "line": lineno, "imported_at": stamp})
                            added += 1
            except _UnitRefused:
                for lineno, _kind, row in unit:  # rolled back: what the rating needed is not here
                    if not _exists(store, _TABLES[_kind], row["id"]):
                        refused.setdefault(row["id"], lineno)
            for lineno, reason, kind, rid in skipped:
                _skip(report, lineno, reason, kind, id=rid)
            report["imported"] += added
            writer.added(added)
            writer.breathe()
    if ignored:
        report["notes"].append("fields this studio does not know were ignored: "
                               + ", ".join(sorted(ignored)))
    return report


# -- single votes (minimal JSONL and CSV) ---------------------------------------------------
def normalise_verdict(raw) -> str | None:
    v = str(raw or "").strip().lower().replace("-", "_").replace(" ", "_")
    while "__" in v:
        v = v.replace("__", "_")
    if v in VERDICTS:
        return v
    return AB_VERDICTS.get(v)


def parse_time(raw) -> str | None:
    """ISO 8601 or Unix seconds to the store's UTC form; naive times are taken as UTC.
    Raises ValueError when it is not a time this can represent."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        digits = isinstance(raw, str) and raw.strip().replace(".", "", 1).isdigit()
        if isinstance(raw, (int, float)) or (digits and len(raw.strip().split(".")[0]) >= 9):
            t = datetime.fromtimestamp(float(raw), timezone.utc)
        else:
            t = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            t = t.astimezone(timezone.utc)
        return t.isoformat(timespec="milliseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"'rated_at' {str(raw)[:80]!r} is not a time this studio can read") from None


_when = parse_time  # older name


def _minimal_problem(d) -> str | None:
    if not isinstance(d, dict):
        return "not a JSON object"
    for key in MINIMAL_REQUIRED:
        if not isinstance(d.get(key), str) or not d[key].strip():
            return f"missing or empty {key!r}"
    if normalise_verdict(d["verdict"]) is None:
        return (f"unknown verdict {d['verdict'][:80]!r} (use one of {', '.join(VERDICTS)}, or "
                "Certainly A, Likely A, Tie, Likely B, Certainly B, Both bad)")
    if "blind" in d and not isinstance(d["blind"], (bool, int)):
        return "'blind' must be true or false"
    for key in ("prompt", "left_text", "right_text", "note", "prompt_set", "left_adapter", "right_adapter"):
        if d.get(key) is not None and not isinstance(d[key], str):
            return f"{key!r} must be text"
    for key in ("id", "rater"):
        if d.get(key) is not None and (isinstance(d[key], bool) or not isinstance(d[key], (str, int, float))):
            return f"{key!r} must be text or a number, not {type(d[key]).__name__}"
    return None


def _minimal_items(lines):
    for lineno, text, problem in lines:
        if text is None:
            yield lineno, None, problem
            continue
        if not text.strip():
            continue
        try:
            yield lineno, _loads(text), None
        except ValueError as exc:
            yield lineno, None, str(exc)


def _csv_key(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_").lstrip("\ufeff")


def _truthy(text: str):
    t = text.strip().lower()
    if t in ("1", "true", "yes", "y", "t"):
        return True
    if t in ("0", "false", "no", "n", "f"):
        return False
    return text  # left for the checks to refuse


def _conversation_text(text: str) -> tuple[str, str | None]:
    """A conversation cell as reply text, and its first user message when it is a JSON
    list of messages."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            msgs = _loads(stripped)
        except ValueError:
            msgs = None
        if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "content" in m for m in msgs):
            lines = [f"{m.get('role', '?')}: {m['content']}" for m in msgs]
            user = next((str(m["content"]) for m in msgs if m.get("role") == "user"), None)
            return "\n".join(lines), user
    return text, None


def _csv_items(fh, path: Path, report: dict):
    fh.seek(0)
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    csv.field_size_limit(MAX_LINE_BYTES)
    head = text.readline()
    text.seek(0)
    delimiter = max((",", ";", "\t"), key=head.count)  # the header's separator
    reader = csv.reader(text, csv.excel, delimiter=delimiter)
    try:
        header = next(reader)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path.name}: the header line cannot be read ({exc})") from None
    keys = [_csv_key(h) for h in header]
    where = {}
    for field, names in CSV_COLUMNS.items():
        for name in names:
            if name in keys:
                where[field] = keys.index(name)
                break
    missing = [CSV_COLUMNS[f][0] for f in MINIMAL_REQUIRED if f not in where]
    if missing:
        raise ImportFormatError(
            f"{path.name} looks like CSV, but its header has no {', '.join(missing)} column; a ratings CSV "
            "needs model_a, model_b, verdict (Certainly A ... Certainly B, Tie, Both bad) and usually "
            "conversation_a, conversation_b")
    known = {i for i in where.values()}
    unknown = [header[i] for i in range(len(header)) if i not in known and header[i].strip()]
    if unknown:
        report["notes"].append("columns this studio does not read were ignored: "
                               + ", ".join(h[:40] for h in unknown[:20]))
    line_done = reader.line_num
    while True:
        start = line_done + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_done = reader.line_num
            yield start, None, f"not a readable CSV record ({str(exc)[:120]})"
            continue
        except UnicodeDecodeError:
            raise ImportFormatError(f"{path.name}: the text after line {line_done} is not UTF-8; "
                                    "nothing was imported") from None
        line_done = reader.line_num
        if not any(c.strip() for c in record):
            continue
        d = {}
        for field, i in where.items():
            if i < len(record) and record[i] != "":
                d[field] = record[i]
        if "blind" in d:
            d["blind"] = _truthy(d["blind"])
        for side in ("left_text", "right_text"):
            if side in d:
                d[side], user = _conversation_text(d[side])
                if user is not None and not d.get("prompt"):
                    d["prompt"] = user
        yield start, d, None


def _import_csv(store, path: Path, fh) -> dict:
    report = _report(path, "csv")
    return _import_votes(store, path, "csv", _csv_items(fh, path, report), report)


def _import_votes(store, path: Path, fmt: str, items, report: dict | None = None) -> dict:
    report = report or _report(path, fmt)
    stamp = now()
    seen: Counter = Counter()
    unknown: Counter = Counter()
    with _Writer(store) as writer:
        for lineno, d, problem in items:
            if problem is None:
                problem = _minimal_problem(d)
            if problem:
                _skip(report, lineno, problem)
                continue
            unknown.update(str(k)[:40] for k in d if k not in MINIMAL_FIELDS)
            if d.get("id") is not None:
                content = "id:" + str(d["id"])
            else:
                content = json.dumps({k: d.get(k) for k in sorted(MINIMAL_FIELDS - {"id"})},
                                     sort_keys=True, ensure_ascii=False)
            seen[content] += 1
            if d.get("id") is not None and seen[content] > 1:
                _skip(report, lineno, f"id {str(d['id'])[:80]!r} repeats an earlier line")
                continue
            key = hashlib.sha256(f"{content}#{seen[content]}".encode()).hexdigest()[:32]
            rid = "imp-" + key
            self_vote = (d["model_left"].strip() == d["model_right"].strip()
                         and (d.get("left_adapter") or "") == (d.get("right_adapter") or ""))
            if _deleted_here(store, rid):
                _skip(report, lineno, "deleted in this studio earlier (kept in rating history); not "
                      "brought back", "deleted_here")
                continue
            if _exists(store, "ratings", rid) or _exists(store, "conversations", rid + "-c"):
                report["already_stored"] += 1
                _skip(report, lineno, "already imported (duplicate)", "duplicate")
                if self_vote:
                    report["self_votes"].append({"line": lineno, "model": d["model_left"].strip()})
                continue
            when = stamp
            if d.get("rated_at") not in (None, ""):
                try:
                    when = parse_time(d["rated_at"])
                except ValueError as exc:
                    report["kept_without_time"].append({"line": lineno, "reason": str(exc)})
            with writer.unit(lineno, savepoint=False):  # its ids were checked just above
                _add_vote(store, rid, d, path.name, lineno, key, stamp, when)
            report["imported"] += 1
            writer.added()
            if self_vote:
                report["self_votes"].append({"line": lineno, "model": d["model_left"].strip()})
            writer.breathe()
    if unknown:
        report["notes"].append("unknown fields were ignored: " + ", ".join(sorted(unknown)))
    if report["self_votes"]:
        report["notes"].append(f"{len(report['self_votes'])} votes have the same model on both sides "
                               "(self-vs-self); they are kept but enter no win rate, leaderboard or Elo")
    return report


def _add_vote(store, rid: str, d: dict, source: str, lineno: int, key: str, stamp: str, when: str) -> None:
    blind = int(bool(d.get("blind", True)))
    spec_l = {"source": d["model_left"], "adapter": d.get("left_adapter") or None}
    spec_r = {"source": d["model_right"], "adapter": d.get("right_adapter") or None}
    _put(store, "conversations", {"id": rid + "-c", "created_at": when, "title": f"imported from {source}"[:200],
                                  "blind": blind, "model_a": json.dumps(spec_l),
                                  "model_b": json.dumps(spec_r), "sampling": "{}"})
    _put(store, "turns", {"id": rid + "-t", "conversation_id": rid + "-c", "idx": 0,
                          "prompt": d.get("prompt") or "", "created_at": when, "blind": blind,
                          "a_side": "left", "prompt_set": d.get("prompt_set")})
    for slot, side, spec, text in (("a", "left", spec_l, d.get("left_text")),
                                   ("b", "right", spec_r, d.get("right_text"))):
        _put(store, "replies", {"id": f"{rid}-{slot}", "turn_id": rid + "-t", "slot": slot, "side": side,
                                "status": "done", "text": text or "", "finish_reason": "imported",
                                "model_spec": json.dumps(spec), "model_name": spec["source"],
                                "adapter": spec["adapter"] or "", "backend": "imported",
                                "created_at": when, "superseded": 0})
    _put(store, "ratings", {"id": rid, "turn_id": rid + "-t", "left_reply_id": rid + "-a",
                            "right_reply_id": rid + "-b", "verdict": normalise_verdict(d["verdict"]),
                            "note": d.get("note") or "", "blind": blind, "a_side": "left",
                            "created_at": when, "updated_at": when})
    _put(store, "rating_origins", {"rating_id": rid, "source": source, "source_key": key,
                                   "rater": str(d["rater"]) if d.get("rater") is not None else None,
                                   "line": lineno, "imported_at": stamp})
