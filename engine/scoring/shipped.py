"""Numbers the studio ships in ``resources/``, derived by our own code from the
reference data, and how to rebuild and check them.

A newcomer has no reference data beside the checkout, yet the first reply's
score should rest on weights fitted on its own judge's ratings. So the fit that
``hal fit`` would make on the shared Turing file is shipped as numbers only
(weights, a bias, cross-validated accuracy): no transcript, prompt or
statement from the data goes into the repository.

``scripts/build_resources.py`` rebuilds every item; ``--check`` rebuilds into
memory and compares with what is shipped (a test does the same).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import BadRequest

TURING_FILE = "turing_gpt5_train.csv"


DISTILLED_ID = "gpt5-turing"  # the shipped distilled judge (resources/judges/gpt5-turing/)


@dataclass(frozen=True)
class ShippedWeights:
    id: str
    judge: str  # the judge's name (get_judge); its versioned id is recorded on fitting
    penalty: str
    C: float
    folds: int
    repeats: int
    name: str
    description: str
    model: str | None = None  # the judge's model (a distilled judge's id)


SHIPPED_WEIGHTS = (
    ShippedWeights(
        id="lexical_turing", judge="lexical", penalty="l2", C=1.0, folds=10, repeats=3,
        name="Lexical judge, fitted on the Turing games",
        description=("Logistic regression (L2) of human vs AI on the lexical judge's own ratings of the "
                     "900 witness sides of the shared Turing games (the paper's proxy task), 32 traits. "
                     "Rebuilt by scripts/build_resources.py; the score is this judge's logit of 'human'.")),
    ShippedWeights(
        id="distilled_turing", judge="distilled", model=DISTILLED_ID, penalty="l2", C=1.0, folds=10, repeats=3,
        name="Distilled judge, fitted on the Turing games",
        description=("Logistic regression (L2) of human vs AI on the shipped distilled judge's out-of-fold "
                     "ratings of the 900 witness sides of the shared Turing games, 32 traits. Rebuilt by "
                     "scripts/build_resources.py; the score is this judge's logit of 'human'.")),
)


def judge_dir() -> Path:
    from engine.scoring.judges.distilled import shipped_dir

    return shipped_dir() / DISTILLED_ID


def build_distilled():
    """The distilled judge fitted on the GPT-5 ratings of the shared Turing file (in memory)."""
    from engine.scoring.importers import load_any
    from engine.scoring.judges.distilled import fit_distilled
    from engine.scoring.traits import load_questionnaire

    q = load_questionnaire("hal32")
    data = load_any(turing_file())
    rated = [d for d in data.dialogues if d.ratings]
    model, _ = fit_distilled(rated, [d.ratings for d in rated], q.trait_ids, model_id=DISTILLED_ID,
                             source=Path(TURING_FILE).stem)
    model.meta.pop("created", None)  # a rebuild should match byte for byte where it can
    model.meta["built_by"] = "scripts/build_resources.py"
    model.meta["teacher"] = "gpt-5"  # the Turing file's ratings are GPT-5's (the data README)
    return model


def write_distilled(model) -> Path:
    from engine.scoring.judges.distilled import save_model, shipped_dir

    return save_model(model, shipped_dir(), hashed_words=True)


def distilled_differences(built, tol: float = 1e-4) -> list[str]:
    """What differs between a rebuilt distilled judge and the shipped one."""
    import numpy as np

    from engine.scoring.judges.distilled import hash_token, load_model

    try:
        shipped_model = load_model(DISTILLED_ID)
    except Exception as exc:
        return [f"the shipped judge does not load: {exc}"]
    out = []
    if shipped_model.trait_ids != built.trait_ids:
        out.append("the traits differ")
    if [hash_token(t) for t in built.features.vocabulary()] != shipped_model.features.vocabulary():
        out.append("the word vocabulary differs")
    if shipped_model.coef.shape != built.coef.shape:
        out.append(f"coefficients {shipped_model.coef.shape} -> {built.coef.shape}")
    elif float(np.abs(shipped_model.coef - built.coef).max()) > tol:
        out.append(f"coefficients differ by up to {float(np.abs(shipped_model.coef - built.coef).max()):.2g}")
    if float(np.abs(np.asarray(shipped_model.intercept) - np.asarray(built.intercept)).max()) > tol:
        out.append("intercepts differ")
    return out


def weights_path(item: ShippedWeights) -> Path:
    return paths.resources_dir() / "weights" / f"{item.id}.json"


def turing_file() -> Path:
    from engine.scoring import shared_data_dir

    path = shared_data_dir() / TURING_FILE
    if not path.is_file():
        raise BadRequest(f"the reference data is not here: {path} (set HAL_SHARED_DATA to the folder "
                         "that holds the paper's release)")
    return path


def build_weights(item: ShippedWeights) -> dict:
    """Fit ``item`` on the shared Turing file and return the weights file's content."""
    from engine.scoring.fit import FitConfig, build_table, cross_validate
    from engine.scoring.importers import load_any
    from engine.scoring.judges import get_judge
    from engine.scoring.traits import W_FORMAT, load_questionnaire

    q = load_questionnaire("hal32")
    data = load_any(turing_file())
    judge = get_judge(item.judge, questionnaire=q, cache=False, **({"model": item.model} if item.model else {}))
    ratings = (judge.fit_ratings(data.dialogues)[0] if hasattr(judge, "fit_ratings")
               else judge.rate_many(data.dialogues))
    table, _problems = build_table(data.dialogues, ratings, q.trait_ids)
    config = FitConfig(penalty=item.penalty, C=item.C, folds=item.folds, repeats=item.repeats, seed=0)
    report = cross_validate(table, config)
    return {
        "format": W_FORMAT, "format_version": 1, "id": item.id, "version": 1, "name": item.name,
        "description": item.description, "questionnaire": q.ref, "parent": None,
        "bias": round(float(report["bias"]), 6),
        "weights": {str(k): round(float(v), 6) for k, v in sorted((int(k), v) for k, v in
                                                                   report["weights"].items())},
        "fitted_on": {"judge": judge.judge_id, "source": TURING_FILE, "n": report["n"],
                      "config": {"penalty": item.penalty, "C": item.C, "folds": item.folds,
                                 "repeats": item.repeats, "seed": 0},
                      "built_by": "scripts/build_resources.py"},
        "metrics": {k: round(float(report[k]), 4) for k in ("cv_accuracy", "cv_std", "pairwise_accuracy")}
        | {"n": report["n"], "n_games": report["n_games"]},
    }


def differences(built: dict, shipped: dict, tol: float = 1e-4) -> list[str]:
    """What differs between a rebuilt weights file and the shipped one (numbers within ``tol``)."""
    out = []
    if built["fitted_on"]["judge"] != shipped.get("fitted_on", {}).get("judge"):
        out.append(f"judge {shipped.get('fitted_on', {}).get('judge')} -> {built['fitted_on']['judge']}")
    if set(built["weights"]) != set(shipped.get("weights", {})):
        out.append("the traits differ")
    for k, v in built["weights"].items():
        old = shipped.get("weights", {}).get(k)
        if old is None or not math.isclose(v, old, abs_tol=tol):
            out.append(f"trait {k}: {old} -> {v}")
    if not math.isclose(built["bias"], shipped.get("bias", math.nan), abs_tol=tol):
        out.append(f"bias: {shipped.get('bias')} -> {built['bias']}")
    return out


def write_weights(content: dict, item: ShippedWeights) -> Path:
    path = weights_path(item)
    path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return path
