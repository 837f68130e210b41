"""All results in one JSON-ready dict: what ``hal results --json`` prints, what the
studio's results view and the HTML report show."""

from __future__ import annotations

from engine.results import checks, pairs, ranking
from engine.results.data import Filters, LeakConfig, load_votes

METHOD_BOTH_BAD = "Votes marked 'both bad', counted apart: they enter no win rate, fit or Elo."
METHOD_SELF = ("Votes with the same model and adapter on both sides (self-vs-self) compare nothing: "
               "they are counted among the ratings but enter no win rate, leaderboard or Elo.")


def compute(store, filters: Filters | None = None, leak_config: LeakConfig | None = None,
            n_boot: int = 1000, elo_k: float = ranking.ELO_K, anchor: str | None = None) -> dict:
    """Every figure over the filtered ratings; each part names its ratings and method."""
    filters = filters or Filters()
    loaded = load_votes(store, filters, leak_config)
    votes = loaded.votes
    bt = ranking.bradley_terry(votes, n_boot=n_boot, anchor=anchor)
    bt_rows = [{**row, "method": bt["method"]} for row in bt["models"]]
    keep = {v.rating_id for v in votes}
    reply_ids = {i for v in votes for i in (v.left_reply_id, v.right_reply_id)}
    both_bad = [v.rating_id for v in votes if v.verdict == "both_bad"]
    out = {
        "filters": filters.describe(),
        "n_ratings": len(votes),
        "pairs": pairs.all_pairs(votes, filters.pair, n_boot=n_boot),
        "models": pairs.per_model(votes),
        "bradley_terry": bt_rows,
        "bradley_terry_meta": {k: v for k, v in bt.items() if k != "models"},
        "elo": ranking.online_elo(votes, k=elo_k),
        "position_bias": checks.position_bias(votes),
        "consistency": checks.consistency(checks.load_repeats(store), keep),
        "leaks": checks.leaks(votes),
        "score_agreement": checks.score_agreement(votes, checks.load_scores(store, reply_ids)),
        "both_bad": {"n": len(both_bad), "share": round(len(both_bad) / len(votes), 4) if votes else None,
                     "rating_ids": both_bad, "method": METHOD_BOTH_BAD},
        "self_votes": self_votes(loaded.self_votes),
        "problems": loaded.problems,
        "n_boot": n_boot,
    }
    out["methods"] = {
        "win_rate": pairs.METHOD_WIN_RATE, "ci": pairs.method_ci(n_boot),
        "votes_needed": pairs.METHOD_VOTES_NEEDED, "p_value": pairs.METHOD_P,
        "bradley_terry": ranking.METHOD_BT, "bradley_terry_ci": ranking.method_bt_ci(n_boot),
        "elo": out["elo"]["method"], "position_bias": checks.METHOD_POSITION,
        "consistency": checks.METHOD_CONSISTENCY, "leaks": checks.METHOD_LEAKS,
        "score_agreement": checks.METHOD_SCORES, "both_bad": METHOD_BOTH_BAD,
        "self_votes": METHOD_SELF,
    }
    return out


def self_votes(votes) -> dict:
    """Self-vs-self votes: how many, on which models, and a sentence saying why they are
    in no figure."""
    models = sorted({v.left_model for v in votes})
    message = None
    if votes:
        which = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
        message = (f"{len(votes)} rating{'s' if len(votes) != 1 else ''} had the same model on both "
                   f"sides ({which}): a model compared with itself, so "
                   f"{'they are' if len(votes) != 1 else 'it is'} in no win rate, leaderboard or Elo. "
                   "Put a different model or adapter in one pane to compare.")
    return {"n": len(votes), "models": models, "rating_ids": [v.rating_id for v in votes],
            "message": message, "method": METHOD_SELF}
