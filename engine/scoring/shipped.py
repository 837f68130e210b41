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


SHIPPED_WEIGHTS = (
    ShippedWeights(
        id="lexical_turing", judge="lexical", penalty="l2", C=1.0, folds=10, repeats=3,
        name="Lexical judge, fitted on the Turing games",
        description=("Logistic regression (L2) of human vs AI on the lexical judge's own ratings of the "
                     "900 witness sides of the shared Turing games (the paper's proxy task), 32 traits. "
                     "Rebuilt by scripts/build_resources.py; the score is this judge's logit of 'human'.")),
)


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
    judge = get_judge(item.judge, questionnaire=q, cache=False)
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
