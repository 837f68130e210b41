"""How well a local judge plus fitted weights tells human from AI on unseen games.

Nested and game-grouped: the outer split holds test games out of everything
(the distilled judge's regressors and the weights are both fitted on the
training games only); weights are fitted on out-of-fold judge ratings of the
training games, so they never learn from a judge rating its own training data.
Nothing is tuned on the test games.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut

from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue
from engine.scoring.features import feature_matrix
from engine.scoring.fit import FitConfig, fit_once, one_thread, pairwise_accuracy, splits
from engine.scoring.judges.lexical import LexicalJudge
from engine.scoring.traits import Questionnaire, load_questionnaire

LOCAL_JUDGES = ("lexical", "distilled")


def _usable(dialogues: list[Dialogue], judge: str) -> list[Dialogue]:
    keep = [d for d in dialogues if d.label is not None and any(s.strip() for s in d.speaker_lines())]
    if judge == "distilled":
        keep = [d for d in keep if d.ratings]
    return keep


def _filled(R: np.ndarray) -> tuple[np.ndarray, list[int]]:
    cols = [j for j in range(R.shape[1]) if np.isfinite(R[:, j]).any()]
    X = R[:, cols]
    return np.where(np.isfinite(X), X, 3.0), cols


@one_thread
def evaluate_heldout(
    dialogues: list[Dialogue],
    judge: str = "distilled",
    *,
    questionnaire: Questionnaire | None = None,
    config: FitConfig | None = None,
    outer_folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    alpha: float = 3.0,
    lexical_weight: float = 0.05,
    inner_folds: int = 5,
    by: str = "game",
    progress=None,
) -> dict:
    """Accuracy on held-out games of ``judge`` + weights fitted on the other games.

    ``distilled`` is re-fitted inside every outer split from the file's
    precomputed ratings (e.g. GPT-5's) of the training games only.
    ``by="ai_model"`` holds out all games of one AI system at a time instead of
    random games: a harder test of whether the score carries to an unseen model.
    """
    if judge not in LOCAL_JUDGES:
        raise BadRequest(f"held-out evaluation knows {LOCAL_JUDGES}, not {judge!r}")
    q = questionnaire or load_questionnaire("hal32")
    config = config or FitConfig(penalty="l2")
    items = _usable(dialogues, judge)
    if not items:
        raise BadRequest("no labelled items" + (" with precomputed ratings" if judge == "distilled" else ""))
    y = np.array([1 if d.is_human else 0 for d in items])
    groups = np.array([d.group or d.id for d in items])
    lex = feature_matrix(items)
    if judge == "lexical":
        ids, lexical_R = LexicalJudge(q, cache=False).rate_matrix(items)
    fold_acc, fold_pair, fold_names, per_model = [], [], [], defaultdict(list)
    hits = 0
    if by == "ai_model":
        systems = np.array([str(d.meta.get("ai_model") or "") for d in items])
        if (systems == "").any():
            raise BadRequest("holding out by AI model needs an ai_model for every game (the Turing CSV has one)")
        outer = [list(LeaveOneGroupOut().split(y, y, systems))]
    elif by == "game":
        outer = [list(splits(y, groups, outer_folds, seed + r)) for r in range(repeats)]
    else:
        raise BadRequest(f"hold out by 'game' or 'ai_model', not {by!r}")
    step, total = 0, sum(len(o) for o in outer)
    for folds_of_repeat in outer:
        for tr, te in folds_of_repeat:
            if judge == "lexical":
                Xtr, cols = _filled(lexical_R[tr])
                Xte = np.where(np.isfinite(lexical_R[te][:, cols]), lexical_R[te][:, cols], 3.0)
            else:
                from engine.scoring.judges.distilled import fit_distilled

                train = [items[i] for i in tr]
                model, oof = fit_distilled(train, [d.ratings for d in train], q.trait_ids, alpha=alpha,
                                           lexical_weight=lexical_weight, folds=inner_folds, source="heldout")
                Xtr, cols = _filled(oof)
                Xte = model.predict([items[i] for i in te], lex[te])[:, cols]
            w, b = fit_once(Xtr, y[tr], config)
            s = Xte @ w + b
            correct = (s > 0) == (y[te] == 1)
            hits += int(correct.sum())
            fold_acc.append(float(np.mean(correct)))
            if by == "ai_model":
                fold_names.append(str(systems[te[0]]))
            fold_pair.append(pairwise_accuracy(s, y[te], groups[te]))
            for i, ok in zip(te, correct):
                per_model[str(items[i].meta.get("source_label") or items[i].label)].append(bool(ok))
            step += 1
            if progress:
                progress(step, total)
    return {
        "judge": judge, "questionnaire": q.ref, "n": int(len(items)), "n_games": int(len(np.unique(groups))),
        "held_out_by": by, "outer_folds": len(outer[0]), "repeats": len(outer),
        "penalty": config.penalty, "C": config.C,
        "select": config.select,
        "heldout_accuracy": float(np.mean(fold_acc)), "heldout_std": float(np.std(fold_acc)),
        "heldout_pairwise_accuracy": float(np.mean(fold_pair)), "heldout_pairwise_std": float(np.std(fold_pair)),
        "heldout_pooled_accuracy": hits / (len(y) * len(outer)),
        "per_fold_accuracy": fold_acc,
        **({"held_out_systems": fold_names} if fold_names else {}),
        "accuracy_by_source_label": {k: float(np.mean(v)) for k, v in sorted(per_model.items())},
    }
