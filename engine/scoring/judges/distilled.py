"""The distilled judge: cheap per-trait regressors that imitate a slow judge.

Ridge regressions (one per trait, fitted together) map fast text features
(hashed character and word TF-IDF of the rated speaker's lines, plus the
lexical features) onto another judge's 1..5 ratings, e.g. the GPT-5 columns of the
Turing file, so that judge's behaviour can be used inside a training loop.
Fitted models are our own files under ``data_dir()/judges/distilled``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from scipy.sparse import csr_matrix, hstack
from scipy.stats import pearsonr, spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from engine import paths
from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue
from engine.scoring.features import feature_matrix
from engine.scoring.judges.base import Judge, JudgeUnavailable, Ratings, RatingError, rows_to_ratings
from engine.scoring.ngrams import HashedCharTfidf

FORMAT_VERSION = 2


def models_dir() -> Path:
    path = paths.data_dir() / "judges" / "distilled"
    path.mkdir(parents=True, exist_ok=True)
    return path


class TextFeatures:
    """Character 1-4-grams (hashed, case kept), word 1-2-grams and the lexical features, side by side."""

    def __init__(self, lexical_weight: float = 0.05):
        self.lexical_weight = lexical_weight
        self.chars = HashedCharTfidf(ngram_range=(1, 4), min_df=2)
        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32)
        self.scaler = StandardScaler()

    def fit(self, dialogues: list[Dialogue], lex: np.ndarray | None = None) -> "TextFeatures":
        texts = [d.speaker_text() for d in dialogues]
        self.chars.fit(texts)
        self.words.fit(texts)
        self.scaler.fit(np.nan_to_num(feature_matrix(dialogues) if lex is None else lex))
        return self

    def transform(self, dialogues: list[Dialogue], lex: np.ndarray | None = None):
        texts = [d.speaker_text() for d in dialogues]
        lex = feature_matrix(dialogues) if lex is None else lex
        scaled = np.clip(self.scaler.transform(np.nan_to_num(lex)), -5, 5) * self.lexical_weight
        return hstack([self.chars.transform(texts), self.words.transform(texts), csr_matrix(scaled)]).tocsr()


@dataclass
class DistilledModel:
    id: str
    trait_ids: list[int]
    features: TextFeatures
    ridge: Ridge
    meta: dict = field(default_factory=dict)
    oof: dict[str, list[float]] = field(default_factory=dict)  # text digest -> out-of-fold ratings

    def predict(self, dialogues: list[Dialogue], lex: np.ndarray | None = None) -> np.ndarray:
        if not dialogues:
            return np.zeros((0, len(self.trait_ids)))
        pred = self.ridge.predict(self.features.transform(dialogues, lex))
        return np.clip(np.asarray(pred, dtype=float).reshape(len(dialogues), -1), 1.0, 5.0)


def _targets(rows: list[dict[int, float | None]], trait_ids: list[int]) -> np.ndarray:
    Y = np.full((len(rows), len(trait_ids)), np.nan)
    for i, r in enumerate(rows):
        for j, t in enumerate(trait_ids):
            v = r.get(t)
            if v is not None and math.isfinite(v):
                Y[i, j] = v
    return Y


def _fit_one(dialogues, Y, lex, alpha, lexical_weight) -> tuple[TextFeatures, Ridge]:
    feats = TextFeatures(lexical_weight).fit(dialogues, lex)
    # A missing target rating is filled with that trait's mean so one gap does not drop the row.
    means = np.nanmean(Y, axis=0)
    Yf = np.where(np.isnan(Y), means, Y)
    ridge = Ridge(alpha=alpha).fit(feats.transform(dialogues, lex), Yf)
    return feats, ridge


def fit_distilled(
    dialogues: list[Dialogue],
    targets: list[dict[int, float | None]],
    trait_ids: list[int] | None = None,
    *,
    alpha: float = 3.0,
    lexical_weight: float = 0.05,
    folds: int = 5,
    model_id: str | None = None,
    source: str = "",
) -> tuple[DistilledModel, np.ndarray]:
    """Fit on all items; also return out-of-fold predictions from game-grouped folds.

    The out-of-fold predictions give the held-out correlations stored in
    ``meta['heldout']`` and are what weights should be fitted on, since a judge
    rating its own training items is over-confident.
    """
    if len(dialogues) != len(targets) or len(dialogues) < max(folds, 2) * 2:
        raise BadRequest(f"need at least {max(folds, 2) * 2} rated items to distil a judge, got {len(dialogues)}")
    trait_ids = sorted(trait_ids or {t for r in targets for t, v in r.items() if v is not None})
    Y = _targets(targets, trait_ids)
    keep = [j for j in range(len(trait_ids)) if np.isfinite(Y[:, j]).sum() >= 2 * folds]
    trait_ids, Y = [trait_ids[j] for j in keep], Y[:, keep]
    if not trait_ids:
        raise BadRequest("no trait has enough ratings to distil")
    lex = feature_matrix(dialogues)
    groups = np.array([d.group or d.id for d in dialogues])
    n_groups = len(set(groups))
    oof = np.full(Y.shape, np.nan)
    if n_groups >= folds:
        for tr, te in GroupKFold(n_splits=folds).split(lex, groups=groups):
            feats, ridge = _fit_one([dialogues[i] for i in tr], Y[tr], lex[tr], alpha, lexical_weight)
            part = DistilledModel("fold", trait_ids, feats, ridge)
            oof[te] = part.predict([dialogues[i] for i in te], lex[te])
    feats, ridge = _fit_one(dialogues, Y, lex, alpha, lexical_weight)
    heldout = {}
    for j, t in enumerate(trait_ids):
        ok = np.isfinite(Y[:, j]) & np.isfinite(oof[:, j])
        if ok.sum() > 2 and np.ptp(Y[ok, j]) > 0 and np.ptp(oof[ok, j]) > 0:
            heldout[str(t)] = {"spearman": round(float(spearmanr(oof[ok, j], Y[ok, j])[0]), 4),
                               "pearson": round(float(pearsonr(oof[ok, j], Y[ok, j])[0]), 4), "n": int(ok.sum())}
    model = DistilledModel(
        id=model_id or f"{source or 'judge'}-{time.strftime('%Y%m%dT%H%M%S')}",
        trait_ids=trait_ids, features=feats, ridge=ridge,
        meta={"format_version": FORMAT_VERSION, "source": source, "n": len(dialogues), "alpha": alpha,
              "lexical_weight": lexical_weight, "folds": folds, "heldout": heldout,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
        oof={d.digest(): [round(float(v), 3) for v in row] for d, row in zip(dialogues, oof)
             if np.isfinite(row).all()},
    )
    return model, oof


def save_model(model: DistilledModel) -> Path:
    folder = models_dir()
    path = folder / f"{model.id}.joblib"
    joblib.dump({"format_version": FORMAT_VERSION, "model": model}, path)
    info = {"id": model.id, "trait_ids": model.trait_ids, **model.meta}
    (folder / f"{model.id}.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return path


def list_models() -> list[dict]:
    out = []
    for p in sorted(models_dir().glob("*.json")):
        try:
            out.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda m: m.get("created", ""))


def load_model(model_id: str | None = None) -> DistilledModel:
    """A saved model by id, or the newest one when no id is given."""
    if not model_id:
        known = list_models()
        if not known:
            raise JudgeUnavailable("no distilled judge has been fitted yet",
                                   detail="fit one with: hal distill PATH (a file with precomputed ratings)")
        model_id = known[-1]["id"]
    path = models_dir() / f"{model_id}.joblib"
    if not path.is_file():
        raise JudgeUnavailable(f"no distilled judge {model_id!r}",
                               detail="known: " + ", ".join(m["id"] for m in list_models()))
    blob = joblib.load(path)
    if blob.get("format_version") != FORMAT_VERSION:
        raise JudgeUnavailable(f"distilled judge {model_id!r} was saved by another version; fit it again")
    return blob["model"]


class DistilledJudge(Judge):
    name = "distilled"
    clean_output = True

    def __init__(self, questionnaire=None, cache=True, model: DistilledModel | str | None = None):
        super().__init__(questionnaire, cache)
        self.model = model if isinstance(model, DistilledModel) else load_model(model)

    @property
    def judge_id(self) -> str:
        return f"distilled:{self.model.id}"

    def describe(self) -> dict:
        return {**super().describe(), "heldout": self.model.meta.get("heldout", {})}

    def rate_matrix(self, dialogues: list[Dialogue], lex: np.ndarray | None = None) -> tuple[list[int], np.ndarray]:
        """Ratings for the questionnaire's traits as an array (NaN where no regressor); no cache."""
        pred = self.model.predict(dialogues, lex)
        ids = self.questionnaire.trait_ids
        col = {t: j for j, t in enumerate(self.model.trait_ids)}
        out = np.full((len(dialogues), len(ids)), np.nan)
        for j, t in enumerate(ids):
            if t in col:
                out[:, j] = pred[:, col[t]]
        return ids, np.round(out, 3)

    def fit_ratings(self, dialogues: list[Dialogue]) -> tuple[list[Ratings | RatingError], int]:
        """Ratings to fit weights on: out-of-fold ones for items the judge was trained on.

        Returns the ratings and how many came from the out-of-fold store.
        """
        out = self.rate_many(dialogues)
        used = 0
        for i, d in enumerate(dialogues):
            row = self.model.oof.get(d.digest())
            if row is not None and not isinstance(out[i], RatingError):
                held = dict(zip(self.model.trait_ids, row))
                out[i] = {t: held.get(t) for t in self.questionnaire.trait_ids}
                used += 1
        return out, used

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        ids, R = self.rate_matrix(dialogues)
        return rows_to_ratings(ids, R)
