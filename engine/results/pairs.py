"""Win rate of each pairing of models, scored as the paper's human study did."""

from __future__ import annotations

from collections import defaultdict

from engine.results.data import Vote
from engine.results.stats import bootstrap_mean, rounded, votes_needed, wilson, z_test_half

METHOD_WIN_RATE = (
    "Mean score of A over votes where A met B (certainly = 1, likely = 0.75, tie = 0.5, "
    "likely B = 0.25, certainly B = 0); 'both bad' left out and counted apart.")
METHOD_CI = (
    "95% Wilson score interval with the summed scores as successes out of n votes; fractional "
    "scores vary less than 0/1 outcomes, so this is slightly conservative. The bootstrap "
    "interval beside it: percentile bootstrap over votes ({n_boot} resamples).")


def method_ci(n_boot: int) -> str:
    return METHOD_CI.format(n_boot=n_boot)
METHOD_VOTES_NEEDED = (
    "Votes for a two-sided test against 50% (alpha 0.05, power 0.8), normal approximation: "
    "n = ((1.96·sqrt(0.25) + 0.8416·sqrt(p(1-p))) / (p - 0.5))², p = observed win rate.")
METHOD_P = "Two-sided z test of the win rate against 0.5 with the null variance 0.25/n."


def orient(x: str, y: str) -> tuple[str, str]:
    """Name A the adapted model when exactly one side has an adapter, else sort by name."""
    if (" + " in x) != (" + " in y):
        return (x, y) if " + " in x else (y, x)
    return tuple(sorted((x, y)))


def pair_result(a: str, b: str, votes: list[Vote], n_boot: int = 1000) -> dict:
    """Everything said about A vs B, from A's side, with the rating ids behind it."""
    scores, both_bad, ids, bb_ids = [], 0, [], []
    counts = {"certainly_a": 0, "likely_a": 0, "tie": 0, "likely_b": 0, "certainly_b": 0}
    for v in votes:
        if {v.left_model, v.right_model} != {a, b}:
            continue
        if v.verdict == "both_bad":
            both_bad += 1
            bb_ids.append(v.rating_id)
            continue
        s = v.score_for(a)
        scores.append(s)
        ids.append(v.rating_id)
        counts[{1.0: "certainly_a", 0.75: "likely_a", 0.5: "tie", 0.25: "likely_b",
                0.0: "certainly_b"}[s]] += 1
    n = len(scores)
    total = sum(scores)
    rate = total / n if n else None
    needed = votes_needed(rate)
    out = {
        "a": a, "b": b, "n": n, "win_rate": rounded(rate),
        "ci": rounded(wilson(total, n)), "ci_bootstrap": rounded(bootstrap_mean(scores, n_boot)),
        "p_value": rounded(z_test_half(rate, n), 6) if n else None,
        "votes_needed": needed,
        "more_votes_needed": None if needed is None else max(0, needed - n),
        "counts": counts, "both_bad": both_bad,
        "both_bad_share": rounded(both_bad / (n + both_bad)) if n + both_bad else None,
        "rating_ids": ids, "both_bad_rating_ids": bb_ids,
        "method": {"win_rate": METHOD_WIN_RATE, "ci": method_ci(n_boot),
                   "votes_needed": METHOD_VOTES_NEEDED, "p_value": METHOD_P},
    }
    if n == 0:
        out["message"] = (f"no votes for {a} vs {b}" if not both_bad
                          else f"only 'both bad' votes for {a} vs {b}")
    return out


def all_pairs(votes: list[Vote], pair: tuple[str, str] | None = None, n_boot: int = 1000) -> list[dict]:
    """One result per pairing met in the votes (or just ``pair``, even with zero votes)."""
    if pair:
        return [pair_result(pair[0], pair[1], votes, n_boot)]
    seen = {}
    for v in votes:
        if v.left_model == v.right_model:
            continue
        key = frozenset((v.left_model, v.right_model))
        seen.setdefault(key, orient(v.left_model, v.right_model))
    results = [pair_result(a, b, votes, n_boot) for a, b in seen.values()]
    return sorted(results, key=lambda r: (-r["n"], r["a"], r["b"]))


def per_model(votes: list[Vote]) -> list[dict]:
    """Each model's mean score against all others (a quick overall view)."""
    scores, ids = defaultdict(list), defaultdict(list)
    for v in votes:
        if v.left_score is None or v.left_model == v.right_model:
            continue
        for m in (v.left_model, v.right_model):
            scores[m].append(v.score_for(m))
            ids[m].append(v.rating_id)
    rows = []
    for m, s in scores.items():
        n = len(s)
        rows.append({"model": m, "n": n, "win_rate": rounded(sum(s) / n),
                     "ci": rounded(wilson(sum(s), n)), "rating_ids": ids[m]})
    return sorted(rows, key=lambda r: -r["win_rate"])
