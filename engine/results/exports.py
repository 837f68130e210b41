"""Ratings out of the store: TRL preference pairs (JSONL or a ``datasets`` folder),
the raw ratings table as CSV, and a bundle another studio can import.

Preference pairs use TRL's conversational form: ``prompt`` is a list of messages
(the conversation's system prompt, then the turn's user prompt), ``chosen`` and
``rejected`` are one assistant message each. Only decisive votes become pairs; ties
and "both bad" do not. Earlier turns are not included: each pane kept its own
history, so there is no single shared context for the two replies.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.results.data import DECISIVE_LEFT, DECISIVE_RIGHT, Filters, LeakConfig, load_votes
from engine.store import SCHEMA_VERSION, now

BUNDLE_FORMAT = "hal-ratings-bundle"
BUNDLE_SCHEMA = 1
BUNDLE_KINDS = ("conversation", "turn", "reply", "rating", "repeat_rating")
_TABLES = {"conversation": "conversations", "turn": "turns", "reply": "replies",
           "rating": "ratings", "repeat_rating": "repeat_ratings"}


def _system_prompts(store) -> dict[str, str]:
    out = {}
    for row in store.db.query("SELECT t.id, c.sampling FROM turns t JOIN conversations c "
                              "ON c.id = t.conversation_id"):
        try:
            out[row["id"]] = (json.loads(row["sampling"] or "{}") or {}).get("system_prompt") or ""
        except (ValueError, AttributeError):
            out[row["id"]] = ""
    return out


def preference_pairs(store, filters: Filters | None = None, with_metadata: bool = False,
                     leak_config: LeakConfig | None = None) -> list[dict]:
    """One TRL conversational preference row per decisive vote."""
    systems = _system_prompts(store)
    rows = []
    for v in load_votes(store, filters, leak_config).votes:
        if v.verdict in DECISIVE_LEFT:
            chosen, rejected, cm, rm = v.left_text, v.right_text, v.left_model, v.right_model
        elif v.verdict in DECISIVE_RIGHT:
            chosen, rejected, cm, rm = v.right_text, v.left_text, v.right_model, v.left_model
        else:
            continue
        prompt = [{"role": "user", "content": v.prompt}]
        if systems.get(v.turn_id):
            prompt.insert(0, {"role": "system", "content": systems[v.turn_id]})
        row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
               "rejected": [{"role": "assistant", "content": rejected}]}
        if with_metadata:
            row.update({"rating_id": v.rating_id, "strength": v.verdict.split("_")[0],
                        "chosen_model": cm, "rejected_model": rm, "blind": v.blind})
        rows.append(row)
    return rows


def export_jsonl(store, out: str | Path, filters: Filters | None = None, with_metadata: bool = False) -> int:
    rows = preference_pairs(store, filters, with_metadata)
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def export_datasets(store, out: str | Path, filters: Filters | None = None, with_metadata: bool = False) -> int:
    """A folder ``datasets.load_from_disk`` opens (a Dataset with prompt/chosen/rejected)."""
    import datasets  # heavy; only this export needs it

    rows = preference_pairs(store, filters, with_metadata)
    if not rows:
        raise ValueError("no decisive ratings to export as preference pairs")
    datasets.disable_progress_bars()
    datasets.Dataset.from_list(rows).save_to_disk(str(out))
    return len(rows)


def neutralise(value):
    """Keep spreadsheet programs from running a cell as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


CSV_COLUMNS = ("rating_id", "created_at", "verdict", "left_score", "blind", "leak", "left_model",
               "right_model", "prompt_set", "prompt", "left_text", "right_text", "note", "turn_id",
               "left_reply_id", "right_reply_id")


def export_csv(store, out: str | Path, filters: Filters | None = None) -> int:
    votes = load_votes(store, filters).votes
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for v in votes:
            values = {**v.__dict__, "left_score": v.left_score, "blind": int(v.blind)}
            writer.writerow([neutralise(values[c]) for c in CSV_COLUMNS])
    return len(votes)


def _rows(store, table: str, ids: set[str], key: str = "id") -> list[dict]:
    if not ids:
        return []
    marks = ",".join("?" for _ in ids)
    return [dict(r) for r in store.db.query(f"SELECT * FROM {table} WHERE {key} IN ({marks}) "
                                             "ORDER BY rowid", list(ids))]


def _plain(value):
    """A stored value JSON cannot hold as it is (a blob) as text, so a backup never fails."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def export_bundle(store, out: str | Path, filters: Filters | None = None) -> dict:
    """Everything needed to rebuild the selected ratings in another studio's store."""
    votes = load_votes(store, filters).votes
    rating_ids = {v.rating_id for v in votes}
    ratings = _rows(store, "ratings", rating_ids)
    turns = _rows(store, "turns", {r["turn_id"] for r in ratings})
    convs = _rows(store, "conversations", {t["conversation_id"] for t in turns})
    replies = _rows(store, "replies", {i for r in ratings for i in (r["left_reply_id"], r["right_reply_id"])})
    repeats = _rows(store, "repeat_ratings", rating_ids, key="original_rating_id")
    counts = {"conversation": len(convs), "turn": len(turns), "reply": len(replies),
              "rating": len(ratings), "repeat_rating": len(repeats)}
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"format": BUNDLE_FORMAT, "bundle_schema": BUNDLE_SCHEMA,
                             "store_schema": SCHEMA_VERSION, "exported_at": now(),
                             "counts": counts}) + "\n")
        for kind, rows in (("conversation", convs), ("turn", turns), ("reply", replies),
                           ("rating", ratings), ("repeat_rating", repeats)):
            for row in rows:
                fh.write(json.dumps({"kind": kind, "row": row}, ensure_ascii=False, default=_plain) + "\n")
    return counts
