"""The distilled judge learns another judge's ratings and reports held-out agreement."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.judges import get_judge
from engine.scoring.judges.distilled import fit_distilled, list_models, load_model, save_model

WORDS = "the game was long and we played until late then went home to eat some food with friends".split()
SLANG = ["lol", "tbh", "idk", "ngl", "rn"]


def teacher_items(n=60, seed=0):
    """Dialogues whose 'teacher' rates trait 3 by casing and trait 2 by slang."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lower, slang = rng.random() < 0.5, rng.random() < 0.5
        lines = []
        for _ in range(3):
            words = rng.sample(WORDS, 6) + ([rng.choice(SLANG)] if slang else [])
            text = " ".join(words)
            lines.append(text if lower else text.capitalize() + ".")
        turns = tuple(t for line in lines for t in (Turn("I", "and then?"), Turn("W", line)))
        ratings = {3: 5.0 if lower else 1.0, 2: 4.0 if slang else 1.0, 20: 3.0}
        out.append(Dialogue(id=f"d{i}", turns=turns, rated_speaker="W", group=f"g{i // 2}", ratings=ratings))
    return out


def test_distilled_learns_and_reports_heldout_correlations():
    items = teacher_items()
    model, oof = fit_distilled(items, [d.ratings for d in items], [2, 3, 20], folds=3, source="teacher")
    assert model.trait_ids == [2, 3, 20]
    held = model.meta["heldout"]
    assert held["3"]["spearman"] > 0.7 and held["2"]["spearman"] > 0.5
    assert "20" not in held  # a constant target has no correlation to report
    assert oof.shape == (60, 3) and np.isfinite(oof).all()
    pred = model.predict(items[:4])
    assert ((pred >= 1) & (pred <= 5)).all()


def test_saved_model_is_loaded_by_id_and_newest_by_default():
    items = teacher_items(40)
    model, _ = fit_distilled(items, [d.ratings for d in items], folds=2, model_id="teach-1")
    save_model(model)
    assert [m["id"] for m in list_models() if m["where"] == "user"] == ["teach-1"]
    assert load_model("teach-1").trait_ids == model.trait_ids
    judge = get_judge("distilled", cache=False)
    assert judge.judge_id == "distilled:teach-1"
    r = judge.rate(items[0])
    assert r[10] is None and 1 <= r[3] <= 5  # only traits it was fitted on are rated


def test_fit_ratings_use_out_of_fold_values_for_training_items():
    items = teacher_items(40)
    model, oof = fit_distilled(items, [d.ratings for d in items], folds=2, model_id="m")
    judge = get_judge("distilled", model=model, cache=False)
    unseen = Dialogue(id="new", turns=(Turn("W", "totally new words here"),), rated_speaker="W")
    ratings, used = judge.fit_ratings([items[0], unseen])
    assert used == 1
    col = model.trait_ids.index(3)
    assert ratings[0][3] == pytest.approx(oof[0, col], abs=1e-3)
    assert ratings[1] == judge.rate(unseen)


def test_a_judge_saved_with_hashed_words_rates_exactly_as_the_plain_one(tmp_path):
    """What the studio ships: the word vocabulary as digests, no text from the data."""
    import json

    items = teacher_items(40)
    model, _ = fit_distilled(items, [d.ratings for d in items], folds=2, model_id="teach-h")
    plain = save_model(model, tmp_path / "plain")
    hashed = save_model(model, tmp_path / "hashed", hashed_words=True)
    words = json.loads((hashed / "vocabulary.json").read_text())
    assert words and all(w.startswith("#b2:") for w in words)
    assert not set(WORDS) & set(words) and set(WORDS) & set(json.loads((plain / "vocabulary.json").read_text()))
    from engine.scoring.judges.distilled import _load_folder

    a, b = _load_folder(plain), _load_folder(hashed)
    assert np.allclose(a.predict(items), b.predict(items), atol=1e-6)
