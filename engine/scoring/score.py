"""Turn per-trait ratings into one human-likeness score with a breakdown.

Policy for traits the weights use but the judge did not rate: the neutral
rating (3, "partly present or does not apply" on the judges' scale) is put in
its place, the trait is listed in ``missing``, and ``imputed_weight`` says what
share of the total |weight| rests on such guesses. Imputing the neutral value
keeps scores of one judge comparable with each other (the imputed term is the
same constant for every speaker) without pretending the trait was seen; a
score with every weighted trait missing is refused rather than reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from engine.errors import EngineError
from engine.scoring.traits import Questionnaire, Weights

NEUTRAL = 3.0


class NothingRated(EngineError):
    kind = "nothing_rated"


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass
class Score:
    score: float
    probability: float
    ratings: dict[int, float | None]
    contributions: dict[int, float]  # w * rating (imputed ratings included)
    shares: dict[int, float]  # contribution / sum |contribution|, signed
    missing: list[int]
    imputed_weight: float
    questionnaire: str
    weights: str
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "score": self.score, "probability": self.probability,
            "traits": {str(k): v for k, v in self.ratings.items()},
            "contributions": {str(k): round(v, 6) for k, v in self.contributions.items()},
            "shares": {str(k): round(v, 6) for k, v in self.shares.items()},
            "missing": self.missing, "imputed_weight": round(self.imputed_weight, 6),
            "questionnaire": self.questionnaire, "weights": self.weights, **self.extra,
        }


def _valid(r: float | None) -> bool:
    return r is not None and isinstance(r, (int, float)) and math.isfinite(r)


def score_ratings(
    ratings: Mapping[int, float | None],
    weights: Weights,
    questionnaire: Questionnaire | None = None,
    neutral: float | None = None,
) -> Score:
    """Score one speaker; ``ratings`` maps trait id to a 1..5 rating or None."""
    if neutral is None:
        neutral = questionnaire.neutral if questionnaire is not None else NEUTRAL
    asked = set(questionnaire.trait_ids) if questionnaire is not None else None
    total = 0.0
    contributions: dict[int, float] = {}
    missing: list[int] = []
    abs_w = sum(abs(w) for w in weights.weights.values()) or 1.0
    imputed_abs = 0.0
    for tid in sorted(weights.weights):
        w = weights.weights[tid]
        r = ratings.get(tid)
        if not _valid(r) or (asked is not None and tid not in asked):
            missing.append(tid)
            imputed_abs += abs(w)
            r = neutral
        c = w * float(r)
        contributions[tid] = c
        total += c
    if weights.weights and len(missing) == len(weights.weights):
        raise NothingRated("the judge rated none of the weighted traits",
                           detail=f"weights {weights.ref} use traits {sorted(weights.weights)}")
    s = total + weights.bias
    denom = sum(abs(c) for c in contributions.values()) or 1.0
    shown = {tid: (float(r) if _valid(r) else None) for tid, r in sorted(ratings.items())}
    return Score(
        score=s, probability=sigmoid(s), ratings=shown, contributions=contributions,
        shares={tid: c / denom for tid, c in contributions.items()}, missing=missing,
        imputed_weight=imputed_abs / abs_w,
        questionnaire=questionnaire.ref if questionnaire is not None else "",
        weights=weights.ref,
    )


def ratings_matrix(rows: list[Mapping[int, float | None]], trait_ids: list[int], neutral: float = NEUTRAL):
    """Stack ratings into an (n, k) array with neutral for gaps; also return the gap mask."""
    X = np.full((len(rows), len(trait_ids)), np.nan, dtype=float)
    for i, row in enumerate(rows):
        for j, tid in enumerate(trait_ids):
            r = row.get(tid)
            if _valid(r):
                X[i, j] = float(r)
    gaps = np.isnan(X)
    X[gaps] = neutral
    return X, gaps


def score_matrix(X: np.ndarray, trait_ids: list[int], weights: Weights, neutral: float = NEUTRAL) -> np.ndarray:
    """Vectorised score of many speakers; traits the weights lack count zero."""
    w = np.array([weights.weights.get(t, 0.0) for t in trait_ids])
    extra = sum(v for t, v in weights.weights.items() if t not in set(trait_ids)) * neutral
    return X @ w + weights.bias + extra
