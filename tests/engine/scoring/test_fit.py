"""The proxy fit recovers a known answer, and its CV never splits a game."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.fit import FitConfig, Table, build_table, cross_validate, pairwise_accuracy, save_fit, splits
from engine.scoring.judges import RatingError
from engine.scoring.traits import load_questionnaire, load_weights


def synthetic(n_games=120, seed=0):
    """Each game: a human and an AI; trait 1 up and trait 2 down for humans; traits 3..8 noise."""
    rng = np.random.default_rng(seed)
    X, y, g = [], [], []
    for game in range(n_games):
        for human in (1, 0):
            row = rng.integers(1, 6, size=8).astype(float)
            row[0] = np.clip(np.round(3 + (1.2 if human else -1.2) + rng.normal(0, 0.9)), 1, 5)
            row[1] = np.clip(np.round(3 + (-1.0 if human else 1.0) + rng.normal(0, 0.9)), 1, 5)
            X.append(row)
            y.append(human)
            g.append(f"g{game}")
    X = np.array(X)
    return Table(X, np.array(y), np.array(g), list(range(1, 9)), [f"{a}-{i}" for i, a in enumerate(g)],
                 np.zeros_like(X, dtype=bool))


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_fit_recovers_the_known_answer(penalty):
    table = synthetic()
    rep = cross_validate(table, FitConfig(penalty=penalty, folds=5, repeats=2))
    w = rep["weights"]
    assert w["1"] > 0.5 and w["2"] < -0.5
    assert all(abs(w[str(t)]) < 0.5 * min(abs(w["1"]), abs(w["2"])) for t in range(3, 9))
    assert rep["cv_accuracy"] > 0.8 and rep["pairwise_accuracy"] > rep["cv_accuracy"] - 0.05
    assert rep["sign_agreement"]["1"] == 1.0 and rep["sign_agreement"]["2"] == 1.0
    assert rep["n"] == 240 and rep["n_games"] == 120
    assert set(rep) >= {"cv_accuracy", "cv_std", "pairwise_accuracy", "weights", "bias", "n", "weights_sd"}


def test_selection_keeps_the_informative_traits():
    rep = cross_validate(synthetic(), FitConfig(penalty="l1", folds=5, select=2))
    assert set(rep["weights"]) == {"1", "2"}
    assert rep["selected_share"]["1"] == 1.0 and rep["selected_share"]["2"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cv_never_splits_a_game(seed):
    t = synthetic(n_games=37, seed=seed)
    seen_test = []
    for tr, te in splits(t.y, t.groups, 10, seed):
        assert not set(t.groups[tr]) & set(t.groups[te])
        seen_test.extend(te)
    assert sorted(seen_test) == list(range(len(t.y)))


def test_pairwise_accuracy_counts_ties_half():
    y = np.array([1, 0, 1, 0, 1, 0])
    g = np.array(["a", "a", "b", "b", "c", "c"])
    assert pairwise_accuracy(np.array([2.0, 1.0, 0.0, 1.0, 3.0, 3.0]), y, g) == pytest.approx(0.5)


def test_build_table_drops_unlabelled_and_failed_items():
    def d(i, label):
        return Dialogue(id=str(i), turns=(Turn("W", "x"),), rated_speaker="W", label=label, group=f"g{i // 2}")
    ds = [d(0, "human"), d(1, "ai"), d(2, None), d(3, "ai")]
    ratings = [{1: 4.0, 2: None}, {1: 2.0, 2: 3.0}, {1: 1.0}, RatingError("boom")]
    table, problems = build_table(ds, ratings, [1, 2, 3])
    assert table.ids == ["0", "1"] and table.trait_ids == [1, 2]
    assert table.gaps.sum() == 1 and table.X[0, 1] == 3.0
    assert {p.item for p in problems} == {"2", "3"}


def test_too_few_games_is_a_clear_error():
    with pytest.raises(BadRequest, match="needs at least"):
        cross_validate(synthetic(n_games=4), FitConfig(folds=10))


def test_saved_fit_is_a_new_weights_version():
    rep = cross_validate(synthetic(), FitConfig(folds=5))
    q = load_questionnaire("hal32")
    w = save_fit(rep, q, judge="lexical@1", source="synthetic", config=FitConfig(folds=5))
    again = load_weights(w.ref)
    assert again.weights == {int(k): v for k, v in rep["weights"].items()}
    assert again.fitted_on["judge"] == "lexical@1" and again.metrics["cv_accuracy"] == rep["cv_accuracy"]
    assert save_fit(rep, q, judge="lexical@1", source="s", config=FitConfig()).ref == "fit-lexical@2"
