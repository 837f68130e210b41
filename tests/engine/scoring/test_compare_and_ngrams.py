"""Agreement and before/after checks, the hashed n-grams, and the held-out evaluation."""

from __future__ import annotations

import json

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from engine.scoring.compare import agreement, compare_sets
from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.fit import FitConfig
from engine.scoring.heldout import evaluate_heldout
from engine.scoring.importers import load_any
from engine.scoring.judges import get_judge
from engine.scoring.ngrams import HashedCharTfidf
from engine.scoring.traits import Weights

from .helpers import FORMAL, SLANGY, turing_row, write_csv


def one(lines, did, ratings=None):
    turns = tuple(t for line in lines for t in (Turn("D", "how are you feeling?"), Turn("P", line)))
    return Dialogue(id=did, turns=turns, rated_speaker="P", ratings=ratings)


def test_agreement_per_trait():
    items = [one(SLANGY, "a", {3: 5, 2: 4}), one(FORMAL, "b", {3: 1, 2: 1}),
             one(["ok lol", "sure"], "c", {3: 4, 2: 3}), one(["Yes.", "Certainly."], "d", {3: 2, 2: 1})]
    rep = agreement(items, get_judge("lexical", cache=False))
    assert rep["n_items"] == 4
    assert rep["traits"]["3"]["spearman"] > 0.8
    assert "10" not in rep["traits"]  # lexical does not rate it


def test_compare_sets_ranks_the_casual_set_higher():
    w = Weights("t", 1, "t", {2: 1.0, 3: 1.0}, bias=0.0)
    before = [one(FORMAL[i:] + FORMAL[:i], f"b{i}") for i in range(4)]
    after = [one(SLANGY[i:] + SLANGY[:i], f"a{i}") for i in range(4)]
    rep = compare_sets(before, after, get_judge("lexical", cache=False), w)
    assert rep["mean_after"] > rep["mean_before"] and rep["prob_after_above_before"] == 1.0
    assert rep["p_after_greater"] < 0.05 and rep["trait_means"]["3"]["delta"] > 0


def test_hashed_char_tfidf_matches_sklearn_closely():
    texts = ["hello there", "Hello There!", "lol ok", "ok ok ok", "there you go", "hello"]
    mine = HashedCharTfidf(ngram_range=(1, 3), min_df=2).fit(texts)
    ref = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=False, min_df=2).fit(texts)
    A, B = mine.transform(texts), ref.transform(texts)
    assert A.shape == B.shape
    assert np.allclose(np.sort(A.toarray(), axis=1), np.sort(B.toarray(), axis=1), atol=1e-5)
    assert mine.transform(["", "zzzz"]).nnz == 0  # nothing seen in training: an all-zero row


def test_ngrams_never_span_two_texts():
    h = HashedCharTfidf(ngram_range=(2, 2), min_df=1).fit(["ab", "cd"])
    assert h.transform(["ab"]).nnz == 1 and h.transform(["bc"]).nnz == 0


def test_heldout_evaluation_with_a_distilled_judge(tmp_path):
    rows = []
    for g in range(20):
        human = "A" if g % 2 else "B"
        a, b = (SLANGY, FORMAL) if human == "A" else (FORMAL, SLANGY)
        row = turing_row(g, human, a[g % 3:], b[g % 2:])
        casual, formal = json.dumps([5] * 4 + [3] * 28), json.dumps([1] * 4 + [3] * 28)
        row["likert_evaluation_A"], row["likert_evaluation_B"] = (casual, formal) if human == "A" else (formal, casual)
        rows.append(row)
    data = load_any(write_csv(tmp_path / "t.csv", rows)).dialogues
    rep = evaluate_heldout(data, "distilled", config=FitConfig(penalty="l2"), outer_folds=4, inner_folds=3)
    assert rep["n"] == 40 and len(rep["per_fold_accuracy"]) == 4
    assert rep["heldout_accuracy"] > 0.9  # the toy humans are trivially separable
    assert set(rep["accuracy_by_source_label"]) == {"Human", "gpt-4o_minimal"}


def test_heldout_by_ai_model(tmp_path):
    rows = [turing_row(g, "A" if g % 2 else "B", SLANGY if g % 2 else FORMAL, FORMAL if g % 2 else SLANGY,
                       ai_model="bot-1" if g < 10 else "bot-2") for g in range(20)]
    data = load_any(write_csv(tmp_path / "t.csv", rows)).dialogues
    rep = evaluate_heldout(data, "lexical", by="ai_model")
    assert rep["held_out_systems"] == ["bot-1", "bot-2"] and rep["outer_folds"] == 2
    assert 0 <= rep["heldout_pooled_accuracy"] <= 1


def test_real_data_published_weights_follow_trait_ids(shared):
    """The published weights applied by id to GPT-5's ratings beat the same weights applied by position."""
    from engine.scoring.score import score_ratings
    from engine.scoring.traits import load_weights

    items = load_any(shared / "turing_gpt5_train.csv").dialogues
    w = load_weights("hal16_published")
    by_id = np.mean([(score_ratings(d.ratings, w).score > 0) == d.is_human for d in items])
    wrong = Weights("x", 1, "x", dict(zip(range(1, 17), w.weights.values())), w.bias)
    by_position = np.mean([(score_ratings(d.ratings, wrong).score > 0) == d.is_human for d in items])
    assert by_id > by_position + 0.05
