"""Ratings into the store from another studio or from a hand-written file.

Two JSONL formats are read; both only ever add rows (nothing stored changes), run in
one transaction, and report every line they skipped with the reason.

1. Bundle (what ``hal ratings export --format bundle`` writes). The first line is a
   header ``{"format": "hal-ratings-bundle", "bundle_schema": 1, "store_schema": 3, ...}``;
   each further line is ``{"kind": "conversation"|"turn"|"reply"|"rating"|"repeat_rating",
   "row": {...}}`` with the store's columns. Rows keep their ids, so importing a bundle
   twice, or a bundle of ratings this store already has, adds nothing.

2. Minimal, easy to write by hand (for instance from a published study). One vote a line::

     {"model_left": "HAL-8B", "model_right": "Llama-8B", "verdict": "likely_left",
      "blind": true, "prompt": "how was your weekend?", "left_text": "...",
      "right_text": "...", "rated_at": "2025-03-01T10:00:00Z"}

   Required: model_left, model_right, verdict (certainly_left, likely_left, tie,
   likely_right, certainly_right, both_bad; spaces or hyphens instead of "_" and any case
   are accepted). Optional: blind (default true), prompt, left_text, right_text, rated_at
   (ISO 8601; votes without it keep the file's order, which online Elo uses), note,
   prompt_set, left_adapter, right_adapter, rater, id. A line's identity is its content
   (or its ``id``): importing the same file again adds nothing, while identical lines in
   one file (two raters, same pair) stay separate votes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from engine.results.exports import _TABLES, BUNDLE_FORMAT, BUNDLE_KINDS, BUNDLE_SCHEMA
from engine.store import VERDICTS, now

MINIMAL_REQUIRED = ("model_left", "model_right", "verdict")
MINIMAL_FIELDS = set(MINIMAL_REQUIRED) | {"blind", "prompt", "left_text", "right_text", "rated_at",
                                          "note", "prompt_set", "left_adapter", "right_adapter",
                                          "rater", "id"}


class ImportFormatError(ValueError):
    """The whole file is refused: foreign, from an unknown schema, or unreadable."""


def import_file(store, path: str | Path) -> dict:
    """Merge a ratings file into the store; returns what was added and what was skipped why."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path.name} is not a text file; ratings import reads JSONL") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines:
        raise ImportFormatError(f"{path.name} is empty")
    try:
        first = json.loads(lines[0][1])
    except ValueError:
        hint = " (it looks like CSV)" if "," in lines[0][1] else ""
        raise ImportFormatError(f"{path.name} is not JSONL{hint}: the first line is not a JSON object; "
                                "import takes a HAL ratings bundle or the minimal JSONL format") from None
    if not isinstance(first, dict):
        raise ImportFormatError(f"{path.name}: the first line is not a JSON object")
    if first.get("format") == BUNDLE_FORMAT:
        return _import_bundle(store, path, first, lines[1:])
    if "format" in first:
        raise ImportFormatError(f"{path.name} is a {str(first['format'])!r} file, not a HAL ratings "
                                "bundle; nothing was imported")
    if "kind" in first and "row" in first:
        raise ImportFormatError(f"{path.name} has bundle rows but no header line: it comes from an "
                                "older or unknown exporter; re-export it from a current studio")
    if all(k in first for k in MINIMAL_REQUIRED):
        return _import_minimal(store, path, lines)
    keys = ", ".join(sorted(first)[:8]) or "none"
    raise ImportFormatError(f"{path.name} is neither a HAL ratings bundle nor the minimal ratings "
                            f"format (first line's keys: {keys}; need model_left, model_right, verdict)")


def _report(path: Path, fmt: str) -> dict:
    return {"file": str(path), "format": fmt, "imported": 0, "already_stored": 0,
            "skipped": [], "notes": []}


def _columns(store, table: str) -> list[str]:
    return [d[0] for d in store.db.execute(f"SELECT * FROM {table} LIMIT 0").description]


def _exists(store, table: str, row_id: str) -> bool:
    return store.db.execute(f"SELECT 1 FROM {table} WHERE id=?", [row_id]).fetchone() is not None


def _put(store, table: str, row: dict) -> None:
    cols = ", ".join(row)
    store.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})",
                     list(row.values()))


def _import_bundle(store, path: Path, header: dict, lines) -> dict:
    schema = header.get("bundle_schema")
    if not isinstance(schema, int) or schema < 1:
        raise ImportFormatError(f"{path.name} is a HAL ratings bundle of an older, unsupported schema "
                                f"({schema!r}); re-export it from a current studio")
    if schema > BUNDLE_SCHEMA:
        raise ImportFormatError(f"{path.name} was written by a newer studio (bundle schema {schema}, "
                                f"this one reads {BUNDLE_SCHEMA}); update the studio to import it")
    report = _report(path, "bundle")
    ignored: Counter = Counter()
    items = []
    for lineno, line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            report["skipped"].append({"line": lineno, "reason": "not valid JSON"})
            continue
        if not isinstance(item, dict) or item.get("kind") not in BUNDLE_KINDS \
                or not isinstance(item.get("row"), dict) or not item["row"].get("id"):
            report["skipped"].append({"line": lineno, "reason": "not a bundle row (needs kind, row.id)"})
            continue
        items.append((lineno, item["kind"], item["row"]))
    order = {k: i for i, k in enumerate(BUNDLE_KINDS)}
    items.sort(key=lambda t: (order[t[1]], t[0]))
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        for lineno, kind, row in items:
            table = _TABLES[kind]
            cols = _columns(store, table)
            ignored.update(k for k in row if k not in cols)
            clean = {c: row.get(c) for c in cols if c in row}
            reason = _bundle_row_problem(store, kind, clean)
            if reason == "already stored":
                if kind == "rating":
                    report["already_stored"] += 1
                    report["skipped"].append({"line": lineno, "id": clean["id"],
                                              "reason": "rating already stored (duplicate)"})
                continue
            if reason:
                report["skipped"].append({"line": lineno, "id": clean["id"], "reason": reason})
                continue
            try:
                _put(store, table, clean)
            except sqlite3.DatabaseError as exc:
                report["skipped"].append({"line": lineno, "id": clean["id"], "reason": f"refused: {exc}"})
                continue
            if kind == "rating":
                report["imported"] += 1
                _put(store, "rating_origins", {"rating_id": clean["id"], "source": path.name,
                                               "source_key": clean["id"], "rater": None,
                                               "line": lineno, "imported_at": now()})
    if ignored:
        report["notes"].append("fields this studio does not know were ignored: "
                               + ", ".join(sorted(ignored)))
    return report


