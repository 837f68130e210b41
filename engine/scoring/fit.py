"""The proxy task: learn trait weights that tell a human speaker from an AI.

Logistic regression (L1 or L2) on 1..5 trait ratings, so the fitted model is
itself the score: ``sum(w[t] * rating[t]) + bias`` is the logit of "human".
Cross-validation is stratified, repeated with new seeds, and never splits a
game (the two sides of a Turing game share a group) across folds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from threadpoolctl import threadpool_limits

from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue
from engine.scoring.importers import Problem
from engine.scoring.judges.base import RatingError
from engine.scoring.score import NEUTRAL, ratings_matrix
from engine.scoring.traits import Questionnaire, Weights, save_weights


@dataclass
class FitConfig:
    penalty: str = field(default="l1", metadata={"help": "l1 (sparse, as in the paper) or l2"})
    C: float = field(default=1.0, metadata={"help": "inverse regularisation strength"})
    folds: int = field(default=10, metadata={"help": "cross-validation folds (games never split)"})
    repeats: int = field(default=1, metadata={"help": "repeat the CV with this many seeds"})
    select: int | None = field(default=None, metadata={"help": "keep the K traits of largest |weight| and refit"})
    seed: int = field(default=0, metadata={"help": "seed of the first repeat"})

    def __post_init__(self):
        if self.penalty not in ("l1", "l2"):
            raise BadRequest(f"penalty must be l1 or l2, not {self.penalty!r}")
        if self.folds < 2 or self.repeats < 1 or self.C <= 0:
            raise BadRequest("need folds >= 2, repeats >= 1 and C > 0")


@dataclass
class Table:
    """Ratings of labelled speakers, one row each; gaps hold the neutral rating."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    trait_ids: list[int]
    ids: list[str]
    gaps: np.ndarray


def build_table(dialogues: list[Dialogue], ratings: list, trait_ids: list[int] | None = None,
                neutral: float = NEUTRAL) -> tuple[Table, list[Problem]]:
    """Keep labelled, rated items; traits no item has a rating for are left out."""
    problems: list[Problem] = []
    rows, keep = [], []
    for d, r in zip(dialogues, ratings):
        if isinstance(r, RatingError):
            problems.append(Problem(d.id, r.message))
        elif d.label is None:
            problems.append(Problem(d.id, "no human/AI label; left out of the fit"))
        else:
            rows.append(r)
            keep.append(d)
    seen = sorted({t for r in rows for t, v in r.items() if v is not None})
    trait_ids = [t for t in (trait_ids or seen) if t in set(seen)]
    X, gaps = ratings_matrix(rows, trait_ids, neutral)
    y = np.array([1 if d.is_human else 0 for d in keep], dtype=int)
    groups = np.array([d.group or d.id for d in keep])
    return Table(X, y, groups, trait_ids, [d.id for d in keep], gaps), problems


def _model(config: FitConfig) -> LogisticRegression:
    if config.penalty == "l1":
        # liblinear penalises the intercept too; a large scaling makes that negligible.
        return LogisticRegression(l1_ratio=1.0, solver="liblinear", C=config.C, intercept_scaling=100.0, max_iter=5000)
    return LogisticRegression(C=config.C, max_iter=5000)


