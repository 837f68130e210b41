"""The distilled judge: cheap per-trait regressors that imitate a slow judge.

Ridge regressions (one per trait, fitted together) map fast text features
(hashed character and word TF-IDF of the rated speaker's lines, plus the
lexical features) onto another judge's 1..5 ratings, e.g. the GPT-5 columns of the
Turing file, so that judge's behaviour can be used inside a training loop.
Fitted models are plain folders (``judge.json``, ``vocabulary.json``,
``oof.json`` and ``arrays.npz`` read with ``allow_pickle=False``): nothing in
them can run code when loaded. The user's own live under
``data_dir()/judges/distilled/<id>/``; judges shipped with the studio under
``resources/judges/<id>/``. A judge id is checked (``engine.ids``) before it
names a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import os
import shutil
import uuid
import numpy as np
from scipy.sparse import csr_matrix, hstack
from scipy.stats import pearsonr, spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from engine import paths
from engine.errors import BadRequest
from engine.ids import check_id, is_valid_id
from engine.scoring.dialogue import Dialogue
from engine.scoring.features import feature_matrix, style_consistency
from engine.scoring.judges.base import Judge, JudgeUnavailable, Ratings, RatingError, rows_to_ratings
from engine.scoring.ngrams import HashedCharTfidf

FORMAT_VERSION = 3  # 3: a folder of JSON + .npz (2 was a joblib pickle, no longer read)
FORMAT_NAME = "hal-distilled-judge"
ARRAYS = "arrays.npz"
META = "judge.json"


def models_dir() -> Path:
    """The user's fitted distilled judges (one folder each)."""
    path = paths.data_dir() / "judges" / "distilled"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shipped_dir() -> Path:
    """Judges shipped with the studio: ``resources/judges/<id>/``."""
    return paths.resources_dir() / "judges"


HASHED = "#b2:"  # a word n-gram stored as its 64-bit BLAKE2b digest, not as text


def hash_token(token: str) -> str:
    return HASHED + hashlib.blake2b(token.encode("utf-8"), digest_size=8).hexdigest()


_plain_words = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()


def hashed_word_analyzer(doc: str) -> list[str]:
    """The word 1-2-grams of the plain analyser, each as its digest: a shipped judge's
    vocabulary holds numbers, no text from the data it was fitted on."""
    return [hash_token(t) for t in _plain_words(doc)]


class TextFeatures:
    """Character 1-4-grams (hashed, case kept), word 1-2-grams and the lexical features, side by side."""

    def __init__(self, lexical_weight: float = 0.05, style: bool = False):
        self.lexical_weight = lexical_weight
        self.style = style  # append the style-consistency features to the lexical ones
        self.chars = HashedCharTfidf(ngram_range=(1, 4), min_df=2)
        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32)
        self.lex_mean: np.ndarray | None = None
        self.lex_scale: np.ndarray | None = None

    def _lexical(self, dialogues: list[Dialogue], lex: np.ndarray | None) -> np.ndarray:
        lex = feature_matrix(dialogues) if lex is None else lex
        return np.hstack([lex, style_consistency(dialogues)]) if self.style else lex

    def fit(self, dialogues: list[Dialogue], lex: np.ndarray | None = None) -> "TextFeatures":
        texts = [d.speaker_text() for d in dialogues]
        self.chars.fit(texts)
        self.words.fit(texts)
        scaler = StandardScaler().fit(np.nan_to_num(self._lexical(dialogues, lex)))
        self.lex_mean, self.lex_scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
        return self

    def transform(self, dialogues: list[Dialogue], lex: np.ndarray | None = None):
        texts = [d.speaker_text() for d in dialogues]
        lex = self._lexical(dialogues, lex)
        scaled = np.clip((np.nan_to_num(lex) - self.lex_mean) / self.lex_scale, -5, 5) * self.lexical_weight
        return hstack([self.chars.transform(texts), self.words.transform(texts), csr_matrix(scaled)]).tocsr()

    def vocabulary(self) -> list[str]:
        """The word n-grams in column order."""
        return sorted(self.words.vocabulary_, key=self.words.vocabulary_.get)

    @classmethod
    def from_parts(cls, lexical_weight: float, chars: HashedCharTfidf, vocabulary: list[str],
                   word_idf: np.ndarray, lex_mean: np.ndarray, lex_scale: np.ndarray,
                   style: bool = False) -> "TextFeatures":
        feats = cls(lexical_weight, style)
        feats.chars = chars
        if vocabulary and all(t.startswith(HASHED) for t in vocabulary):
            feats.words = TfidfVectorizer(analyzer=hashed_word_analyzer, sublinear_tf=True, dtype=np.float32,
                                          vocabulary=vocabulary)
        else:
            feats.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32,
                                          vocabulary=vocabulary)
        feats.words.idf_ = word_idf
        feats.lex_mean, feats.lex_scale = lex_mean, lex_scale
        return feats

    def width(self) -> int:
        return len(self.chars.idf) + len(self.words.idf_) + len(self.lex_mean)


