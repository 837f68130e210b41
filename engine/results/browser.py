"""The ratings browser's API: read rated turns, edit notes, delete (into history,
never silently), restore, and the blind side-swapped re-checks of rater consistency."""

from __future__ import annotations

import json
import math
import random

from engine.results.checks import load_scores
from engine.results.data import Filters, LeakConfig, load_votes, rater_label
from engine.store import VERDICTS, new_id, now


class RatingNotFound(ValueError):
    """The rating is not (or no longer) in the store."""


def list_rated(store, filters: Filters | None = None, leak_config: LeakConfig | None = None) -> list[dict]:
    """Each rated turn with both replies, sides, verdict, note, scores, newest first."""
    votes = load_votes(store, filters, leak_config).votes
    scores = load_scores(store, {i for v in votes for i in (v.left_reply_id, v.right_reply_id)})
    repeats: dict[str, list] = {}
    for row in store.db.query("SELECT original_rating_id, verdict, created_at FROM repeat_ratings"):
        repeats.setdefault(row["original_rating_id"], []).append(row)
    rows = []
    for v in reversed(votes):
        def side(reply_id, model, text):
            return {"reply_id": reply_id, "model": model, "text": text,
                    "scores": {j: s[reply_id]["score"] for j, s in scores.items() if reply_id in s}}
        rows.append({"rating_id": v.rating_id, "turn_id": v.turn_id, "created_at": v.created_at,
                     "verdict": v.verdict, "note": v.note, "blind": v.blind, "leak": v.leak,
                     "prompt": v.prompt, "prompt_set": v.prompt_set, "rater": rater_label(v.rater),
                     "left": side(v.left_reply_id, v.left_model, v.left_text),
                     "right": side(v.right_reply_id, v.right_model, v.right_text),
                     "repeats": repeats.get(v.rating_id, [])})
    return rows


def _get(store, rating_id: str) -> dict:
    row = store.db.execute("SELECT * FROM ratings WHERE id=?", [rating_id]).fetchone()
    if row is None:
        raise RatingNotFound(f"rating {rating_id} is not in the store (deleted already?)")
    cols = [d[0] for d in store.db.execute("SELECT * FROM ratings LIMIT 0").description]
    return dict(zip(cols, row))


def edit_note(store, rating_id: str, note: str) -> None:
    """Change a rating's note; the old text is kept in rating_history."""
    _get(store, rating_id)
    store.set_note(rating_id, note)


def delete_rating(store, rating_id: str, reason: str = "") -> dict:
    """Remove a rating from the statistics; its full row goes to rating_history first."""
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        old = _get(store, rating_id)
        snapshot = {**old, "delete_reason": reason}
        store.db.execute("INSERT INTO rating_history (id, rating_id, action, snapshot, at) "
                         "VALUES (?, ?, 'deleted', ?, ?)",
                         [new_id(), rating_id, json.dumps(snapshot), now()])
        store.db.execute("DELETE FROM ratings WHERE id=?", [rating_id])
    return old


def deleted_ratings(store) -> list[dict]:
    """Deleted ratings still restorable (their turn has no newer rating by the same rater)."""
    out = []
    for row in store.db.query("SELECT * FROM rating_history WHERE action='deleted' ORDER BY at DESC"):
        snap = json.loads(row["snapshot"])
        if not store.db.execute(  # the same rater may have rated the turn again since
                "SELECT 1 FROM ratings WHERE id=? OR (turn_id=? AND COALESCE(rater, '')=?)",
                [snap["id"], snap["turn_id"], snap.get("rater") or ""]).fetchone():
            out.append({"history_id": row["id"], "deleted_at": row["at"], **snap})
    return out


def restore_rating(store, rating_id: str) -> None:
    """Put a deleted rating back exactly as it was."""
    for snap in deleted_ratings(store):
        if snap["id"] == rating_id:
            cols = [d[0] for d in store.db.execute("SELECT * FROM ratings LIMIT 0").description]
            row = {c: snap.get(c) for c in cols}
            with store._lock, store.db.conn:
                store.db.execute("BEGIN IMMEDIATE")
                store.db.execute(f"INSERT INTO ratings ({', '.join(cols)}) VALUES "
                                 f"({', '.join('?' for _ in cols)})", list(row.values()))
                store.db.execute("INSERT INTO rating_history (id, rating_id, action, snapshot, at) "
                                 "VALUES (?, ?, 'restored', ?, ?)",
                                 [new_id(), rating_id, json.dumps(row), now()])
            return
    raise RatingNotFound(f"no restorable deleted rating {rating_id}")


def pick_for_recheck(store, share: float = 0.1, seed: int | None = None) -> list[dict]:
    """Rated pairs to show again, blind with sides swapped, so that about ``share`` of all
    ratings end up repeated. Each item's left/right are already swapped. Only the researcher's
    own ratings are re-shown (an LLM's or a colleague's are not theirs to repeat)."""
    total = store.db.execute("SELECT COUNT(*) FROM ratings WHERE COALESCE(rater, '')=''").fetchone()[0]
    done = store.db.execute("SELECT COUNT(DISTINCT original_rating_id) FROM repeat_ratings WHERE "
                            "original_rating_id IN (SELECT id FROM ratings WHERE COALESCE(rater, '')='')"
                            ).fetchone()[0]
    want = max(0, math.ceil(share * total) - done)
    sql = """SELECT r.id, r.turn_id, r.left_reply_id, r.right_reply_id, t.prompt,
             lr.text AS l_text, rr.text AS r_text FROM ratings r
             JOIN turns t ON t.id = r.turn_id JOIN replies lr ON lr.id = r.left_reply_id
             JOIN replies rr ON rr.id = r.right_reply_id
             WHERE r.id NOT IN (SELECT original_rating_id FROM repeat_ratings) AND COALESCE(r.rater, '')=''
             ORDER BY r.rowid"""
    candidates = list(store.db.query(sql))
    chosen = random.Random(seed).sample(candidates, min(want, len(candidates)))
    return [{"rating_id": c["id"], "turn_id": c["turn_id"], "prompt": c["prompt"],
             "left": {"reply_id": c["right_reply_id"], "text": c["r_text"]},
             "right": {"reply_id": c["left_reply_id"], "text": c["l_text"]}} for c in chosen]


def record_repeat(store, original_rating_id: str, left_reply_id: str, right_reply_id: str,
                  verdict: str, note: str = "") -> str:
    """Save the verdict given on a re-shown pair, linked to the original rating."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    orig = _get(store, original_rating_id)
    if {left_reply_id, right_reply_id} != {orig["left_reply_id"], orig["right_reply_id"]}:
        raise ValueError("a repeat must show the same two replies as the original rating")
    row = {"id": new_id(), "original_rating_id": original_rating_id, "turn_id": orig["turn_id"],
           "left_reply_id": left_reply_id, "right_reply_id": right_reply_id, "verdict": verdict,
           "note": note, "blind": 1, "created_at": now()}
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        store._insert("repeat_ratings", row)
    return row["id"]
