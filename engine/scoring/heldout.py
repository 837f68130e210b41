"""How well a local judge plus fitted weights tells human from AI on unseen games.

Nested and game-grouped: the outer split holds test games out of everything
(the distilled judge's regressors and the weights are both fitted on the
training games only); weights are fitted on out-of-fold judge ratings of the
training games, so they never learn from a judge rating its own training data.
Nothing is tuned on the test games.

Extra labelled dialogues without ratings (``extra``: e.g. ``hal contrast
build``'s real human replies against the bundled model's) can join each
training side: in the distillation (``"distill"``: they learn the mean ratings
of their label, see ``fit_distilled``) and/or in the weight fit (``"weights"``:
with the judge's out-of-fold ratings of them when they were distilled on, its
plain ratings otherwise). They are never tested on: the figures are over the
file's own items.
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

LOCAL_JUDGES = ("lexical", "distilled", "precomputed")  # precomputed: the file's own ratings (a reference)
EXTRA_USES = ("distill", "weights")


def _usable(dialogues: list[Dialogue], judge: str) -> list[Dialogue]:
    keep = [d for d in dialogues if d.label is not None and any(s.strip() for s in d.speaker_lines())]
    if judge in ("distilled", "precomputed"):
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
    extra: list[Dialogue] | None = None,
    extra_in: tuple[str, ...] = EXTRA_USES,
    extra_weight: float = 1.0,
    inner_by: str = "game",
    style: bool = False,
    progress=None,
) -> dict:
    """Accuracy on held-out games of ``judge`` + weights fitted on the other games.

    ``distilled`` is re-fitted inside every outer split from the file's
    precomputed ratings (e.g. GPT-5's) of the training games only.
    ``by="ai_model"`` holds out all games of one AI system at a time instead of
    random games: a harder test of whether the score carries to an unseen model.
    ``extra`` / ``extra_in``: see the module docstring. ``inner_by``: the distilled judge's
    inner folds (whose out-of-fold ratings the weights learn on) hold out games or AI systems
    of the training side (see ``fit_distilled``'s ``folds_by``).
    """
    if judge not in LOCAL_JUDGES:
        raise BadRequest(f"held-out evaluation knows {LOCAL_JUDGES}, not {judge!r}")
    extra = [d for d in (extra or []) if d.label is not None and any(s.strip() for s in d.speaker_lines())]
    extra_in = tuple(extra_in)
    if any(u not in EXTRA_USES for u in extra_in):
        raise BadRequest(f"extra items can be used in {' and '.join(EXTRA_USES)}, not {extra_in!r}")
    if extra and not extra_in:
        raise BadRequest("extra items were given but used nowhere (extra_in is empty)")
    if extra and judge == "precomputed":
        raise BadRequest("extra items have no precomputed ratings: use a local judge (lexical or distilled)")
    if extra and judge == "lexical" and "distill" in extra_in:
        extra_in = tuple(u for u in extra_in if u != "distill")  # nothing to distil
    y_extra = np.array([1 if d.is_human else 0 for d in extra], dtype=int)
    q = questionnaire or load_questionnaire("hal32")
    config = config or FitConfig(penalty="l2")
    items = _usable(dialogues, judge)
    if not items:
        raise BadRequest("no labelled items" + (" with precomputed ratings" if judge != "lexical" else ""))
    y = np.array([1 if d.is_human else 0 for d in items])
    groups = np.array([d.group or d.id for d in items])
    lex = feature_matrix(items)
    lex_extra = feature_matrix(extra) if extra else None
    if judge == "precomputed":
        from engine.scoring.judges.distilled import _targets

        fixed_R = _targets([d.ratings for d in items], q.trait_ids)
    elif judge == "lexical":
        ids, fixed_R = LexicalJudge(q, cache=False).rate_matrix(items)
        if extra:
            _, fixed_extra = LexicalJudge(q, cache=False).rate_matrix(extra)
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
            extra_R = None
            if judge in ("lexical", "precomputed"):
                train_R, test_R = fixed_R[tr], fixed_R[te]
                if extra:
                    extra_R = fixed_extra
            else:
                from engine.scoring.judges.distilled import fit_distilled

                train = [items[i] for i in tr]
                distil_extra = extra if "distill" in extra_in else None
                model, oof = fit_distilled(train, [d.ratings for d in train], q.trait_ids, alpha=alpha,
                                           lexical_weight=lexical_weight, folds=inner_folds, source="heldout",
                                           extra=distil_extra, extra_weight=extra_weight, folds_by=inner_by, style=style)
                train_R, test_R = oof[:len(tr)], model.predict([items[i] for i in te], lex[te])
                if extra:
                    extra_R = oof[len(tr):] if distil_extra else model.predict(extra, lex_extra)
            y_fit, sw = y[tr], None
            if extra and "weights" in extra_in:
                train_R, y_fit = np.vstack([train_R, extra_R]), np.concatenate([y_fit, y_extra])
                sw = np.r_[np.ones(len(tr)), np.full(len(extra), extra_weight)]
            Xtr, cols = _filled(train_R)
            Xte = np.where(np.isfinite(test_R[:, cols]), test_R[:, cols], 3.0)
            w, b = fit_once(Xtr, y_fit, config, sw)
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
        **({"inner_by": inner_by, "style_features": style} if judge == "distilled" else {}),
        "n_extra": len(extra), **({"extra_in": list(extra_in), "extra_weight": extra_weight} if extra else {}),
        "heldout_accuracy": float(np.mean(fold_acc)), "heldout_std": float(np.std(fold_acc)),
        "heldout_pairwise_accuracy": float(np.mean(fold_pair)), "heldout_pairwise_std": float(np.std(fold_pair)),
        "heldout_pooled_accuracy": hits / (len(y) * len(outer)),
        "per_fold_accuracy": fold_acc,
        **({"accuracy_by_held_out_system": dict(zip(fold_names, fold_acc))} if fold_names else {}),
        **({"held_out_systems": fold_names} if fold_names else {}),
        "accuracy_by_source_label": {k: float(np.mean(v)) for k, v in sorted(per_model.items())},
    }