def _bundle_row_problem(store, kind: str, row: dict) -> str | None:
    """Why a bundle row cannot be added as it is (None: it can)."""
    table = _TABLES[kind]
    if _exists(store, table, row["id"]):
        return "already stored"
    need = {"turn": [("conversation_id", "conversations")],
            "reply": [("turn_id", "turns")],
            "rating": [("turn_id", "turns"), ("left_reply_id", "replies"), ("right_reply_id", "replies")],
            "repeat_rating": [("original_rating_id", "ratings"), ("left_reply_id", "replies"),
                              ("right_reply_id", "replies")]}.get(kind, [])
    for col, parent in need:
        if not row.get(col) or not _exists(store, parent, row[col]):
            return f"{kind} refers to a {parent[:-1]} ({col}={row.get(col)!r}) that is neither in the file nor stored"
    if kind in ("rating", "repeat_rating") and row.get("verdict") not in VERDICTS:
        return f"unknown verdict {row.get('verdict')!r}"
    if kind == "rating" and _deleted_here(store, row["id"]):
        return "deleted in this studio earlier (kept in rating history); not brought back"
    if kind == "rating":  # one rating per turn and rater (the researcher's: rater empty)
        other = store.db.execute("SELECT id FROM ratings WHERE turn_id=? AND COALESCE(rater, '')=?",
                                 [row["turn_id"], row.get("rater") or ""]).fetchone()
        if other:
            return f"its turn already has another rating here ({other[0]}); the stored one was kept"
    return None


def _deleted_here(store, rating_id: str) -> bool:
    return store.db.execute("SELECT 1 FROM rating_history WHERE rating_id=? AND action='deleted'",
                            [rating_id]).fetchone() is not None


def normalise_verdict(raw) -> str | None:
    v = str(raw or "").strip().lower().replace("-", "_").replace(" ", "_")
    return v if v in VERDICTS else None


def _when(raw) -> str | None:
    """ISO 8601 to the store's UTC form; naive times are taken as UTC."""
    t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _minimal_problem(d) -> str | None:
    if not isinstance(d, dict):
        return "not a JSON object"
    for key in MINIMAL_REQUIRED:
        if not isinstance(d.get(key), str) or not d[key].strip():
            return f"missing or empty {key!r}"
    if normalise_verdict(d["verdict"]) is None:
        return f"unknown verdict {d['verdict']!r} (use one of {', '.join(VERDICTS)})"
    if "blind" in d and not isinstance(d["blind"], (bool, int)):
        return "'blind' must be true or false"
    for key in ("prompt", "left_text", "right_text", "note", "prompt_set"):
        if d.get(key) is not None and not isinstance(d[key], str):
            return f"{key!r} must be text"
    if d.get("rated_at"):
        try:
            _when(d["rated_at"])
        except (TypeError, ValueError):
            return f"'rated_at' is not an ISO 8601 time: {d['rated_at']!r}"
    return None


def _import_minimal(store, path: Path, lines) -> dict:
    report = _report(path, "minimal")
    stamp = now()
    seen: Counter = Counter()
    unknown: Counter = Counter()
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        for lineno, line in lines:
            try:
                d = json.loads(line)
            except ValueError:
                report["skipped"].append({"line": lineno, "reason": "not valid JSON"})
                continue
            reason = _minimal_problem(d)
            if reason:
                report["skipped"].append({"line": lineno, "reason": reason})
                continue
            unknown.update(k for k in d if k not in MINIMAL_FIELDS)
            if d.get("id") is not None:
                content = "id:" + str(d["id"])
            else:
                content = json.dumps({k: d.get(k) for k in sorted(MINIMAL_FIELDS - {"id"})},
                                     sort_keys=True, ensure_ascii=False)
            seen[content] += 1
            if d.get("id") is not None and seen[content] > 1:
                report["skipped"].append({"line": lineno, "reason": f"id {d['id']!r} repeats an earlier line"})
                continue
            key = hashlib.sha256(f"{content}#{seen[content]}".encode()).hexdigest()[:32]
            rid = "imp-" + key
            if _deleted_here(store, rid):
                report["skipped"].append({"line": lineno, "reason": "deleted in this studio earlier "
                                          "(kept in rating history); not brought back"})
                continue
            if _exists(store, "ratings", rid) or _exists(store, "conversations", rid + "-c"):
                report["already_stored"] += 1
                report["skipped"].append({"line": lineno, "reason": "already imported (duplicate)"})
                continue
            _add_vote(store, rid, d, path.name, lineno, key, stamp)
            report["imported"] += 1
    if unknown:
        report["notes"].append("unknown fields were ignored: " + ", ".join(sorted(unknown)))
    return report


def _add_vote(store, rid: str, d: dict, source: str, lineno: int, key: str, stamp: str) -> None:
    blind = int(bool(d.get("blind", True)))
    when = _when(d["rated_at"]) if d.get("rated_at") else stamp
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