@dataclass
class DistilledModel:
    id: str
    trait_ids: list[int]
    features: TextFeatures
    coef: np.ndarray  # (traits, features), float32: the ridge regressions side by side
    intercept: np.ndarray  # (traits,)
    meta: dict = field(default_factory=dict)
    oof: dict[str, list[float]] = field(default_factory=dict)  # text digest -> out-of-fold ratings

    def predict(self, dialogues: list[Dialogue], lex: np.ndarray | None = None) -> np.ndarray:
        if not dialogues:
            return np.zeros((0, len(self.trait_ids)))
        X = self.features.transform(dialogues, lex)
        pred = np.asarray(X @ self.coef.T, dtype=float) + self.intercept
        return np.clip(pred.reshape(len(dialogues), -1), 1.0, 5.0)


def _targets(rows: list[dict[int, float | None]], trait_ids: list[int]) -> np.ndarray:
    Y = np.full((len(rows), len(trait_ids)), np.nan)
    for i, r in enumerate(rows):
        for j, t in enumerate(trait_ids):
            v = r.get(t)
            if v is not None and math.isfinite(v):
                Y[i, j] = v
    return Y


def _fit_one(dialogues, Y, lex, alpha, lexical_weight, pseudo=None, human=None,
             extra_weight: float = 1.0, style: bool = False) -> tuple[TextFeatures, np.ndarray, np.ndarray]:
    feats = TextFeatures(lexical_weight, style).fit(dialogues, lex)
    Y = Y.copy()
    weight = None
    if pseudo is not None and pseudo.any():
        # An extra item (labelled, not rated) learns the mean rating of the rated items of its
        # own label in this training set: the human-vs-AI direction, drawn from more varied text.
        rated = ~pseudo
        for is_human in (True, False):
            rows = pseudo & (human == is_human)
            if rows.any():
                Y[rows] = np.nanmean(Y[rated & (human == is_human)], axis=0)
        weight = np.where(pseudo, extra_weight, 1.0)
    # A missing target rating is filled with that trait's mean so one gap does not drop the row.
    means = np.nanmean(Y, axis=0)
    Yf = np.where(np.isnan(Y), means, Y)
    ridge = Ridge(alpha=alpha).fit(feats.transform(dialogues, lex), Yf, sample_weight=weight)
    # float32, as saved: a judge rates the same before and after it is written out
    coef = np.asarray(ridge.coef_, dtype=np.float32).reshape(Y.shape[1], -1)
    intercept = np.asarray(ridge.intercept_, dtype=np.float64).reshape(Y.shape[1])
    return feats, coef, intercept


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
    extra: list[Dialogue] | None = None,
    extra_weight: float = 1.0,
    extra_source: str = "",
    folds_by: str = "game",
    style: bool = False,
) -> tuple[DistilledModel, np.ndarray]:
    """Fit on all items; also return out-of-fold predictions from game-grouped folds.

    The out-of-fold predictions give the held-out correlations stored in
    ``meta['heldout']`` and are what weights should be fitted on, since a judge
    rating its own training items is over-confident.

    ``extra``: labelled dialogues without ratings (e.g. ``hal contrast build``'s
    human replies and model replies). Each learns, inside every fit, the mean
    ratings of the rated items of its label in that fit's training part, with
    weight ``extra_weight``; the returned out-of-fold array covers them too (after
    the rated items). The held-out correlations are over the rated items only.

    ``folds_by="ai_model"`` makes the folds hold out whole AI systems (an item's
    ``meta['ai_model']``; the extra items are one more system): each out-of-fold
    rating then comes from a judge that never saw that system, as a new model's
    replies will be rated, so weights fitted on them learn where an unseen
    system's replies fall rather than where familiar ones do.
    """
    if folds_by not in ("game", "ai_model"):
        raise BadRequest(f"folds can hold out games or AI systems ('game' or 'ai_model'), not {folds_by!r}")
    extra = list(extra or [])
    if len(dialogues) != len(targets) or len(dialogues) < max(folds, 2) * 2:
        raise BadRequest(f"need at least {max(folds, 2) * 2} rated items to distil a judge, got {len(dialogues)}")
    trait_ids = sorted(trait_ids or {t for r in targets for t, v in r.items() if v is not None})
    Y = _targets(targets, trait_ids)
    keep = [j for j in range(len(trait_ids)) if np.isfinite(Y[:, j]).sum() >= 2 * folds]
    trait_ids, Y = [trait_ids[j] for j in keep], Y[:, keep]
    if not trait_ids:
        raise BadRequest("no trait has enough ratings to distil")
    n_rated = len(dialogues)
    pseudo = human = None
    if extra:
        if any(d.label is None for d in extra):
            raise BadRequest("every extra item needs a human/AI label")
        labels = [d.is_human for d in dialogues]
        if not ({True, False} <= set(labels)):
            raise BadRequest("extra items need rated items of both labels (human and AI) to learn from",
                             detail="the rated items have no human/AI label" if None in labels else "")
        if not extra_weight > 0:
            raise BadRequest("extra_weight must be above 0")
        human = np.array(labels + [d.is_human for d in extra], dtype=object)
        pseudo = np.r_[np.zeros(n_rated, bool), np.ones(len(extra), bool)]
        Y = np.vstack([Y, np.full((len(extra), len(trait_ids)), np.nan)])
        dialogues = list(dialogues) + extra
    lex = feature_matrix(dialogues)
    if folds_by == "ai_model":
        systems = [str(d.meta.get("ai_model") or "") for d in dialogues[:n_rated]]
        if "" in systems:
            raise BadRequest("folds by AI system need an ai_model for every rated item (the Turing CSV has one)")
        groups = np.array(systems + ["extra:"] * len(extra), dtype=object)
        folds = min(folds, len(set(groups)))
    else:
        groups = np.array([d.group or d.id for d in dialogues[:n_rated]]
                          + [f"extra:{d.group or d.id}" for d in extra], dtype=object)
    n_groups = len(set(groups))
    oof = np.full(Y.shape, np.nan)
    if n_groups >= folds:
        for tr, te in GroupKFold(n_splits=folds).split(lex, groups=groups):
            feats, coef, intercept = _fit_one([dialogues[i] for i in tr], Y[tr], lex[tr], alpha, lexical_weight,
                                              None if pseudo is None else pseudo[tr],
                                              None if human is None else human[tr], extra_weight, style)
            part = DistilledModel("fold", trait_ids, feats, coef, intercept)
            oof[te] = part.predict([dialogues[i] for i in te], lex[te])
    feats, coef, intercept = _fit_one(dialogues, Y, lex, alpha, lexical_weight, pseudo, human, extra_weight, style)
    heldout = {}
    for j, t in enumerate(trait_ids):
        ok = np.isfinite(Y[:, j]) & np.isfinite(oof[:, j])
        if ok.sum() > 2 and np.ptp(Y[ok, j]) > 0 and np.ptp(oof[ok, j]) > 0:
            heldout[str(t)] = {"spearman": round(float(spearmanr(oof[ok, j], Y[ok, j])[0]), 4),
                               "pearson": round(float(pearsonr(oof[ok, j], Y[ok, j])[0]), 4), "n": int(ok.sum())}
    if model_id is not None:
        check_id(model_id, "distilled judge id")
    model = DistilledModel(
        id=model_id or _default_id(source),
        trait_ids=trait_ids, features=feats, coef=coef, intercept=intercept,
        meta={"format_version": FORMAT_VERSION, "source": source, "n": n_rated, "alpha": alpha,
              "lexical_weight": lexical_weight, "folds": folds, "heldout": heldout,
              **({"folds_by": folds_by} if folds_by != "game" else {}),
              **({"style_features": True} if style else {}),
              **({"extra": {"n": len(extra), "n_human": sum(1 for d in extra if d.is_human),
                            "weight": extra_weight, "source": extra_source, "targets": "label means"}}
                 if extra else {}),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
        oof={d.digest(): [round(float(v), 3) for v in row] for d, row in zip(dialogues, oof)
             if np.isfinite(row).all()},
    )
    return model, oof


def _default_id(source: str) -> str:
    stem = "".join(c if c.isalnum() or c in "_-." else "-" for c in (source or "judge"))[:40].strip("-.") or "judge"
    if not stem[0].isalnum():
        stem = "j" + stem
    return f"{stem}-{time.strftime('%Y%m%dT%H%M%S')}".replace("..", "-")


def save_model(model: DistilledModel, folder: Path | None = None, hashed_words: bool = False) -> Path:
    """Write ``model`` as a folder ``<id>/`` (into the user's judges unless ``folder`` is given),
    under a temporary name first, so a crash never leaves half a judge behind. With
    ``hashed_words`` the word vocabulary is written as digests (what the studio ships)."""
    check_id(model.id, "distilled judge id")
    root = Path(folder) if folder is not None else models_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / model.id
    tmp = root / f".tmp-{model.id}-{uuid.uuid4().hex[:8]}"
    feats = model.features
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "distilled", "id": model.id,
            "trait_ids": [int(t) for t in model.trait_ids],
            **{k: v for k, v in model.meta.items() if k not in ("format", "format_version", "kind", "id", "trait_ids")},
            "features": {"lexical_weight": feats.lexical_weight, **({"style": True} if feats.style else {}),
                         "chars": {"ngram_range": list(feats.chars.ngram_range), "bits": feats.chars.bits,
                                   "min_df": feats.chars.min_df}}}
    try:
        tmp.mkdir()
        buckets, char_idf = feats.chars.to_arrays()
        np.savez_compressed(tmp / ARRAYS, char_buckets=buckets, char_idf=char_idf,
                            word_idf=np.asarray(feats.words.idf_, dtype=np.float32),
                            lex_mean=feats.lex_mean, lex_scale=feats.lex_scale,
                            coef=np.asarray(model.coef, dtype=np.float32),
                            intercept=np.asarray(model.intercept, dtype=np.float64))
        vocab = feats.vocabulary()
        if hashed_words:
            vocab = [t if t.startswith(HASHED) else hash_token(t) for t in vocab]
        (tmp / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / "oof.json").write_text(json.dumps(model.oof), encoding="utf-8")
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks the folder whole
        if final.exists():
            old = root / f".old-{model.id}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or meta.get("id") != folder.name:
        return None
    return meta


