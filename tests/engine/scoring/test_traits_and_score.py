"""Questionnaires and weights are data keyed by trait id; the score follows the ids."""

from __future__ import annotations

import json
import math
import random

import pytest

from engine.errors import BadRequest
from engine.scoring.score import NothingRated, score_ratings
from engine.scoring.traits import (
    Questionnaire, Weights, list_weights, load_questionnaire, load_weights, save_questionnaire, save_weights,
)

HAL16 = [1, 2, 3, 4, 5, 6, 7, 12, 15, 17, 20, 21, 24, 26, 28, 32]


def test_bundled_questionnaires():
    q32, q16 = load_questionnaire("hal32"), load_questionnaire("hal16")
    assert q32.trait_ids == list(range(1, 33))
    assert len({t.theme for t in q32.traits}) == 6 == len(q32.themes)
    assert q16.trait_ids == HAL16
    assert all(q16.trait(t).statement == q32.trait(t).statement for t in HAL16)
    assert q32.ref == "hal32@1"


def test_published_weights_keyed_by_id():
    w = load_weights("hal16_published")
    assert sorted(w.weights) == HAL16 and w.ref == "hal16_published@1"
    assert w.bias < 0


def _shuffled_copy(doc: dict, key: str, seed: int) -> dict:
    doc = json.loads(json.dumps(doc))
    if isinstance(doc[key], list):
        random.Random(seed).shuffle(doc[key])
    else:
        items = list(doc[key].items())
        random.Random(seed).shuffle(items)
        doc[key] = dict(items)
    return doc


def test_reordering_traits_changes_no_score(tmp_path):
    q = load_questionnaire("hal32")
    w = load_weights("hal16_published")
    rng = random.Random(1)
    speakers = [{t: rng.choice([1, 2, 3, 4, 5, None]) for t in q.trait_ids} for _ in range(20)]
    before = [score_ratings(r, w, q).score for r in speakers]
    for seed in range(3):
        qp = tmp_path / f"q{seed}.json"
        wp = tmp_path / f"w{seed}.json"
        qp.write_text(json.dumps(_shuffled_copy(q.to_dict(), "traits", seed)))
        wp.write_text(json.dumps(_shuffled_copy(w.to_dict(), "weights", seed)))
        q2, w2 = load_questionnaire(str(qp)), load_weights(str(wp))
        assert q2.trait_ids != q.trait_ids  # really reordered
        assert list(w2.weights) != list(w.weights)
        after = [score_ratings(dict(reversed(list(r.items()))), w2, q2).score for r in speakers]
        assert after == pytest.approx(before, abs=1e-12)


def test_missing_traits_are_imputed_neutral_and_reported():
    w = Weights("t", 1, "t", {1: 1.0, 2: -2.0, 3: 0.5}, bias=0.25)
    s = score_ratings({1: 5, 2: None}, w)
    assert s.missing == [2, 3]
    assert s.score == pytest.approx(5 * 1.0 + 3 * -2.0 + 3 * 0.5 + 0.25)
    assert s.imputed_weight == pytest.approx(2.5 / 3.5)
    assert s.probability == pytest.approx(1 / (1 + math.exp(-s.score)))
    assert sum(abs(v) for v in s.shares.values()) == pytest.approx(1.0)
    assert s.ratings[2] is None
    with pytest.raises(NothingRated):
        score_ratings({7: 4}, w)


def test_save_new_versions_and_edits():
    q = load_questionnaire("hal32")
    edited = q.reword(20, "Asks the partner something back.").drop_traits(10, 31).add_trait(
        "pets", "Mentions its pets.", theme="life")
    assert edited.version is None and edited.parent == "hal32@1"
    assert 10 not in edited.trait_ids and edited.trait_ids[-1] == 33
    saved = save_questionnaire(edited)
    assert saved.ref == "hal32@2"
    assert load_questionnaire("hal32").ref == "hal32@2"  # newest by default
    assert load_questionnaire("hal32@1").trait(20).statement == q.trait(20).statement
    assert load_questionnaire("hal32@2").trait(20).statement == "Asks the partner something back."
    mine = save_questionnaire(q.subset([1, 2, 3]), new_id="mine")
    assert mine.ref == "mine@1" and mine.trait_ids == [1, 2, 3]
    with pytest.raises(BadRequest):
        q.add_trait("x", "y", trait_id=5)
    w = save_weights(Weights("fit-x", None, "x", {1: 0.5}, 0.0))
    assert w.ref == "fit-x@1" and save_weights(w).ref == "fit-x@2"
    assert "fit-x@2" in list_weights()


def test_unknown_refs_and_bad_files(tmp_path):
    with pytest.raises(BadRequest):
        load_weights("nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "hal-questionnaire", "id": "b", "traits": [
        {"id": 1, "name": "a", "statement": "a"}, {"id": 1, "name": "b", "statement": "b"}]}))
    with pytest.raises(BadRequest):
        load_questionnaire(str(bad))
    assert isinstance(Questionnaire.from_dict(load_questionnaire("hal16").to_dict()), Questionnaire)


def test_score_matrix_equals_one_by_one():
    import numpy as np

    from engine.scoring.score import ratings_matrix, score_matrix

    w = load_weights("hal16_published")
    rng = random.Random(3)
    rows = [{t: rng.choice([1, 3, 5, None]) for t in range(1, 33)} for _ in range(10)]
    X, gaps = ratings_matrix(rows, list(range(1, 33)))
    assert gaps.sum() == sum(v is None for r in rows for v in r.values())
    fast = score_matrix(X, list(range(1, 33)), w)
    slow = [score_ratings(r, w).score for r in rows]
    assert np.allclose(fast, slow)
    only_some = score_matrix(X[:, :5], list(range(1, 6)), w)  # weighted traits not in X count neutral
    assert np.allclose(only_some, [score_ratings({t: r.get(t) for t in range(1, 6)}, w).score for r in rows])
