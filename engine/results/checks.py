"""Can the votes be trusted? Position bias, rater consistency on blind repeats,
identity leaks, and how often the human-likeness score agrees with the person."""

from __future__ import annotations

import json
from collections import defaultdict

from engine.results.data import DECISIVE_LEFT, DECISIVE_RIGHT, Vote
from engine.results.stats import binom_two_sided, rounded, wilson

METHOD_POSITION = (
    "Share of decisive votes (certainly/likely) that went to the left side; ties and 'both bad' "
    "left out. Exact two-sided binomial test against 50%; warning when p < 0.05. Without blinding "
    "the left side is often the same model, so a left preference there may be a model preference.")
METHOD_CONSISTENCY = (
    "Already-rated pairs shown again, blind, sides swapped. After un-swapping, the repeat agrees "
    "when it picks the same reply (or tie again, or both bad again); exact = same strength too. "
    "95% Wilson interval on the agreement rate.")
METHOD_LEAKS = (
    "A reply containing a configured giveaway (model names such as SmolLM, Qwen, Llama, phrases "
    "such as 'as an AI language model') or a word of either side's model name; such a blind "
    "rating is counted as not blind.")
METHOD_SCORES = (
    "Decisive votes where both replies have a human-likeness score from the same judge: agreement "
    "when the higher-scored reply is the one the person preferred (equal scores counted apart). "
    "Per trait, the same with that trait's rating, over the votes where the trait differs.")


def _side_stats(votes: list[Vote]) -> dict:
    left = [v.rating_id for v in votes if v.verdict in DECISIVE_LEFT]
    right = [v.rating_id for v in votes if v.verdict in DECISIVE_RIGHT]
    scored = [v.left_score for v in votes if v.left_score is not None]
    n = len(left) + len(right)
    p = binom_two_sided(len(left), n)
    return {"n": n, "left_wins": len(left), "right_wins": len(right),
            "ties": sum(v.verdict == "tie" for v in votes),
            "both_bad": sum(v.verdict == "both_bad" for v in votes),
            "left_rate": rounded(len(left) / n) if n else None,
            "ci": rounded(wilson(len(left), n)), "p_value": rounded(p, 6),
            "mean_left_score": rounded(sum(scored) / len(scored)) if scored else None,
            "significant": bool(p is not None and p < 0.05),
            "rating_ids": [v.rating_id for v in votes]}


def position_bias(votes: list[Vote]) -> dict:
    """How often the left side wins: all votes, blind (no leaks), and the rest."""
    out = {"all": _side_stats(votes), "blind": _side_stats([v for v in votes if v.blind_clean]),
           "not_blind": _side_stats([v for v in votes if not v.blind_clean]),
           "method": METHOD_POSITION}
    warnings = []
    for key, label in (("blind", "blind"), ("not_blind", "non-blind")):
        g = out[key]
        if g["significant"]:
            warnings.append(f"{label} votes favour the {'left' if g['left_rate'] > 0.5 else 'right'} "
                            f"side: {g['left_wins']} of {g['n']} decisive votes went left "
                            f"(p = {g['p_value']:.3g})")
    out["warning"] = "; ".join(warnings) or None
    return out


def winner(left_id: str, right_id: str, verdict: str) -> tuple[str, str]:
    """(which reply won or 'tie'/'both_bad', strength) in reply ids, so sides drop out."""
    if verdict in DECISIVE_LEFT:
        return left_id, verdict.split("_")[0]
    if verdict in DECISIVE_RIGHT:
        return right_id, verdict.split("_")[0]
    return verdict, ""


def consistency(repeats: list[dict], keep_ids: set[str] | None = None) -> dict:
    """Agreement of repeat ratings with their originals. Each repeat dict carries the
    original's ``orig_left``, ``orig_right``, ``orig_verdict`` (None when it was deleted)."""
    agree, exact, used, flips, skipped, swapped = 0, 0, [], [], [], 0
    for r in repeats:
        if keep_ids is not None and r["original_rating_id"] not in keep_ids:
            continue
        if not r.get("orig_verdict"):
            skipped.append({"repeat_id": r["id"], "reason": "its original rating was deleted"})
            continue
        first = winner(r["orig_left"], r["orig_right"], r["orig_verdict"])
        again = winner(r["left_reply_id"], r["right_reply_id"], r["verdict"])
        swapped += r["left_reply_id"] == r["orig_right"]
        used.append(r["original_rating_id"])
        if first[0] == again[0]:
            agree += 1
            exact += first[1] == again[1]
        else:
            flips.append({"rating_id": r["original_rating_id"], "repeat_id": r["id"],
                          "first": r["orig_verdict"], "again": r["verdict"]})
    n = len(used)
    return {"n": n, "agree": agree, "agreement": rounded(agree / n) if n else None,
            "ci": rounded(wilson(agree, n)), "exact_agreement": rounded(exact / n) if n else None,
            "sides_swapped": swapped, "disagreements": flips, "skipped": skipped,
            "rating_ids": used, "method": METHOD_CONSISTENCY,
            "message": None if n else "no repeat ratings yet: re-show a few rated pairs to measure this"}