def _folders() -> list[tuple[Path, str]]:
    """Every judge folder: the user's first, then the shipped ones (an id the user has wins)."""
    out, seen = [], set()
    for root, where in ((models_dir(), "user"), (shipped_dir(), "shipped")):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name in seen or not is_valid_id(folder.name) or not folder.is_dir():
                continue
            out.append((folder, where))
            seen.add(folder.name)
    return out


def list_models() -> list[dict]:
    """The loadable distilled judges, oldest first (the newest is the default)."""
    out = []
    for folder, where in _folders():
        meta = _read_meta(folder)
        if meta is not None and meta.get("kind", "distilled") == "distilled":
            out.append({**meta, "where": where})
    return sorted(out, key=lambda m: (m.get("created", ""), m["id"]))


def _legacy_ids() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.joblib"))


def _find(model_id: str) -> Path | None:
    for root in (models_dir(), shipped_dir()):
        folder = root / model_id
        if (folder / META).is_file():
            return folder
    return None


def load_model(model_id: str | None = None) -> DistilledModel:
    """A saved model by id (the user's, else a shipped one), or the newest one when no id is given."""
    if not model_id:
        known = list_models()
        if not known:
            if _legacy_ids():
                raise JudgeUnavailable("the distilled judges saved here use the old pickle format, which is no "
                                       "longer loaded (it could run code): re-run hal distill")
            raise JudgeUnavailable("no distilled judge has been fitted yet",
                                   detail="fit one with: hal distill PATH (a file with precomputed ratings)")
        model_id = known[-1]["id"]
    check_id(model_id, "distilled judge id")
    folder = _find(model_id)
    if folder is None:
        if (models_dir() / f"{model_id}.joblib").is_file():
            raise JudgeUnavailable(f"distilled judge {model_id!r} was saved in the old pickle format, which is "
                                   f"no longer loaded (it could run code): re-run hal distill")
        raise JudgeUnavailable(f"no distilled judge {model_id!r}",
                               detail="known: " + (", ".join(m["id"] for m in list_models()) or "none"))
    try:
        return _load_folder(folder)
    except JudgeUnavailable:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise JudgeUnavailable(f"distilled judge {model_id!r} is damaged ({type(exc).__name__}: {exc}); "
                               f"re-run hal distill", detail=str(folder)) from None