def fit_once(X: np.ndarray, y: np.ndarray, config: FitConfig,
             sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weights over all columns (zeros where not selected) and the bias."""
    m = _model(config).fit(X, y, sample_weight=sample_weight)
    w, b = m.coef_[0].copy(), float(m.intercept_[0])
    if config.select and config.select < X.shape[1]:
        keep = np.sort(np.argsort(-np.abs(w), kind="stable")[: config.select])
        m = _model(config).fit(X[:, keep], y, sample_weight=sample_weight)
        w = np.zeros(X.shape[1])
        w[keep] = m.coef_[0]
        b = float(m.intercept_[0])
    return w, b


def pairwise_accuracy(scores: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Share of games where the human outscores the AI (ties count half)."""
    wins, games = 0.0, 0
    for g in np.unique(groups):
        idx = groups == g
        h, a = scores[idx & (y == 1)], scores[idx & (y == 0)]
        if len(h) and len(a):
            cmp = h[:, None] - a[None, :]
            wins += float(np.mean((cmp > 0) + 0.5 * (cmp == 0)))
            games += 1
    return wins / games if games else float("nan")


def splits(y: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    n_groups = len(np.unique(groups))
    if n_groups < folds:
        raise BadRequest(f"{folds}-fold CV needs at least {folds} games, found {n_groups}")
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)


def one_thread(func):
    """Small fits run far faster on one BLAS thread, above all on a busy machine."""
    def call(*args, **kwargs):
        with threadpool_limits(1):
            return func(*args, **kwargs)
    call.__name__, call.__doc__ = func.__name__, func.__doc__
    return call


@one_thread
def cross_validate(table: Table, config: FitConfig, progress=None) -> dict:
    """``progress(done, total)`` is called after each fold (a job may raise from it to stop)."""
    X, y, groups = table.X, table.y, table.groups
    if X.shape[1] == 0:
        raise BadRequest("the judge rated none of the questionnaire's traits, so there is nothing to fit",
                         "use a judge that can rate them (e.g. 'measured' for traits found by discovery)")
    if len(set(y.tolist())) < 2:
        raise BadRequest("the fit needs both human and AI speakers")
    fold_acc, fold_w, pair_acc, oof_acc = [], [], [], []
    for r in range(config.repeats):
        oof = np.full(len(y), np.nan)
        for tr, te in splits(y, groups, config.folds, config.seed + r):
            w, b = fit_once(X[tr], y[tr], config)
            oof[te] = X[te] @ w + b
            fold_acc.append(float(np.mean((oof[te] > 0) == (y[te] == 1))))
            fold_w.append(w)
            if progress:
                progress(len(fold_w), config.folds * config.repeats + 1)
        pair_acc.append(pairwise_accuracy(oof, y, groups))
        oof_acc.append(float(np.mean((oof > 0) == (y == 1))))
    w_all, b_all = fit_once(X, y, config)
    W = np.vstack(fold_w)
    signs = np.where(w_all[None, :] == 0, W == 0, np.sign(W) == np.sign(w_all)[None, :])
    ids = [str(t) for t in table.trait_ids]
    report = {
        "n": int(len(y)), "n_games": int(len(np.unique(groups))), "n_human": int(y.sum()),
        "traits": table.trait_ids, "penalty": config.penalty, "C": config.C, "folds": config.folds,
        "repeats": config.repeats, "select": config.select,
        "cv_accuracy": float(np.mean(fold_acc)), "cv_std": float(np.std(fold_acc)),
        "oof_accuracy": float(np.mean(oof_acc)),
        "pairwise_accuracy": float(np.mean(pair_acc)), "pairwise_std": float(np.std(pair_acc)),
        "majority_baseline": float(max(y.mean(), 1 - y.mean())),
        "weights": {i: float(v) for i, v in zip(ids, w_all) if v != 0 or not config.select},
        "bias": b_all,
        "weights_mean": {i: float(v) for i, v in zip(ids, W.mean(0))},
        "weights_sd": {i: float(v) for i, v in zip(ids, W.std(0))},
        "sign_agreement": {i: float(v) for i, v in zip(ids, signs.mean(0))},
        "imputed_cells": int(table.gaps.sum()),
    }
    if config.select:
        report["selected_share"] = {i: float(v) for i, v in zip(ids, (W != 0).mean(0))}
    return report


def save_fit(report: dict, questionnaire: Questionnaire, *, judge: str, source: str, config: FitConfig,
             weights_id: str | None = None) -> Weights:
    """Store the refit weights as a new weights version that says how it was made."""
    w = Weights(
        id=weights_id or f"fit-{judge.split(':')[0].split('@')[0]}", version=None,
        name=f"Fitted on {judge} ratings", weights={int(k): v for k, v in report["weights"].items()},
        bias=report["bias"], questionnaire=questionnaire.ref,
        description="Logistic regression on trait ratings; the score is the logit of 'human'.",
        fitted_on={"judge": judge, "source": source, "config": asdict(config), "n": report["n"],
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S")},
        metrics={k: report[k] for k in ("cv_accuracy", "cv_std", "pairwise_accuracy", "n", "n_games")},
    )
    return save_weights(w)
