"""Checks of a judge against the data: agreement with another judge, and before/after.

``agreement`` puts a judge's per-trait ratings beside the ratings a file
already holds (e.g. GPT-5's); ``compare_sets`` asks whether a score ranks one
set of dialogues (an aligned model's) above another (the base model's).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu, pearsonr, spearmanr

from engine.scoring.dialogue import Dialogue
from engine.scoring.judges.base import Judge, RatingError
from engine.scoring.score import NothingRated, score_ratings
from engine.scoring.traits import Weights


def agreement(dialogues: list[Dialogue], judge: Judge, ratings=None) -> dict:
    """Spearman and Pearson per trait between ``judge`` and each item's precomputed ratings.

    ``ratings`` may hand in the judge's ratings (e.g. out-of-fold ones) instead
    of asking the judge. Traits the judge does not rate, or that are constant
    on either side, get no figure.
    """
    items = [d for d in dialogues if d.ratings]
    mine = ratings if ratings is not None else judge.rate_many(items)
    pairs: dict[int, tuple[list, list]] = {}
    for d, r in zip(items, mine):
        if isinstance(r, RatingError):
            continue
        for t, theirs in d.ratings.items():
            v = r.get(t)
            if v is not None and theirs is not None:
                pairs.setdefault(t, ([], []))
                pairs[t][0].append(v)
                pairs[t][1].append(theirs)
    out = {}
    for t in sorted(pairs):
        a, b = map(np.asarray, pairs[t])
        entry = {"n": int(len(a)), "judge_mean": float(a.mean()), "reference_mean": float(b.mean())}
        if len(a) > 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
            entry["spearman"] = float(spearmanr(a, b)[0])
            entry["pearson"] = float(pearsonr(a, b)[0])
        out[str(t)] = entry
    return {"judge": judge.judge_id, "n_items": len(items), "traits": out}


def _scores(dialogues: list[Dialogue], judge: Judge, weights: Weights) -> tuple[list[float], list[dict], int]:
    scores, rows, failed = [], [], 0
    for r in judge.rate_many(dialogues):
        if isinstance(r, RatingError):
            failed += 1
            continue
        try:
            scores.append(score_ratings(r, weights, judge.questionnaire).score)
        except NothingRated:
            failed += 1
            continue
        rows.append(r)
    return scores, rows, failed


def compare_sets(before: list[Dialogue], after: list[Dialogue], judge: Judge, weights: Weights) -> dict:
    """Score both sets; report means, a one-sided Mann-Whitney U test and per-trait shifts."""
    s0, r0, f0 = _scores(before, judge, weights)
    s1, r1, f1 = _scores(after, judge, weights)
    out = {"judge": judge.judge_id, "weights": weights.ref, "questionnaire": judge.questionnaire.ref,
           "n_before": len(s0), "n_after": len(s1), "failed_before": f0, "failed_after": f1}
    if not s0 or not s1:
        return out
    a, b = np.asarray(s0), np.asarray(s1)
    u = mannwhitneyu(b, a, alternative="greater")
    out.update({
        "mean_before": float(a.mean()), "mean_after": float(b.mean()),
        "sd_before": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "sd_after": float(b.std(ddof=1)) if len(b) > 1 else 0.0,
        "median_before": float(np.median(a)), "median_after": float(np.median(b)),
        "mann_whitney_u": float(u.statistic), "p_after_greater": float(u.pvalue),
        "prob_after_above_before": float(u.statistic / (len(a) * len(b))),
    })
    shifts = {}
    for t in judge.questionnaire.trait_ids:
        x0 = [r[t] for r in r0 if r.get(t) is not None]
        x1 = [r[t] for r in r1 if r.get(t) is not None]
        if x0 and x1:
            shifts[str(t)] = {"before": float(np.mean(x0)), "after": float(np.mean(x1)),
                              "delta": float(np.mean(x1) - np.mean(x0))}
    out["trait_means"] = shifts
    return out