def _array(arrays, name: str, ndim: int, kind: str = "f") -> np.ndarray:
    value = arrays[name]
    if value.ndim != ndim or value.dtype.kind not in (kind + ("iu" if kind == "i" else "")):
        raise ValueError(f"{name} has shape {value.shape} and type {value.dtype}")
    if kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{name} holds a non-finite number")
    return value


def _load_folder(folder: Path) -> DistilledModel:
    meta = _read_meta(folder)
    if meta is None:
        raise ValueError(f"{META} is missing or not a distilled judge's")
    if meta.get("format_version") != FORMAT_VERSION:
        raise JudgeUnavailable(f"distilled judge {folder.name!r} was saved by another version "
                               f"(format {meta.get('format_version')!r}); re-run hal distill")
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        buckets = _array(arrays, "char_buckets", 1, "i")
        char_idf = _array(arrays, "char_idf", 1)
        word_idf = _array(arrays, "word_idf", 1)
        lex_mean, lex_scale = _array(arrays, "lex_mean", 1), _array(arrays, "lex_scale", 1)
        coef, intercept = _array(arrays, "coef", 2), _array(arrays, "intercept", 1)
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    oof = json.loads((folder / "oof.json").read_text(encoding="utf-8"))
    trait_ids = [int(t) for t in meta["trait_ids"]]
    fmeta = meta["features"]
    ch = fmeta["chars"]
    chars = HashedCharTfidf.from_arrays(tuple(int(n) for n in ch["ngram_range"]), int(ch["bits"]),
                                        int(ch["min_df"]), buckets, char_idf)
    if not (isinstance(vocabulary, list) and all(isinstance(t, str) for t in vocabulary)
            and len(set(vocabulary)) == len(vocabulary) == len(word_idf)):
        raise ValueError("vocabulary.json does not match the word weights")
    if len(lex_mean) != len(lex_scale) or (lex_scale == 0).any():
        raise ValueError("lexical scaling is inconsistent")
    feats = TextFeatures.from_parts(float(fmeta["lexical_weight"]), chars, vocabulary, word_idf.astype(np.float32),
                                    lex_mean.astype(np.float64), lex_scale.astype(np.float64),
                                    style=fmeta.get("style", False) is True)
    if coef.shape != (len(trait_ids), feats.width()) or intercept.shape != (len(trait_ids),):
        raise ValueError(f"coefficients of shape {coef.shape} do not fit {len(trait_ids)} traits "
                         f"and {feats.width()} features")
    if not isinstance(oof, dict) or not all(isinstance(v, list) and len(v) == len(trait_ids) for v in oof.values()):
        raise ValueError("oof.json does not match the traits")
    skip = ("format", "kind", "id", "trait_ids", "features")
    return DistilledModel(id=meta["id"], trait_ids=trait_ids, features=feats, coef=coef.astype(np.float32),
                          intercept=intercept.astype(np.float64),
                          meta={k: v for k, v in meta.items() if k not in skip},
                          oof={str(k): [float(x) for x in v] for k, v in oof.items()})


class DistilledJudge(Judge):
    name = "distilled"
    clean_output = True

    def __init__(self, questionnaire=None, cache=True, model: DistilledModel | str | None = None):
        super().__init__(questionnaire, cache)
        self.model = model if isinstance(model, DistilledModel) else load_model(model)

    @property
    def judge_id(self) -> str:
        return f"distilled:{self.model.id}"

    @property
    def teacher(self) -> str | None:
        """The judge whose ratings this one was fitted to reproduce (``gpt-5`` for the shipped
        one): weights fitted on the teacher's ratings are on this judge's scale too."""
        return self.model.meta.get("teacher")

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
