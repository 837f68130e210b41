"""Interpretable reward update: votes refit the weights, agreement is reported, a version is saved."""

from __future__ import annotations

import pytest

from engine.errors import EngineError
from engine.jobs import RecordingState
from engine.training import reward_weights as RW

from .helpers import seed_votes


def test_refit_moves_weights_toward_votes_and_saves_a_version(store):
    from engine.scoring.traits import list_weights, load_weights

    seed_votes(store, 16)
    cfg = RW.make_config("default", {"judge": "surface", "prior": 0.05, "new_id": "mine"})
    out = RW.run(cfg, RecordingState(), store)
    m = out["metrics"]
    assert out["weights"].startswith("mine@") and out["weights"] in list_weights()
    new = load_weights(out["weights"])
    assert new.parent == load_weights("hal16_published").ref
    assert set(m["traits"]) == {str(t) for t in new.trait_ids}
    assert m["n_votes_fit"] + m["n_votes_heldout"] == 16
    # the votes prefer brief replies: the weight on trait 1 should not fall, and fit agreement is high
    assert m["traits"]["1"]["new"] >= m["traits"]["1"]["old"]
    assert m["agreement_fit"]["new"] >= m["agreement_fit"]["old"]
    row = store.db["rounds"].get(out["round_id"])
    assert row["kind"] == "reward_weights" and row["status"] == "done"


def test_too_few_votes_is_a_clear_error(store):
    seed_votes(store, 1)
    with pytest.raises(EngineError, match="decisive vote"):
        RW.run(RW.make_config("default", {"judge": "surface"}), RecordingState(), store)
    assert store.db["rounds"].count == 0
