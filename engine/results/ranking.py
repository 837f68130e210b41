"""A leaderboard over several models: Bradley-Terry (MLE, bootstrap intervals)
and online Elo in rating order, as public arena leaderboards report them."""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse.csgraph import connected_components

from engine.results.data import Vote
from engine.results.stats import rounded

SCALE, BASE, INIT = 400.0, 10.0, 1000.0
ELO_K = 4.0  # FastChat / Chatbot Arena's online Elo

METHOD_BT = (
    "Bradley-Terry maximum likelihood (minorize-maximize, Hunter 2004) with each vote's score as a "
    "fractional win (tie = half a win each); strengths on the Elo scale 1000 + 400·log10(p), "
    "anchored so the models' mean is 1000 (or the anchor model is 1000). 'Both bad' left out.")
METHOD_BT_CI = ("95% percentile bootstrap: votes resampled with replacement and the model refitted, "
                "{n_boot} times.")


def method_bt_ci(n_boot: int) -> str:
    return METHOD_BT_CI.format(n_boot=n_boot)
METHOD_ELO = (
    "Online Elo in rating-time order: everyone starts at 1000, expected = 1/(1+10^((Rb-Ra)/400)), "
    "R += K·(score - expected) with the vote's fractional score, K = {k:g}. Order-dependent; "
    "the Bradley-Terry fit is the order-free estimate.")


def _tables(votes: list[Vote], models: list[str], weights=None):
    """wins[i, j]: fractional wins of i over j; games[i, j]: votes between i and j."""
    k = len(models)
    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((k, k))
    games = np.zeros((k, k))
    for t, v in enumerate(votes):
        w = 1.0 if weights is None else weights[t]
        if w == 0:
            continue
        i, j, s = index[v.left_model], index[v.right_model], v.left_score
        wins[i, j] += w * s
        wins[j, i] += w * (1 - s)
        games[i, j] += w
        games[j, i] += w
    return wins, games


def _mle_exists(wins: np.ndarray) -> bool:
    """Hunter's condition: every model beats someone in every split, i.e. the
    'has some win over' graph is strongly connected."""
    n, _ = connected_components((wins > 1e-12).astype(int), directed=True, connection="strong")
    return n == 1


def fit_strengths(wins: np.ndarray, games: np.ndarray, iters: int = 20000, tol: float = 1e-10):
    """Bradley-Terry strengths by minorize-maximize; returns (log10 strengths, regularised).

    Works on one table (k, k) or a stack (B, k, k) at once (the bootstrap). When the plain
    MLE does not exist (a model never wins or never loses) half a virtual tie is added
    between every pair of that table, which keeps scores finite; ``regularised`` says where."""
    wins, games = np.array(wins, dtype=float), np.array(games, dtype=float)
    single = wins.ndim == 2
    if single:
        wins, games = wins[None], games[None]
    k = wins.shape[-1]
    regularised = np.array([k > 1 and not _mle_exists(w) for w in wins])
    if regularised.any():
        off = 1 - np.eye(k)
        wins[regularised] += 0.25 * off
        games[regularised] += 0.5 * off
    p = np.ones(wins.shape[:2])
    total_wins = wins.sum(axis=2)
    for _ in range(iters):
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1.0), p)
        new = np.maximum(new, 1e-300)
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    log10p = np.log10(p)
    return (log10p[0], bool(regularised[0])) if single else (log10p, regularised)


def _to_scale(log10p: np.ndarray, models: list[str], anchor: str | None, anchor_value: float):
    scores = INIT + SCALE * (log10p - log10p.mean())
    if anchor in models:
        scores = scores - scores[models.index(anchor)] + anchor_value
    return scores


def bradley_terry(votes: list[Vote], n_boot: int = 1000, seed: int = 0,
                  anchor: str | None = None, anchor_value: float = INIT) -> dict:
    """Ranked table of Bradley-Terry scores with bootstrap intervals."""
    votes = [v for v in votes if v.left_score is not None and v.left_model != v.right_model]
    models = sorted({m for v in votes for m in (v.left_model, v.right_model)})
    out = {"method": METHOD_BT, "method_ci": method_bt_ci(n_boot), "anchor": anchor or "mean of models",
           "rating_ids": [v.rating_id for v in votes], "models": []}
    if len(models) < 2:
        out["message"] = "a leaderboard needs votes between at least two models"
        return out
    wins, games = _tables(votes, models)
    log10p, regularised = fit_strengths(wins, games)
    scores = _to_scale(log10p, models, anchor, anchor_value)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(votes), np.full(len(votes), 1.0 / len(votes)), size=n_boot)
    bw, bg = _weighted(votes, models, counts)
    lp, _ = fit_strengths(bw, bg, iters=5000, tol=1e-7)
    boots = np.array([_to_scale(row, models, anchor, anchor_value) for row in lp])
    lo, hi = np.quantile(boots, [0.025, 0.975], axis=0)
    rows = []
    for i, m in enumerate(models):
        rows.append({"model": m, "score": rounded(scores[i], 1), "ci": [rounded(lo[i], 1),
                     rounded(hi[i], 1)], "n": int(games[i].sum()),
                     "wins": rounded(wins[i].sum(), 2)})
    rows.sort(key=lambda r: -r["score"])
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    out["models"] = rows
    out["regularised"] = regularised
    if regularised:
        out["message"] = ("a model never won (or never lost) against the rest, so the exact fit does "
                          "not exist; half a virtual tie per pair keeps the scores finite")
    return out


def _weighted(votes: list[Vote], models: list[str], counts: np.ndarray):
    """Win/game tables for bootstrap resamples given as per-vote counts, shape (B, n)."""
    k = len(models)
    index = {m: i for i, m in enumerate(models)}
    cell = np.array([index[v.left_model] * k + index[v.right_model] for v in votes])
    s = np.array([v.left_score for v in votes], dtype=float)
    onehot = np.zeros((len(votes), k * k))
    onehot[np.arange(len(votes)), cell] = 1.0  # vote -> (left, right) cell
    counts = counts.astype(float)
    left_wins = ((counts * s) @ onehot).reshape(-1, k, k)
    right_wins = ((counts * (1 - s)) @ onehot).reshape(-1, k, k)
    games = (counts @ onehot).reshape(-1, k, k)
    return left_wins + right_wins.transpose(0, 2, 1), games + games.transpose(0, 2, 1)


def online_elo(votes: list[Vote], k: float = ELO_K, init: float = INIT) -> dict:
    """Elo updated vote by vote in the order given (rating time); keeps the trajectory."""
    votes = [v for v in votes if v.left_score is not None and v.left_model != v.right_model]
    ratings: dict[str, float] = {}
    trajectory = []
    for v in votes:
        ra = ratings.setdefault(v.left_model, init)
        rb = ratings.setdefault(v.right_model, init)
        expected = 1.0 / (1.0 + BASE ** ((rb - ra) / SCALE))
        delta = k * (v.left_score - expected)
        ratings[v.left_model] = ra + delta
        ratings[v.right_model] = rb - delta
        trajectory.append({"rating_id": v.rating_id, **{m: round(r, 2) for m, r in ratings.items()}})
    rows = sorted(({"model": m, "score": rounded(r, 1)} for m, r in ratings.items()),
                  key=lambda r: -r["score"])
    return {"models": rows, "k": k, "init": init, "method": METHOD_ELO.format(k=k),
            "trajectory": trajectory, "rating_ids": [v.rating_id for v in votes]}