def load_repeats(store) -> list[dict]:
    """Repeat ratings joined with the original they repeat (None fields if it is gone)."""
    sql = """SELECT rr.*, r.left_reply_id AS orig_left, r.right_reply_id AS orig_right,
             r.verdict AS orig_verdict FROM repeat_ratings rr
             LEFT JOIN ratings r ON r.id = rr.original_rating_id ORDER BY rr.created_at"""
    return [dict(row) for row in store.db.query(sql)]


def leaks(votes: list[Vote]) -> dict:
    """The ratings whose replies gave a model away."""
    hits = [{"rating_id": v.rating_id, "blind": v.blind, "what": v.leak} for v in votes if v.leak]
    return {"n": len(hits), "blind_excluded": sum(h["blind"] for h in hits), "ratings": hits,
            "rating_ids": [h["rating_id"] for h in hits], "method": METHOD_LEAKS}


def _trait_values(raw) -> dict[str, float]:
    """Traits stored as {id: rating}, {id: {"rating": r}} or [{"id", "rating"}]."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else {}
        except ValueError:
            return {}
    if isinstance(raw, list):
        raw = {d.get("id") or d.get("trait"): d for d in raw if isinstance(d, dict)}
    out = {}
    for key, val in (raw or {}).items():
        if isinstance(val, dict):
            val = val.get("rating", val.get("value"))
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            out[str(key)] = float(val)
    return out


def load_scores(store, reply_ids: set[str]) -> dict[str, dict[str, dict]]:
    """Latest score per (judge, reply): {judge: {reply_id: {"score", "traits"}}}."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    if not reply_ids or "scores" not in store.db.table_names():
        return out
    for row in store.db.query("SELECT reply_id, judge, score, traits FROM scores ORDER BY created_at"):
        if row["reply_id"] in reply_ids and isinstance(row["score"], (int, float)):
            out[row["judge"] or "score"][row["reply_id"]] = {
                "score": row["score"], "traits": _trait_values(row["traits"])}
    return out


def score_agreement(votes: list[Vote], scores: dict[str, dict[str, dict]]) -> dict:
    """Per judge: how often the higher score matches the person's pick, overall and per trait."""
    judges = []
    for judge, by_reply in sorted(scores.items()):
        agree, n, equal, ids = 0, 0, 0, []
        traits = defaultdict(lambda: [0, 0])  # trait -> [agree, n]
        for v in votes:
            if v.verdict not in DECISIVE_LEFT + DECISIVE_RIGHT:
                continue
            ls, rs = by_reply.get(v.left_reply_id), by_reply.get(v.right_reply_id)
            if not ls or not rs:
                continue
            person_left = v.verdict in DECISIVE_LEFT
            ids.append(v.rating_id)
            diff = ls["score"] - rs["score"]
            if diff == 0:
                equal += 1
            else:
                n += 1
                agree += (diff > 0) == person_left
            for t in ls["traits"].keys() & rs["traits"].keys():
                d = ls["traits"][t] - rs["traits"][t]
                if d != 0:
                    traits[t][1] += 1
                    traits[t][0] += (d > 0) == person_left
        rows = sorted(({"trait": t, "n": c[1], "agreement": rounded(c[0] / c[1]),
                        "ci": rounded(wilson(c[0], c[1]))} for t, c in traits.items()),
                      key=lambda r: (r["agreement"], -r["n"]))
        judges.append({"judge": judge, "n": n, "agree": agree,
                       "agreement": rounded(agree / n) if n else None,
                       "ci": rounded(wilson(agree, n)), "equal_scores": equal,
                       "traits": rows, "rating_ids": ids})
    return {"judges": judges, "method": METHOD_SCORES,
            "message": None if judges else "no scored replies among these ratings"}
